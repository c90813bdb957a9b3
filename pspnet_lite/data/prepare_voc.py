"""Prepare PASCAL VOC 2012 + SBD "train_aug" for PSPNet §5.3: 21 classes, 10,582 train / 1,449 val.

    pspnet-prepare-voc --root data/voc     # downloads VOC2012 (1.9 GB) and SBD (1.4 GB)
    pspnet-prepare-voc --root data/voc --voc-archive VOCtrainval_11-May-2012.tar \\
        --sbd-archive benchmark.tgz        # archives you already have

The same command is ``python -m pspnet_lite.data.prepare_voc`` and, in a clone,
``python data_scripts/prepare_voc.py``.

Steps: download (resumable) and MD5-check VOCtrainval_11-May-2012.tar and SBD's benchmark.tgz,
extract them into ROOT, then write ROOT/VOCdevkit/VOC2012/SegmentationClassAug/<id>.png (uint8 class
ids 0..20, 255 = border/ignore) for every image of train_aug and val: VOC's own palette PNG where VOC
annotates the image (it has the 255 borders), SBD's ``cls/<id>.mat`` (GTcls.Segmentation) otherwise.
train_aug = (SBD train + SBD val + VOC train) - VOC val, the 10,582 images of the usual "aug" set
(hszhao/semseg#67, mmseg voc_aug.py). Lists: ImageSets/SegmentationAug/{train_aug,val}.txt.
Re-running does nothing once prepared; --force redoes it.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from . import prepare as P

NAME = "voc"
VOC_URLS = ("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",  # official host
            "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar")  # its mirror (torchvision)
VOC_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"  # as in torchvision.datasets.VOCSegmentation
SBD_URL = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz"
SBD_MD5 = "82b4d87ceb2ed10f6038a1cba92111cb"  # as in torchvision.datasets.SBDataset
EXPECTED = {"train_aug": 10582, "val": 1449}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    P.common_args(ap, NAME)
    ap.add_argument("--voc-archive", type=Path, default=None, help="VOCtrainval_11-May-2012.tar you already have")
    ap.add_argument("--sbd-archive", type=Path, default=None, help="SBD benchmark.tgz you already have")
    ap.add_argument("--voc-url", action="append", default=None,
                    help="VOC 2012 trainval URL, repeatable (default: the Oxford host, then its thor mirror)")
    ap.add_argument("--sbd-url", default=SBD_URL, help="SBD URL (default: the Berkeley host)")
    return P.parse_args(ap, argv)


def _ids(path: Path) -> list[str]:
    if not path.is_file():
        raise ValueError(f"{path} is missing; the archive is incomplete or not the expected release")
    return [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]


def main(argv=None) -> int:
    args = parse_args(argv)
    root: Path = args.root
    if P.already_prepared(root, NAME, "VOC aug", args.force):
        return 0
    dl_dir = args.download_dir or root / "downloads"
    progress = not args.quiet
    verify_md5 = not args.no_verify
    voc_tar = P.fetch_archive(args.voc_archive, args.voc_url or VOC_URLS, VOC_MD5,
                              dl_dir / "VOCtrainval_11-May-2012.tar", verify_md5, progress)
    sbd_tgz = P.fetch_archive(args.sbd_archive, args.sbd_url, SBD_MD5, dl_dir / "benchmark.tgz", verify_md5, progress)
    print(f"extracting {voc_tar} and {sbd_tgz} -> {root}")
    P.extract(voc_tar, root, progress=progress, force=args.force)
    P.extract(sbd_tgz, root, progress=progress, force=args.force,
              include=lambda n: "/inst/" not in n and "/inst_" not in n)  # instance labels are not needed
    voc = root / "VOCdevkit" / "VOC2012"
    sbd = root / "benchmark_RELEASE" / "dataset"
    if not voc.is_dir() or not sbd.is_dir():
        raise ValueError(f"expected {voc} and {sbd} after extraction; are these the VOC2012 trainval tar and "
                         f"SBD benchmark.tgz?")

    voc_train, voc_val = _ids(voc / "ImageSets/Segmentation/train.txt"), _ids(voc / "ImageSets/Segmentation/val.txt")
    sbd_ids = set(_ids(sbd / "train.txt")) | set(_ids(sbd / "val.txt"))
    train_aug = sorted((sbd_ids | set(voc_train)) - set(voc_val))
    voc_labelled = {p.stem for p in (voc / "SegmentationClass").glob("*.png")}

    out = voc / "SegmentationClassAug"
    if args.force:
        P.remove_tree(out)
    jobs = []
    for i in sorted(set(train_aug) | set(voc_val) | set(voc_train)):
        dst = out / f"{i}.png"
        if dst.exists():
            continue  # converted by an earlier, interrupted run
        if i in voc_labelled:
            jobs.append(("voc", str(voc / "SegmentationClass" / f"{i}.png"), str(dst)))
        else:
            jobs.append(("sbd", str(sbd / "cls" / f"{i}.mat"), str(dst)))
        if not (voc / "JPEGImages" / f"{i}.jpg").exists() and (sbd / "img" / f"{i}.jpg").exists():
            shutil.copy2(sbd / "img" / f"{i}.jpg", voc / "JPEGImages" / f"{i}.jpg")
    P.parallel_map(P.convert_label, jobs, workers=args.workers, desc="labels -> SegmentationClassAug",
                   progress=progress)

    counts = {"train_aug": P.write_list(voc / "ImageSets/SegmentationAug/train_aug.txt", train_aug),
              "val": P.write_list(voc / "ImageSets/SegmentationAug/val.txt", voc_val)}
    if args.delete_archives:
        for a, given in ((voc_tar, args.voc_archive), (sbd_tgz, args.sbd_archive)):
            if given is None:
                a.unlink()
    P.finish(root, NAME, "VOC aug", counts, EXPECTED, f"pspnet_lite.data.VOCAug(root={str(root)!r})",
             converted=len(jobs))
    return 0


if __name__ == "__main__":
    P.run_script(main)

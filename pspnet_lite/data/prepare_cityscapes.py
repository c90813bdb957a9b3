"""Prepare Cityscapes (fine annotations) for PSPNet §5.4: 19 classes, 2,975 train / 500 val.

Cityscapes needs a free account, so this script cannot download it. Log in at
https://www.cityscapes-dataset.com/downloads/ and download

    gtFine_trainvaltest.zip      (241 MB, packageID=1)
    leftImg8bit_trainvaltest.zip (11 GB,  packageID=3)

then either put both zips in ROOT (or pass --gtfine-zip / --leftimg-zip) or extract them so that
ROOT/gtFine and ROOT/leftImg8bit exist, and run

    pspnet-prepare-cityscapes --root data/cityscapes

(the same command is ``python -m pspnet_lite.data.prepare_cityscapes`` and, in a clone,
``python data_scripts/prepare_cityscapes.py``). It extracts the zips if needed, writes
gtFine/<split>/<city>/*_gtFine_labelTrainIds.png next to each *_gtFine_labelIds.png (the 19 evaluated
classes -> 0..18, every other id -> 255; the same table as cityscapesScripts' createTrainIdLabelImgs,
without its JSON polygons), and the lists ROOT/{train,val}.txt.
Re-running does nothing once prepared; --force redoes it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import prepare as P

NAME = "cityscapes"
EXPECTED = {"train": 2975, "val": 500}
ZIPS = {"gtFine": "gtFine_trainvaltest.zip", "leftImg8bit": "leftImg8bit_trainvaltest.zip"}

INSTRUCTIONS = """Cityscapes is not in {root}. It needs a (free) login, so download it by hand:
  1. register and log in at https://www.cityscapes-dataset.com/login/
  2. from https://www.cityscapes-dataset.com/downloads/ get gtFine_trainvaltest.zip (241 MB) and
     leftImg8bit_trainvaltest.zip (11 GB)
  3. put both zips in {root} (or pass --gtfine-zip and --leftimg-zip) and run this script again."""


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    P.common_args(ap, NAME, download=False)
    ap.add_argument("--gtfine-zip", type=Path, default=None, help="path of gtFine_trainvaltest.zip")
    ap.add_argument("--leftimg-zip", type=Path, default=None, help="path of leftImg8bit_trainvaltest.zip")
    return P.parse_args(ap, argv)


def _locate(root: Path, args) -> bool:
    """Extract the zips where the trees are missing; False if data are missing altogether."""
    given = {"gtFine": args.gtfine_zip, "leftImg8bit": args.leftimg_zip}
    for sub, zip_name in ZIPS.items():
        archive = given[sub] or root / zip_name
        if given[sub] is not None and not archive.is_file():
            raise ValueError(f"--{'gtfine' if sub == 'gtFine' else 'leftimg'}-zip {archive} does not exist; pass the "
                             f"path of the downloaded {zip_name}, or leave the option out and put it in {root}")
        if archive.is_file() and (args.force or not (root / sub).is_dir()):
            print(f"extracting {archive} -> {root}")
            P.extract(archive, root, progress=not args.quiet, force=args.force)
        if not (root / sub).is_dir():
            return False
    return True


def main(argv=None) -> int:
    args = parse_args(argv)
    root: Path = args.root
    if P.already_prepared(root, NAME, "Cityscapes", args.force):
        return 0
    root.mkdir(parents=True, exist_ok=True)
    if not _locate(root, args):
        print(INSTRUCTIONS.format(root=root), file=sys.stderr)
        return 2
    jobs, counts = [], {}
    for split in EXPECTED:
        images = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
        lines = []
        for img in images:
            stem = img.name[: -len("_leftImg8bit.png")]
            gt_dir = root / "gtFine" / split / img.parent.name
            src, dst = gt_dir / f"{stem}_gtFine_labelIds.png", gt_dir / f"{stem}_gtFine_labelTrainIds.png"
            if not src.exists():
                raise ValueError(f"image {img} has no label file {src}; is gtFine complete?")
            if args.force or not dst.exists():
                jobs.append(("cityscapes", str(src), str(dst)))
            lines.append(f"{img.relative_to(root)} {dst.relative_to(root)}")
        counts[split] = P.write_list(root / f"{split}.txt", lines)
    P.parallel_map(P.convert_label, jobs, workers=args.workers, desc="labelIds -> labelTrainIds",
                   progress=not args.quiet)
    P.finish(root, NAME, "Cityscapes", counts, EXPECTED, f"pspnet_lite.data.Cityscapes(root={str(root)!r})",
             converted=len(jobs))
    return 0


if __name__ == "__main__":
    P.run_script(main)

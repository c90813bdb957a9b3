"""Prepare ADE20K SceneParsing (ADEChallengeData2016) for PSPNet §5.2: 150 classes, 20,210 / 2,000.

    pspnet-prepare-ade20k --root data/ade20k     # download (923 MB), verify, extract
    pspnet-prepare-ade20k --archive ~/ADEChallengeData2016.zip --root data/ade20k

The same command is ``python -m pspnet_lite.data.prepare_ade20k`` and, in a clone,
``python data_scripts/prepare_ade20k.py``.

Result: ROOT/ADEChallengeData2016/{images,annotations}/{training,validation}/ as released, plus file
lists ROOT/ADEChallengeData2016/{train,val}.txt ("image mask" lines for SegmentationFolder). The raw
labels stay as released (0 = other, 1..150); ``pspnet_lite.data.ADE20K`` maps 0 -> 255, k -> k-1 when
loading. Re-running does nothing once prepared; --force redoes it. Download resumes if interrupted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import prepare as P

NAME = "ade20k"
URL = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"
MD5 = "7328b3957e407ddae1d3cbf487f149ef"
SUBDIR = "ADEChallengeData2016"
ARCHIVE = "ADEChallengeData2016.zip"
SPLITS = {"train": ("training", 20210), "val": ("validation", 2000)}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    P.common_args(ap, NAME)
    ap.add_argument("--archive", type=Path, default=None,
                    help="an ADEChallengeData2016.zip you already have (skips the download)")
    ap.add_argument("--url", default=URL, help="download URL (default: the MIT CSAIL server)")
    return P.parse_args(ap, argv)


def write_lists(base: Path) -> dict:
    counts = {}
    for split, (sub, _) in SPLITS.items():
        images = sorted((base / "images" / sub).glob("*.jpg"))
        missing = [p.name for p in images if not (base / "annotations" / sub / f"{p.stem}.png").exists()]
        if missing:
            raise ValueError(f"{len(missing)} ADE20K {split} images have no annotation, e.g. "
                             f"annotations/{sub}/{Path(missing[0]).stem}.png; the archive is incomplete")
        counts[split] = P.write_list(base / f"{split}.txt",
                                     (f"images/{sub}/{p.name} annotations/{sub}/{p.stem}.png" for p in images))
    return counts


def main(argv=None) -> int:
    args = parse_args(argv)
    root: Path = args.root
    if P.already_prepared(root, NAME, "ADE20K", args.force):
        return 0
    progress = not args.quiet
    archive = P.fetch_archive(args.archive, args.url, MD5, (args.download_dir or root / "downloads") / ARCHIVE,
                              verify_md5=not args.no_verify, progress=progress)
    print(f"extracting {archive} -> {root}")
    P.extract(archive, root, progress=progress, force=args.force)
    base = root / SUBDIR
    if not (base / "images").is_dir():
        raise ValueError(f"{archive} did not contain {SUBDIR}/images; is it the SceneParsing challenge zip?")
    counts = write_lists(base)
    if args.delete_archives and args.archive is None:
        archive.unlink()
    P.finish(root, NAME, "ADE20K", counts, {split: n for split, (_, n) in SPLITS.items()},
             f"pspnet_lite.data.ADE20K(root={str(root)!r})", archive=str(archive))
    return 0


if __name__ == "__main__":
    P.run_script(main)

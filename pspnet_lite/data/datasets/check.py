"""The data-set check: ``python -m pspnet_lite.data.datasets {ade20k,voc,cityscapes} [--root DIR] [--split S]``.

Reads every sample of each split and checks it (:meth:`SegmentationDataset.validate`: image readable,
mask present and of the same size, labels in 0..C-1 or 255), so a broken file shows up here rather than
as a CUDA device-side assert in the middle of a run (CSAILVision/semantic-segmentation-pytorch#181).
A bad value on the command line (an unknown data set, a missing root, a split the data set does not
have, a bad number) ends in one ``error: ...`` line and exit status 2 (:func:`pspnet_lite.cli.cli_errors`);
samples that fail the check are listed, one per line, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import sys

from ...cli import ArgumentParser, cli_errors, parse_list
from .loaders import DATASETS

__all__ = ["get_args_parser", "main"]

DEFAULT_SPLITS = ("train", "val")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m pspnet_lite.data.datasets", add_help=add_help,
        description="Validate a prepared data set: every image readable, every mask present and of the same "
                    "size, labels in 0..C-1 or 255 (ignore).")
    p.add_argument("dataset", metavar="DATASET", help=f"the data set to check: {', '.join(sorted(DATASETS))}")
    p.add_argument("--root", default=None,
                   help="data root (default: $PSPNET_DATA/DATASET, or ./data/DATASET when PSPNET_DATA is unset)")
    p.add_argument("--split", action="append", default=None, metavar="SPLIT",
                   help="split(s) to check, comma-separated or repeated (default: train,val)")
    p.add_argument("--max-errors", default="20", metavar="N", help="failed samples listed per split (default: 20)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _dataset_class(name: str):
    key = name.lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; the check knows {', '.join(sorted(DATASETS))} "
                         f"(ContextScenes is generated and needs no check)")
    return DATASETS[key]


def _max_errors(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"--max-errors must be a whole number >= 1; got {text!r} (e.g. --max-errors 20)")
    return n


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Check the splits; 0 when every sample passes, 1 when some fail (listed on stderr). A bad value:
    one ``error:`` line, exit 2. ``prog``: the command's name in usage and errors (the console script's)."""
    with cli_errors():
        parser = get_args_parser()
        parser.prog = prog or parser.prog
        args = parser.parse_args(argv)
        cls = _dataset_class(args.dataset)
        splits = [s for value in args.split or [] for s in parse_list(value, str, "--split")] or DEFAULT_SPLITS
        max_errors = _max_errors(args.max_errors)
        datasets = [cls(args.root, split) for split in splits]  # a bad split or a missing root stops here
    status = 0
    for ds in datasets:
        try:
            rep = ds.validate(progress=not args.quiet, max_errors=max_errors)
        except ValueError as e:
            print(f"{ds}: {e}", file=sys.stderr)
            status = 1
            continue
        present = int((rep["label_counts"][: ds.num_classes] > 0).sum())
        print(f"{ds}: {rep['checked']} samples OK, {present}/{ds.num_classes} classes present, "
              f"{rep['label_counts'][ds.ignore_index]} ignore pixels")
    return status

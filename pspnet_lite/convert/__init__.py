"""Converters from other frameworks' files into pspnet_lite checkpoints: ``python -m pspnet_lite.convert``.

* ``caffe PROTOTXT CAFFEMODEL --out FILE``: the authors' Caffe release of PSPNet (hszhao/PSPNet), with its
  preprocessing and test protocol (:mod:`pspnet_lite.convert.caffe`; needs the ``protobuf`` package, the
  ``caffe`` extra).

The command line follows the package's others (:mod:`pspnet_lite.cli`): ``get_args_parser()``, ``main(argv)``,
and a bad file or flag ends in one ``error: ...`` line and exit status 2.
"""
from __future__ import annotations

import argparse
import sys

from .. import checkpoint
from ..cli import ArgumentParser, cli_errors
from .caffe import convert


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = ArgumentParser("python -m pspnet_lite.convert", add_help=add_help,
                       description="Convert other frameworks' PSPNet files into pspnet_lite checkpoints.")
    sub = p.add_subparsers(dest="source", required=True, metavar="{caffe}")
    c = sub.add_parser("caffe", help="the authors' Caffe release (hszhao/PSPNet): deploy prototxt + caffemodel",
                       description="Convert a PSPNet of the authors' Caffe release (a deploy .prototxt of "
                                   "evaluation/prototxt and its .caffemodel) into a checkpoint that evaluate and "
                                   "predict load with the release's preprocessing (BGR minus the mean, no std) and "
                                   "test protocol (sliding 473/713 windows, flip).")
    c.error = p.error  # one-line errors for the subcommand's flags too
    c.add_argument("prototxt", help="the deploy prototxt, e.g. evaluation/prototxt/pspnet50_ADE20K_473.prototxt")
    c.add_argument("caffemodel", help="its weights, e.g. evaluation/model/pspnet50_ADE20K.caffemodel")
    c.add_argument("--out", required=True, help="checkpoint file to write (e.g. pspnet50_ade20k.pt)")
    c.add_argument("--dataset", default=None, choices=["ade20k", "voc", "cityscapes"],
                   help="the network's data set (default: from its classes: 150 ade20k, 21 voc, 19 cityscapes)")
    return p


def main(argv: list[str] | argparse.Namespace | None = None) -> dict:
    """Entry point; returns the checkpoint dict written. Bad flags or files: one ``error:`` line, exit 2."""
    args = argv if isinstance(argv, argparse.Namespace) else get_args_parser().parse_args(argv)
    with cli_errors():
        result = convert(args.prototxt, args.caffemodel, dataset=args.dataset, log=print)
        checkpoint.save(result.checkpoint, args.out)
        print(f"wrote {args.out}")
        return result.checkpoint


if __name__ == "__main__":
    main(sys.argv[1:])

"""The console scripts ``pip install pspnet-lite`` puts on the PATH (``[project.scripts]`` in pyproject.toml).

=========================  ====================================================================
script                     the same command as
=========================  ====================================================================
pspnet-train               ``python -m pspnet_lite.train``
pspnet-evaluate            ``python -m pspnet_lite.evaluate``
pspnet-predict             ``python -m pspnet_lite.predict``
pspnet-bench               ``python -m pspnet_lite.bench``
pspnet-convert             ``python -m pspnet_lite.convert`` (the authors' Caffe models; the ``[caffe]`` extra)
pspnet-export              ``python -m pspnet_lite.export`` (a fixed-size ONNX model; the ``[export]`` extra)
pspnet-datasets            ``python -m pspnet_lite.data.datasets`` (the data-set check)
pspnet-prepare-ade20k      ``python -m pspnet_lite.data.prepare_ade20k`` (``data_scripts/`` in a clone)
pspnet-prepare-voc         ``python -m pspnet_lite.data.prepare_voc``
pspnet-prepare-cityscapes  ``python -m pspnet_lite.data.prepare_cityscapes``
=========================  ====================================================================

A console script calls its function with no arguments and exits with what it returns. The modules' ``main``
functions return their results to Python callers (a run record, scores, written paths), which ``sys.exit`` would
print and turn into status 1, so each function here parses ``sys.argv`` under the script's own name (usage lines
and ``error:`` hints say ``pspnet-train``, not ``python -m ...``), calls ``main`` and returns the exit status.
Errors end as they do under ``python -m``: one ``error:`` line and status 2 (or 1 where the module says so).
Each function imports only its own command's module, when it runs.
"""
from __future__ import annotations

import importlib
from typing import NoReturn

__all__ = ["train", "evaluate", "predict", "bench", "convert", "export", "datasets", "prepare_ade20k", "prepare_voc",
           "prepare_cityscapes"]


def _command(module: str, prog: str) -> int:
    """Run a command line built on ``get_args_parser()`` + ``main(args)`` (:mod:`pspnet_lite.cli`) as ``prog``."""
    mod = importlib.import_module(module)
    parser = mod.get_args_parser()
    parser.prog = prog
    mod.main(parser.parse_args())
    return 0


def _prepare(module: str) -> NoReturn:
    """Run a data preparation command (``main(argv)``) as its ``data_scripts/`` wrapper does: exit with its
    status; a user error (a bad value, a missing archive, a wrong checksum) is one ``error:`` line, status 1."""
    from .data.prepare import run_script  # lazy: torchvision and OpenCV only for the preparation commands

    run_script(importlib.import_module(module).main)


def train() -> int:
    """``pspnet-train``: train PSPNet (``python -m pspnet_lite.train``; DDP: ``torchrun -m pspnet_lite.train``)."""
    return _command("pspnet_lite.train.cli", "pspnet-train")


def evaluate() -> int:
    """``pspnet-evaluate``: score a checkpoint or a folder of predictions (``python -m pspnet_lite.evaluate``)."""
    return _command("pspnet_lite.evaluate", "pspnet-evaluate")


def predict() -> int:
    """``pspnet-predict``: masks and overlays for image files (``python -m pspnet_lite.predict``)."""
    return _command("pspnet_lite.predict", "pspnet-predict")


def bench() -> int:
    """``pspnet-bench``: training and inference throughput (``python -m pspnet_lite.bench``)."""
    return _command("pspnet_lite.bench", "pspnet-bench")


def convert() -> int:
    """``pspnet-convert``: an authors' Caffe model as a checkpoint (``python -m pspnet_lite.convert caffe ...``)."""
    return _command("pspnet_lite.convert", "pspnet-convert")


def export() -> int:
    """``pspnet-export``: a checkpoint as a fixed-size ONNX model (``python -m pspnet_lite.export``)."""
    return _command("pspnet_lite.export", "pspnet-export")


def datasets() -> int:
    """``pspnet-datasets``: check a prepared data set (``python -m pspnet_lite.data.datasets``); 1 if samples fail."""
    return importlib.import_module("pspnet_lite.data.datasets.check").main(prog="pspnet-datasets")


def prepare_ade20k() -> NoReturn:
    """``pspnet-prepare-ade20k``: download, check and list ADE20K (:mod:`pspnet_lite.data.prepare_ade20k`)."""
    return _prepare("pspnet_lite.data.prepare_ade20k")


def prepare_voc() -> NoReturn:
    """``pspnet-prepare-voc``: VOC 2012 + SBD train_aug (:mod:`pspnet_lite.data.prepare_voc`)."""
    return _prepare("pspnet_lite.data.prepare_voc")


def prepare_cityscapes() -> NoReturn:
    """``pspnet-prepare-cityscapes``: Cityscapes' train ids and lists (:mod:`pspnet_lite.data.prepare_cityscapes`)."""
    return _prepare("pspnet_lite.data.prepare_cityscapes")

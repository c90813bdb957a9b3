#!/usr/bin/env python
"""Prepare PASCAL VOC 2012 + SBD train_aug: ``python data_scripts/prepare_voc.py --root DIR`` in a clone.

A thin wrapper of :mod:`pspnet_lite.data.prepare_voc` (flags, steps and docs there): the same command is
``pspnet-prepare-voc`` once the package is installed, or ``python -m pspnet_lite.data.prepare_voc``.
"""

from pspnet_lite.data.prepare import run_script
from pspnet_lite.data.prepare_voc import main

__all__ = ["main"]

if __name__ == "__main__":
    run_script(main)

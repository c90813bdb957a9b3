#!/usr/bin/env python
"""Prepare Cityscapes (fine): ``python data_scripts/prepare_cityscapes.py --root DIR`` in a clone.

A thin wrapper of :mod:`pspnet_lite.data.prepare_cityscapes` (flags, steps and docs there): the same command is
``pspnet-prepare-cityscapes`` once the package is installed, or ``python -m pspnet_lite.data.prepare_cityscapes``.
"""

from pspnet_lite.data.prepare import run_script
from pspnet_lite.data.prepare_cityscapes import main

__all__ = ["main"]

if __name__ == "__main__":
    run_script(main)

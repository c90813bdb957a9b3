#!/usr/bin/env python
"""Prepare ADE20K SceneParsing: ``python data_scripts/prepare_ade20k.py --root DIR`` in a clone.

A thin wrapper of :mod:`pspnet_lite.data.prepare_ade20k` (flags, steps and docs there): the same command is
``pspnet-prepare-ade20k`` once the package is installed, or ``python -m pspnet_lite.data.prepare_ade20k``.
"""

from pspnet_lite.data.prepare import run_script
from pspnet_lite.data.prepare_ade20k import main

__all__ = ["main"]

if __name__ == "__main__":
    run_script(main)

"""``python -m pspnet_lite.data.datasets``: the data-set check (:mod:`pspnet_lite.data.datasets.check`)."""

import sys

from .check import main

if __name__ == "__main__":
    sys.exit(main())

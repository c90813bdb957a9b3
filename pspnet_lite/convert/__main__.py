"""``python -m pspnet_lite.convert``: see :mod:`pspnet_lite.convert`."""
from . import main

main()

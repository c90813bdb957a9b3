"""``python -m pspnet_lite.train`` (and ``torchrun ... -m pspnet_lite.train``)."""
from .cli import main

main()

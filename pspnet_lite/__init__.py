"""pspnet_lite: the PSPNet paper (Zhao et al., CVPR 2017) as a small, tested PyTorch package.

    >>> from pspnet_lite import PSPNet
    >>> model = PSPNet(num_classes=150)          # the paper's ADE20K PSPNet-50, layer for layer

Modules: ``backbone`` (dilated ResNet), ``ppm`` (pyramid pooling, section 3.2), ``model`` (PSPNet,
section 3.3), ``losses`` (deep supervision, section 4), ``metrics``, ``inference`` (sliding window,
multi-scale, flip), ``weights``, ``data`` (data sets and augmentation), ``train`` / ``evaluate`` /
``predict`` / ``bench`` (command lines), ``viz`` and ``widgets`` (the book's figures and explorer).
"""

__version__ = "0.1.0"

from .backbone import BACKBONES, DilatedResNet
from .inference import PROTOCOLS, Protocol
from .losses import DeepSupervisionLoss
from .metrics import ConfusionMatrix, SegmentationScores
from .model import PSPNet
from .ppm import PyramidPooling
from .weights import LoadReport, load_weights

__all__ = [
    "BACKBONES", "DilatedResNet", "PyramidPooling", "PSPNet", "DeepSupervisionLoss", "ConfusionMatrix",
    "SegmentationScores", "Protocol", "PROTOCOLS", "load_weights", "LoadReport",
]
# inference.predict / inference.evaluate are not re-exported here: the command-line modules
# pspnet_lite.predict and pspnet_lite.evaluate would replace them as package attributes once imported.

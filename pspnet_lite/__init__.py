"""pspnet_lite: the PSPNet paper (Zhao et al., CVPR 2017) as a small, tested PyTorch package.

    >>> from pspnet_lite import PSPNet
    >>> model = PSPNet(num_classes=150)          # the paper's ADE20K PSPNet-50, layer for layer

Laid out by role; arrows point down only (the network never imports scoring, data or training):

* the paper's network and its weights: ``backbone`` (dilated ResNet, §3.3), ``ppm`` (pyramid pooling,
  §3.2), ``model`` (``PSPNetConfig`` -> ``PSPNet``, §3.3), ``losses`` (deep supervision, §4), ``weights``
  (the key layouts of ImageNet ResNets and of the authors' checkpoints);
* scoring: ``metrics`` (exact confusion matrix), ``inference`` (sliding window, multi-scale, flip),
  ``cityscapes_metrics`` (the four Cityscapes scores), ``submission`` (the evaluation servers' formats);
* ``data``: data sets, the paper's augmentation, ContextScenes;
* ``checkpoint``: the one reader and writer of model files (file -> model, config, state);
* ``train``: config, presets, sampling, the trainer, the run log, grids of runs, distributed helpers
  and the command line (``python -m pspnet_lite.train``);
* ``evaluate``, ``predict``, ``bench``: thin command lines over the above (``cli`` holds what they share);
  ``export`` writes a fixed-size ONNX model, which ``onnx_runtime`` runs for ``predict --backend onnxruntime``;
* ``book``: what only the chapters need: notebook helpers, figures, the widget, the paper's tables,
  FLOP and parameter counts.
"""

__version__ = "0.1.0"

from .backbone import BACKBONES, DilatedResNet
from .checkpoint import load_model, load_weights
from .inference import PROTOCOLS, Protocol
from .losses import DeepSupervisionLoss
from .metrics import ConfusionMatrix, SegmentationScores
from .model import PSPNet, PSPNetConfig
from .ppm import PyramidPooling
from .weights import LoadReport

__all__ = [
    "BACKBONES", "DilatedResNet", "PyramidPooling", "PSPNet", "PSPNetConfig", "DeepSupervisionLoss",
    "ConfusionMatrix", "SegmentationScores", "Protocol", "PROTOCOLS", "load_weights", "load_model", "LoadReport",
]
# inference.predict / inference.evaluate are not re-exported here: the command-line modules
# pspnet_lite.predict and pspnet_lite.evaluate would replace them as package attributes once imported.

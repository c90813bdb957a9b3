"""PSPNet: the pyramid scene parsing network (paper §3.3, Fig. 3; deep supervision §4, Fig. 4).

Fig. 3 left to right: (a) input image -> (b) dilated ResNet feature map at 1/8 resolution
(:class:`~pspnet_lite.backbone.DilatedResNet`) -> (c) pyramid pooling module, upsample and concat
(:class:`~pspnet_lite.ppm.PyramidPooling`) -> (d) "a convolution layer to get the final per-pixel
prediction" (``cls``), upsampled to the input size. During training an auxiliary classifier on
stage 3 (``aux``, "after res4b22", §4) adds a second loss weighted by alpha = 0.4.

Layer for layer this is the authors' PyTorch release (hszhao/semseg ``PSPNet``): deep stem,
every block of stages 3/4 dilated 2/4, PPM 1-2-3-6 with 1/4 reduction, ``cls`` = 3x3 conv 4096->512
(no bias) + BN + ReLU + Dropout2d(0.1) + 1x1 conv with bias, ``aux`` = the same on 1024 channels with
256 in the middle, bilinear upsampling with ``align_corners=True``. Two deliberate differences:
any input size works (semseg needs (H-1) % 8 == 0; on those sizes the outputs are identical), and
the head widths scale with the backbone width (512 = 8w, 256 = 4w), so the "lite" net stays small.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import DilatedResNet, check_images
from .ppm import PAPER_BINS, POOLINGS, PyramidPooling, check_bins


def conv_bn_relu_classifier(cin: int, mid: int, num_classes: int, dropout: float) -> nn.Sequential:
    """3x3 conv (no bias) + BN + ReLU + Dropout2d + 1x1 conv to classes: semseg's ``cls``/``aux`` layout."""
    return nn.Sequential(
        nn.Conv2d(cin, mid, 3, padding=1, bias=False),  # cls.0 / aux.0
        nn.BatchNorm2d(mid),                            # cls.1 / aux.1
        nn.ReLU(inplace=True),
        nn.Dropout2d(dropout),
        nn.Conv2d(mid, num_classes, 1),                 # cls.4 / aux.4
    )


class PSPNet(nn.Module):
    """Pyramid Scene Parsing Network (paper §3.3, Fig. 3) with the auxiliary loss head of §4.

    Args:
        num_classes: output classes (150 for ADE20K, 21 for VOC, 19 for Cityscapes).
        backbone: "resnet50" (default; the paper's ablations), "resnet101", "resnet152",
            "resnet269" or "lite" (1 block per stage, width 16; for CPUs).
        width: backbone width (64 / 16 for lite); the heads use 8*width and 4*width mid channels.
        bins: pyramid levels (§3.2); ``()`` (or None) gives the dilated-FCN baseline of Table 1/2.
        pooling: "avg" or "max" (Table 1). reduction: the 1/N dimension reduction "DR" (Table 1).
        aux: build the auxiliary classifier on stage 3 (§4); it is used only in training.
        stem, dilation, output_stride, layers: see :class:`~pspnet_lite.backbone.DilatedResNet`.
        dropout: Dropout2d probability before both 1x1 classifiers (0.1 as the authors').
        align_corners: of every bilinear upsampling (True as the authors').

    ``forward(x)`` with x (N, 3, H, W), any H, W: in training returns ``(main, aux)`` logits, both
    (N, num_classes, H, W) (aux is None if ``aux=False``); in eval returns the main logits only.
    ``PSPNet(**model.config)`` rebuilds the same architecture. The default ``PSPNet(num_classes=150)``
    is the authors' ADE20K PSPNet-50: 49,180,908 parameters with aux, 46,782,550 without.
    """

    def __init__(self, num_classes: int = 150, backbone: str = "resnet50", width: int | None = None,
                 bins: Sequence[int] | None = PAPER_BINS, pooling: str = "avg", reduction: bool = True,
                 aux: bool = True, stem: str = "deep", dilation: str = "full", output_stride: int = 8,
                 dropout: float = 0.1, align_corners: bool = True, layers: Sequence[int] | None = None):
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int (150 for ADE20K); got {num_classes!r}.")
        bins = check_bins(() if bins is None else bins, allow_empty=True)
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose 'avg' (the paper's) or 'max'.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}.")
        self.backbone = DilatedResNet(backbone, width, stem, output_stride, dilation, layers)
        width = self.backbone.width
        self.config = dict(num_classes=num_classes, backbone=backbone, width=width, bins=bins, pooling=pooling,
                           reduction=bool(reduction), aux=bool(aux), stem=stem, dilation=dilation,
                           output_stride=output_stride, dropout=float(dropout),
                           align_corners=bool(align_corners), layers=None if layers is None else tuple(layers))
        self.num_classes, self.align_corners = num_classes, bool(align_corners)
        c3, c4 = self.backbone.aux_channels, self.backbone.out_channels  # 1024, 2048
        self.ppm = PyramidPooling(c4, bins, pooling, reduction, align_corners) if bins else None
        feat = self.ppm.out_channels if self.ppm is not None else c4     # 4096 (PSPNet) or 2048 (FCN)
        self.cls = conv_bn_relu_classifier(feat, 8 * width, num_classes, dropout)          # 4096 -> 512 -> C
        self.aux = conv_bn_relu_classifier(c3, 4 * width, num_classes, dropout) if aux else None  # 1024 -> 256 -> C

    def forward(self, x: torch.Tensor):
        check_images(x)
        size = x.shape[-2:]                                # (a) input (N, 3, H, W)
        c3, c4 = self.backbone(x)                          # (b) (N, 1024, H/8, W/8), (N, 2048, H/8, W/8)
        f = self.ppm(c4) if self.ppm is not None else c4   # (c) (N, 4096, H/8, W/8)
        main = self.upsample(self.cls(f), size)            # (d) (N, C, H/8, W/8) -> (N, C, H, W)
        if not self.training:
            return main
        aux = self.upsample(self.aux(c3), size) if self.aux is not None else None  # (N, C, H, W)
        return main, aux

    def upsample(self, logits: torch.Tensor, size) -> torch.Tensor:
        """Bilinear upsampling of logits to the input size (the authors' ``zoom_factor`` 8)."""
        return F.interpolate(logits, size, mode="bilinear", align_corners=self.align_corners)

    def head_modules(self) -> list[nn.Module]:
        """The newly initialised modules (ppm, cls, aux) that the authors train at 10x the base LR (§5.1)."""
        return [m for m in (self.ppm, self.cls, self.aux) if m is not None]

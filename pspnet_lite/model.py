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
At sizes other than 8k+1 the ``align_corners=True`` upsampling is stretched (up to 7 pixels at the bottom
and right edges); inference pads such images to 8k+1 and crops the output for networks trained on 8k+1 crops
(``Protocol(align=True)``, :func:`pspnet_lite.inference.aligned_forward`); ``forward`` itself never does.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import DILATIONS, OUTPUT_STRIDES, STEMS, DilatedResNet, check_images
from .ppm import PAPER_BINS, POOLINGS, PyramidPooling, check_bins


def _field(default, help: str, **metadata):
    """A config field with its help text (the command lines show it), and its choices if any."""
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def conv_bn_relu_classifier(cin: int, mid: int, num_classes: int, dropout: float) -> nn.Sequential:
    """3x3 conv (no bias) + BN + ReLU + Dropout2d + 1x1 conv to classes: semseg's ``cls``/``aux`` layout."""
    return nn.Sequential(
        nn.Conv2d(cin, mid, 3, padding=1, bias=False),  # cls.0 / aux.0
        nn.BatchNorm2d(mid),                            # cls.1 / aux.1
        nn.ReLU(inplace=True),
        nn.Dropout2d(dropout),
        nn.Conv2d(mid, num_classes, 1),                 # cls.4 / aux.4
    )


@dataclass(frozen=True)
class PSPNetConfig:
    """Every architecture setting of :class:`PSPNet`, in one place (as nanoGPT's ``GPTConfig``).

    ``PSPNet(config)`` builds the network, every trainer checkpoint stores ``dataclasses.asdict(config)``,
    the trainer's :class:`~pspnet_lite.train.config.TrainConfig` holds one, and the architecture flags of
    ``evaluate`` / ``predict`` are generated from these fields.

    Fields:
        num_classes: output classes (150 for ADE20K, 21 for VOC, 19 for Cityscapes). In a
            ``TrainConfig`` it may be None: the data set's.
        backbone: "resnet50" (default; the paper's ablations), "resnet101", "resnet152",
            "resnet269" or "lite" (1 block per stage, width 16; for CPUs).
        width: backbone width (None: 64, 16 for lite); the heads use 8*width and 4*width mid channels.
        bins: pyramid levels (§3.2); ``()`` gives the dilated-FCN baseline of Table 1/2.
        pooling: "avg" or "max" (Table 1). reduction: the 1/N dimension reduction "DR" (Table 1).
        aux: build the auxiliary classifier on stage 3 (§4); it is used only in training.
        stem, dilation, output_stride, layers, stride_in_1x1: see :class:`~pspnet_lite.backbone.DilatedResNet`
            (``stride_in_1x1=True`` is the Caffe release's ResNet-50, converted by :mod:`pspnet_lite.convert`).
        dropout: Dropout2d probability before both 1x1 classifiers (0.1 as the authors').
        align_corners: of every bilinear upsampling (True as the authors').
    """

    num_classes: int | None = _field(150, "classes (None in a training config: the data set's)")
    backbone: str = _field("resnet50", "resnet50|resnet101|resnet152|resnet269|lite")
    width: int | None = _field(None, "backbone width (None = 64, 16 for lite)")
    bins: tuple[int, ...] = _field(PAPER_BINS, "pyramid bins; [] = dilated-FCN baseline (§3.2, Table 1)")
    pooling: str = _field("avg", "PPM pooling avg|max (Table 1)", choices=tuple(POOLINGS))
    reduction: bool = _field(True, "PPM 1/N dimension reduction (Table 1)")
    aux: bool = _field(True, "auxiliary head on stage 3 (§4)")
    stem: str = _field("deep", "deep (authors') or torchvision stem", choices=STEMS)
    dilation: str = _field("full", "full (authors') or contracted (mmseg) dilation", choices=DILATIONS)
    output_stride: int = _field(8, "backbone output stride 8|16|32", choices=tuple(OUTPUT_STRIDES))
    layers: tuple[int, ...] | None = _field(None, "blocks per stage, e.g. 1,1,2,1 (None = the backbone's: "
                                            "3,4,6,3 for resnet50)")
    stride_in_1x1: bool = _field(False, "a stage's stride 2 on its first block's 1x1 conv, not the 3x3 "
                                 "(the Caffe release's pspnet50_ADE20K)")
    dropout: float = _field(0.1, "Dropout2d before the classifiers")
    align_corners: bool = _field(True, "bilinear align_corners (authors: True)")

    def __post_init__(self):
        # JSON and command lines deliver lists; the config keeps tuples so that it hashes and compares
        object.__setattr__(self, "bins", tuple(self.bins or ()))
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(self.layers))

    @classmethod
    def from_dict(cls, d: Mapping) -> PSPNetConfig:
        """The config of a stored dict (a checkpoint's ``model_config``); unknown keys are a ValueError."""
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown PSPNetConfig field(s) {unknown}; fields are "
                             f"{[f.name for f in dataclasses.fields(cls)]}")
        return cls(**d)

    def to_dict(self) -> dict:
        """JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


class PSPNet(nn.Module):
    """Pyramid Scene Parsing Network (paper §3.3, Fig. 3) with the auxiliary loss head of §4.

    ``PSPNet(config)`` with a :class:`PSPNetConfig`, or ``PSPNet(num_classes=150, backbone=..., ...)``
    with its fields as keywords (see :class:`PSPNetConfig` for what each means; ``PSPNet(150)`` also
    works, the class count being the first field).

    ``forward(x)`` with x (N, 3, H, W), any H, W: in training returns ``(main, aux)`` logits, both
    (N, num_classes, H, W) (aux is None if ``aux=False``); in eval returns the main logits only.
    ``model.config`` is the resolved :class:`PSPNetConfig` (``width`` filled in), and
    ``PSPNet(model.config)`` rebuilds the same architecture. The default ``PSPNet(num_classes=150)``
    is the authors' ADE20K PSPNet-50: 49,180,908 parameters with aux, 46,782,550 without.
    """

    def __init__(self, config: PSPNetConfig | int | None = None, **fields):
        super().__init__()
        if isinstance(config, int) and not isinstance(config, bool):  # PSPNet(150, ...): the class count
            config, fields = None, {"num_classes": config, **fields}
        if config is not None and fields:
            raise ValueError("pass a PSPNetConfig or keyword fields, not both; "
                             "use dataclasses.replace(config, **fields)")
        if config is None:
            unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(PSPNetConfig)})
            if unknown:
                raise TypeError(f"PSPNet got unknown argument(s) {unknown}; see PSPNetConfig for the fields")
            config = PSPNetConfig(**fields)
        elif not isinstance(config, PSPNetConfig):
            raise TypeError(f"PSPNet(config) expects a PSPNetConfig; got {type(config).__name__} "
                            "(write PSPNet(num_classes=N) for a class count)")
        c = config
        if not isinstance(c.num_classes, int) or isinstance(c.num_classes, bool) or c.num_classes < 1:
            raise ValueError(f"num_classes must be a positive int (150 for ADE20K); got {c.num_classes!r}.")
        bins = check_bins(c.bins, allow_empty=True)
        if c.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {c.pooling!r}; choose 'avg' (the paper's) or 'max'.")
        if not 0.0 <= c.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {c.dropout!r}.")
        self.backbone = DilatedResNet(c.backbone, c.width, c.stem, c.output_stride, c.dilation, c.layers,
                                      c.stride_in_1x1)
        width = self.backbone.width
        self.config = dataclasses.replace(c, width=width, bins=bins, reduction=bool(c.reduction),
                                          aux=bool(c.aux), dropout=float(c.dropout),
                                          stride_in_1x1=bool(c.stride_in_1x1),
                                          align_corners=bool(c.align_corners))
        self.num_classes, self.align_corners = c.num_classes, bool(c.align_corners)
        c3, c4 = self.backbone.aux_channels, self.backbone.out_channels  # 1024, 2048
        self.ppm = PyramidPooling(c4, bins, c.pooling, c.reduction, c.align_corners) if bins else None
        feat = self.ppm.out_channels if self.ppm is not None else c4     # 4096 (PSPNet) or 2048 (FCN)
        self.cls = conv_bn_relu_classifier(feat, 8 * width, c.num_classes, c.dropout)  # 4096 -> 512 -> C
        self.aux = (conv_bn_relu_classifier(c3, 4 * width, c.num_classes, c.dropout)   # 1024 -> 256 -> C
                    if c.aux else None)

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

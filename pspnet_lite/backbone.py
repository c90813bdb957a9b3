"""The dilated ResNet that gives PSPNet its feature map (paper §3.3, Fig. 3(b); §5.1).

PSPNet starts from "a pretrained ResNet model with the dilated network strategy" whose final
feature map is 1/8 of the input (§3.3). This module builds that ResNet:

* **Depths** 50 / 101 / 152 / 269 (Bottleneck blocks per stage in :data:`BACKBONES`; 269 is the
  paper's Table 3 network) and a width-scaled ``"lite"`` network (1 block per stage, width 16) small
  enough to train on a laptop CPU. Same code, two numbers changed.
* **Stem** ``"deep"``: three 3x3 convolutions 3->w->w->2w (64-64-128 at full width) as in the
  authors' Caffe and PyTorch releases (hszhao/PSPNet ``conv1_1..conv1_3``, hszhao/semseg
  ``deep_base=True``), or ``"torchvision"``: the 7x7 convolution of torchvision's ResNet, so its
  ImageNet weights load strictly.
* **Output stride** 8 (stage 3 dilation 2, stage 4 dilation 4: the paper), 16, or 32 (a plain
  ResNet, for checking against torchvision).
* **Stride placement** (``stride_in_1x1``): the stride 2 of a stage's first block on its 3x3 convolution
  (default: torchvision, hszhao/semseg and the release's ResNet-101 prototxts) or on its first 1x1 convolution
  (the Caffe release's ``pspnet50_ADE20K_473.prototxt``, ``conv3_1_1x1_reduce``; detectron2 calls this
  ``stride_in_1x1``). Same parameters, different features: weights are only correct with the placement
  they were trained with.
* **Dilation** ``"full"``: every block of a dilated stage uses the stage's dilation, first block
  included (the authors' releases); ``"contracted"``: the first block uses half of it (mmsegmentation's
  ``contract_dilation``, CSAIL's ``_nostride_dilate``). Pretrained PSPNet checkpoints are only
  correct with the dilation they were trained with.

Parameter names follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv2``, ``layer1.0.downsample.0``)
and the deep stem adds ``conv2, bn2, conv3, bn3`` like the authors' ``resnet50_v2.pth``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

BACKBONES: dict[str, tuple[int, int, int, int]] = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
    "resnet269": (3, 30, 48, 8),
    "lite": (1, 1, 1, 1),
}
STEMS = ("deep", "torchvision")
DILATIONS = ("full", "contracted")
# (stride, dilation) of stages 2, 3 and 4 for each output stride; stage 1 is always (1, 1).
OUTPUT_STRIDES = {
    8: ((2, 1), (1, 2), (1, 4)),
    16: ((2, 1), (2, 1), (1, 2)),
    32: ((2, 1), (2, 1), (2, 1)),
}


def check_images(x: torch.Tensor, who: str = "PSPNet") -> None:
    """Raise a ValueError unless ``x`` is a float image batch shaped (N, 3, H, W)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{who} expects a torch.Tensor of images shaped (N, 3, H, W); got {type(x).__name__}.")
    if x.dim() != 4 or x.shape[1] != 3:
        hint = " Add a batch dimension with x.unsqueeze(0)." if x.dim() == 3 else ""
        raise ValueError(
            f"{who} expects images shaped (N, 3, H, W) (RGB, ImageNet-normalised); got shape "
            f"{tuple(x.shape)}.{hint}"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"{who} expects float images normalised with the ImageNet mean/std; got dtype {x.dtype}. "
            "Convert with pspnet_lite.data.transforms (or x.float() / 255 then normalise)."
        )


class Bottleneck(nn.Module):
    """ResNet bottleneck block 1x1 -> 3x3 -> 1x1 (x4 channels), dilation on the 3x3.

    The stride sits on the 3x3 convolution (torchvision / semseg, the release's ResNet-101 prototxts), or with
    ``stride_in_1x1=True`` on the first 1x1 (the release's ``pspnet50_ADE20K_473.prototxt``): the same
    parameters, different features.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, stride_in_1x1: bool = False):
        super().__init__()
        out = planes * self.expansion
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, s1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, s3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


def resolve_layers(depth: str, layers: Sequence[int] | None) -> tuple[int, int, int, int]:
    """Blocks per stage: ``layers`` if given (4 positive ints), else ``BACKBONES[depth]``."""
    if depth not in BACKBONES:
        raise ValueError(f"unknown backbone {depth!r}; choose one of {sorted(BACKBONES)}.")
    if layers is None:
        return BACKBONES[depth]
    layers = tuple(layers)
    if len(layers) != 4 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in layers):
        raise ValueError(f"layers must be 4 positive ints (blocks in stages 1-4), e.g. (3, 4, 6, 3); got {layers!r}.")
    return layers


class DilatedResNet(nn.Module):
    """Dilated ResNet feature extractor of PSPNet (paper §3.3, Fig. 3(b)).

    Args:
        depth: a key of :data:`BACKBONES` ("resnet50", "resnet101", "resnet152", "resnet269", "lite").
        width: channels of the first stage (64 for ResNets; default 16 for "lite"). Stage k has
            ``width * 2**(k-1)`` inner and 4x that many output channels.
        stem: "deep" (3x3 convs 3->w->w->2w, the authors') or "torchvision" (one 7x7 conv 3->w).
        output_stride: 8 (paper), 16 or 32 (no dilation).
        dilation: "full" (every block of a dilated stage, the authors') or "contracted" (first block d/2).
        layers: blocks per stage, overriding the depth's numbers (e.g. (2, 2, 2, 2)).
        stride_in_1x1: put a stage's stride on the first block's 1x1 convolution instead of its 3x3 (the
            Caffe release's ResNet-50); default False.

    ``forward(x)`` returns ``(c3, c4)``: stage-3 features (for the auxiliary loss, §4) with
    ``aux_channels`` channels and stage-4 features with ``out_channels`` channels, both at
    ``1/output_stride`` of the input (rounded up).
    """

    def __init__(self, depth: str = "resnet50", width: int | None = None, stem: str = "deep",
                 output_stride: int = 8, dilation: str = "full", layers: Sequence[int] | None = None,
                 stride_in_1x1: bool = False):
        super().__init__()
        blocks = resolve_layers(depth, layers)
        width = (16 if depth == "lite" else 64) if width is None else width
        if not isinstance(width, int) or isinstance(width, bool) or width <= 0:
            raise ValueError(f"width must be a positive int (64 for a ResNet); got {width!r}.")
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose 'deep' (the authors' 3x3 x3) or 'torchvision' (7x7).")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be 8, 16 or 32; got {output_stride!r}.")
        if dilation not in DILATIONS:
            raise ValueError(f"unknown dilation {dilation!r}; choose 'full' (the authors') or 'contracted' (mmseg).")
        self.depth, self.width, self.stem_type = depth, width, stem
        self.output_stride, self.dilation, self.layers = output_stride, dilation, blocks
        self.stride_in_1x1 = bool(stride_in_1x1)

        if stem == "deep":
            self.conv1 = nn.Conv2d(3, width, 3, 2, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, 2 * width, 3, 1, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(2 * width)
            inplanes = 2 * width
        else:
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            inplanes = width
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

        plan = ((1, 1),) + OUTPUT_STRIDES[output_stride]
        for i, (n, (stride, d)) in enumerate(zip(blocks, plan)):
            planes = width * 2**i
            first_d = d // 2 if dilation == "contracted" and d > 1 else d
            stage = [Bottleneck(inplanes, planes, stride, first_d, self.stride_in_1x1)]
            inplanes = planes * Bottleneck.expansion
            stage += [Bottleneck(inplanes, planes, 1, d) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.aux_channels = 4 * width * Bottleneck.expansion  # 1024 at width 64
        self.out_channels = 8 * width * Bottleneck.expansion  # 2048 at width 64
        self._init_weights()

    def _init_weights(self) -> None:
        # He (fan_out) init for convs and unit BN, as torchvision's and the authors' ResNet.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_images(x, "DilatedResNet")
        x = self.relu(self.bn1(self.conv1(x)))       # (N, w, H/2, W/2)
        if self.stem_type == "deep":
            x = self.relu(self.bn2(self.conv2(x)))   # (N, w, H/2, W/2)
            x = self.relu(self.bn3(self.conv3(x)))   # (N, 2w, H/2, W/2)
        x = self.maxpool(x)                          # (N, 2w, H/4, W/4)  (w with the 7x7 stem)
        x = self.layer1(x)                           # (N, 4w, H/4, W/4)    256 at w=64
        x = self.layer2(x)                           # (N, 8w, H/8, W/8)    512
        c3 = self.layer3(x)                          # (N, 16w, H/8, W/8)  1024 (OS 8)
        c4 = self.layer4(c3)                         # (N, 32w, H/8, W/8)  2048 (OS 8)
        return c3, c4

    def extra_repr(self) -> str:
        return (f"depth={self.depth!r}, layers={self.layers}, width={self.width}, stem={self.stem_type!r}, "
                f"output_stride={self.output_stride}, dilation={self.dilation!r}"
                + (", stride_in_1x1=True" if self.stride_in_1x1 else ""))

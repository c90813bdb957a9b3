"""The pyramid pooling module (paper §3.2, Fig. 3(c)).

Read beside Fig. 3(c): the feature map (b) is pooled into ``bins`` grids (1x1 "global" red, 2x2,
3x3, 6x6), each level is reduced by a 1x1 convolution to 1/N of the channels (N = number of levels,
"DR" in Table 1), upsampled bilinearly back to the map's size, and concatenated with the map itself.
At the paper's setting (2048 channels, bins 1, 2, 3, 6) that is 2048 + 4 x 512 = 4096 channels.

Layout matches the authors' release (hszhao/semseg ``PPM``): ``features.{i}`` is
``Sequential(pool, conv1x1, BN, ReLU)``, so their keys ``ppm.features.{i}.1.weight`` and
``ppm.features.{i}.2.*`` load directly. Without reduction ``features.{i}`` is just the pool (no
parameters), and the pooled maps are concatenated at full width (Table 1 rows without "DR").
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

POOLINGS = {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}
PAPER_BINS: tuple[int, ...] = (1, 2, 3, 6)
"""The paper's four pyramid levels (§3.2, Fig. 3(c)): 1x1, 2x2, 3x3 and 6x6 bins. The one definition."""


def check_bins(bins, allow_empty: bool = False) -> tuple[int, ...]:
    """Validate pyramid bin sizes (§3.2): a sequence or 1-D array of positive integers, e.g. (1, 2, 3, 6).

    Any integer type counts (Python ints, NumPy integers such as ``np.array([1, 2, 3, 6])``); bools and
    floats do not. Returns a tuple of plain Python ints, so configs and reprs stay JSON-friendly.
    """
    if isinstance(bins, np.ndarray):
        if bins.ndim != 1:
            raise ValueError(f"bins must be a 1-D sequence of positive ints such as (1, 2, 3, 6); "
                             f"got an array of shape {bins.shape}.")
        bins = bins.tolist()
    if isinstance(bins, (str, bytes)) or not isinstance(bins, Sequence):
        raise ValueError(f"bins must be a sequence of positive ints such as (1, 2, 3, 6) or (6,); got {bins!r}.")
    bins = tuple(bins)
    bad = [b for b in bins if not isinstance(b, numbers.Integral) or isinstance(b, (bool, np.bool_)) or b <= 0]
    if bad:
        raise ValueError(f"bins must be positive ints (pooled grid sizes); got {bins!r} (bad: {bad!r}).")
    if not bins and not allow_empty:
        raise ValueError("bins is empty; PyramidPooling needs at least one level, e.g. (1, 2, 3, 6). "
                         "For the dilated-FCN baseline use PSPNet(bins=()).")
    return tuple(int(b) for b in bins)


class OneValueSafeBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that falls back to its running statistics when a batch has one value per channel.

    The 1x1 level of the pyramid gives a (N, C, 1, 1) map, so with one image per process
    (N = 1, no SyncBatchNorm) a training-mode BatchNorm sees a single value per channel, has no
    variance to normalise by, and PyTorch raises "Expected more than 1 value per channel when training"
    (the authors' release crashes there with batch 1). In exactly that case this layer normalises
    with the running mean/var, like eval mode: the affine weight and bias still get gradients, the
    running statistics are left untouched (one value carries no variance information). Every other
    batch is plain BatchNorm2d, and the parameters and buffers are BatchNorm2d's, so state dicts are
    unchanged. (``nn.SyncBatchNorm.convert_sync_batchnorm`` turns it into a SyncBatchNorm, which
    pools the values of all processes instead.)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class PyramidPooling(nn.Module):
    """Pyramid pooling module of PSPNet (paper §3.2, Fig. 3(c)).

    Args:
        in_channels: channels of the input feature map (2048 for ResNet-50 stage 4).
        bins: grid size of each pyramid level; the paper's four levels are (1, 2, 3, 6). Any positive
            ints work; a level larger than the map repeats its cells (adaptive pooling).
        pooling: "avg" (the paper's choice, Table 1) or "max".
        reduction: 1x1 conv + BN + ReLU to ``in_channels // len(bins)`` per level (the paper's "DR",
            §3.2: "reduce the dimension of context representation to 1/N"); False concatenates the
            pooled maps unreduced.
        align_corners: of the bilinear upsampling (True in the authors' Caffe ``Interp`` and semseg).

    ``out_channels = in_channels + len(bins) * level_channels``. With batch size 1 in training the
    1x1 level's BatchNorm uses running statistics instead of crashing (:class:`OneValueSafeBatchNorm2d`).
    """

    def __init__(self, in_channels: int, bins: Sequence[int] = PAPER_BINS, pooling: str = "avg",
                 reduction: bool = True, align_corners: bool = True):
        super().__init__()
        self.bins = check_bins(bins)
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose 'avg' (the paper's) or 'max'.")
        if not isinstance(in_channels, int) or in_channels <= 0:
            raise ValueError(f"in_channels must be a positive int; got {in_channels!r}.")
        self.pooling, self.reduction, self.align_corners = pooling, bool(reduction), bool(align_corners)
        level_channels = in_channels // len(self.bins) if reduction else in_channels
        if level_channels < 1:
            raise ValueError(f"{len(self.bins)} bins leave {in_channels}/{len(self.bins)} < 1 channel per level; "
                             "use fewer bins or reduction=False.")
        self.features = nn.ModuleList([self._level(b, in_channels, level_channels) for b in self.bins])
        self.level_channels = level_channels
        self.out_channels = in_channels + len(self.bins) * level_channels

    def _level(self, bin_size: int, cin: int, cout: int) -> nn.Sequential:
        pool = POOLINGS[self.pooling](bin_size)
        if not self.reduction:
            return nn.Sequential(pool)
        return nn.Sequential(pool, nn.Conv2d(cin, cout, 1, bias=False), OneValueSafeBatchNorm2d(cout),
                             nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]                                          # x: (N, C, H/8, W/8) from Fig. 3(b)
        pyramid = [x]
        for level in self.features:
            y = level(x)                                             # (N, C/len(bins), bin, bin)
            y = F.interpolate(y, (h, w), mode="bilinear",
                              align_corners=self.align_corners)              # (N, C/len(bins), H/8, W/8)
            pyramid.append(y)
        return torch.cat(pyramid, 1)                                 # (N, 2C, H/8, W/8) with reduction

    def extra_repr(self) -> str:
        return (f"bins={self.bins}, pooling={self.pooling!r}, reduction={self.reduction}, "
                f"out_channels={self.out_channels}")

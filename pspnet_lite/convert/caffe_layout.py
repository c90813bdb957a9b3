"""The release's layer layout, generated from a :class:`~pspnet_lite.model.PSPNetConfig`: what every layer of a
prototxt must be (name, type, bottoms, parameters), with Caffe's own output-size arithmetic for convolution,
pooling (ceil rounding) and ``Interp``; used by :func:`pspnet_lite.convert.caffe.plan` to check a prototxt."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..backbone import BACKBONES, OUTPUT_STRIDES
from ..model import PSPNetConfig
from .caffe_files import CaffeError

BN_EPS = 1e-5
"""Default ``BNParameter.eps`` of the release's fork (``caffe.proto`` line 549); the prototxts do not set it."""

# ------------------------------------------------------------------------------------------------------------
# the release's layout, generated from a PSPNetConfig: what every layer of the prototxt must be


@dataclass
class Node:
    """One expected Caffe layer: its wiring, parameters, blob shapes and where its blobs go."""

    name: str
    type: str
    bottom: tuple[str, ...]
    top: tuple[str, ...]
    params: dict = field(default_factory=dict)
    shapes: tuple[tuple[int, ...], ...] = ()
    keys: tuple[str, ...] = ()  # the pspnet_lite state-dict key of each blob


def _conv_out(n: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (n + 2 * p - (d * (k - 1) + 1)) // s + 1


def caffe_pool_out(n: int, k: int, s: int, p: int) -> int:
    """Caffe's pooled size (``pooling_layer.cpp``): ceil rounding, the last window starting inside the image."""
    out = int(math.ceil((n + 2 * p - k) / s)) + 1
    if p and (out - 1) * s >= n + p:
        out -= 1
    return out


def caffe_interp_zoom(n: int, zoom: int) -> int:
    """Caffe ``Interp``'s output size for ``zoom_factor`` (``interp_layer.cpp``): ``n + (n - 1) (zoom - 1)``."""
    return n + (n - 1) * (zoom - 1)


class _Layout:
    """Builds the list of :class:`Node` of the release's PSPNet for a config and an input size."""

    def __init__(self, cfg: PSPNetConfig, size: tuple[int, int]):
        self.cfg, self.nodes = cfg, []
        self.h, self.w = size

    def conv(self, name, bottom, cin, cout, k, stride, pad, dil, key, bn=True, relu=True, bias=False):
        self.nodes.append(Node(name, "Convolution", (bottom,), (name,),
                               dict(num_output=cout, kernel=(k, k), stride=(stride, stride), pad=(pad, pad),
                                    dilation=(dil, dil), bias_term=bias, group=1),
                               ((cout, cin, k, k),) + (((cout,),) if bias else ()),
                               (f"{key}.weight",) + ((f"{key}.bias",) if bias else ())))
        self.h, self.w = (_conv_out(self.h, k, stride, pad, dil), _conv_out(self.w, k, stride, pad, dil))
        if bn:
            self.bn(f"{name}/bn", name, cout, bn)
        if relu:
            self.relu(f"{name}/relu", name)
        return name

    def bn(self, name, blob, c, key):
        self.nodes.append(Node(name, "BN", (blob,), (blob,), dict(eps=BN_EPS), ((1, c, 1, 1),) * 4,
                               tuple(f"{key}.{leaf}" for leaf in ("weight", "bias", "running_mean", "running_var"))))

    def relu(self, name, blob):
        self.nodes.append(Node(name, "ReLU", (blob,), (blob,), dict(negative_slope=0.0)))

    def build(self, concat: tuple[str, ...] | None) -> list[Node]:
        c, w = self.cfg, self.cfg.width
        b = "backbone"
        x = self.conv("conv1_1_3x3_s2", "data", 3, w, 3, 2, 1, 1, f"{b}.conv1", bn=f"{b}.bn1")
        x = self.conv("conv1_2_3x3", x, w, w, 3, 1, 1, 1, f"{b}.conv2", bn=f"{b}.bn2")
        x = self.conv("conv1_3_3x3", x, w, 2 * w, 3, 1, 1, 1, f"{b}.conv3", bn=f"{b}.bn3")
        self.nodes.append(Node("pool1_3x3_s2", "Pooling", (x,), ("pool1_3x3_s2",),
                               dict(pool="MAX", kernel=(3, 3), stride=(2, 2), pad=(1, 1))))
        self.h, self.w = caffe_pool_out(self.h, 3, 2, 1), caffe_pool_out(self.w, 3, 2, 1)
        x, cin = "pool1_3x3_s2", 2 * w
        plan = ((1, 1),) + OUTPUT_STRIDES[8]
        blocks = c.layers or BACKBONES[c.backbone]
        for s, (n, (stride, dil)) in enumerate(zip(blocks, plan)):
            planes = w * 2**s
            for i in range(n):
                x, cin = self.block(f"conv{s + 2}_{i + 1}", f"{b}.layer{s + 1}.{i}", x, cin, planes,
                                    stride if i == 0 else 1, dil)
        feat, size = x, (self.h, self.w)
        pyramid = self.pyramid(feat, cin, size)
        order = (feat,) + tuple(pyramid)
        if concat is not None and len(set(concat)) == len(concat) and sorted(concat) == sorted(order):
            order = tuple(concat)  # any order of the same blobs: conv5_4's input channels are permuted to match
        self.nodes.append(Node(f"{feat}_concat", "Concat", order, (f"{feat}_concat",), dict(axis=1)))
        mid = 8 * w
        cat_channels = cin + len(pyramid) * (cin // len(pyramid))
        self.conv("conv5_4", f"{feat}_concat", cat_channels, mid, 3, 1, 1, 1, "cls.0", bn="cls.1")
        self.nodes.append(Node("conv5_4/dropout", "Dropout", ("conv5_4",), ("conv5_4",),
                               dict(dropout_ratio=c.dropout)))
        self.conv("conv6", "conv5_4", mid, c.num_classes, 1, 1, 0, 1, "cls.4", bn=False, relu=False, bias=True)
        self.nodes.append(Node("conv6_interp", "Interp", ("conv6",), ("conv6_interp",), dict(zoom_factor=8)))
        return self.nodes

    def block(self, name, key, x, cin, planes, stride, dil):
        out = 4 * planes
        s1, s3 = (stride, 1) if self.cfg.stride_in_1x1 else (1, stride)
        h, w = self.h, self.w
        y = self.conv(f"{name}_1x1_reduce", x, cin, planes, 1, s1, 0, 1, f"{key}.conv1", bn=f"{key}.bn1")
        y = self.conv(f"{name}_3x3", y, planes, planes, 3, s3, dil, dil, f"{key}.conv2", bn=f"{key}.bn2")
        y = self.conv(f"{name}_1x1_increase", y, planes, out, 1, 1, 0, 1, f"{key}.conv3", bn=f"{key}.bn3",
                      relu=False)
        shortcut = x
        if stride != 1 or cin != out:
            after = self.h, self.w
            self.h, self.w = h, w
            shortcut = self.conv(f"{name}_1x1_proj", x, cin, out, 1, stride, 0, 1, f"{key}.downsample.0",
                                 bn=f"{key}.downsample.1", relu=False)
            if (self.h, self.w) != after:
                raise CaffeError(f"{name}: the projection and the residual branch give different sizes")
        self.nodes.append(Node(name, "Eltwise", (shortcut, f"{name}_1x1_increase"), (name,), dict(operation="SUM")))
        self.relu(f"{name}/relu", name)
        return name, out

    def pyramid(self, feat, cin, size) -> list[str]:
        h, w = size
        level = cin // len(self.cfg.bins)
        tops = []
        for i, bin_size in enumerate(self.cfg.bins):
            name = f"{feat}_pool{bin_size}"
            self.nodes.append(Node(name, "Pooling", (feat,), (name,),
                                   dict(pool="AVE", kernel=(h // bin_size, w // bin_size),
                                        stride=(h // bin_size, w // bin_size), pad=(0, 0))))
            self.h = self.w = 1
            self.conv(f"{name}_conv", name, cin, level, 1, 1, 0, 1, f"ppm.features.{i}.1", bn=f"ppm.features.{i}.2")
            self.nodes.append(Node(f"{name}_interp", "Interp", (f"{name}_conv",), (f"{name}_interp",),
                                   dict(size=(h, w))))
            tops.append(f"{name}_interp")
        self.h, self.w = h, w
        return tops


def _pair(values, h=None, w=None, default=0) -> tuple[int, int]:
    """(h, w) of a Caffe ConvolutionParameter's repeated field and its explicit ``_h`` / ``_w``."""
    if h is not None or w is not None:
        return (int(h if h is not None else default), int(w if w is not None else default))
    values = list(values)
    if not values:
        return (default, default)
    return (int(values[0]), int(values[-1])) if len(values) <= 2 else (-1, -1)


def _f32(x: float) -> float:
    """A float32 field as the number it was written as (1e-05, not 9.99999974737875e-06)."""
    return float(f"{x:.7g}")


def layer_params(layer) -> dict:
    """The parameters of a prototxt layer that the mapping depends on, in :class:`Node`'s terms."""
    t = layer.type
    if t == "Convolution":
        p = layer.convolution_param
        return dict(num_output=int(p.num_output),
                    kernel=_pair(p.kernel_size, p.kernel_h if p.HasField("kernel_h") else None,
                                 p.kernel_w if p.HasField("kernel_w") else None),
                    stride=_pair(p.stride, p.stride_h if p.HasField("stride_h") else None,
                                 p.stride_w if p.HasField("stride_w") else None, default=1),
                    pad=_pair(p.pad, p.pad_h if p.HasField("pad_h") else None,
                              p.pad_w if p.HasField("pad_w") else None),
                    dilation=_pair(p.dilation, default=1), bias_term=bool(p.bias_term), group=int(p.group))
    if t == "BN":
        return dict(eps=_f32(layer.bn_param.eps))
    if t == "ReLU":
        return dict(negative_slope=float(layer.relu_param.negative_slope))
    if t == "Pooling":
        p = layer.pooling_param
        if p.global_pooling:
            return dict(pool=p.PoolMethod.Name(p.pool), global_pooling=True)
        kernel = (p.kernel_h, p.kernel_w) if p.HasField("kernel_h") else (p.kernel_size, p.kernel_size)
        stride = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride, p.stride)
        pad = (p.pad_h, p.pad_w) if (p.pad_h or p.pad_w) else (p.pad, p.pad)
        return dict(pool=p.PoolMethod.Name(p.pool), kernel=tuple(map(int, kernel)),
                    stride=tuple(map(int, stride)), pad=tuple(map(int, pad)))
    if t == "Interp":
        p = layer.interp_param
        if p.pad_beg or p.pad_end or p.HasField("shrink_factor"):
            return dict(pad_beg=p.pad_beg, pad_end=p.pad_end, shrink_factor=p.shrink_factor)
        if p.HasField("zoom_factor"):
            return dict(zoom_factor=int(p.zoom_factor))
        return dict(size=(int(p.height), int(p.width)))
    if t == "Eltwise":
        p = layer.eltwise_param
        d = dict(operation=p.EltwiseOp.Name(p.operation))
        if any(c != 1 for c in p.coeff):
            d["coeff"] = tuple(p.coeff)
        return d
    if t == "Concat":
        p = layer.concat_param
        return dict(axis=int(p.axis if p.HasField("axis") else p.concat_dim))
    if t == "Dropout":
        return dict(dropout_ratio=_f32(layer.dropout_param.dropout_ratio))
    return {}



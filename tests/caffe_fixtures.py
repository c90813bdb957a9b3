"""Fixtures for tests/test_convert_caffe.py: the three deploy prototxts of the authors' Caffe release
(hszhao/PSPNet ``evaluation/prototxt/``), generated from a description of their layers instead of copied,
``.caffemodel`` files with random blobs, and a small NumPy/torch interpreter of the Caffe layers they use.

:func:`release_net` writes, layer for layer, what the release's prototxts hold (names, wiring, every field
including the learning-rate multipliers and fillers). At full size its serialised ``NetParameter`` has the
SHA-256 of the official file parsed with the same schema (:data:`OFFICIAL_SHA256`, computed from the files at
hszhao/PSPNet commit 798bdc907c8630e8c3997ebfdd0d7cae0c5ab03b), so the fixture *is* the official network;
``width``, ``layers`` and ``input_size`` give narrowed copies for numeric tests.

:func:`caffe_forward` runs a prototxt the way Caffe's CPU layers do, written from the fork's sources: the BN
layer's test-time arithmetic with its ``eps`` (``bn_layer.cpp``), pooling with ceil rounding, the last window
inside the image and padded cells counted in the average (``pooling_layer.cpp``), ``Interp``'s bilinear
interpolation with corners aligned (``util/interp.cpp``). Convolutions use ``torch.nn.functional.conv2d`` in
float64 (cross-correlation, as Caffe's ``im2col`` + GEMM).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from google.protobuf import text_format

from pspnet_lite.convert import caffe_release_pb2 as pb

OFFICIAL_SHA256 = {
    "pspnet50_ADE20K_473": "3eec2dbf2b3dcbb67159be316adf8501eb61498ff7c820f466273c7a25dc77fa",
    "pspnet101_VOC2012_473": "e19d084279d9b192c8fc5a0998cd7af646673068890c9c6777fa592715e53b28",
    "pspnet101_cityscapes_713": "9600f97bf326c8908492d52afa69be296927fb349a768366d682d96821e54bf7",
}
# name -> (blocks per stage, stride on the 1x1 of conv3_1, classes, input size)
RELEASES = {
    "pspnet50_ADE20K_473": ((3, 4, 6, 3), True, 150, 473),
    "pspnet101_VOC2012_473": ((3, 4, 23, 3), False, 21, 473),
    "pspnet101_cityscapes_713": ((3, 4, 23, 3), False, 19, 713),
}


class _Net:
    def __init__(self, name: str, size: int, head_quirk: bool):
        self.net = pb.NetParameter()
        self.net.input.append("data")
        self.net.input_dim.extend([1, 3, size, size])
        self.head_quirk = head_quirk  # pspnet50_ADE20K: conv5_4/bn's third param has decay_mult 1
        self.size = size

    def layer(self, name, type_, bottom, top):
        lay = self.net.layer.add(name=name, type=type_)
        lay.bottom.extend([bottom] if isinstance(bottom, str) else bottom)
        lay.top.extend([top] if isinstance(top, str) else top)
        return lay

    def conv(self, name, bottom, cout, k, stride, pad, dil=1, lr=1.0, bn=True, relu=True, bias=False,
             pad_field=True):
        lay = self.layer(name, "Convolution", bottom, name)
        lay.param.add(lr_mult=lr, decay_mult=1.0)
        if bias:
            lay.param.add(lr_mult=2 * lr, decay_mult=1.0)
        p = lay.convolution_param
        p.num_output = cout
        if pad_field:
            p.pad.append(pad)
        p.kernel_size.append(k)
        p.stride.append(stride)
        if dil != 1:
            p.dilation.append(dil)
        p.weight_filler.type = "msra"
        if not bias:
            p.bias_term = False
        if bn:
            b = self.layer(f"{name}/bn", "BN", name, name)
            for i, m in enumerate((lr, lr, 0.0, 0.0)):
                b.param.add(lr_mult=m, decay_mult=1.0 if (i == 2 and name == "conv5_4" and self.head_quirk) else 0.0)
            b.bn_param.slope_filler.type = "constant"
            b.bn_param.slope_filler.value = 1
            b.bn_param.bias_filler.type = "constant"
            b.bn_param.bias_filler.value = 0
            b.bn_param.frozen = True
            b.bn_param.momentum = 0.95
        if relu:
            self.layer(f"{name}/relu", "ReLU", name, name)
        return name


def release_net(name: str, width: int = 64, layers=None, input_size: int | None = None,
                num_classes: int | None = None, bins=(1, 2, 3, 6)):
    """The ``NetParameter`` of a release prototxt (full size by default; narrowed by ``width`` / ``layers`` /
    ``input_size`` / ``num_classes``)."""
    blocks, stride_in_1x1, classes, size = RELEASES[name]
    blocks, classes, size = tuple(layers or blocks), num_classes or classes, input_size or size
    n = _Net(name, size, head_quirk=name.startswith("pspnet50"))
    x = n.conv("conv1_1_3x3_s2", "data", width, 3, 2, 1)
    x = n.conv("conv1_2_3x3", x, width, 3, 1, 1)
    x = n.conv("conv1_3_3x3", x, 2 * width, 3, 1, 1)
    p = n.layer("pool1_3x3_s2", "Pooling", x, "pool1_3x3_s2").pooling_param
    p.pool, p.kernel_size, p.stride, p.pad = pb.PoolingParameter.MAX, 3, 2, 1
    x = "pool1_3x3_s2"
    for s, (count, stride, dil) in enumerate(zip(blocks, (1, 2, 1, 1), (1, 1, 2, 4))):
        planes = width * 2**s
        for i in range(count):
            blk = f"conv{s + 2}_{i + 1}"
            st = stride if i == 0 else 1
            s1, s3 = (st, 1) if stride_in_1x1 else (1, st)
            y = n.conv(f"{blk}_1x1_reduce", x, planes, 1, s1, 0)
            y = n.conv(f"{blk}_3x3", y, planes, 3, s3, dil, dil)
            y = n.conv(f"{blk}_1x1_increase", y, 4 * planes, 1, 1, 0, relu=False)
            short = n.conv(f"{blk}_1x1_proj", x, 4 * planes, 1, st, 0, relu=False) if i == 0 else x
            n.layer(blk, "Eltwise", [short, y], blk).eltwise_param.operation = pb.EltwiseParameter.SUM
            n.layer(f"{blk}/relu", "ReLU", blk, blk)
            x = blk
    feat = (size - 1) // 8 + 1
    for b in bins:
        pool = n.layer(f"{x}_pool{b}", "Pooling", x, f"{x}_pool{b}").pooling_param
        pool.pool, pool.kernel_size, pool.stride = pb.PoolingParameter.AVE, feat // b, feat // b
        n.conv(f"{x}_pool{b}_conv", f"{x}_pool{b}", 32 * width // len(bins), 1, 1, 0, lr=10.0, pad_field=False)
        interp = n.layer(f"{x}_pool{b}_interp", "Interp", f"{x}_pool{b}_conv", f"{x}_pool{b}_interp").interp_param
        interp.height, interp.width = feat, feat
    n.layer(f"{x}_concat", "Concat", [x] + [f"{x}_pool{b}_interp" for b in reversed(bins)], f"{x}_concat")
    n.conv("conv5_4", f"{x}_concat", 8 * width, 3, 1, 1, lr=10.0)
    n.layer("conv5_4/dropout", "Dropout", "conv5_4", "conv5_4").dropout_param.dropout_ratio = 0.1
    n.conv("conv6", "conv5_4", classes, 1, 1, 0, lr=10.0, bn=False, relu=False, bias=True, pad_field=False)
    n.layer("conv6_interp", "Interp", "conv6", "conv6_interp").interp_param.zoom_factor = 8
    return n.net


def prototxt_text(net) -> str:
    return "#\n" + text_format.MessageToString(net)


def random_caffemodel(net, seed: int = 0):
    """A caffemodel ``NetParameter`` for a prototxt ``net``: each layer's parameters plus random blobs of the shapes
    Caffe gives them (convolution weights He-scaled, BN statistics around 1), as ``Net::ToProto`` writes them."""
    rng = np.random.default_rng(seed)
    channels = {"data": 3}
    out = pb.NetParameter(name="pspnet")
    for lay in net.layer:
        copy = out.layer.add()
        copy.CopyFrom(lay)
        cin = channels.get(lay.bottom[0]) if len(lay.bottom) else None
        if lay.type == "Concat":
            channels[lay.top[0]] = sum(channels[b] for b in lay.bottom)
            continue
        if lay.type == "Convolution":
            p = lay.convolution_param
            k, cout = p.kernel_size[0], p.num_output
            w = rng.normal(0, math.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k))
            _blob(copy, w)
            if p.bias_term:
                _blob(copy, rng.normal(0, 0.1, (cout,)))
            channels[lay.top[0]] = cout
        elif lay.type == "BN":
            for arr in (rng.uniform(0.5, 1.5, cin), rng.normal(0, 0.1, cin), rng.normal(0, 0.2, cin),
                        rng.uniform(0.5, 2.0, cin)):
                _blob(copy, arr.reshape(1, cin, 1, 1))
        else:
            channels[lay.top[0]] = cin
    return out


def _blob(layer, arr: np.ndarray) -> None:
    blob = layer.blobs.add()
    blob.shape.dim.extend(arr.shape)
    blob.data.extend(arr.astype(np.float32).ravel().tolist())


def blobs_of(model_net) -> dict[str, list[np.ndarray]]:
    """``{layer name: [blob arrays]}`` of a caffemodel ``NetParameter``."""
    return {lay.name: [np.asarray(b.data, np.float64).reshape(tuple(b.shape.dim)) for b in lay.blobs]
            for lay in model_net.layer if len(lay.blobs)}


# ------------------------------------------------------------------------------------------------------------
# the Caffe layers' arithmetic


def caffe_bn(x: np.ndarray, slope, bias, mean, var, eps: float) -> np.ndarray:
    """The fork's BN layer at test time (``bn_layer.cpp`` Forward_cpu): (x - mean) * (var + eps)^-1/2, then
    times slope, plus bias; every blob (1, C, 1, 1)."""
    return (x - mean) * np.power(var + eps, -0.5) * slope + bias


def caffe_pool(x: np.ndarray, method: str, k: int, s: int, p: int) -> np.ndarray:
    """Caffe's MAX / AVE pooling (``pooling_layer.cpp``): ceil-rounded output size, the last window starting
    inside the image; AVE divides by the window clipped to the padded image (padding cells count)."""
    n, c, h, w = x.shape

    def out_size(size):
        o = int(math.ceil((size + 2 * p - k) / s)) + 1
        return o - 1 if p and (o - 1) * s >= size + p else o

    oh, ow = out_size(h), out_size(w)
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * s - p, j * s - p
            he, we = min(hs + k, h + p), min(ws + k, w + p)
            area = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            window = x[:, :, hs:he, ws:we]
            y[:, :, i, j] = window.max(axis=(2, 3)) if method == "MAX" else window.sum(axis=(2, 3)) / area
    return y


def caffe_interp(x: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Caffe ``Interp`` (``caffe_cpu_interp2``): bilinear, source position ``(in - 1) / (out - 1) * i``."""
    n, c, h, w = x.shape
    if (oh, ow) == (h, w):
        return x.copy()

    def axis(size_in, size_out):
        r = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        pos = np.float32(r) * np.arange(size_out, dtype=np.float32)
        i0 = pos.astype(np.int64)
        step = (i0 < size_in - 1).astype(np.int64)
        lam = (pos - i0).astype(np.float64)
        return i0, i0 + step, lam

    h0, h1, lh = axis(h, oh)
    w0, w1, lw = axis(w, ow)
    top = x[:, :, h0][:, :, :, w0] * (1 - lw) + x[:, :, h0][:, :, :, w1] * lw
    bot = x[:, :, h1][:, :, :, w0] * (1 - lw) + x[:, :, h1][:, :, :, w1] * lw
    return top * (1 - lh)[:, None] + bot * lh[:, None]


def caffe_forward(net, blobs: dict[str, list[np.ndarray]], data: np.ndarray) -> np.ndarray:
    """Run a prototxt ``net`` with ``blobs`` on ``data`` (N, 3, H, W) as Caffe's TEST phase does; the last top."""
    values = {"data": np.asarray(data, np.float64)}
    for lay in net.layer:
        x = values[lay.bottom[0]]
        t = lay.type
        if t == "Convolution":
            p = lay.convolution_param
            w = torch.from_numpy(blobs[lay.name][0])
            b = torch.from_numpy(blobs[lay.name][1]) if p.bias_term else None
            y = F.conv2d(torch.from_numpy(x), w, b, stride=p.stride[0] if len(p.stride) else 1,
                         padding=p.pad[0] if len(p.pad) else 0,
                         dilation=p.dilation[0] if len(p.dilation) else 1).numpy()
        elif t == "BN":
            y = caffe_bn(x, *blobs[lay.name], eps=lay.bn_param.eps)
        elif t == "ReLU":
            y = np.maximum(x, 0)
        elif t == "Pooling":
            p = lay.pooling_param
            y = caffe_pool(x, pb.PoolingParameter.PoolMethod.Name(p.pool), p.kernel_size, p.stride, p.pad)
        elif t == "Interp":
            p = lay.interp_param
            h, w = x.shape[-2:]
            oh, ow = ((h + (h - 1) * (p.zoom_factor - 1), w + (w - 1) * (p.zoom_factor - 1))
                      if p.HasField("zoom_factor") else (p.height, p.width))
            y = caffe_interp(x, oh, ow)
        elif t == "Eltwise":
            y = sum(values[b] for b in lay.bottom)
        elif t == "Concat":
            y = np.concatenate([values[b] for b in lay.bottom], axis=1)
        elif t == "Dropout":
            y = x  # TEST phase: identity (Caffe scales at training time)
        else:
            raise ValueError(f"no reference for layer type {t}")
        values[lay.top[0]] = y
    return values[net.layer[-1].top[0]]

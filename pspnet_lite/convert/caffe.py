"""Convert the authors' Caffe release of PSPNet (hszhao/PSPNet) into a pspnet_lite checkpoint.

The paper's numbers come from three released Caffe networks: ``pspnet50_ADE20K``, ``pspnet101_VOC2012`` and
``pspnet101_cityscapes``, each a deploy ``.prototxt`` (``evaluation/prototxt/``) and a ``.caffemodel``.
:func:`convert` reads both, checks that the prototxt is, layer for layer, a network :class:`~pspnet_lite.model.PSPNet`
computes, copies every blob to its tensor, and writes a checkpoint that :func:`pspnet_lite.checkpoint.load_model`,
``evaluate`` and ``predict`` load like any other, with the release's preprocessing and test protocol in it::

    python -m pspnet_lite.convert caffe pspnet50_ADE20K_473.prototxt pspnet50_ADE20K.caffemodel --out ade.pt

**Reading the files** (:mod:`.caffe_files`; the layout every prototxt is checked against: :mod:`.caffe_layout`).
A ``.caffemodel`` is a binary protobuf ``NetParameter``; a ``.prototxt`` is the same
message in protobuf's text format. Both are read with the ``protobuf`` package (optional dependency: the
``caffe`` extra) and a schema of only the messages the release uses, ``caffe_release.proto``, written from the
field numbers of the release fork's ``caffe.proto`` and compiled with ``protoc`` into the committed
``caffe_release_pb2.py`` (how to regenerate it: see the ``.proto``'s header). Protobuf's own parsers are what
Caffe itself uses (``ReadProtoFromBinaryFile`` / ``ReadProtoFromTextFile``), so both files are read exactly as
Caffe reads them, with no Caffe installation; the text parser also rejects, naming the line, any field the
schema does not know, where a hand-written parser would have to guess.

**What each layer becomes** (Caffe name -> pspnet_lite key; a block ``conv{s}_{i}`` of Caffe stage s = 2..5 is
``backbone.layer{s-1}.{i-1}``):

* ``conv1_1_3x3_s2``, ``conv1_2_3x3``, ``conv1_3_3x3`` (the deep stem) -> ``backbone.conv1..3``, their ``/bn``
  -> ``backbone.bn1..3``; ``pool1_3x3_s2`` (MAX 3x3, stride 2, pad 1) is ``backbone.maxpool``;
* ``_1x1_reduce``, ``_3x3``, ``_1x1_increase``, ``_1x1_proj`` -> ``conv1``, ``conv2``, ``conv3``,
  ``downsample.0`` (their ``/bn`` -> ``bn1``, ``bn2``, ``bn3``, ``downsample.1``); the Eltwise SUM and ReLU
  close the block. ``pspnet50_ADE20K_473`` strides ``conv3_1_1x1_reduce``, the ResNet-101 prototxts
  ``conv3_1_3x3``: read from the prototxt into ``PSPNetConfig.stride_in_1x1``;
* ``BN`` (the fork's layer: four blobs slope, bias, moving mean, moving variance, each (1, C, 1, 1); at test
  time ``y = slope * (x - mean) / sqrt(var + eps) + bias`` with ``eps`` = ``bn_param.eps``, default 1e-5:
  ``src/caffe/proto/caffe.proto`` line 549, used in ``src/caffe/layers/bn_layer.cpp`` line 162) ->
  ``BatchNorm2d`` ``weight``, ``bias``, ``running_mean``, ``running_var`` (its eps is also 1e-5);
* ``conv5_3_pool{b}`` (AVE, kernel = stride = map / b, no pad) -> the adaptive pooling of ``ppm.features.{i}.0``,
  which equals it exactly on the map of the prototxt's input size (60 x 60 at 473, 90 x 90 at 713; checked
  here: the kernel must divide the map); ``_conv`` and ``_conv/bn`` -> ``ppm.features.{i}.1`` / ``.2``;
  ``_interp`` (Interp to the map's size: bilinear, corners aligned, ``src/caffe/util/interp.cpp``) is the PPM's
  ``align_corners=True`` upsampling;
* ``conv5_3_concat`` concatenates ``conv5_3, pool6, pool3, pool2, pool1`` (the release's order; the model's is
  ``conv5_3, pool1, pool2, pool3, pool6``): the input channels of ``conv5_4``'s weights are permuted to match,
  which computes the same as the Caffe net, for whatever order the prototxt gives;
* ``conv5_4`` + ``/bn`` -> ``cls.0`` / ``cls.1``, ``conv5_4/dropout`` -> ``cls.3`` (its ratio), ``conv6`` ->
  ``cls.4`` (weight and bias), ``conv6_interp`` (Interp, zoom 8: output ``8 (h - 1) + 1``, the input size for
  the 8k + 1 inputs the release feeds) -> ``PSPNet.upsample`` (``align_corners=True``).

The deploy prototxts have no auxiliary branch (it is training-only, §4), so the converted model has
``aux=False``; layers of a caffemodel that the prototxt does not use (e.g. a training snapshot's) are ignored,
as Caffe's ``CopyTrainedLayersFrom`` does, and listed. Anything else, a layer type, name, wiring or parameter
the mapping does not cover, is refused with the layer's name.

**The release's protocol** (``evaluation/eval_all.m``, ``eval_sub.m``, ``pre_img.m``, ``scale_process.m``),
written into the checkpoint: images are BGR minus the mean B 103.939, G 116.779, R 123.68, with no std
scaling (``"preprocessing"``); the long side is resized to ``base_size * scale + 1`` (513 for ADE20K and VOC,
2049 for Cityscapes), crops of 473 / 713 slide with stride ``ceil(2/3 crop)`` and the mirrored crop is always
added (``"protocol"``). Two differences of the package's :mod:`~pspnet_lite.inference` remain: small images
are padded centrally (Caffe pads bottom and right), and softmax probabilities are averaged over the flip
(Caffe sums the logits first).
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..backbone import BACKBONES
from ..checkpoint import CHECKPOINT_FORMAT
from ..data.transforms import Preprocessing
from ..evaluate import DATASET_CLASSES
from ..model import PSPNet, PSPNetConfig
from .caffe_files import CaffeError, blob_array, blob_shape, read_caffemodel, read_prototxt, short_names
from .caffe_layout import BN_EPS, Node, _Layout, layer_params

RELEASE_MEAN_BGR = (103.939, 116.779, 123.68)
"""hszhao/PSPNet ``evaluation/eval_all.m``: mean_r 123.68, mean_g 116.779, mean_b 103.939, in BGR order."""
CAFFE_PREPROCESSING = Preprocessing("bgr", RELEASE_MEAN_BGR, (1.0, 1.0, 1.0))
"""``pre_img.m``: subtract the mean, reorder to BGR; no std scaling."""
DATASETS = {150: "ade20k", 21: "voc", 19: "cityscapes"}  # classes -> data set of the three released networks
BASE_SIZE = {"ade20k": 512, "voc": 512, "cityscapes": 2048}  # eval_all.m base_size
WEIGHTED = ("Convolution", "BN")



# ------------------------------------------------------------------------------------------------------------
# reading the architecture off a prototxt and checking it


@dataclass
class Plan:
    """What :func:`plan` found: the architecture, the input size, the concatenation order, and the expected layers
    (``nodes``, in the prototxt's order) with the pspnet_lite key of every blob."""

    config: PSPNetConfig
    input_size: tuple[int, int]
    feature_size: tuple[int, int]
    concat: tuple[str, ...]
    nodes: list[Node]
    source: str = "the prototxt"

    @property
    def weighted(self) -> list[Node]:
        return [n for n in self.nodes if n.type in WEIGHTED]

    def conv5_4_permutation(self) -> np.ndarray:
        """For each model input channel of ``conv5_4`` (``x, pool1, pool2, ...``), its Caffe channel (the prototxt's
        concatenation order)."""
        widths = {self.concat[0]: self.config.width * 32}
        level = widths[self.concat[0]] // len(self.config.bins)
        feat = self.concat[0]
        model_order = [feat] + [f"{feat}_pool{b}_interp" for b in self.config.bins]
        start, offsets = 0, {}
        for blob in self.concat:
            n = widths.get(blob, level)
            offsets[blob] = np.arange(start, start + n)
            start += n
        return np.concatenate([offsets[blob] for blob in model_order])


def _input_size(net, source: str) -> tuple[int, int]:
    if list(net.input) != ["data"]:
        raise CaffeError(f"{source}: the release's prototxts have one input named 'data'; this one has "
                         f"{list(net.input) or 'none (an Input layer?)'}")
    dims = list(net.input_dim) or (list(net.input_shape[0].dim) if len(net.input_shape) else [])
    if len(dims) != 4 or dims[1] != 3:
        raise CaffeError(f"{source}: input 'data' must be 4-D with 3 channels (input_dim: 1 3 H W); got {dims}")
    return int(dims[2]), int(dims[3])


def _first(layers, source, name, type_):
    layer = layers.get(name)
    if layer is None or layer.type != type_:
        raise CaffeError(f"{source} has no {type_} layer {name!r}: not one of the PSPNets of the Caffe release "
                         "(hszhao/PSPNet evaluation/prototxt)")
    return layer


def plan(net, source: str = "the prototxt") -> Plan:
    """Read the architecture off a prototxt ``NetParameter`` and check every layer against it.

    The few free numbers (width, blocks per stage, where the stride sits, pyramid bins, classes, dropout and the
    concatenation order) are read from the layers; the expected layout of a :class:`PSPNet` with them is then
    generated and compared, layer by layer and in order, with the prototxt (type, name, bottoms, tops,
    parameters). The first difference is a :class:`CaffeError` naming the layer.
    """
    size = _input_size(net, source)
    layers = {}
    for layer in net.layer:
        if layer.name in layers:
            raise CaffeError(f"{source}: two layers are named {layer.name!r}")
        layers[layer.name] = layer
    width = layer_params(_first(layers, source, "conv1_1_3x3_s2", "Convolution"))["num_output"]
    blocks = []
    for s in range(2, 6):
        n = 0
        while f"conv{s}_{n + 1}_1x1_reduce" in layers:
            n += 1
        if n == 0:
            raise CaffeError(f"{source} has no layer 'conv{s}_1_1x1_reduce': not one of the PSPNets of the Caffe "
                             "release (a ResNet with 4 stages of bottleneck blocks)")
        blocks.append(n)
    stride_layer = _first(layers, source, "conv3_1_1x1_reduce", "Convolution")
    stride_in_1x1 = layer_params(stride_layer)["stride"] != (1, 1)
    feat = f"conv5_{blocks[3]}"
    bins = []
    for layer in net.layer:
        m = re.fullmatch(re.escape(feat) + r"_pool(\d+)", layer.name)
        if m and layer.type == "Pooling":
            bins.append(int(m.group(1)))
    if not bins:
        raise CaffeError(f"{source} has no pyramid pooling layers '{feat}_pool<bins>': not a PSPNet of the release")
    concat_layer = _first(layers, source, f"{feat}_concat", "Concat")
    num_classes = layer_params(_first(layers, source, "conv6", "Convolution"))["num_output"]
    dropout = layer_params(_first(layers, source, "conv5_4/dropout", "Dropout"))["dropout_ratio"]
    depth = next((name for name, b in BACKBONES.items() if b == tuple(blocks) and name != "lite"), None)
    cfg = PSPNetConfig(num_classes=num_classes, backbone=depth or "resnet50", width=width, bins=tuple(bins),
                       aux=False, layers=None if depth else tuple(blocks), stride_in_1x1=stride_in_1x1,
                       dropout=dropout)
    nodes = _Layout(cfg, size).build(tuple(concat_layer.bottom))
    _compare(net, nodes, source)
    h, w = size
    if (h - 1) % 8 or (w - 1) % 8:
        raise CaffeError(f"{source}: input {h}x{w} is not 8k+1; conv6_interp (zoom 8) then does not return the "
                         "input size, which PSPNet.upsample does")
    pools = [n for n in nodes if n.type == "Pooling" and n.name != "pool1_3x3_s2"]
    fh, fw = next(n.params["size"] for n in nodes if n.type == "Interp" and "size" in n.params)
    for node, b in zip(pools, bins):
        if fh % b or fw % b:
            raise CaffeError(f"{source}: {node.name} pools a {fh}x{fw} map into {b}x{b} bins with kernel "
                             f"{node.params['kernel']}, which is not the model's adaptive {b}x{b} pooling")
    return Plan(cfg, size, (fh, fw), tuple(concat_layer.bottom), nodes, source)


def _compare(net, nodes: list[Node], source: str) -> None:
    expected = {n.name: n for n in nodes}
    have = [layer.name for layer in net.layer]
    for layer in net.layer:
        if layer.name not in expected:
            raise CaffeError(f"{source}: layer {layer.name!r} (type {layer.type}) has no counterpart in PSPNet; "
                             "the converter maps the release's layers only")
    missing = [n.name for n in nodes if n.name not in set(have)]
    if missing:
        raise CaffeError(f"{source} lacks layers the release's PSPNet has: {short_names(missing)}")
    for layer, node in zip(net.layer, nodes):
        where = f"{source}: layer {layer.name!r}"
        if layer.name != node.name:
            raise CaffeError(f"{source}: layer {layer.name!r} comes where the release has {node.name!r} (layers out "
                             "of order compute something else)")
        if layer.type != node.type:
            raise CaffeError(f"{where} is a {layer.type}; the mapping needs a {node.type}")
        bottoms = tuple(layer.bottom)
        if node.type == "Eltwise":
            ok = sorted(bottoms) == sorted(node.bottom)
        elif node.type == "Concat":
            ok = sorted(bottoms) == sorted(node.bottom) and len(bottoms) == len(set(bottoms))
        else:
            ok = bottoms == node.bottom
        if not ok or tuple(layer.top) != node.top:
            raise CaffeError(f"{where} is wired {list(bottoms)} -> {list(layer.top)}; the mapping needs "
                             f"{list(node.bottom)} -> {list(node.top)}")
        got, want = layer_params(layer), node.params
        if got != want:
            diff = {k: got.get(k) for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)}
            need = {k: want.get(k) for k in diff}
            raise CaffeError(f"{where} has {diff}; the mapping needs {need}")


# ------------------------------------------------------------------------------------------------------------
# weights


def state_dict(p: Plan, model_net, source: str = "the caffemodel") -> tuple[dict[str, torch.Tensor], list[str]]:
    """The pspnet_lite state dict of a caffemodel ``NetParameter`` for a :class:`Plan`, and the names of the
    caffemodel's layers that the prototxt does not use (ignored, as Caffe ignores them).

    Errors, one line each: layers the prototxt needs and the caffemodel lacks (all listed: the weights of another
    network), else the first layer whose blobs do not fit in number or shape."""
    layers = {layer.name: layer for layer in model_net.layer}
    weighted = p.weighted
    missing = [n.name for n in weighted if n.name not in layers or not len(layers[n.name].blobs)]
    if missing:
        raise CaffeError(f"{source} lacks {len(missing)} of the {len(weighted)} layers with weights that "
                         f"{p.source} needs: {short_names(missing)} (the weights of another network?)")
    for node in weighted:
        blobs = layers[node.name].blobs
        if len(blobs) != len(node.shapes):
            raise CaffeError(f"{source}: layer {node.name!r} has {len(blobs)} blobs; {p.source} needs "
                             f"{len(node.shapes)} ({node.type})")
        for i, (blob, shape) in enumerate(zip(blobs, node.shapes)):
            if blob_shape(blob) != shape:
                raise CaffeError(f"{source}: blob {i} of layer {node.name!r} has shape {blob_shape(blob)}; "
                                 f"{p.source} needs {shape}")
    state = {}
    for node in weighted:
        for i, (blob, key) in enumerate(zip(layers[node.name].blobs, node.keys)):
            arr = blob_array(blob, f"{source}: blob {i} of layer {node.name!r}")
            if node.type == "BN":
                arr = arr.reshape(-1)
            state[key] = torch.from_numpy(np.ascontiguousarray(arr))
    perm = torch.from_numpy(p.conv5_4_permutation())
    state["cls.0.weight"] = state["cls.0.weight"][:, perm].contiguous()
    for key in [k for k in state if k.endswith("running_var")]:
        state[key[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(0)
    used = {n.name for n in p.nodes}
    ignored = [layer.name for layer in model_net.layer if layer.name not in used and len(layer.blobs)]
    return state, ignored


# ------------------------------------------------------------------------------------------------------------
# the checkpoint


def release_protocol(dataset: str | None, crop: int) -> dict:
    """The release's test protocol for a data set: sliding ``crop`` windows, stride ``ceil(2/3 crop)``, long side
    ``base_size * scale + 1`` (eval_sub.m), flip (``caffe_process.m`` always adds the mirrored crop)."""
    base = BASE_SIZE.get(dataset or "", None)
    return {"mode": "slide", "crop_size": crop, "stride_rate": 2 / 3,
            "base_size": base + 1 if base else None, "resize": "long", "flip": True}


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Converted:
    """What :func:`convert` returns: the checkpoint dict, the model, and the ignored caffemodel layers."""

    checkpoint: dict
    model: PSPNet
    ignored: list[str]


def convert(prototxt, caffemodel, dataset: str | None = None,
            log: Callable[[str], None] | None = None) -> Converted:
    """Convert a Caffe release (deploy prototxt + caffemodel) into a pspnet_lite checkpoint dict.

    ``dataset`` names the data set (default: from the class count: 150 ADE20K, 21 VOC, 19 Cityscapes), which
    sets the checkpoint's classes and base size. Raises :class:`CaffeError` (one line) on any file that does
    not fit.
    """
    log = log or (lambda s: None)
    ptxt, cmodel = os.fspath(prototxt), os.fspath(caffemodel)
    net = read_prototxt(ptxt)
    p = plan(net, ptxt)
    cfg = p.config
    dataset = dataset or DATASETS.get(cfg.num_classes)
    classes = DATASET_CLASSES.get(dataset or "")
    if classes is not None and len(classes) != cfg.num_classes:
        raise CaffeError(f"{ptxt} predicts {cfg.num_classes} classes but {dataset!r} has {len(classes)}; give the "
                         "data set the network was trained on with --dataset")
    log(f"{ptxt}: {len(net.layer)} layers, input {p.input_size[0]}x{p.input_size[1]}, map "
        f"{p.feature_size[0]}x{p.feature_size[1]}, {cfg.backbone if cfg.layers is None else cfg.layers}, "
        f"stride on the {'1x1' if cfg.stride_in_1x1 else '3x3'}, bins {cfg.bins}, {cfg.num_classes} classes")
    state, ignored = state_dict(p, read_caffemodel(cmodel), cmodel)
    model = PSPNet(cfg)
    model.load_state_dict(state, strict=True)
    model.eval()
    crop = p.input_size[0] if p.input_size[0] == p.input_size[1] else list(p.input_size)
    config = {"preset": f"caffe:{Path(ptxt).stem}", "dataset": dataset or "folder", "val_split": "val",
              "crop_size": p.input_size[0], "model": model.config.to_dict()}
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "model_config": model.config.to_dict(),
        "config": config,
        "class_names": list(classes) if classes is not None else None,
        "iteration": None,
        "preprocessing": CAFFE_PREPROCESSING.to_dict(),
        "protocol": release_protocol(dataset, crop),
        "source": {"framework": "caffe", "prototxt": Path(ptxt).name, "caffemodel": Path(cmodel).name,
                   "caffemodel_sha256": _sha256(cmodel), "bn_eps": BN_EPS, "ignored_layers": ignored,
                   "converter": "python -m pspnet_lite.convert caffe"},
    }
    log(f"{cmodel}: {sum(len(n.keys) for n in p.weighted)} blobs of {len(p.weighted)} layers copied"
        + (f"; ignored {len(ignored)} layers the prototxt does not use: {short_names(ignored)}" if ignored else ""))
    return Converted(ckpt, model, ignored)

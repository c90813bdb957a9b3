"""Run an exported ONNX model (``python -m pspnet_lite.export``) with onnxruntime, as a drop-in for the torch model.

:class:`OnnxModel` has the torch model's call signature (normalised images (N, 3, H, W) in, logits (N, C, H, W)
out) and its ``config`` and ``num_classes``, so every protocol of :mod:`pspnet_lite.inference` (whole image,
flip, sliding window, multi-scale, the 8k+1 alignment) runs on it unchanged; ``predict --backend onnxruntime``
uses it. The export has a fixed input size (the pyramid's adaptive pooling is exported for one feature-map
size), so:

* **sliding window** (``--mode slide``, the default of ``predict --backend onnxruntime``): the exported size is
  the window; every window of every scale, flip and image is one run of the model. Any image size works (images
  smaller than a window are padded with the mean, as the authors do);
* **whole image** (``--mode whole``): each forward pass must be exactly the exported size (after the 8k+1
  padding of :func:`pspnet_lite.inference.aligned_forward`); any other size is a one-line error that suggests the
  sliding window or a new export at that size. Padding or resizing the image to the exported size would be a
  different protocol (the pyramid would pool over the padding), so it is not done silently.

Batches are run one image or window at a time (the graph's batch dimension is 1: fixed shapes let onnxruntime
plan every buffer ahead); the logits come back as a torch tensor on the input's device.

The metadata the export stores (``metadata_props``, read with onnxruntime alone) carry what predict needs: the
input size, the number of classes, the architecture, the training crop and alignment, and the checkpoint's run
config, class names and preprocessing as JSON (:data:`METADATA_KEYS`).
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .model import PSPNetConfig

FORMAT = "pspnet_lite.onnx/1"
EXTRA = "pip install 'pspnet-lite[export]'"
METADATA_KEYS = ("format", "input_size", "num_classes", "model_config", "train_crop", "align", "config",
                 "class_names", "preprocessing", "protocol", "checkpoint", "max_abs_logit_diff", "exporter")
"""The ``metadata_props`` of an exported model; every value is JSON text."""


def require(*modules: str) -> list[Any]:
    """Import the optional export/runtime packages, or raise one ValueError naming the missing ones and the extra."""
    found, missing = [], []
    for name in modules:
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise ValueError(f"ONNX export and the onnxruntime backend need {', '.join(modules)} (missing: "
                         f"{', '.join(missing)}); install them with {EXTRA}")
    return found


def read_metadata(session, path: str) -> dict:
    """The decoded pspnet_lite metadata of an onnxruntime session; ValueError if the model has none."""
    props = session.get_modelmeta().custom_metadata_map
    if props.get("format") is None:
        raise ValueError(f"{path!r} is an ONNX model without pspnet_lite metadata; write it with "
                         "python -m pspnet_lite.export CHECKPOINT --onnx OUT")
    try:
        meta = {k: json.loads(v) for k, v in props.items() if k in METADATA_KEYS}
    except json.JSONDecodeError as e:
        raise ValueError(f"{path!r} has unreadable pspnet_lite metadata ({e}); export it again") from e
    if meta["format"] != FORMAT:
        raise ValueError(f"{path!r} has ONNX metadata format {meta['format']!r}; this version reads {FORMAT!r}. "
                         "Export it again with this version")
    return meta


class OnnxModel(nn.Module):
    """An exported PSPNet run by onnxruntime, called like the torch model: ``model(x)`` -> logits (N, C, H, W).

    ``x`` must have the exported spatial size (:attr:`input_size`); anything else is a ValueError naming both
    sizes and the way out. ``config`` (a :class:`~pspnet_lite.model.PSPNetConfig`) and ``num_classes`` are the
    exported network's, so :func:`pspnet_lite.inference.predict` and ``aligned_forward`` treat it as that network.
    ``state`` is a checkpoint-like dict (``config``, ``class_names``, ``preprocessing``) for the command lines.
    ``device="cuda"`` asks for onnxruntime's CUDA provider; ``threads`` sets its intra-op threads (None: its
    default, all cores).
    """

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu", threads: int | None = None):
        super().__init__()
        (ort,) = require("onnxruntime")
        self.path = os.fspath(path)
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"ONNX file {self.path!r} does not exist; write it with "
                                    "python -m pspnet_lite.export CHECKPOINT --onnx OUT")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError("--device cuda with --backend onnxruntime needs onnxruntime-gpu (its "
                                 "CUDAExecutionProvider); install it, or use --device cpu")
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(self.path, options, providers=providers)
        except Exception as e:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise ValueError(f"cannot read ONNX model {self.path!r} with onnxruntime ({type(e).__name__}: {first});"
                             " it may be truncated, or not an ONNX file") from e
        meta = read_metadata(self.session, self.path)
        self.metadata = meta
        self.config = PSPNetConfig.from_dict(meta["model_config"])
        self.num_classes = int(meta["num_classes"])
        self.align_corners = self.config.align_corners
        self.input_size: tuple[int, int] = tuple(int(s) for s in meta["input_size"])
        self.state = {"config": meta.get("config") or {}, "class_names": meta.get("class_names"),
                      "preprocessing": meta.get("preprocessing"), "protocol": meta.get("protocol")}
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"the ONNX model expects images (N, 3, H, W); got {getattr(x, 'shape', type(x))}")
        h, w = x.shape[-2:]
        if (h, w) != self.input_size:
            eh, ew = self.input_size
            raise ValueError(
                f"ONNX model {self.path!r} was exported for {eh} x {ew} inputs, but this forward pass is {h} x {w}; "
                f"use the sliding window (--mode slide, window {eh} x {ew}: any image size), or export the "
                f"checkpoint again with --size {h} {w} for whole-image prediction at that size")
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()  # (N, 3, H, W)
        outs = [self.session.run(None, {self.input_name: arr[i:i + 1]})[0] for i in range(arr.shape[0])]
        return torch.from_numpy(np.concatenate(outs)).to(x.device)  # (N, C, H, W) logits

    def extra_repr(self) -> str:
        h, w = self.input_size
        return f"{self.path!r}, {h} x {w}, {self.num_classes} classes, onnxruntime {self.session.get_providers()[0]}"

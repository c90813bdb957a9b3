"""The one reader and writer of model files: file -> (model, config, state).

Everything that reads a ``.pt`` / ``.pth`` file goes through :func:`read`, which always uses
``torch.load(weights_only=True)``: a downloaded file can hold tensors and plain values, never code.
Three kinds of file are read:

* **trainer checkpoints** (``last.pt`` / ``best.pt``, written by :mod:`pspnet_lite.train`): a dict
  with the weights (``model``), the architecture (``model_config``, the fields of
  :class:`~pspnet_lite.model.PSPNetConfig`), the run's ``config``, optimiser, scheduler and RNG states.
  Format ``pspnet_lite.train/2`` stores the run's config with the architecture nested under
  ``"model"``; format ``pspnet_lite.train/1`` (files written before the package was laid out by role)
  stored it flat. Both load: :meth:`~pspnet_lite.train.config.TrainConfig.from_dict` reads either
  layout, and ``model_config`` has the same fields in both.
  A checkpoint may also carry ``preprocessing`` (a :class:`~pspnet_lite.data.transforms.Preprocessing` record:
  channel order, mean, std; absent means ImageNet RGB) and ``protocol`` (the test protocol its network was
  released with: ``mode``, ``crop_size``, ``stride_rate``, ``base_size``, ``resize``, ``flip``), which
  ``evaluate`` and ``predict`` apply unless flags say otherwise; the checkpoints that
  ``python -m pspnet_lite.convert caffe`` writes from the authors' Caffe release have both, and a
  ``source`` record naming the files they came from.
* **the authors' release checkpoints** (hszhao/semseg ``train_epoch_*.pth``) and
* **ImageNet ResNet weights** (torchvision's, or the authors' deep-stem ``resnet50_v2.pth``): plain
  state dicts, whose key layouts :mod:`pspnet_lite.weights` maps onto ours. They do not record an
  architecture, so :func:`load_model` builds the one it is given.

Files are written atomically (:func:`save`): a run killed mid-write keeps the previous file.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data.transforms import IMAGENET, Preprocessing
from .model import PSPNet, PSPNetConfig
from .weights import LoadReport, load_state, unwrap_state_dict

CHECKPOINT_FORMAT = "pspnet_lite.train/2"
FORMATS = ("pspnet_lite.train/1", CHECKPOINT_FORMAT)  # every trainer format this reader accepts


def read(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with errors that name the file."""
    name = os.fspath(path)
    if os.path.isdir(name):
        raise IsADirectoryError(f"{name!r} is a directory, not a model file; give the checkpoint's path "
                                "(e.g. runs/scenes-lite/last.pt)")
    if not os.path.isfile(name):
        raise FileNotFoundError(f"file {name!r} does not exist; check the path")
    try:
        return torch.load(name, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types, some with pages of advice: keep one line
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"cannot read {name!r} with torch.load(weights_only=True) ({type(e).__name__}: {first}); "
                         "it may be truncated, or not a file saved by torch.save") from e


def save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file in the same directory, fsync, then ``os.replace``: a run killed
    mid-write leaves the previous file intact (and at worst a stray ``.tmp`` file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def is_trainer_checkpoint(obj: Any) -> bool:
    """Whether a loaded object is a trainer checkpoint (weights plus the architecture that fits them)."""
    return isinstance(obj, Mapping) and "model" in obj and "model_config" in obj


def load_trainer_checkpoint(path: str | os.PathLike) -> dict:
    """A trainer checkpoint as a dict; ValueError if the file is something else."""
    ckpt = read(path)
    if not is_trainer_checkpoint(ckpt):
        raise ValueError(f"{os.fspath(path)!r} is not a pspnet_lite training checkpoint (no 'model' and "
                         "'model_config'); a plain weights file loads with load_model(path, arch=PSPNetConfig(...))")
    fmt = ckpt.get("format", FORMATS[0])
    if fmt not in FORMATS:
        raise ValueError(f"{os.fspath(path)!r} has checkpoint format {fmt!r}; this version reads {FORMATS}. "
                         "Upgrade pspnet_lite to read it")
    return ckpt


def model_config(ckpt: Mapping) -> PSPNetConfig:
    """The architecture stored in a trainer checkpoint."""
    return PSPNetConfig.from_dict(ckpt["model_config"])


def load_weights(model: nn.Module, source, kind: str = "auto", strict: bool = True) -> LoadReport:
    """Load ``source`` (a file path or a state dict) into ``model`` (a PSPNet, or a DilatedResNet for
    ImageNet weights); see :func:`pspnet_lite.weights.load_state` for ``kind`` and ``strict``.

    A trainer checkpoint's weights are taken from its ``model`` entry, the authors' checkpoints from
    their ``state_dict`` (a ``module.`` prefix is stripped)."""
    if isinstance(source, Mapping):
        return load_state(model, source, kind, strict)
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"source must be a file path or a state dict; got {type(source).__name__}.")
    name = os.fspath(source)
    return load_state(model, unwrap_state_dict(read(name), name), kind, strict, source=name)


@dataclass
class Loaded:
    """What :func:`load_model` returns: the model (eval mode), its architecture, and the file's state.

    ``state`` is the trainer checkpoint's dict (``iteration``, ``config``, ``class_names``, ...), or for a
    plain weights file ``{"weights": "<what was loaded>"}``. ``preprocessing`` turns an RGB image into the
    network's input (the checkpoint's record, else ImageNet RGB); ``protocol`` is the checkpoint's recorded test
    protocol (``{}`` if none)."""

    model: PSPNet
    config: PSPNetConfig
    state: dict = field(default_factory=dict)
    trainer: bool = False  # True for a trainer checkpoint, False for a plain weights file
    preprocessing: Preprocessing = IMAGENET
    protocol: dict = field(default_factory=dict)


def load_model(path: str | os.PathLike, arch: PSPNetConfig | None = None, kind: str = "auto",
               device: str | torch.device = "cpu") -> Loaded:
    """The model in a file, in eval mode on ``device``.

    A trainer checkpoint rebuilds its own architecture (``arch`` is ignored). Any other weights file
    (the authors' semseg checkpoints, a state dict) needs ``arch``, the :class:`PSPNetConfig` it was
    trained with; its ``aux`` is switched off (the auxiliary head is training-only, §4, and its weights
    are skipped and reported).
    """
    obj = read(path)
    name = os.fspath(path)
    if is_trainer_checkpoint(obj):
        ckpt = load_trainer_checkpoint(path)
        config = model_config(ckpt)
        model = PSPNet(config)
        model.load_state_dict(ckpt["model"])
        try:
            pre = Preprocessing.from_dict(ckpt.get("preprocessing"))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name!r} has a bad 'preprocessing' record {ckpt.get('preprocessing')!r}: {e}") from e
        return Loaded(model.to(device).eval(), model.config, ckpt, trainer=True, preprocessing=pre,
                      protocol=dict(ckpt.get("protocol") or {}))
    if arch is None or arch.num_classes is None:
        raise ValueError(f"{name!r} is a plain weights file (not a trainer checkpoint), so it does not say which "
                         "architecture or how many classes it holds; give the architecture (on the command "
                         "line: --num-classes N or --dataset NAME, and --backbone ...)")
    model = PSPNet(PSPNetConfig.from_dict({**arch.to_dict(), "aux": False}))
    report = load_state(model, unwrap_state_dict(obj, name), kind, source=name)
    return Loaded(model.to(device).eval(), model.config, {"weights": str(report)}, trainer=False)

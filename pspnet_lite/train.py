"""Train PSPNet the way the paper does (§4 "Implementation Details", §5.1), on a CPU, a GPU or many GPUs.

The recipe (paper §4 and the authors' release, REFERENCES §1b / §3 item 10):

* SGD, momentum 0.9, weight decay 1e-4 on every parameter; "poly" learning rate
  ``lr = base_lr * (1 - iter / max_iter) ** 0.9`` recomputed after every optimizer step;
  the new layers (PPM, classifier, aux head: ``model.head_modules()``) at 10x the backbone's rate.
* Deep supervision: ``loss = main + 0.4 * aux`` (§4, Table 2).
* An iteration-based schedule (150K ADE20K, 30K VOC, 90K Cityscapes) with a **global** batch of 16,
  whatever the number of processes: each of W processes takes 16 / W images, split into
  ``accum_steps`` micro-batches of ``micro_batch`` images when it cannot hold them at once.
* The loss of an iteration is the mean cross-entropy over **all labelled pixels of the global batch**:
  the labelled (non-255) pixels of every micro-batch are counted before the forward passes and
  summed over processes, each micro-batch contributes its summed cross-entropy divided by that
  global count, and the result is multiplied by W to undo DDP's gradient averaging. So W processes
  x ``accum_steps`` micro-batches give the gradient of one batch of 16 (to float rounding) even when
  ignore pixels (ADE20K's unlabelled pixels, the padding of random scale/rotation) are spread unevenly;
  see :meth:`Trainer.step`. The logged losses are these global-batch means.

BatchNorm and small batches. Gradient accumulation reproduces the *loss* of batch 16 but not its
BatchNorm statistics: BN normalises each micro-batch on its own, and the paper (§4, §5.1) stresses
that the BN batch size matters (statistics gathered over all 16 images across GPUs). So:

* several GPUs: ``SyncBatchNorm`` (on automatically when world size > 1) makes BN see the global
  micro-batch ``W * micro_batch``; use it whenever you can;
* one GPU that holds >= 8 images per step: plain BN, accumulation for the rest;
* one GPU with 1-4 images per step, fine-tuning from trained or ImageNet weights:
  ``freeze_bn="backbone"`` (or ``"all"``) keeps the BN layers in eval mode, using and not updating the
  pretrained running statistics (their scale/shift are still learned). Tiny-batch BN statistics are
  noise; frozen ones are not. Do not freeze BN when training from scratch (there are no statistics
  to keep).

Distributed: launched by ``torchrun`` (one or many nodes, ``env://``); DDP + SyncBatchNorm; NCCL on
CUDA, gloo on CPU; only rank 0 logs and writes. Data order comes from :class:`IterationBatchSampler`,
a seeded, rank-aware sampler positioned by iteration (it plays DistributedSampler's role but can start
mid-epoch and gives every world size the same global batches), and every sample's augmentation is
drawn from a generator seeded by ``(seed, epoch, index)``; so resuming is exact and a W-process run
sees the same global batches as a 1-process run.

Use from Python (notebooks)::

    from pspnet_lite.presets import get_preset
    result = train(get_preset("scenes-lite"))          # or dataclasses.replace(cfg, iters=100)
    result["history"], result["final"], result["checkpoints"]

or from the shell::

    python -m pspnet_lite.train --preset scenes-lite --iters 100 --out-dir runs/lite
    torchrun --nproc_per_node 8 -m pspnet_lite.train --preset ade20k-pspnet50 --data-root /data/ade
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import math
import os
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import distributed as D

CHECKPOINT_FORMAT = "pspnet_lite.train/1"
FREEZE_BN = ("none", "backbone", "all")
AMP = ("off", "bf16", "fp16")
DEFAULT_PRESET = "scenes-lite"  # what a bare ``python -m pspnet_lite.train`` runs: PSPNet on ContextScenes, CPU minutes


def _f(default, help: str, **kw):
    """A dataclass field with its help text (used by the CLI)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Every setting of a training run (plain JSON-able values; stored in each checkpoint).

    Defaults are the paper's recipe (§4); presets in :mod:`pspnet_lite.presets` fill in data sets,
    backbones and schedules. Override with ``dataclasses.replace(cfg, field=value)`` in Python or
    ``--field value`` / ``--set field=value`` on the command line.
    """

    # what to train on
    preset: str | None = _f(None, "name of the preset this config came from (informational)")
    dataset: str = _f("context_scenes", "data set name for pspnet_lite.data.build_dataset "
                      "(context_scenes, ade20k, voc, cityscapes, folder)")
    data_root: str | None = _f(None, "data set root directory (not needed for context_scenes)")
    train_split: str = _f("train", "training split")
    val_split: str | None = _f("val", "validation split; None/'' = no validation")
    num_train_images: int | None = _f(None, "use only this many training images (context_scenes: generate this many)")
    num_val_images: int | None = _f(None, "use only this many validation images")
    image_size: int | None = _f(None, "context_scenes only: generated image size")
    # augmentation (§4)
    augment: bool = _f(True, "random scale/rotate/blur/mirror (§4); off = crop only")
    crop_size: int = _f(473, "training crop (473 ADE20K/VOC, 713 Cityscapes)")
    scale_min: float = _f(0.5, "random resize lower bound")
    scale_max: float = _f(2.0, "random resize upper bound")
    rotate: float = _f(10.0, "random rotation range +- degrees (0 = off)")
    blur: bool = _f(True, "random Gaussian blur")
    flip: bool = _f(True, "random horizontal mirror")
    # model
    num_classes: int | None = _f(None, "classes (None = the data set's)")
    backbone: str = _f("resnet50", "resnet50|resnet101|resnet152|resnet269|lite")
    width: int | None = _f(None, "backbone width (None = 64, 16 for lite)")
    bins: tuple = _f((1, 2, 3, 6), "pyramid bins; [] = dilated-FCN baseline (§3.2, Table 1)")
    pooling: str = _f("avg", "PPM pooling avg|max (Table 1)")
    reduction: bool = _f(True, "PPM 1/N dimension reduction (Table 1)")
    aux: bool = _f(True, "auxiliary head on stage 3 (§4)")
    stem: str = _f("deep", "deep (authors') or torchvision stem")
    dilation: str = _f("full", "full (authors') or contracted (mmseg) dilation")
    output_stride: int = _f(8, "backbone output stride 8|16|32")
    layers: tuple | None = _f(None, "blocks per stage, e.g. [1,1,2,1] (None = the backbone's: 3,4,6,3 for resnet50)")
    dropout: float = _f(0.1, "Dropout2d before the classifiers")
    align_corners: bool = _f(True, "bilinear align_corners (authors: True)")
    pretrained: str | None = _f(None, "weights file loaded before training (pspnet_lite.weights.load_weights)")
    pretrained_kind: str = _f("auto", "kind for load_weights: auto|imagenet|semseg|pspnet_lite")
    # optimisation (§4)
    iters: int = _f(150_000, "training iterations (the poly schedule's max_iter)")
    batch_size: int = _f(16, "GLOBAL batch per iteration, whatever the number of processes (paper: 16)")
    micro_batch: int | None = _f(None, "images per process per forward pass (None = batch_size / world); "
                                 "smaller values accumulate gradients")
    lr: float = _f(0.01, "base learning rate (backbone)")
    head_lr_mult: float = _f(10.0, "LR multiplier of PPM + classifier + aux (authors: 10; 1 = off)")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(1e-4, "SGD weight decay (all parameters, as the authors)")
    poly_power: float = _f(0.9, "poly LR power")
    alpha: float = _f(0.4, "auxiliary loss weight (Table 2)")
    freeze_bn: str = _f("none", "none|backbone|all: keep those BN layers in eval mode (small-batch fine-tuning)")
    sync_bn: bool = _f(True, "SyncBatchNorm when world size > 1")
    # engine
    device: str = _f("auto", "auto|cpu|cuda|cuda:N")
    amp: str = _f("off", "autocast precision off|bf16|fp16 (fp16 uses a GradScaler on CUDA)")
    channels_last: bool = _f(False, "channels_last memory format")
    compile: bool = _f(False, "torch.compile the training model")
    workers: int = _f(4, "DataLoader worker processes per rank")
    seed: int = _f(0, "seed of model init, data order, augmentation and dropout")
    # validation, logging, checkpoints
    val_every: int = _f(0, "validate every N iterations (0 = only at the end, -1 = never)")
    val_protocol: str = _f("ss", "inference protocol for validation (pspnet_lite.inference.PROTOCOLS) or 'whole'")
    val_batch_size: int = _f(1, "validation batch per rank (>1 only for equal-size images)")
    log_every: int = _f(20, "write a JSONL record every N iterations")
    ckpt_every: int = _f(0, "also write last.pt every N iterations (0 = at validation and the end)")
    out_dir: str = _f("runs/pspnet", "run directory: metrics.jsonl, config.json, last.pt, best.pt")
    resume: str | None = _f(None, "checkpoint to resume from exactly, or 'auto' (out_dir/last.pt if present)")
    stop_at: int | None = _f(None, "stop after this iteration (schedule still runs to iters); resume later")
    tensorboard: bool = _f(False, "also log to TensorBoard (if installed)")
    progress: bool = _f(True, "tqdm progress bar")

    def to_dict(self) -> dict:
        """JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


# ----------------------------------------------------------------------------- config parsing

def parse_value(name: str, text: str):
    """Parse a command-line string for field ``name`` into its type (JSON first, then a plain string)."""
    if name not in FIELDS:
        close = difflib.get_close_matches(name, FIELDS, n=3)
        raise ValueError(f"unknown TrainConfig field {name!r}" + (f"; did you mean {close}?" if close else
                         f"; fields are {sorted(FIELDS)}"))
    default = FIELDS[name].default
    low = text.strip().lower()
    if low in ("none", "null", "") and not (isinstance(default, str) and "None" not in str(FIELDS[name].type)):
        return None  # Optional fields only: freeze_bn="none" is a value, not a missing one
    if isinstance(default, bool):
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name} must be true/false; got {text!r}")
    if isinstance(default, tuple) or str(FIELDS[name].type).startswith("tuple"):
        val = json.loads(text) if text.strip().startswith("[") else [int(v) for v in text.split(",") if v.strip()]
        return tuple(val)
    try:
        val = json.loads(text)
    except json.JSONDecodeError:
        val = text
    kind = str(FIELDS[name].type)
    if kind.startswith("str"):
        return text  # keep strings verbatim (a data_root named "123" stays a string)
    if "float" in kind and isinstance(val, int) and not isinstance(val, bool):
        val = float(val)
    return val


def apply_overrides(cfg: TrainConfig, overrides: list[str] | dict) -> TrainConfig:
    """``cfg`` with ``["key=value", ...]`` (strings, parsed) or ``{key: value}`` applied."""
    if isinstance(overrides, dict):
        for k in overrides:
            parse_value(k, "none")  # name check only
        return dataclasses.replace(cfg, **overrides)
    changes = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r} (e.g. --set iters=1000)")
        k, v = item.split("=", 1)
        changes[k.strip().replace("-", "_")] = parse_value(k.strip().replace("-", "_"), v)
    return dataclasses.replace(cfg, **changes)


def check_config(cfg: TrainConfig, world: int = 1) -> None:
    """Raise a ValueError for any bad setting, before any work starts."""
    def bad(msg):
        raise ValueError(msg)
    if not isinstance(cfg.iters, int) or cfg.iters < 1:
        bad(f"iters must be a positive int; got {cfg.iters!r}")
    if not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        bad(f"batch_size must be a positive int (the global batch, 16 in the paper); got {cfg.batch_size!r}")
    if cfg.batch_size % world:
        bad(f"batch_size {cfg.batch_size} is not divisible by the world size {world}; use a batch size that is a "
            f"multiple of {world} or launch a number of processes that divides it")
    per_rank = cfg.batch_size // world
    if cfg.micro_batch is not None and (cfg.micro_batch < 1 or per_rank % cfg.micro_batch):
        bad(f"micro_batch {cfg.micro_batch} must divide the per-process batch {per_rank} "
            f"(= batch_size {cfg.batch_size} / world size {world})")
    if cfg.amp not in AMP:
        bad(f"amp must be one of {AMP}; got {cfg.amp!r}")
    if cfg.freeze_bn not in FREEZE_BN:
        bad(f"freeze_bn must be one of {FREEZE_BN}; got {cfg.freeze_bn!r}")
    if not cfg.lr > 0 or cfg.head_lr_mult <= 0:
        bad(f"lr and head_lr_mult must be positive; got lr={cfg.lr}, head_lr_mult={cfg.head_lr_mult}")
    if cfg.stop_at is not None and not 0 < cfg.stop_at <= cfg.iters:
        bad(f"stop_at must be in 1..iters={cfg.iters}; got {cfg.stop_at}")
    if cfg.log_every < 1:
        bad(f"log_every must be >= 1; got {cfg.log_every}")
    if cfg.scale_min <= 0 or cfg.scale_max < cfg.scale_min:
        bad(f"need 0 < scale_min <= scale_max; got {cfg.scale_min}, {cfg.scale_max}")


class FromScratchWarning(UserWarning):
    """A real data set is being trained without pretrained weights (the paper fine-tunes from ImageNet)."""


def from_scratch_message(cfg: TrainConfig) -> str | None:
    """The warning for training a real data set from random weights, or None (ContextScenes, or weights given)."""
    if cfg.pretrained or cfg.dataset == "context_scenes":
        return None
    return (f"training {cfg.backbone} on {cfg.dataset!r} from random weights (pretrained=None). The paper "
            "fine-tunes from ImageNet-pretrained ResNets (§4, §5); from scratch, its numbers are out of reach. "
            "Pass --pretrained FILE (TrainConfig.pretrained), any file pspnet_lite.weights.load_weights reads: "
            "the authors' deep-stem ImageNet ResNets (hszhao/semseg initmodel/resnet50_v2.pth, resnet101_v2.pth; "
            "torchvision's resnet50 weights need --stem torchvision), an authors' semseg PSPNet checkpoint, "
            "or a pspnet_lite checkpoint (last.pt / best.pt); --pretrained-kind picks the layout if 'auto' "
            "cannot tell.")


def accum_steps(cfg: TrainConfig, world: int) -> tuple[int, int]:
    """(micro_batch, accumulation steps) per process for a global batch over ``world`` processes."""
    per_rank = cfg.batch_size // world
    micro = cfg.micro_batch or per_rank
    return micro, per_rank // micro


def stream_seed(seed: int, name: str, *keys: int) -> int:
    """A seed for the random stream ``name`` (e.g. "dropout") of run ``seed`` and ``keys`` (e.g. the rank),
    independent of the stream ``torch.manual_seed(seed)`` itself starts (the one that draws the weights)."""
    words = [int(seed) & (2**64 - 1), *[int(k) & (2**64 - 1) for k in keys], *name.encode()]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> 1)


def poly_lr(base_lr: float, it: int, max_iter: int, power: float = 0.9) -> float:
    """The paper's "poly" policy (§4): ``base_lr * (1 - it / max_iter) ** power``."""
    return base_lr * (1 - min(it, max_iter) / max_iter) ** power


# ----------------------------------------------------------------------------- data

class IterationBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's micro-batches of ``(epoch, index)`` keys for iterations ``start..end-1``.

    The global sample stream is epoch after epoch of ``torch.randperm(N)`` seeded by ``(seed, epoch)``;
    iteration ``it`` takes stream positions ``[it*B, (it+1)*B)`` (B = global batch). Within them,
    micro-step ``a`` of rank ``r`` takes the ``micro`` positions at ``a*W*micro + r*micro``: so a
    micro-step over all ranks is one contiguous block (what SyncBatchNorm normalises together), and any
    world size sees the same global batches. Starting at ``start`` resumes the exact position.
    """

    def __init__(self, num_samples: int, batch_size: int, micro: int, accum: int, rank: int, world: int,
                 seed: int, start: int, end: int):
        if num_samples < 1:
            raise ValueError("the training set is empty; check data_root / num_train_images")
        self.n, self.b, self.micro, self.accum = num_samples, batch_size, micro, accum
        self.rank, self.world, self.seed, self.start, self.end = rank, world, seed, start, end
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g)}  # keep one epoch in memory
        return self._perms[epoch]

    def key(self, position: int) -> tuple[int, int]:
        epoch, pos = divmod(position, self.n)
        return epoch, int(self._perm(epoch)[pos])

    def __iter__(self):
        for it in range(self.start, self.end):
            for a in range(self.accum):
                base = it * self.b + a * self.world * self.micro + self.rank * self.micro
                yield [self.key(base + j) for j in range(self.micro)]

    def __len__(self) -> int:
        return (self.end - self.start) * self.accum


class SeededTransform:
    """Calls a transform with ``rng=self.rng`` (set per sample by :class:`SeededSamples`)."""

    def __init__(self, transform):
        self.transform, self.rng = transform, None

    def __call__(self, image, mask):
        return self.transform(image, mask, rng=self.rng)


class SeededSamples(torch.utils.data.Dataset):
    """Index a data set by ``(epoch, index)``: the sample's augmentation draws from
    ``numpy.random.default_rng([seed, epoch, index])``, independent of workers, ranks and resumes."""

    def __init__(self, dataset, proxy: SeededTransform, seed: int):
        self.dataset, self.proxy, self.seed = dataset, proxy, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        self.proxy.rng = np.random.default_rng([self.seed, epoch, index])
        return self.dataset[index]


def _subset(ds, n):
    if n is None or n >= len(ds):
        return ds
    sub = torch.utils.data.Subset(ds, range(n))
    for attr in ("classes", "palette", "num_classes", "ignore_index"):
        if hasattr(ds, attr):
            setattr(sub, attr, getattr(ds, attr))
    return sub


def build_datasets(cfg: TrainConfig):
    """(train set whose transform is a :class:`SeededTransform`, the proxy, val set or None)."""
    from .data import build_dataset
    from .data.transforms import EvalTransform, TrainTransform

    if cfg.augment:
        tt = TrainTransform(crop_size=cfg.crop_size, scale=(cfg.scale_min, cfg.scale_max),
                            rotate=(-cfg.rotate, cfg.rotate) if cfg.rotate else None, blur=cfg.blur, flip=cfg.flip)
    else:
        tt = TrainTransform(crop_size=cfg.crop_size, scale=None, rotate=None, blur=False, flip=False)
    proxy = SeededTransform(tt)
    kw_train, kw_val = {}, {}
    if cfg.dataset == "context_scenes":
        if cfg.image_size is not None:
            kw_train["image_size"] = kw_val["image_size"] = cfg.image_size
        if cfg.num_train_images is not None:
            kw_train["num_images"] = cfg.num_train_images
        if cfg.num_val_images is not None:
            kw_val["num_images"] = cfg.num_val_images
    elif cfg.image_size is not None:
        raise ValueError(f"image_size={cfg.image_size} only applies to dataset='context_scenes'; unset it")
    train_ds = build_dataset(cfg.dataset, root=cfg.data_root, split=cfg.train_split, transform=proxy, **kw_train)
    train_ds = _subset(train_ds, cfg.num_train_images)
    val_ds = None
    if cfg.val_split and cfg.val_every >= 0:
        val_ds = build_dataset(cfg.dataset, root=cfg.data_root, split=cfg.val_split, transform=EvalTransform(),
                               **kw_val)
        val_ds = _subset(val_ds, cfg.num_val_images)
    if len(train_ds) == 0:
        raise ValueError(f"no training images in dataset={cfg.dataset!r} root={cfg.data_root!r} "
                         f"split={cfg.train_split!r}; check the path (see data_scripts/)")
    return SeededSamples(train_ds, proxy, cfg.seed), val_ds


# ----------------------------------------------------------------------------- model / optimizer

def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """PSPNet from the config (seeded, on CPU), with ``cfg.pretrained`` loaded if given."""
    from .model import PSPNet

    torch.manual_seed(cfg.seed)
    model = PSPNet(num_classes=num_classes, backbone=cfg.backbone, width=cfg.width, bins=tuple(cfg.bins or ()),
                   pooling=cfg.pooling, reduction=cfg.reduction, aux=cfg.aux, stem=cfg.stem, dilation=cfg.dilation,
                   output_stride=cfg.output_stride, dropout=cfg.dropout, align_corners=cfg.align_corners,
                   layers=None if cfg.layers is None else tuple(cfg.layers))
    if cfg.pretrained:
        from .weights import load_weights

        if not Path(cfg.pretrained).is_file():
            raise ValueError(f"pretrained weights {cfg.pretrained!r} not found; pass an existing file or unset it")
        load_weights(model, cfg.pretrained, kind=cfg.pretrained_kind)
    return model


def param_groups(model: nn.Module, lr: float, head_lr_mult: float) -> list[dict]:
    """Two SGD groups as the authors (§4; REFERENCES §3 item 10): backbone at ``lr``, the new layers
    (``model.head_modules()``: PPM, classifier, aux) at ``head_lr_mult * lr``. Weight decay applies to all."""
    head = {id(p) for m in model.head_modules() for p in m.parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"name": "backbone", "params": [p for p in params if id(p) not in head], "lr": lr, "lr_mult": 1.0},
            {"name": "head", "params": [p for p in params if id(p) in head], "lr": lr * head_lr_mult,
             "lr_mult": head_lr_mult}]


def build_optimizer(model: nn.Module, cfg: TrainConfig):
    """SGD (momentum 0.9, wd 1e-4) and a per-iteration poly LambdaLR (§4)."""
    opt = torch.optim.SGD(param_groups(model, cfg.lr, cfg.head_lr_mult), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    iters, power = cfg.iters, cfg.poly_power
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: (1 - min(it, iters) / iters) ** power)
    return opt, sched


def set_train_mode(model: nn.Module, freeze_bn: str = "none") -> None:
    """``model.train()``, then BN layers of the backbone (or all) back in eval mode if frozen."""
    model.train()
    if freeze_bn == "none":
        return
    scope = model.backbone if freeze_bn == "backbone" else model
    for m in scope.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


# ----------------------------------------------------------------------------- checkpoints

def rng_state(device: torch.device) -> dict:
    """This process's RNG states (torch, CUDA, NumPy global, Python) as weights_only-loadable values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
            "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]}}


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file in the same directory, fsync, then ``os.replace``: a run killed
    mid-write leaves the previous checkpoint intact (and at worst a stray ``.tmp`` file)."""
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


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a trainer checkpoint with ``torch.load(weights_only=True)``; ValueError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file
        raise ValueError(f"cannot read checkpoint {str(path)!r} ({type(e).__name__}: {e}); "
                         "it may be truncated or not a pspnet_lite checkpoint") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        raise ValueError(f"{str(path)!r} is not a pspnet_lite training checkpoint (no 'model'/'model_config')")
    return ckpt


def _jsonable(x):
    return json.loads(json.dumps(x, default=list))


def check_same_architecture(ckpt_config: dict, model_config: dict, path: str) -> None:
    """ValueError naming every architecture field that differs between a checkpoint and the model."""
    a, b = _jsonable(ckpt_config), _jsonable(model_config)
    diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
    if diff:
        lines = ", ".join(f"{k}: checkpoint {v[0]!r} vs config {v[1]!r}" for k, v in diff.items())
        raise ValueError(f"checkpoint {path!r} holds another architecture or class count ({lines}); "
                         "use the same model settings as the run that wrote it")


def model_from_checkpoint(path: str | os.PathLike, device="cpu") -> tuple[nn.Module, dict]:
    """(PSPNet rebuilt from a trainer checkpoint's ``model_config`` with its weights, in eval mode; the checkpoint)."""
    ckpt = load_checkpoint(path)
    return model_from_checkpoint_dict(ckpt, device), ckpt


def model_from_checkpoint_dict(ckpt: dict, device="cpu") -> nn.Module:
    """PSPNet rebuilt from a loaded trainer checkpoint (``model_config`` + ``model``), in eval mode."""
    from .model import PSPNet

    cfg = dict(ckpt["model_config"])
    cfg["bins"] = tuple(cfg.get("bins") or ())
    if cfg.get("layers") is not None:
        cfg["layers"] = tuple(cfg["layers"])
    model = PSPNet(**cfg)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


# ----------------------------------------------------------------------------- logging

class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the run stopped and the last good checkpoint was kept."""


def _clean(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


class RunLogger:
    """JSONL metrics (``out_dir/metrics.jsonl``), optional TensorBoard, and an in-memory history (rank 0 only).

    A fresh run into a directory that already has a ``metrics.jsonl`` moves the old file to
    ``metrics.jsonl.prev`` (replacing an older ``.prev``) and starts a new one, so a plot never shows
    two runs' iterations. A resumed run (``resume_from`` = the checkpoint's iteration) keeps the records
    up to that iteration, drops those the interrupted run wrote after its last checkpoint (they are
    trained again), and appends. ``history`` holds this process's records only.
    """

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool, resume_from: int | None = None):
        self.enabled, self.history, self.tb = enabled, [], None
        self.path = out_dir / "metrics.jsonl"
        if enabled and self.path.is_file():
            if resume_from is None:
                os.replace(self.path, self.path.with_name(self.path.name + ".prev"))
            else:
                self._truncate(resume_from)
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(out_dir / "tb"))
            except ImportError:
                warnings.warn("tensorboard=True but the tensorboard package is not installed; JSONL only")

    def _truncate(self, iteration: int) -> None:
        """Keep the records with ``iter <= iteration`` (and drop a half-written last line)."""
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("iter"), int) and rec["iter"] <= iteration:
                kept.append(line + "\n")
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, self.path)

    def log(self, record: dict) -> None:
        record = _clean(record)
        self.history.append(record)
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tb is not None:
            tag = record.get("kind", "train")
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "iter":
                    self.tb.add_scalar(f"{tag}/{k}", v, record["iter"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ----------------------------------------------------------------------------- trainer

class Trainer:
    """One training run (see the module docstring). ``Trainer(cfg).fit()`` == ``train(cfg)``."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.owns_group = D.init_distributed(cfg.device)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        cfg = self.cfg
        self.rank, self.world = D.get_rank(), D.get_world_size()
        check_config(cfg, self.world)
        self.main = self.rank == 0
        scratch = from_scratch_message(cfg)
        if scratch and self.main:
            warnings.warn(scratch, FromScratchWarning, stacklevel=4)  # the caller of train()
        self.device = D.resolve_device(cfg.device)
        if cfg.amp == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("amp='bf16' but this GPU has no bf16 support; use --amp fp16")
        self.micro, self.accum = accum_steps(cfg, self.world)
        self.out_dir = Path(cfg.out_dir)
        # data first: a missing data root fails before any model is built
        self.train_set, self.val_set = build_datasets(cfg)
        base = self.train_set.dataset
        self.num_classes = cfg.num_classes or getattr(base, "num_classes", None)
        if not self.num_classes:
            raise ValueError(f"dataset {cfg.dataset!r} has no num_classes attribute; set num_classes")
        self.class_names = list(getattr(base, "classes", [])) or None
        # model
        model = build_model(cfg, self.num_classes)
        if self.world > 1 and cfg.sync_bn:
            model = D.convert_sync_batchnorm(model, self.device)
        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model  # the plain module: checkpoints, validation
        self.opt, self.sched = build_optimizer(model, cfg)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16" and self.device.type == "cuda")
        from .losses import DeepSupervisionLoss
        self.criterion = DeepSupervisionLoss(alpha=cfg.alpha)
        self.start_iter, self.best_miou, self.best_metrics = 0, -1.0, None
        resume = cfg.resume
        if resume == "auto":
            resume = str(self.out_dir / "last.pt") if (self.out_dir / "last.pt").is_file() else None
        if resume:
            self._resume(resume)
        else:
            # a stream of its own per rank: torch.manual_seed(cfg.seed) already drew the initial weights, and
            # replaying it made every dropout mask a function of those weights (measured on ContextScenes:
            # B1 scored 7-10 mIoU higher with the replayed stream than with an independent one)
            s = stream_seed(cfg.seed, "dropout", self.rank)
            torch.manual_seed(s)
            np.random.seed(s % 2**32)
            random.seed(s)
        net = model
        if self.world > 1:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.compile:
            net = torch.compile(net)
        self.net = net
        if self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        self.logger = RunLogger(self.out_dir, self.main, cfg.tensorboard,
                                resume_from=self.start_iter if resume else None)

    def _resume(self, path: str) -> None:
        ckpt = load_checkpoint(path)
        check_same_architecture(ckpt["model_config"], self.model.config, path)
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start_iter = int(ckpt["iteration"])
        self.best_miou = float(ckpt.get("best_miou", -1.0))
        sampler = ckpt.get("sampler", {})
        if sampler.get("num_samples") not in (None, len(self.train_set)) or sampler.get("seed", self.cfg.seed) != self.cfg.seed:
            warnings.warn(f"resuming {path} with a different data set size or seed; the data order will differ")
        states = ckpt.get("rng") or []
        if len(states) == self.world:
            set_rng_state(states[self.rank], self.device)
        else:
            warnings.warn(f"checkpoint has RNG states for {len(states)} processes, this run has {self.world}; "
                          "seeding afresh (the run continues, but not bit-exactly)")
            torch.manual_seed(stream_seed(self.cfg.seed, "dropout", self.rank, self.start_iter))
        if self.start_iter >= self.cfg.iters:
            warnings.warn(f"checkpoint {path} is already at iteration {self.start_iter} >= iters={self.cfg.iters}")

    # -- checkpoints
    def checkpoint(self, iteration: int, metrics: dict | None) -> dict:
        return {"format": CHECKPOINT_FORMAT, "model": self.model.state_dict(), "model_config": _jsonable(self.model.config),
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "iteration": iteration, "best_miou": self.best_miou, "metrics": _clean(metrics or {}),
                "rng": D.all_gather_object(rng_state(self.device)),
                "sampler": {"seed": self.cfg.seed, "num_samples": len(self.train_set),
                            "samples_seen": iteration * self.cfg.batch_size},
                "config": self.cfg.to_dict(), "class_names": self.class_names, "world_size": self.world}

    def save(self, iteration: int, metrics: dict | None = None, best: bool = False) -> None:
        ckpt = self.checkpoint(iteration, metrics)  # collective (RNG gather): every rank calls it
        if self.main:
            atomic_save(ckpt, self.out_dir / "last.pt")
            if best:
                atomic_save(ckpt, self.out_dir / "best.pt")
        D.barrier()

    # -- validation
    def validate(self) -> dict:
        """Scores of the current model on this rank's share of the val set, summed over ranks."""
        return validate(self.model, self.val_set, self.num_classes, self.cfg, self.device)

    # -- one iteration
    def step(self, batches) -> torch.Tensor:
        """Forward/backward over this rank's ``accum`` micro-batches of one iteration; returns the global
        batch's [total, main, aux] losses, each the mean over all its labelled pixels.

        The gradient is that of the batch-16 loss (§4) whatever the split over ranks and micro-batches:
        the labelled (non-255) pixels of every micro-batch are counted before the forward passes and
        summed over ranks (``n``); micro-batch ``a`` with ``n_a`` labelled pixels then back-propagates
        ``loss_a * n_a / n`` (its summed cross-entropy over the global count), times the world size W
        to undo DDP's averaging of gradients over ranks. Averaging each micro-batch's (or rank's) own
        mean instead would weight pixels unequally whenever ignore pixels (ADE20K's "other", the padding
        of random scale/rotation) are unevenly spread.
        """
        cfg, dt = self.cfg, {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.cfg.amp)
        ignore = self.criterion.ignore_index
        counts = [int((y != ignore).sum()) for _, y in batches]  # labelled pixels per micro-batch
        n = D.all_reduce_sum(torch.tensor(float(sum(counts)), dtype=torch.float64, device=self.device))
        n = max(float(n), 1.0)  # a global batch without labelled pixels: zero loss, zero gradient
        sums = torch.zeros(3, dtype=torch.float64)
        for a, (x, y) in enumerate(batches):
            x = x.to(self.device, non_blocking=True)  # (m, 3, H, W)
            y = y.to(self.device, non_blocking=True)  # (m, H, W)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            sync = self.world == 1 or a == self.accum - 1
            ctx = self.net.no_sync() if not sync and hasattr(self.net, "no_sync") else contextlib.nullcontext()
            with ctx:
                with torch.autocast(self.device.type, dtype=dt, enabled=dt is not None):
                    out = self.net(x)
                loss, p = self.criterion(out, y)  # means over this micro-batch's labelled pixels
                self.scaler.scale(loss * (counts[a] * self.world / n)).backward()
            aux = p["aux"] if p["aux"] is not None else torch.zeros(())
            sums += torch.stack([loss.detach().double().cpu(), p["main"].double().cpu(), aux.double().cpu()]) * counts[a]
        return D.all_reduce_sum(sums.to(self.device)).cpu() / n

    def fit(self) -> dict:
        cfg = self.cfg
        end = min(cfg.stop_at or cfg.iters, cfg.iters)
        sampler = IterationBatchSampler(len(self.train_set), cfg.batch_size, self.micro, self.accum, self.rank,
                                        self.world, cfg.seed, self.start_iter, end)
        # own generator: creating the loader iterator must not draw from the global RNG (dropout's stream)
        loader = torch.utils.data.DataLoader(self.train_set, batch_sampler=sampler, num_workers=cfg.workers,
                                             pin_memory=self.device.type == "cuda",
                                             generator=torch.Generator().manual_seed(cfg.seed))
        batches = iter(loader)
        from tqdm.auto import tqdm
        bar = tqdm(total=end - self.start_iter, disable=not (cfg.progress and self.main), mininterval=1,
                   desc="train", dynamic_ncols=True)
        window, t_window, last_metrics, it = [], time.perf_counter(), None, self.start_iter
        t_start = time.perf_counter()
        try:
            for it in range(self.start_iter, end):
                set_train_mode(self.model, cfg.freeze_bn)
                lrs = [g["lr"] for g in self.opt.param_groups]
                parts = self.step([next(batches) for _ in range(self.accum)])
                if not torch.isfinite(parts).all():
                    self.opt.zero_grad(set_to_none=True)
                    last = self.out_dir / "last.pt"
                    kept = f"the last good checkpoint {last} is kept" if last.is_file() else "no checkpoint was written yet"
                    raise NonFiniteLossError(
                        f"loss is {parts[0].item()} at iteration {it + 1} (main {parts[1].item()}, aux "
                        f"{parts[2].item()}); stopping, {kept}. Try a lower --lr, --amp bf16 instead of fp16, "
                        "or check the labels (values must be class ids or 255)")
                self.scaler.step(self.opt)
                self.scaler.update()
                self.opt.zero_grad(set_to_none=True)
                self.sched.step()
                window.append(parts)
                done = it + 1
                if done % cfg.log_every == 0 or done == end:
                    now = time.perf_counter()
                    m = torch.stack(window).mean(0)
                    rec = {"kind": "train", "iter": done, "loss": m[0].item(), "loss_main": m[1].item(),
                           "loss_aux": m[2].item() if self.model.aux is not None else None,
                           "lr": lrs[0], "lr_head": lrs[1],
                           "images_per_s": len(window) * cfg.batch_size / max(now - t_window, 1e-9),
                           "time_s": now - t_start}
                    self.logger.log(rec)
                    bar.set_postfix(loss=f"{rec['loss']:.3f}", img_s=f"{rec['images_per_s']:.1f}", refresh=False)
                    window, t_window = [], now
                bar.update(1)
                is_val = self.val_set is not None and (
                    (cfg.val_every > 0 and done % cfg.val_every == 0) or (done == cfg.iters and cfg.val_every >= 0))
                if is_val:
                    last_metrics = self.validate()
                    best = last_metrics["miou"] is not None and last_metrics["miou"] > self.best_miou
                    if best:
                        self.best_miou, self.best_metrics = last_metrics["miou"], last_metrics
                    self.logger.log({"kind": "val", "iter": done, **{k: v for k, v in last_metrics.items()
                                                                     if not isinstance(v, list)},
                                     "iou": last_metrics["iou"]})
                    self.save(done, last_metrics, best=best)
                    t_window = time.perf_counter()  # validation time is not training throughput
                elif done == end or (cfg.ckpt_every > 0 and done % cfg.ckpt_every == 0):
                    self.save(done, last_metrics)
        finally:
            bar.close()
        return {"history": self.logger.history, "final": last_metrics or {}, "best_miou": self.best_miou
                if self.best_miou >= 0 else None, "best": self.best_metrics, "iterations": it + 1 if end > self.start_iter
                else self.start_iter, "out_dir": str(self.out_dir),
                "checkpoints": {"last": str(self.out_dir / "last.pt"),
                                "best": str(self.out_dir / "best.pt") if (self.out_dir / "best.pt").is_file() else None},
                "metrics_file": str(self.logger.path), "config": cfg.to_dict(), "class_names": self.class_names, "world_size": self.world,
                "train_time_s": time.perf_counter() - t_start}

    def close(self) -> None:
        if getattr(self, "logger", None) is not None:
            self.logger.close()
        if self.owns_group:
            D.cleanup()


def validate(model: nn.Module, dataset, num_classes: int, cfg: TrainConfig, device) -> dict:
    """mIoU / mAcc / pixel accuracy (§5.2) with ``pspnet_lite.inference.predict`` and the package's
    ConfusionMatrix; each rank scores every W-th image and the matrices are all-reduced."""
    from .inference import predict
    from .metrics import ConfusionMatrix

    protocol = val_protocol(cfg.val_protocol, cfg.crop_size)
    rank, world = D.get_rank(), D.get_world_size()
    shard = torch.utils.data.Subset(dataset, range(rank, len(dataset), world))
    loader = torch.utils.data.DataLoader(shard, batch_size=cfg.val_batch_size, num_workers=min(cfg.workers, 2),
                                         generator=torch.Generator())  # leaves the global RNG alone
    cm = ConfusionMatrix(num_classes, device=device)
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    was_training = model.training
    model.eval()
    with torch.no_grad(), torch.autocast(torch.device(device).type, dtype=dt, enabled=dt is not None):
        for x, y in loader:
            x = x.to(device)  # (n, 3, H, W)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            pred = predict(model, x, num_classes=num_classes, protocol=protocol)  # (n, H, W)
            cm.update(pred.to(device), y.to(device))
    model.train(was_training)
    scores = cm.all_reduce().compute()
    out = scores.as_dict()
    out["protocol"] = protocol.name if hasattr(protocol, "name") else cfg.val_protocol
    return _clean(out)


def val_protocol(name: str, crop_size: int):
    """An inference Protocol by name (``PROTOCOLS``) with the training crop as its window, or ``"whole"``."""
    from .inference import PROTOCOLS, Protocol

    if name == "whole":
        return Protocol(mode="whole", crop_size=crop_size)
    if name not in PROTOCOLS:
        raise ValueError(f"unknown val_protocol {name!r}; choose 'whole' or one of {sorted(PROTOCOLS)}")
    p = PROTOCOLS[name]
    return dataclasses.replace(p, crop_size=crop_size) if hasattr(p, "crop_size") else p


def train(cfg: TrainConfig) -> dict:
    """Run one training (in-process; usable from notebooks) and return
    ``{"history": [JSONL records], "final": val metrics, "best_miou", "checkpoints": {"last", "best"},
    "out_dir", "iterations", "config", ...}``. Raises :class:`NonFiniteLossError` on a NaN/inf loss."""
    trainer = Trainer(cfg)
    try:
        return trainer.fit()
    finally:
        trainer.close()


# ----------------------------------------------------------------------------- CLI

def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """Parser with ``--preset``, ``--set key=value`` and one ``--field`` flag per TrainConfig field."""
    p = argparse.ArgumentParser(
        "python -m pspnet_lite.train", add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train PSPNet (Zhao et al., CVPR 2017) with the paper's recipe: SGD + poly LR, head at 10x, "
                    "aux loss 0.4, global batch 16. Works on CPU, one GPU, or torchrun (DDP + SyncBN).",
        epilog="Precedence: TrainConfig defaults < --preset < --FIELD flags < --set. Examples:\n"
               "  python -m pspnet_lite.train --preset scenes-lite --out-dir runs/lite\n"
               "  torchrun --nproc_per_node 8 -m pspnet_lite.train --preset ade20k-pspnet50 --data-root /data/ade\n"
               "  python -m pspnet_lite.train --preset scenes-lite --resume auto --out-dir runs/lite")
    p.add_argument("--preset", default=None,
                   help=f"start from a named preset (see --list-presets; default {DEFAULT_PRESET}, the CPU demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any TrainConfig field, repeatable (e.g. --set bins=[1,2,3,6] --set lr=0.02)")
    p.add_argument("--list-presets", action="store_true", help="print the preset names and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    g = p.add_argument_group("TrainConfig fields (each overrides the preset)")
    for name, f in FIELDS.items():
        if name == "preset":
            continue
        flag = "--" + name.replace("_", "-")
        helptext = f"{f.metadata.get('help', '')} [default: {f.default!r}]"
        if isinstance(f.default, bool):
            g.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        else:
            g.add_argument(flag, dest=name, default=None, metavar=name.upper(), help=helptext,
                           choices={"amp": AMP, "freeze_bn": FREEZE_BN}.get(name))
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Resolve defaults, preset, explicit flags and ``--set`` into a TrainConfig."""
    from .presets import get_preset

    cfg = get_preset(args.preset or DEFAULT_PRESET)
    changes = {}
    for name in FIELDS:
        v = getattr(args, name, None)
        if v is None or name == "preset":
            continue
        changes[name] = v if isinstance(v, bool) else parse_value(name, str(v))
    cfg = dataclasses.replace(cfg, **changes)
    return apply_overrides(cfg, args.overrides)


def summarize(metrics: dict, class_names: list[str] | None, dataset: str) -> str:
    """Per-class IoU of a validation result; on ContextScenes also the mean IoU of each failure mode (§3.1)."""
    iou = [math.nan if v is None else float(v) for v in metrics["iou"]]  # None = NaN in JSON-cleaned records
    names = class_names or [str(i) for i in range(len(iou))]
    roles = {}
    if dataset == "context_scenes":
        from .data.context_scenes import ROLES
        roles = ROLES
    lines = [f"{'class':<16} {'role':<14} {'IoU %':>6}"]
    lines += [f"{n:<16} {roles.get(n, ''):<14} {'-' if math.isnan(v) else f'{100 * v:6.2f}':>6}"
              for n, v in zip(names, iou)]
    by_role: dict[str, list[float]] = {}
    for n, v in zip(names, iou):
        if n in roles and not math.isnan(v):
            by_role.setdefault(roles[n], []).append(v)
    lines += [f"{'mean ' + r:<31} {100 * sum(v) / len(v):6.2f}" for r, v in by_role.items()]
    pct = lambda v: "-" if v is None or math.isnan(v) else f"{100 * v:6.2f}"  # noqa: E731
    lines.append(f"{'mIoU':<31} {pct(metrics.get('miou')):>6}\n{'pixel accuracy':<31} {pct(metrics.get('pixel_acc')):>6}")
    return "\n".join(lines)


class CommaList(argparse.Action):
    """A ``nargs="+"`` option that also takes comma-separated values: ``--protocols ss ms+flip`` ==
    ``--protocols ss,ms+flip``; every item is checked against ``valid`` (argparse's own ``choices``
    would reject the comma form)."""

    def __init__(self, option_strings, dest, valid=None, **kw):
        kw.setdefault("nargs", "+")
        self.valid = tuple(valid) if valid is not None else None
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        items = [v.strip() for value in values for v in str(value).split(",") if v.strip()]
        bad = [v for v in items if self.valid is not None and v not in self.valid]
        if bad or not items:
            parser.error(f"argument {option_string}: invalid choice(s) {bad or values} "
                         f"(choose from {', '.join(self.valid or ())}; space- or comma-separated)")
        setattr(namespace, self.dest, items)


@contextlib.contextmanager
def cli_errors():
    """Turn a ValueError / FileNotFoundError (bad flags, missing files: the user's to fix) into one
    ``error: ...`` message on stderr and exit status 2, as argparse does for bad flags; any other
    exception keeps its traceback (a bug to report)."""
    try:
        yield
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def main(args: argparse.Namespace | None = None) -> dict | None:
    """Entry point of ``python -m pspnet_lite.train``. Bad settings exit with status 2 and one
    ``error:`` message (:func:`cli_errors`); a NaN/inf loss exits with status 1."""
    if args is None:
        args = get_args_parser().parse_args()
    if args.list_presets:
        from .presets import describe_presets
        print(describe_presets())
        return None
    with cli_errors():
        cfg = config_from_args(args)
        if args.print_config:
            check_config(cfg, D.env_world_size())  # the validation a training run would do first
            print(json.dumps(cfg.to_dict(), indent=2))
            return None
        try:
            result = train(cfg)
        except NonFiniteLossError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(1) from None
    if D.get_rank() == 0:
        final = result["final"]
        if final.get("iou"):
            print(summarize(final, result.get("class_names"), cfg.dataset))
        msg = f"done: {result['iterations']} iterations, checkpoints in {result['out_dir']}"
        if final:
            msg += f"; val mIoU {100 * (final.get('miou') or float('nan')):.2f}"
        print(msg)
    return result


if __name__ == "__main__":
    main()

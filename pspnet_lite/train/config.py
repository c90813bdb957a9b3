"""Every setting of a training run: :class:`TrainConfig`, which holds the network's
:class:`~pspnet_lite.model.PSPNetConfig` as ``model``.

The defaults are the paper's recipe (§5.1 "Implementation Details"); :mod:`.presets` fills in data sets,
backbones and schedules. A config is built and changed by *flat* field names, the run's own and the
network's alike (``cfg.replace(iters=100, bins=(1,))``, ``--iters 100 --bins 1``, ``--set bins=[1]``):
:data:`FIELDS` lists them all, and each name belongs to exactly one of the two dataclasses.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..cli import parse_field, unknown_field_error
from ..model import PSPNetConfig

FREEZE_BN = ("none", "backbone", "all")
AMP = ("off", "bf16", "fp16")


def _f(default, help: str, **metadata):
    """A dataclass field with its help text (the command line shows it) and its choices, if any."""
    return field(default=default, metadata={"help": help, **metadata})


def _default_model() -> PSPNetConfig:
    return PSPNetConfig(num_classes=None)  # None: the data set's number of classes


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (plain JSON-able values; stored in each checkpoint).

    ``model`` holds the architecture (:class:`~pspnet_lite.model.PSPNetConfig`, ``num_classes=None``
    meaning the data set's). Change any field, of the run or of the model, with :meth:`replace`.
    """

    # what to train on
    preset: str | None = _f(None, "name of the preset this config came from (informational)")
    dataset: str = _f("context_scenes", "data set name for pspnet_lite.data.build_dataset "
                      "(context_scenes, ade20k, voc, cityscapes, folder)")
    data_root: str | None = _f(None, "data set root directory (not needed for context_scenes)")
    train_split: str = _f("train", "training split")
    val_split: str | None = _f("val", "validation split; None/'' = no validation")
    num_train_images: int | None = _f(None, "use only this many training images (context_scenes: generate "
                                      "this many)")
    num_val_images: int | None = _f(None, "use only this many validation images")
    image_size: int | None = _f(None, "context_scenes only: generated image size")
    data_seed: int | None = _f(None, "context_scenes only: the generator's seed of both splits (None: 0, one data "
                               "set for every run; chapter 05 draws a fresh data set per run seed)")
    # augmentation (§5.1)
    augment: bool = _f(True, "random scale/rotate/blur/mirror (§5.1); off = crop only")
    crop_size: int = _f(473, "training crop (473 ADE20K/VOC, 713 Cityscapes)")
    scale_min: float = _f(0.5, "random resize lower bound")
    scale_max: float = _f(2.0, "random resize upper bound")
    rotate: float = _f(10.0, "random rotation range +- degrees (0 = off)")
    blur: bool = _f(True, "random Gaussian blur")
    flip: bool = _f(True, "random horizontal mirror")
    # the network (§3) and its initial weights
    model: PSPNetConfig = field(default_factory=_default_model, metadata={"help": "the architecture"})
    pretrained: str | None = _f(None, "weights file loaded before training (pspnet_lite.checkpoint.load_weights)")
    pretrained_kind: str = _f("auto", "layout of the pretrained file", choices=("auto", "imagenet", "semseg",
                                                                                "pspnet_lite"))
    # optimisation (§5.1)
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
    freeze_bn: str = _f("none", "keep those BN layers in eval mode (small-batch fine-tuning)", choices=FREEZE_BN)
    sync_bn: bool = _f(True, "SyncBatchNorm when world size > 1")
    # engine
    device: str = _f("auto", "auto|cpu|cuda|cuda:N")
    amp: str = _f("off", "autocast precision (fp16 uses a GradScaler on CUDA)", choices=AMP)
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

    def replace(self, **changes) -> TrainConfig:
        """A copy with ``changes`` applied; names are flat (:data:`FIELDS`): run fields and model fields."""
        run, arch = split_fields(changes)
        if arch:
            run["model"] = dataclasses.replace(run.get("model", self.model), **arch)
        return dataclasses.replace(self, **run)

    def to_dict(self) -> dict:
        """JSON-able dict, the architecture nested under ``"model"`` (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def flat_dict(self) -> dict:
        """JSON-able dict with the model's fields at the top level, as :data:`FIELDS` names them."""
        d = self.to_dict()
        return {**{k: v for k, v in d.items() if k != "model"}, **d["model"]}

    @classmethod
    def from_dict(cls, d: Mapping) -> TrainConfig:
        """The config of a stored dict: nested (``to_dict``) or flat (``flat_dict``, and the configs of
        checkpoints written before ``model`` was nested). Unknown fields are a ValueError."""
        d = dict(d)
        nested = d.pop("model", None)
        if nested is not None and not isinstance(nested, Mapping):
            raise ValueError(f"config field 'model' must be a dict of PSPNetConfig fields; got {nested!r}")
        base = cls() if nested is None else cls(model=PSPNetConfig.from_dict(nested))
        return base.replace(**d)


RUN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig) if f.name != "model"}
MODEL_FIELDS = {f.name: f for f in dataclasses.fields(PSPNetConfig)}
FIELDS = {**RUN_FIELDS, **MODEL_FIELDS}  # every flat name a config can be changed by
assert not set(RUN_FIELDS) & set(MODEL_FIELDS), "a field name must belong to the run or to the model"


def split_fields(changes: Mapping) -> tuple[dict, dict]:
    """``(run changes, model changes)`` of flat ``changes``; an unknown name is a ValueError."""
    run, arch = {}, {}
    for name, value in changes.items():
        if name in MODEL_FIELDS:
            arch[name] = value
        elif name in RUN_FIELDS or name == "model":
            run[name] = value
        else:
            raise unknown_field_error(name, FIELDS, "TrainConfig field")
    return run, arch


def parse_value(name: str, text: str):
    """Parse a command-line string for flat field ``name`` into its type; a bad value is a ValueError."""
    if name not in FIELDS:
        raise unknown_field_error(name, FIELDS, "TrainConfig field")
    return parse_field(FIELDS[name], text)


def apply_overrides(cfg: TrainConfig, overrides: list[str] | Mapping) -> TrainConfig:
    """``cfg`` with ``["key=value", ...]`` (strings, parsed) or ``{key: value}`` applied."""
    if isinstance(overrides, Mapping):
        return cfg.replace(**overrides)
    changes = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r} (e.g. --set iters=1000)")
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        changes[key] = parse_value(key, value)
    return cfg.replace(**changes)


def _positive_int(name: str, value, hint: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer{hint}; got {value!r}")


def check_config(cfg: TrainConfig, world: int = 1) -> None:
    """Raise a ValueError for any bad setting, before any work starts."""
    _positive_int("iters", cfg.iters)
    _positive_int("batch_size", cfg.batch_size, " (the global batch, 16 in the paper)")
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the world size {world}; use a batch "
                         f"size that is a multiple of {world} or launch a number of processes that divides it")
    per_rank = cfg.batch_size // world
    if cfg.micro_batch is not None and (cfg.micro_batch < 1 or per_rank % cfg.micro_batch):
        raise ValueError(f"micro_batch {cfg.micro_batch} must divide the per-process batch {per_rank} "
                         f"(= batch_size {cfg.batch_size} / world size {world})")
    for name in ("amp", "freeze_bn", "pretrained_kind"):
        choices = RUN_FIELDS[name].metadata["choices"]
        if getattr(cfg, name) not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}; got {getattr(cfg, name)!r}")
    if not cfg.lr > 0 or cfg.head_lr_mult <= 0:
        raise ValueError(f"lr and head_lr_mult must be positive; got lr={cfg.lr}, head_lr_mult={cfg.head_lr_mult}")
    if cfg.stop_at is not None and not 0 < cfg.stop_at <= cfg.iters:
        raise ValueError(f"stop_at must be in 1..iters={cfg.iters}; got {cfg.stop_at}")
    _positive_int("log_every", cfg.log_every)
    if cfg.scale_min <= 0 or cfg.scale_max < cfg.scale_min:
        raise ValueError(f"need 0 < scale_min <= scale_max; got {cfg.scale_min}, {cfg.scale_max}")
    for name in ("image_size", "data_seed"):
        if getattr(cfg, name) is not None and cfg.dataset != "context_scenes":
            raise ValueError(f"{name}={getattr(cfg, name)} only applies to dataset='context_scenes'; unset it "
                             f"(--{name.replace('_', '-')} none)")


def accum_steps(cfg: TrainConfig, world: int) -> tuple[int, int]:
    """(micro_batch, accumulation steps) per process for a global batch over ``world`` processes."""
    per_rank = cfg.batch_size // world
    micro = cfg.micro_batch or per_rank
    return micro, per_rank // micro


class FromScratchWarning(UserWarning):
    """A real data set is being trained without pretrained weights (the paper fine-tunes from ImageNet)."""


def from_scratch_message(cfg: TrainConfig) -> str | None:
    """The warning for training a real data set from random weights, or None (ContextScenes, or weights given)."""
    if cfg.pretrained or cfg.dataset == "context_scenes":
        return None
    return (f"training {cfg.model.backbone} on {cfg.dataset!r} from random weights (pretrained=None). The paper "
            "fine-tunes from ImageNet-pretrained ResNets (§3.3, §5.1); from scratch, its numbers are out of reach. "
            "Pass --pretrained FILE (TrainConfig.pretrained), any file pspnet_lite.checkpoint.load_weights "
            "reads: the authors' deep-stem ImageNet ResNets (hszhao/semseg initmodel/resnet50_v2.pth, "
            "resnet101_v2.pth; torchvision's resnet50 weights need --stem torchvision), an authors' semseg "
            "PSPNet checkpoint, or a pspnet_lite checkpoint (last.pt / best.pt); --pretrained-kind picks the "
            "layout if 'auto' cannot tell.")

"""Load ImageNet ResNet weights and published PSPNet checkpoints into our modules (paper §3.3, §5.1).

PSPNet starts from "a pretrained ResNet model" (§3.3) and the authors publish trained networks.
:func:`load_state` maps three layouts and maps them onto :class:`~pspnet_lite.model.PSPNet`:

* ``"imagenet"``: a ResNet state dict for the backbone, either torchvision's (7x7 ``conv1``; only for
  ``stem="torchvision"``) or the authors' deep-stem ``resnet50_v2.pth`` / ``resnet101_v2.pth``
  (``conv1, bn1, conv2, bn2, conv3, bn3``; for ``stem="deep"``). ``fc.*`` is dropped.
* ``"semseg"``: a checkpoint of the authors' PyTorch release (hszhao/semseg): ``layer0.{0,1,3,4,6,7}``
  (the deep stem as one Sequential), ``layer1..4``, ``ppm.features.{i}.{1,2}``, ``cls.{0,1,4}``,
  ``aux.{0,1,4}``, optionally nested under ``"state_dict"`` and prefixed ``module.`` (DataParallel).
* ``"pspnet_lite"``: our own ``model.state_dict()`` (optionally nested under ``"model"`` or
  ``"state_dict"``).

Loading is strict: a missing, unexpected or wrongly shaped key raises a ValueError that lists the
keys and says what differs (classes, depth, stem), never a silent partial load (the authors' loader
uses ``strict=False``, which hides missing keys). Two deliberate allowances: ``num_batches_tracked``
buffers may be absent (checkpoints older than PyTorch 0.4.1 lack them), and ``aux.*`` weights are
skipped, and reported, when the model has no auxiliary head (the head is training-only, §4; the
authors' test checkpoints contain it). Files are read by :mod:`pspnet_lite.checkpoint`
(``torch.load(..., weights_only=True)``).

A state dict does not record strides, dilations or the upsampling mode: the authors' checkpoints need
the defaults (deep stem, ``dilation="full"``, ``output_stride=8``, ``align_corners=True``), which
``PSPNet(num_classes=..., backbone=...)`` gives; with those, outputs equal the release's to float
tolerance on the 8n+1 input sizes it accepts (tests/test_weights.py checks this against an
independent rebuild of the release).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .backbone import DilatedResNet

KINDS = ("auto", "imagenet", "semseg", "pspnet_lite")
NESTING_KEYS = ("state_dict", "model", "model_state_dict", "model_state")
# semseg's layer0 = Sequential(conv1, bn1, relu, conv2, bn2, relu, conv3, bn3, relu, maxpool)
SEMSEG_STEM = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2", "6": "conv3", "7": "bn3"}
SHOWN = 12  # keys listed per category in an error message


@dataclass
class LoadReport:
    """What :func:`load_weights` did: model keys filled, source keys deliberately skipped, and (only
    with ``strict=False``) the keys that did not fit. For ImageNet weights the keys are relative to
    ``model.backbone``."""

    kind: str
    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors ({self.kind} layout) from {self.source}"]
        for name in ("skipped", "missing", "unexpected", "mismatched"):
            keys = getattr(self, name)
            if keys:
                parts.append(f"{name} {len(keys)}: {_short(keys)}")
        return "; ".join(parts)


def _short(keys: list[str], n: int = SHOWN) -> str:
    more = f", ... and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _grouped(keys: list[str], n: int = SHOWN) -> str:
    """List keys compactly by module: ``layer3.1.bn1.{weight,bias,running_mean}`` (n modules shown)."""
    groups: dict[str, list[str]] = {}
    for k in keys:
        module, _, leaf = k.rpartition(".")
        groups.setdefault(module, []).append(leaf)
    names = [f"{m}.{leaves[0]}" if len(leaves) == 1 else f"{m}.{{{','.join(leaves)}}}" for m, leaves in groups.items()]
    more = f", ... and {len(keys) - sum(len(v) for v in list(groups.values())[:n])} more keys" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def unwrap_state_dict(obj, name: str = "the dict passed in") -> dict[str, torch.Tensor]:
    """The state dict inside ``obj`` (what ``torch.load`` returned, or a mapping passed in): unwraps
    ``{"state_dict": ...}``-style nesting and strips a ``module.`` prefix (DataParallel / DDP)."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{name} holds a {type(obj).__name__}, not a state dict.")
    for key in NESTING_KEYS:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{name} does not hold a state dict: entries {_short(sorted(map(repr, not_tensors)))} "
                         f"are not tensors (a checkpoint's weights are looked for under the keys {NESTING_KEYS}).")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def detect_kind(state: Mapping[str, torch.Tensor]) -> str:
    """Guess the layout of a state dict: "pspnet_lite", "semseg" or "imagenet"."""
    keys = list(state)
    if any(k.startswith("backbone.") for k in keys):
        return "pspnet_lite"
    if any(k.startswith("layer0.") for k in keys):
        return "semseg"
    if "conv1.weight" in state and any(k.startswith("layer1.") for k in keys):
        return "imagenet"
    raise ValueError(f"cannot tell the layout of a state dict with keys {_short(sorted(keys), 6)}; pass "
                     "kind='imagenet' (ResNet), 'semseg' (hszhao/semseg PSPNet) or 'pspnet_lite'.")


def semseg_to_pspnet_lite(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the authors' semseg PSPNet keys to ours (``layer0.3.weight`` -> ``backbone.conv2.weight``,
    ``layer2.*`` -> ``backbone.layer2.*``; ``ppm``, ``cls``, ``aux`` keep their names)."""
    return {_from_semseg(k): v for k, v in state.items()}


def pspnet_lite_to_semseg(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`semseg_to_pspnet_lite` (deep-stem models only), e.g. to export to semseg."""
    stem = {v: k for k, v in SEMSEG_STEM.items()}
    out = {}
    for k, v in state.items():
        if k.startswith("backbone."):
            head, _, rest = k[len("backbone."):].partition(".")
            k = f"layer0.{stem[head]}.{rest}" if head in stem else f"{head}.{rest}"
        out[k] = v
    return out


def _from_semseg(key: str) -> str:
    head, _, rest = key.partition(".")
    if head == "layer0":
        idx, _, rest = rest.partition(".")
        return f"backbone.{SEMSEG_STEM[idx]}.{rest}" if idx in SEMSEG_STEM else key
    if head in ("layer1", "layer2", "layer3", "layer4"):
        return f"backbone.{key}"
    return key


def _stages(keys, prefix: str = "") -> tuple[int, ...]:
    """Blocks per stage read from keys such as ``layer3.22.conv1.weight``."""
    counts = []
    for i in range(1, 5):
        idx = {k[len(prefix):].split(".")[1] for k in keys if k.startswith(f"{prefix}layer{i}.")}
        counts.append(max((int(j) + 1 for j in idx if j.isdigit()), default=0))
    return tuple(counts)


def _hints(own: Mapping, state: Mapping, prefix: str) -> list[str]:
    hints = []
    for head in ("cls.4.weight", "aux.4.weight"):
        if head in own and head in state and own[head].shape[0] != state[head].shape[0]:
            hints.append(f"num_classes differs: checkpoint {state[head].shape[0]}, model {own[head].shape[0]}; "
                         f"build PSPNet(num_classes={state[head].shape[0]}) to load it, then replace the classifier.")
            break
    mine, theirs = _stages(own, prefix), _stages(state, prefix)
    if any(theirs) and mine != theirs:
        hints.append(f"depth differs: checkpoint has {theirs} blocks per stage, model {mine} "
                     "(resnet50 = (3, 4, 6, 3), resnet101 = (3, 4, 23, 3)).")
    return hints


def _load(module: nn.Module, state: dict, strict: bool, report: LoadReport, prefix: str = "",
          origin: Mapping[str, str] | None = None) -> None:
    own = module.state_dict()
    origin = origin or {}
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [origin.get(k, k) for k in state if k not in own]
    mismatched = [f"{k} (checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)})"
                  for k, v in state.items() if k in own and v.shape != own[k].shape]
    if strict and (missing or unexpected or mismatched):
        lines = [f"{report.source} ({report.kind} layout) does not fit {type(module).__name__}:"]
        for title, keys, show in (("wrong shape", mismatched, _short),
                                  ("missing from the checkpoint", missing, _grouped),
                                  ("unexpected in the checkpoint", unexpected, _grouped)):
            if keys:
                lines.append(f"  {title} ({len(keys)}): {show(keys)}")
        lines += [f"  hint: {h}" for h in _hints(own, state, prefix)]
        lines.append("  Nothing was loaded. Pass strict=False to load the keys that fit and get them listed.")
        raise ValueError("\n".join(lines))
    fits = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    module.load_state_dict(fits, strict=False)
    report.loaded += list(fits)
    report.missing += missing
    report.unexpected += unexpected
    report.mismatched += mismatched


def _backbone(model: nn.Module) -> DilatedResNet:
    backbone = getattr(model, "backbone", model)
    if not isinstance(backbone, DilatedResNet):
        raise ValueError(f"ImageNet weights go into a DilatedResNet or a PSPNet; got {type(model).__name__}.")
    return backbone


def _load_imagenet(model: nn.Module, state: dict, strict: bool, report: LoadReport) -> None:
    backbone = _backbone(model)
    report.skipped += [k for k in state if k.startswith("fc.")]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    deep_file = "conv2.weight" in state and "conv3.weight" in state
    if backbone.stem_type == "deep" and not deep_file:
        shape = tuple(state["conv1.weight"].shape) if "conv1.weight" in state else None
        raise ValueError(
            f"{report.source} is an ImageNet ResNet with a single stem conv (conv1.weight {shape}, torchvision's "
            "7x7 layout), but this model uses the deep stem (three 3x3 convs, 64-64-128) of the authors' release. "
            "Load the authors' deep-stem ImageNet weights (hszhao/semseg initmodel/resnet50_v2.pth, "
            "resnet101_v2.pth) or build the model with stem='torchvision'.")
    if backbone.stem_type == "torchvision" and deep_file:
        raise ValueError(f"{report.source} has the authors' deep stem (conv1, conv2, conv3 3x3), but this model "
                         "uses stem='torchvision' (one 7x7 conv); build it with stem='deep'.")
    _load(backbone, state, strict, report)


def _load_pspnet(model: nn.Module, state: dict, strict: bool, report: LoadReport, origin: dict) -> None:
    if not hasattr(model, "cls") or not isinstance(getattr(model, "backbone", None), DilatedResNet):
        raise ValueError(f"a {report.kind} checkpoint is a whole PSPNet; got a {type(model).__name__}. "
                         "Use kind='imagenet' for a backbone.")
    if getattr(model, "aux", None) is None:
        report.skipped += [origin.get(k, k) for k in state if k.startswith("aux.")]
        state = {k: v for k, v in state.items() if not k.startswith("aux.")}
    _load(model, state, strict, report, prefix="backbone.", origin=origin)


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], kind: str = "auto", strict: bool = True,
               source: str = "the dict passed in") -> LoadReport:
    """Load the state dict ``state`` into ``model`` (a PSPNet, or a DilatedResNet for ImageNet weights)
    and return a :class:`LoadReport` (paper §3.3: PSPNet starts from a pretrained ResNet).

    Files are read by :func:`pspnet_lite.checkpoint.load_weights`, which calls this.
    ``kind``: "auto" (guess from the keys), "imagenet" (backbone only; torchvision or the authors'
    deep-stem ``resnet*_v2.pth`` layout), "semseg" (the authors' hszhao/semseg PSPNet checkpoints) or
    "pspnet_lite" (ours). With ``strict=True`` (default) any missing, unexpected or wrongly shaped key
    raises a ValueError listing the keys, and nothing is loaded; ``strict=False`` loads what fits and
    lists the rest in the report.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {KINDS}.")
    state = unwrap_state_dict(state, source)
    kind = detect_kind(state) if kind == "auto" else kind
    report = LoadReport(kind=kind, source=source)
    if kind == "imagenet":
        _load_imagenet(model, state, strict, report)
    elif kind == "semseg":
        mapped = semseg_to_pspnet_lite(state)
        origin = {_from_semseg(k): k for k in state}
        _load_pspnet(model, mapped, strict, report, origin)
    else:
        _load_pspnet(model, state, strict, report, {})
    return report

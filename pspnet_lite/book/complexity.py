"""Parameter, FLOP and feature-map-size accounting for the book's architecture chapter (section 3.3).

The paper says PSPNet "does not much increase" the computational cost of the dilated FCN it extends
(section 3.3). These helpers put numbers on that claim. FLOPs come from ``torch.utils.flop_counter``
(shape-based formulas for convolutions and matrix products; batch norm, ReLU, pooling and interpolation
count as zero), so a convolution of ``M`` multiply-accumulates counts ``2 M`` FLOPs and ``macs = flops / 2``.

Counting never needs real weights: build the model on the ``meta`` device (:func:`on_meta`) and a
ResNet-269 PSPNet at 473 x 473 is counted in well under a second on a CPU, with no memory allocated.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def on_meta(build: Callable[..., nn.Module], *args, **kwargs) -> nn.Module:
    """Build a module on the ``meta`` device: parameters have shapes but no storage (instant, no memory).

    ``on_meta(PSPNet, backbone="resnet269")`` gives a model whose parameters can be counted and whose
    forward pass can be traced for FLOPs and feature-map shapes, but not run for real values.
    """
    with torch.device("meta"):
        return build(*args, **kwargs)


def count_parameters(module: nn.Module | None, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (0 for ``None``); BN running statistics are buffers, not counted.

    Conv weights + BN affine + classifier biases: what ``sum(p.numel() for p in model.parameters())`` gives
    on the authors' network definition (hszhao/semseg, model/pspnet.py), which publishes no counts itself.
    """
    if module is None:
        return 0
    if not isinstance(module, nn.Module):
        raise ValueError(f"count_parameters expects an nn.Module or None, got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_breakdown(model: nn.Module, depth: int = 1) -> dict[str, int]:
    """Parameters grouped by module-name prefix of ``depth`` parts, e.g. ``{"backbone": ..., "ppm": ...}``.

    ``depth=2`` splits further (``"backbone.layer3"``); the values always sum to ``count_parameters(model)``.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    groups: dict[str, int] = {}
    for name, p in model.named_parameters():
        key = ".".join(name.split(".")[:-1][:depth]) or "(root)"
        groups[key] = groups.get(key, 0) + p.numel()
    return groups


@dataclass
class FlopReport:
    """Forward-pass FLOPs of one model at one input size (section 3.3 cost comparison).

    ``flops`` is the total for the given batch; ``by_module`` maps every module name (relative to the
    model, ``""`` = the whole model) to the FLOPs spent inside it, children included.
    """

    flops: int
    input_shape: tuple[int, ...]
    by_module: dict[str, int] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        """Multiply-accumulates (FLOPs / 2), the unit most papers quote as "FLOPs"."""
        return self.flops // 2

    @property
    def gmacs(self) -> float:
        """MACs in units of 10^9."""
        return self.macs / 1e9

    def module(self, name: str) -> int:
        """FLOPs spent inside module ``name`` (0 when it did not run, e.g. the aux head in eval mode)."""
        return self.by_module.get(name, 0)

    def share(self, name: str) -> float:
        """Fraction of all FLOPs spent inside module ``name``."""
        return self.module(name) / self.flops if self.flops else 0.0

    def top(self, n: int = 10, leaves_only: bool = True) -> list[tuple[str, int]]:
        """The ``n`` most expensive modules; with ``leaves_only`` only modules with no counted children."""
        names = [k for k in self.by_module if k]
        if leaves_only:
            names = [k for k in names if not any(o.startswith(k + ".") for o in names)]
        return sorted(((k, self.by_module[k]) for k in names), key=lambda kv: -kv[1])[:n]


def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _input_shape(input_size: int | Sequence[int], batch_size: int, in_channels: int) -> tuple[int, ...]:
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or any(int(s) < 1 for s in size) or batch_size < 1 or in_channels < 1:
        raise ValueError(f"input_size must be an int or (H, W) of positive ints and batch_size, in_channels >= 1; "
                         f"got input_size={input_size!r}, batch_size={batch_size}, in_channels={in_channels}")
    return (int(batch_size), int(in_channels), int(size[0]), int(size[1]))


def count_flops(model: nn.Module, input_size: int | Sequence[int] = 473, batch_size: int = 1,
                in_channels: int = 3, train: bool = False) -> FlopReport:
    """Count the FLOPs of one forward pass with ``torch.utils.flop_counter.FlopCounterMode``.

    The input is an empty tensor on the model's device, so a model built with :func:`on_meta` is counted
    without computing anything. ``train=False`` (default) counts inference (for PSPNet: no aux head);
    ``train=True`` counts the training forward pass (aux head included). The model's mode is restored.
    """
    shape = _input_shape(input_size, batch_size, in_channels)
    x = torch.empty(shape, device=_model_device(model))  # (N, 3, H, W), values irrelevant
    was_training = model.training
    model.train(train)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    root = type(model).__name__
    by_module = {}
    for name, ops in counter.get_flop_counts().items():
        if name == "Global":
            continue
        rel = "" if name == root else name[len(root) + 1:] if name.startswith(root + ".") else name
        by_module[rel] = sum(ops.values())
    return FlopReport(flops=int(counter.get_total_flops()), input_shape=shape, by_module=by_module)


def feature_shapes(model: nn.Module, names: Iterable[str], input_size: int | Sequence[int] = 473,
                   in_channels: int = 3) -> dict[str, tuple[int, ...]]:
    """Output shape of each named submodule for one (eval-mode) forward pass, e.g. the stages of section 3.3.

    ``feature_shapes(on_meta(PSPNet), ["backbone.layer2", "backbone.layer4"])`` ->
    ``{"backbone.layer2": (1, 512, 60, 60), "backbone.layer4": (1, 2048, 60, 60)}`` at 473 x 473.
    Unknown names raise ValueError listing the model's top-level modules.
    """
    names = list(names)
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        top = [n for n in modules if n and "." not in n]
        raise ValueError(f"no submodule named {missing} in {type(model).__name__}; top-level modules: {top}")
    shapes: dict[str, tuple[int, ...]] = {}

    def hook(name):
        def record(_module, _inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            shapes.setdefault(name, tuple(out.shape))
        return record

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    x = torch.empty(_input_shape(input_size, 1, in_channels), device=_model_device(model))  # (1, 3, H, W)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {n: shapes[n] for n in names if n in shapes}

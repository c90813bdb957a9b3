"""The paper's Fig. 3 drawn from one real forward pass of a :class:`~pspnet_lite.model.PSPNet` (§3.3; §4's auxiliary
branch, Fig. 4).

:func:`trace_shapes` runs the model once, in training mode so that the auxiliary branch runs too, and records the
shape of every tensor Fig. 3 shows: module outputs with forward hooks, and the bilinear upsamplings (which are
function calls, not modules) with a ``TorchFunctionMode`` that watches ``F.interpolate``. :func:`draw_fig3` draws
the diagram from that record: one labelled box per tensor, every shape read from the record, never typed.
:func:`fig3` does both (and saves the figure).

The record's keys (module names of the model, so they can be looked up with ``model.get_submodule``):

* ``"input"``: the image batch (N, 3, H, W), Fig. 3(a);
* ``"backbone.layer3"``: stage 3 of the dilated ResNet ("res4", 16w channels, 1024 at full width), which the
  auxiliary classifier reads ("after the res4b22 residue block", Fig. 4);
* ``"backbone.layer4"``: the feature map of Fig. 3(b) (32w channels, 2048 at full width, 1/8 of the input);
* ``"ppm.features.{i}.0"``: level ``i``'s pooled grid (N, 2048, b, b); ``"ppm.features.{i}"``: after the 1x1
  reduction to 1/N of the channels; ``"ppm.features.{i}:upsampled"``: back at the feature map's size;
* ``"ppm"``: the concatenation (N, 4096, H/8, W/8), the end of Fig. 3(c);
* ``"cls.0"``: the 3x3 convolution 4096 -> 512; ``"cls"``: the per-pixel prediction at 1/8, Fig. 3(d);
  ``"cls:upsampled"``: the logits at the input size (what the model returns);
* ``"aux.0"``, ``"aux"``, ``"aux:upsampled"``: the same for the auxiliary head (training only).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["trace_shapes", "draw_fig3", "fig3", "box_names"]

UPSAMPLED = ":upsampled"
LEVEL_COLOURS = ("#d62728", "#ff7f0e", "#1f77b4", "#2ca02c")  # the paper's red 1x1 level, then the finer ones


class _UpsampleRecorder(TorchFunctionMode):
    """Records the output shape of every ``F.interpolate`` whose input is the output of a hooked module."""

    def __init__(self, outputs: list[tuple[str, torch.Tensor]], shapes: dict[str, tuple[int, ...]]):
        super().__init__()
        self.outputs, self.shapes = outputs, shapes

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is F.interpolate:
            src = args[0] if args else kwargs["input"]
            name = next((n for n, t in reversed(self.outputs) if t is src), None)
            if name is not None:
                self.shapes[name + UPSAMPLED] = tuple(out.shape)
        return out


def _model_names(model: nn.Module) -> list[str]:
    if getattr(model, "ppm", None) is None:
        raise ValueError("Fig. 3 needs the pyramid pooling module; this model was built with bins=() (the dilated "
                         "FCN baseline). Build it with the paper's bins, e.g. PSPNet(bins=(1, 2, 3, 6)).")
    names = ["backbone.layer3", "backbone.layer4"]
    for i, level in enumerate(model.ppm.features):
        names += [f"ppm.features.{i}.0", f"ppm.features.{i}"] if len(level) > 1 else [f"ppm.features.{i}"]
    names += ["ppm", "cls.0", "cls"]
    if getattr(model, "aux", None) is not None:
        names += ["aux.0", "aux"]
    return names


def trace_shapes(model: nn.Module, input_size: int | tuple[int, int] = 473, x: torch.Tensor | None = None,
                 seed: int = 0) -> dict[str, tuple[int, ...]]:
    """Shapes of every tensor of Fig. 3 in one real forward pass of ``model`` (a PSPNet with its pyramid).

    ``x`` is the input batch (N, 3, H, W); if None, one random image of ``input_size`` (an int or (H, W)) on the
    model's device, drawn with ``seed``. The pass runs in training mode under ``torch.no_grad()`` so that the
    auxiliary branch runs; the model's mode and buffers (BN running statistics) are restored afterwards, so
    tracing leaves the model as it was. Returns ``{name: shape}`` in the order of the forward pass (the keys are
    listed in the module docstring).
    """
    names = _model_names(model)
    if x is None:
        h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        device = next(model.parameters()).device
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(1, 3, h, w, generator=gen).to(device)  # (1, 3, H, W)
    shapes: dict[str, tuple[int, ...]] = {"input": tuple(x.shape)}
    outputs: list[tuple[str, torch.Tensor]] = []

    def hook(name):
        def record(_module, _inputs, output):
            shapes[name] = tuple(output.shape)
            outputs.append((name, output))
        return record

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    buffers = {k: v.clone() for k, v in model.state_dict().items() if k in dict(model.named_buffers())}
    was_training = model.training
    try:
        model.train()
        with torch.no_grad(), _UpsampleRecorder(outputs, shapes):
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        model.load_state_dict(buffers, strict=False)
    return shapes


def box_names(shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """The record's names that :func:`draw_fig3` draws a box for (all of them, in the drawing's order)."""
    return list(shapes)


def _fmt(shape: tuple[int, ...]) -> str:
    return " × ".join(str(s) for s in shape[1:])  # C x H x W (the batch dimension left out)


def _zoom(small: tuple[int, ...], large: tuple[int, ...]) -> str:
    """The upsampling factor between two sides as ``align_corners=True`` sees it: (H - 1) / (h - 1) (8 at 60 -> 473)."""
    h, H = small[2], large[2]
    return f"{(H - 1) / (h - 1):.3g}" if h > 1 else f"{H / h:.3g}"


def draw_fig3(shapes: dict[str, tuple[int, ...]], title: str | None = None, figsize=(15, 5.6)):
    """Draw Fig. 3 (plus the auxiliary branch) from a :func:`trace_shapes` record; returns the figure.

    Every box is a ``FancyBboxPatch`` whose ``gid`` is its record name, labelled with the shape from the record
    (C × H × W, the batch left out). The pyramid's bin sizes, the channel counts and the upsampling factor are all
    read from the record.
    """
    import matplotlib.pyplot as plt  # lazy: matplotlib is a book-only dependency
    from matplotlib.patches import FancyBboxPatch

    required = ("input", "backbone.layer3", "backbone.layer4", "ppm", "cls.0", "cls", "cls" + UPSAMPLED)
    missing = [k for k in required if k not in shapes]
    if missing:
        raise ValueError(f"the shape record lacks {missing}; make it with pspnet_lite.book.fig3.trace_shapes(model)")
    levels = sorted({int(k.split(".")[2].split(":")[0]) for k in shapes if k.startswith("ppm.features.")})
    has_aux = "aux.0" in shapes and "aux" in shapes
    (_, _, H, W), (_, _, h, w) = shapes["input"], shapes["backbone.layer4"]

    fig, ax = plt.subplots(figsize=figsize, constrained_layout=False)
    ax.set_xlim(-0.95, 18.05)
    ax.set_ylim(-3.8 if has_aux else -2.1, 2.75)
    ax.set_axis_off()
    geometry: dict[str, tuple[float, float, float, float]] = {}  # name -> (x centre, y centre, width, height)

    def box(name, xc, yc, label, face="#eeeeee", edge="#444444", style="-", width=1.6, height=0.8):
        patch = FancyBboxPatch((xc - width / 2, yc - height / 2), width, height,
                               boxstyle="round,pad=0.02,rounding_size=0.08", facecolor=face, edgecolor=edge,
                               linestyle=style, linewidth=1.2, gid=name)
        ax.add_patch(patch)
        ax.text(xc, yc, label, ha="center", va="center", fontsize=7)
        geometry[name] = (xc, yc, width, height)

    def side(name, where):
        xc, yc, bw, bh = geometry[name]
        return {"left": (xc - bw / 2, yc), "right": (xc + bw / 2, yc), "top": (xc, yc + bh / 2),
                "bottom": (xc, yc - bh / 2)}[where]

    def path(points, colour="#333333", style="-"):
        """Lines through ``points``, an arrow head at the last one."""
        if len(points) > 2:
            ax.plot([p[0] for p in points[:-1]], [p[1] for p in points[:-1]], color=colour, linestyle=style, lw=1.1)
        ax.annotate("", xy=points[-1], xytext=points[-2],
                    arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.1, linestyle=style, shrinkA=0, shrinkB=0))

    # (a) the input and (b) the dilated ResNet
    box("input", 0, 0, f"(a) input image\n{_fmt(shapes['input'])}", face="#ffffff")
    box("backbone.layer3", 2.1, 0, f"dilated ResNet\nup to res4 (layer3)\n{_fmt(shapes['backbone.layer3'])}",
        width=1.75, height=0.95)
    box("backbone.layer4", 4.2, 0, f"res5 (layer4):\n(b) feature map\n{_fmt(shapes['backbone.layer4'])}",
        height=0.95)
    path([side("input", "right"), side("backbone.layer3", "left")])
    path([side("backbone.layer3", "right"), side("backbone.layer4", "left")])

    # (c) the pyramid: pool (and the 1x1 reduction) and upsample per level, concatenated with the feature map
    ys = [1.5 - 3.0 * k / (len(levels) - 1) for k in range(len(levels))] if len(levels) > 1 else [0.0]
    box("ppm", 12.0, 0, f"(c) concat\n{_fmt(shapes['ppm'])}", face="#dddddd", width=1.45,
        height=max(ys) - min(ys) + 0.7)
    for k, (i, y) in enumerate(zip(levels, ys)):
        colour = LEVEL_COLOURS[k % len(LEVEL_COLOURS)]
        style = dict(face=colour + "30", edge=colour, height=0.62)
        level, pool = f"ppm.features.{i}", f"ppm.features.{i}.0"
        b = shapes.get(pool, shapes[level])[2]
        if pool in shapes:  # with the 1/N reduction: pool, then 1x1 conv + BN + ReLU
            box(pool, 6.4, y, f"pool {b}×{b}\n{_fmt(shapes[pool])}", **style)
            box(level, 8.3, y, f"1×1 conv\n{_fmt(shapes[level])}", **style)
            path([side(pool, "right"), side(level, "left")], colour)
        else:  # without reduction the level is the pooling alone
            box(level, 7.35, y, f"pool {b}×{b}\n{_fmt(shapes[level])}", **style)
        first = pool if pool in shapes else level
        x_fork = 5.35
        path([side("backbone.layer4", "right"), (x_fork, 0), (x_fork, y), side(first, "left")], colour)
        up = level + UPSAMPLED
        box(up, 10.2, y, f"upsample\n{_fmt(shapes[up])}", **style)
        path([side(level, "right"), side(up, "left")], colour)
        path([side(up, "right"), (geometry["ppm"][0] - geometry["ppm"][2] / 2, y)], colour)
    top = side("ppm", "top")[1] + 0.45
    path([side("backbone.layer4", "top"), (4.2, top), (12.0, top), side("ppm", "top")])
    ax.text(8.3, top + 0.06, "the feature map itself", ha="center", va="bottom", fontsize=7)

    # (d) the classifier: 3x3 conv, 1x1 conv to the classes (the prediction at 1/8), bilinear upsampling
    head = dict(face="#e8ddf2", edge="#6a3d9a")
    box("cls.0", 13.75, 0, f"3×3 conv\n{_fmt(shapes['cls.0'])}", width=1.5, **head)
    box("cls", 15.45, 0, f"1×1 conv:\n(d) prediction\n{_fmt(shapes['cls'])}", width=1.55, height=0.95, **head)
    up = "cls" + UPSAMPLED
    box(up, 17.2, 0, f"×{_zoom(shapes['cls'], shapes[up])} bilinear\n{_fmt(shapes[up])}", width=1.6,
        face="#ffffff", edge="#6a3d9a")
    for a, b in (("ppm", "cls.0"), ("cls.0", "cls"), ("cls", up)):
        path([side(a, "right"), side(b, "left")])

    # the auxiliary branch on res4 (§4, Fig. 4), in training only
    if has_aux:
        ya, aux = -3.1, dict(face="#fff2cc", edge="#b8860b", style="--")
        box("aux.0", 13.75, ya, f"aux 3×3 conv\n{_fmt(shapes['aux.0'])}", width=1.5, **aux)
        box("aux", 15.45, ya, f"aux 1×1 conv\n{_fmt(shapes['aux'])}", width=1.5, **aux)
        path([side("backbone.layer3", "bottom"), (2.1, ya), side("aux.0", "left")], "#b8860b", "--")
        path([side("aux.0", "right"), side("aux", "left")], "#b8860b", "--")
        up = "aux" + UPSAMPLED
        if up in shapes:
            box(up, 17.2, ya, f"×{_zoom(shapes['aux'], shapes[up])} bilinear\n{_fmt(shapes[up])}", width=1.6,
                **{**aux, "face": "#ffffff"})
            path([side("aux", "right"), side(up, "left")], "#b8860b", "--")
        ax.text(7.9, ya + 0.08, "auxiliary branch on res4 (training only, §4)", ha="center", va="bottom",
                fontsize=7, color="#8a6500")
    ax.set_title(title or f"PSPNet traced at {H}×{W}: the feature map is {h}×{w} (1/{round(H / h)} of the input); "
                 "every shape read from one forward pass", fontsize=9)
    return fig


def fig3(model: nn.Module, input_size: int | tuple[int, int] = 473, path: str | Path | None = None,
         title: str | None = None, seed: int = 0):
    """Trace ``model`` at ``input_size`` (:func:`trace_shapes`) and draw Fig. 3 (:func:`draw_fig3`).

    Saves the figure to ``path`` when given (its folder is created). Returns ``(figure, shapes)``.
    """
    shapes = trace_shapes(model, input_size, seed=seed)
    fig = draw_fig3(shapes, title=title)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight")
    return fig, shapes

"""The pixel-context explorer: what one position of a trained B1236 PSPNet receives from each level (§3.2).

Pick a cell of the 1/8 feature grid with two sliders. For each pyramid level the figure shows

1. the bin (or bins, where adaptive windows overlap) that holds the cell, drawn in feature cells;
2. the bins the cell draws its context from and the bilinear weights that bring their pooled values back to
   it (:func:`pspnet_lite.book.pixel_context.pixel_context`);
3. the level's pooled stage-4 features upsampled back to the grid, coloured by their three principal
   components (the colours of the feature map itself, so equal colours mean equal vectors);
4. an oracle row: the ground-truth class share of each bin. The network never sees labels; the row shows
   what a level could encode.

Below, the predictions of the trained network with every level on and with only the checked levels on
(the others output zeros, :func:`pspnet_lite.book.pixel_context.levels_off`), and the pixels that change
class. Switching off the finer levels of a regional scene flips buoys and traffic cones: the 1x1 level
sees both the water half and the road half. The drawing is plain matplotlib; the widget is
:class:`FeatureContextExplorer` (ipywidgets, imported lazily).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data.context_scenes import ContextScenes
from ..data.transforms import EvalTransform
from ..model import PSPNet
from . import pixel_context as pc
from .viz import colorize
from .widgets import FigureExplorer, as_image_array, context_prior, kind_names, prior_mosaic, scene_kind_indices

ON, SOURCE, CELL = "#ffd400", "#00e5ff", "#ff2d2d"  # holding bin, context bins, the picked cell


def scene_samples(image_size: int = 128, per_kind: int = 1, seed: int = 0, num_images: int = 40) -> list[dict]:
    """ContextScenes validation images for the explorer, one of each scene kind (``per_kind`` of each), named by
    kind: ``{"name", "kind", "image" (H, W, 3) in [0, 1], "mask" (H, W), "x" (1, 3, H, W) normalised}``."""
    data = ContextScenes(split="val", num_images=num_images, image_size=image_size, seed=seed,
                         transform=EvalTransform())
    picks = scene_kind_indices(data.scene_types, per_kind)
    samples = []
    for name, i in zip(kind_names([data.scene_types[i] for i in picks]), picks):
        x, mask = data[i]  # (3, H, W) normalised, (H, W) int64
        samples.append({"name": name, "kind": data.scene_types[i], "image": as_image_array(data.images[i]),
                        "mask": mask.numpy(), "x": x[None]})
    return samples


def analyse(model: PSPNet, sample: dict) -> dict:
    """What the explorer needs of one image, computed once: stage-4 features, each level's pooled features
    upsampled (in the features' PCA colours), and the prediction with every level on."""
    x = sample["x"].to(next(model.parameters()).device)
    features = pc.stage4_features(model, x)  # (1, C, h, w)
    bins = model.ppm.bins
    pooled = [pc.pooled_upsampled(features, b, model.config.pooling) for b in bins]  # each (1, C, h, w)
    colours = pc.pca_colours(features.cpu(), *(p.cpu() for p in pooled))
    return {"grid": tuple(features.shape[-2:]), "features_rgb": colours[0], "pooled_rgb": dict(zip(bins, colours[1:])),
            "full": pc.predict_labels(model, x)[0]}


def _cell_box(ax, top, bottom, left, right, stride, **style):
    """Outline feature cells [top, bottom) x [left, right) on an image axis (``stride`` pixels per cell)."""
    from matplotlib.patches import Rectangle  # lazy: matplotlib is an optional (book) dependency

    ax.add_patch(Rectangle((left * stride - 0.5, top * stride - 0.5), (right - left) * stride,
                           (bottom - top) * stride, **{"fill": False, **style}))


def _title(ax, text: str, fontsize: int = 7) -> None:
    """A panel title as plain text above the axes (``set_title`` re-measures every axis on each draw: slow)."""
    ax.text(0.5, 1.02, text, transform=ax.transAxes, ha="center", va="bottom", fontsize=fontsize)


def _bin_name(i: int, j: int) -> str:
    return f"row {i}, col {j}"


def _level_panels(axes, sample, analysis, b, info, cell, stride, on, class_names, palette):
    """The four panels of one level: holding bin, context weights, pooled features, oracle shares."""
    (row, col), image = cell, sample["image"]
    axes[0].imshow(image)
    for top, bottom, left, right in info["windows"].values():
        _cell_box(axes[0], top, bottom, left, right, stride, ec="white", lw=0.6, alpha=0.7)
    for i, j in info["holding"]:
        _cell_box(axes[0], *info["windows"][i, j], stride, ec=ON, lw=2.2)
    held = " and ".join(_bin_name(i, j) for i, j in info["holding"])
    _title(axes[0], f"{b}x{b}: in bin {held}" if len(info["holding"]) == 1 else f"{b}x{b}: in bins {held}",
                      fontsize=7)
    axes[1].imshow(image * 0.35)
    for i, j, weight in info["sources"]:
        top, bottom, left, right = info["windows"][i, j]
        _cell_box(axes[1], top, bottom, left, right, stride, fill=True, fc=SOURCE, alpha=0.15 + 0.6 * weight, lw=0)
        axes[1].text((left + right) / 2 * stride, (top + bottom) / 2 * stride, f"{weight:.2f}".lstrip("0"),
                     color="white", ha="center", va="center", fontsize=7 if b <= 6 else 5)
    count = len(info["sources"])
    _title(axes[1], f"draws from {count} bin{'s' if count > 1 else ''}", fontsize=7)
    axes[2].imshow(analysis["pooled_rgb"][b] if on else np.full((*analysis["grid"], 3), 0.5))
    _title(axes[2], "pooled features, upsampled" if on else "switched off", fontsize=7)
    axes[2].add_patch(_grid_cell(row, col))
    prior = context_prior(sample["mask"], b, len(class_names))
    axes[3].imshow(prior_mosaic(prior, palette, cell=max(4, 96 // b)))
    for ax in axes:
        ax.set_axis_off()


def _grid_cell(row: int, col: int):
    from matplotlib.patches import Rectangle  # lazy: matplotlib is an optional (book) dependency

    return Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, ec=CELL, lw=1.5)


def draw_pixel_context(sample: dict, analysis: dict, cell: tuple[int, int], bins: Sequence[int],
                       active: Sequence[int], prediction: np.ndarray, class_names: Sequence[str],
                       palette: np.ndarray, fig=None):
    """The explorer's figure for one image and feature cell: four rows per level (see the module docstring)
    and a bottom row image | features | ground truth | all levels | the ``active`` levels | changed pixels.

    A fixed grid rather than constrained layout: the explorer redraws it on every change, and a fixed grid
    draws several times faster."""
    from matplotlib.figure import Figure  # lazy: matplotlib is an optional (book) dependency
    from matplotlib.patches import Patch  # lazy: matplotlib is an optional (book) dependency

    grid, (row, col) = analysis["grid"], cell
    stride = sample["image"].shape[0] // grid[0]
    context = pc.pixel_context(grid, bins, cell)
    fig = fig or Figure()
    fig.clf()
    fig.set_layout_engine("none")  # the book style turns constrained layout on
    fig.set_size_inches(max(1.8 * len(bins), 7.6) + 1.0, 9.4)
    levels = fig.add_gridspec(4, len(bins), left=0.12, right=0.99, top=0.94, bottom=0.30, hspace=0.2, wspace=0.06)
    axes = np.array([[fig.add_subplot(levels[r, k]) for k in range(len(bins))] for r in range(4)])
    for k, b in enumerate(bins):
        _level_panels(axes[:, k], sample, analysis, b, context[b], cell, stride, b in active, class_names, palette)
    for r, label in enumerate(("the bin holding it", "context: bilinear\nweights of its bins", "what the level\npools",
                               "oracle: true class\nshare per bin (never\nseen by the network)")):
        box = axes[r, 0].get_position()
        fig.text(0.065, (box.y0 + box.y1) / 2, label, rotation=90, ha="center", va="center", fontsize=7)
    changed = prediction != analysis["full"]
    on = ", ".join(map(str, active)) or "none"
    panels = [(sample["image"], "image"), (analysis["features_rgb"], "stage-4 features (PCA)"),
              (colorize(sample["mask"], palette), "ground truth"), (colorize(analysis["full"], palette), "all levels"),
              (colorize(prediction, palette), f"levels {on}"),
              (np.where(changed[..., None], [1.0, 0.2, 0.2], sample["image"] * 0.3), f"{changed.mean():.0%} changed")]
    bottom = fig.add_gridspec(1, len(panels), left=0.02, right=0.99, top=0.26, bottom=0.06, wspace=0.06)
    for k, (picture, title) in enumerate(panels):
        ax = fig.add_subplot(bottom[0, k])
        ax.imshow(picture)
        _title(ax, title, fontsize=7)
        ax.set_axis_off()
        if picture.shape[0] == grid[0]:
            ax.add_patch(_grid_cell(row, col))
        else:
            _cell_box(ax, row, row + 1, col, col + 1, stride, ec=CELL, lw=1.5)
    shown = sorted(set(np.unique(sample["mask"])) | set(np.unique(analysis["full"])) | set(np.unique(prediction)))
    fig.legend(handles=[Patch(facecolor=palette[c] / 255.0, edgecolor="0.5", label=class_names[c])
                        for c in shown if c < len(class_names)], loc="lower center", ncol=8, fontsize=7,
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"{sample['name']}: feature cell row {row}, col {col} of the {grid[0]}x{grid[1]} grid", fontsize=9)
    return fig


class FeatureContextExplorer(FigureExplorer):
    """The trained B1236 network's view of one position, interactively (section 3.2, Fig. 3).

    ``FeatureContextExplorer(model, samples)`` with a trained PSPNet (:func:`pspnet_lite.book.pixel_context.
    load_b1236`) and :func:`scene_samples`. Controls: ``image`` (one of each scene kind), ``row`` and ``col``
    (the feature cell), and one checkbox per level in ``levels`` (unchecked levels output zeros at inference).
    ``context``, ``prediction``, ``changed`` and ``active`` hold what the figure shows.
    """

    css_class = "pspnet-pixel-explorer"

    def __init__(self, model: PSPNet, samples: Sequence[dict], class_names: Sequence[str],
                 palette: np.ndarray, cell: tuple[int, int] | None = None):
        import ipywidgets as widgets  # lazy: ipywidgets is an optional (book) dependency

        if model.ppm is None:
            raise ValueError("the explorer needs a model with a pyramid (bins=(1, 2, 3, 6)); load a B1236 run")
        if not samples:
            raise ValueError("no images to explore; pass scene_samples() or a list of sample dicts")
        self.model, self.samples, self.bins = model.eval(), list(samples), tuple(model.ppm.bins)
        self.class_names, self.palette = list(class_names), np.asarray(palette, dtype=np.uint8)
        self._analysis: dict[int, dict] = {}
        grid = self.analysis(0)["grid"]
        row, col = cell if cell is not None else pc.focus_cell(self.samples[0]["mask"],
                                                                self.samples[0]["image"].shape[0] // grid[0])
        self.image = widgets.Dropdown(options=[(s["name"], i) for i, s in enumerate(self.samples)], value=0,
                                      description="image")
        self.row = widgets.IntSlider(value=row, min=0, max=grid[0] - 1, description="row", continuous_update=False)
        self.col = widgets.IntSlider(value=col, min=0, max=grid[1] - 1, description="col", continuous_update=False)
        self.levels = {b: widgets.Checkbox(value=True, description=f"{b}x{b} level on", indent=False)
                       for b in self.bins}
        for control in (self.image, self.row, self.col, *self.levels.values()):
            control.observe(self._on_change, names="value")
        self._build(widgets.HBox([widgets.VBox([self.image, self.row, self.col]),
                                  widgets.VBox(list(self.levels.values()))]))
        self.update()

    def analysis(self, index: int) -> dict:
        """:func:`analyse` of sample ``index``, computed on first use."""
        if index not in self._analysis:
            self._analysis[index] = analyse(self.model, self.samples[index])
        return self._analysis[index]

    @property
    def cell(self) -> tuple[int, int]:
        """The feature cell (row, col) the sliders point at."""
        return self.row.value, self.col.value

    def update(self) -> None:
        """Recompute the context of the current cell and the prediction with the checked levels, and redraw."""
        sample, analysis = self.samples[self.image.value], self.analysis(self.image.value)
        self.active = tuple(b for b in self.bins if self.levels[b].value)
        self.context = pc.pixel_context(analysis["grid"], self.bins, self.cell)
        x = sample["x"].to(next(self.model.parameters()).device)
        self.prediction = pc.predict_labels(self.model, x, self.active)[0]
        self.changed = float((self.prediction != analysis["full"]).mean())
        fig = draw_pixel_context(sample, analysis, self.cell, self.bins, self.active, self.prediction,
                                 self.class_names, self.palette)
        self._show(fig, self._status(sample, analysis))

    def _status(self, sample: dict, analysis: dict) -> str:
        row, col = self.cell
        stride = sample["image"].shape[0] // analysis["grid"][0]
        y, x = min(row * stride + stride // 2, sample["mask"].shape[0] - 1), col * stride + stride // 2
        x = min(x, sample["mask"].shape[1] - 1)
        name = self.class_names
        on = ", ".join(map(str, self.active)) or "none"
        return (f"{sample['name']}, feature cell row {row}, col {col}: ground truth {name[sample['mask'][y, x]]}; "
                f"predicted {name[analysis['full'][y, x]]} with every level, {name[self.prediction[y, x]]} with "
                f"levels {on}; {self.changed:.1%} of the pixels change class")


def flips(model: PSPNet, sample: dict, active: Sequence[int], analysis: dict | None = None) -> dict:
    """How the prediction of ``sample`` changes with only the ``active`` levels on: the changed share of pixels
    and, per ``(class with every level, class now)``, the number of pixels, largest first."""
    analysis = analysis or analyse(model, sample)
    with torch.no_grad():
        now = pc.predict_labels(model, sample["x"].to(next(model.parameters()).device), active)[0]
    changed = now != analysis["full"]
    pairs, counts = np.unique(np.stack([analysis["full"][changed], now[changed]], 1), axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return {"changed": float(changed.mean()),
            "pairs": [(int(pairs[k, 0]), int(pairs[k, 1]), int(counts[k])) for k in order]}

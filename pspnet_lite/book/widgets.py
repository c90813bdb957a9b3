"""The bin-size pooling explorer: what each level of the pyramid pooling module sees (section 3.2, Fig. 3).

The pyramid pooling module pools the final feature map into ``b x b`` bins for each bin size ``b`` (the
paper's 1, 2, 3 and 6) with ``nn.AdaptiveAvgPool2d`` (or max), then upsamples each pooled map back. This
module shows the same operation on an image a person can look at:

* the bin grid of each level drawn over the image (PyTorch's adaptive windows, which overlap by a pixel
  or two when the size is not a multiple of ``b``);
* each level's pooled map upsampled back to the image size, as the network does (bilinear,
  ``align_corners=True``) or as flat tiles (nearest);
* for a labelled image, the class distribution each bin "sees": average pooling of the one-hot mask is
  exactly that distribution, the context prior of section 3.2; max pooling keeps only which classes are
  present. The network never sees the labels: this row is an oracle, drawn to show what a level *could*
  encode, and it is labelled as one;
* for a sample that carries a trained network's stage-4 feature map (``"features"``, (C, h, w) on the 1/8
  grid), each level's pooled features brought back to the grid, coloured by the feature map's three
  principal components (:func:`feature_levels`): what the module pools in the network.

:mod:`pspnet_lite.book.feature_widget` shows the same pooling on a trained network's features, on the 1/8
grid. Both explorers share :class:`FigureExplorer`: the figure is drawn once to PNG bytes, shown in the
widget's output area, and also put in the widget's own display output (``image/png`` beside the live
widget), so where no kernel runs (an executed notebook, an HTML export, the book's site) the output is a
picture of the explorer's state when it was displayed.

Everything but the drawing is plain functions, in :mod:`pspnet_lite.book.pyramid_levels` (re-exported here;
tested in ``tests/test_book_widgets.py``). matplotlib,
ipywidgets and IPython are imported lazily, inside the functions that draw, so the core package does not
need them.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.context_scenes import ContextScenes
from ..data.datasets import default_palette  # the package's one default palette (no class black)
from ..ppm import PAPER_BINS
from .pyramid_levels import (
    MEAN,
    STD,
    _check_pooling,
    adaptive_bin_edges,
    as_feature_array,
    as_image_array,
    as_mask_array,
    bin_class_histograms,
    bin_windows,
    context_prior,
    dominant_classes,
    feature_levels,
    infer_num_classes,
    parse_bins,
    pool_level,
    prior_mosaic,
    pyramid_levels,
    upsample_level,
)

# the pyramid's arithmetic lives in .pyramid_levels and is importable from here too
__all__ = [
    "BIN_CHOICES", "MAX_COLUMNS", "draw_pyramid", "figure_png", "FigureExplorer", "scene_kind_indices",
    "kind_names", "context_scenes_samples", "PoolingExplorer", "default_palette", "MEAN", "STD",
    "adaptive_bin_edges", "as_feature_array", "as_image_array", "as_mask_array", "bin_class_histograms",
    "bin_windows", "context_prior", "dominant_classes", "feature_levels", "infer_num_classes", "parse_bins",
    "pool_level", "prior_mosaic", "pyramid_levels", "upsample_level",
]

BIN_CHOICES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16)
MAX_COLUMNS = 6  # levels per row of panels: more levels wrap onto further rows, so the text stays readable


# --------------------------------------------------------------------------------------------------
# Drawing (matplotlib, imported lazily)


def draw_pyramid(image: Any, mask: Any = None, bins: Sequence[int] = PAPER_BINS, pooling: str = "avg",
                 upsample: str = "bilinear", palette: np.ndarray | None = None,
                 class_names: Sequence[str] | None = None, ignore_index: int = 255, fig=None,
                 features: Any = None):
    """One column per pyramid level: the bin grid over the image, the pooled map upsampled back, with
    ``features`` (a trained network's (C, h, w) stage-4 feature map of the image) the level's pooled features on
    the 1/8 grid (:func:`feature_levels`, in the feature map's principal-component colours) and, with a mask, the
    oracle row: the class distribution each bin holds (the labels, which the network never sees). More than
    :data:`MAX_COLUMNS` levels wrap onto further rows of panels. Returns the matplotlib Figure (a new one unless
    ``fig`` is given, which is cleared, resized and redrawn)."""
    import matplotlib.pyplot as plt  # lazy: matplotlib is an optional (book) dependency

    image = as_image_array(image)
    bins = parse_bins(bins)
    height, width = image.shape[:2]
    levels = pyramid_levels(image, bins, pooling, upsample)
    trained = feature_levels(features, bins, pooling, upsample) if features is not None else None
    rows = 2 + (trained is not None) + (mask is not None)
    if mask is not None:
        mask = as_mask_array(mask, (height, width))
        num_classes = infer_num_classes(mask, class_names, ignore_index)
        palette = default_palette(num_classes) if palette is None else np.asarray(palette, dtype=np.uint8)
    cols, blocks = min(len(bins), MAX_COLUMNS), -(-len(bins) // MAX_COLUMNS)
    if fig is None:
        fig = plt.figure(figsize=_pyramid_size(len(bins), rows), layout="constrained")
    fig.clf()
    fig.set_size_inches(*_pyramid_size(len(bins), rows))
    axes = fig.subplots(rows * blocks, cols, squeeze=False)
    for k, b in enumerate(bins):
        column = axes[(k // cols) * rows:(k // cols + 1) * rows, k % cols]
        column[0].imshow(image)
        for top, bottom, left, right in bin_windows(height, width, b):
            column[0].add_patch(plt.Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                                              lw=1.2 if b <= 6 else 0.6, ec="white"))
        column[0].set_title(f"{b}x{b} bins")
        column[1].imshow(np.clip(levels[b]["upsampled"], 0, 1))
        if trained is not None:
            column[2].imshow(trained[b]["rgb"], interpolation="nearest")
        if mask is not None:
            prior = context_prior(mask, b, num_classes, pooling, ignore_index)
            column[-1].imshow(prior_mosaic(prior, palette, cell=max(4, 96 // b)))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for extra in range(len(bins), cols * blocks):  # empty panels of the last row of levels
        for ax in axes[(extra // cols) * rows:(extra // cols + 1) * rows, extra % cols]:
            ax.set_axis_off()
    for block in range(blocks):
        axes[block * rows, 0].set_ylabel("bin grid over the image")
        axes[block * rows + 1, 0].set_ylabel(f"pixels, {pooling} pooled,\nupsampled")
        if trained is not None:
            axes[block * rows + 2, 0].set_ylabel(f"trained features,\n{pooling} pooled (PCA colours)")
        if mask is not None:
            what = "class share" if pooling == "avg" else "classes present"
            axes[block * rows + rows - 1, 0].set_ylabel(f"oracle: {what}\n(labels; the network never sees them)")
    if mask is not None and class_names is not None:
        from matplotlib.patches import Patch  # lazy: matplotlib is an optional (book) dependency

        present = [c for c in range(num_classes) if (mask == c).any()]
        fig.legend(handles=[Patch(facecolor=palette[c] / 255.0, edgecolor="0.5", label=class_names[c])
                            for c in present], loc="outside lower center", ncol=min(len(present), 6),
                   frameon=False)
    fig.suptitle(f"What each pyramid level sees ({pooling} pooling, bins {', '.join(map(str, bins))})")
    return fig


def figure_png(fig, dpi: int = 80) -> bytes:
    """A matplotlib Figure as PNG bytes (what an explorer shows, and its static picture)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if fig.get_layout_engine() else fig.bbox_inches,
                pil_kwargs={"compress_level": 1})  # fast to encode: the explorers redraw on every change
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------
# The widgets (ipywidgets, imported lazily)


class FigureExplorer:
    """What the book's explorers share: controls, a status line, an output area holding the figure, and a
    static picture of the current state in the explorer's own display output.

    A subclass builds its controls, calls :meth:`_build` with them, and implements :meth:`update`, which
    ends in :meth:`_show` (a new figure) or :meth:`_clear` (nothing to draw: the output is emptied, so no
    stale figure stays under a new status line). ``figure`` is the figure shown (None when cleared), ``png``
    its PNG bytes. Displaying the explorer (``display(explorer)`` or a cell's last line) gives the live
    widget and, as ``image/png`` beside it, the current picture: what a page without a kernel shows.
    """

    png_dpi = 80
    css_class = "pspnet-explorer"  # on the widget's root element, so a page (or a browser test) can find it

    def _build(self, controls) -> None:
        import ipywidgets as widgets  # lazy: ipywidgets is an optional (book) dependency

        self.status = widgets.HTML()
        self.output = widgets.Output()
        self.widget = widgets.VBox([controls, self.status, self.output])
        self.widget.add_class(self.css_class)
        self.figure = None
        self.png: bytes | None = None

    def update(self) -> None:  # pragma: no cover - every subclass implements it
        """Recompute for the current controls and redraw."""
        raise NotImplementedError

    def _on_change(self, change) -> None:
        self.update()

    def _show(self, fig, status: str) -> None:
        self.figure, self.png = fig, figure_png(fig, self.png_dpi)
        self.status.value = status
        # set the output area's contents in one step (no flicker, and the same with or without a kernel)
        self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {"image/png": base64.b64encode(self.png).decode("ascii"),
                                         "text/plain": status}},)

    def _clear(self, status: str) -> None:
        self.figure, self.png = None, None
        self.status.value = status
        self.output.outputs = ()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle = self.widget._repr_mimebundle_()
        if self.png is not None:
            bundle["image/png"] = base64.b64encode(self.png).decode("ascii")
        return bundle


def scene_kind_indices(scene_types: Sequence[str], per_kind: int = 1) -> list[int]:
    """Indices of the first ``per_kind`` images of each scene kind, kind after kind in the order they appear."""
    picks: dict[str, list[int]] = {}
    for i, kind in enumerate(scene_types):
        group = picks.setdefault(kind, [])
        if len(group) < per_kind:
            group.append(i)
    return [group[rank] for rank in range(per_kind) for group in picks.values() if rank < len(group)]


def kind_names(scene_types: Sequence[str]) -> list[str]:
    """Display names by kind: "regional scene", and "regional scene 2" for a second one."""
    seen: dict[str, int] = {}
    names = []
    for kind in scene_types:
        seen[kind] = seen.get(kind, 0) + 1
        names.append(f"{kind} scene" + (f" {seen[kind]}" if seen[kind] > 1 else ""))
    return names


def context_scenes_samples(num: int = 4, image_size: int = 128, seed: int = 0) -> list[dict]:
    """``num`` ContextScenes validation images with masks, palette and class names, for the explorer: one of
    each scene kind first (then a second of each), named by kind ("regional scene")."""
    data = ContextScenes(split="val", num_images=max(8 * num, 16), image_size=image_size, seed=seed)
    picks = scene_kind_indices(data.scene_types, per_kind=-(-num // 4))[:num]
    names = kind_names([data.scene_types[i] for i in picks])
    return [{"name": name, "image": as_image_array(data.images[i]), "mask": as_mask_array(data.masks[i]),
             "palette": np.asarray(data.palette), "class_names": list(data.classes)} for name, i in zip(names, picks)]


class PoolingExplorer(FigureExplorer):
    """Interactive view of the pyramid pooling module on images (section 3.2, Fig. 3).

    ``PoolingExplorer()`` loads one ContextScenes image of each scene kind; ``PoolingExplorer([(image, mask),
    ...])`` or ``PoolingExplorer([{"name":..., "image":..., "mask":..., "palette":..., "class_names":...}])``
    shows your own (mask optional; a dict may also carry ``"features"``, a trained network's (C, h, w) stage-4
    feature map of the image, whose pooled levels the figure then shows too). Controls: ``image`` (dropdown),
    ``bins`` (multi-select), ``pooling`` (avg / max) and ``upsample`` (bilinear / nearest). ``explorer.levels``,
    ``explorer.feature_levels`` (empty for a sample without features) and ``explorer.priors`` hold what the figure
    shows; display the explorer by evaluating it in a cell.
    """

    css_class = "pspnet-pooling-explorer"

    def __init__(self, images: Sequence[Any] | None = None, bins: Sequence[int] = PAPER_BINS,
                 pooling: str = "avg", bin_choices: Sequence[int] = BIN_CHOICES):
        import ipywidgets as widgets  # lazy: ipywidgets is an optional (book) dependency

        self.samples = [self._as_sample(s, i) for i, s in enumerate(images)] if images else context_scenes_samples()
        bins = parse_bins(bins)
        choices = tuple(sorted(set(bin_choices) | set(bins)))
        self.image = widgets.Dropdown(options=[(s["name"], i) for i, s in enumerate(self.samples)], value=0,
                                      description="image")
        self.bins = widgets.SelectMultiple(options=choices, value=bins, rows=min(len(choices), 6),
                                           description="bins")
        self.pooling = widgets.ToggleButtons(options=["avg", "max"], value=_check_pooling(pooling),
                                             description="pooling")
        self.upsample = widgets.ToggleButtons(options=["bilinear", "nearest"], value="bilinear",
                                              description="upsample")
        for control in (self.image, self.bins, self.pooling, self.upsample):
            control.observe(self._on_change, names="value")
        self._build(widgets.HBox([widgets.VBox([self.image, self.pooling, self.upsample]), self.bins]))
        self.levels: dict = {}
        self.feature_levels: dict = {}
        self.priors: dict = {}
        self.update()

    @staticmethod
    def _as_sample(item: Any, index: int) -> dict:
        if isinstance(item, dict):
            sample = dict(item)
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            sample = {"image": item[0], "mask": item[1]}
        else:
            sample = {"image": item, "mask": None}
        if "image" not in sample:
            raise ValueError(f"image #{index}: a dict sample needs an 'image' key")
        sample["image"] = as_image_array(sample["image"])
        if sample.get("mask") is not None:
            sample["mask"] = as_mask_array(sample["mask"], sample["image"].shape[:2])
        if sample.get("features") is not None:
            as_feature_array(sample["features"])  # checked now, not at the first redraw
        sample.setdefault("name", f"image #{index}")
        return sample

    def update(self) -> None:
        """Recompute every level for the current controls and redraw (or clear, with no bin size picked)."""
        from matplotlib.figure import Figure  # lazy: matplotlib is an optional (book) dependency

        sample = self.samples[self.image.value]
        if not self.bins.value:
            self.levels, self.feature_levels, self.priors = {}, {}, {}
            self._clear(f"{sample['name']}: <b>pick at least one bin size</b>")
            return
        bins, pooling = parse_bins(self.bins.value), self.pooling.value
        self.levels = pyramid_levels(sample["image"], bins, pooling, self.upsample.value)
        features = sample.get("features")
        self.feature_levels = feature_levels(features, bins, pooling, self.upsample.value) \
            if features is not None else {}
        mask = sample.get("mask")
        num_classes = infer_num_classes(mask, sample.get("class_names")) if mask is not None else 0
        self.priors = {b: context_prior(mask, b, num_classes, pooling) for b in bins} if mask is not None else {}
        fig = draw_pyramid(sample["image"], mask, bins, pooling, self.upsample.value, sample.get("palette"),
                           sample.get("class_names"), fig=Figure(layout="constrained"), features=features)
        n = len(bins)
        self._show(fig, f"{sample['name']}: {sample['image'].shape[0]}x{sample['image'].shape[1]} px, "
                        f"{'level' if n == 1 else 'levels'} {', '.join(map(str, bins))}, {pooling} pooling; "
                        f"channels after the module with the 1/N reduction: C + {n} x C/{n} = 2C")


def _pyramid_size(levels: int, rows: int) -> tuple[float, float]:
    """The inches :func:`draw_pyramid` gives a figure of ``levels`` columns (wrapped) and ``rows`` rows."""
    cols, blocks = min(levels, MAX_COLUMNS), -(-levels // MAX_COLUMNS)
    panel = 2.3 if blocks == 1 else 1.9
    return panel * cols + 0.4, panel * rows * blocks + 0.8

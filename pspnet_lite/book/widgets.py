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

Everything but the drawing is plain functions (tested in ``tests/test_book_widgets.py``). matplotlib,
ipywidgets and IPython are imported lazily, inside the functions that draw, so the core package does not
need them.
"""
from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..cli import parse_list
from ..data.context_scenes import ContextScenes
from ..data.datasets import default_palette  # the package's one default palette (no class black)
from ..data.transforms import MEAN as _MEAN
from ..data.transforms import STD as _STD
from ..ppm import PAPER_BINS, check_bins

BIN_CHOICES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16)
MAX_COLUMNS = 6  # levels per row of panels: more levels wrap onto further rows, so the text stays readable
MEAN = np.asarray(_MEAN)  # (3,) ImageNet mean/std as arrays; defined once in pspnet_lite.data.transforms
STD = np.asarray(_STD)


# --------------------------------------------------------------------------------------------------
# Logic: plain functions


def adaptive_bin_edges(size: int, bins: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` windows of ``nn.AdaptiveAvgPool2d`` along one axis of length ``size``.

    PyTorch's adaptive pooling gives output cell ``i`` the window ``floor(i * size / bins)`` to
    ``ceil((i + 1) * size / bins)``; windows overlap when ``size`` is not a multiple of ``bins``.
    """
    size, bins = int(size), int(bins)
    if size < 1:
        raise ValueError(f"size={size}: an axis needs at least one pixel")
    if bins < 1:
        raise ValueError(f"bins={bins}: a pyramid level needs at least one bin; use e.g. 1, 2, 3 or 6")
    return [((i * size) // bins, -((-(i + 1) * size) // bins)) for i in range(bins)]


def bin_windows(height: int, width: int, bins: int) -> list[tuple[int, int, int, int]]:
    """All ``bins x bins`` windows ``(top, bottom, left, right)`` of one pyramid level, row-major."""
    rows, cols = adaptive_bin_edges(height, bins), adaptive_bin_edges(width, bins)
    return [(top, bottom, left, right) for top, bottom in rows for left, right in cols]


def parse_bins(bins: Any) -> tuple[int, ...]:
    """Bin sizes from ``"1,2,3,6"``, ``[1, 2, 3, 6]``, an array or ``6``; sorted, unique, each >= 1.

    The text forms are read by the package's list parser (:func:`pspnet_lite.cli.parse_list`) and the
    sizes checked as ``PyramidPooling`` checks them (:func:`pspnet_lite.ppm.check_bins`).
    """
    if isinstance(bins, np.ndarray):
        bins = bins.tolist()
    return tuple(sorted(set(check_bins(tuple(parse_list(bins, int, "bins"))))))


def _check_pooling(pooling: str) -> str:
    if pooling not in ("avg", "max"):
        raise ValueError(f"pooling={pooling!r}: use 'avg' or 'max' (section 5.2 compares both)")
    return pooling


def as_image_array(image: Any) -> np.ndarray:
    """An image as float32 HWC RGB in [0, 1].

    Accepts uint8 HWC (a raw data-set image), float HWC in [0, 1], or a normalised CHW / 1CHW tensor or
    array (what the data sets' transforms return; ImageNet mean/std are undone).
    """
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3:
        raise ValueError(f"image of shape {array.shape}: pass an HWC RGB image or a normalised CHW tensor")
    if array.shape[0] == 3 and array.shape[2] != 3:  # CHW, normalised by the data sets' transforms
        array = array.transpose(1, 2, 0) * STD + MEAN
    elif array.shape[2] != 3:
        raise ValueError(f"image of shape {array.shape}: expected 3 colour channels (HWC or CHW)")
    if array.dtype == np.uint8:
        array = array / 255.0
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def as_mask_array(mask: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A label mask as int64 HW (255 = ignore); checks it matches the image ``shape`` when given."""
    array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"mask of shape {array.shape}: pass one HW array of class ids (255 = ignore)")
    if shape is not None and tuple(array.shape) != tuple(shape):
        raise ValueError(f"mask of shape {array.shape} does not match the image's {tuple(shape)}")
    return array.astype(np.int64)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run tiny torch ops on one thread: on a busy CPU the thread pool's start-up costs ~30x the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pool_level(image: np.ndarray, bins: int, pooling: str = "avg") -> np.ndarray:
    """Pool an HWC image into ``bins x bins`` cells with torch's adaptive pooling -> (bins, bins, C)."""
    pool = F.adaptive_avg_pool2d if _check_pooling(pooling) == "avg" else F.adaptive_max_pool2d
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]  # (1, C, H, W)
    return pool(x, int(bins))[0].permute(1, 2, 0).numpy()  # (bins, bins, C)


def upsample_level(pooled: np.ndarray, size: tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """Upsample a pooled (b, b, C) map back to ``size`` = (H, W), as PSPNet does (bilinear,
    ``align_corners=True``) or as flat tiles over each adaptive window (``mode="nearest"``)."""
    height, width = size
    if mode == "nearest":  # paint each bin's value over its window (overlaps: the later bin wins)
        bins = pooled.shape[0]
        out = np.empty((height, width, pooled.shape[2]), dtype=pooled.dtype)
        for k, (top, bottom, left, right) in enumerate(bin_windows(height, width, bins)):
            out[top:bottom, left:right] = pooled[k // bins, k % bins]
        return out
    if mode != "bilinear":
        raise ValueError(f"mode={mode!r}: use 'bilinear' (what PSPNet does) or 'nearest'")
    x = torch.from_numpy(np.ascontiguousarray(pooled)).permute(2, 0, 1)[None]  # (1, C, b, b)
    y = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=True)  # (1, C, H, W)
    return y[0].permute(1, 2, 0).numpy()


def pyramid_levels(image: Any, bins: Sequence[int] = PAPER_BINS, pooling: str = "avg",
                   upsample: str = "bilinear") -> dict[int, dict[str, np.ndarray]]:
    """Every level of the pyramid on one image: ``{b: {"pooled": (b, b, 3), "upsampled": (H, W, 3)}}``."""
    image = as_image_array(image)
    levels = {}
    with _one_thread():
        for b in parse_bins(bins):
            pooled = pool_level(image, b, pooling)
            levels[b] = {"pooled": pooled, "upsampled": upsample_level(pooled, image.shape[:2], upsample)}
    return levels


def as_feature_array(features: Any) -> np.ndarray:
    """A stage-4 feature map as float32 (h, w, C), from a (C, h, w) or (1, C, h, w) tensor or array."""
    array = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise ValueError(f"features of shape {array.shape}: pass one (C, h, w) feature map, e.g. "
                         "pixel_context.stage4_features(model, x)[0]")
    return np.ascontiguousarray(array.transpose(1, 2, 0), dtype=np.float32)


def feature_levels(features: Any, bins: Sequence[int] = PAPER_BINS, pooling: str = "avg",
                   upsample: str = "bilinear") -> dict[int, dict[str, np.ndarray]]:
    """Every level of the pyramid on a feature map (C, h, w): ``{b: {"pooled": (b, b, C), "upsampled": (h, w, C),
    "rgb": (h, w, 3)}}``, where ``rgb`` colours the upsampled features by the three principal components of the
    feature map itself (:func:`pspnet_lite.book.pixel_context.pca_colours`), so equal colours mean equal vectors
    across the levels."""
    from .pixel_context import pca_colours  # lazy: pixel_context imports this module

    array = as_feature_array(features)  # (h, w, C)
    levels: dict[int, dict[str, np.ndarray]] = {}
    with _one_thread():
        for b in parse_bins(bins):
            pooled = pool_level(array, b, pooling)
            levels[b] = {"pooled": pooled, "upsampled": upsample_level(pooled, array.shape[:2], upsample)}
    as_map = [torch.from_numpy(a.transpose(2, 0, 1).copy())[None]
              for a in (array, *(level["upsampled"] for level in levels.values()))]  # each (1, C, h, w)
    colours = pca_colours(*as_map)
    for level, rgb in zip(levels.values(), colours[1:]):
        level["rgb"] = rgb
    return levels


def bin_class_histograms(mask: Any, bins: int, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Pixel count of every class in every bin of one level -> int64 (bins, bins, num_classes).

    Pixels labelled ``ignore_index`` are not counted, so each bin's counts add up to its number of labelled
    pixels (its window's area when nothing is ignored).
    """
    mask = as_mask_array(mask)
    valid = mask != ignore_index
    if (mask[valid] < 0).any() or (mask[valid] >= num_classes).any():
        bad = np.unique(mask[valid][(mask[valid] < 0) | (mask[valid] >= num_classes)])
        raise ValueError(f"mask holds class ids {bad.tolist()} outside [0, {num_classes}); "
                         f"pass the right num_classes or mark them {ignore_index} (ignore)")
    bins = int(bins)
    hist = np.zeros((bins, bins, num_classes), dtype=np.int64)
    for k, (top, bottom, left, right) in enumerate(bin_windows(*mask.shape, bins)):
        window = mask[top:bottom, left:right]
        hist[k // bins, k % bins] = np.bincount(window[window != ignore_index], minlength=num_classes)
    return hist


def context_prior(mask: Any, bins: int, num_classes: int, pooling: str = "avg",
                  ignore_index: int = 255) -> np.ndarray:
    """What one level "sees" of the labels: adaptive pooling of the one-hot mask -> float (bins, bins, C).

    With ``"avg"`` this is each bin's class distribution (histogram / labelled pixels; ignored pixels are
    left out, an all-ignored bin is all zeros); with ``"max"`` it is 1 for every class present in the bin.
    """
    hist = bin_class_histograms(mask, bins, num_classes, ignore_index)
    if _check_pooling(pooling) == "max":
        return (hist > 0).astype(np.float32)
    total = hist.sum(-1, keepdims=True)
    return (hist / np.maximum(total, 1)).astype(np.float32)


def prior_mosaic(prior: np.ndarray, palette: np.ndarray, cell: int = 24) -> np.ndarray:
    """Draw a (b, b, C) context prior as a uint8 image: one ``cell x cell`` square per bin, split into
    vertical stripes whose widths are the class shares (max pooling: equal stripes per present class),
    with dark grey lines between bins."""
    bins, _, num_classes = prior.shape
    palette = np.asarray(palette, dtype=np.uint8)
    if len(palette) < num_classes:
        raise ValueError(f"palette has {len(palette)} colours for {num_classes} classes")
    out = np.zeros((bins * cell, bins * cell, 3), dtype=np.uint8)
    for i in range(bins):
        for j in range(bins):
            weights = prior[i, j] / max(prior[i, j].sum(), 1e-12)
            bounds = np.round(np.concatenate([[0], np.cumsum(weights)]) * cell).astype(int)
            for c in np.flatnonzero(weights > 0):
                out[i * cell:(i + 1) * cell, j * cell + bounds[c]:j * cell + bounds[c + 1]] = palette[c]
    out[::cell, :] = out[:, ::cell] = 40  # dark grid lines between bins
    return out


def infer_num_classes(mask: np.ndarray, class_names: Sequence[str] | None = None, ignore_index: int = 255) -> int:
    """``len(class_names)`` when given, else the largest labelled id + 1 (1 for an all-ignored mask)."""
    if class_names is not None:
        return len(class_names)
    labelled = mask[mask != ignore_index]
    return int(labelled.max()) + 1 if labelled.size else 1


def dominant_classes(hist: np.ndarray, class_names: Sequence[str], top: int = 3) -> list[list[tuple[str, float]]]:
    """For each bin (row-major) its ``top`` classes and their shares: the prior in words."""
    bins = hist.shape[0]
    out = []
    for k in range(bins * bins):
        counts = hist[k // bins, k % bins]
        total = max(int(counts.sum()), 1)
        order = np.argsort(-counts, kind="stable")[:top]
        out.append([(class_names[c], counts[c] / total) for c in order if counts[c] > 0])
    return out


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

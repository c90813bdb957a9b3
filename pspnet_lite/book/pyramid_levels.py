"""The arithmetic of the pyramid's levels on arrays a person can look at: PyTorch's adaptive bin windows, each
level pooled (average or max) and upsampled back, the class distribution each bin of a label map sees (the
context prior of section 3.2), and a feature map's levels coloured by its principal components. Plain functions,
no drawing: :mod:`pspnet_lite.book.widgets` draws them and re-exports them, :mod:`.pixel_context` uses them."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..cli import parse_list
from ..data.transforms import MEAN as _MEAN
from ..data.transforms import STD as _STD
from ..ppm import PAPER_BINS, check_bins

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
    feature map itself (:func:`pca_colours`), so equal colours mean equal vectors
    across the levels."""
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


def pca_colours(features: torch.Tensor, *others: torch.Tensor) -> list[np.ndarray]:
    """Feature maps (1, C, h, w) as (h, w, 3) RGB: their three principal components, fitted on ``features``.

    ``others`` (pooled maps of the same C channels) are projected on the same components with the same
    scale, so equal colours mean equal feature vectors across the panels."""
    flat = features[0].flatten(1).T.double()  # (h*w, C)
    mean = flat.mean(0)
    _, _, v = torch.linalg.svd(flat - mean, full_matrices=False)  # rows of v: principal directions
    basis = v[:3].T  # (C, 3)
    proj = (flat - mean) @ basis
    lo, hi = proj.quantile(0.02, dim=0), proj.quantile(0.98, dim=0)
    out = []
    for f in (features, *others):
        p = (f[0].flatten(1).T.double() - mean) @ basis  # (h*w, 3)
        rgb = ((p - lo) / (hi - lo).clamp_min(1e-9)).clamp(0, 1)
        out.append(rgb.reshape(*f.shape[-2:], 3).numpy().astype(np.float32))
    return out

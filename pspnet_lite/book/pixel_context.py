"""What one position receives from each pyramid level of a trained PSPNet (section 3.2, Fig. 3).

The pyramid pooling module works on the stage-4 feature map, 1/8 of the image. For a position (a cell of
that grid) and a level of ``b x b`` bins this module answers three questions:

* which bin holds the cell: PyTorch's adaptive windows (:func:`~pspnet_lite.book.widgets.adaptive_bin_edges`)
  overlap by whole cells when ``b`` does not divide the grid, so a cell can sit in two bins per axis;
* with which weights the level's pooled values come back to the cell: the bilinear upsampling
  (``align_corners=True``, as the network does) gives each of the ``b x b`` pooled values a weight, and
  the weights add up to 1 (:func:`upsample_weights`);
* which bins the cell draws its context from: those with a nonzero weight. They are not always the bin
  that holds it.

The rest runs a trained network: its stage-4 features (:func:`stage4_features`), a level's pooled features
brought back to the grid (:func:`pooled_upsampled`), and predictions with some levels switched off at
inference (:func:`levels_off`: the level's output is replaced by zeros before the upsampling, as if it had
found nothing). :func:`load_b1236` returns the trained B1236 network of chapter 05's Table 1 row
``B1236+AVE+DR`` (seed 0) from its run cache, training it when the cache lacks it.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import load_model
from ..model import PSPNet
from ..ppm import PAPER_BINS
from ..train import TrainConfig, config_hash, run_grid
from ..train.experiments import cached_result, write_json
from . import grid_base_config, resolve_path
from .pyramid_levels import adaptive_bin_edges, pca_colours  # noqa: F401 (pca_colours: re-exported)

RUN_CACHE = "runs/02_pyramid_pooling/runs"
"""Chapter 02's run cache (relative to the repository root), where its B1236 run is trained once and reused."""

# --------------------------------------------------------------------------------------------------
# Geometry on the feature grid


def holding_bins(size: int, bins: int, index: int) -> list[int]:
    """The bins along one axis of ``size`` cells whose adaptive window holds cell ``index`` (one or two)."""
    if not 0 <= index < size:
        raise ValueError(f"cell {index} is outside the feature grid of {size} cells; pick 0..{size - 1}")
    return [i for i, (start, end) in enumerate(adaptive_bin_edges(size, bins)) if start <= index < end]


def upsample_weights_1d(size: int, bins: int, index: int, align_corners: bool = True) -> np.ndarray:
    """The weight of each of ``bins`` pooled values at output cell ``index`` when upsampled to ``size``.

    Computed with the network's own operation: ``F.interpolate`` of the ``bins`` one-hot maps.
    """
    if not 0 <= index < size:
        raise ValueError(f"cell {index} is outside the feature grid of {size} cells; pick 0..{size - 1}")
    eye = torch.eye(int(bins))[:, None, :, None]  # (b, 1, b, 1): one map per pooled value
    up = F.interpolate(eye, size=(int(size), 1), mode="bilinear", align_corners=align_corners)  # (b, 1, size, 1)
    return up[:, 0, index, 0].numpy().astype(np.float64)


def upsample_weights(grid: tuple[int, int], bins: int, cell: tuple[int, int], align_corners: bool = True) -> np.ndarray:
    """(bins, bins) weights that bring a level's pooled values back to ``cell`` = (row, col) of ``grid`` = (h, w).

    Bilinear upsampling is separable, so the weights are the outer product of the two axes' weights; they
    add up to 1, and ``(weights[..., None] * pooled).sum((0, 1))`` is the upsampled value at the cell.
    """
    (h, w), (row, col) = grid, cell
    return np.outer(upsample_weights_1d(h, bins, row, align_corners), upsample_weights_1d(w, bins, col, align_corners))


def pixel_context(grid: tuple[int, int], bins: Sequence[int], cell: tuple[int, int]) -> dict[int, dict]:
    """For each level ``b``: the bins holding ``cell`` and the bins it draws context from, with their weights.

    Returns ``{b: {"holding": [(i, j), ...], "weights": (b, b) array, "sources": [(i, j, weight), ...],
    "windows": {(i, j): (top, bottom, left, right)}}}``, bins as (row, col) on the level's grid and
    windows in feature cells. ``sources`` lists the bins with a nonzero weight, largest first.
    """
    (h, w), (row, col) = grid, cell
    out = {}
    for b in bins:
        weights = upsample_weights(grid, b, cell)
        sources = sorted(((i, j, float(weights[i, j])) for i, j in zip(*np.nonzero(weights > 1e-9))),
                         key=lambda s: -s[2])
        rows, cols = adaptive_bin_edges(h, b), adaptive_bin_edges(w, b)
        out[b] = {"holding": [(i, j) for i in holding_bins(h, b, row) for j in holding_bins(w, b, col)],
                  "weights": weights, "sources": [(int(i), int(j), wt) for i, j, wt in sources],
                  "windows": {(i, j): (*rows[i], *cols[j]) for i in range(b) for j in range(b)}}
    return out


def focus_cell(mask: np.ndarray, stride: int = 8) -> tuple[int, int]:
    """A feature cell worth looking at: the one holding most pixels of the image's rarest labelled class.

    On ContextScenes that is the small object whose class the scene decides (a buoy or a cone, a boat or a
    car, a pillow or a rug)."""
    mask = np.asarray(mask)
    classes, counts = np.unique(mask[mask != 255], return_counts=True)
    if not len(classes):
        return 0, 0
    rare = (mask == classes[np.argmin(counts)]).astype(np.float64)
    h, w = -(-mask.shape[0] // stride), -(-mask.shape[1] // stride)
    padded = np.zeros((h * stride, w * stride))
    padded[:mask.shape[0], :mask.shape[1]] = rare
    per_cell = padded.reshape(h, stride, w, stride).sum((1, 3))
    row, col = np.unravel_index(np.argmax(per_cell), per_cell.shape)
    return int(row), int(col)


# --------------------------------------------------------------------------------------------------
# A trained network: features, pooled features, predictions with levels switched off


def stage4_features(model: PSPNet, x: torch.Tensor) -> torch.Tensor:
    """The backbone's stage-4 feature map (Fig. 3(b)) of images ``x`` (N, 3, H, W) -> (N, C, H/8, W/8)."""
    with torch.no_grad():
        return model.backbone(x)[1]


def pooled_upsampled(features: torch.Tensor, bins: int, pooling: str = "avg") -> torch.Tensor:
    """A level's pooled features brought back to the grid, as the module does before its 1x1 conv would:
    adaptive pooling to ``bins x bins``, bilinear upsampling (``align_corners=True``) -> (N, C, h, w)."""
    pool = F.adaptive_avg_pool2d if pooling == "avg" else F.adaptive_max_pool2d
    return F.interpolate(pool(features, bins), features.shape[-2:], mode="bilinear", align_corners=True)


@contextlib.contextmanager
def levels_off(model: PSPNet, off: Sequence[int]) -> Iterator[PSPNet]:
    """Switch pyramid levels off at inference: each level in ``off`` (bin sizes) outputs zeros.

    The zeros replace the level's pooled, 1x1-convolved, normalised and rectified map before it is upsampled,
    so the classifier reads zeros in that level's channels, as if the level had found nothing."""
    if model.ppm is None:
        raise ValueError("this model has no pyramid pooling module (bins=()); load a B1236 model")
    unknown = sorted(set(off) - set(model.ppm.bins))
    if unknown:
        raise ValueError(f"levels {unknown} are not in the model, whose levels are {list(model.ppm.bins)}")
    hooks = [level.register_forward_hook(lambda module, args, output: torch.zeros_like(output))
             for b, level in zip(model.ppm.bins, model.ppm.features) if b in off]
    try:
        yield model
    finally:
        for hook in hooks:
            hook.remove()


def predict_labels(model: PSPNet, x: torch.Tensor, active: Sequence[int] | None = None) -> np.ndarray:
    """Predicted classes (N, H, W) of images ``x`` with only the ``active`` levels on (None: all of them)."""
    off = [] if active is None else [b for b in model.ppm.bins if b not in set(active)]
    with torch.no_grad(), levels_off(model, off):
        return model.eval()(x).argmax(1).cpu().numpy()




# --------------------------------------------------------------------------------------------------
# The trained B1236 run (chapter 05's row, cached)


def b1236_config(device: str | torch.device = "cpu", **given) -> TrainConfig:
    """Chapter 05's Table 1 row B1236+AVE+DR, seed 0: ``scenes-ablation`` with bins 1, 2, 3, 6, average pooling
    and the 1/N reduction, at the batch (8), learning rate (0.04) and validation set (200 images) chapter 02's
    network was made with. ``given`` settings that are not None override these (e.g. ``iters``)."""
    kept = {"batch_size": 8, "lr": 0.04, "num_val_images": 200}
    base = grid_base_config("scenes-ablation", dataset="context_scenes", data_root=None, device=str(device),
                            **{**kept, **{k: v for k, v in given.items() if v is not None}})
    return base.replace(seed=0, bins=PAPER_BINS, pooling="avg", reduction=True)


def train_command(cfg: TrainConfig, cache_dir: str | os.PathLike) -> str:
    """The shell command that trains ``cfg`` into its place in ``cache_dir`` (what :func:`load_b1236` reuses)."""
    run = Path(cache_dir) / config_hash(cfg)
    cmd = [sys.executable, "-m", "pspnet_lite.train", "--config", str(run / "launch_config.json"),
           "--out-dir", str(run), "--result", str(run / "result.json")]
    return shlex.join(cmd)


def load_b1236(cache_dir: str | os.PathLike = RUN_CACHE, train: bool = True, config: TrainConfig | None = None,
               device: str | torch.device = "cpu", progress: bool = False):
    """The trained B1236 network (eval mode) and its :class:`~pspnet_lite.train.RunResult`, from ``cache_dir``.

    ``config`` defaults to :func:`b1236_config` on ``device``. A run missing from the cache is trained
    there when ``train`` is True (chapter 05 then finds it too); otherwise a FileNotFoundError names the
    command that trains it.
    """
    cfg = config or b1236_config(device)
    cache = resolve_path(cache_dir)
    run = cache / config_hash(cfg)
    result = cached_result(cfg, cache)
    if result is None and not train:
        write_json(cfg.to_dict(), run / "launch_config.json")  # the file the command reads
        raise FileNotFoundError(f"no finished B1236 run in {run}; train it with: {train_command(cfg, cache)} "
                                "(or pass train=True)")
    if result is None:
        result = run_grid([cfg], cache, progress=progress)[0]
    last = run / "last.pt"
    if not last.is_file():
        raise FileNotFoundError(f"{last} is missing beside its result.json; delete {run} and run again to retrain")
    return load_model(last, device=device).model, result

"""A qualitative gallery picked by rule: FCN vs B1 vs PSPNet on the images where context decides.

The paper shows its improvements as pictures: Fig. 2 column (d) puts PSPNet's prediction beside the FCN's
on the three failure modes of §3.1, and Figs. 6-9 show more validation images, FCN against PSPNet. Pictures
chosen by hand prove little, so this module chooses them by a stated rule and prints the scores beside them:

1. :func:`predict_models` predicts every validation image with each model, whole image and no flip
   (:data:`~pspnet_lite.inference.PROTOCOLS` ``"ss"``, the protocol chapter 05 scores), as (N, H, W) labels.
2. :func:`pick_gallery` picks, for each failure-mode role of ContextScenes, the image whose **role accuracy**
   gains most from the FCN to PSPNet, and the images where PSPNet's **image accuracy** is lowest:

   * role accuracy of an image = correct pixels / pixels whose ground truth is a class of that role (e.g. the
     boat and car pixels for "mismatched"). Unlike a per-image IoU it is defined whenever the role is present
     and does not depend on which other classes the image holds; a role counts as present in an image only
     with at least ``min_pixels`` such pixels, so a pick is never a few-pixel artefact;
   * image accuracy = correct pixels / labelled pixels (ignore label left out); the worst images are those
     with the lowest PSPNet image accuracy, leaving out the images already picked for a role.

   Ties go to the lowest image index, so the picks are deterministic.
3. :func:`show_gallery` draws one row per pick: image, ground truth, each model's prediction, then each model's
   error map (:func:`error_map`: wrong pixels red, correct grey, ignored black), titled with the scores.
4. :func:`role_confusion` counts, per model and role, which class each of the role's pixels was given (the
   role's classes plus "other"), exactly (:func:`~pspnet_lite.metrics.confusion_counts`);
   :func:`plot_role_confusion` draws them as a models x roles grid of row-normalised heatmaps.

matplotlib is imported inside the drawing functions only (lazily), as in :mod:`pspnet_lite.book.viz`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..checkpoint import load_model
from ..data.context_scenes import CLASSES, PALETTE, classes_by_role
from ..inference import PROTOCOLS, predict
from ..labels import IGNORE_INDEX
from ..metrics import confusion_counts
from ..train.sampling import build_datasets
from . import resolve_path
from .viz import _as_rgb, _legend, _palette, colorize

__all__ = ["FAILURE_ROLES", "TABLE1_ROWS", "Pick", "RoleConfusion", "validation_set", "stack_dataset", "as_model",
           "predict_labels", "predict_models", "pixel_accuracy", "role_classes", "present_roles", "pick_gallery",
           "picks_table", "error_map", "show_gallery", "role_confusion", "plot_role_confusion"]

FAILURE_ROLES = ("mismatched", "confusion", "inconspicuous", "regional")
"""The ContextScenes roles that stand for §3.1's failure modes (Fig. 2) and §3.2's regional context."""
TABLE1_ROWS = {"FCN": "baseline", "B1": "B1+AVE", "PSPNet": "B1236+AVE+DR"}
"""Gallery column -> the Table 1 row it shows: the dilated FCN, one global bin, the full PSPNet."""
ERROR_COLOURS = np.array([[205, 205, 205], [230, 25, 25]], dtype=np.uint8)
"""Error-map colours: correct pixels light grey, wrong pixels red (ignored pixels are black)."""


@dataclass(frozen=True)
class Pick:
    """One gallery image chosen by rule: ``index`` in the validation set, ``reason`` (a role, or "worst"),
    ``scores`` (model name -> the score the rule used, a fraction), ``pixels`` (how many pixels it counts)."""

    index: int
    reason: str
    scores: dict[str, float]
    pixels: int

    def as_dict(self) -> dict:
        """Plain values for a JSON record."""
        return {"index": self.index, "reason": self.reason, "scores": dict(self.scores), "pixels": self.pixels}


@dataclass(frozen=True)
class RoleConfusion:
    """Exact counts for one model and role: rows = the role's ground-truth classes, columns = the same classes
    then "other" (any other prediction). ``names`` has one more entry than ``classes`` ("other")."""

    role: str
    classes: list[int]
    names: list[str]
    counts: np.ndarray = field(repr=False)  # (k, k + 1) int64

    @property
    def normalized(self) -> np.ndarray:
        """Row-normalised counts (each ground-truth class sums to 1; a class with no pixels is a row of 0)."""
        rows = self.counts.sum(1, keepdims=True)
        return np.divide(self.counts, rows, out=np.zeros(self.counts.shape), where=rows > 0)


# ----------------------------------------------------------------------------------------------------------
# predictions


def validation_set(run):
    """The validation set a run was scored on (a :class:`~pspnet_lite.train.runlog.RunResult` or its TrainConfig),
    built as the trainer builds it (:func:`~pspnet_lite.train.sampling.build_datasets`, EvalTransform)."""
    cfg = getattr(run, "config", run)
    _, val = build_datasets(cfg.replace(num_train_images=1, val_every=max(cfg.val_every, 0)))
    if val is None:
        raise ValueError(f"the run's config has val_split={cfg.val_split!r}: there is no validation set to show")
    return val


def stack_dataset(dataset, limit: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """The first ``limit`` (default all) ``(image, mask)`` pairs as normalised images (N,3,H,W) and labels (N,H,W)."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise ValueError("the data set is empty; nothing to show")
    pairs = [dataset[i] for i in range(n)]
    sizes = sorted({tuple(x.shape) for x, _ in pairs})
    if len(sizes) > 1:
        raise ValueError(f"the images have different sizes {sizes[:3]}; the gallery needs one size "
                         "(ContextScenes, or a transform that crops or resizes to a fixed size)")
    images = torch.stack([torch.as_tensor(x) for x, _ in pairs])  # (N, 3, H, W)
    return images, np.stack([np.asarray(m, dtype=np.int64) for _, m in pairs])  # (N, H, W)


def as_model(source, which: str = "last", device: str | torch.device = "cpu") -> nn.Module:
    """A model from a RunResult (its ``which`` checkpoint: "last" or "best"), a checkpoint path, or a module."""
    if isinstance(source, nn.Module):
        return source.to(device)
    if isinstance(source, (str, os.PathLike)):
        return load_model(resolve_path(source), device=device).model
    checkpoints = getattr(source, "checkpoints", None) or {}
    if checkpoints.get(which) is None:
        raise ValueError(f"{type(source).__name__} has no {which!r} checkpoint (checkpoints: {checkpoints}); "
                         "train the run first, choose which='last' or 'best', or pass a checkpoint path or a model")
    path = checkpoints[which]
    return load_model(resolve_path(path), device=device).model


def predict_labels(model: nn.Module, images: torch.Tensor, batch_size: int = 16, device: str | torch.device = "cpu",
                   progress: bool = True, desc: str = "predict") -> np.ndarray:
    """Labels (N,H,W) int64 of normalised images (N,3,H,W): whole image, no flip (``PROTOCOLS["ss"]``), in batches.

    :func:`~pspnet_lite.inference.predict` runs in eval mode under ``torch.inference_mode``: deterministic."""
    model = model.to(device)
    steps = range(0, len(images), batch_size)
    out = [predict(model, images[i:i + batch_size].to(device), protocol=PROTOCOLS["ss"]).cpu().numpy()
           for i in tqdm(steps, desc=desc, disable=not progress, mininterval=1.0)]
    return np.concatenate(out).astype(np.int64)  # (N, H, W)


def predict_models(models: Mapping[str, object], images: torch.Tensor, which: str = "last", **kw) -> dict:
    """``{name: labels (N,H,W)}`` for each model source (RunResult, checkpoint path or module; see :func:`as_model`).
    Keyword arguments go to :func:`predict_labels` (``batch_size``, ``device``, ``progress``)."""
    device = kw.get("device", "cpu")
    return {name: predict_labels(as_model(src, which, device), images, desc=f"predict {name}", **kw)
            for name, src in models.items()}


# ----------------------------------------------------------------------------------------------------------
# scores and the rule


def _as_labels(preds: Mapping[str, np.ndarray], targets) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``preds`` and ``targets`` as NumPy label arrays of one shape (N,H,W), or a ValueError naming the fix."""
    if not preds:
        raise ValueError("no predictions given; pass {'FCN': labels, 'PSPNet': labels, ...} (predict_models)")
    preds, targets = {str(n): np.asarray(p) for n, p in preds.items()}, np.asarray(targets)
    if targets.ndim != 3:
        raise ValueError(f"targets must be labels (N,H,W), got shape {targets.shape}")
    for name, p in preds.items():
        if p.shape != targets.shape:
            raise ValueError(f"prediction {name!r} has shape {p.shape} but the targets have {targets.shape}; "
                             "predict the same validation images the targets come from (predict_models)")
        if not np.issubdtype(p.dtype, np.integer):
            raise ValueError(f"prediction {name!r} must hold integer labels, got dtype {p.dtype}")
    return preds, targets


def pixel_accuracy(pred: np.ndarray, target: np.ndarray, classes: Sequence[int] | None = None,
                   ignore_index: int = IGNORE_INDEX) -> tuple[np.ndarray, np.ndarray]:
    """Per image: (accuracy (N,), counted pixels (N,)) over the pixels whose ground truth is in ``classes``
    (None: every labelled pixel). An image with no counted pixel has accuracy nan."""
    counted = target != ignore_index  # (N, H, W)
    if classes is not None:
        counted &= np.isin(target, classes)
    pixels = counted.sum((1, 2))  # (N,)
    correct = (counted & (pred == target)).sum((1, 2))  # (N,)
    acc = np.divide(correct, pixels, out=np.full(len(pixels), np.nan), where=pixels > 0)
    return acc, pixels


def role_classes(roles: Sequence[str] | Mapping[str, Sequence[int]] | None = None) -> dict[str, list[int]]:
    """``{role: class ids}``: a mapping as given, role names of ContextScenes, or None for :data:`FAILURE_ROLES`."""
    if isinstance(roles, Mapping):
        return {str(r): list(ids) for r, ids in roles.items()}
    names = FAILURE_ROLES if roles is None else ([roles] if isinstance(roles, str) else list(roles))
    return {r: classes_by_role(r) for r in names}  # an unknown role is a ValueError naming the valid ones


def present_roles(targets: np.ndarray, min_pixels: int = 100, roles=None,
                  ignore_index: int = IGNORE_INDEX) -> list[str]:
    """The roles (default :data:`FAILURE_ROLES`) that at least one image holds with ``min_pixels`` pixels or more:
    those :func:`pick_gallery` can pick for (a small validation set may miss some)."""
    found = []
    for role, ids in role_classes(roles).items():
        pixels = pixel_accuracy(targets, targets, ids, ignore_index)[1]
        if (pixels >= min_pixels).any():
            found.append(role)
    return found


def _role_pick(role: str, ids, preds, targets, baseline, model, min_pixels, ignore_index) -> Pick:
    scores = {n: pixel_accuracy(p, targets, ids, ignore_index)[0] for n, p in preds.items()}
    pixels = pixel_accuracy(preds[model], targets, ids, ignore_index)[1]
    eligible = pixels >= min_pixels
    if not eligible.any():
        raise ValueError(f"role {role!r} (classes {ids}) has at least min_pixels={min_pixels} pixels in none of the "
                         f"{len(targets)} images (the most is {int(pixels.max())}); lower min_pixels, use more "
                         "validation images, or leave the role out (roles=...)")
    gain = np.where(eligible, scores[model] - scores[baseline], -np.inf)
    i = int(np.argmax(gain))  # the first of equal gains: the lowest index
    return Pick(i, role, {n: float(s[i]) for n, s in scores.items()}, int(pixels[i]))


def _worst_picks(preds, targets, model, worst, ignore_index, shown) -> list[Pick]:
    scores = {n: pixel_accuracy(p, targets, None, ignore_index)[0] for n, p in preds.items()}
    pixels = pixel_accuracy(preds[model], targets, None, ignore_index)[1]
    order = np.argsort(np.nan_to_num(scores[model], nan=np.inf), kind="stable")  # ties: the lowest index first
    order = [int(i) for i in order if pixels[i] > 0 and int(i) not in shown]
    return [Pick(i, "worst", {n: float(s[i]) for n, s in scores.items()}, int(pixels[i])) for i in order[:worst]]


def pick_gallery(preds: Mapping[str, np.ndarray], targets: np.ndarray, roles=None, baseline: str = "FCN",
                 model: str = "PSPNet", min_pixels: int = 100, worst: int = 3,
                 ignore_index: int = IGNORE_INDEX) -> list[Pick]:
    """The gallery's images, by rule (module docstring): per role, the largest gain in role accuracy from
    ``baseline`` to ``model`` among images with at least ``min_pixels`` of the role; then the ``worst`` images
    with the lowest image accuracy of ``model`` among the others ("where PSPNet still fails"; an image already
    picked for a role is not shown twice).

    ``preds``: ``{name: labels (N,H,W)}`` (every model is scored, so a table can show B1 too); ``targets``:
    (N,H,W). ``roles``: None (:data:`FAILURE_ROLES`), role names, or ``{role: class ids}``."""
    preds, targets = _as_labels(preds, targets)
    for key, name in (("baseline", baseline), ("model", model)):
        if name not in preds:
            raise ValueError(f"{key}={name!r} is not one of the predictions {list(preds)}; pass {key}=<one of them>")
    picks = [_role_pick(r, ids, preds, targets, baseline, model, min_pixels, ignore_index)
             for r, ids in role_classes(roles).items()]
    return picks + _worst_picks(preds, targets, model, worst, ignore_index, {p.index for p in picks})


def picks_table(picks: Sequence[Pick]) -> str:
    """A fixed-width table of the picks: image index, reason, counted pixels, each model's score (percent)."""
    names = list(picks[0].scores) if picks else []
    lines = [f"{'image':>5}  {'reason':<13}  {'pixels':>6}  " + "  ".join(f"{n:>8}" for n in names)]
    for p in picks:
        lines.append(f"{p.index:>5}  {p.reason:<13}  {p.pixels:>6}  "
                     + "  ".join(f"{100 * p.scores[n]:>8.1f}" for n in names))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# figures


def error_map(pred, target, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """RGB uint8 (H,W,3): wrong pixels red, correct pixels light grey, ignored pixels black (:data:`ERROR_COLOURS`)."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(f"error_map needs one prediction and its target, both (H,W); got {pred.shape} and "
                         f"{target.shape}")
    code = np.where(target == ignore_index, ignore_index, (pred != target).astype(np.int64))  # 0 right, 1 wrong
    return colorize(code, ERROR_COLOURS, ignore_index)


def _pick_row(axes, pick: Pick, image, target, preds, pal, ignore_index) -> None:
    """One gallery row: image | ground truth | each model | each model's error map."""
    axes[0].imshow(_as_rgb(image))
    axes[0].set_title(f"#{pick.index} {pick.reason}")
    axes[1].imshow(colorize(target, pal, ignore_index))
    axes[1].set_title("ground truth")
    m = len(preds)
    for j, (name, p) in enumerate(preds.items()):
        score = pick.scores.get(name, float("nan"))
        axes[2 + j].imshow(colorize(p[pick.index], pal, ignore_index))
        axes[2 + j].set_title(f"{name} {100 * score:.0f}%")
        axes[2 + m + j].imshow(error_map(p[pick.index], target, ignore_index))
        axes[2 + m + j].set_title(f"{name} errors")
    for ax in axes:
        ax.set_axis_off()


def show_gallery(picks: Sequence[Pick], images, targets: np.ndarray, preds: Mapping[str, np.ndarray], palette=None,
                 class_names: Sequence[str] | None = None, ignore_index: int = IGNORE_INDEX, panel_size: float = 1.5):
    """The gallery figure, one row per pick (the paper's Fig. 2 / Fig. 6 layout plus error maps): image, ground
    truth, each model's prediction titled with the pick's score (role accuracy, or image accuracy for "worst"),
    then each model's :func:`error_map`. ``images``: normalised (N,3,H,W) or uint8 (H,W,3) per image.
    ``palette`` and ``class_names`` (for the legend of the classes shown) default to ContextScenes'.
    Returns the Figure."""
    import matplotlib.pyplot as plt  # lazy: matplotlib is an optional (book) dependency

    preds, targets = _as_labels(preds, targets)
    if not picks:
        raise ValueError("no picks to draw; get them from pick_gallery(preds, targets)")
    pal = _palette(PALETTE if palette is None else palette, len(CLASSES))
    cols = 2 + 2 * len(preds)
    fig, axes = plt.subplots(len(picks), cols, figsize=(panel_size * cols, panel_size * len(picks)), squeeze=False)
    for row, pick in zip(axes, picks):
        _pick_row(row, pick, images[pick.index], targets[pick.index], preds, pal, ignore_index)
    shown = {int(c) for p in picks for m in [targets, *preds.values()] for c in np.unique(m[p.index])}
    _legend(fig, shown - {ignore_index}, pal, list(class_names or CLASSES))
    return fig


# ----------------------------------------------------------------------------------------------------------
# per-role confusion


def _role_counts(full: np.ndarray, role: str, ids: list[int], names: Sequence[str]) -> RoleConfusion:
    inside = full[np.ix_(ids, ids)]  # (k, k) among the role's classes
    other = full[ids].sum(1) - inside.sum(1)  # (k,) everything else predicted for those pixels
    counts = np.concatenate([inside, other[:, None]], axis=1).astype(np.int64)  # (k, k + 1)
    return RoleConfusion(role, list(ids), [names[i] for i in ids] + ["other"], counts)


def role_confusion(preds: Mapping[str, np.ndarray], targets: np.ndarray, roles=None, num_classes: int | None = None,
                   class_names: Sequence[str] | None = None,
                   ignore_index: int = IGNORE_INDEX) -> dict[str, dict[str, RoleConfusion]]:
    """``{model: {role: RoleConfusion}}``: for each role's ground-truth pixels, exact counts of the class each
    model gave them (the role's classes, or "other"), from :func:`~pspnet_lite.metrics.confusion_counts`.

    The paper's "confusion categories" (§3.1, building vs skyscraper) appear as off-diagonal mass, a
    mismatched relationship (boat vs car) likewise. ``class_names`` default to ContextScenes' classes,
    ``num_classes`` to their number; ``roles`` as in :func:`pick_gallery`."""
    (preds, targets), mapping = _as_labels(preds, targets), role_classes(roles)
    names = [str(n) for n in (CLASSES if class_names is None else class_names)]
    c = num_classes or len(names)
    if c > len(names) or max((i for ids in mapping.values() for i in ids), default=-1) >= c:
        raise ValueError(f"{len(names)} class names for num_classes={c} and roles {mapping}; pass class_names "
                         "with one name per class and roles whose ids are below num_classes")
    out = {}
    for model, p in preds.items():
        full = confusion_counts(torch.as_tensor(p), torch.as_tensor(targets), c, ignore_index).numpy()
        out[model] = {r: _role_counts(full, r, ids, names) for r, ids in mapping.items()}
    return out


def _heatmap(ax, conf: RoleConfusion, title: str) -> None:
    """One role's row-normalised counts in percent; a class with no ground-truth pixels shows "-"."""
    norm, empty = conf.normalized, conf.counts.sum(1) == 0
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(norm):
        ax.text(j, i, "-" if empty[i] else f"{100 * v:.0f}", ha="center", va="center", fontsize=7,
                color="white" if v > 0.6 else "black")
    ax.set_xticks(range(len(conf.names)), conf.names, rotation=45, ha="right")
    ax.set_yticks(range(len(conf.classes)), conf.names[:-1])
    ax.set_title(title)


def plot_role_confusion(confusions: Mapping[str, Mapping[str, RoleConfusion]], panel_size: float = 1.9):
    """A grid of row-normalised heatmaps (percent), one row per model and one column per role, of
    :func:`role_confusion`'s counts: rows = ground truth, columns = prediction (the role's classes, "other")."""
    import matplotlib.pyplot as plt  # lazy: matplotlib is an optional (book) dependency

    models = list(confusions)
    if not models:
        raise ValueError("no confusions to draw; get them from role_confusion(preds, targets)")
    roles = list(confusions[models[0]])
    fig, axes = plt.subplots(len(models), len(roles), squeeze=False,
                             figsize=(panel_size * len(roles), panel_size * len(models)))
    for row, model in zip(axes, models):
        for ax, role in zip(row, roles):
            _heatmap(ax, confusions[model][role], f"{model} · {role}")
    return fig

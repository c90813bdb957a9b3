"""Table 1's rows (§5.2) as training settings, and ContextScenes' IoU per role: what chapter 05 and its design
runs (``benchmarks/table1_design.py``) share.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.context_scenes import CLASSES, classes_by_role
from . import paper
from .stats import Claim

__all__ = ["ROLES", "CLAIMS", "row_settings", "role_iou", "paper_difference", "pixel_flips", "prior_share"]

ROLES = ("stuff", "mismatched", "confusion", "inconspicuous", "regional")
"""ContextScenes' class roles (:data:`pspnet_lite.data.context_scenes.ROLE_NAMES`), in the chapter's order."""


def row_settings(name: str) -> dict:
    """The PPM settings of one row name of Table 1 (e.g. ``"B1236+AVE+DR"``): bins, pooling and reduction.

    ``"baseline"`` has no pyramid (``bins=()``); ``B1``/``B1236`` are the bins, ``MAX``/``AVE`` the pooling, and
    ``DR`` the 1 x 1 reduction of every level to 1/N of the channels. Without DR the pooled maps are concatenated
    as they are: the paper does not define that setting, this is the book's reading of it.
    """
    if name == "baseline":
        return dict(bins=(), pooling="avg", reduction=True)
    parts = name.split("+")
    bins = {"B1": (1,), "B1236": (1, 2, 3, 6)}.get(parts[0])
    pooling = {"MAX": "max", "AVE": "avg"}.get(parts[1] if len(parts) > 1 else None)
    if bins is None or pooling is None or parts[2:] not in ([], ["DR"]):
        raise ValueError(f"unknown Table 1 row {name!r}; rows look like 'baseline', 'B1+MAX', 'B1236+AVE+DR' "
                         f"(the paper's: {list(paper.TABLE1_ABLATION)})")
    return dict(bins=bins, pooling=pooling, reduction=parts[2:] == ["DR"])


def role_iou(iou) -> dict[str, float]:
    """Mean IoU of each role's classes from a run's per-class IoU (fractions; None or nan for a class absent from
    the validation set, skipped). A role with no class present is nan."""
    values = np.array([np.nan if v is None else v for v in iou], dtype=float)
    out = {}
    for role in ROLES:
        v = values[classes_by_role(role)]
        out[role] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    return out


TABLE1, MECHANISMS = "Table 1 (mIoU)", "mechanisms (role IoU)"
CLAIMS: tuple[Claim, ...] = (
    Claim("C1", "B1+AVE", "baseline", "miou", "Table 1: B1+AVE 40.07 vs the baseline's 37.23",
          "one global bin gives every pixel the scene's context", family=TABLE1),
    Claim("C2", "B1+MAX", "baseline", "miou", "Table 1: B1+MAX 39.94 vs the baseline's 37.23",
          "the same with max pooling", family=TABLE1),
    Claim("C3", "B1236+AVE+DR", "baseline", "miou", "Table 1: B1236+AVE+DR 41.68 vs the baseline's 37.23",
          "the full pyramid module", family=TABLE1),
    Claim("C4", "B1+AVE", "B1+MAX", "miou",
          "§5.2: \"average pooling works better than max pooling in all settings\"", "the pooling type, one bin",
          family=TABLE1),
    Claim("C5", "B1236+AVE+DR", "B1+AVE", "miou",
          "§5.2: \"Pooling with pyramid parsing outperforms that using global pooling\" (+1.61)",
          "four levels beat one, over all classes", family=TABLE1),
    Claim("C6", "B1236+AVE+DR", "B1+AVE", "regional",
          "§3.2: one global vector \"may lose the spatial relation and cause ambiguity\"",
          "four levels beat one where the deciding context is a sub-region (buoy vs cone, by the half they lie in)",
          family=MECHANISMS),
    Claim("C7", "B1+AVE", "baseline", "mismatched",
          "§3.1 and Fig. 2 row 1: the mismatched relationship (a boat on water called a car)",
          "a global prior fixes classes decided by the scene (boat vs car, by water or road far away)",
          family=MECHANISMS),
    Claim("C8", "B1236+AVE+DR", "baseline", "confusion",
          "§3.1 and Fig. 2 row 2: confusion categories (building vs skyscraper)",
          "pooled context sees a whole facade's height", family=MECHANISMS),
    Claim("C9", "B1236+AVE+DR", "baseline", "inconspicuous",
          "§3.1 and Fig. 2 row 3: inconspicuous classes (a pillow on a bed sheet)",
          "sub-region context helps small objects that look like the stuff under them", family=MECHANISMS),
)
"""Chapter 05's claims, declared before its runs: row ``a`` beats row ``b`` on ``metric`` (mIoU, or the IoU of one
ContextScenes role where the paper's mechanism acts). Two families, each one question, Holm's correction within each:
Table 1's ordering of the rows on mIoU (C1-C5), and the mechanisms of §3.1-3.2 on the roles built for them (C6-C9).
The claims were written as one family before the design runs; the split into two was decided on the development
seeds (``results/05_design_dev_seeds_context_scenes.json``), before any report seed was trained."""


def paper_difference(claim: Claim) -> float | None:
    """The paper's mIoU difference for a claim on mIoU between two rows of Table 1 (None for a role's IoU)."""
    if claim.metric != "miou" or claim.a not in paper.TABLE1_ABLATION or claim.b not in paper.TABLE1_ABLATION:
        return None
    return round(paper.TABLE1_ABLATION[claim.a][0] - paper.TABLE1_ABLATION[claim.b][0], 2)


def pixel_flips(pred_a: np.ndarray, pred_b: np.ndarray, targets: np.ndarray, classes: Sequence[int]) -> dict:
    """Where model b loses (or wins) the pixels of ``classes`` that model a labels right, and what b calls them.

    ``pred_a``, ``pred_b``, ``targets``: label maps of one shape. Returns the pixel count, each model's accuracy
    on those pixels, the share ``lost`` (a right, b wrong) and ``gained`` (b right, a wrong), and ``lost_to``:
    the classes b predicts on the lost pixels, as shares of them (largest first; ContextScenes' class names)."""
    pred_a, pred_b, targets = (np.asarray(x) for x in (pred_a, pred_b, targets))
    if not pred_a.shape == pred_b.shape == targets.shape:
        raise ValueError(f"predictions and targets must have one shape, got {pred_a.shape}, {pred_b.shape}, "
                         f"{targets.shape}")
    on = np.isin(targets, list(classes))
    n = int(on.sum())
    if n == 0:
        raise ValueError(f"no pixel of classes {list(classes)} in the targets: nothing to compare")
    right_a, right_b = (pred_a == targets) & on, (pred_b == targets) & on
    lost = right_a & ~right_b
    names, counts = np.unique(pred_b[lost], return_counts=True)
    order = np.argsort(-counts)
    return {"pixels": n, "acc_a": float(right_a.sum() / n), "acc_b": float(right_b.sum() / n),
            "lost": float(lost.sum() / n), "gained": float((right_b & ~right_a).sum() / n),
            "lost_to": {CLASSES[int(names[i])]: float(counts[i] / max(lost.sum(), 1)) for i in order}}


@torch.no_grad()
def prior_share(model: nn.Module, images: torch.Tensor, targets: np.ndarray, classes: Sequence[int],
                batch_size: int = 16) -> dict:
    """How much of the head's input comes from the pooled prior, on the pixels of ``classes`` and on the others.

    The classifier's first 3 x 3 convolution reads the concatenation [feature map, pooled levels] (Fig. 3(c)). Its
    weights split the same way, so its response is the sum of a part from the feature map and a part from the pooled
    levels; the share of the pooled part is ``|r_pooled| / (|r_feature| + |r_pooled|)`` per position (L2 norms
    over the output channels), upsampled to the image and averaged over the pixels of ``classes`` and over all
    other labelled pixels. A model without a pyramid has share 0."""
    if getattr(model, "ppm", None) is None:
        return {"classes": 0.0, "others": 0.0}
    conv, split = model.cls[0], model.ppm.out_channels - len(model.ppm.bins) * model.ppm.level_channels
    captured = []
    hook = conv.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    model.eval()
    shares = []
    try:
        for i in range(0, len(images), batch_size):
            captured.clear()
            x = images[i:i + batch_size]
            model(x)
            f = captured[0].float()  # (N, C_feature + C_pooled, h, w)
            w = conv.weight.float()
            parts = [F.conv2d(f[:, s], w[:, s], padding=conv.padding).norm(dim=1)
                     for s in (slice(0, split), slice(split, None))]  # (N, h, w) each
            share = parts[1] / (parts[0] + parts[1]).clamp_min(1e-12)
            shares.append(F.interpolate(share[:, None], x.shape[-2:], mode="bilinear", align_corners=False)[:, 0])
    finally:
        hook.remove()
    share = torch.cat(shares).numpy()
    targets = np.asarray(targets)
    on, labelled = np.isin(targets, list(classes)), targets != 255
    return {"classes": float(share[on].mean()), "others": float(share[labelled & ~on].mean())}

"""Scene-parsing metrics: a confusion matrix giving per-class IoU, mean IoU, mean accuracy, pixel accuracy.

The paper reports "Mean IoU" and "Pixel Acc." (section 5.2, "Dataset and Evaluation Metrics"; Tables 1-8).
Both come from one dataset-level confusion matrix: counts are summed over *all* validation pixels first and
the ratios taken once at the end (the ADE20K / VOC / Cityscapes benchmark convention). That is not the mean
of per-image mIoUs, which weighs small images as much as large ones and gives different numbers.

Counting is exact: ``torch.bincount`` into int64, never ``torch.histc``. ``histc`` accumulates in the input's
float dtype, so a float32 bin stops growing at 2**24 = 16,777,216 pixels (open-mmlab/mmsegmentation#523;
the authors' ``intersectionAndUnionGPU`` in hszhao/semseg uses it too). A 2048x1024 Cityscapes image has
2**21 pixels: one call on a few dozen full images (or a whole image set counted at once) passes the limit
in the frequent classes, and the error is silent.

Absent classes. A class that appears neither in the ground truth nor in the prediction has IoU 0/0.
The benchmark codes disagree on it:

* ``absent="nan"`` (our default): the class gets IoU nan and the means are ``nanmean`` over the other
  classes, as mmsegmentation's ``IoUMetric`` does.
* ``absent="zero"``: 0/0 counts as 0 and stays in the mean. This is the authors' PyTorch code
  (hszhao/semseg ``intersection / (union + 1e-10)``), CSAIL's ADE20K code (``+ 1e-10``) and the ADE20K
  scene-parsing MATLAB demo (``area_intersection ./ (eps + area_union)``, then ``mean``).
* The PASCAL VOC devkit (``VOCevalseg.m``) and torchvision's reference ``ConfusionMatrix`` compute 0/0 = NaN
  and then a plain mean, so one absent class makes their mIoU NaN; they assume every class occurs.

On a full ADE20K / VOC / Cityscapes validation set every class occurs, so all three agree and reproduce the
published numbers. They differ on subsets, single images and small synthetic sets: there nan-mode ignores
classes that were never in play, while zero-mode divides the IoU sum by all C classes. State which you use.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from .labels import check_label_range

_CHUNK = 1 << 22  # pixels per bincount call: bounds memory for huge inputs, counts stay exact int64
ABSENT_MODES = ("nan", "zero")
CITYSCAPES_KEYS = ("iou_class", "iiou_class", "iou_category", "iiou_category",
                   "iiou_per_class", "iou_per_category", "iiou_per_category")
"""The Cityscapes entries of :meth:`SegmentationScores.as_dict` (fractions in [0, 1]; nan / None when not scored)."""


def json_safe(x: Any) -> Any:
    """``x`` with every non-finite float (the nan IoU of an absent class) as None, for strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def confusion_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = 255, num_pred_classes: int | None = None) -> torch.Tensor:
    """Exact (C, P) int64 confusion counts of two equal-shape integer label tensors; rows are ground truth.

    ``P = num_pred_classes`` (default C): predictions may take P >= C values, the ids from C on being
    predictions that match no class (e.g. a Cityscapes label id outside the 19 evaluated ones).
    Pixels whose target equals ``ignore_index`` are skipped. Work is done in chunks of ``_CHUNK`` pixels so
    any input size counts exactly with bounded memory. Targets outside [0, C) or predictions outside
    [0, P) raise a ValueError before anything is returned.
    """
    cols = num_classes if num_pred_classes is None else num_pred_classes
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}; "
                         "pass labels (N,H,W) with targets (N,H,W), or logits (N,C,H,W)")
    for name, t in (("prediction", pred), ("target", target)):
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer labels, got dtype {t.dtype}")
    pred, target = pred.reshape(-1), target.reshape(-1)  # (P,)
    counts = torch.zeros(num_classes * cols, dtype=torch.int64, device=target.device)
    for start in range(0, target.numel(), _CHUNK):
        t = target[start:start + _CHUNK].long()  # (chunk,)
        p = pred[start:start + _CHUNK].to(t.device).long()  # (chunk,)
        if ignore_index is not None:
            keep = t != ignore_index
            if not bool(keep.all()):
                t, p = t[keep], p[keep]  # (valid,)
        check_label_range(t, num_classes, ignore_index, "target")  # ignored pixels are already dropped
        check_label_range(p, cols, None, "prediction")
        counts += torch.bincount(t * cols + p, minlength=num_classes * cols)
    return counts.view(num_classes, cols)  # (C, P) rows = ground truth, cols = prediction


@dataclass
class SegmentationScores:
    """Scores from a confusion matrix (paper section 5.2: "Mean IoU" and "Pixel Acc.").

    ``iou`` and ``acc`` are per-class float64 tensors of shape (C,). With ``absent="nan"`` a class absent from
    both ground truth and prediction has IoU nan, a class absent from the ground truth has accuracy nan, and
    ``miou`` / ``macc`` are nan-means over the rest. ``pixel_acc`` is correct pixels / labelled pixels.
    All values are fractions in [0, 1] (the paper prints percentages). ``protocol`` names the inference
    protocol that produced the predictions, when known. ``cityscapes`` holds the four Cityscapes scores
    (``iou_class``, ``iiou_class``, ``iou_category``, ``iiou_category`` and their per-class and per-category
    values; :mod:`pspnet_lite.cityscapes_metrics`) when the scores come from the Cityscapes evaluation.
    """

    iou: torch.Tensor
    miou: float
    acc: torch.Tensor
    macc: float
    pixel_acc: float
    absent: str = "nan"
    protocol: str | None = None
    num_pixels: int = 0
    extra: dict = field(default_factory=dict)
    cityscapes: dict | None = None

    @property
    def num_classes(self) -> int:
        return int(self.iou.numel())

    def as_dict(self) -> dict:
        """Plain Python values (floats and lists; nan stays nan), for logs, JSON records and tables."""
        out = {"miou": self.miou, "macc": self.macc, "pixel_acc": self.pixel_acc,
               "iou": [float(v) for v in self.iou], "acc": [float(v) for v in self.acc],
               "absent": self.absent, "num_pixels": self.num_pixels}
        if self.protocol is not None:
            out["protocol"] = self.protocol
        if self.cityscapes is not None:
            out.update(self.cityscapes)
        return out

    def per_class(self, class_names: list[str]) -> dict[str, dict[str, float]]:
        """``{class name: {"iou": ..., "acc": ...}}`` in label order (nan for an absent class)."""
        if len(class_names) != self.num_classes:
            raise ValueError(f"got {len(class_names)} class names for {self.num_classes} classes")
        return {n: {"iou": float(i), "acc": float(a)} for n, i, a in zip(class_names, self.iou, self.acc)}

    @classmethod
    def from_dict(cls, d: Mapping) -> SegmentationScores:
        """The scores of an :meth:`as_dict` record, also one made JSON-safe (None for nan)."""
        def num(v):
            return math.nan if v is None else float(v)

        cityscapes = None
        if "iou_class" in d:
            cityscapes = {k: ({n: num(x) for n, x in v.items()} if isinstance(v, Mapping) else num(v))
                          for k, v in d.items() if k in CITYSCAPES_KEYS}
        return cls(iou=torch.tensor([num(v) for v in d["iou"]], dtype=torch.float64), miou=num(d.get("miou")),
                   acc=torch.tensor([num(v) for v in d.get("acc") or [None] * len(d["iou"])], dtype=torch.float64),
                   macc=num(d.get("macc")), pixel_acc=num(d.get("pixel_acc")), absent=d.get("absent", "nan"),
                   protocol=d.get("protocol"), num_pixels=int(d.get("num_pixels") or 0), cityscapes=cityscapes)

    def table(self, class_names: list[str] | None = None, digits: int = 2,
              roles: Mapping[str, str] | None = None) -> str:
        """A fixed-width text table in percent: one row per class, then the means. Absent classes show "-".

        ``roles`` maps class names to a group (ContextScenes: the failure mode of §3.1 each class is
        built to show); it adds a role column and the mean IoU of each role."""
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f"got {len(names)} class names for {self.num_classes} classes; "
                             "pass one name per class, in label order")
        roles = roles or {}

        def pct(v: float) -> str:
            return "-" if math.isnan(v) else f"{100 * v:.{digits}f}"

        width = max([len(n) for n in names] + [len("pixel acc"), len("class")])
        rw = max([len(r) for r in roles.values()] + [len("role")]) if roles else 0
        role_col = (lambda r: f"  {r:<{rw}}") if roles else (lambda r: "")
        lines = [f"protocol: {self.protocol}"] if self.protocol else []
        lines.append(f"{'class':<{width}}{role_col('role')}  {'IoU':>7}  {'Acc':>7}")
        rule = "-" * (width + 18 + (rw + 2 if roles else 0))
        lines.append(rule)
        by_role: dict[str, list[float]] = {}
        for name, iou, acc in zip(names, self.iou.tolist(), self.acc.tolist()):
            lines.append(f"{name:<{width}}{role_col(roles.get(name, ''))}  {pct(iou):>7}  {pct(acc):>7}")
            if name in roles and not math.isnan(iou):
                by_role.setdefault(roles[name], []).append(iou)
        lines.append(rule)
        for role, values in by_role.items():
            lines.append(f"{'mean ' + role:<{width + len(role_col(''))}}  {pct(sum(values) / len(values)):>7}")
        lines.append(f"{'mean':<{width}}{role_col('')}  {pct(self.miou):>7}  {pct(self.macc):>7}")
        lines.append(f"{'pixel acc':<{width}}{role_col('')}  {pct(self.pixel_acc):>7}")
        if self.cityscapes is not None:
            c = self.cityscapes
            lines.append(f"Cityscapes: IoU class {pct(c['iou_class'])}  iIoU class {pct(c['iiou_class'])}  "
                         f"IoU category {pct(c['iou_category'])}  iIoU category {pct(c['iiou_category'])}")
        return "\n".join(lines)

    def __str__(self) -> str:
        tag = f" [{self.protocol}]" if self.protocol else ""
        iiou = ""
        if self.cityscapes is not None:
            iiou = "".join(f"  {label} {100 * self.cityscapes[key]:.2f}" for key, label in
                           (("iiou_class", "iIoU"), ("iou_category", "IoU cat"), ("iiou_category", "iIoU cat"))
                           if self.cityscapes[key] is not None and not math.isnan(self.cityscapes[key]))
        return (f"mIoU {100 * self.miou:.2f}  mAcc {100 * self.macc:.2f}  "
                f"pixel acc {100 * self.pixel_acc:.2f}{iiou}{tag}")


class ConfusionMatrix:
    """Dataset-level confusion matrix for semantic segmentation (paper section 5.2 metrics).

    ``mat[i, j]`` counts pixels of ground-truth class ``i`` predicted as class ``j`` (int64, exact).
    Pixels labelled ``ignore_index`` (255) are not counted. Update it batch by batch, ``merge`` matrices
    from several workers, or ``all_reduce`` across torch.distributed ranks, then ``compute()``.

    ``num_pred_classes`` P > C widens the matrix to (C, P): prediction ids C..P-1 then stand for answers that
    are no class at all (a Cityscapes label id outside the 19 evaluated ones). They never count as correct,
    count as misses of the pixel's class, and as nobody's false positive, as the Cityscapes evaluation does.

    >>> cm = ConfusionMatrix(3)
    >>> cm.update(torch.tensor([[0, 1, 2]]), torch.tensor([[0, 1, 255]]))
    >>> cm.compute().pixel_acc
    1.0
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255, device=None,
                 num_pred_classes: int | None = None):
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        cols = num_classes if num_pred_classes is None else num_pred_classes
        if not isinstance(cols, int) or isinstance(cols, bool) or cols < num_classes:
            raise ValueError(f"num_pred_classes must be an int >= num_classes={num_classes}, got {num_pred_classes!r}")
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} is a valid class id for num_classes={num_classes}; "
                             "use a value outside [0, num_classes), e.g. 255")
        self.num_classes = num_classes
        self.num_pred_classes = cols
        self.ignore_index = ignore_index
        self.mat = torch.zeros(num_classes, cols, dtype=torch.int64, device=device)  # (C, P)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch. ``pred`` is integer labels shaped like ``target`` (N,H,W), or float logits /
        probabilities (N,C,H,W) that are arg-maxed over dim 1. ``target`` is integer labels with 255 ignored.

        Labels outside [0, C) other than the ignore index raise a ValueError, and the matrix is unchanged.
        """
        if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
            raise ValueError(f"pred and target must be torch tensors, got {type(pred).__name__} and "
                             f"{type(target).__name__}; use torch.from_numpy(...)")
        if pred.is_floating_point():
            if pred.dim() != target.dim() + 1 or pred.shape[1] != self.num_classes:
                raise ValueError(f"float prediction of shape {tuple(pred.shape)} is read as logits (N,C,H,W) "
                                 f"with C={self.num_classes} for targets {tuple(target.shape)}; "
                                 "pass logits (N,C,H,W) or integer labels (N,H,W)")
            pred = pred.argmax(1)  # (N, H, W)
        counts = confusion_counts(pred, target, self.num_classes, self.ignore_index, self.num_pred_classes)
        self.mat += counts.to(self.mat.device)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts into this one (same classes and ignore index); returns self."""
        if not isinstance(other, ConfusionMatrix):
            raise ValueError(f"can only merge a ConfusionMatrix, got {type(other).__name__}")
        mine = (self.num_classes, self.num_pred_classes, self.ignore_index)
        theirs = (other.num_classes, other.num_pred_classes, other.ignore_index)
        if theirs != mine:
            raise ValueError(f"cannot merge a matrix with (num_classes, num_pred_classes, ignore_index)={theirs} "
                             f"into one with {mine}")
        self.mat += other.mat.to(self.mat.device)
        return self

    def all_reduce(self) -> ConfusionMatrix:
        """Sum the matrix over all torch.distributed ranks in place (no-op when not initialised); returns self.

        With the NCCL backend the reduction runs on the current CUDA device and the result is copied back.
        Every rank must call it (it is a collective). Note that ``DistributedSampler`` pads the data set with
        repeated samples so every rank gets the same count; for exact numbers evaluate on one rank or use a
        sampler without padding.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return self
        device = self.mat.device
        if dist.get_backend() == "nccl" and device.type != "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        buf = self.mat.to(device)
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        self.mat.copy_(buf.to(self.mat.device))
        return self

    def reset(self) -> None:
        """Zero all counts."""
        self.mat.zero_()

    def compute(self, absent: str = "nan") -> SegmentationScores:
        """Per-class IoU and accuracy, their means, and pixel accuracy (section 5.2).

        IoU_c = TP_c / (GT_c + Pred_c - TP_c), Acc_c = TP_c / GT_c, pixel acc = sum TP / sum GT.
        ``absent="nan"`` (default): 0/0 is nan and the means skip it (mmsegmentation's ``IoUMetric``).
        ``absent="zero"``: 0/0 is 0 and counts in the means (hszhao/semseg and CSAIL, which add 1e-10).
        The VOC devkit and torchvision's reference code take a plain mean over nan instead, so their mIoU
        is NaN when a class is absent; the three agree whenever every class occurs (module docstring).
        """
        if absent not in ABSENT_MODES:
            raise ValueError(f"absent must be one of {ABSENT_MODES}, got {absent!r}")
        mat = self.mat.to("cpu", torch.float64)  # (C, P)
        tp = mat.diag()  # (C,)
        gt, pr = mat.sum(1), mat[:, : self.num_classes].sum(0)  # (C,) ground-truth and predicted pixels per class
        union = gt + pr - tp  # (C,)
        fill = float("nan") if absent == "nan" else 0.0
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, fill))  # (C,)
        acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, fill))  # (C,)
        total = gt.sum().item()

        def mean(v: torch.Tensor) -> float:
            v = v[~v.isnan()]
            return float(v.mean()) if v.numel() else float("nan")

        return SegmentationScores(iou=iou, miou=mean(iou), acc=acc, macc=mean(acc),
                                  pixel_acc=tp.sum().item() / total if total else float("nan"),
                                  absent=absent, num_pixels=int(total))

    def __repr__(self) -> str:
        return (f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
                f"pixels={int(self.mat.sum())})")

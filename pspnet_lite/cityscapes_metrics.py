"""The four Cityscapes scores of the paper's Table 7: IoU and iIoU over classes, IoU and iIoU over categories.

They are the scores of the official evaluation, ``cityscapesscripts`` (mcordts/cityscapesScripts,
``cityscapesscripts/evaluation/evalPixelLevelSemanticLabeling.py``), computed the way it computes them:

- **IoU class**: per class c of the 19 evaluated ones, TP / (TP + FP + FN), averaged over the classes that occur.
  FN counts every miss of a class-c pixel, including answers that are no evaluated class (e.g. label id 0,
  "unlabeled"); FP counts only pixels whose ground truth is an evaluated class. Ground-truth pixels of
  the other label ids are not scored.
- **iIoU class** (instance-level IoU): for the 8 classes with instances (person, rider, car, truck, bus, train,
  motorcycle, bicycle), TP and FN are summed over the ground-truth instances of
  ``*_gtFine_instanceIds.png`` (ids label_id * 1000 + k), each instance's pixels weighted by
  ``average size of the class / size of the instance``; FP is not weighted. Large objects thus stop
  dominating the score: a missed small car costs as much as a missed large one.
- **IoU category** and **iIoU category**: the same over the 7 categories (flat, construction, object, nature,
  sky, human, vehicle); a class-c pixel answered with another class of its category counts as correct. Only
  human and vehicle have instances. For them the official code takes every label id of the category as
  correct, caravan (29) and trailer (30) included, although those two are not evaluated classes; so do we.

The class-average instance sizes :data:`AVERAGE_INSTANCE_SIZE` are the constants of the official script
(``args.avgClassSize`` in ``evalPixelLevelSemanticLabeling.py``, cityscapesscripts 2.3.0), measured there on
the training set.

Predictions are taken in train ids (0..18, what the network outputs) or in label ids (0..33, what the test
server takes). Internally they live in one *column space*: columns 0..18 are the train ids and columns
19..33 the 15 label ids that are not evaluated, so a (19, 34) :class:`~pspnet_lite.metrics.ConfusionMatrix`
holds everything the scores need. Counts are exact int64. The instance-weighted TP and FN sums are float64
(a weight is a ratio), so merging metrics from several processes reorders only their last bits.

The test suite checks these numbers against ``cityscapesscripts`` itself on a fabricated val tree. That
package calls ``np.in1d``, which NumPy 2.4 removed; the test gives it ``np.isin`` under the old name.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.distributed as dist

from .data.datasets.classes import CITYSCAPES_LABELS, IGNORE_INDEX
from .metrics import ConfusionMatrix, SegmentationScores

AVERAGE_INSTANCE_SIZE = {
    "bicycle": 4672.3249222261, "caravan": 36771.8241758242, "motorcycle": 6298.7200839748,
    "rider": 3930.4788056518, "bus": 35732.1511111111, "train": 67583.7075812274, "car": 12794.0202738185,
    "person": 3462.4756337644, "truck": 27855.1264367816, "trailer": 16926.9763313609,
}
"""Average instance size (pixels) per class with instances, from cityscapesscripts' evaluation script."""

NUM_LABEL_IDS = 34  # label ids 0..33 ("license plate", -1, never appears in a PNG)
_EVALUATED = sorted((t for t in CITYSCAPES_LABELS if t[2] != IGNORE_INDEX), key=lambda t: t[2])
_OTHER = [t for t in CITYSCAPES_LABELS if t[2] == IGNORE_INDEX]
NUM_CLASSES = len(_EVALUATED)  # 19
LABEL_TO_COLUMN = np.full(256, -1, dtype=np.int64)
"""label id -> column: the evaluated label ids to their train ids 0..18, the others to 19..33, invalid -> -1."""
for _col, _t in enumerate(_EVALUATED + _OTHER):
    LABEL_TO_COLUMN[_t[1]] = _col
_CATEGORY_OF_COLUMN = [t[3] for t in _EVALUATED + _OTHER]

CATEGORIES = list(dict.fromkeys(t[3] for t in _EVALUATED))
"""The 7 scored categories, in label order (void has no evaluated class)."""
INSTANCE_CLASSES = [t[0] for t in _EVALUATED if t[4]]
"""The 8 evaluated classes with instances, in train-id order."""
INSTANCE_CATEGORIES = [c for c in CATEGORIES if all(t[4] for t in CITYSCAPES_LABELS if t[3] == c)]
"""Categories all of whose labels have instances (human, vehicle): the ones with an iIoU."""

_CLASS_COLUMN = [CITYSCAPES_LABELS[[t[0] for t in CITYSCAPES_LABELS].index(n)][2] for n in INSTANCE_CLASSES]
_INSTANCE_ROW_OF_LABEL = np.full(256, -1, dtype=np.int64)  # label id -> row 0..7 of the instance statistics
for _row, _name in enumerate(INSTANCE_CLASSES):
    _INSTANCE_ROW_OF_LABEL[next(t[1] for t in CITYSCAPES_LABELS if t[0] == _name)] = _row


def label_ids_to_columns(label_ids: torch.Tensor) -> torch.Tensor:
    """Label-id predictions (0..33) as columns; ValueError naming the first id outside 0..33."""
    lut = torch.as_tensor(LABEL_TO_COLUMN, device=label_ids.device)
    cols = lut[label_ids.long()]
    if bool((cols < 0).any()):
        bad = int(label_ids.reshape(-1)[(cols < 0).reshape(-1)][0])
        raise ValueError(f"Cityscapes label id {bad} is outside the label ids 0..{NUM_LABEL_IDS - 1}")
    return cols


class CityscapesMetrics:
    """Accumulates the official Cityscapes evaluation over batches; :meth:`compute` gives all four scores.

    ``update(pred, target, instances)`` takes predictions (N,H,W) in train ids (``ids="train"``, the model's
    output) or label ids (``ids="label"``, a test-server PNG), train-id targets (N,H,W) with 255 ignored, and the
    ground truth's instance ids (N,H,W, from ``*_gtFine_instanceIds.png``) or None. ``instances=False`` scores
    IoU only, and the iIoU scores are nan. ``merge`` and ``all_reduce`` sum the statistics of several workers.
    """

    def __init__(self, instances: bool = True, device=None):
        self.confusion = ConfusionMatrix(NUM_CLASSES, IGNORE_INDEX, device=device, num_pred_classes=NUM_LABEL_IDS)
        self.instances = bool(instances)
        rows = len(INSTANCE_CLASSES) + len(INSTANCE_CATEGORIES)  # per class, then per category
        self.instance_pixels = torch.zeros(rows, 2, dtype=torch.int64, device=device)  # (rows, [tp, fn])
        self.instance_weighted = torch.zeros(rows, 2, dtype=torch.float64, device=device)  # (rows, [tp, fn])

    @property
    def device(self) -> torch.device:
        return self.confusion.mat.device

    def update(self, pred: torch.Tensor, target: torch.Tensor, instances: torch.Tensor | None = None,
               ids: str = "train") -> None:
        """Add one batch (see the class docstring). Bad ids raise a ValueError and change nothing."""
        if ids not in ("train", "label"):
            raise ValueError(f"ids must be 'train' or 'label', got {ids!r}")
        if ids == "label":
            pred = label_ids_to_columns(pred)
        if self.instances:
            if instances is None:
                raise ValueError("iIoU needs the ground truth's instance ids (gtFine_instanceIds.png); pass "
                                 "instances=..., or build CityscapesMetrics(instances=False) for IoU only")
            if instances.shape != target.shape:
                raise ValueError(f"instance ids of shape {tuple(instances.shape)} do not match the targets' "
                                 f"{tuple(target.shape)}")
        counts = self.confusion.mat.clone()
        self.confusion.update(pred, target)  # checks the ranges first
        try:
            if self.instances:
                pred = pred.to(self.device).long()
                for n in range(pred.shape[0]):
                    self._add_instances(pred[n].reshape(-1), instances[n].to(self.device).reshape(-1).long())
        except ValueError:
            self.confusion.mat.copy_(counts)
            raise

    def _add_instances(self, pred: torch.Tensor, inst: torch.Tensor) -> None:
        """TP and FN of every ground-truth instance of one image, plain and size-weighted."""
        row_of_label = torch.as_tensor(_INSTANCE_ROW_OF_LABEL, device=self.device)
        label = inst // 1000
        if bool((label > 255).any()):
            raise ValueError(f"instance id {int(inst.max())} is not label_id * 1000 + k with a label id 0..33")
        keep = (inst > 1000) & (row_of_label[label.clamp(min=0)] >= 0)  # instances of the 8 evaluated classes
        if not bool(keep.any()):
            return
        ids, inv = torch.unique(inst[keep], return_inverse=True)  # (I,), (pixels,)
        p = pred[keep]  # (pixels,)
        rows = row_of_label[ids // 1000]  # (I,) 0..7
        size = torch.bincount(inv, minlength=ids.numel())  # (I,)
        columns = torch.tensor(_CLASS_COLUMN, device=self.device)
        tp = torch.bincount(inv[p == columns[rows][inv]], minlength=ids.numel())  # (I,)
        category = [INSTANCE_CATEGORIES.index(_CATEGORY_OF_COLUMN[c]) for c in _CLASS_COLUMN]
        in_category = torch.tensor([[_CATEGORY_OF_COLUMN[c] == cat for c in range(NUM_LABEL_IDS)]
                                    for cat in INSTANCE_CATEGORIES], device=self.device)  # (2, 34)
        cat_rows = torch.tensor(category, device=self.device)[rows]  # (I,)
        cat_tp = torch.bincount(inv[in_category[cat_rows[inv], p]], minlength=ids.numel())  # (I,)
        avg = torch.tensor([AVERAGE_INSTANCE_SIZE[n] for n in INSTANCE_CLASSES], dtype=torch.float64,
                           device=self.device)
        weight = avg[rows] / size.double()  # (I,) as the official script: average size / instance size
        for r, hits in ((rows, tp), (len(INSTANCE_CLASSES) + cat_rows, cat_tp)):
            self.instance_pixels.index_add_(0, r, torch.stack([hits, size - hits], 1))
            self.instance_weighted.index_add_(0, r, torch.stack([hits.double() * weight,
                                                                 (size - hits).double() * weight], 1))

    def merge(self, other: CityscapesMetrics) -> CityscapesMetrics:
        """Add another worker's statistics into these; returns self."""
        if not isinstance(other, CityscapesMetrics) or other.instances != self.instances:
            raise ValueError("can only merge a CityscapesMetrics with the same instances setting")
        self.confusion.merge(other.confusion)
        self.instance_pixels += other.instance_pixels.to(self.device)
        self.instance_weighted += other.instance_weighted.to(self.device)
        return self

    def all_reduce(self) -> CityscapesMetrics:
        """Sum the statistics over all torch.distributed ranks in place (no-op when not initialised)."""
        self.confusion.all_reduce()
        if dist.is_available() and dist.is_initialized():
            for t in (self.instance_pixels, self.instance_weighted):
                device = t.device
                if dist.get_backend() == "nccl" and device.type != "cuda":
                    device = torch.device("cuda", torch.cuda.current_device())
                buf = t.to(device)
                dist.all_reduce(buf, op=dist.ReduceOp.SUM)
                t.copy_(buf.to(t.device))
        return self

    def compute(self, absent: str = "nan") -> SegmentationScores:
        """The usual scores (class IoU, accuracy, pixel accuracy) with the four Cityscapes scores in
        ``scores.cityscapes``; a class or category that never occurs gets nan and is left out of its mean, as
        the official evaluation does (``absent="nan"``, the only mode it has)."""
        if absent != "nan":
            raise ValueError(f"the Cityscapes evaluation leaves absent classes out of its means (absent='nan'); "
                             f"got absent={absent!r}")
        scores = self.confusion.compute(absent="nan")
        m = self.confusion.mat.to("cpu", torch.float64)  # (19, 34) rows: ground truth, columns: answers
        weighted = self.instance_weighted.to("cpu")

        def ratio(tp: float, fp: float, fn: float) -> float:
            return tp / (tp + fp + fn) if tp + fp + fn > 0 else math.nan

        iiou_class = {}
        for row, name in enumerate(INSTANCE_CLASSES):
            c = _CLASS_COLUMN[row]
            fp = float(m[:, c].sum() - m[c, c])
            iiou_class[name] = ratio(*map(float, (weighted[row, 0], fp, weighted[row, 1]))) if self.instances \
                else math.nan
        iou_category, iiou_category = {}, {}
        for cat in CATEGORIES:
            rows = torch.tensor([_CATEGORY_OF_COLUMN[r] == cat for r in range(NUM_CLASSES)])
            tp = float(m[rows][:, : NUM_CLASSES][:, rows].sum())
            fp = float(m[~rows][:, : NUM_CLASSES][:, rows].sum())
            iou_category[cat] = ratio(tp, fp, float(m[rows].sum()) - tp)
            if cat in INSTANCE_CATEGORIES:
                r = len(INSTANCE_CLASSES) + INSTANCE_CATEGORIES.index(cat)
                columns = torch.tensor([c == cat for c in _CATEGORY_OF_COLUMN])  # every label id of it
                fp = float(m[~rows][:, columns].sum())
                iiou_category[cat] = ratio(float(weighted[r, 0]), fp, float(weighted[r, 1])) if self.instances \
                    else math.nan

        def mean(values) -> float:
            values = [v for v in values if not math.isnan(v)]
            return sum(values) / len(values) if values else math.nan

        scores.cityscapes = {"iou_class": scores.miou, "iiou_class": mean(iiou_class.values()),
                             "iou_category": mean(iou_category.values()),
                             "iiou_category": mean(iiou_category.values()), "iiou_per_class": iiou_class,
                             "iou_per_category": iou_category, "iiou_per_category": iiou_category}
        return scores

    def __repr__(self) -> str:
        return f"CityscapesMetrics(instances={self.instances}, pixels={int(self.confusion.mat.sum())})"

"""The label convention every data set, the loss and the metrics share: class ids 0..C-1, ignore = 255."""
from __future__ import annotations

import torch

IGNORE_INDEX = 255  # unlabelled pixels (paper §5 data sets: ADE20K, VOC and Cityscapes all mark them 255)


def check_label_range(labels: torch.Tensor, num_classes: int, ignore_index: int | None = None,
                      what: str = "labels") -> None:
    """Raise a ValueError naming the labels outside [0, num_classes) that are not ``ignore_index``.

    The package's one label-range check (the loss and the metrics both call it): an
    out-of-range label would otherwise corrupt the counts silently or surface as a CUDA device-side
    assert in the loss (section 5 data sets: ADE20K, VOC and Cityscapes all mark ignored pixels 255).
    The message names the first ten offending values, the valid range and the fix. All-valid input
    costs one min/max.
    """
    if labels.numel() == 0:
        return
    lo, hi = (int(v) for v in torch.aminmax(labels))
    if lo >= 0 and hi < num_classes:
        return
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if not bool(bad.any()):
        return
    found = torch.unique(labels[bad]).tolist()
    ignore = f" other than the ignore index {ignore_index}" if ignore_index is not None else ""
    raise ValueError(
        f"{what} holds labels {found[:10]}{' ...' if len(found) > 10 else ''} outside [0, {num_classes}){ignore}. "
        "Map raw ids to train ids in the data set (ADE20K: 0 -> 255, k -> k-1; Cityscapes: *_labelTrainIds.png; "
        f"unlabelled pixels -> 255), or make num_classes (now {num_classes}) match the data set and the model."
    )

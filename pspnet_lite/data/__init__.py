"""Data sets (ContextScenes, ADE20K, VOC 2012 aug, Cityscapes, folders) and the paper's augmentation (§4, §5).

``build_dataset(name, root, split, transform)`` is the one entry point the trainer and the book use.

Modules: :mod:`.transforms` (the paper's augmentation and the evaluation transform), :mod:`.datasets`
(the real data sets, their labels and the check ``python -m pspnet_lite.data.datasets``),
:mod:`.context_scenes` (the synthetic ContextScenes set, drawn by :mod:`.scene_drawing` with the
classes of :mod:`.scene_classes`) and :mod:`.prepare` (helpers of ``data_scripts/prepare_*.py``).
"""

from __future__ import annotations

import os

import cv2
import torch

from .context_scenes import ContextScenes
from .datasets import (
    ADE20K,
    ADE20K_CLASSES,
    ADE20K_PALETTE,
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    VOC_CLASSES,
    VOC_PALETTE,
    Cityscapes,
    SegmentationDataset,
    SegmentationFolder,
    VOCAug,
)
from .transforms import MEAN, STD, EvalTransform, TrainTransform

__all__ = [
    "build_dataset",
    "worker_init_fn",
    "DATASET_NAMES",
    "ContextScenes",
    "ADE20K",
    "VOCAug",
    "Cityscapes",
    "SegmentationFolder",
    "SegmentationDataset",
    "TrainTransform",
    "EvalTransform",
    "MEAN",
    "STD",
    "ADE20K_CLASSES",
    "ADE20K_PALETTE",
    "VOC_CLASSES",
    "VOC_PALETTE",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_PALETTE",
]

DATASET_NAMES = ("context_scenes", "ade20k", "voc", "cityscapes", "folder")


def build_dataset(name: str, root: str | os.PathLike | None = None, split: str = "train", transform=None, **kw):
    """Build a data set by name: "context_scenes", "ade20k", "voc", "cityscapes" or "folder".

    ``root=None`` uses ``$PSPNET_DATA/<name>`` (``./data/<name>``); ContextScenes ignores ``root``
    (it is generated). "folder" needs ``list_file=`` and ``classes=``/``num_classes=`` in ``kw``.
    Extra keyword arguments go to the data set's constructor.
    """
    key = name.lower().replace("-", "_")
    if key == "context_scenes":
        return ContextScenes(split=split, transform=transform, **kw)
    if key == "ade20k":
        return ADE20K(root, split, transform, **kw)
    if key in ("voc", "voc_aug", "vocaug"):
        return VOCAug(root, split, transform, **kw)
    if key == "cityscapes":
        return Cityscapes(root, split, transform, **kw)
    if key == "folder":
        if root is None or "list_file" not in kw:
            raise ValueError("build_dataset('folder') needs root=... and list_file=... (lines 'image mask')")
        return SegmentationFolder(root, transform=transform, **kw)
    raise ValueError(f"unknown data set {name!r}; choose one of {DATASET_NAMES}")


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one OpenCV and one torch thread per worker (workers are the
    parallelism; nested thread pools only contend). Augmentation seeds need no setup here:
    :class:`TrainTransform` re-seeds itself per worker from ``get_worker_info().seed``."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)

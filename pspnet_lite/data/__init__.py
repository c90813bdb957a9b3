"""Data sets (ContextScenes, ADE20K, VOC 2012 aug, Cityscapes, folders) and the paper's augmentation (§4, §5).

``build_dataset(name, root, split, transform)`` is the one entry point the trainer and the book use.

Modules: :mod:`.transforms` (the paper's augmentation and the evaluation transform), :mod:`.datasets`
(the real data sets, their labels and the check ``python -m pspnet_lite.data.datasets``),
:mod:`.context_scenes` (the synthetic ContextScenes set, drawn by :mod:`.scene_drawing` with the
classes of :mod:`.scene_classes`), the preparation commands :mod:`.prepare_ade20k`, :mod:`.prepare_voc`,
:mod:`.prepare_cityscapes` (``pspnet-prepare-*``) and :mod:`.prepare` (what they share).
"""

from __future__ import annotations

import multiprocessing
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
    "data_loader",
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
    """DataLoader ``worker_init_fn``: one OpenCV and one torch thread per worker (workers are the parallelism; nested
    thread pools only contend). Augmentation seeds need no setup here: :class:`TrainTransform` re-seeds itself per
    worker from ``get_worker_info().seed``.

    Without it OpenCV runs as wide as the machine inside every worker (``cv2.getNumThreads()`` is the core count
    there): 8 ranks x 8 workers on a 64-core node would each start 64 threads. A *forked* worker must not call
    ``cv2.setNumThreads`` once the parent process has used OpenCV's thread pool: it waits forever for pool threads
    that were not forked (measured: opencv-python 4.x/5.1, a DataLoader worker hangs on its first batch). So here
    OpenCV is set only in workers started fresh (spawn, forkserver); forked workers get their one thread from
    :func:`data_loader`, which sets it in the parent while they are forked."""
    torch.set_num_threads(1)
    if cv2.getNumThreads() != 1 and not _forked():
        cv2.setNumThreads(1)


def _forked() -> bool:
    """Whether this process was started by ``fork`` (a DataLoader worker of the default context on Linux)."""
    method = getattr(multiprocessing.current_process(), "_start_method", None)
    return (method or multiprocessing.get_start_method()) == "fork"


class OneThreadLoader(torch.utils.data.DataLoader):
    """A DataLoader whose forked workers start with one OpenCV thread (see :func:`worker_init_fn`): while it forks
    them, the parent's OpenCV runs on one thread; its own setting is restored right after."""

    def __iter__(self):
        ctx = self.multiprocessing_context
        method = ctx.get_start_method() if ctx is not None else multiprocessing.get_start_method()
        if self.num_workers == 0 or method != "fork" or cv2.getNumThreads() == 1:
            return super().__iter__()
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # the forked workers inherit it, and never resize a pool they do not have
        try:
            return super().__iter__()  # starts (forks) the workers
        finally:
            cv2.setNumThreads(threads)


def data_loader(dataset, **kw) -> torch.utils.data.DataLoader:
    """``torch.utils.data.DataLoader(dataset, **kw)`` whose workers run one OpenCV and one torch thread each
    (:func:`worker_init_fn`, :class:`OneThreadLoader`): every loader of the package (training, validation,
    ``evaluate``) is built here, so none forgets it."""
    kw.setdefault("worker_init_fn", worker_init_fn)
    return OneThreadLoader(dataset, **kw)

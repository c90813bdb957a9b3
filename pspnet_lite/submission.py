"""The evaluation servers' prediction formats: write a model's predictions as each server takes them, and
score a folder of such files against a data set's labels (``evaluate --predictions``).

One PNG per image, single channel, 8 bits, at the image's full resolution:

- ``ade20k`` (the MIT Scene Parsing benchmark of ADE20K, paper Table 5): ``<image stem>.png``, e.g.
  ``ADE_test_00000001.png``, holding class ids **1..150** (the network's 0..149 plus one; 0, "other", is no
  prediction). Archive: a zip of the PNGs.
- ``voc`` (the PASCAL VOC 2012 evaluation server, Table 6): ``results/VOC2012/Segmentation/comp6_test_cls/
  <image id>.png``, an indexed PNG with VOC's palette holding 0..20. Archive: a tar.gz of ``results/``.
  comp6 is the competition for methods trained with outside data, as the paper's MS-COCO pre-training;
  comp5 (``--voc-competition comp5``) is VOC data only.
- ``cityscapes`` (the Cityscapes benchmark, Table 7): ``<city>_<seq>_<frame>_leftImg8bit.png``, holding
  **label ids** (7 = road, 26 = car, ...), not the 0..18 train ids the network outputs. The official
  evaluation script finds an image's prediction by the pattern ``<city>_<seq>_<frame>*.png`` anywhere
  under the folder, so each frame must match exactly one file. Archive: a zip of the PNGs.

Reading a folder back checks what a server would reject, one line each: a missing prediction, files that
match no image, a wrong size, and ids outside the format's id space (train ids where label ids are
expected are detected and named as such).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Subset
from tqdm.auto import tqdm

from .cityscapes_metrics import LABEL_TO_COLUMN, NUM_CLASSES, CityscapesMetrics
from .data.datasets import (
    ADE20K,
    CITYSCAPES_TRAIN_TO_LABEL,
    Cityscapes,
    SegmentationDataset,
    VOCAug,
    read_instances,
    read_mask,
    voc_colormap,
)
from .metrics import ConfusionMatrix, SegmentationScores

FORMATS = {"ade20k": 150, "voc": 21, "cityscapes": 19}
"""Format name -> the number of classes of the network whose predictions it holds."""
VOC_COMPETITIONS = ("comp6", "comp5")
FORMAT_OF_DATASET = {ADE20K: "ade20k", VOCAug: "voc", Cityscapes: "cityscapes"}
_NOT_EVALUATED_BELOW_19 = sorted(int(i) for i in np.flatnonzero(LABEL_TO_COLUMN[:19] >= NUM_CLASSES))


def check_format(fmt: str, num_classes: int) -> None:
    """ValueError unless ``fmt`` is a format and the model's ``num_classes`` is the one it holds."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if num_classes != FORMATS[fmt]:
        raise ValueError(f"--format {fmt} holds {FORMATS[fmt]} classes but the model predicts {num_classes}; "
                         "use the format of the data set the model was trained on")


def image_key(fmt: str, image: str | os.PathLike) -> str:
    """What names an image in the format: its stem, or ``city_seq_frame`` for Cityscapes."""
    stem = Path(image).name.rsplit(".", 1)[0]
    return "_".join(stem.split("_")[:3]) if fmt == "cityscapes" else stem


def relative_path(fmt: str, image: str | os.PathLike, voc_competition: str = "comp6") -> Path:
    """Where the prediction of ``image`` goes inside the submission folder."""
    if fmt == "voc":
        if voc_competition not in VOC_COMPETITIONS:
            raise ValueError(f"voc_competition must be one of {VOC_COMPETITIONS}, got {voc_competition!r}")
        return Path("results/VOC2012/Segmentation") / f"{voc_competition}_test_cls" / f"{image_key(fmt, image)}.png"
    if fmt == "cityscapes":
        return Path(f"{image_key(fmt, image)}_leftImg8bit.png")
    return Path(f"{image_key(fmt, image)}.png")


def encode(fmt: str, train_ids: np.ndarray) -> np.ndarray:
    """The network's train ids (HxW, 0..C-1) as the ids the format's files hold (uint8)."""
    train_ids = np.asarray(train_ids)
    if train_ids.size and (train_ids.min() < 0 or train_ids.max() >= FORMATS[fmt]):
        raise ValueError(f"train ids must lie in 0..{FORMATS[fmt] - 1} for --format {fmt}; "
                         f"got [{train_ids.min()}, {train_ids.max()}]")
    if fmt == "ade20k":
        return (train_ids + 1).astype(np.uint8)
    if fmt == "cityscapes":
        return CITYSCAPES_TRAIN_TO_LABEL[train_ids]
    return train_ids.astype(np.uint8)


def write(fmt: str, train_ids: np.ndarray, image: str | os.PathLike, out_dir: str | os.PathLike,
          voc_competition: str = "comp6") -> Path:
    """Write one prediction in the format under ``out_dir``; returns its path."""
    path = Path(out_dir) / relative_path(fmt, image, voc_competition)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(encode(fmt, train_ids), mode="L")
    if fmt == "voc":
        im = im.convert("P")
        im.putpalette(voc_colormap(256).reshape(-1).tolist())
    im.save(path)
    return path


def decode(fmt: str, ids: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """The ids of a prediction file, checked against the format's id space: train ids for ``ade20k`` and
    ``voc``, label ids for ``cityscapes`` (scored with ``CityscapesMetrics(ids="label")``)."""
    values = np.flatnonzero(np.bincount(ids.reshape(-1), minlength=256))
    if fmt == "ade20k":
        if values[0] == 0:
            seen = " they look like 0-based train ids (0..149): add 1," if values[-1] < 150 else ""
            raise ValueError(f"prediction {path} holds id 0, outside ADE20K's 1..150;{seen} as "
                             "`predict --format ade20k` writes them")
        if values[-1] > 150:
            raise ValueError(f"prediction {path} holds id {values[-1]}, outside ADE20K's class ids 1..150")
        return ids.astype(np.int64) - 1
    if fmt == "voc":
        if values[-1] > 20:
            raise ValueError(f"prediction {path} holds id {values[-1]}, outside VOC's class ids 0..20 "
                             "(255 marks ignored pixels in the labels, never in a prediction)")
        return ids.astype(np.int64)
    if values[-1] > 33:
        raise ValueError(f"prediction {path} holds id {values[-1]}, outside the Cityscapes label ids 0..33")
    if values[-1] <= 18 and set(values.tolist()) & set(_NOT_EVALUATED_BELOW_19):
        raise ValueError(f"prediction {path} holds only ids 0..18, among them ids no model answers in label ids "
                         f"(e.g. {sorted(set(values.tolist()) & set(_NOT_EVALUATED_BELOW_19))[0]}): these look "
                         "like train ids; map them to label ids (CITYSCAPES_TRAIN_TO_LABEL), as "
                         "`predict --format cityscapes` does")
    return ids.astype(np.int64)


def find_predictions(fmt: str, folder: str | os.PathLike, images: Sequence[Path],
                     all_images: Sequence[Path] | None = None) -> list[Path]:
    """The prediction file of each of ``images`` under ``folder`` (searched recursively). ValueError, one line,
    for a missing folder or prediction, two files for one image, or files matching none of ``all_images``
    (default: ``images``; pass the whole split when scoring a part of it)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--predictions {folder} is not a folder; write one with "
                         f"`python -m pspnet_lite.predict --format {fmt} --out {folder} ...`")
    found: dict[str, list[Path]] = {}
    for f in sorted(folder.rglob("*.png")):
        found.setdefault(image_key(fmt, f), []).append(f)
    keys = [image_key(fmt, i) for i in images]
    known = set(keys) | {image_key(fmt, i) for i in (all_images or ())}
    extra = sorted(f for k, files in found.items() if k not in known for f in files)
    if extra:
        raise ValueError(f"{len(extra)} file(s) in {folder} match no image of the split, e.g. {extra[0]}; remove "
                         "them or point --predictions at the predictions of this split")
    missing = [(i, k) for i, k in zip(images, keys) if k not in found]
    if missing:
        image, _ = missing[0]
        raise ValueError(f"no prediction for {len(missing)} of {len(images)} images, e.g. {image}: expected "
                         f"{folder / relative_path(fmt, image)}; predict them with `python -m pspnet_lite.predict "
                         f"--format {fmt}`")
    double = next(((k, found[k]) for k in keys if len(found[k]) > 1), None)
    if double:
        raise ValueError(f"{len(double[1])} predictions for image {double[0]}: {', '.join(map(str, double[1]))}; "
                         "keep one")
    return [found[k][0] for k in keys]


def _base(dataset) -> tuple[SegmentationDataset, list[int]]:
    if isinstance(dataset, Subset):
        return dataset.dataset, list(dataset.indices)
    return dataset, list(range(len(dataset)))


def score_predictions(dataset, folder: str | os.PathLike, fmt: str | None = None, iiou: bool = True,
                      progress: bool = True) -> SegmentationScores:
    """Scores of the prediction files under ``folder`` against ``dataset``'s labels (an ADE20K, VOCAug or
    Cityscapes data set, or a ``Subset`` of one), with no model: the same confusion matrix and, for
    Cityscapes, the same four scores as ``evaluate --checkpoint`` (``iiou=False``: class and category IoU only)."""
    base, indices = _base(dataset)
    fmt = fmt or FORMAT_OF_DATASET.get(type(base))
    if fmt is None:
        raise ValueError(f"no prediction format for {type(base).__name__}; give one of {', '.join(FORMATS)}")
    check_format(fmt, base.num_classes)
    if fmt == "cityscapes":
        metric = CityscapesMetrics(instances=iiou)
        if iiou:
            missing = next((base.instance_path(i) for i in indices if not base.instance_path(i).is_file()), None)
            if missing is not None:
                raise ValueError(f"iIoU needs the instance ids {missing}, which does not exist; extract "
                                 "gtFine_trainvaltest.zip again, or score IoU only with --no-iiou")
    else:
        metric = ConfusionMatrix(base.num_classes)
    files = find_predictions(fmt, folder, [base.samples[i][0] for i in indices], [s[0] for s in base.samples])
    for i, path in tqdm(list(zip(indices, files)), desc="score predictions", disable=not progress, mininterval=1.0):
        target = base.load_mask(i)
        pred = read_mask(path)
        if pred.shape != target.shape:
            raise ValueError(f"prediction {path} is {pred.shape[0]}x{pred.shape[1]} but the labels of "
                             f"{base.samples[i][0]} are {target.shape[0]}x{target.shape[1]}; predict at the image's "
                             "full resolution")
        pred = torch.from_numpy(decode(fmt, pred, path))[None]
        target = torch.from_numpy(target)[None]
        if fmt == "cityscapes":
            inst = torch.from_numpy(read_instances(base.instance_path(i)))[None] if iiou else None
            metric.update(pred, target, inst, ids="label")
        else:
            metric.update(pred, target)
    scores = metric.compute()
    scores.protocol = f"predictions in {folder}"
    return scores

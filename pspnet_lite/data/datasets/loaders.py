"""The real data sets as ``torch.utils.data.Dataset`` s: list the files, read them, map and check labels.

Every data set yields ``transform(image, mask)`` where the raw image is uint8 HxWx3 RGB and the raw
mask is uint8 HxW already in train ids (0..C-1, 255 = ignore); the default transform is
:class:`~pspnet_lite.data.transforms.EvalTransform`. Bad input fails early with a ValueError naming the
file: a missing root names the command that prepares it (``pspnet-prepare-*``, ``data_scripts/`` in a
clone); a missing or differently sized mask names both files; an unreadable image names it; a label
outside 0..C-1 and 255 names the file and the value (checked on every load, at the cost of one ``max``
per mask; ``validate()`` checks a whole split).

Image decoding uses OpenCV (``cv2.imread`` + BGR->RGB), chosen by measurement: decoding 50 different
512x683 JPEGs (quality 90, the ADE20K/VOC size class) to uint8 HxWx3 RGB arrays on one thread
(``cv2.setNumThreads(1)``, ``torch.set_num_threads(1)``; 2-core shared machine, median of 7 rounds, two
runs) took 2.09 / 2.13 ms per image with ``cv2.imread``, 2.07 / 2.15 ms with ``torchvision.io.decode_image``
(then HWC ``.contiguous()``) and 2.74 / 2.87 ms with PIL ``Image.open().convert("RGB")``; all three gave
identical pixels. torchvision ties with OpenCV (within the noise) and PIL is ~35% slower, so OpenCV stays:
it is already the augmentation library (:mod:`~pspnet_lite.data.transforms`) and returns the HWC array the
transforms take without a layout copy. Masks are read with PIL, which returns a palette PNG's indices
(OpenCV would expand VOC's palette to colours).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..transforms import EvalTransform
from .classes import (
    ADE20K_CLASSES,
    ADE20K_PALETTE,
    CITYSCAPES_CLASSES,
    CITYSCAPES_LABEL_TO_TRAIN,
    CITYSCAPES_PALETTE,
    IGNORE_INDEX,
    VOC_CLASSES,
    VOC_PALETTE,
    default_palette,
)


def default_root(name: str) -> Path:
    """Default data root for a data set: ``$PSPNET_DATA/<name>`` (``./data/<name>`` if unset)."""
    return Path(os.environ.get("PSPNET_DATA", "data")) / name


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to uint8 HxWx3 RGB (OpenCV); ValueError naming the file if unreadable."""
    img = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if img is None:
        if not Path(path).exists():
            raise ValueError(f"image file {path} does not exist")
        raise ValueError(f"cannot decode image {path}: the file is unreadable or not an image; "
                         f"re-extract it or remove it from the list")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Decode a label PNG to a uint8 HxW array of indices (palette PNGs give their indices, via PIL)."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise ValueError(f"mask {path} is a {im.mode} image; masks must be single-channel class-index "
                                 f"PNGs (mode L or P), not colour renderings")
            arr = np.array(im)
    except (OSError, SyntaxError) as e:
        raise ValueError(f"cannot decode mask {path}: {e}") from None
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"mask {path} holds values outside 0..255 (range [{arr.min()}, {arr.max()}])")
        arr = arr.astype(np.uint8)
    return arr


def read_instances(path: str | os.PathLike) -> np.ndarray:
    """Decode a Cityscapes ``*_gtFine_instanceIds.png`` (16-bit) to an int64 HxW array of instance ids."""
    try:
        with Image.open(path) as im:
            arr = np.array(im)
    except FileNotFoundError:
        raise ValueError(f"instance file {path} does not exist") from None
    except (OSError, SyntaxError) as e:
        raise ValueError(f"cannot decode instance ids {path}: {e}") from None
    if arr.ndim != 2:
        raise ValueError(f"instance ids {path} must be a single-channel 16-bit PNG, got shape {arr.shape}")
    return arr.astype(np.int64)


def _warn_count(name: str, split: str, found: int, expected: int | None) -> None:
    if expected is not None and found != expected:
        warnings.warn(f"{name} {split}: found {found} samples, the official split has {expected}; "
                      f"the data set is incomplete or a subset", stacklevel=3)


class SegmentationDataset(Dataset):
    """Base class: a list of (image path, mask path) pairs, one label mapping, checks and ``validate()``.

    Subclasses set ``classes``, ``palette``, ``expected_counts``, ``prepare_command`` (the clone's
    ``data_scripts/`` command) with ``prepare_script`` (the console script of a pip install) and implement
    ``_list_samples()``; ``label_lut`` (256 uint8) maps raw mask values to train ids.
    """

    classes: list[str] = []
    palette: np.ndarray = np.zeros((0, 3), dtype=np.uint8)
    ignore_index: int = IGNORE_INDEX
    expected_counts: dict[str, int] = {}
    splits: tuple[str, ...] = ("train", "val")
    prepare_command: str = ""
    prepare_script: str = ""
    label_lut: np.ndarray | None = None
    default_name: str = "data"

    def __init__(self, root: str | os.PathLike | None, split: str = "train",
                 transform: Callable | None = None, check_labels: bool = True) -> None:
        if split not in self.splits:
            raise ValueError(f"{type(self).__name__}: split must be one of {', '.join(self.splits)}; got {split!r}")
        self.root = Path(root) if root is not None else default_root(self.default_name)
        self._default_root = root is None
        self.split = split
        self.transform = transform if transform is not None else EvalTransform()
        self.check_labels = check_labels
        self.samples: list[tuple[Path, Path]] = self._list_samples()
        if not self.samples:
            raise ValueError(f"{type(self).__name__} {split}: no samples under {self.root}; "
                             f"prepare it with {self._command()}")
        _warn_count(type(self).__name__, split, len(self.samples), self.expected_counts.get(split))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _command(self) -> str:
        """The command that prepares the data set, quoted for an error message: the console script that
        ``pip install`` provides, then the clone's ``data_scripts/`` command."""
        clone = f"`{self.prepare_command.format(root=self.root)}`"
        if not self.prepare_script:
            return clone
        return f"`{self.prepare_script} --root {self.root}` (in a clone: {clone})"

    def _missing(self, what: Path) -> ValueError:
        """The error for a data set that is not (fully) there: names the missing root, or the missing
        file or folder under it, and the command that prepares the data set."""
        if not self.root.exists():
            default = (f" (the default root: $PSPNET_DATA/{self.default_name}, or ./data/{self.default_name} "
                       f"when PSPNET_DATA is unset)" if self._default_root else "")
            what_text = f"the data root {self.root}{default} does not exist"
        else:
            what_text = f"{what} does not exist"
        return ValueError(f"{type(self).__name__} not found: {what_text}. Prepare the data set with "
                          f"{self._command()}, or point the data root at an existing copy")

    def _list_samples(self) -> list[tuple[Path, Path]]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"

    def map_labels(self, raw: np.ndarray) -> np.ndarray:
        """Raw mask values -> train ids (0..C-1, 255 ignore)."""
        return raw if self.label_lut is None else self.label_lut[raw]

    def check_mask(self, mask: np.ndarray, path: Path) -> None:
        """ValueError naming ``path`` and the value if a train-id mask has a label outside 0..C-1 and 255."""
        if mask.size == 0 or int(mask.max()) < self.num_classes:
            return
        counts = np.bincount(mask.ravel(), minlength=256)
        bad = [int(v) for v in np.flatnonzero(counts) if self.num_classes <= v != self.ignore_index]
        if bad:
            raise ValueError(f"mask {path} has label value {bad[0]} (all bad: {bad[:10]}) outside "
                             f"0..{self.num_classes - 1} and {self.ignore_index} (ignore) after mapping; fix the "
                             f"label file or its conversion")

    def load_mask(self, index: int) -> np.ndarray:
        """The uint8 HxW train-id mask of sample ``index`` alone (no image decoded), checked."""
        img_path, mask_path = self.samples[index]
        if not mask_path.exists():
            raise ValueError(f"mask {mask_path} for image {img_path} does not exist")
        mask = self.map_labels(read_mask(mask_path))
        if self.check_labels:
            self.check_mask(mask, mask_path)
        return mask

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw (uint8 HxWx3 RGB image, uint8 HxW train-id mask) of sample ``index``, checked."""
        img_path, mask_path = self.samples[index]
        if not mask_path.exists():
            raise ValueError(f"mask {mask_path} for image {img_path} does not exist")
        image = read_image(img_path)
        mask = self.map_labels(read_mask(mask_path))
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask {mask_path} has size {mask.shape} but image {img_path} has size "
                             f"{image.shape[:2]}; they must match")
        if self.check_labels:
            self.check_mask(mask, mask_path)
        return image, mask

    def __getitem__(self, index: int):
        image, mask = self.load(index)
        return self.transform(image, mask)

    def validate(self, progress: bool = True, max_errors: int = 20) -> dict:
        """Read every sample and check it (readable, sizes match, labels in range). Returns a report
        ``{"checked", "errors", "label_counts"}``; raises ValueError listing the first errors if any."""
        errors, counts = [], np.zeros(256, dtype=np.int64)
        for i in tqdm(range(len(self)), desc=f"validate {type(self).__name__} {self.split}",
                      disable=not progress, mininterval=1.0):
            try:
                _, mask = self.load(i)
                counts += np.bincount(mask.ravel(), minlength=256)
            except ValueError as e:
                errors.append(str(e))
        report = {"checked": len(self), "errors": errors, "label_counts": counts}
        if errors:
            shown = "\n  ".join(errors[:max_errors])
            raise ValueError(f"{len(errors)} of {len(self)} samples failed validation:\n  {shown}")
        return report


def _descend(root: Path, candidates: Sequence[str]) -> Path:
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    return root


class ADE20K(SegmentationDataset):
    """ADE20K SceneParsing (MIT ADEChallengeData2016), §5.2: 150 classes, 20,210 train / 2,000 val.

    ``root`` is ``ADEChallengeData2016`` or its parent. Raw label 0 ("other") -> 255, k -> k-1.
    """

    classes = ADE20K_CLASSES
    palette = ADE20K_PALETTE
    expected_counts = {"train": 20210, "val": 2000}
    prepare_command = "python data_scripts/prepare_ade20k.py --root {root}"
    prepare_script = "pspnet-prepare-ade20k"
    label_lut = ((np.arange(256) - 1) % 256).astype(np.uint8)  # 0 -> 255, k -> k-1
    default_name = "ade20k"

    def _list_samples(self):
        base = _descend(self.root, ["ADEChallengeData2016"])
        sub = {"train": "training", "val": "validation"}[self.split]
        img_dir = base / "images" / sub
        if not img_dir.is_dir():
            raise self._missing(img_dir)
        return [(p, base / "annotations" / sub / (p.stem + ".png")) for p in sorted(img_dir.glob("*.jpg"))]


class VOCAug(SegmentationDataset):
    """PASCAL VOC 2012 with the SBD "aug" labels, §5.3: 21 classes, 10,582 train_aug / 1,449 val.

    ``root`` is ``VOC2012``, ``VOCdevkit`` or their parent, holding ``JPEGImages/``,
    ``SegmentationClassAug/`` and ``ImageSets/`` as written by ``pspnet-prepare-voc``.
    Splits: "train" (train_aug), "val", "train_voc" (VOC's own 1,464 train images).
    """

    classes = VOC_CLASSES
    palette = VOC_PALETTE
    expected_counts = {"train": 10582, "val": 1449, "train_voc": 1464}
    splits = ("train", "val", "train_voc")
    prepare_command = "python data_scripts/prepare_voc.py --root {root}"
    prepare_script = "pspnet-prepare-voc"
    default_name = "voc"
    list_files = {"train": "ImageSets/SegmentationAug/train_aug.txt", "val": "ImageSets/Segmentation/val.txt",
                  "train_voc": "ImageSets/Segmentation/train.txt"}

    def _list_samples(self):
        base = _descend(self.root, ["VOCdevkit/VOC2012", "VOC2012"])
        list_file = base / self.list_files[self.split]
        if not list_file.is_file() or not (base / "SegmentationClassAug").is_dir():
            raise self._missing(list_file if not list_file.is_file() else base / "SegmentationClassAug")
        ids = [ln.split()[0] for ln in list_file.read_text().splitlines() if ln.strip()]
        return [(base / "JPEGImages" / f"{i}.jpg", base / "SegmentationClassAug" / f"{i}.png") for i in ids]


class Cityscapes(SegmentationDataset):
    """Cityscapes fine annotations, §5.4: 19 train ids (other labelIds -> 255), 2,975 train / 500 val.

    ``root`` holds ``leftImg8bit/`` and ``gtFine/``. Reads ``*_gtFine_labelTrainIds.png`` (written by
    ``pspnet-prepare-cityscapes``); falls back to mapping ``*_gtFine_labelIds.png``.
    With ``instances=True`` each sample also yields the ground truth's instance ids (int64 HxW tensor,
    ``*_gtFine_instanceIds.png``: label_id * 1000 + k), which the iIoU scores need
    (:mod:`pspnet_lite.cityscapes_metrics`); the transform must then keep the mask's size.
    """

    classes = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE
    expected_counts = {"train": 2975, "val": 500}
    prepare_command = "python data_scripts/prepare_cityscapes.py --root {root}"
    prepare_script = "pspnet-prepare-cityscapes"
    default_name = "cityscapes"

    def __init__(self, root=None, split: str = "train", transform: Callable | None = None,
                 check_labels: bool = True, instances: bool = False) -> None:
        super().__init__(root, split, transform, check_labels)
        self.instances = bool(instances)
        if self.instances:
            missing = [p for p in map(self.instance_path, range(len(self))) if not p.is_file()]
            if missing:
                raise ValueError(f"{len(missing)} of {len(self)} Cityscapes {split} frames lack their instance ids, "
                                 f"e.g. {missing[0]}; iIoU needs *_gtFine_instanceIds.png: extract "
                                 f"gtFine_trainvaltest.zip again under {self.root}, or score IoU only (--no-iiou)")

    def instance_path(self, index: int) -> Path:
        """The ``*_gtFine_instanceIds.png`` of sample ``index``."""
        gt = self.samples[index][1]
        return gt.with_name(gt.name.replace("labelTrainIds", "instanceIds").replace("labelIds", "instanceIds"))

    def __getitem__(self, index: int):
        sample = super().__getitem__(index)
        if not self.instances:
            return sample
        inst = torch.from_numpy(read_instances(self.instance_path(index)))
        if tuple(inst.shape) != tuple(sample[1].shape[-2:]):
            raise ValueError(f"instance ids {self.instance_path(index)} have size {tuple(inst.shape)} but the "
                             f"transformed mask has {tuple(sample[1].shape[-2:])}; use a transform that keeps the "
                             "mask's size (EvalTransform(resize_mask=False))")
        return (*sample, inst)

    def _list_samples(self):
        img_dir = self.root / "leftImg8bit" / self.split
        if not img_dir.is_dir():
            raise self._missing(img_dir)
        samples = []
        for p in sorted(img_dir.glob("*/*_leftImg8bit.png")):
            stem = p.name[: -len("_leftImg8bit.png")]
            gt = self.root / "gtFine" / self.split / p.parent.name / f"{stem}_gtFine_labelTrainIds.png"
            samples.append((p, gt))
        self._use_label_ids = bool(samples) and not samples[0][1].exists() and \
            samples[0][1].with_name(samples[0][1].name.replace("labelTrainIds", "labelIds")).exists()
        if self._use_label_ids:
            samples = [(p, g.with_name(g.name.replace("labelTrainIds", "labelIds"))) for p, g in samples]
        return samples

    def map_labels(self, raw: np.ndarray) -> np.ndarray:
        return CITYSCAPES_LABEL_TO_TRAIN[raw] if self._use_label_ids else raw


class SegmentationFolder(SegmentationDataset):
    """Your own data: ``list_file`` lines ``image_path mask_path`` (relative to ``root`` or absolute).

    Masks are class-index PNGs already in train ids (0..C-1, 255 ignore). Give ``classes`` or
    ``num_classes``; ``palette`` defaults to :func:`default_palette` (no class drawn black).
    """

    splits = ("train", "val", "test", "all")

    def __init__(self, root: str | os.PathLike, list_file: str | os.PathLike, classes: Sequence[str] | None = None,
                 num_classes: int | None = None, palette: np.ndarray | None = None,
                 transform: Callable | None = None, check_labels: bool = True) -> None:
        if classes is None and num_classes is None:
            raise ValueError("SegmentationFolder needs classes=[...] or num_classes=N to check labels and size the "
                             "classifier")
        if classes is None:
            classes = [f"class_{i}" for i in range(int(num_classes))]
        if num_classes is not None and len(classes) != int(num_classes):
            raise ValueError(f"classes has {len(classes)} names but num_classes={num_classes}")
        self.classes = list(classes)
        self.palette = (np.asarray(palette, dtype=np.uint8) if palette is not None
                        else default_palette(len(self.classes)))
        self.list_file = Path(list_file)
        self.prepare_command = f"a list file {self.list_file} of 'image_path mask_path' lines"
        super().__init__(root, "all", transform, check_labels)

    def _command(self) -> str:
        return self.prepare_command

    def _list_samples(self):
        if not self.root.is_dir():
            raise ValueError(f"SegmentationFolder root {self.root} does not exist")
        lf = self.list_file if self.list_file.is_absolute() or self.list_file.exists() else self.root / self.list_file
        if not lf.is_file():
            raise ValueError(f"list file {self.list_file} not found (also tried {self.root / self.list_file})")
        samples = []
        for n, line in enumerate(lf.read_text().splitlines(), 1):
            parts = line.split()
            if not parts or line.lstrip().startswith("#"):
                continue
            if len(parts) != 2:
                raise ValueError(f"{lf} line {n}: expected 'image_path mask_path', got {line!r}")
            samples.append(tuple(Path(p) if Path(p).is_absolute() else self.root / p for p in parts))
        return samples


DATASETS = {"ade20k": ADE20K, "voc": VOCAug, "cityscapes": Cityscapes}

"""Small data-set trees laid out like the real ADE20K, VOC 2012 and Cityscapes releases, made by the tests.

Every image and label file is random but deterministic (seeded): rectangles of classes, and for Cityscapes
``*_gtFine_instanceIds.png`` with instances of several sizes, crowd regions and void labels.
"""

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pspnet_lite.data.datasets import CITYSCAPES_LABEL_TO_TRAIN, voc_colormap


def write_image(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_png(path: Path, arr: np.ndarray, palette: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.dtype == np.uint16:
        cv2.imwrite(str(path), arr)  # 16-bit grey, as the official instanceIds PNGs
        return
    im = Image.fromarray(arr.astype(np.uint8))
    if palette is not None:
        im = im.convert("P")
        im.putpalette(palette.reshape(-1).tolist())
    im.save(path)


def rectangles(rng, h: int, w: int, values, n: int, base: int) -> np.ndarray:
    """An (h, w) int map filled with ``base`` and then ``n`` random rectangles of random ``values``."""
    out = np.full((h, w), base, dtype=np.int64)
    for _ in range(n):
        y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
        dy, dx = rng.integers(2, max(3, h // 2)), rng.integers(2, max(3, w // 2))
        out[y:y + dy, x:x + dx] = rng.choice(values)
    return out


def make_ade20k(root: Path, n_val: int = 3, h: int = 40, w: int = 56, seed: int = 0) -> list[str]:
    """ADEChallengeData2016 with ``n_val`` validation images (labels 0..150, 0 = other, mostly 1..7); returns
    the stems."""
    rng = np.random.default_rng(seed)
    base = root / "ADEChallengeData2016"
    stems = []
    for split, sub, n in (("train", "training", 1), ("val", "validation", n_val)):
        for i in range(n):
            stem = f"ADE_{split}_{i + 1:08d}"
            write_image(base / "images" / sub / f"{stem}.jpg", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            write_png(base / "annotations" / sub / f"{stem}.png", rectangles(rng, h, w, [*range(0, 8), 37, 150], 12, 1))
            stems += [stem] if split == "val" else []
    return stems


def make_voc(root: Path, n_val: int = 3, h: int = 40, w: int = 56, seed: int = 0) -> list[str]:
    """VOC2012 with SegmentationClassAug palette PNGs (0..20, 255 border) and the split lists; returns val ids."""
    rng = np.random.default_rng(seed)
    base = root / "VOC2012"
    ids = {"train": ["2007_000032"], "val": [f"2007_{i:06d}" for i in range(33, 33 + n_val)]}
    for i in ids["train"] + ids["val"]:
        write_image(base / "JPEGImages" / f"{i}.jpg", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        mask = rectangles(rng, h, w, list(range(21)) + [255], 10, 0)
        write_png(base / "SegmentationClassAug" / f"{i}.png", mask, voc_colormap(256))
    for name, lst in (("SegmentationAug/train_aug.txt", ids["train"]), ("Segmentation/val.txt", ids["val"]),
                      ("Segmentation/train.txt", ids["train"])):
        (base / "ImageSets" / name).parent.mkdir(parents=True, exist_ok=True)
        (base / "ImageSets" / name).write_text("\n".join(lst) + "\n")
    return ids["val"]


def cityscapes_labels(rng, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (label ids, instance ids) of one frame: stuff rectangles of every label id 0..23, then
    instances of 24..33 (person .. bicycle, caravan and trailer included) of varied sizes, some as crowds."""
    label = rectangles(rng, h, w, range(0, 24), 10, 7)
    inst = label.copy()
    k = {}
    for _ in range(int(rng.integers(6, 12))):
        lid = int(rng.choice([24, 25, 26, 26, 26, 27, 28, 29, 30, 31, 32, 33]))
        y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
        dy, dx = (rng.integers(2, 6), rng.integers(2, 6)) if rng.random() < 0.5 else \
            (rng.integers(6, h // 2), rng.integers(6, w // 2))
        label[y:y + dy, x:x + dx] = lid
        crowd = rng.random() < 0.15
        inst[y:y + dy, x:x + dx] = lid if crowd else lid * 1000 + k.get(lid, 0)
        k[lid] = k.get(lid, 0) + (0 if crowd else 1)
    return label, inst


def make_cityscapes(root: Path, n_val: int = 3, h: int = 48, w: int = 96, seed: int = 0,
                    instances: bool = True) -> list[str]:
    """leftImg8bit + gtFine (labelIds, labelTrainIds and, with ``instances``, instanceIds) for one train
    frame and ``n_val`` val frames in two cities; returns the val stems ``city_seq_frame``."""
    rng = np.random.default_rng(seed)
    stems = []
    frames = [("train", "aachen", 0)] + [("val", ("frankfurt", "lindau")[i % 2], i) for i in range(n_val)]
    for split, city, i in frames:
        stem = f"{city}_{i:06d}_{19 + i:06d}"
        write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                    rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        label, inst = cityscapes_labels(rng, h, w)
        gt = root / "gtFine" / split / city
        write_png(gt / f"{stem}_gtFine_labelIds.png", label)
        write_png(gt / f"{stem}_gtFine_labelTrainIds.png", CITYSCAPES_LABEL_TO_TRAIN[label])
        if instances:
            write_png(gt / f"{stem}_gtFine_instanceIds.png", inst.astype(np.uint16))
        stems += [stem] if split == "val" else []
    return stems


def noisy_label_ids(rng, label: np.ndarray, instance_misses: bool = True) -> np.ndarray:
    """A plausible label-id prediction of ``label``: right mostly, with wrong rectangles of any label id."""
    pred = label.copy()
    h, w = label.shape
    wrong = rectangles(rng, h, w, range(0, 34), 8, -1)
    pred[wrong >= 0] = wrong[wrong >= 0]
    if instance_misses:
        pred[(label == 26) & (rng.random(label.shape) < 0.3)] = 27  # car pixels taken for trucks
    return pred

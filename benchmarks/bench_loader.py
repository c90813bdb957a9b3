"""Images/s per DataLoader worker of the training pipeline (JPEG decode + the paper's augmentation at crop 473),
with OpenCV at its default width in every worker ("plain": a DataLoader without ``worker_init_fn``) and with one
OpenCV thread per worker (:func:`pspnet_lite.data.data_loader`), side by side in one run.

    PYTHONPATH=. python benchmarks/bench_loader.py                      # 2 workers, 240 images per round, 3 rounds
    PYTHONPATH=. python benchmarks/bench_loader.py --workers 8 --images 800

The images are fabricated JPEGs at ADE20K's sizes (512 x 683, 683 x 512, 512 x 512), read by the package's ADE20K
loader and augmented by :class:`pspnet_lite.data.TrainTransform` (scale 0.5-2, rotation, blur, mirror, crop 473), as
the trainer does. The two loaders alternate, round after round, so that a busy machine slows both alike; the table
gives each round's images/s divided by the number of workers, and the median. With W workers on a machine of C
cores, the plain loader runs up to W x C OpenCV threads.

Measured on a shared 2-core machine (OpenCV 5.1, torch 2.14), median images/s per worker, plain -> data_loader:
2 workers, 240 images: 44.5 -> 45.0; 4 workers, 320 images: 18.9 -> 21.0 (rounds 18.3-21.7 and 18.5-21.5: within
the noise). Two cores hold at most 2 OpenCV threads per worker, so little can be won here; the oversubscription the
fix removes grows with the core count (8 ranks x 8 workers x 64 OpenCV threads on a 64-core node), which this
machine cannot show.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from pspnet_lite.data import ADE20K, TrainTransform, data_loader

SIZES = [(512, 683), (683, 512), (512, 512)]


def fabricate(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` smooth random JPEGs with label PNGs in ADE20K's layout (training split), at ADE20K's sizes."""
    rng = np.random.default_rng(seed)
    base = root / "ADEChallengeData2016"
    for sub in ("images", "annotations"):
        (base / sub / "training").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = SIZES[i % len(SIZES)]
        image = cv2.resize(rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8), (w, h),
                           interpolation=cv2.INTER_CUBIC)
        labels = cv2.resize(rng.integers(0, 151, (h // 32, w // 32), dtype=np.uint8), (w, h),
                            interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(base / "images" / "training" / f"ADE_train_{i + 1:08d}.jpg"), image)
        cv2.imwrite(str(base / "annotations" / "training" / f"ADE_train_{i + 1:08d}.png"), labels)
    return base


def images_per_s(loader, n: int) -> float:
    """Images/s of one pass over ``n`` images (worker start-up included, as every epoch and validation pays it)."""
    t0, seen = time.perf_counter(), 0
    for x, _ in loader:
        seen += x.shape[0]
    assert seen == n, (seen, n)
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser("benchmarks/bench_loader.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--images", type=int, default=240, help="images per round (and fabricated)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of both loaders")
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        root = fabricate(Path(tmp), args.images)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a subset of ADE20K's training split, on purpose
            ds = ADE20K(root, "train", transform=TrainTransform(crop_size=473))
        ds[0]  # the parent uses OpenCV first, as a notebook or an in-process validation does
        kw = dict(batch_size=args.batch_size, num_workers=args.workers)
        loaders = {"plain DataLoader": torch.utils.data.DataLoader(ds, **kw), "data_loader": data_loader(ds, **kw)}
        rows = {name: [] for name in loaders}
        for _ in range(args.rounds):
            for name, loader in loaders.items():
                rows[name].append(images_per_s(loader, args.images) / args.workers)
    print(f"crop 473, {args.images} JPEGs at ADE20K sizes, {args.workers} workers, batch {args.batch_size}, "
          f"{os.cpu_count()} CPUs, OpenCV {cv2.__version__} (default threads here: {cv2.getNumThreads()}), "
          f"torch {torch.__version__}")
    print(f"{'loader':<18} {'img/s per worker, each round':<32} median")
    for name, values in rows.items():
        print(f"{name:<18} {', '.join(f'{v:.1f}' for v in values):<32} {statistics.median(values):.1f}")


if __name__ == "__main__":
    main()

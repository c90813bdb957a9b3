"""Throughput of the paper's training augmentation (§4), images/s on one CPU core, decoding excluded.

    python benchmarks/bench_transforms.py                  # fused pspnet_lite + step-by-step OpenCV
    python benchmarks/bench_transforms.py --torchvision    # + torchvision.transforms.v2, same run

Input: ADE20K-sized uint8 RGB images (512x683) and masks, crop 473, every step on (scale 0.5-2,
rotation +-10 deg with p=0.5, 5x5 Gaussian blur with p=0.5, mirror, crop/pad, normalisation). Rows:

- ``pspnet_lite`` - :class:`pspnet_lite.data.TrainTransform`: one ``cv2.warpAffine`` into the crop;
- ``opencv steps`` - the authors' order, each step on the whole image (hszhao/semseg util/transform.py);
- ``torchvision v2`` - the same steps with ``torchvision.transforms.v2`` on tv_tensors (with ``--torchvision``).

Per-step rows time each step of the first two on its own. One thread everywhere
(``cv2.setNumThreads(1)``, ``torch.set_num_threads(1)``). "img/s/core" divides by the process CPU time,
so it stays meaningful on a busy machine; "img/s wall" is wall-clock.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from pspnet_lite.data.transforms import MEAN, STD, AugParams, TrainTransform, affine_matrix, to_tensor


def timed(fn, n: int) -> tuple[float, float]:
    """(images/s by CPU time, images/s by wall time) of ``n`` calls of ``fn(i)``."""
    fn(0)
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(n):
        fn(i)
    c, w = time.process_time() - c0, time.perf_counter() - w0
    return n / max(c, 1e-9), n / max(w, 1e-9)


def make_inputs(k: int, h: int, w: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        small = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)  # smooth, photo-like
        mask = cv2.resize(rng.integers(0, 150, (h // 16, w // 16), dtype=np.uint8), (w, h),
                          interpolation=cv2.INTER_NEAREST)
        out.append((img, mask))
    return out


class OpenCVSteps:
    """The authors' step-by-step OpenCV pipeline (reference for speed, not used in training)."""

    def __init__(self, crop=473, seed=0):
        self.crop, self.rng = crop, np.random.default_rng(seed)
        self.mean = [255 * m for m in MEAN]

    def scale(self, img, mask):
        s = self.rng.uniform(0.5, 2.0)
        return (cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR),
                cv2.resize(mask, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST))

    def rotate(self, img, mask, force=False):
        if not force and self.rng.random() >= 0.5:
            return img, mask
        h, w = mask.shape
        m = cv2.getRotationMatrix2D((w / 2, h / 2), self.rng.uniform(-10, 10), 1)
        return (cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=self.mean),
                cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=255))

    def blur(self, img, mask, force=False):
        return (cv2.GaussianBlur(img, (5, 5), 0) if force or self.rng.random() < 0.5 else img), mask

    def flip(self, img, mask):
        return (cv2.flip(img, 1), cv2.flip(mask, 1)) if self.rng.random() < 0.5 else (img, mask)

    def crop_pad(self, img, mask):
        h, w = mask.shape
        ph, pw = max(self.crop - h, 0), max(self.crop - w, 0)
        if ph or pw:
            img = cv2.copyMakeBorder(img, ph // 2, ph - ph // 2, pw // 2, pw - pw // 2, cv2.BORDER_CONSTANT,
                                     value=self.mean)
            mask = cv2.copyMakeBorder(mask, ph // 2, ph - ph // 2, pw // 2, pw - pw // 2, cv2.BORDER_CONSTANT,
                                      value=255)
            h, w = mask.shape
        top, left = self.rng.integers(0, h - self.crop + 1), self.rng.integers(0, w - self.crop + 1)
        return img[top:top + self.crop, left:left + self.crop], mask[top:top + self.crop, left:left + self.crop]

    def __call__(self, img, mask):
        img, mask = self.scale(img, mask)
        img, mask = self.rotate(img, mask)
        img, mask = self.blur(img, mask)
        img, mask = self.flip(img, mask)
        img, mask = self.crop_pad(img, mask)
        return to_tensor(img), torch.from_numpy(mask.astype(np.int64))


def torchvision_v2(crop=473):
    fill = {tv_tensors.Image: [int(255 * m) for m in MEAN], tv_tensors.Mask: 255}
    pipe = v2.Compose([
        v2.ScaleJitter(target_size=(512, 683), scale_range=(0.5, 2.0), antialias=True),
        v2.RandomApply([v2.RandomRotation(10, fill=fill)], p=0.5),
        v2.RandomApply([v2.GaussianBlur(5)], p=0.5),
        v2.RandomHorizontalFlip(),
        v2.RandomCrop(crop, pad_if_needed=True, fill=fill),
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(MEAN, STD),
    ])

    def run(img, mask):
        return pipe(tv_tensors.Image(torch.from_numpy(img).permute(2, 0, 1)), tv_tensors.Mask(torch.from_numpy(mask)))

    return run


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=300, help="images per timing (default 300)")
    ap.add_argument("--size", type=int, nargs=2, default=(512, 683), metavar=("H", "W"))
    ap.add_argument("--crop", type=int, default=473)
    ap.add_argument("--torchvision", action="store_true", help="also time torchvision.transforms.v2")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    h, w = args.size
    data = make_inputs(8, h, w)
    pick = lambda i: data[i % len(data)]  # noqa: E731
    rows = []

    def row(name, fn, n):
        cpu, wall = timed(fn, n)
        rows.append((name, cpu, wall))
        print(f"{name:<44} {cpu:10.1f} {wall:10.1f}   ({1000 / cpu:6.2f} ms/img)", flush=True)

    print(f"{h}x{w} uint8 -> crop {args.crop}, 1 thread; cv2 {cv2.__version__}, torch {torch.__version__}")
    print(f"{'pipeline / step':<44} {'img/s/core':>10} {'img/s wall':>10}")
    t = TrainTransform(crop_size=args.crop, seed=0)
    row("pspnet_lite TrainTransform (full)", lambda i: t(*pick(i)), args.n)
    # per step of the fused pipeline, on a fixed set of draws
    rng = np.random.default_rng(1)
    draws = [t.sample_params(h, w, rng) for _ in range(64)]
    mats = [affine_matrix(h, w, p, t.crop_size)[0] for p in draws]
    crop_img = t.apply(data[0][0], None, AugParams(scale=1.2))[0][: args.crop, : args.crop]
    row("  sample params", lambda i: t.sample_params(h, w, rng), args.n)
    row("  warp image (bilinear, into the crop)", lambda i: cv2.warpAffine(
        pick(i)[0], mats[i % 64], (args.crop, args.crop), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=t.fill), args.n)
    row("  warp mask (nearest, into the crop)", lambda i: cv2.warpAffine(
        pick(i)[1], mats[i % 64], (args.crop, args.crop), flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT, borderValue=255), args.n)
    row("  apply() image+mask (warps, fill, blur p=.5)", lambda i: t.apply(*pick(i), draws[i % 64]), args.n)
    row("  gaussian blur 5x5 on the crop (when drawn)", lambda i: cv2.GaussianBlur(crop_img, (5, 5), 0), args.n)
    row("  to_tensor + normalise", lambda i: to_tensor(crop_img), args.n)

    ref = OpenCVSteps(args.crop)
    row("opencv steps, semseg order (full)", lambda i: ref(*pick(i)), args.n // 2)
    scaled = [ref.scale(*pick(i)) for i in range(8)]
    row("  random scale 0.5-2 (resize image+mask)", lambda i: ref.scale(*pick(i)), args.n // 2)
    row("  rotation on the scaled image (when drawn)", lambda i: ref.rotate(*scaled[i % 8], force=True), args.n // 2)
    row("  gaussian blur on the scaled image (drawn)", lambda i: ref.blur(*scaled[i % 8], force=True), args.n // 2)
    row("  mirror", lambda i: ref.flip(*scaled[i % 8]), args.n // 2)
    row("  pad + crop", lambda i: ref.crop_pad(*scaled[i % 8]), args.n // 2)
    if args.torchvision:
        tv = torchvision_v2(args.crop)
        torch.manual_seed(0)
        row("torchvision.transforms.v2 (full)", lambda i: tv(*pick(i)), max(20, args.n // 15))
    best = max(rows[0][1], 1e-9)
    print(f"\nfused / step-by-step OpenCV: {best / rows[7][1]:.1f}x" +
          (f"; fused / torchvision v2: {best / rows[-1][1]:.1f}x" if args.torchvision else ""))


if __name__ == "__main__":
    main()

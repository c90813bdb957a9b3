"""The paper's data augmentation (§5.1 "Implementation Details") and the evaluation transform.

PSPNet §5.1: "For data augmentation, we adopt random mirror and random resize between 0.5 and 2 for all
datasets, and additionally add random rotation between -10 and 10 degrees, and random Gaussian blur for
ImageNet and PASCAL VOC." The authors' PyTorch code (hszhao/semseg ``util/transform.py``) runs the steps
in this order, each on the whole image: ``RandScale(0.5, 2.0)`` -> ``RandRotate(-10, 10, p=0.5)`` ->
``RandomGaussianBlur(5x5, p=0.5)`` -> ``RandomHorizontalFlip(p=0.5)`` -> ``Crop(473, pad image with the
mean and the label with 255)`` -> ``ToTensor`` -> ``Normalize(ImageNet mean/std)``.

Implementation, chosen by measurement (``benchmarks/bench_transforms.py``, one core, 512x683 input,
473 crop): scale, rotation, mirror, padding and crop are all affine maps of pixel coordinates, so
:class:`TrainTransform` composes them into **one** 2x3 matrix and calls ``cv2.warpAffine`` once per image
(bilinear) and once per mask (nearest), straight into the crop. Pixels that come from outside the
source (rotation corners, padding) take the border value: the mean colour for the image, 255 for the
mask, exactly the semseg fill. Only the crop is then blurred and normalised, so the cost no longer
grows with the random scale (a 2x upscaled 1366x1024 image is never materialised). Measured with
``python benchmarks/bench_transforms.py --torchvision`` (images per CPU-second, one thread, 2-core
shared machine): this pipeline ~445/s, the same steps one after the other in OpenCV on uint8 ~287/s
(rotating and blurring the scaled image dominate), ``torchvision.transforms.v2`` ~27/s.
Differences from semseg, all at borders: the blur runs after the crop, so the mean-colour padding
next to the image edge is blurred with the image (2 pixels wide); the fill is the mean rounded to
uint8 (it normalises to |x| < 0.01, not exactly 0); image edges are replicated for the bilinear
half-pixel (as ``cv2.resize`` does), and image pixels are the fill exactly where the mask got 255
from outside the source.

Randomness: every transform draws from a ``numpy.random.Generator``. Pass ``seed`` for a reproducible
stream, or ``rng=`` per call. Inside a ``torch.utils.data.DataLoader`` worker the transform re-seeds
itself from ``torch.utils.data.get_worker_info().seed`` (which PyTorch derives from the loader's base
seed, new every epoch, plus the worker id) mixed with ``seed``, so workers never repeat each other's
augmentations and a run is reproducible under ``torch.manual_seed``. In the main process with
``seed=None`` it draws from NumPy's global RNG (``np.random.seed`` controls it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

__all__ = [
    "MEAN",
    "STD",
    "Preprocessing",
    "IMAGENET",
    "AugParams",
    "TrainTransform",
    "EvalTransform",
    "affine_matrix",
    "to_tensor",
    "check_pair",
]

MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""ImageNet RGB mean on the 0-1 scale, as in hszhao/semseg (tool/train.py, times 255), open-mmlab/mmsegmentation
(configs/_base_/models/pspnet_r50-d8.py, on the 0-255 scale) and torchvision's ImageNet weights."""
STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""ImageNet RGB std on the 0-1 scale."""


def check_pair(image: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate (and cheaply coerce) a raw (image, mask) pair: uint8 HxWx3 RGB and uint8 HxW.

    Raises ValueError naming the offending shape/dtype and the expected one.
    """
    image = np.asarray(image)
    if image.ndim == 2:  # grayscale -> RGB
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be an HxWx3 RGB array, got shape {image.shape}; convert it to RGB first")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0-255), got dtype {image.dtype}; decode it as 8-bit RGB")
    if mask is None:
        return image, None
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise ValueError(f"mask must be an HxW array of class ids, got shape {mask.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask size {mask.shape} differs from image size {image.shape[:2]}; they must match")
    if mask.dtype != np.uint8:
        if not np.issubdtype(mask.dtype, np.integer):
            raise ValueError(f"mask must hold integer class ids, got dtype {mask.dtype}")
        lo, hi = int(mask.min()), int(mask.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"mask values must lie in 0..255 (255 = ignore), got range [{lo}, {hi}]")
        mask = mask.astype(np.uint8)
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def to_tensor(image: np.ndarray, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> torch.Tensor:
    """uint8 HWC RGB -> float32 CHW tensor normalised with ``mean``/``std`` (0-1 scale)."""
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()  # (3, H, W), 0..255
    m = torch.tensor([255.0 * v for v in mean], dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor([1.0 / (255.0 * v) for v in std], dtype=torch.float32).view(3, 1, 1)
    return x.sub_(m).mul_(s)  # (3, H, W)


CHANNEL_ORDERS = ("rgb", "bgr")


@dataclass(frozen=True)
class Preprocessing:
    """How a network wants its images turned into tensors: channel order, then ``(x - mean) / std`` per channel.

    ``mean`` and ``std`` are in pixel units (0-255) and listed in ``channel_order``. The package's own networks
    and the authors' PyTorch release use :data:`IMAGENET` (RGB, ImageNet mean and std, what :func:`to_tensor`
    does by default); the authors' Caffe release feeds BGR images minus the mean (B 103.939, G 116.779,
    R 123.68) with no std scaling (hszhao/PSPNet ``evaluation/pre_img.m``), which a checkpoint converted by
    :mod:`pspnet_lite.convert` records as ``Preprocessing("bgr", (103.939, 116.779, 123.68), (1, 1, 1))``.
    A checkpoint stores :meth:`to_dict` under ``"preprocessing"``; :func:`pspnet_lite.checkpoint.load_model`
    reads it back, and ``evaluate`` / ``predict`` prepare images with it.
    """

    channel_order: str = "rgb"
    mean: tuple[float, float, float] = tuple(255.0 * v for v in MEAN)
    std: tuple[float, float, float] = tuple(255.0 * v for v in STD)

    def __post_init__(self):
        order = str(self.channel_order).lower()
        if order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be 'rgb' or 'bgr'; got {self.channel_order!r}")
        mean, std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std must be 3 numbers each (0-255 pixel units), std > 0; got mean {self.mean}, "
                             f"std {self.std}")
        object.__setattr__(self, "channel_order", order)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """uint8 HWC **RGB** image (what the package's readers return) -> float32 (3, H, W) network input."""
        if self.channel_order == "bgr":
            image = image[:, :, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()  # (3, H, W), 0..255
        m = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        s = torch.tensor([1.0 / v for v in self.std], dtype=torch.float32).view(3, 1, 1)
        return x.sub_(m).mul_(s)  # (3, H, W)

    def to_dict(self) -> dict:
        """JSON-able record (a checkpoint's ``"preprocessing"``)."""
        return {"channel_order": self.channel_order, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d) -> Preprocessing:
        """The preprocessing of a stored record; None gives :data:`IMAGENET`. Unknown keys are a ValueError."""
        if d is None:
            return IMAGENET
        unknown = sorted(set(d) - {"channel_order", "mean", "std"})
        if unknown:
            raise ValueError(f"unknown preprocessing field(s) {unknown}; fields are channel_order, mean, std")
        return cls(**d)


IMAGENET = Preprocessing()
"""RGB, ImageNet mean and std: :func:`to_tensor`'s default and every checkpoint without a ``"preprocessing"``."""


def _mask_tensor(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(mask.astype(np.int64))  # (H, W) int64


def _pair2(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        value = (int(value), int(value))
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise ValueError(f"{name} must be a positive int or (height, width), got {value}")
    return value  # type: ignore[return-value]


def _range(value, name: str, lo: float, hi: float) -> tuple[float, float] | None:
    if value is None or value is False:
        return None
    a, b = (float(v) for v in value)
    if not (lo <= a <= b <= hi):
        raise ValueError(f"{name} must be (low, high) with {lo} <= low <= high <= {hi}, got {value}; "
                         f"pass None to switch it off")
    return a, b


@dataclass(frozen=True)
class AugParams:
    """One draw of the random augmentation: everything :meth:`TrainTransform.apply` needs.

    ``scale`` resize factor; ``angle`` rotation in degrees (counter-clockwise, 0 = off); ``flip``
    horizontal mirror; ``blur`` Gaussian blur on/off; ``crop_top``/``crop_left`` offset of the crop
    window in the scaled, rotated, padded image.
    """

    scale: float = 1.0
    angle: float = 0.0
    flip: bool = False
    blur: bool = False
    crop_top: int = 0
    crop_left: int = 0


def _scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


def affine_matrix(h: int, w: int, p: AugParams, crop: tuple[int, int] | None) -> tuple[np.ndarray, tuple[int, int]]:
    """Compose scale -> rotate -> mirror -> centre pad -> crop into one forward 2x3 matrix.

    Maps source pixel coordinates (x, y) of an h x w image to output coordinates; returns the matrix
    and the output size (height, width). Pixel centres follow ``cv2.resize`` ((x + 0.5) * s - 0.5).
    The rotation keeps the scaled canvas size (corners fall outside and are filled), like semseg's
    ``RandRotate``; a canvas smaller than the crop is padded symmetrically, like semseg's ``Crop``.
    """
    sh, sw = _scaled_size(h, w, p.scale)
    sx, sy = sw / w, sh / h
    m = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])  # resize
    if p.angle:
        r = cv2.getRotationMatrix2D(((sw - 1) / 2.0, (sh - 1) / 2.0), p.angle, 1.0)
        m = np.vstack([r, [0.0, 0.0, 1.0]]) @ m
    if p.flip:
        m = np.array([[-1.0, 0.0, sw - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ m
    if crop is None:
        return m[:2], (sh, sw)
    ch, cw = crop
    pad_top, pad_left = max(ch - sh, 0) // 2, max(cw - sw, 0) // 2
    shift = np.array([[1.0, 0.0, pad_left - p.crop_left], [0.0, 1.0, pad_top - p.crop_top], [0.0, 0.0, 1.0]])
    return (shift @ m)[:2], (ch, cw)


def _covers(m: np.ndarray, h: int, w: int, oh: int, ow: int) -> bool:
    """True if every output pixel centre maps inside the h x w source (no fill needed)."""
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0, 1], [ow - 1, 0, 1], [0, oh - 1, 1], [ow - 1, oh - 1, 1]], dtype=np.float64)
    src = corners @ inv.T  # (4, 2) source x, y
    eps = 1e-6
    return bool((src[:, 0] >= -0.5 + eps).all() and (src[:, 0] < w - 0.5 - eps).all()
                and (src[:, 1] >= -0.5 + eps).all() and (src[:, 1] < h - 0.5 - eps).all())


def _worker_rng(seed: int | None):
    info = torch.utils.data.get_worker_info()
    if info is None:
        return None, None
    key = (info.id, info.seed)
    entropy = [info.seed] if seed is None else [info.seed, seed]
    return key, np.random.default_rng(entropy)


class TrainTransform:
    """The paper's training augmentation (§5.1), each step switchable for the "DA" ablations.

    Args:
        crop_size: output size, int or (h, w) (473 in the paper for ADE20K/VOC, 713 for Cityscapes);
            None = no crop/pad (output has the augmented size).
        scale: random resize range (0.5, 2.0); None = off.
        rotate: random rotation range in degrees (-10, 10), applied with probability ``rotate_p``;
            None = off.
        blur: random Gaussian blur (``blur_kernel`` x ``blur_kernel``, OpenCV's default sigma) with
            probability ``blur_p``; False = off.
        flip: random horizontal mirror with probability 0.5; False = off.
        mean, std: ImageNet RGB mean/std on the 0-1 scale; the image padding uses ``mean``.
        ignore_index: label written where the mask has no source pixel (padding, rotation corners).
        seed: seed of this transform's generator (see the module docstring for DataLoader workers).

    Call with a uint8 HxWx3 RGB image and a uint8 HxW mask; returns a float32 (3, h, w) normalised
    tensor and an int64 (h, w) tensor. Masks are resampled with nearest neighbour only, so they never
    take a value they did not have, apart from ``ignore_index``.
    """

    def __init__(
        self,
        crop_size: int | Sequence[int] | None = 473,
        scale: Sequence[float] | None = (0.5, 2.0),
        rotate: Sequence[float] | None = (-10.0, 10.0),
        blur: bool = True,
        flip: bool = True,
        mean: Sequence[float] = MEAN,
        std: Sequence[float] = STD,
        ignore_index: int = 255,
        seed: int | None = None,
        rotate_p: float = 0.5,
        blur_p: float = 0.5,
        blur_kernel: int = 5,
    ) -> None:
        self.crop_size = None if crop_size is None else _pair2(crop_size, "crop_size")
        self.scale = _range(scale, "scale", 1e-3, 100.0)
        self.rotate = _range(rotate, "rotate", -180.0, 180.0)
        self.blur, self.flip = bool(blur), bool(flip)
        if not (0.0 <= rotate_p <= 1.0 and 0.0 <= blur_p <= 1.0):
            raise ValueError(f"rotate_p and blur_p must be probabilities, got {rotate_p}, {blur_p}")
        if blur_kernel < 1 or blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be an odd positive int, got {blur_kernel}")
        if not 0 <= ignore_index <= 255:
            raise ValueError(f"ignore_index must be in 0..255 (uint8 masks), got {ignore_index}")
        self.rotate_p, self.blur_p, self.blur_kernel = float(rotate_p), float(blur_p), int(blur_kernel)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.ignore_index = int(ignore_index)
        self.fill = tuple(int(round(255.0 * v)) for v in self.mean)  # uint8 mean colour for padding
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self._rng_key = None

    def __repr__(self) -> str:
        return (f"TrainTransform(crop_size={self.crop_size}, scale={self.scale}, rotate={self.rotate}, "
                f"blur={self.blur}, flip={self.flip}, seed={self.seed})")

    def _generator(self):
        key, rng = _worker_rng(self.seed)
        if key is not None:
            if key != self._rng_key:
                self._rng, self._rng_key = rng, key
            return self._rng
        return self._rng if self._rng is not None else np.random  # NumPy's global RNG

    def sample_params(self, h: int, w: int, rng=None) -> AugParams:
        """Draw one :class:`AugParams` for an h x w image (same draws, in order, whatever is switched off)."""
        rng = self._generator() if rng is None else rng
        u = rng.random(7)  # fixed number of draws keeps streams aligned across switch settings
        scale = 1.0 if self.scale is None else self.scale[0] + (self.scale[1] - self.scale[0]) * u[0]
        angle = 0.0
        if self.rotate is not None and u[1] < self.rotate_p:
            angle = self.rotate[0] + (self.rotate[1] - self.rotate[0]) * u[2]
        blur = self.blur and u[3] < self.blur_p
        flip = self.flip and u[4] < 0.5
        top = left = 0
        if self.crop_size is not None:
            sh, sw = _scaled_size(h, w, scale)
            ch, cw = self.crop_size
            span_h, span_w = max(sh, ch) - ch, max(sw, cw) - cw
            top = min(int(u[5] * (span_h + 1)), span_h)
            left = min(int(u[6] * (span_w + 1)), span_w)
        return AugParams(scale=scale, angle=angle, flip=flip, blur=blur, crop_top=top, crop_left=left)

    def apply(self, image: np.ndarray, mask: np.ndarray | None, p: AugParams) -> tuple[np.ndarray, np.ndarray | None]:
        """Apply a given draw to uint8 arrays; returns uint8 (image HWC, mask HW) before normalisation."""
        h, w = image.shape[:2]
        m, (oh, ow) = affine_matrix(h, w, p, self.crop_size)
        identity = np.allclose(m, [[1, 0, 0], [0, 1, 0]]) and (oh, ow) == (h, w)
        if identity:
            out_img, out_mask = image.copy(), None if mask is None else mask.copy()
        else:
            # A 1-pixel replicated ring keeps bilinear samples within half a pixel of the edge equal to
            # the edge (as cv2.resize does) instead of blending them with the fill colour.
            ring = cv2.copyMakeBorder(image, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
            m_ring = m @ np.array([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]])
            out_img = cv2.warpAffine(ring, m_ring, (ow, oh), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=self.fill)
            if not _covers(m, h, w, oh, ow):  # padding or rotation corners: exactly the mean colour there
                inside = cv2.warpAffine(np.ones((h, w), np.uint8), m, (ow, oh), flags=cv2.INTER_NEAREST,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                out_img[inside == 0] = self.fill
            out_mask = None if mask is None else cv2.warpAffine(
                mask, m, (ow, oh), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                borderValue=self.ignore_index)
        if p.blur:
            k = self.blur_kernel
            out_img = cv2.GaussianBlur(out_img, (k, k), 0)
        return out_img, out_mask

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng=None) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = check_pair(image, mask)
        p = self.sample_params(image.shape[0], image.shape[1], rng)
        img, msk = self.apply(image, mask, p)
        return to_tensor(img, self.mean, self.std), _mask_tensor(msk)  # (3, h, w) float, (h, w) int64


class EvalTransform:
    """Deterministic evaluation transform: optional resize, then ImageNet normalisation (§5.2-5.4).

    ``preprocessing`` (a :class:`Preprocessing`, e.g. a loaded checkpoint's) replaces ``mean`` / ``std`` and may
    reorder the channels: the Caffe release's networks take BGR minus the mean, unscaled.

    Args:
        base_size: None (default) keeps the original resolution, which is what the paper's evaluation
            scores; the multi-scale / sliding-window protocol lives in ``pspnet_lite.inference``. An int
            resizes the image so its ``resize`` side ("long" as in semseg/Caffe, or "short" as in
            mmseg/torchvision) equals ``base_size`` (bilinear).
        resize_mask: also resize the mask (nearest) to the image's new size. Off by default so that
            metrics are computed at the original label resolution.
    """

    def __init__(self, base_size: int | None = None, resize: str = "long", resize_mask: bool = False,
                 mean: Sequence[float] = MEAN, std: Sequence[float] = STD,
                 preprocessing: Preprocessing | None = None) -> None:
        if base_size is not None and int(base_size) < 1:
            raise ValueError(f"base_size must be a positive int or None, got {base_size}")
        if resize not in ("long", "short"):
            raise ValueError(f"resize must be 'long' or 'short', got {resize!r}")
        self.base_size = None if base_size is None else int(base_size)
        self.resize, self.resize_mask = resize, bool(resize_mask)
        self.mean, self.std = tuple(mean), tuple(std)
        self.preprocessing = preprocessing

    def __repr__(self) -> str:
        extra = "" if self.preprocessing is None else f", preprocessing={self.preprocessing}"
        return (f"EvalTransform(base_size={self.base_size}, resize={self.resize!r}, resize_mask={self.resize_mask}"
                f"{extra})")

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """Size (h, w) the image is resized to."""
        if self.base_size is None:
            return h, w
        side = max(h, w) if self.resize == "long" else min(h, w)
        s = self.base_size / side
        return max(1, int(round(h * s))), max(1, int(round(w * s)))

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None, rng=None):
        image, mask = check_pair(image, mask)
        h, w = image.shape[:2]
        oh, ow = self.output_size(h, w)
        if (oh, ow) != (h, w):
            image = cv2.resize(image, (ow, oh), interpolation=cv2.INTER_LINEAR)
            if mask is not None and self.resize_mask:
                mask = cv2.resize(mask, (ow, oh), interpolation=cv2.INTER_NEAREST)
        x = (to_tensor(image, self.mean, self.std) if self.preprocessing is None
             else self.preprocessing(image))  # (3, oh, ow)
        return x, (None if mask is None else _mask_tensor(mask))  # (H, W) int64

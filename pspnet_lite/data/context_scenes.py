"""ContextScenes: the failure modes of paper §3.1 (Fig. 2), built into a small synthetic scene-parsing set.

PSPNet §3.1 inspects the FCN baseline on ADE20K and names three kinds of error that "are partially or
completely related to contextual relationship and global information for different receptive fields";
§3.2 then argues that one global vector "may lose the spatial relation and cause ambiguity", so the
pyramid pools sub-regions too (Table 1: B1236 beats B1). ContextScenes makes each of these a property
of the data, generated procedurally from a seed, so a CPU can show them in minutes:

**Mismatched relationship** ("boat" vs "car", Fig. 2 row 1). Both are drawn by the *same* function
from the *same* random distribution (size, colour, cabin, outline) and lie on the same grass; the
only thing that decides the label is a band of water or road along one image edge, always at least
``context_distance`` (default 0.45 of the image side, 58 px at 128) away from every object. A dilated
FCN trained from scratch has a theoretical receptive field larger than the image but an *empirical*
one far smaller (§3.2, Zhou et al.), so near the object it sees vehicle-on-grass, identical for both
classes: it can at best guess, and it guesses differently in different parts of one object. Any
global pooling (B1 or B1236) sees "there is water in this image" and fixes it.

**Confusion categories** ("building" vs "skyscraper", Fig. 2 row 2). Facades share one texture
generator (wall colour, window grid); the class is a whole-object property: a building is 0.34-0.5
of the image tall, a skyscraper 0.62-0.85 (and a city scene holds one kind only, as a
downtown or a suburb does). The lower part of a tall facade looks exactly like the lower part of a
short one, and its roof lies farther away than the local receptive field, so a local model labels
one facade part "skyscraper" part "building", the paper's example. Pooled context sees the extent.

**Inconspicuous classes** ("pillow" on "bed", "rug" on "floor", Fig. 2 row 3). Small objects whose
texture is the texture of the stuff under them, shifted by ``pillow_contrast`` grey levels (32, about
the size of the floor's own stripes), with a faint seam; the local evidence is weak, and a model also
needs the prior "bedroom scene, head of the bed" that the paper attributes to the global scene category.

**Regional context** (§3.2's case for sub-regions, Table 1 B1 vs B1236). A *split* scene has one half
edged with water (a band along its top and bottom edge) and the other half edged with road; "buoy" and
"traffic cone" are again drawn by one function, and their label is decided by the stuff that edges
*their own half*, at least ``regional_distance`` (0.26 of the side, 33 px at 128) away. The image holds
both water and road, so one global bin averages them into the same vector for every split scene: B1's
pooled vector cannot tell the two halves apart (only its local path can, if it learns to see 33 px away).
The 2x2, 3x3 and 6x6 bins pool each half separately, and their
bilinear upsampling gives each pixel a mix weighted towards its own half (markers keep away from the
midline), which is exactly the missing cue. Split scenes are randomly transposed and either half may
be the water half, so absolute position carries no label information. Measured on split scenes only
(150 iterations, one seed): regional IoU 36% for the FCN, 40% for B1, 74% for B1236.

Plus ordinary stuff (sky, water, road, grass, wall, floor, bed, sidewalk), each with a distinct
colour and texture so that it is easy locally, as stuff mostly is.

Every image is generated from ``numpy.random.SeedSequence([seed, split, index])``, so an image does
not depend on how many are generated, train and val never share one, and the same arguments give the
same bytes on any machine. Generation is vectorised NumPy (about 1-2 ms per 128x128 image); a split
is cached in memory and, with ``cache_dir``, on disk as ``.npz`` keyed by every parameter.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CLASSES",
    "GENERATOR_VERSION",
    "PALETTE",
    "ROLES",
    "ROLE_NAMES",
    "SCENE_TYPES",
    "SceneConfig",
    "ContextScenes",
    "classes_by_role",
    "generate_scene",
    "generate_split",
]

CLASSES: list[str] = [
    "sky", "water", "road", "grass", "wall", "floor", "bed", "sidewalk",  # stuff
    "boat", "car",                                                        # mismatched relationship
    "building", "skyscraper",                                             # confusion categories
    "pillow", "rug",                                                      # inconspicuous classes
    "buoy", "traffic cone",                                               # regional context
]
"""Class names; the index is the train id in the masks."""

ROLE_NAMES: tuple[str, ...] = ("stuff", "mismatched", "confusion", "inconspicuous", "regional")
"""The failure modes of §3.1 (plus "regional" for §3.2's sub-region argument and plain "stuff")."""

ROLES: dict[str, str] = {
    **{c: "stuff" for c in CLASSES[:8]},
    "boat": "mismatched", "car": "mismatched",
    "building": "confusion", "skyscraper": "confusion",
    "pillow": "inconspicuous", "rug": "inconspicuous",
    "buoy": "regional", "traffic cone": "regional",
}
"""Class name -> role (one of :data:`ROLE_NAMES`)."""

PALETTE: np.ndarray = np.array([
    [70, 130, 180], [0, 80, 200], [128, 64, 128], [4, 200, 3], [120, 120, 120], [80, 50, 50],
    [204, 5, 255], [244, 35, 232], [255, 204, 0], [0, 0, 142], [180, 120, 120], [255, 0, 0],
    [0, 255, 255], [255, 153, 0], [255, 255, 255], [0, 255, 0],
], dtype=np.uint8)
"""Display colour per class (uint8, (16, 3)); ADE20K-like where the class exists there."""

SCENE_TYPES: tuple[str, ...] = ("mismatched", "confusion", "inconspicuous", "regional")
"""Scene kinds, one per image; the per-image kind is ``ContextScenes.scene_types``."""

_ID = {c: i for i, c in enumerate(CLASSES)}
_SPLITS = {"train": 0, "val": 1}


def classes_by_role(role: str) -> list[int]:
    """Class ids whose role (§3.1 failure mode) is ``role``; "context" = mismatched + confusion."""
    if role == "context":
        return classes_by_role("mismatched") + classes_by_role("confusion")
    if role not in ROLE_NAMES:
        raise ValueError(f"unknown role {role!r}; use one of {ROLE_NAMES + ('context',)}")
    return [i for i, c in enumerate(CLASSES) if ROLES[c] == role]


@dataclass(frozen=True)
class SceneConfig:
    """Generator knobs. Distances and sizes are fractions of the image side (scale-free).

    scene_probs: probabilities of the scene kinds in :data:`SCENE_TYPES` order.
    context_distance: minimum gap between a boat/car and the water/road band (mismatched relationship).
    regional_distance: minimum gap between a buoy/cone and any band (regional context).
    building_max, skyscraper_min: facade height ranges (confusion categories).
    pillow_contrast: grey-level shift of pillow/rug against the sheet/floor (inconspicuous classes).
    noise: std of the Gaussian pixel noise added to every image (grey levels).
    """

    scene_probs: tuple[float, float, float, float] = (0.3, 0.15, 0.15, 0.4)
    context_distance: float = 0.45
    regional_distance: float = 0.26
    building_max: float = 0.5
    skyscraper_min: float = 0.62
    pillow_contrast: float = 32.0
    noise: float = 6.0

    def __post_init__(self):
        p = np.asarray(self.scene_probs, dtype=float)
        if p.shape != (4,) or (p < 0).any() or p.sum() <= 0:
            raise ValueError(f"scene_probs must be 4 non-negative numbers (one per {SCENE_TYPES}), "
                             f"got {self.scene_probs}")
        if not 0.1 <= self.context_distance <= 0.6:
            raise ValueError(f"context_distance {self.context_distance} must lie in [0.1, 0.6] (fraction of the side)")
        if not 0.05 <= self.regional_distance <= 0.3:
            raise ValueError(f"regional_distance {self.regional_distance} must lie in [0.05, 0.3]")
        if not 0.2 <= self.building_max < self.skyscraper_min <= 0.8:
            raise ValueError(f"need 0.2 <= building_max ({self.building_max}) < skyscraper_min "
                             f"({self.skyscraper_min}) <= 0.8")


# ----------------------------------------------------------------------------------------- textures
class _Canvas:
    """An image (float32 HxWx3) and its mask (uint8 HxW) being painted, with the scene's RNG."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.s, self.rng = size, rng
        self.img = np.zeros((size, size, 3), np.float32)
        self.mask = np.full((size, size), 255, np.uint8)
        self.yy, self.xx = np.mgrid[0:size, 0:size].astype(np.float32)  # (S, S) each
        self.k = size / 128.0  # pixel scale of all periods and sizes

    def px(self, frac: float) -> int:
        return int(round(frac * self.s))

    def paint(self, cls: str | None, region, texture: np.ndarray):
        """Paint ``texture`` (SxSx3 or 3) into ``region`` (boolean SxS, or (y0, y1, x0, x1)); label it."""
        if isinstance(region, tuple):
            y0, y1, x0, x1 = region
            self.img[y0:y1, x0:x1] = texture[y0:y1, x0:x1] if np.ndim(texture) == 3 else texture
            if cls is not None:
                self.mask[y0:y1, x0:x1] = _ID[cls]
        else:
            self.img[region] = texture[region] if np.ndim(texture) == 3 else texture
            if cls is not None:
                self.mask[region] = _ID[cls]

    def stripes(self, period: float, angle: float, phase: float) -> np.ndarray:
        """A (S, S) sine pattern in [-1, 1] (period in 128-px units, angle in radians)."""
        t = self.xx * np.cos(angle) + self.yy * np.sin(angle)
        return np.sin(2 * np.pi * t / (period * self.k) + phase)

    def grain(self, std: float) -> np.ndarray:
        """Per-pixel grey noise (S, S, 1) of standard deviation ``std``."""
        return self.rng.normal(0.0, std, (self.s, self.s, 1)).astype(np.float32)


def _jitter(rng, rgb, amount=8.0) -> np.ndarray:
    return np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3).astype(np.float32)


def _stuff(c: _Canvas, name: str) -> np.ndarray:
    """Full-canvas texture (S, S, 3) of a stuff class; distinct colour + pattern so it is easy locally."""
    r = c.rng
    if name == "sky":
        return _jitter(r, (140, 190, 235)) + (c.yy / c.s)[..., None] * np.float32([25, 20, 10]) + c.grain(2)
    if name == "water":
        wave = c.stripes(r.uniform(6, 9), np.pi / 2 + r.uniform(-0.2, 0.2), r.uniform(0, 2 * np.pi))
        return _jitter(r, (35, 85, 165)) + wave[..., None] * np.float32([10, 18, 25]) + c.grain(4)
    if name == "road":
        return _jitter(r, (95, 95, 100)) + c.grain(14)
    if name == "grass":
        blades = c.stripes(r.uniform(3, 5), r.uniform(1.3, 1.8), r.uniform(0, 2 * np.pi))
        return _jitter(r, (75, 140, 60)) + blades[..., None] * np.float32([6, 12, 4]) + c.grain(6)
    if name == "wall":
        return _jitter(r, (205, 195, 170)) + c.grain(3)
    if name == "floor":
        return _jitter(r, (150, 105, 65)) + c.stripes(7, 0.0, r.uniform(0, 2 * np.pi))[..., None] * 14 + c.grain(4)
    if name == "bed":
        sheet = [(225, 215, 235), (215, 230, 225), (235, 225, 205), (200, 215, 235)][r.integers(4)]
        folds = c.stripes(r.uniform(10, 16), r.uniform(0.5, 1.0), r.uniform(0, 2 * np.pi))
        return _jitter(r, sheet, 6) + folds[..., None] * 5 + c.grain(2)
    if name == "sidewalk":
        g = max(2, int(round(10 * c.k)))
        lines = ((c.xx.astype(int) % g == 0) | (c.yy.astype(int) % g == 0)).astype(np.float32)
        return _jitter(r, (180, 178, 170)) - lines[..., None] * 40 + c.grain(3)
    raise KeyError(name)


def _vehicle(c: _Canvas, cls: str, y0: int, x0: int, h: int, w: int):
    """Boat or car: one drawing, independent of ``cls`` (only the label differs). Mismatched relationship."""
    r = c.rng
    body = [(200, 40, 40), (235, 235, 235), (230, 200, 40), (30, 30, 30), (230, 120, 30)][r.integers(5)]
    c.paint(cls, (y0, y0 + h, x0, x0 + w), _jitter(r, body, 10))
    c.img[y0:y0 + h, [x0, x0 + w - 1]] *= 0.5  # dark outline, left/right
    c.img[[y0, y0 + h - 1], x0:x0 + w] *= 0.5  # top/bottom
    cy1, cx0, cx1 = y0 + max(2, h * 2 // 5), x0 + w // 4, x0 + w - w // 4  # cabin / windows
    c.img[y0 + 1:cy1, cx0:cx1] = _jitter(r, (60, 80, 100), 10)


def _marker(c: _Canvas, cls: str, y0: int, x0: int, n: int):
    """Buoy or traffic cone: one drawing (orange square with a white band), label by region only."""
    r = c.rng
    c.paint(cls, (y0, y0 + n, x0, x0 + n), _jitter(r, (245, 120, 20), 10))
    c.img[y0 + n // 3:y0 + n // 3 + max(1, n // 4), x0:x0 + n] = _jitter(r, (245, 245, 245), 5)


def _facade(c: _Canvas, cls: str, top: int, bottom: int, x0: int, x1: int):
    """Building or skyscraper: one texture (wall colour + window grid); only the height differs."""
    r = c.rng
    wall = [(150, 140, 130), (120, 120, 135), (170, 160, 140), (115, 100, 95)][r.integers(4)]
    tex = np.broadcast_to(_jitter(r, wall), (c.s, c.s, 3)).copy()
    g = max(3, int(round(7 * c.k)))
    wy, wx = (c.yy.astype(int) - top - 2) % g, (c.xx.astype(int) - x0 - 2) % g
    win = (wy < g // 2) & (wx < g // 2)
    tex[win] = _jitter(r, (45, 55, 75), 6)
    c.paint(cls, (top, bottom, x0, x1), tex + c.grain(3))


# ------------------------------------------------------------------------------------------- scenes
def _scene_mismatched(c: _Canvas, cfg: SceneConfig):
    """Grass field; water or road band along one edge; 1-3 look-alike boats/cars far from it."""
    r, s = c.rng, c.s
    c.paint("grass", (0, s, 0, s), _stuff(c, "grass"))
    ctx = ("water", "road")[r.integers(2)]
    cls = "boat" if ctx == "water" else "car"
    band = r.integers(c.px(0.14), c.px(0.2) + 1)
    c.paint(ctx, (0, band, 0, s), _stuff(c, ctx))  # band along the top; the scene is rotated below
    gap = c.px(cfg.context_distance)
    for _ in range(r.integers(2, 4)):
        h, w = r.integers(c.px(0.11), c.px(0.14) + 1), r.integers(c.px(0.2), c.px(0.26) + 1)
        if r.random() < 0.5:
            h, w = w, h
        y_lo = band + gap
        if y_lo > s - h - 1:
            raise ValueError(f"context_distance {cfg.context_distance} leaves no room for objects "
                             f"at image_size {s}; lower it or raise image_size")
        _vehicle(c, cls, r.integers(y_lo, s - h), r.integers(0, s - w + 1), h, w)
    _rotate(c, r.integers(4))


def _scene_confusion(c: _Canvas, cfg: SceneConfig):
    """Sky over sidewalk; 1-3 facades, all short buildings or all tall skyscrapers."""
    r, s = c.rng, c.s
    c.paint("sky", (0, s, 0, s), _stuff(c, "sky"))
    ground = s - r.integers(c.px(0.1), c.px(0.18) + 1)
    c.paint("sidewalk", (ground, s, 0, s), _stuff(c, "sidewalk"))
    tall = r.random() < 0.5
    lo, hi = (cfg.skyscraper_min, 0.85) if tall else (max(0.1, cfg.building_max - 0.16), cfg.building_max)
    for _ in range(r.integers(1, 4)):
        h = min(r.integers(c.px(lo), c.px(hi) + 1), ground - 2)
        w = r.integers(c.px(0.16), c.px(0.3) + 1)
        x0 = r.integers(0, s - w + 1)
        _facade(c, "skyscraper" if tall else "building", ground - h, ground, x0, x0 + w)
    if r.random() < 0.5:
        _flip(c)


def _scene_inconspicuous(c: _Canvas, cfg: SceneConfig):
    """Bedroom: wall over floor, a bed with 1-2 pillows at its head, a rug on the free floor."""
    r, s = c.rng, c.s
    horizon = r.integers(c.px(0.3), c.px(0.42) + 1)
    c.paint("wall", (0, horizon, 0, s), _stuff(c, "wall"))
    floor = _stuff(c, "floor")
    c.paint("floor", (horizon, s, 0, s), floor)
    bw, bh = r.integers(c.px(0.42), c.px(0.52) + 1), r.integers(c.px(0.4), c.px(0.52) + 1)
    by0 = horizon - r.integers(c.px(0.04), c.px(0.1) + 1)
    bx0 = r.integers(c.px(0.03), c.px(0.08) + 1)
    sheet = _stuff(c, "bed")
    c.paint("bed", (by0, by0 + bh, bx0, bx0 + bw), sheet)
    sign = 1.0 if r.random() < 0.5 else -1.0  # pillow lighter or darker than the sheet
    ph, pw = r.integers(c.px(0.1), c.px(0.13) + 1), r.integers(c.px(0.16), c.px(0.2) + 1)
    n_pillows = 1 + int(bw >= 2 * pw + c.px(0.08) and r.random() < 0.6)
    for i in range(n_pillows):
        py0 = by0 + r.integers(c.px(0.02), c.px(0.05) + 1)
        px0 = bx0 + c.px(0.03) + i * (pw + c.px(0.03))
        _soft_object(c, "pillow", sheet, (py0, py0 + ph, px0, px0 + pw), sign * cfg.pillow_contrast)
    rh, rw = r.integers(c.px(0.12), c.px(0.17) + 1), r.integers(c.px(0.2), c.px(0.26) + 1)
    rx0 = r.integers(bx0 + bw + c.px(0.03), s - rw - c.px(0.02) + 1)
    ry0 = r.integers(horizon + c.px(0.06), s - rh - c.px(0.03) + 1)
    _soft_object(c, "rug", floor, (ry0, ry0 + rh, rx0, rx0 + rw), -sign * cfg.pillow_contrast)
    if r.random() < 0.5:
        _flip(c)


def _soft_object(c: _Canvas, cls: str, under: np.ndarray, box, delta: float):
    """An inconspicuous object: the texture under it shifted by ``delta`` grey levels, a faint seam."""
    y0, y1, x0, x1 = box
    tex = under + np.float32(delta) + c.grain(2)
    c.paint(cls, box, tex)
    seam = np.float32(0.6 * delta)
    c.img[y0:y1, [x0, x1 - 1]] += seam
    c.img[[y0, y1 - 1], x0:x1] += seam


def _scene_regional(c: _Canvas, cfg: SceneConfig):
    """Split scene: one half edged with water, the other with road; buoys/cones labelled by their half.

    Each half has a band of its stuff along its top and bottom edge; the markers lie in the middle rows,
    at least ``regional_distance`` from every band, and keep away from the midline, so a marker's own
    half holds the deciding band and the whole image holds both kinds.
    """
    r, s = c.rng, c.s
    c.paint("grass", (0, s, 0, s), _stuff(c, "grass"))
    left, right = ("water", "road") if r.random() < 0.5 else ("road", "water")
    band = r.integers(c.px(0.08), c.px(0.11) + 1)
    half = s // 2
    for (x0, x1), ctx in (((0, half), left), ((half, s), right)):
        tex = _stuff(c, ctx)
        for y0, y1 in ((0, band), (s - band, s)):
            c.paint(ctx, (y0, y1, x0, x1), tex)
    gap, n = c.px(cfg.regional_distance), max(3, c.px(0.1))
    y_lo, y_hi = band + gap, s - band - gap - n  # y0 range of a marker
    if y_lo > y_hi:
        raise ValueError(f"regional_distance {cfg.regional_distance} leaves no room for objects at "
                         f"image_size {s}; lower it")
    x_hi = half - n - c.px(0.12)  # keep the markers off the midline
    for side, ctx in ((0, left), (1, right)):
        cls = "buoy" if ctx == "water" else "traffic cone"
        for _ in range(r.integers(2, 4)):
            x0 = r.integers(c.px(0.03), x_hi + 1)
            _marker(c, cls, r.integers(y_lo, y_hi + 1), x0 if side == 0 else s - n - x0, n)
    if r.random() < 0.5:
        _transpose(c)


def _rotate(c: _Canvas, k: int):
    c.img, c.mask = np.rot90(c.img, k).copy(), np.rot90(c.mask, k).copy()


def _flip(c: _Canvas):
    c.img, c.mask = c.img[:, ::-1].copy(), c.mask[:, ::-1].copy()


def _transpose(c: _Canvas):
    c.img, c.mask = c.img.transpose(1, 0, 2).copy(), c.mask.T.copy()


_SCENES = {"mismatched": _scene_mismatched, "confusion": _scene_confusion,
           "inconspicuous": _scene_inconspicuous, "regional": _scene_regional}


def generate_scene(rng: np.random.Generator, image_size: int = 128, config: SceneConfig | None = None,
                   kind: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """One scene: (image uint8 (S, S, 3) RGB, mask uint8 (S, S) train ids, scene kind).

    ``kind`` forces one of :data:`SCENE_TYPES`; by default it is drawn from ``config.scene_probs``.
    """
    cfg = config or SceneConfig()
    _check_size(image_size)
    if kind is None:
        p = np.asarray(cfg.scene_probs, float)
        kind = SCENE_TYPES[rng.choice(4, p=p / p.sum())]
    elif kind not in _SCENES:
        raise ValueError(f"unknown scene kind {kind!r}; use one of {SCENE_TYPES}")
    c = _Canvas(image_size, rng)
    _SCENES[kind](c, cfg)
    img = c.img + rng.normal(0.0, cfg.noise, c.img.shape).astype(np.float32) if cfg.noise > 0 else c.img
    assert (c.mask != 255).all(), "every pixel of a scene is labelled"
    return np.clip(img, 0, 255).round().astype(np.uint8), c.mask, kind


def _check_size(image_size: int):
    if not isinstance(image_size, (int, np.integer)) or image_size < 64:
        raise ValueError(f"image_size must be an int >= 64 (default 128), got {image_size!r}")


def generate_split(split: str = "train", num_images: int = 1000, image_size: int = 128, seed: int = 0,
                   config: SceneConfig | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate a split: images (N, S, S, 3) uint8, masks (N, S, S) uint8, kinds (N,) scene-kind indices.

    Image ``i`` comes from ``SeedSequence([seed, split_id, i])``: the same regardless of ``num_images``.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    if int(num_images) < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    _check_size(image_size)
    cfg = config or SceneConfig()
    images = np.empty((num_images, image_size, image_size, 3), np.uint8)
    masks = np.empty((num_images, image_size, image_size), np.uint8)
    kinds = np.empty(num_images, np.uint8)
    for i in range(num_images):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), _SPLITS[split], i]))
        images[i], masks[i], kind = generate_scene(rng, image_size, cfg)
        kinds[i] = SCENE_TYPES.index(kind)
    return images, masks, kinds


# ------------------------------------------------------------------------------------------ dataset
_MEMORY_CACHE: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
GENERATOR_VERSION = 3
"""Bumped when the drawing code changes: disk caches and cached training runs are not reused."""


def _cache_key(split, num_images, image_size, seed, cfg: SceneConfig) -> str:
    params = dict(version=GENERATOR_VERSION, split=split, num_images=int(num_images),
                  image_size=int(image_size), seed=int(seed), config=asdict(cfg))
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _load_or_generate(split, num_images, image_size, seed, cfg, cache_dir):
    key = _cache_key(split, num_images, image_size, seed, cfg)
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    path = None if cache_dir is None else Path(cache_dir) / f"context_scenes_{split}_{key}.npz"
    if path is not None and path.is_file():
        with np.load(path) as z:
            data = (z["images"], z["masks"], z["kinds"])
    else:
        data = generate_split(split, num_images, image_size, seed, cfg)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, images=data[0], masks=data[1], kinds=data[2])
            os.replace(tmp, path)  # atomic: a reader never sees half a file
    _MEMORY_CACHE[key] = data
    return data


try:  # the package's Dataset base, without making torch a hard import for the generator alone
    from torch.utils.data import Dataset as _Dataset
except ImportError:  # pragma: no cover
    _Dataset = object


class ContextScenes(_Dataset):
    """The ContextScenes data set (see the module docstring): §3.1's failure modes, measurable on a CPU.

    Args:
        split: "train" or "val" (disjoint random streams).
        num_images: images in the split (default 1000 for train, 200 for val).
        image_size: side S of the square images (>= 64; geometry scales with it).
        seed: generator seed; the same arguments always give the same data.
        transform: ``transform(image uint8 HxWx3, mask uint8 HxW) -> (image, mask)``; default
            :class:`~pspnet_lite.data.transforms.EvalTransform` (normalised float CHW, int64 HW).
        config: :class:`SceneConfig` (difficulty knobs).
        cache_dir: also cache the generated split on disk (``.npz`` keyed by all parameters).

    Attributes: ``classes``, ``palette``, ``num_classes``, ``ignore_index`` (255; never used in the
    masks), ``roles`` (per-class role list), ``images``/``masks`` (raw arrays), ``scene_types``
    (per-image kind names).
    """

    classes = CLASSES
    palette = PALETTE
    num_classes = len(CLASSES)
    ignore_index = 255
    roles = [ROLES[c] for c in CLASSES]

    def __init__(self, split: str = "train", num_images: int | None = None, image_size: int = 128,
                 seed: int = 0, transform=None, config: SceneConfig | None = None, cache_dir=None):
        if num_images is None:
            num_images = 1000 if split == "train" else 200
        self.split, self.image_size, self.seed = split, image_size, seed
        self.config = config or SceneConfig()
        if not isinstance(self.config, SceneConfig):
            raise ValueError(f"config must be a SceneConfig, got {type(config).__name__}")
        self.images, self.masks, kinds = _load_or_generate(split, num_images, image_size, seed,
                                                           self.config, cache_dir)
        self.scene_types = [SCENE_TYPES[k] for k in kinds]
        if transform is None:
            from .transforms import EvalTransform
            transform = EvalTransform()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i], self.masks[i])

    def __repr__(self) -> str:
        return (f"ContextScenes(split={self.split!r}, num_images={len(self)}, image_size={self.image_size}, "
                f"seed={self.seed})")

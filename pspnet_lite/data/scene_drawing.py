"""How ContextScenes images are painted: the generator knobs, textures, objects, the four scene kinds.

Each scene kind builds one failure mode of PSPNet §3.1 (Fig. 2) or §3.2's sub-region case into the
pixels; :mod:`pspnet_lite.data.context_scenes` says why each looks the way it does and wraps the
generator as a data set. Drawing is vectorised NumPy on a float32 canvas, driven by one
``numpy.random.Generator`` per image, so the same seed gives the same bytes on any machine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene_classes import CLASSES, SCENE_TYPES

__all__ = ["GENERATOR_VERSION", "SceneConfig", "generate_scene", "generate_split"]

GENERATOR_VERSION = 3
"""Bumped when the drawing code changes: disk caches and cached training runs are not reused."""

_ID = {c: i for i, c in enumerate(CLASSES)}
_SPLITS = {"train": 0, "val": 1}


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

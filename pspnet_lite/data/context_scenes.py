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

The code is in three modules: :mod:`~pspnet_lite.data.scene_classes` (the classes, their roles and
colours), :mod:`~pspnet_lite.data.scene_drawing` (the generator: textures, objects, the four scene
kinds) and this one (the cached data set); every public name is importable from here.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..labels import IGNORE_INDEX
from .scene_classes import CLASSES, PALETTE, ROLE_NAMES, ROLES, SCENE_TYPES, classes_by_role
from .scene_drawing import GENERATOR_VERSION, SceneConfig, generate_scene, generate_split
from .transforms import EvalTransform

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

_MEMORY_CACHE: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


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


class ContextScenes(Dataset):
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
    ignore_index = IGNORE_INDEX
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
        self.transform = transform if transform is not None else EvalTransform()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i], self.masks[i])

    def __repr__(self) -> str:
        return (f"ContextScenes(split={self.split!r}, num_images={len(self)}, image_size={self.image_size}, "
                f"seed={self.seed})")

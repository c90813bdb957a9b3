"""The ContextScenes label set: 16 classes, the role each plays, their colours and the scene kinds.

A class's role is the failure mode of PSPNet §3.1 (Fig. 2) it is built to expose, plus "regional" for
§3.2's case for sub-region pooling and plain "stuff"; :mod:`pspnet_lite.data.context_scenes` explains
each. This module holds names only; :mod:`pspnet_lite.data.scene_drawing` paints the pixels.
"""
from __future__ import annotations

import numpy as np

__all__ = ["CLASSES", "PALETTE", "ROLES", "ROLE_NAMES", "SCENE_TYPES", "classes_by_role"]

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
    [0, 255, 255], [255, 153, 0], [255, 255, 255], [255, 0, 120],
], dtype=np.uint8)
"""Display colour per class (uint8, (16, 3)); ADE20K-like where the class exists there (traffic cone: pink, far
from grass's green)."""

SCENE_TYPES: tuple[str, ...] = ("mismatched", "confusion", "inconspicuous", "regional")
"""Scene kinds, one per image; the per-image kind is ``ContextScenes.scene_types``."""


def classes_by_role(role: str) -> list[int]:
    """Class ids whose role (§3.1 failure mode) is ``role``; "context" = mismatched + confusion."""
    if role == "context":
        return classes_by_role("mismatched") + classes_by_role("confusion")
    if role not in ROLE_NAMES:
        raise ValueError(f"unknown role {role!r}; use one of {ROLE_NAMES + ('context',)}")
    return [i for i, c in enumerate(CLASSES) if ROLES[c] == role]


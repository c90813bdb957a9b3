"""What the labels of the real data sets mean: class names, colours and label-id tables (ignore =
:data:`pspnet_lite.labels.IGNORE_INDEX`, 255).

- ADE20K SceneParsing: the 150 classes in ``objectInfo150`` order and the CSAIL colour table
  (``color150``); raw label 0 is "other" (mapped to 255 when loading, k -> k-1 for the rest);
- PASCAL VOC 2012: 21 classes and VOC's bit-interleaved colour map (its PNG palette);
- Cityscapes: the 19 evaluated classes, their colours and the labelId -> trainId table, as in
  mcordts/cityscapesScripts, cityscapesscripts/helpers/labels.py.

:func:`default_palette` gives data without an official palette distinct colours, none black.
"""

from __future__ import annotations

import numpy as np

from ...labels import IGNORE_INDEX

# ADE20K SceneParsing 150 classes: the first name of each row of objectInfo150, in its order (row 90 reads
# "television, television receiver, television set, tv, ..."; mmseg's list says "television receiver"), and the
# CSAIL colour table (color150).
ADE20K_CLASSES: list[str] = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table",
    "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table",
    "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island",
    "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike",
    "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal",
    "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase",
    "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
]
ADE20K_PALETTE = np.array([
    [120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50], [4, 200, 3], [120, 120, 80],
    [140, 140, 140], [204, 5, 255], [230, 230, 230], [4, 250, 7], [224, 5, 255], [235, 255, 7],
    [150, 5, 61], [120, 120, 70], [8, 255, 51], [255, 6, 82], [143, 255, 140], [204, 255, 4],
    [255, 51, 7], [204, 70, 3], [0, 102, 200], [61, 230, 250], [255, 6, 51], [11, 102, 255],
    [255, 7, 71], [255, 9, 224], [9, 7, 230], [220, 220, 220], [255, 9, 92], [112, 9, 255],
    [8, 255, 214], [7, 255, 224], [255, 184, 6], [10, 255, 71], [255, 41, 10], [7, 255, 255],
    [224, 255, 8], [102, 8, 255], [255, 61, 6], [255, 194, 7], [255, 122, 8], [0, 255, 20],
    [255, 8, 41], [255, 5, 153], [6, 51, 255], [235, 12, 255], [160, 150, 20], [0, 163, 255],
    [140, 140, 140], [250, 10, 15], [20, 255, 0], [31, 255, 0], [255, 31, 0], [255, 224, 0],
    [153, 255, 0], [0, 0, 255], [255, 71, 0], [0, 235, 255], [0, 173, 255], [31, 0, 255],
    [11, 200, 200], [255, 82, 0], [0, 255, 245], [0, 61, 255], [0, 255, 112], [0, 255, 133],
    [255, 0, 0], [255, 163, 0], [255, 102, 0], [194, 255, 0], [0, 143, 255], [51, 255, 0],
    [0, 82, 255], [0, 255, 41], [0, 255, 173], [10, 0, 255], [173, 255, 0], [0, 255, 153],
    [255, 92, 0], [255, 0, 255], [255, 0, 245], [255, 0, 102], [255, 173, 0], [255, 0, 20],
    [255, 184, 184], [0, 31, 255], [0, 255, 61], [0, 71, 255], [255, 0, 204], [0, 255, 194],
    [0, 255, 82], [0, 10, 255], [0, 112, 255], [51, 0, 255], [0, 194, 255], [0, 122, 255],
    [0, 255, 163], [255, 153, 0], [0, 255, 10], [255, 112, 0], [143, 255, 0], [82, 0, 255],
    [163, 255, 0], [255, 235, 0], [8, 184, 170], [133, 0, 255], [0, 255, 92], [184, 0, 255],
    [255, 0, 31], [0, 184, 255], [0, 214, 255], [255, 0, 112], [92, 255, 0], [0, 224, 255],
    [112, 224, 255], [70, 184, 160], [163, 0, 255], [153, 0, 255], [71, 255, 0], [255, 0, 163],
    [255, 204, 0], [255, 0, 143], [0, 255, 235], [133, 255, 0], [255, 0, 235], [245, 0, 255],
    [255, 0, 122], [255, 245, 0], [10, 190, 212], [214, 255, 0], [0, 204, 255], [20, 0, 255],
    [255, 255, 0], [0, 153, 255], [0, 41, 255], [0, 255, 204], [41, 0, 255], [41, 255, 0],
    [173, 0, 255], [0, 245, 255], [71, 0, 255], [122, 0, 255], [0, 255, 184], [0, 92, 255],
    [184, 255, 0], [0, 133, 255], [255, 214, 0], [25, 194, 194], [102, 255, 0], [92, 0, 255],
], dtype=np.uint8)

VOC_CLASSES: list[str] = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]


def voc_colormap(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (bit-interleaved label -> RGB), (n, 3) uint8; VOC's PNG palette."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


VOC_PALETTE = voc_colormap(21)


def default_palette(num_classes: int) -> np.ndarray:
    """The package's one default palette: (C, 3) uint8 distinct colours for data without their own.

    Class k gets VOC colour k + 1 (:func:`voc_colormap` without its black entry 0), so no class is
    drawn in black, the colour of ignored pixels (255) in :func:`pspnet_lite.book.viz.colorize`; all C
    colours are distinct. Data sets with an official palette (``ADE20K_PALETTE``, ``VOC_PALETTE``,
    ``CITYSCAPES_PALETTE``) keep theirs; VOC's is the PNG palette, background black included.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return voc_colormap(int(num_classes) + 1)[1:]

# Cityscapes: every label of cityscapesscripts/helpers/labels.py (mcordts/cityscapesScripts) with labelId 0..33:
# (name, labelId, trainId, category, hasInstances, ignoreInEval, colour). "license plate" (labelId -1) never
# appears in a label PNG and is left out. The 19 labels with a trainId are the evaluated classes.
CITYSCAPES_LABELS: list[tuple[str, int, int, str, bool, bool, tuple[int, int, int]]] = [
    ("unlabeled", 0, 255, "void", False, True, (0, 0, 0)),
    ("ego vehicle", 1, 255, "void", False, True, (0, 0, 0)),
    ("rectification border", 2, 255, "void", False, True, (0, 0, 0)),
    ("out of roi", 3, 255, "void", False, True, (0, 0, 0)),
    ("static", 4, 255, "void", False, True, (0, 0, 0)),
    ("dynamic", 5, 255, "void", False, True, (111, 74, 0)),
    ("ground", 6, 255, "void", False, True, (81, 0, 81)),
    ("road", 7, 0, "flat", False, False, (128, 64, 128)),
    ("sidewalk", 8, 1, "flat", False, False, (244, 35, 232)),
    ("parking", 9, 255, "flat", False, True, (250, 170, 160)),
    ("rail track", 10, 255, "flat", False, True, (230, 150, 140)),
    ("building", 11, 2, "construction", False, False, (70, 70, 70)),
    ("wall", 12, 3, "construction", False, False, (102, 102, 156)),
    ("fence", 13, 4, "construction", False, False, (190, 153, 153)),
    ("guard rail", 14, 255, "construction", False, True, (180, 165, 180)),
    ("bridge", 15, 255, "construction", False, True, (150, 100, 100)),
    ("tunnel", 16, 255, "construction", False, True, (150, 120, 90)),
    ("pole", 17, 5, "object", False, False, (153, 153, 153)),
    ("polegroup", 18, 255, "object", False, True, (153, 153, 153)),
    ("traffic light", 19, 6, "object", False, False, (250, 170, 30)),
    ("traffic sign", 20, 7, "object", False, False, (220, 220, 0)),
    ("vegetation", 21, 8, "nature", False, False, (107, 142, 35)),
    ("terrain", 22, 9, "nature", False, False, (152, 251, 152)),
    ("sky", 23, 10, "sky", False, False, (70, 130, 180)),
    ("person", 24, 11, "human", True, False, (220, 20, 60)),
    ("rider", 25, 12, "human", True, False, (255, 0, 0)),
    ("car", 26, 13, "vehicle", True, False, (0, 0, 142)),
    ("truck", 27, 14, "vehicle", True, False, (0, 0, 70)),
    ("bus", 28, 15, "vehicle", True, False, (0, 60, 100)),
    ("caravan", 29, 255, "vehicle", True, True, (0, 0, 90)),
    ("trailer", 30, 255, "vehicle", True, True, (0, 0, 110)),
    ("train", 31, 16, "vehicle", True, False, (0, 80, 100)),
    ("motorcycle", 32, 17, "vehicle", True, False, (0, 0, 230)),
    ("bicycle", 33, 18, "vehicle", True, False, (119, 11, 32)),
]
_EVALUATED = sorted((t for t in CITYSCAPES_LABELS if t[2] != IGNORE_INDEX), key=lambda t: t[2])
CITYSCAPES_CLASSES: list[str] = [t[0] for t in _EVALUATED]
CITYSCAPES_PALETTE = np.array([t[6] for t in _EVALUATED], dtype=np.uint8)
CITYSCAPES_LABEL_TO_TRAIN = np.full(256, IGNORE_INDEX, dtype=np.uint8)
"""labelId -> trainId lookup table: the 19 evaluated classes -> 0..18, every other id -> 255."""
CITYSCAPES_TRAIN_TO_LABEL = np.array([t[1] for t in _EVALUATED], dtype=np.uint8)
"""trainId -> labelId (19 entries): what the Cityscapes test server and its evaluation script read."""
for _name, _label_id, _train_id, *_ in _EVALUATED:
    CITYSCAPES_LABEL_TO_TRAIN[_label_id] = _train_id

"""The numbers the PSPNet paper reports (Zhao et al., CVPR 2017), as data.

Chapters put these next to what we measure ("paper" column vs "ours"). Every table here is copied from
the paper (H. Zhao, J. Shi, X. Qi, X. Wang, J. Jia, "Pyramid Scene Parsing Network", CVPR 2017,
arXiv:1612.01105, §5); values are percentages. The ADE20K numbers of Tables 1-4 are on the validation
set, Table 5's challenge scores on the ADE20K (ImageNet scene parsing challenge 2016) test set; VOC 2012
(Table 6) and Cityscapes (Tables 7-8) numbers are on the test servers.

The last block, :data:`RELEASE_CAFFE`, is not from the paper: it holds the scores the authors' Caffe release
(hszhao/PSPNet) lists for its three released models, kept apart from the paper's tables.
"""

from decimal import ROUND_HALF_UP, Decimal

# Table 1 (section 5.2): ResNet50 on ADE20K val, single-scale input. (mIoU, pixel accuracy).
TABLE1_ABLATION = {
    "baseline": (37.23, 78.01),
    "B1+MAX": (39.94, 79.46),
    "B1+AVE": (40.07, 79.52),
    "B1236+MAX": (40.18, 79.45),
    "B1236+AVE": (41.07, 79.97),
    "B1236+MAX+DR": (40.87, 79.61),
    "B1236+AVE+DR": (41.68, 80.04),
}

# Table 2 (section 5.2): auxiliary-loss weight alpha, ResNet50 dilated FCN (no PPM), ADE20K val, single-scale.
# None = without AL.
TABLE2_AUX_WEIGHT = {
    None: (35.82, 77.07),
    0.3: (37.01, 77.87),
    0.4: (37.23, 78.01),
    0.6: (37.09, 77.84),
    0.9: (36.99, 77.87),
}

# Table 3 (section 5.2): depth of the pre-trained ResNet on ADE20K val; "+MS" = multi-scale testing (the
# other rows single-scale, Fig. 5).
TABLE3_DEPTH = {
    50: (41.68, 80.04),
    101: (41.96, 80.64),
    152: (42.62, 80.80),
    269: (43.81, 80.88),
}
TABLE3_DEPTH_MS = {
    50: (42.78, 80.76),
    101: (43.29, 81.39),
    152: (43.51, 81.38),
    269: (44.94, 81.69),
}

# Table 4 (section 5.2): the path from the baseline to the full system on ADE20K val, single-scale except the
# last row (multi-scale).
TABLE4_ADE20K = {
    "FCN": (29.39, 71.32),
    "SegNet": (21.64, 71.00),
    "DilatedNet": (32.31, 73.55),
    "CascadeNet": (34.90, 74.52),
    "ResNet50-Baseline": (34.28, 76.35),
    "ResNet50+DA": (35.82, 77.07),
    "ResNet50+DA+AL": (37.23, 78.01),
    "ResNet50+DA+AL+PSP": (41.68, 80.04),
    "ResNet269+DA+AL+PSP": (43.81, 80.88),
    "ResNet269+DA+AL+PSP+MS": (44.94, 81.69),
}

# Table 5 (section 5.2): ImageNet scene parsing challenge 2016, on the ADE20K *test* set (not val, unlike
# Tables 1-4); score = (mIoU + pixel acc) / 2.
TABLE5_CHALLENGE = {"ensemble": 57.21, "single model": 55.38}

VOC_CLASSES_TABLE6 = (
    "aero", "bike", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "table",
    "dog", "horse", "mbike", "person", "plant", "sheep", "sofa", "train", "tv",
)
# Table 6 (section 5.3): PSPNet-101 per-class IoU on VOC 2012 test, multi-scale; mIoU over the 20
# object classes plus background as the server reports it.
TABLE6_VOC_PER_CLASS = {
    "PSPNet": dict(zip(VOC_CLASSES_TABLE6, (
        91.8, 71.9, 94.7, 71.2, 75.8, 95.2, 89.9, 95.9, 39.3, 90.7, 71.7,
        90.5, 94.5, 88.8, 89.6, 72.8, 89.6, 64.0, 85.1, 76.3))),
    "PSPNet (COCO pre-trained)": dict(zip(VOC_CLASSES_TABLE6, (
        95.8, 72.7, 95.0, 78.9, 84.4, 94.7, 92.0, 95.7, 43.1, 91.0, 80.3,
        91.3, 96.3, 92.3, 90.1, 71.5, 94.4, 66.9, 88.8, 82.0))),
}
TABLE6_VOC_MIOU = {"PSPNet": 82.6, "PSPNet (COCO pre-trained)": 85.4}

# Table 7 (section 5.4): Cityscapes test, PSPNet-101. (IoU cla., iIoU cla., IoU cat., iIoU cat.)
TABLE7_CITYSCAPES = {
    "PSPNet (fine)": (78.4, 56.7, 90.6, 78.6),
    "PSPNet (fine + coarse)": (80.2, 58.1, 90.6, 78.2),
}

CITYSCAPES_CLASSES_TABLE8 = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
# Table 8 (section 5.4): per-class IoU on Cityscapes test.
TABLE8_CITYSCAPES_PER_CLASS = {
    "PSPNet (fine)": dict(zip(CITYSCAPES_CLASSES_TABLE8, (
        98.6, 86.2, 92.9, 50.8, 58.8, 64.0, 75.6, 79.0, 93.4, 72.3, 95.4, 86.5, 71.3, 95.9,
        68.2, 79.5, 73.8, 69.5, 77.2))),
    "PSPNet (fine + coarse)": dict(zip(CITYSCAPES_CLASSES_TABLE8, (
        98.6, 86.6, 93.2, 58.1, 63.0, 64.5, 75.2, 79.2, 93.4, 72.1, 95.1, 86.3, 71.4, 96.0,
        73.5, 90.4, 80.3, 69.9, 76.9))),
}

# Section 5.1 (Implementation Details): the training recipe.
TRAINING = {
    "base_lr": 0.01,
    "lr_power": 0.9,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "batch_size": 16,
    "aux_weight": 0.4,
    "iterations": {"ade20k": 150_000, "voc": 30_000, "cityscapes": 90_000},
    "scale_range": (0.5, 2.0),
    "rotation_degrees": (-10, 10),
}


def score(miou: float, pixel_acc: float) -> float:
    """The ADE20K challenge score of Fig. 5 and Table 5: (mean IoU + pixel accuracy) / 2."""
    return (miou + pixel_acc) / 2


def printed_score(miou: float, pixel_acc: float) -> float:
    """:func:`score` of two printed percentages, rounded half up to two decimals as the paper prints it.

    Fig. 5's text gives 60.86 and 62.35 for ResNet-50 and ResNet-269 (Table 3: 41.68/80.04, 43.81/80.88),
    so (43.81 + 80.88) / 2 = 62.345 is printed 62.35; binary floats would round it down to 62.34.
    """
    exact = (Decimal(str(miou)) + Decimal(str(pixel_acc))) / 2
    return float(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


# ------------------------------------------------------------------------------------------------------------
# The authors' Caffe release (hszhao/PSPNet), not the paper: the "expected scores" its README lists for the three
# released caffemodels (section "4. Results"; "ss" = single scale, "ms" = multi-scale, both with the mirrored image
# averaged, as evaluation/caffe_process.m always does), as (mIoU, pixel accuracy), None where the README gives
# none; "split" is the split the numbers are on (VOC: the test server, 1,456 images). Where the paper prints the
# same model's number they agree (ADE20K 41.68 / 80.04 in Table 4 and 42.78 / 80.76 in Table 3's MS row; VOC 85.4
# in Table 6's COCO pre-trained row, rounded); the paper has no Cityscapes *val* number (Table 7 is the test
# server), and the release no VOC *val* number.
RELEASE_SOURCE = "hszhao/PSPNet README.md, '4. Results' (expected scores of the released caffemodels)"
RELEASE_CAFFE = {
    "pspnet50_ADE20K": {"data": "ADE20K", "split": "val", "images": 2000, "ss": (41.68, 80.04), "ms": (42.78, 80.76)},
    "pspnet101_VOC2012": {"data": "VOC 2012", "split": "test", "images": 1456, "ss": None, "ms": (85.41, None)},
    "pspnet101_cityscapes": {"data": "Cityscapes", "split": "val", "images": 500, "ss": (79.70, 96.38),
                             "ms": (80.91, 96.59)},
}

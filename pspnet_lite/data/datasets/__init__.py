"""The real data sets of the paper's §5 (ADE20K §5.2, PASCAL VOC 2012 §5.3, Cityscapes §5.4) and a
generic image/mask folder, behind one ``torch.utils.data.Dataset`` interface.

Every data set yields ``transform(image, mask)`` where the raw image is uint8 HxWx3 RGB and the raw
mask is uint8 HxW already in train ids (0..C-1, 255 = ignore). Raw label ids are mapped once, here:

- ADE20K (SceneParsing ``ADEChallengeData2016``): 0 ("other") -> 255, k -> k-1, as mmsegmentation's
  ``reduce_zero_label`` (open-mmlab/mmsegmentation, mmseg/datasets/ade.py) and CSAIL's ``segm - 1``
  (CSAILVision/semantic-segmentation-pytorch, mit_semseg/dataset.py) do;
- VOC 2012 + SBD "aug": ``SegmentationClassAug`` index PNGs (21 classes, 255 border) written by
  ``data_scripts/prepare_voc.py``;
- Cityscapes fine: ``*_gtFine_labelTrainIds.png`` written by ``data_scripts/prepare_cityscapes.py``
  (19 classes); if only ``*_labelIds.png`` exist they are mapped on the fly.

Bad input fails early with a ValueError naming the file: an out-of-range label otherwise surfaces as
a CUDA device-side assert much later (CSAILVision/semantic-segmentation-pytorch#181,
meetps/pytorch-semseg#158). A missing root names the data_scripts command that prepares it.

Three modules: :mod:`.classes` (class names, palettes, label-id tables), :mod:`.loaders` (the data set
classes: list, read, map and check files) and :mod:`.check` (the command line
``python -m pspnet_lite.data.datasets ade20k --root DIR``, which validates every file of a split).
"""

from __future__ import annotations

from .check import main
from .classes import (
    ADE20K_CLASSES,
    ADE20K_PALETTE,
    CITYSCAPES_CLASSES,
    CITYSCAPES_LABEL_TO_TRAIN,
    CITYSCAPES_LABELS,
    CITYSCAPES_PALETTE,
    CITYSCAPES_TRAIN_TO_LABEL,
    IGNORE_INDEX,
    VOC_CLASSES,
    VOC_PALETTE,
    default_palette,
    voc_colormap,
)
from .loaders import (
    ADE20K,
    DATASETS,
    Cityscapes,
    SegmentationDataset,
    SegmentationFolder,
    VOCAug,
    default_root,
    read_image,
    read_instances,
    read_mask,
)

__all__ = [
    "SegmentationDataset",
    "ADE20K",
    "VOCAug",
    "Cityscapes",
    "SegmentationFolder",
    "DATASETS",
    "IGNORE_INDEX",
    "ADE20K_CLASSES",
    "ADE20K_PALETTE",
    "VOC_CLASSES",
    "VOC_PALETTE",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_PALETTE",
    "CITYSCAPES_LABEL_TO_TRAIN",
    "CITYSCAPES_TRAIN_TO_LABEL",
    "CITYSCAPES_LABELS",
    "voc_colormap",
    "default_palette",
    "default_root",
    "read_image",
    "read_mask",
    "read_instances",
    "main",
]

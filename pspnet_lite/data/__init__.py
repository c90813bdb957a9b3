"""Data sets (ContextScenes, ADE20K, VOC 2012 aug, Cityscapes, folders) and the paper's augmentation."""

"""pspnet_lite.train.presets: the paper's settings by name (§4), CPU ContextScenes presets, overrides, and which
preset a name (or none) stands for on each data set."""

import pytest

from pspnet_lite.train.config import TrainConfig, check_config
from pspnet_lite.train.presets import (
    DEFAULT_PRESET,
    PAPER_PRESETS,
    PRESETS,
    describe_presets,
    get_preset,
    list_presets,
    resolve_preset,
)


@pytest.mark.parametrize("name,dataset,backbone,crop,iters,classes", [
    ("ade20k-pspnet50", "ade20k", "resnet50", 473, 150_000, 150),
    ("ade20k-pspnet101", "ade20k", "resnet101", 473, 150_000, 150),
    ("ade20k-pspnet269", "ade20k", "resnet269", 473, 150_000, 150),
    ("voc-pspnet101", "voc", "resnet101", 473, 30_000, 21),
    ("cityscapes-pspnet101", "cityscapes", "resnet101", 713, 90_000, 19),
])
def test_paper_presets(name, dataset, backbone, crop, iters, classes):
    cfg = get_preset(name)
    assert (cfg.dataset, cfg.model.backbone, cfg.crop_size, cfg.iters, cfg.model.num_classes) == (
        dataset, backbone, crop, iters, classes)
    assert (cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.poly_power) == (16, 0.01, 0.9, 1e-4, 0.9)
    assert (cfg.head_lr_mult, cfg.alpha, cfg.augment, cfg.scale_min, cfg.scale_max, cfg.flip) == (
        10.0, 0.4, True, 0.5, 2.0, True)
    # §5.1: rotation and Gaussian blur "for ImageNet [scene parsing] and PASCAL VOC", not for Cityscapes
    assert (cfg.rotate, cfg.blur) == ((0.0, False) if dataset == "cityscapes" else (10.0, True))
    assert cfg.ckpt_every == 1000  # a killed long run resumes from its last thousand
    assert cfg.model.bins == (1, 2, 3, 6) and cfg.model.aux
    assert cfg.preset == name and cfg.out_dir == f"runs/{name}"
    check_config(cfg, world=8)  # 16 over 8 GPUs


def test_cpu_presets():
    lite = get_preset("scenes-lite")
    assert (lite.dataset, lite.model.backbone, lite.image_size, lite.crop_size, lite.batch_size) == (
        "context_scenes", "lite", 128, 128, 16)
    assert 200 <= lite.iters <= 500
    assert get_preset("scenes-lite-fcn").model.bins == ()
    tiny = get_preset("scenes-tiny")
    assert (tiny.image_size, tiny.crop_size, tiny.batch_size, tiny.model.backbone) == (64, 64, 4, "lite")
    assert set(list_presets()) == set(PRESETS)
    for name in PRESETS:  # every preset is a valid config on one process
        check_config(get_preset(name))
        assert name in describe_presets()


def test_overrides_python_and_errors():
    cfg = get_preset("scenes-lite", iters=50, bins=(1, 2))
    assert cfg.iters == 50 and cfg.model.bins == (1, 2)
    assert cfg.replace(lr=0.02).lr == 0.02
    assert get_preset("scenes-lite", out_dir="x").out_dir == "x"
    with pytest.raises(ValueError, match="unknown preset 'ade20k-pspnet5'.*did you mean 'ade20k-pspnet50'"):
        get_preset("ade20k-pspnet5")
    with pytest.raises(ValueError, match="unknown preset 'nosuch'; choose one of .*scenes-lite"):
        get_preset("nosuch")
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        get_preset("scenes-lite", itres=3)


def test_moving_a_preset_to_another_data_set_drops_its_own_data_settings():
    """The issue's bug: the default preset's ContextScenes-only image_size leaked into an ADE20K run."""
    cfg = get_preset("scenes-lite", dataset="ade20k", data_root="/data/ade")
    assert cfg.image_size is None and cfg.model.num_classes is None  # ADE20K's own 150 classes
    assert cfg.model.backbone == "lite" and cfg.crop_size == 128  # the rest of the preset stays
    check_config(cfg)
    voc = get_preset("ade20k-pspnet50", dataset="voc")
    assert voc.model.num_classes is None and voc.model.backbone == "resnet50"
    assert get_preset("ade20k-pspnet50", dataset="ade20k").model.num_classes == 150  # same data set: kept
    assert get_preset("scenes-lite", dataset="context_scenes").image_size == 128
    assert get_preset("scenes-lite", dataset="ade20k", image_size=None).image_size is None


def test_resolve_preset():
    assert DEFAULT_PRESET == "scenes-lite"
    assert resolve_preset(None) == resolve_preset(None, "context_scenes") == DEFAULT_PRESET
    assert PAPER_PRESETS == {"ade20k": "ade20k-pspnet50", "voc": "voc-pspnet101",
                             "cityscapes": "cityscapes-pspnet101"}
    for dataset, name in PAPER_PRESETS.items():
        assert resolve_preset(None, dataset) == resolve_preset("paper", dataset) == name
    assert resolve_preset("paper") == resolve_preset("paper", "context_scenes") == "ade20k-pspnet50"
    assert resolve_preset("scenes-tiny", "ade20k") == "scenes-tiny"  # a name is itself
    assert isinstance(get_preset(resolve_preset(None, "voc")), TrainConfig)

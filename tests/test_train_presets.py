"""Presets: the paper's settings by name (§4), CPU ContextScenes presets, overrides from Python and the CLI."""

import dataclasses

import pytest

from pspnet_lite import train as T
from pspnet_lite.presets import PRESETS, get_preset, list_presets


@pytest.mark.parametrize("name,dataset,backbone,crop,iters,classes", [
    ("ade20k-pspnet50", "ade20k", "resnet50", 473, 150_000, 150),
    ("ade20k-pspnet101", "ade20k", "resnet101", 473, 150_000, 150),
    ("ade20k-pspnet269", "ade20k", "resnet269", 473, 150_000, 150),
    ("voc-pspnet101", "voc", "resnet101", 473, 30_000, 21),
    ("cityscapes-pspnet101", "cityscapes", "resnet101", 713, 90_000, 19),
])
def test_paper_presets(name, dataset, backbone, crop, iters, classes):
    cfg = get_preset(name)
    assert (cfg.dataset, cfg.backbone, cfg.crop_size, cfg.iters, cfg.num_classes) == (dataset, backbone, crop, iters,
                                                                                      classes)
    assert (cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.poly_power) == (16, 0.01, 0.9, 1e-4, 0.9)
    assert (cfg.head_lr_mult, cfg.alpha, cfg.augment, cfg.scale_min, cfg.scale_max, cfg.rotate) == (
        10.0, 0.4, True, 0.5, 2.0, 10.0)
    assert cfg.preset == name and cfg.out_dir == f"runs/{name}"
    T.check_config(cfg, world=8)  # 16 over 8 GPUs


def test_cpu_presets():
    lite = get_preset("scenes-lite")
    assert (lite.dataset, lite.backbone, lite.image_size, lite.crop_size, lite.batch_size) == (
        "context_scenes", "lite", 128, 128, 16)
    assert 200 <= lite.iters <= 500
    assert get_preset("scenes-lite-fcn").bins == ()
    assert set(list_presets()) == set(PRESETS)


def test_overrides_python_and_errors():
    cfg = get_preset("scenes-lite", iters=50, bins=(1, 2))
    assert cfg.iters == 50 and cfg.bins == (1, 2)
    assert dataclasses.replace(cfg, lr=0.02).lr == 0.02
    with pytest.raises(ValueError, match="unknown preset 'ade20k-pspnet5'.*did you mean 'ade20k-pspnet50'"):
        get_preset("ade20k-pspnet5")
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        get_preset("scenes-lite", itres=3)


def test_cli_precedence_and_parsing():
    p = T.get_args_parser()
    args = p.parse_args(["--preset", "scenes-lite", "--iters", "40", "--lr", "0.05", "--no-augment", "--amp", "bf16",
                         "--set", "bins=[1,3]", "--set", "micro_batch=4", "--set", "iters=30", "--data-root", "123"])
    cfg = T.config_from_args(args)
    assert cfg.iters == 30 and cfg.lr == 0.05 and cfg.augment is False and cfg.amp == "bf16"
    assert cfg.bins == (1, 3) and cfg.micro_batch == 4 and cfg.data_root == "123"
    assert cfg.backbone == "lite"  # from the preset
    assert T.parse_value("bins", "1,2,3,6") == (1, 2, 3, 6)
    assert T.parse_value("val_split", "none") is None
    assert T.parse_value("weight_decay", "0") == 0.0 and isinstance(T.parse_value("weight_decay", "0"), float)
    with pytest.raises(ValueError, match="must be true/false"):
        T.parse_value("flip", "maybe")
    with pytest.raises(SystemExit):
        p.parse_args(["--amp", "fp8"])

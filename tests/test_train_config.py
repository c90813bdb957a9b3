"""pspnet_lite.train.config: TrainConfig holds the architecture (PSPNetConfig) as ``model``, is changed by flat field
names, stored nested (or flat, as before), and checked before any work starts."""
import dataclasses
import json

import pytest
from conftest import ADDED_SINCE_OLD_FORMAT, OLD_SCENES_TINY_CONFIG

from pspnet_lite.model import PSPNetConfig
from pspnet_lite.train.config import (
    FIELDS,
    MODEL_FIELDS,
    RUN_FIELDS,
    TrainConfig,
    accum_steps,
    apply_overrides,
    check_config,
    from_scratch_message,
    parse_value,
    split_fields,
)
from pspnet_lite.train.presets import get_preset


def test_fields_are_the_run_fields_and_the_model_fields():
    assert set(MODEL_FIELDS) == {f.name for f in dataclasses.fields(PSPNetConfig)}
    assert set(RUN_FIELDS) == {f.name for f in dataclasses.fields(TrainConfig)} - {"model"}
    assert not set(RUN_FIELDS) & set(MODEL_FIELDS) and set(FIELDS) == set(RUN_FIELDS) | set(MODEL_FIELDS)
    assert all(f.metadata.get("help") for f in FIELDS.values())


def test_defaults_are_the_papers_recipe():
    cfg = TrainConfig()
    assert (cfg.batch_size, cfg.lr, cfg.head_lr_mult, cfg.momentum, cfg.weight_decay, cfg.poly_power, cfg.alpha) == (
        16, 0.01, 10.0, 0.9, 1e-4, 0.9, 0.4)
    assert cfg.model == PSPNetConfig(num_classes=None)  # the data set's classes, the authors' PSPNet-50
    assert cfg.model.bins == (1, 2, 3, 6) and cfg.model.backbone == "resnet50"


def test_replace_routes_flat_names_to_the_run_or_the_model():
    cfg = TrainConfig().replace(iters=100, bins=[1], aux=False, lr=0.02, backbone="lite")
    assert (cfg.iters, cfg.lr) == (100, 0.02)
    assert (cfg.model.bins, cfg.model.aux, cfg.model.backbone) == ((1,), False, "lite")
    assert TrainConfig().model.bins == (1, 2, 3, 6)  # frozen: replace makes copies
    arch = PSPNetConfig(num_classes=5, backbone="lite")
    assert TrainConfig().replace(model=arch, bins=(2,)).model == dataclasses.replace(arch, bins=(2,))
    with pytest.raises(ValueError, match="unknown TrainConfig field 'lrr'; did you mean lr"):
        TrainConfig().replace(lrr=0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.iters = 3
    with pytest.raises(TypeError):  # dataclasses.replace knows no model fields: use cfg.replace
        dataclasses.replace(cfg, bins=(1,))
    assert split_fields({"iters": 1, "bins": (1,)}) == ({"iters": 1}, {"bins": (1,)})


def test_to_dict_is_nested_and_flat_dict_is_flat():
    cfg = get_preset("scenes-lite", bins=(1, 2), layers=(1, 1, 2, 1))
    d = cfg.to_dict()
    assert d["model"]["bins"] == [1, 2] and d["model"]["layers"] == [1, 1, 2, 1] and "bins" not in d
    assert json.loads(json.dumps(d)) == d
    flat = cfg.flat_dict()
    assert "model" not in flat and flat["bins"] == [1, 2] and flat["iters"] == cfg.iters
    assert set(flat) == set(FIELDS)
    assert TrainConfig.from_dict(d) == cfg == TrainConfig.from_dict(flat)
    assert TrainConfig.from_dict(json.loads(json.dumps(d))) == cfg


def test_from_dict_reads_the_old_flat_layout():
    cfg = TrainConfig.from_dict(OLD_SCENES_TINY_CONFIG)
    assert cfg == get_preset("scenes-tiny")
    assert (cfg.model.backbone, cfg.model.bins, cfg.model.num_classes) == ("lite", (1, 2, 3, 6), None)
    assert {k: v for k, v in cfg.flat_dict().items() if k not in ADDED_SINCE_OLD_FORMAT} == OLD_SCENES_TINY_CONFIG
    partial = TrainConfig.from_dict({"iters": 7, "backbone": "lite"})  # missing fields: the defaults
    assert partial == TrainConfig().replace(iters=7, backbone="lite")


def test_from_dict_errors():
    with pytest.raises(ValueError, match="unknown TrainConfig field 'itres'"):
        TrainConfig.from_dict({"itres": 3})
    with pytest.raises(ValueError, match=r"unknown PSPNetConfig field\(s\) \['bogus'\]"):
        TrainConfig.from_dict({"model": {"bogus": 1}})
    with pytest.raises(ValueError, match="'model' must be a dict"):
        TrainConfig.from_dict({"model": "lite"})


def test_parse_value_and_apply_overrides():
    assert parse_value("bins", "1,2,3,6") == (1, 2, 3, 6) and parse_value("bins", "[]") == ()
    assert parse_value("val_split", "none") is None
    assert parse_value("weight_decay", "0") == 0.0 and isinstance(parse_value("weight_decay", "0"), float)
    with pytest.raises(ValueError, match="flip must be true or false"):
        parse_value("flip", "maybe")
    with pytest.raises(ValueError, match="unknown TrainConfig field 'nosuchfield'"):
        parse_value("nosuchfield", "1")
    cfg = apply_overrides(TrainConfig(), ["iters=5", "bins=[1, 3]", "micro-batch=4", "aux=false", "lr=0.5"])
    assert (cfg.iters, cfg.micro_batch, cfg.lr, cfg.model.bins, cfg.model.aux) == (5, 4, 0.5, (1, 3), False)
    assert apply_overrides(TrainConfig(), {"iters": 9, "bins": (2,)}) == TrainConfig().replace(iters=9, bins=(2,))
    with pytest.raises(ValueError, match="unknown TrainConfig field 'lrr'"):
        apply_overrides(TrainConfig(), ["lrr=0.1"])
    with pytest.raises(ValueError, match=r"--set expects key=value, got 'lr'"):
        apply_overrides(TrainConfig(), ["lr"])
    with pytest.raises(ValueError, match="lr must be a number; got 'abc'"):
        apply_overrides(TrainConfig(), ["lr=abc"])


def test_check_config_rejects_bad_settings():
    check_config(TrainConfig(), world=8)  # 16 over 8 processes
    with pytest.raises(ValueError, match="not divisible by the world size 3"):
        check_config(TrainConfig(batch_size=16), world=3)
    with pytest.raises(ValueError, match="micro_batch 3 must divide"):
        check_config(TrainConfig(batch_size=16, micro_batch=3), world=2)
    bad = [(dict(iters=0), "iters must be a positive integer"), (dict(batch_size=0), "batch_size"),
           (dict(amp="fp8"), "amp must be one of"), (dict(freeze_bn="some"), "freeze_bn must be one of"),
           (dict(lr=0.0), "lr and head_lr_mult must be positive"), (dict(stop_at=0), "stop_at must be in"),
           (dict(log_every=0), "log_every"), (dict(scale_min=2.0, scale_max=1.0), "scale_min <= scale_max"),
           (dict(dataset="ade20k", image_size=128), "image_size=128 only applies to dataset='context_scenes'"),
           (dict(dataset="voc", data_seed=3), r"data_seed=3 only applies to dataset.*--data-seed none")]
    for changes, message in bad:
        with pytest.raises(ValueError, match=message):
            check_config(TrainConfig(**changes))


def test_accum_steps():
    assert accum_steps(TrainConfig(batch_size=16), 1) == (16, 1)
    assert accum_steps(TrainConfig(batch_size=16, micro_batch=2), 2) == (2, 4)
    assert accum_steps(TrainConfig(batch_size=16), 8) == (2, 1)


def test_from_scratch_message():
    assert from_scratch_message(get_preset("scenes-tiny")) is None  # ContextScenes trains from scratch by design
    assert from_scratch_message(get_preset("ade20k-pspnet50", pretrained="resnet50_v2.pth")) is None
    msg = from_scratch_message(get_preset("ade20k-pspnet50"))
    assert "resnet50" in msg and "from random weights" in msg and "resnet50_v2.pth" in msg
    assert "semseg" in msg and "last.pt" in msg and "--pretrained-kind" in msg

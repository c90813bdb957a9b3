"""The bare ``python -m pspnet_lite.train`` default, stage depths from the config, and the final summary."""
import math

from pspnet_lite import train as T
from pspnet_lite.data.context_scenes import CLASSES, ROLES


def test_bare_cli_runs_the_cpu_demo_preset():
    cfg = T.config_from_args(T.get_args_parser().parse_args([]))
    assert cfg.preset == T.DEFAULT_PRESET == "scenes-lite" and cfg.backbone == "lite"


def test_layers_reach_the_model():
    cfg = T.config_from_args(T.get_args_parser().parse_args(["--layers", "1,1,2,1"]))
    assert cfg.layers == (1, 1, 2, 1)
    model = T.build_model(cfg, num_classes=5)
    assert [len(getattr(model.backbone, f"layer{i}")) for i in range(1, 5)] == [1, 1, 2, 1]


def test_summary_lists_every_class_and_each_failure_mode():
    iou = [0.5] * len(CLASSES)
    iou[0] = math.nan
    text = T.summarize({"iou": iou, "miou": 0.5, "pixel_acc": 0.9}, list(CLASSES), "context_scenes")
    for name in CLASSES:
        assert name in text
    for role in set(ROLES.values()):
        assert f"mean {role}" in text
    assert "mIoU" in text and "90.00" in text


def test_summary_accepts_json_cleaned_metrics():
    # validation records store NaN (classes absent from a small val set) as None
    iou = [0.25] * len(CLASSES)
    iou[1] = None
    text = T.summarize({"iou": iou, "miou": 0.25, "pixel_acc": None}, list(CLASSES), "context_scenes")
    assert f"{CLASSES[1]:<16}" in text and "25.00" in text
    assert text.splitlines()[-1].split()[-1] == "-"


def test_none_is_a_value_for_non_optional_string_fields():
    assert T.parse_value("freeze_bn", "none") == "none"
    assert T.parse_value("pretrained", "none") is None
    cfg = T.config_from_args(T.get_args_parser().parse_args(["--freeze-bn", "none", "--set", "freeze_bn=none"]))
    assert cfg.freeze_bn == "none"

"""pspnet_lite.train.cli (``python -m pspnet_lite.train``): the bare default, flag precedence, the run it writes,
the final summary, and every bad value ending in one ``error:`` line and a non-zero exit, never a traceback."""
import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import ENV

from pspnet_lite.data.context_scenes import CLASSES, ROLES
from pspnet_lite.train import cli
from pspnet_lite.train.config import check_config
from pspnet_lite.train.presets import DEFAULT_PRESET, get_preset
from pspnet_lite.train.runlog import RunResult
from pspnet_lite.train.trainer import build_model


def parse(*argv):
    return cli.config_from_args(cli.get_args_parser().parse_args(list(argv)))


def test_bare_cli_runs_the_cpu_demo_preset():
    cfg = parse()
    assert cfg.preset == DEFAULT_PRESET == "scenes-lite" and cfg.model.backbone == "lite"
    assert cfg == get_preset("scenes-lite")


def test_a_real_data_set_without_a_preset_gets_its_paper_preset():
    cfg = parse("--dataset", "ade20k", "--data-root", "/data/ade")
    assert cfg.preset == "ade20k-pspnet50" and cfg.image_size is None and cfg.model.num_classes == 150
    assert parse("--dataset", "voc").preset == "voc-pspnet101"
    assert parse("--preset", "paper", "--dataset", "cityscapes").preset == "cityscapes-pspnet101"
    other = parse("--preset", "scenes-lite", "--dataset", "ade20k")  # a CPU preset moved to ADE20K
    assert other.image_size is None and other.model.num_classes is None
    check_config(other)


def test_layers_reach_the_model():
    cfg = parse("--layers", "1,1,2,1")
    assert cfg.model.layers == (1, 1, 2, 1)
    model = build_model(cfg, num_classes=5)
    assert [len(getattr(model.backbone, f"layer{i}")) for i in range(1, 5)] == [1, 1, 2, 1]


def test_cli_precedence_and_parsing():
    cfg = parse("--preset", "scenes-lite", "--iters", "40", "--lr", "0.05", "--no-augment", "--amp", "bf16",
                "--set", "bins=[1,3]", "--set", "micro_batch=4", "--set", "iters=30", "--data-root", "123",
                "--no-aux", "--pooling", "max")
    assert cfg.iters == 30 and cfg.lr == 0.05 and cfg.augment is False and cfg.amp == "bf16"
    assert cfg.model.bins == (1, 3) and cfg.micro_batch == 4 and cfg.data_root == "123"
    assert (cfg.model.aux, cfg.model.pooling) == (False, "max")
    assert cfg.model.backbone == "lite"  # from the preset
    assert parse("--bins", "[]").model.bins == ()  # the dilated-FCN baseline from the command line


def test_config_file_and_preset_flags(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(get_preset("scenes-tiny", iters=11).to_dict()))
    cfg = parse("--config", str(path), "--lr", "0.5")
    assert cfg.iters == 11 and cfg.lr == 0.5 and cfg.preset == "scenes-tiny"
    flat = tmp_path / "flat.json"  # a config.json written before the architecture was nested
    flat.write_text(json.dumps(get_preset("scenes-tiny", iters=11).flat_dict()))
    assert parse("--config", str(flat)) == parse("--config", str(path))
    with pytest.raises(ValueError, match="not both"):
        parse("--config", str(path), "--preset", "scenes-lite")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        parse("--config", str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse("--config", str(tmp_path / "bad.json"))


def test_none_is_a_value_for_non_optional_string_fields():
    cfg = parse("--freeze-bn", "none", "--set", "freeze_bn=none", "--pretrained", "none")
    assert cfg.freeze_bn == "none" and cfg.pretrained is None


def _result(iou, miou, pixel_acc):
    return RunResult(config=get_preset("scenes-tiny"), final={"iou": iou, "miou": miou, "pixel_acc": pixel_acc},
                     class_names=list(CLASSES))


def test_summary_lists_every_class_and_each_failure_mode():
    iou = [0.5] * len(CLASSES)
    iou[0] = math.nan
    text = cli.summarize(_result(iou, 0.5, 0.9))
    for name in CLASSES:
        assert name in text
    for role in set(ROLES.values()):
        assert f"mean {role}" in text
    assert "IoU" in text and "90.00" in text


def test_summary_accepts_json_cleaned_metrics():
    # validation records store NaN (classes absent from a small val set) as None
    iou = [0.25] * len(CLASSES)
    iou[1] = None
    text = cli.summarize(_result(iou, 0.25, None))
    row = next(line for line in text.splitlines() if line.startswith(CLASSES[1]))
    assert row.split()[-2:] == ["-", "-"] and "25.00" in text
    assert text.splitlines()[-1].split()[-1] == "-"
    plain = RunResult(config=get_preset("scenes-tiny", dataset="ade20k"), final={"iou": [0.5, 0.5], "miou": 0.5})
    assert "mean" in cli.summarize(plain) and "role" not in cli.summarize(plain)  # roles: ContextScenes only


def run_train(*argv):
    proc = subprocess.run([sys.executable, "-m", "pspnet_lite.train", *argv], capture_output=True, text=True,
                          env=ENV, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_train_writes_logs_config_checkpoints(tiny_run):
    run, stdout = tiny_run
    assert "done: 3 iterations" in stdout and "val mIoU" in stdout
    assert CLASSES[0] in stdout  # the per-class summary
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in lines if r["kind"] == "train"] == [1, 2, 3]
    assert [r["kind"] for r in lines][-1] == "val"
    config = json.loads((run / "config.json").read_text())
    assert config["iters"] == 3 and config["model"]["backbone"] == "lite"
    ck = json.loads(json.dumps(torch.load(run / "last.pt", weights_only=True)["config"]))
    assert ck == config and (run / "best.pt").is_file()


def test_train_result_file(tmp_path):
    out = tmp_path / "run"
    rc, stdout, stderr = run_train("--preset", "scenes-tiny", "--iters", "1", "--batch-size", "2", "--set",
                                   "num_train_images=4", "--num-val-images", "2", "--out-dir", str(out),
                                   "--result", str(tmp_path / "result.json"), "--no-progress")
    assert rc == 0, stderr
    result = RunResult.from_dict(json.loads((tmp_path / "result.json").read_text()))
    assert result.iterations == 1 and result.config.iters == 1 and result.checkpoints["last"] == str(out / "last.pt")
    assert f"val mIoU {100 * result.miou:.2f}" in stdout


def test_train_print_config_and_list_presets():
    rc, out, _ = run_train("--preset", "ade20k-pspnet50", "--print-config")
    cfg = json.loads(out)
    assert rc == 0 and cfg["crop_size"] == 473 and cfg["iters"] == 150000 and cfg["model"]["backbone"] == "resnet50"
    rc, out, _ = run_train("--list-presets")
    assert rc == 0 and "cityscapes-pspnet101" in out and "scenes-tiny" in out


def test_print_config_validates_like_training(capsys):
    args = cli.get_args_parser().parse_args(["--preset", "scenes-tiny", "--micro-batch", "3", "--print-config"])
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: micro_batch 3 must divide the per-process batch 4")
    with pytest.raises(ValueError, match="micro_batch 3"):  # the same check the trainer runs first
        check_config(cli.config_from_args(args))
    ok = cli.get_args_parser().parse_args(["--preset", "scenes-tiny", "--micro-batch", "2", "--print-config"])
    assert cli.main(ok) is None and json.loads(capsys.readouterr().out)["micro_batch"] == 2


@pytest.mark.parametrize("argv, message", [
    (["--set", "lr=abc"], "error: lr must be a number; got 'abc' (e.g. --lr 0.01)"),
    (["--iters", "abc"], "error: iters must be an integer; got 'abc' (e.g. --iters 100)"),
    (["--bins", "x"], "error: cannot read bins 'x' as ints; write it as 1,2,3"),
    (["--layers", "1,a"], "error: cannot read layers '1,a' as ints"),
    (["--set", "nosuchfield=1"], "error: unknown TrainConfig field 'nosuchfield'"),
    (["--set", "lrr=0.1"], "error: unknown TrainConfig field 'lrr'; did you mean lr"),
    (["--set", "lr"], "error: --set expects key=value, got 'lr' (e.g. --set iters=1000)"),
    (["--preset", "nosuch"], "error: unknown preset 'nosuch'; choose one of"),
    (["--preset", "ade20k-pspnet5"], "error: unknown preset 'ade20k-pspnet5' (did you mean 'ade20k-pspnet50'?)"),
    (["--pooling", "sum"], "error: pooling must be one of avg, max; got 'sum'"),
    (["--amp", "fp8"], "error: amp must be one of off, bf16, fp16; got 'fp8'"),
    (["--preset", "scenes-tiny", "--micro-batch", "3"], "error: micro_batch 3 must divide"),
    (["--dataset", "ade20k", "--image-size", "128"], "error: image_size=128 only applies to dataset='context_scenes'"),
    (["--aux", "maybe"], "error: unrecognized arguments: maybe (see python -m pspnet_lite.train --help)"),
    (["--nosuchflag"], "error: unrecognized arguments: --nosuchflag"),
])
def test_every_bad_value_is_one_error_line_and_exit_2(argv, message, tmp_path, capsys):
    # a tiny run first (later flags win), so that a value that wrongly passes trains for seconds, not minutes
    safe = ["--preset", "scenes-tiny", "--iters", "1", "--val-every", "-1"]
    with pytest.raises(SystemExit) as exc:  # from parse_args (argparse's errors) or from main (the values)
        cli.main(cli.get_args_parser().parse_args(safe + argv + ["--out-dir", str(tmp_path / "run"), "--no-progress"]))
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(message), captured.err
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert not (tmp_path / "run").exists()  # nothing was started


@pytest.mark.parametrize("argv, message", [
    (["--set", "lr=abc"], "error: lr must be a number; got 'abc'"),
    (["--preset", "ade20k-pspnet5", "--print-config"], "error: unknown preset 'ade20k-pspnet5'"),
])
def test_bad_values_exit_2_without_traceback_from_the_shell(argv, message, tmp_path):
    rc, out, err = run_train(*argv, "--out-dir", str(tmp_path / "run"), "--no-progress")
    assert rc == 2 and out == ""
    assert err.startswith(message) and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_real_data_set_under_the_default_preset_names_its_missing_root(tmp_path):
    """The issue's bug: this answered "image_size=128 only applies to dataset='context_scenes'"."""
    rc, out, err = run_train("--dataset", "ade20k", "--data-root", "/missing", "--out-dir", str(tmp_path / "run"),
                             "--no-progress")
    assert rc != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and "/missing" in err and "prepare_ade20k" in err
    assert "image_size" not in err

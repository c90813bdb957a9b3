"""Command lines run end to end on ContextScenes and write what they say: train, evaluate, predict, bench."""

import json
import os
import subprocess
import sys

import cv2
import pytest
import torch

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=ENV, cwd=cwd,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("module,words", [
    ("pspnet_lite.train", ["--preset", "--set", "--resume", "--amp", "--channels-last", "--compile", "--freeze-bn",
                           "--micro-batch", "--head-lr-mult", "--stop-at", "torchrun"]),
    ("pspnet_lite.evaluate", ["--checkpoint", "--protocols", "--mode", "--base-size", "--out"]),
    ("pspnet_lite.predict", ["--checkpoint", "--out", "--protocol", "--alpha"]),
    ("pspnet_lite.bench", ["--backbone", "--crop", "--batch", "--precisions", "--memory-formats", "--compile"]),
])
def test_help(module, words):
    out = run(module, "--help")
    for w in words:
        assert w in out, w


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    stdout = run("pspnet_lite.train", "--preset", "scenes-tiny", "--iters", "3", "--batch-size", "2",
                 "--set", "num_train_images=8", "--num-val-images", "4", "--log-every", "1", "--out-dir", str(out),
                 "--no-progress")
    assert "done: 3 iterations" in stdout
    return out


def test_train_writes_logs_config_checkpoints(trained):
    lines = [json.loads(s) for s in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in lines if r["kind"] == "train"] == [1, 2, 3]
    assert [r["kind"] for r in lines][-1] == "val"
    assert json.loads((trained / "config.json").read_text())["iters"] == 3
    ck = torch.load(trained / "last.pt", weights_only=True)
    assert ck["iteration"] == 3 and (trained / "best.pt").is_file()


def test_train_print_config_and_list_presets():
    cfg = json.loads(run("pspnet_lite.train", "--preset", "ade20k-pspnet50", "--print-config"))
    assert cfg["crop_size"] == 473 and cfg["iters"] == 150000
    assert "cityscapes-pspnet101" in run("pspnet_lite.train", "--list-presets")


def test_evaluate_prints_table_and_writes_json(trained, tmp_path):
    out = tmp_path / "eval.json"
    stdout = run("pspnet_lite.evaluate", "--checkpoint", str(trained / "last.pt"), "--protocols", "ss", "ss+flip",
                 "--num-images", "2", "--out", str(out), "--no-progress", "--workers", "0")
    from pspnet_lite.data.context_scenes import CLASSES

    assert "IoU" in stdout and "pixel acc" in stdout and CLASSES[0] in stdout
    data = json.loads(out.read_text())
    assert set(data["protocols"]) == {"ss", "ss+flip"} and data["num_images"] == 2
    assert 0 <= data["protocols"]["ss"]["pixel_acc"] <= 1


def test_predict_writes_masks_and_overlays(trained, tmp_path):
    from pspnet_lite.data.context_scenes import ContextScenes

    ds = ContextScenes("val", num_images=2, image_size=64)
    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), cv2.cvtColor(ds.images[i], cv2.COLOR_RGB2BGR))
        paths.append(str(p))
    out = tmp_path / "pred"
    run("pspnet_lite.predict", *paths, "--checkpoint", str(trained / "last.pt"), "--out", str(out), "--device", "cpu")
    for i in range(2):
        for kind in ("mask", "overlay"):
            img = cv2.imread(str(out / f"img{i}_{kind}.png"))
            assert img is not None and img.shape == (64, 64, 3)
        labels = cv2.imread(str(out / f"img{i}_labels.png"), cv2.IMREAD_UNCHANGED)
        assert labels.shape == (64, 64) and labels.max() < ds.num_classes


def test_bench_table(tmp_path):
    out = tmp_path / "bench.json"
    stdout = run("pspnet_lite.bench", "--backbone", "lite", "--crop", "64", "--batch", "2", "--device", "cpu",
                 "--precisions", "fp32", "bf16", "--memory-formats", "contiguous", "--warmup", "1", "--iters", "1",
                 "--threads", "1", "--no-isolate", "--json", str(out))
    assert "speedup" in stdout and "reference row: fp32 / contiguous / eager" in stdout
    rows = json.loads(out.read_text())["rows"]
    assert [(r["precision"], r["memory_format"]) for r in rows] == [("fp32", "contiguous"), ("bf16", "contiguous")]
    assert rows[0]["train"]["speedup"] == 1.0 and rows[1]["infer"]["images_per_s"] > 0


def run_fail(*args):
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=ENV, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_bad_preset_is_one_error_line_and_exit_2():
    rc, out, err = run_fail("pspnet_lite.train", "--preset", "ade20k-pspnet5", "--print-config")
    assert rc == 2 and out == ""
    assert err.startswith("error: unknown preset 'ade20k-pspnet5' (did you mean 'ade20k-pspnet50'?)")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_print_config_validates_like_training(capsys):
    from pspnet_lite import train as T

    args = T.get_args_parser().parse_args(["--preset", "scenes-tiny", "--micro-batch", "3", "--print-config"])
    with pytest.raises(SystemExit) as exc:
        T.main(args)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: micro_batch 3 must divide the per-process batch 4")
    with pytest.raises(ValueError, match="micro_batch 3"):  # the same check the trainer runs first
        T.check_config(T.config_from_args(args))
    ok = T.get_args_parser().parse_args(["--preset", "scenes-tiny", "--micro-batch", "2", "--print-config"])
    assert T.main(ok) is None and json.loads(capsys.readouterr().out)["micro_batch"] == 2


@pytest.mark.parametrize("module,argv,message", [
    ("evaluate", ["--checkpoint", "no/such/last.pt"], "error: checkpoint 'no/such/last.pt' does not exist"),
    ("predict", ["no_such.png", "--checkpoint", "x.pt", "--out", "o"], "error: image file(s) not found"),
    ("bench", ["--backbone", "resnet5"], "error: unknown backbone 'resnet5'"),
])
def test_user_errors_exit_2_without_traceback(module, argv, message, capsys):
    import importlib

    mod = importlib.import_module(f"pspnet_lite.{module}")
    with pytest.raises(SystemExit) as exc:
        mod.main(mod.get_args_parser().parse_args(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err


def test_list_flags_take_spaces_or_commas():
    from pspnet_lite import bench, evaluate

    p = evaluate.get_args_parser()
    readme = p.parse_args("--checkpoint runs/lite/best.pt --protocols ss ss+flip ms ms+flip".split())
    assert readme.protocols == ["ss", "ss+flip", "ms", "ms+flip"]
    assert p.parse_args(["--checkpoint", "c", "--protocols", "ss,ms+flip", "ss+flip"]).protocols == [
        "ss", "ms+flip", "ss+flip"]
    assert p.parse_args(["--checkpoint", "c"]).protocols == ["ss"]
    with pytest.raises(SystemExit):
        p.parse_args(["--checkpoint", "c", "--protocols", "ss,mss"])
    b = bench.get_args_parser()
    readme = b.parse_args("--backbone resnet50 --crop 473 --precisions fp32 bf16 "
                          "--memory-formats contiguous channels_last".split())
    assert (readme.backbone, readme.crop, readme.precisions, readme.memory_formats) == (
        "resnet50", 473, ["fp32", "bf16"], ["contiguous", "channels_last"])
    commas = b.parse_args(["--precisions", "fp32,bf16", "--memory-formats", "contiguous,channels_last"])
    assert (commas.precisions, commas.memory_formats) == (readme.precisions, readme.memory_formats)
    with pytest.raises(SystemExit):
        b.parse_args(["--precisions", "fp32,int8"])


def test_readme_evaluate_command_all_four_protocols(trained, tmp_path):
    from pspnet_lite import evaluate

    out = tmp_path / "e.json"
    args = evaluate.get_args_parser().parse_args(
        ["--checkpoint", str(trained / "best.pt"), "--protocols", "ss", "ss+flip", "ms", "ms+flip",
         "--num-images", "1", "--workers", "0", "--no-progress", "--device", "cpu", "--out", str(out)])
    res = evaluate.main(args)
    assert list(res["protocols"]) == ["ss", "ss+flip", "ms", "ms+flip"]
    assert json.loads(out.read_text())["protocols"]["ms+flip"]["pixel_acc"] >= 0


def test_readme_bench_command_runs_every_row():
    from pspnet_lite import bench

    # the README's flags, at a CPU test size (the README's --crop 473 --batch 16 is a GPU run)
    args = bench.get_args_parser().parse_args(
        "--backbone resnet50 --crop 473 --precisions fp32 bf16 --memory-formats contiguous channels_last".split()
        + "--crop 33 --batch 1 --modes infer --warmup 0 --iters 1 --threads 1 --no-isolate --device cpu".split())
    rows = bench.main(args)
    assert [(r["precision"], r["memory_format"]) for r in rows] == [
        ("fp32", "contiguous"), ("fp32", "channels_last"), ("bf16", "contiguous"), ("bf16", "channels_last")]
    assert all(r["infer"]["images_per_s"] > 0 for r in rows)


@pytest.fixture(scope="module")
def semseg_file(tmp_path_factory):
    """A PSPNet saved in the authors' hszhao/semseg key layout (layer0.*, layer1..4, ppm, cls, aux), nested
    under "state_dict" with DataParallel's "module." prefix, as their train_epoch_*.pth files."""
    from pspnet_lite.data.context_scenes import CLASSES
    from pspnet_lite.model import PSPNet
    from pspnet_lite.weights import pspnet_lite_to_semseg

    torch.manual_seed(3)
    model = PSPNet(num_classes=len(CLASSES), backbone="lite", bins=(1, 2, 4))
    for m in model.modules():  # non-trivial BN statistics, so a wrong mapping shows in the scores
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {f"module.{k}": v for k, v in pspnet_lite_to_semseg(model.state_dict()).items()}
    assert any(k.startswith("module.layer0.") for k in state) and not any(".backbone." in k for k in state)
    path = tmp_path_factory.mktemp("semseg") / "train_epoch_100.pth"
    torch.save({"epoch": 100, "state_dict": state}, path)
    return path, model.eval()


def test_evaluate_and_predict_read_an_authors_semseg_checkpoint(semseg_file, tmp_path, capsys):
    from pspnet_lite import evaluate, predict
    from pspnet_lite.data.context_scenes import ContextScenes
    from pspnet_lite.inference import evaluate as score

    path, model = semseg_file
    flags = ["--checkpoint", str(path), "--backbone", "lite", "--bins", "1,2,4", "--dataset", "context_scenes"]
    out = tmp_path / "e.json"
    res = evaluate.main(evaluate.get_args_parser().parse_args(
        flags + ["--image-size", "64", "--num-images", "3", "--protocols", "ss,ss+flip", "--workers", "0",
                 "--no-progress", "--device", "cpu", "--out", str(out)]))
    ds = ContextScenes("val", num_images=3, image_size=64)
    ref = score(model, torch.utils.data.DataLoader(ds, batch_size=1), ds.num_classes, protocols=["ss", "ss+flip"],
                progress=False)
    for name in ("ss", "ss+flip"):
        assert res["protocols"][name]["miou"] == pytest.approx(ref[name].miou, abs=1e-9)
        assert res["protocols"][name]["pixel_acc"] == pytest.approx(ref[name].pixel_acc, abs=1e-9)
    assert "semseg layout" in res["weights"] and "skipped" in res["weights"]  # aux.* is training-only
    # predict: the same file, masks in the data set's palette
    img = tmp_path / "img.png"
    cv2.imwrite(str(img), cv2.cvtColor(ds.images[0], cv2.COLOR_RGB2BGR))
    written = predict.main(predict.get_args_parser().parse_args(
        [str(img), "--out", str(tmp_path / "pred"), "--device", "cpu"] + flags))
    labels = cv2.imread(str(tmp_path / "pred" / "img_labels.png"), cv2.IMREAD_UNCHANGED)
    x = ds[0][0][None]
    assert len(written) == 3 and (labels == model(x).argmax(1)[0].numpy()).all()
    # without --dataset / --num-classes the class count is unknown: one clear error
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        evaluate.main(evaluate.get_args_parser().parse_args(["--checkpoint", str(path), "--backbone", "lite"]))
    assert exc.value.code == 2 and "pass --num-classes N or --dataset NAME" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # wrong architecture flags: load_weights' key-listing error, exit 2
        evaluate.main(evaluate.get_args_parser().parse_args(flags[:-4] + ["--dataset", "context_scenes"]))
    assert "does not fit PSPNet" in capsys.readouterr().err

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

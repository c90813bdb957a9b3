"""Chapters 07 (benchmarks) and 08 (performance) run top to bottom with tiny parameters and show what they
say they show: protocols named next to every number, the load-a-checkpoint path (the authors' semseg
layout), the profiler and benchmark tables, and their records."""
import json

import torch

from conftest import notebook_text
from pspnet_lite.model import PSPNet
from pspnet_lite.weights import pspnet_lite_to_semseg

TINY_07 = dict(iters=2, batch_size=2, crop_size=48, image_size=64, num_train_images=8, num_val_images=4,
               eval_batch_size=4, num_show=2)


def check_07(nb, out):
    text = notebook_text(nb)
    # the authors' protocols, spelled out per data set, and what they cost on a 512 x 683 image
    assert "ade20k      authors single scale: ss+flip | slide 473 stride 316 | long side 512" in text
    assert "cityscapes  authors single scale: ss+flip | slide 713 stride 476 | long side 2048" in text
    assert "toolbox whole, no flip     1 forward passes" in text
    assert "authors single scale       4 forward passes" in text
    # ContextScenes versions of the protocols, and every score printed with its protocol
    assert "authors-ss    ss+flip | slide 48 stride 32 | long side 64" in text
    assert "authors-ms    ms(0.5-1.75)+flip | slide 48 stride 32 | long side 64" in text
    assert "ResNet50   mIoU 41.68 -> 42.78 (+1.10)" in text
    assert "authors single scale (slide + flip)" in text and "82.6 /   -   authors MS" in text
    assert "inconspicuous" in text and "mismatched" in text  # per-class table with roles
    record = json.loads((out / "record.json").read_text())
    assert set(record["metrics"]) >= {"toolbox", "toolbox+flip", "authors-ss", "authors-ms", "role_iou"}
    for key in ("toolbox", "toolbox+flip", "authors-ss", "authors-ms"):
        m = record["metrics"][key]
        assert 0 <= m["miou"] <= 100 and len(m["iou"]) == 16 and m["protocol"]
    assert record["metrics"]["toolbox"]["forward_passes"] == 1
    assert record["metrics"]["authors-ms"]["forward_passes"] > record["metrics"]["authors-ss"]["forward_passes"] > 1
    assert {p.name for p in out.glob("*.png")} == {"per_class_iou.png", "predictions.png"}
    return text, record


def test_07_benchmarks_trains_and_evaluates(run_notebook, tmp_path):
    out = tmp_path / "o7"
    nb = run_notebook("07_benchmarks", out_dir=str(out), **TINY_07)
    text, record = check_07(nb, out)
    assert "trained: 2 iterations" in text and "(trainer checkpoint)" in text
    assert record["config"]["iters"] == 2 and record["config"]["checkpoint"] is None
    assert len(list((out / "runs").glob("*/result.json"))) == 1


def test_07_benchmarks_loads_a_checkpoint(run_notebook, tmp_path):
    """A lite model saved in the authors' semseg layout goes through load_weights (the released-weights path)."""
    torch.manual_seed(0)
    model = PSPNet(num_classes=16, backbone="lite")
    path = tmp_path / "authors_layout.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in pspnet_lite_to_semseg(model.state_dict()).items()}},
               path)
    out = tmp_path / "o7c"
    nb = run_notebook("07_benchmarks", out_dir=str(out), checkpoint=str(path), backbone="lite", **TINY_07)
    text, record = check_07(nb, out)
    assert "(semseg layout)" in text and "(lite, load_weights)" in text
    assert "trained:" not in text and not (out / "runs").exists()
    assert record["config"]["checkpoint"] == str(path)


def test_08_performance(run_notebook, tmp_path):
    out = tmp_path / "o8"
    nb = run_notebook("08_performance", crop_size=33, batch_size=2, profile_steps=1, precisions="fp32",
                      memory_formats="contiguous,channels_last", bench_warmup=0, bench_iters=1, bench_isolate=False,
                      syncbn_procs=2, syncbn_iters=8, out_dir=str(out))
    text = notebook_text(nb)
    assert "PSPNet-50 training forward at 473: 170.5 GMACs per image" in text and "cls 3x3 conv 4096->512" in text
    assert "convolution" in text and "Self CPU" in text  # the profiler's operator table
    assert "forward" in text and "backward" in text and "images/s (under the profiler)" in text
    assert "reference row: fp32 / contiguous / eager" in text
    assert "PSPNet-50: " in text and " BN layers" in text and "SyncBN / plain BN throughput:" in text
    assert "200 img/s needs" in text
    record = json.loads((out / "record.json").read_text())
    m = record["metrics"]
    assert [r["row"] for r in m["bench"]] == ["fp32/contiguous/eager", "fp32/channels_last/eager"]
    assert m["bench"][0]["train_speedup"] == 1.0 and all(r["train_img_s"] > 0 for r in m["bench"])
    assert abs(m["cls_conv_flop_share"] - 0.399) < 0.001
    assert set(m["phase_ms"]) == {"forward", "loss", "backward", "optimizer"}
    assert set(m["syncbn_img_s"]) == {"plain BN", "SyncBN"} and m["h100_goal_measured"] is False
    assert json.loads((out / "bench.json").read_text())["rows"][0]["precision"] == "fp32"
    assert {p.name for p in out.glob("*.png")} == {"time_vs_flops.png", "bench_speedups.png"}

"""Chapter 08 (FLOPs, the profiler, the speed knobs, SyncBN, the stored ONNX benchmark) runs with tiny parameters;
asserts on its records."""
import json

import pytest
from conftest import notebook_text

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_08_performance(run_notebook, tmp_path):
    out = tmp_path / "o8"
    nb = run_notebook("08_performance", crop_size=33, batch_size=2, profile_steps=1, precisions="fp32",
                 memory_formats="contiguous,channels_last", bench_warmup=0, bench_iters=1, bench_isolate=False,
                 syncbn_procs=2, syncbn_iters=8, out_dir=str(out))
    record = json.loads((out / "record.json").read_text())
    assert record["config"]["precisions"] == ["fp32"] and record["config"]["syncbn_procs"] == 2
    m = record["metrics"]
    # section 1: the full PSPNet-50's training forward at 473, and the classifier's 3x3 4096->512 conv
    assert m["flop_crop"] == 473 and m["pspnet50_train_gmacs"] == pytest.approx(170.5, abs=0.05)
    assert abs(m["cls_conv_flop_share"] - 0.399) < 0.001
    assert m["flop_shares"]["cls 3x3 conv 4096->512"] == m["cls_conv_flop_share"]
    assert abs(sum(m["flop_shares"].values()) - 1) < 1e-6
    # section 2: the profiler's phases and operators, the forward hooks' time per module
    assert set(m["phase_ms"]) == {"forward", "loss", "backward", "optimizer"} and m["profiled_img_s"] > 0
    assert any("conv" in op for op in m["top_self_time_ops"])
    assert set(m["module_forward_ms"]) == set(m["module_time_share"]) == set(m["module_flop_share"])
    assert abs(sum(m["module_time_share"].values()) - 1) < 1e-6
    # section 3: pspnet_lite.bench, fp32/contiguous/eager first (the reference row)
    assert [r["row"] for r in m["bench"]] == ["fp32/contiguous/eager", "fp32/channels_last/eager"]
    assert m["bench"][0]["train_speedup"] == 1.0 and all(r["train_img_s"] > 0 for r in m["bench"])
    bench = json.loads((out / "bench.json").read_text())
    assert [r["precision"] for r in bench["rows"]] == ["fp32", "fp32"] and "crop 33, batch 2" in bench["title"]
    # section 4: SyncBN's collectives for PSPNet-50, and the measured two-process runs (torchrun, gloo)
    assert m["bn_layers"] == 61 and m["bn_channels"] > 0 and 0 < m["syncbn_mb_per_step"] < 1
    assert set(m["syncbn_img_s"]) == {"plain BN", "SyncBN"} and all(v > 0 for v in m["syncbn_img_s"].values())
    for name in ("syncbn_on", "syncbn_off"):
        [result] = list((out / name).glob("*/result.json"))
        run = json.loads(result.read_text())
        assert run["iterations"] == 8 and run["world_size"] == 2
        assert run["config"]["sync_bn"] is (name == "syncbn_on")
    # section 5: what the H100 goal needs, not measured on a CPU
    assert m["train_tflop_per_image"] == pytest.approx(6 * m["pspnet50_train_gmacs"] / 1000, rel=1e-3)
    assert m["h100_goal_tflops"] == pytest.approx(200 * m["train_tflop_per_image"]) and m["h100_goal_img_s"] == 200
    assert m["h100_goal_measured"] is False
    assert {p.name for p in out.glob("*.png")} == {"time_vs_flops.png", "bench_speedups.png", "onnx_vs_pytorch.png"}
    # section 6: the stored onnxruntime vs PyTorch record, read (not re-run), both protocols side by side
    text = notebook_text(nb)
    assert "results/onnx_cpu_benchmark.json: PSPNet resnet50, 150 classes, exported at 473" in text
    assert "whole image" in text and "sliding window" in text

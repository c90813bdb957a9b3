"""Chapters 05 (Table 1 ablation) and 06 (depth, multi-scale testing) run end to end with tiny parameters.

Each chapter is executed with papermill on ContextScenes at 64 px with a few iterations; the CPU path and the
paper-preset path (ResNet-50, the §5.1 recipe) are both exercised, so the GPU reproduction is known to run.
"""
import json
import re

import pytest

from conftest import notebook_text

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TINY = dict(iters=2, batch_size=2, crop_size=64, image_size=64, num_train_images=8, num_val_images=4, workers=0)
PAPER_TINY = dict(TINY, iters=1, num_val_images=2)  # ResNet-50 at full width: keep it to one step


def test_ch05_tiny_grid_is_cached_and_recorded(run_notebook, tmp_path):
    out = tmp_path / "o5"
    nb = run_notebook("05_ablation", rows="baseline,B1236+AVE+DR", seeds="0,1", out_dir=str(out), **TINY)
    text = notebook_text(nb)
    assert "2 rows x 2 seeds = 4 runs, 4 to train" in text
    assert "second call: 4 of 4 runs from the cache" in text
    for row in ("baseline", "B1236+AVE+DR"):
        assert re.search(rf"^{re.escape(row)}\s+\|\s+[\d.]+\s+[\d.]+\s+\|\s+[\d.]+ ± [\d.]+", text, re.M), row
    assert "41.68" in text and "37.23" in text  # the paper's columns
    assert "regional" in text and "mismatched" in text
    record = json.loads((out / "record_cpu_context_scenes.json").read_text())
    assert set(record["metrics"]) == {"baseline", "B1236+AVE+DR", "claims"}
    assert record["metrics"]["claims"]["B1236+AVE+DR > baseline"] in ("holds", "reversed", "within noise")
    assert re.search(r"B1236\+AVE\+DR > baseline\s+paper \+4\.45 \| ours\s+[+-][\d.]+ ± [\d.]+ \(s\.e\.\)", text)
    assert record["metrics"]["baseline"]["seeds"] == 2
    assert 0 <= record["metrics"]["B1236+AVE+DR"]["miou"] <= 100
    assert set(record["metrics"]["baseline"]["roles"]) == {"stuff", "mismatched", "confusion", "inconspicuous",
                                                           "regional"}
    assert record["config"]["iters"] == 2 and record["hardware"]["device"] == "cpu"
    assert (out / "table1.png").is_file() and (out / "roles.png").is_file()
    assert len(list((out / "runs").glob("*/result.json"))) == 4


def test_ch05_paper_preset_runs_on_context_scenes(run_notebook, tmp_path):
    nb = run_notebook("05_ablation", preset="paper", dataset="context_scenes", rows="B1236+AVE+DR", seeds="0",
                      out_dir=str(tmp_path / "p5"), **PAPER_TINY)
    text = notebook_text(nb)
    assert '"backbone": "resnet50"' in text and '"lr": 0.01' in text and '"alpha": 0.4' in text
    assert "torchrun --standalone --nproc_per_node=1 -m pspnet_lite.train" in text
    record = json.loads((tmp_path / "p5" / "record_paper_context_scenes.json").read_text())
    assert record["config"]["backbone"] == "resnet50" and record["config"]["batch_size"] == 2


def test_ch05_torchrun_launcher_trains_and_reads_the_log(run_notebook, tmp_path):
    out = tmp_path / "t5"
    nb = run_notebook("05_ablation", rows="B1+AVE", seeds="0", nproc_per_node=1, device="cpu", out_dir=str(out),
                      **TINY)
    text = notebook_text(nb)
    assert "1 trained, 0 loaded from the cache" in text and "second call: 1 of 1 runs from the cache" in text
    (run_dir,) = (out / "runs").iterdir()
    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["kind"] == "val" and log[-1]["iter"] == 2
    assert json.loads((out / "record_cpu_context_scenes.json").read_text())["config"]["nproc_per_node"] == 1


def test_ch05_bad_row_names_the_fix(run_notebook, tmp_path):
    papermill = pytest.importorskip("papermill")
    with pytest.raises(papermill.PapermillExecutionError, match="unknown Table 1 row 'B2"):
        run_notebook("05_ablation", rows="B2+AVE", out_dir=str(tmp_path / "bad"), **TINY)


def test_ch06_tiny_depth_and_protocols(run_notebook, tmp_path):
    out = tmp_path / "o6"
    nb = run_notebook("06_depth_and_multiscale", backbones="lite@8,lite-1121@4,resnet50@4", out_dir=str(out), **TINY)
    text = notebook_text(nb)
    assert "resnet50@4   width   4: blocks (3, 4, 6, 3) ->  50 layers" in text
    assert "ms+flip" in text and "12 forward passes per image" in text
    record = json.loads((out / "record_cpu_context_scenes.json").read_text())
    assert "lite-1121@4  width   4: blocks (1, 1, 2, 1) ->  17 layers" in text
    assert set(record["metrics"]) == {"lite@8", "lite-1121@4", "resnet50@4"}
    for per in record["metrics"].values():
        assert set(per) == {"ss", "ss+flip", "ms", "ms+flip"}
        for s in per.values():
            assert s["score"] == pytest.approx((s["miou"] + s["acc"]) / 2, abs=2e-3)
    assert (out / "fig5.png").is_file()
    assert len(list((out / "runs").glob("*/protocols_4.json"))) == 3


def test_ch06_paper_preset_runs_on_context_scenes(run_notebook, tmp_path):
    nb = run_notebook("06_depth_and_multiscale", preset="paper", dataset="context_scenes", backbones="resnet50",
                      protocols="ss,ms+flip", out_dir=str(tmp_path / "p6"), **PAPER_TINY)
    text = notebook_text(nb)
    assert "resnet50     width  64: blocks (3, 4, 6, 3) ->  50 layers" in text
    record = json.loads((tmp_path / "p6" / "record_paper_context_scenes.json").read_text())
    assert set(record["metrics"]["resnet50"]) == {"ss", "ms+flip"}

"""The GPU parameters every training chapter shares (pspnet_lite.book.plan): each chapter accepts them, prints its
plan with a dry run and trains nothing; the checks name the parameter and the fix."""
import json
from pathlib import Path

import pytest
import torch
from conftest import notebook_text
from fake_datasets import make_ade20k

from pspnet_lite.book import plan as P
from pspnet_lite.train.presets import get_preset

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CHAPTERS = {  # chapter -> (parameters of a small dry run, how many runs it plans)
    "01_observations": (dict(seeds="0,1"), 2),
    "04_deep_supervision": (dict(alphas="0,0.4", seeds="0"), 2),
    "06_depth_and_multiscale": (dict(backbones="lite@8,lite-2222@8", seeds="0"), 2),
    "07_benchmarks": (dict(), 1),
}


@pytest.mark.parametrize("chapter", list(CHAPTERS))
def test_every_training_chapter_has_the_gpu_parameters_and_a_dry_run(run_notebook, tmp_path, chapter):
    params, runs = CHAPTERS[chapter]
    out = tmp_path / chapter
    nb = run_notebook(chapter, out_dir=str(out), amp="bf16", micro_batch=2, channels_last=True, compile=False,
                      nproc_per_node=2, dry_run=True, device="cpu", **params)
    plan = json.loads((out / "plan.json").read_text())
    assert plan["runs"] == runs and plan["nproc_per_node"] == 2
    for row in plan["rows"]:
        assert row["differs_from_preset"]["amp"] == "bf16" and row["differs_from_preset"]["micro_batch"] == 2
        assert row["differs_from_preset"]["channels_last"] is True and row["gpu_hours"] > 0
    assert "dry run: cell skipped" in notebook_text(nb)
    assert not list(out.rglob("*.pt")) and not list(out.rglob("result.json"))  # nothing trained


def test_pretrained_is_required_on_real_data_and_resnet269_has_no_public_weights():
    with pytest.raises(ValueError, match="set the chapter parameter pretrained to the authors' deep-stem ImageNet"):
        P.pretrained_path(None, "resnet50", "ade20k")
    assert P.pretrained_path("scratch", "resnet50", "ade20k") is None
    assert P.pretrained_path("/w/{backbone}_v2.pth", "resnet101", "voc") == "/w/resnet101_v2.pth"
    with pytest.raises(ValueError, match="none are public.*leave resnet269 out"):
        P.pretrained_path("/w/{backbone}_v2.pth", "resnet269", "ade20k")
    assert P.pretrained_path(None, "lite", "context_scenes") is None


def test_micro_batch_and_amp_checks_name_the_valid_values():
    cfg = get_preset("ade20k-pspnet50", pretrained="/w/r.pth")
    with pytest.raises(ValueError, match=r"micro_batch=3 does not divide the 2 images .* use one of \[1, 2\]"):
        P.gpu_config(cfg, pretrained="scratch", micro_batch=3, nproc_per_node=8)
    with pytest.raises(ValueError, match="does not split over nproc_per_node=3"):
        P.gpu_config(cfg, pretrained="scratch", nproc_per_node=3)
    with pytest.raises(ValueError, match="amp must be one of off, bf16, fp16"):
        P.gpu_config(cfg, pretrained="scratch", amp="fp8")
    with pytest.raises(ValueError, match="amp='fp16' runs on CUDA GPUs only"):
        P.gpu_config(cfg.replace(device="cpu"), pretrained="scratch", amp="fp16")
    ok = P.gpu_config(cfg, pretrained="scratch", amp="bf16", micro_batch=1, channels_last=True, nproc_per_node=8)
    assert (ok.amp, ok.micro_batch, ok.channels_last, ok.pretrained) == ("bf16", 1, True, None)


def test_the_plan_counts_images_disk_and_gpu_time_from_flops():
    ref = get_preset("ade20k-pspnet50")
    cfg = P.gpu_config(ref, pretrained="/w/{backbone}_v2.pth", amp="bf16")
    plan = P.training_plan([("B1236", cfg.replace(seed=s)) for s in (0, 1, 2)], ref, nproc_per_node=8)
    (row,) = plan["rows"]
    assert row["images_seen"] == 150_000 * 16 and row["seeds"] == [0, 1, 2]
    assert row["differs_from_preset"] == {"pretrained": "/w/resnet50_v2.pth", "amp": "bf16"}
    # PSPNet-50 at 473: 3 x its training forward FLOPs per image, at 21% of an H100's 989 TFLOP/s bf16 peak
    per_image = P._flops_per_image(cfg)
    assert row["gpu_hours"] == pytest.approx(per_image * 2_400_000 / (0.21 * 989e12) / 3600)
    assert 1 < row["gpu_hours"] < 10 and plan["total_gpu_hours"] == pytest.approx(3 * row["gpu_hours"])
    assert row["checkpoint_bytes"] == 3 * 2 * P._checkpoint_bytes(cfg)  # last.pt and best.pt per seed
    text = P.format_plan(plan)
    assert "2,400,000 images" in text and "on 8 GPUs" in text and "not a measurement" in text


def test_01_observations_runs_on_a_real_data_set_layout(run_notebook, tmp_path):
    """Chapter 01 on an ADE20K tree (fabricated, images of several sizes): trained from scratch on purpose, the
    whole split scored, the receptive field averaged over images of one size."""
    make_ade20k(tmp_path / "ade", n_val=4)
    out = tmp_path / "o1"
    run_notebook("01_observations", dataset="ade20k", data_root=str(tmp_path / "ade"), pretrained="scratch",
                 iters=2, batch_size=2, crop_size=32, rf_images=2, out_dir=str(out))
    record = json.loads((out / "record.json").read_text())
    assert record["config"]["dataset"] == "ade20k" and record["metrics"]["val_images"] == 4


def test_a_measured_gpu_check_record_replaces_the_assumption(tmp_path):
    ref = get_preset("ade20k-pspnet50")
    cfg = P.gpu_config(ref, pretrained="scratch", amp="bf16")
    record = {"quick": False, "gpu": "NVIDIA H200", "goal": {"crop": 473, "best_bf16_row": {"images_per_s": 250.0}}}
    (tmp_path / "gpu_check_nvidia-h200.json").write_text(json.dumps(record))
    (tmp_path / "gpu_check_cpu_quick.json").write_text(json.dumps({**record, "quick": True, "gpu": None}))
    est = P.gpu_hours(cfg, 2_400_000, results=tmp_path)
    assert est["gpu"] == "NVIDIA H200" and "measured: 250 training images/s" in est["basis"]
    assert est["throughput_source"] == "synthetic" and "no data loading, DDP or SyncBN" in est["basis"]
    assert est["gpu_hours"] == pytest.approx(2_400_000 / 250 / 3600)  # the same model: FLOPs cancel


def test_the_plan_prefers_the_throughput_measured_through_the_trainer(tmp_path):
    """gpu_check's throughput_trainer (torchrun, JPEG loading, DDP + SyncBN) is what a real run gets: the plan uses
    it over the synthetic one-GPU step whenever a record has it, in any record, and names the figure it used."""
    ref = get_preset("ade20k-pspnet50")
    cfg = P.gpu_config(ref, pretrained="scratch", amp="bf16")
    synthetic = {"quick": False, "gpu": "NVIDIA H100 80GB HBM3", "goal": {"crop": 473,
                                                                         "best_bf16_row": {"images_per_s": 250.0}}}
    trainer = {"ok": True, "images_per_s": 1440.0, "images_per_s_per_gpu": 180.0, "gpus": 8, "crop": 473,
               "backbone": "resnet50", "precision": "bf16"}
    (tmp_path / "gpu_check_a.json").write_text(json.dumps(synthetic))
    (tmp_path / "gpu_check_b.json").write_text(json.dumps({**synthetic, "throughput": {"trainer": trainer}}))
    (tmp_path / "gpu_check_c_quick.json").write_text(json.dumps(
        {**synthetic, "quick": True, "throughput": {"trainer": {**trainer, "images_per_s_per_gpu": 9.0}}}))
    est = P.gpu_hours(cfg, 2_400_000, nproc=8, results=tmp_path)
    assert est["throughput_source"] == "trainer" and est["gpu_hours"] == pytest.approx(2_400_000 / 180 / 3600)
    assert est["basis"].startswith("measured through the trainer: 180 training images/s per GPU of PSPNet-50 at "
                                   "473 in bf16 on 8 x NVIDIA H100 80GB HBM3 (torchrun, DDP + SyncBN, JPEG loading; "
                                   "results/gpu_check_b.json)")
    plan = P.training_plan([("B1236", cfg)], ref, nproc_per_node=8, results=tmp_path)
    assert plan["throughput_source"] == plan["rows"][0]["throughput_source"] == "trainer"
    assert "measured through the trainer" in P.format_plan(plan)
    assert P.gpu_hours(cfg, 1000, results=tmp_path / "none")["throughput_source"] == "assumed"


def test_the_readme_quotes_the_cost_of_its_headline_command_from_the_stored_plan():
    root = Path(__file__).resolve().parents[1]
    plan = json.loads((root / "results" / "05_plan_paper_ade20k.json").read_text())
    readme = (root / "README.md").read_text()
    hours = plan["total_gpu_hours"]
    assert plan["runs"] == 15 and f"{plan['runs']} runs (5 rows x 3 seeds)" in readme
    assert f"about {hours:.0f} GPU-hours" in readme and f"about {hours / 8:.1f} hours with every run on 8" in readme
    assert f"{plan['total_checkpoint_bytes'] / 1e9:.1f} GB of checkpoints" in readme
    assert all(r["iterations"] == 150_000 and r["amp"] == "bf16" for r in plan["rows"])


def test_a_missing_data_root_names_the_path_and_the_preparation_command(tmp_path):
    cfg = get_preset("voc-pspnet101", data_root=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"nowhere does not exist.*prepare_voc.py"):
        P.check_data(cfg)
    make_ade20k(tmp_path / "half")
    (tmp_path / "half" / "ADEChallengeData2016" / "images" / "validation").rename(tmp_path / "gone")
    with pytest.raises(ValueError, match=r"validation does not exist.*prepare_ade20k.py"):
        P.check_data(get_preset("ade20k-pspnet50", data_root=str(tmp_path / "half")))


def test_default_amp_is_bf16_only_on_a_cpu_with_bf16_units(monkeypatch):
    monkeypatch.setattr(P, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert P.default_amp("cpu") == "bf16" and P.default_amp(torch.device("cpu")) == "bf16"
    assert P.default_amp("meta") is None  # only a CPU: a GPU run keeps the preset's precision
    monkeypatch.setattr(P, "cpu_flags", lambda: {"avx2"})
    assert P.default_amp("cpu") is None

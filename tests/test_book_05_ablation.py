"""Chapter 05 (the Table 1 ablation, §5.2) runs end to end with tiny parameters: in this kernel, with the torchrun
launcher, and with the paper's preset (ResNet-50, the §5.1 recipe) on ContextScenes, so the GPU reproduction is
known to run. The assertions read the records the chapter writes and its run cache."""
import json

import numpy as np
import pytest
from conftest import ROOT, notebook_text
from fake_datasets import make_ade20k, make_cityscapes, make_voc
from scipy import stats

from pspnet_lite.book.plan import default_amp
from pspnet_lite.book.table1 import CLAIMS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TINY = dict(iters=2, batch_size=2, crop_size=64, image_size=64, num_train_images=8, num_val_images=4, workers=0)
PAPER_TINY = dict(TINY, iters=1, num_val_images=2)  # ResNet-50 at full width: keep it to one step
ROLES = {"stuff", "mismatched", "confusion", "inconspicuous", "regional"}


def test_05_tiny_grid_is_cached_and_recorded(run_notebook, tmp_path):
    out = tmp_path / "o5"
    # 24 validation images: every role is present in both seeds' samples, so every role claim has 2 seeds
    run_notebook("05_ablation", rows="baseline,B1236+AVE+DR", seeds="0,1", out_dir=str(out), **dict(TINY,
                                                                                                  num_val_images=24))
    record = json.loads((out / "record_scenes-ablation_context_scenes.json").read_text())
    assert record["grid"]["runs"] == record["grid"]["trained"] == 4 and record["grid"]["cached"] == 0
    assert record["grid"]["second_call_cached"] == 4 and record["grid"]["launcher"] == "inprocess"
    assert record["row_settings"]["baseline"] == {"bins": [], "pooling": "avg", "reduction": True}
    assert record["row_settings"]["B1236+AVE+DR"] == {"bins": [1, 2, 3, 6], "pooling": "avg", "reduction": True}
    assert record["ppm"]["DR"]["out_channels"] == 1024 and record["ppm"]["no DR"]["params"] == 0
    m = record["metrics"]
    assert set(m) == {"baseline", "B1236+AVE+DR", "claims"}
    for row in ("baseline", "B1236+AVE+DR"):
        assert m[row]["seeds"] == 2 and 0 <= m[row]["miou"] <= 100 and 0 <= m[row]["acc"] <= 100
        assert m[row]["miou_sd"] >= 0 and set(m[row]["roles"]) == ROLES
        assert set(record["per_seed"][row]) == {"0", "1"} and set(record["per_seed"][row]["0"]) >= ROLES | {"miou"}
    # the declared claims whose rows both trained, one family, verdicts equal to scipy's on the stored values
    assert [c["name"] for c in record["claims"]] == ["C3", "C8", "C9"] and set(m["claims"]) == {"C3", "C8", "C9"}
    assert_claims_equal_scipy(record)
    assert record["claims"][0]["paper"] == 4.45  # 41.68 - 37.23
    assert "sample sd (ddof 1)" in record["units"] and record["config"]["fresh_data"] is True
    assert record["paper"]["B1236+AVE+DR"] == [41.68, 80.04] and record["paper"]["baseline"] == [37.23, 78.01]
    cfg = record["config"]
    assert cfg["preset"] == "scenes-ablation" and (cfg["iters"], cfg["lr"], cfg["head_lr_mult"]) == (2, 0.02, 1.0)
    assert (cfg["augment"], cfg["val_every"], cfg["ckpt_every"], cfg["nproc_per_node"]) == (False, 0, 0, 0)
    assert cfg["rows"] == ["baseline", "B1236+AVE+DR"] and cfg["seeds"] == [0, 1]
    assert cfg["data_seed"] is None  # the base config; each run's data_seed is its seed (fresh_data)
    assert record["hardware"]["device"] == "cpu"
    amp = default_amp("cpu") or "off"  # amp=None: bf16 where the CPU has bf16 units
    assert (cfg["amp"], cfg["channels_last"]) == (amp, True)  # NHWC on a CPU
    assert record["precision"] == {"amp": amp, "channels_last": True, "chosen_by": "this CPU has bf16 units"
                                   if amp == "bf16" else "the preset's"}
    assert "whole image" in record["protocol"] and "no flip" in record["protocol"]  # run_grid's validation
    assert set(record["role_differences"]) == {"B1236+AVE+DR - baseline"}
    assert set(record["role_differences"]["B1236+AVE+DR - baseline"]) == ROLES
    runs = [json.loads(p.read_text()) for p in (out / "runs").glob("*/result.json")]
    assert {r["config"]["data_seed"] for r in runs} == {0, 1}  # one ContextScenes sample per seed
    assert (out / "table1.png").is_file() and (out / "roles.png").is_file()
    assert len(list((out / "runs").glob("*/result.json"))) == 5  # + B1+AVE seed 0 for the gallery
    assert {p.name for p in out.glob("*.png")} >= {"gallery_failures.png", "role_confusion.png"}
    assert record["gallery"] and all(p["reason"] == "worst" or p["pixels"] >= 100 for p in record["gallery"])


def assert_claims_equal_scipy(record: dict) -> None:
    """Every claim's interval, p and verdict in a chapter 05 record equal scipy.stats on its stored per-seed values,
    with Holm's step-down across the record's claims computed here by hand."""
    per_seed, claims = record["per_seed"], record["claims"]
    ps = []
    for c in claims:
        seeds = sorted(set(per_seed[c["a"]]) & set(per_seed[c["b"]]), key=int)
        a = np.array([per_seed[c["a"]][s][c["metric"]] for s in seeds])
        b = np.array([per_seed[c["b"]][s][c["metric"]] for s in seeds])
        d = a - b
        # scipy gives nan when every difference is 0; the helper reads "no difference at all" as p = 1
        p_ref = stats.ttest_rel(a, b).pvalue if d.any() else 1.0
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        assert c["df"] == len(seeds) - 1 and c["p"] == pytest.approx(p_ref, abs=1e-9)
        assert c["ci95"] == pytest.approx([d.mean() - half, d.mean() + half], abs=1e-9)
        ps.append(p_ref)
    for family in {c["family"] for c in claims}:  # Holm's step-down within each declared family
        members = [i for i, c in enumerate(claims) if c["family"] == family]
        order = sorted(members, key=lambda i: ps[i])
        holm = np.maximum.accumulate([min(1.0, (len(members) - k) * ps[i]) for k, i in enumerate(order)])
        for k, i in enumerate(order):
            c = claims[i]
            assert c["p_holm"] == pytest.approx(holm[k], abs=1e-9) and c["correction"] == "holm"
            expected = ("shown" if c["mean"] > 0 else "reversed") if holm[k] < 0.05 else "not resolved"
            assert c["verdict"] == expected == record["metrics"]["claims"][c["name"]]


def test_05_stored_default_record_holds_five_seeds_and_scipys_verdicts():
    """The stored default record (results/05_ablation_cpu_context_scenes.json): at least 5 seeds per row, every
    declared claim decided, and each verdict what scipy.stats gives on the stored per-seed values."""
    record = json.loads((ROOT / "results" / "05_ablation_cpu_context_scenes.json").read_text())
    assert len(record["config"]["seeds"]) >= 5 and all(len(v) >= 5 for v in record["per_seed"].values())
    assert [c["name"] for c in record["claims"]] == [c.name for c in CLAIMS]
    assert_claims_equal_scipy(record)


def test_05_paper_preset_runs_on_context_scenes(run_notebook, tmp_path):
    out = tmp_path / "p5"
    run_notebook("05_ablation", preset="paper", dataset="context_scenes", rows="B1236+AVE+DR", seeds="0",
                 show_gallery=False, out_dir=str(out), **PAPER_TINY)
    record = json.loads((out / "record_paper_context_scenes.json").read_text())
    cfg = record["config"]
    assert cfg["preset"] == "ade20k-pspnet50" and cfg["backbone"] == "resnet50" and cfg["num_classes"] is None
    assert (cfg["lr"], cfg["head_lr_mult"], cfg["alpha"], cfg["batch_size"], cfg["iters"]) == (0.01, 10.0, 0.4, 2, 1)
    assert cfg["ckpt_every"] == 1000 and cfg["image_size"] == 64  # a GPU-length preset checkpoints to resume
    command = record["grid"]["torchrun_command"]  # the command the torchrun launcher would run
    assert command[1:4] == ["-m", "torch.distributed.run", "--standalone"] and "--nproc_per_node=1" in command
    assert command[command.index("-m", 2) + 1] == "pspnet_lite.train" and "--config" in command
    assert record["grid"] == dict(record["grid"], runs=1, trained=1, launcher="inprocess")


def test_05_torchrun_launcher_trains_and_reads_the_log(run_notebook, tmp_path):
    """Two gloo ranks launched from the chapter: their output streams into the cell, one device each."""
    out = tmp_path / "t5"
    nb = run_notebook("05_ablation", rows="B1+AVE", seeds="0", nproc_per_node=2, device="cpu", out_dir=str(out),
                      amp="off", show_gallery=False, **TINY)
    text = notebook_text(nb)
    assert "rank 0/2: device cpu" in text and "rank 1/2: device cpu" in text  # printed by the ranks themselves
    record = json.loads((out / "record_scenes-ablation_context_scenes.json").read_text())
    assert record["grid"] == dict(record["grid"], runs=1, trained=1, cached=0, second_call_cached=1,
                                  launcher="torchrun")
    assert record["config"]["nproc_per_node"] == 2
    assert record["config"]["amp"] == "off" and record["precision"]["chosen_by"] == "the amp parameter"
    (run_dir,) = (out / "runs").iterdir()
    assert (run_dir / "launch_config.json").is_file()  # written by run_grid's torchrun launcher
    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["kind"] == "val" and log[-1]["iter"] == 2
    result = json.loads((run_dir / "result.json").read_text())
    assert result["iterations"] == 2 and result["final"]["miou"] == pytest.approx(record["metrics"]["B1+AVE"]["miou"]
                                                                                  / 100, abs=1e-3)


def test_05_bad_row_names_the_fix(run_notebook, tmp_path):
    papermill = pytest.importorskip("papermill")
    with pytest.raises(papermill.PapermillExecutionError, match="unknown Table 1 row 'B2"):
        run_notebook("05_ablation", rows="B2+AVE", out_dir=str(tmp_path / "bad"), **TINY)


def test_05_a_failed_rank_fails_the_cell_with_its_error(run_notebook, tmp_path):
    papermill = pytest.importorskip("papermill")
    with pytest.raises(papermill.PapermillExecutionError) as exc:
        run_notebook("05_ablation", rows="B1+AVE", seeds="0", nproc_per_node=2, device="cpu",
                     pretrained=str(tmp_path / "missing.pth"), out_dir=str(tmp_path / "f5"), **TINY)
    message = str(exc.value)
    assert "torchrun exited with status" in message and "missing.pth" in message and "not found" in message


@pytest.mark.parametrize("dataset, make, schedule", [
    ("ade20k", make_ade20k, dict(backbone="resnet50", crop_size=473, iterations=150_000)),
    ("voc", make_voc, dict(backbone="resnet101", crop_size=473, iterations=30_000)),
    ("cityscapes", make_cityscapes, dict(backbone="resnet101", crop_size=713, iterations=90_000)),
])
def test_05_dry_run_prints_each_data_sets_schedule_and_trains_nothing(run_notebook, tmp_path, dataset, make,
                                                                        schedule):
    make(tmp_path / dataset)
    out = tmp_path / "d5"
    nb = run_notebook("05_ablation", preset="paper", dataset=dataset, data_root=str(tmp_path / dataset),
                      pretrained="/weights/{backbone}_v2.pth", amp="bf16", rows="baseline,B1236+AVE+DR",
                      seeds="0,1,2", nproc_per_node=8, dry_run=True, out_dir=str(out))
    plan = json.loads((out / "plan.json").read_text())
    assert plan["runs"] == 6 and plan["nproc_per_node"] == 8 and [r["row"] for r in plan["rows"]] == [
        "baseline", "B1236+AVE+DR"]
    for row in plan["rows"]:
        assert {k: row[k] for k in schedule} == schedule and row["batch_size"] == 16 and row["seeds"] == [0, 1, 2]
        assert row["images_seen"] == 16 * schedule["iterations"] and row["checkpoint_bytes"] > 0
        assert row["differs_from_preset"]["pretrained"] == f"/weights/{schedule['backbone']}_v2.pth"
        assert 0.1 < row["gpu_hours"] < 100 and "not a measurement" in row["basis"]
    assert plan["rows"][0]["differs_from_preset"]["bins"] == []  # the baseline has no pyramid
    text = notebook_text(nb)
    assert "GPU time" in text and "dry run: cell skipped" in text and f"on {dataset}" in text
    assert not (out / "runs").exists() or not list((out / "runs").rglob("*.pt"))  # nothing trained
    assert not list(out.glob("record_*.json"))


def test_05_a_real_data_set_without_weights_names_the_parameter(run_notebook, tmp_path):
    papermill = pytest.importorskip("papermill")
    make_ade20k(tmp_path / "ade")
    with pytest.raises(papermill.PapermillExecutionError, match="set the chapter parameter pretrained"):
        run_notebook("05_ablation", preset="paper", dataset="ade20k", data_root=str(tmp_path / "ade"), dry_run=True,
                     out_dir=str(tmp_path / "n5"))

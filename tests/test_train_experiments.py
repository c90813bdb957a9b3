"""pspnet_lite.train.experiments: run_grid caches each finished run by a hash of its config; re-running reuses it;
an interrupted grid loses nothing; runs train in this process, in worker processes, or under torchrun."""

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ENV

from pspnet_lite import checkpoint
from pspnet_lite.data.context_scenes import GENERATOR_VERSION
from pspnet_lite.train import experiments as E
from pspnet_lite.train.config import TrainConfig
from pspnet_lite.train.presets import get_preset
from pspnet_lite.train.runlog import RunResult

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def configs():
    base = get_preset("scenes-tiny", iters=2, batch_size=2, num_train_images=8, num_val_images=2, log_every=1)
    return [base.replace(bins=(1,)), base.replace(bins=(1, 2, 3, 6))]


def counting(monkeypatch):
    calls = []
    real = E.train

    def train(cfg):
        calls.append(cfg.model.bins)
        return real(cfg)

    monkeypatch.setattr(E, "train", train)
    return calls


def test_hash_ignores_out_dir_progress_and_the_preset_name():
    a, b = configs()
    assert E.config_hash(a) == E.config_hash(a.replace(out_dir="elsewhere", progress=True, resume="auto"))
    assert E.config_hash(a) == E.config_hash(a.replace(preset=None))  # the preset's name is informational
    assert E.config_hash(a) != E.config_hash(b)
    assert len(E.config_hash(a)) == 16


def test_second_call_does_not_retrain(tmp_path, monkeypatch):
    calls = counting(monkeypatch)
    rows = E.run_grid(configs(), tmp_path)
    assert calls == [(1,), (1, 2, 3, 6)]
    assert all(isinstance(r, RunResult) for r in rows)
    assert [r.cached for r in rows] == [False, False]
    assert all(0 <= r.miou <= 1 and r.iterations == 2 for r in rows)
    assert [r.config for r in rows] == configs()  # the config asked for (not the run's out_dir/resume)
    mtimes = [(tmp_path / r.hash / "result.json").stat().st_mtime_ns for r in rows]
    again = E.run_grid(configs(), tmp_path)
    assert calls == [(1,), (1, 2, 3, 6)]  # no new training
    assert [r.cached for r in again] == [True, True]
    assert [r.miou for r in again] == [r.miou for r in rows]
    assert [r.config for r in again] == [r.config for r in rows]
    assert [(tmp_path / r.hash / "result.json").stat().st_mtime_ns for r in again] == mtimes
    assert len(E.load_rows(tmp_path)) == 2
    assert E.cached_result(configs()[0], tmp_path).miou == rows[0].miou
    assert E.cached_result(configs()[0].replace(seed=5), tmp_path) is None


def test_interrupted_grid_loses_nothing(tmp_path, monkeypatch):
    real = E.train

    def dies_on_second(cfg):
        if cfg.model.bins == (1, 2, 3, 6):
            raise KeyboardInterrupt
        return real(cfg)

    monkeypatch.setattr(E, "train", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        E.run_grid(configs(), tmp_path)
    monkeypatch.setattr(E, "train", real)
    calls = counting(monkeypatch)
    rows = E.run_grid(configs(), tmp_path)
    assert calls == [(1, 2, 3, 6)]  # only the unfinished run trains
    assert [r.cached for r in rows] == [True, False]


def test_hash_covers_only_fields_that_differ_from_the_defaults():
    expected = json.dumps({"_cache_version": E.CACHE_VERSION, "_context_scenes_version": GENERATOR_VERSION,
                           "iters": 7}, sort_keys=True)
    assert E.config_hash(TrainConfig(iters=7)) == hashlib.sha256(expected.encode()).hexdigest()[:16]
    expected = json.dumps({"_cache_version": E.CACHE_VERSION, "dataset": "ade20k"}, sort_keys=True)
    assert E.config_hash(TrainConfig(dataset="ade20k")) == hashlib.sha256(expected.encode()).hexdigest()[:16]
    assert E.config_hash(TrainConfig(iters=7)) != E.config_hash(TrainConfig(iters=8))


def test_hash_uses_the_flat_fields_so_nesting_the_model_changed_no_hash():
    """Model fields are hashed by their flat names, as before TrainConfig held a PSPNetConfig: a config keeps its
    hash (and its cached run) whether it was stored flat or nested."""
    cfg = TrainConfig().replace(backbone="lite", bins=(1,), aux=False, iters=9)
    flat = {"_cache_version": E.CACHE_VERSION, "_context_scenes_version": GENERATOR_VERSION, "aux": False,
            "backbone": "lite", "bins": [1], "iters": 9}
    assert E.config_hash(cfg) == hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]
    assert E.config_hash(TrainConfig.from_dict(cfg.flat_dict())) == E.config_hash(cfg)
    assert E.config_hash(TrainConfig.from_dict(cfg.to_dict())) == E.config_hash(cfg)


@pytest.mark.parametrize("changes, expected", [
    # the same hashes as the code before the re-layout (pspnet_lite.experiments.config_hash on the flat config)
    (dict(iters=7), "d72352bd8cbe79c4"),
    (dict(backbone="lite", bins=(1,), iters=450, seed=2), "922c65fdf78e6c4b"),
    # data_root is no longer in the key (a moved data set keeps its runs): the hash without it
    (dict(dataset="ade20k", num_classes=150, aux=False, data_root="/d"), "8bab5833803fd6ac"),
])
def test_pinned_hashes(changes, expected):
    assert E.config_hash(TrainConfig().replace(**changes)) == expected


def test_pinned_preset_hashes():
    # computed with this code; the preset's name is not hashed, so a preset hashes as its settings do (these
    # changed once, when workers, log_every and the other fields that do not change a result left the key)
    assert E.config_hash(get_preset("scenes-lite")) == "1f6711dbf845c905"
    assert E.config_hash(get_preset("scenes-tiny")) == "59d8ea6631ea1507"
    assert E.config_hash(get_preset("scenes-lite", bins=(1,), aux=False)) == "81f1598b27b839aa"


def test_the_key_holds_only_what_changes_the_result():
    """Moving the data, another GPU, more workers or another checkpoint cadence reuse a run; the recipe does not."""
    a = get_preset("ade20k-pspnet50", data_root="/data/ade", device="cuda:0", workers=8, ckpt_every=1000)
    same = a.replace(data_root="/mnt/ade", device="cuda:3", workers=2, ckpt_every=500, log_every=1)
    assert E.config_hash(a) == E.config_hash(same)
    for changed in (dict(iters=1000), dict(amp="bf16"), dict(micro_batch=4), dict(seed=1), dict(crop_size=465)):
        assert E.config_hash(a.replace(**changed)) != E.config_hash(a), changed


def test_a_result_row_stored_in_the_old_layout_is_reused(tmp_path, monkeypatch):
    cfg = configs()[0]
    h = E.config_hash(cfg)
    row = {"hash": h, "cached": False, "config": cfg.flat_dict(), "miou": 0.125, "macc": 0.25, "pixel_acc": 0.5,
           "iou": [0.125, None], "best_miou": 0.125, "iterations": 2, "train_time_s": 0.5,
           "history": [{"kind": "train", "iter": 1, "loss": 2.0}],
           "checkpoints": {"last": str(tmp_path / h / "last.pt"), "best": None}, "out_dir": str(tmp_path / h)}
    (tmp_path / h).mkdir()
    (tmp_path / h / "result.json").write_text(json.dumps(row))
    calls = counting(monkeypatch)
    [r] = E.run_grid([cfg], tmp_path)
    assert calls == [] and r.cached and r.config == cfg
    assert (r.miou, r.pixel_acc, r.iterations, r.hash) == (0.125, 0.5, 2, h)
    assert [x.miou for x in E.load_rows(tmp_path)] == [0.125]


def test_parallel_grid_equals_sequential(tmp_path):
    """jobs=2 trains in two one-thread worker processes: same rows as one-thread sequential runs."""
    parallel = E.run_grid(configs() + configs()[:1], tmp_path / "par", jobs=2, threads_per_job=1)
    assert [r.cached for r in parallel] == [False, False, True]  # the repeated config trains once
    sequential = E.run_grid(configs(), tmp_path / "seq")
    assert [r.miou for r in parallel[:2]] == [r.miou for r in sequential]
    assert [r.hash for r in parallel[:2]] == [r.hash for r in sequential]
    assert [r.cached for r in E.run_grid(configs(), tmp_path / "par", jobs=2)] == [True, True]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        E.run_grid(configs(), tmp_path, jobs=0)
    with pytest.raises(ValueError, match="expects TrainConfig objects, got dict"):
        E.run_grid([configs()[0].to_dict()], tmp_path)
    with pytest.raises(ValueError, match="launcher must be one of inprocess, torchrun; got 'slurm'"):
        E.run_grid(configs()[:1], tmp_path, launcher="slurm")


def test_parallel_grid_error_names_the_problem_and_keeps_finished_runs(tmp_path):
    good, _ = configs()
    bad = good.replace(seed=1, pretrained=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="missing.pt"):
        E.run_grid([good, bad], tmp_path, jobs=2, threads_per_job=1)
    assert E.run_grid([good], tmp_path)[0].cached  # the good run finished and is in the cache


def test_torchrun_command(tmp_path):
    cmd = E.torchrun_command(configs()[0], tmp_path, 4)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m"]
    assert cmd[6] == "pspnet_lite.train"
    for flag, value in (("--config", tmp_path / "launch_config.json"), ("--out-dir", tmp_path),
                        ("--resume", "auto"), ("--result", tmp_path / "result.json")):
        assert cmd[cmd.index(flag) + 1] == str(value)


def test_torchrun_launcher_trains_on_two_processes(tmp_path):
    cfg = get_preset("scenes-tiny", iters=2, batch_size=2, num_train_images=4, num_val_images=2, log_every=1)
    [inproc] = E.run_grid([cfg], tmp_path / "inprocess")
    [ddp] = E.run_grid([cfg], tmp_path / "torchrun", launcher="torchrun", nproc_per_node=2)
    assert ddp.config == inproc.config == cfg and ddp.hash == inproc.hash == E.config_hash(cfg)
    assert (ddp.world_size, inproc.world_size) == (2, 1) and ddp.iterations == 2 and not ddp.cached
    run_dir = tmp_path / "torchrun" / ddp.hash
    assert ddp.out_dir == str(run_dir) and (run_dir / "last.pt").is_file()
    stored = RunResult.from_dict(json.loads((run_dir / "result.json").read_text()))
    assert stored == ddp and 0 <= ddp.miou <= 1
    assert TrainConfig.from_dict(json.loads((run_dir / "launch_config.json").read_text())) == cfg
    [again] = E.run_grid([cfg], tmp_path / "torchrun", launcher="torchrun", nproc_per_node=2)
    assert again.cached and again.miou == ddp.miou


def test_a_failing_torchrun_run_raises_with_the_ranks_error(tmp_path):
    cfg = get_preset("scenes-tiny", iters=2, batch_size=3, num_train_images=4, num_val_images=2)
    with pytest.raises(RuntimeError, match=r"(?s)torchrun exited with status [1-9].*"
                                           r"error: batch_size 3 is not divisible by the world size 2"):
        E.run_grid([cfg], tmp_path, launcher="torchrun", nproc_per_node=2)
    assert not (tmp_path / E.config_hash(cfg) / "result.json").exists()


def test_a_run_killed_mid_way_resumes_from_its_checkpoint(tmp_path):
    """A grid process killed (SIGKILL, as a dead kernel or a pre-empted GPU job) after a checkpoint: calling the
    grid again resumes that run from its last.pt, and it ends with the weights of an uninterrupted run."""
    cfg = get_preset("scenes-tiny", iters=30, batch_size=2, num_train_images=8, num_val_images=2, ckpt_every=2,
                     val_every=-1, log_every=1)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    script = ("import json, sys, torch; torch.set_num_threads(1)\n"
              "from pspnet_lite.train import TrainConfig, run_grid\n"
              "run_grid([TrainConfig.from_dict(json.load(open(sys.argv[1])))], sys.argv[2])\n")
    run_dir = tmp_path / "grid" / E.config_hash(cfg)
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "cfg.json"), str(tmp_path / "grid")],
                            env=ENV)
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "last.pt").is_file() or checkpoint.read(run_dir / "last.pt")["iteration"] < 4:
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    killed_at = checkpoint.read(run_dir / "last.pt")["iteration"]
    assert 4 <= killed_at < 30 and not (run_dir / "result.json").exists()
    (row,) = E.run_grid([cfg], tmp_path / "grid")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if r["kind"] == "train"] == list(range(1, 31))  # resumed, nothing twice
    assert row.iterations == 30 and not row.cached
    (reference,) = E.run_grid([cfg], tmp_path / "uninterrupted")
    a, b = (checkpoint.read(Path(r.out_dir) / "last.pt")["model"] for r in (row, reference))
    assert all(torch.equal(a[k], b[k]) for k in a)

"""run_grid: each finished run is cached by a hash of its config; re-running reuses it; an interrupted grid
loses nothing."""

import dataclasses

import pytest

from pspnet_lite import experiments as E
from pspnet_lite import train as T
from pspnet_lite.presets import get_preset


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def configs():
    base = get_preset("scenes-tiny", iters=2, batch_size=2, num_train_images=8, num_val_images=2, log_every=1)
    return [dataclasses.replace(base, bins=(1,)), dataclasses.replace(base, bins=(1, 2, 3, 6))]


def counting(monkeypatch):
    calls = []
    real = T.train

    def train(cfg):
        calls.append(cfg.bins)
        return real(cfg)

    monkeypatch.setattr(T, "train", train)
    return calls


def test_hash_ignores_out_dir_and_progress():
    a, b = configs()
    assert E.config_hash(a) == E.config_hash(dataclasses.replace(a, out_dir="elsewhere", progress=True))
    assert E.config_hash(a) != E.config_hash(b)
    assert len(E.config_hash(a)) == 16


def test_second_call_does_not_retrain(tmp_path, monkeypatch):
    calls = counting(monkeypatch)
    rows = E.run_grid(configs(), tmp_path)
    assert calls == [(1,), (1, 2, 3, 6)]
    assert [r["cached"] for r in rows] == [False, False]
    assert all(0 <= r["miou"] <= 1 and r["iterations"] == 2 for r in rows)
    mtimes = [(tmp_path / r["hash"] / "result.json").stat().st_mtime_ns for r in rows]
    again = E.run_grid(configs(), tmp_path)
    assert calls == [(1,), (1, 2, 3, 6)]  # no new training
    assert [r["cached"] for r in again] == [True, True]
    assert [r["miou"] for r in again] == [r["miou"] for r in rows]
    assert [(tmp_path / r["hash"] / "result.json").stat().st_mtime_ns for r in again] == mtimes
    assert len(E.load_rows(tmp_path)) == 2


def test_interrupted_grid_loses_nothing(tmp_path, monkeypatch):
    calls = counting(monkeypatch)
    real = T.train

    def dies_on_second(cfg):
        if cfg.bins == (1, 2, 3, 6):
            raise KeyboardInterrupt
        return real(cfg)

    monkeypatch.setattr(T, "train", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        E.run_grid(configs(), tmp_path)
    monkeypatch.setattr(T, "train", real)
    calls = counting(monkeypatch)
    rows = E.run_grid(configs(), tmp_path)
    assert calls == [(1, 2, 3, 6)]  # only the unfinished run trains
    assert [r["cached"] for r in rows] == [True, False]


def test_hash_covers_only_fields_that_differ_from_the_defaults():
    import hashlib
    import json

    from pspnet_lite.data.context_scenes import GENERATOR_VERSION

    expected = json.dumps({"_cache_version": E.CACHE_VERSION, "_context_scenes_version": GENERATOR_VERSION,
                           "iters": 7}, sort_keys=True)
    assert E.config_hash(T.TrainConfig(iters=7)) == hashlib.sha256(expected.encode()).hexdigest()[:16]
    expected = json.dumps({"_cache_version": E.CACHE_VERSION, "dataset": "ade20k"}, sort_keys=True)
    assert E.config_hash(T.TrainConfig(dataset="ade20k")) == hashlib.sha256(expected.encode()).hexdigest()[:16]
    assert E.config_hash(T.TrainConfig(iters=7)) != E.config_hash(T.TrainConfig(iters=8))


def test_parallel_grid_equals_sequential(tmp_path):
    """jobs=2 trains in two one-thread worker processes: same rows as one-thread sequential runs."""
    parallel = E.run_grid(configs() + configs()[:1], tmp_path / "par", jobs=2, threads_per_job=1)
    assert [r["cached"] for r in parallel] == [False, False, True]  # the repeated config trains once
    sequential = E.run_grid(configs(), tmp_path / "seq")
    assert [r["miou"] for r in parallel[:2]] == [r["miou"] for r in sequential]
    assert [r["hash"] for r in parallel[:2]] == [r["hash"] for r in sequential]
    assert [r["cached"] for r in E.run_grid(configs(), tmp_path / "par", jobs=2)] == [True, True]


def test_bad_jobs(tmp_path):
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        E.run_grid(configs(), tmp_path, jobs=0)


def test_parallel_grid_error_names_the_problem_and_keeps_finished_runs(tmp_path):
    good, _ = configs()
    bad = dataclasses.replace(good, seed=1, pretrained=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="missing.pt"):
        E.run_grid([good, bad], tmp_path, jobs=2, threads_per_job=1)
    assert E.run_grid([good], tmp_path)[0]["cached"]  # the good run finished and is in the cache

"""pspnet_lite.train.runlog: the run's JSONL log (fresh runs and resumes) and its typed result, RunResult, which
also reads result rows stored before results were typed."""
import json
import math

import pytest
from conftest import tiny_config

from pspnet_lite.losses import DeepSupervisionLoss
from pspnet_lite.train.config import TrainConfig
from pspnet_lite.train.presets import get_preset
from pspnet_lite.train.runlog import NonFiniteLossError, RunLogger, RunResult
from pspnet_lite.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(tmp_path, **kw):
    return tiny_config(tmp_path, **{"iters": 3, **kw})


def _iters(path):
    return [(r["kind"], r["iter"]) for r in map(json.loads, path.read_text().splitlines())]


def test_fresh_run_starts_a_new_metrics_file_and_keeps_the_old_as_prev(tmp_path):
    cfg = tiny(tmp_path, iters=3)
    train(cfg)
    path = tmp_path / "run" / "metrics.jsonl"
    first = path.read_text()
    res = train(cfg.replace(iters=2))  # a fresh run into the same out_dir
    assert _iters(path) == [("train", 1), ("train", 2)]  # no duplicated iterations
    assert [json.loads(s) for s in path.read_text().splitlines()] == res.history
    assert (tmp_path / "run" / "metrics.jsonl.prev").read_text() == first


def test_resume_drops_the_records_written_after_the_checkpoint(tmp_path, monkeypatch):
    real, calls = DeepSupervisionLoss.forward, {"n": 0}

    def forward(self, outputs, target):  # the run crashes at iteration 4, after the checkpoint at 2
        calls["n"] += 1
        total, parts = real(self, outputs, target)
        return (total * float("nan") if calls["n"] >= 4 else total), parts

    monkeypatch.setattr(DeepSupervisionLoss, "forward", forward)
    cfg = tiny(tmp_path, iters=5, ckpt_every=2)
    with pytest.raises(NonFiniteLossError):
        train(cfg)
    path = tmp_path / "run" / "metrics.jsonl"
    with open(path, "a") as fh:
        fh.write('{"kind": "train", "it')  # a line torn by the crash
    assert path.read_text().count("\n") == 3  # iterations 1, 2, 3 (and the torn line)
    monkeypatch.setattr(DeepSupervisionLoss, "forward", real)
    resumed = train(cfg.replace(resume="auto"))
    assert _iters(path) == [("train", i) for i in range(1, 6)]  # 3 from the crashed part was dropped
    assert [r["iter"] for r in resumed.history] == [3, 4, 5]
    assert not (tmp_path / "run" / "metrics.jsonl.prev").exists()


def test_logger_writes_json_safe_records_and_only_when_enabled(tmp_path):
    log = RunLogger(tmp_path, enabled=True, tensorboard=False)
    log.log({"kind": "val", "iter": 1, "iou": [0.5, math.nan], "miou": 0.5})
    log.close()
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"kind": "val", "iter": 1, "iou": [0.5, None],
                                                                    "miou": 0.5}
    assert log.history == [{"kind": "val", "iter": 1, "iou": [0.5, None], "miou": 0.5}]
    quiet = RunLogger(tmp_path / "rank1", enabled=False, tensorboard=False)
    quiet.log({"kind": "train", "iter": 1})
    assert quiet.history == [{"kind": "train", "iter": 1}] and not (tmp_path / "rank1").exists()


def result(**kw):
    final = {"miou": 0.25, "macc": 0.5, "pixel_acc": 0.75, "iou": [0.25, None], "acc": [0.5, None], "absent": "nan",
             "num_pixels": 10, "protocol": "ss | whole"}
    history = [{"kind": "train", "iter": 1, "loss": 2.0}, {"kind": "val", "iter": 1, "miou": 0.25}]
    base = dict(config=get_preset("scenes-tiny", bins=(1, 2)), final=final, best_miou=0.25, best=final, iterations=1,
                train_time_s=1.5, history=history, checkpoints={"last": "r/last.pt", "best": "r/best.pt"},
                out_dir="r", metrics_file="r/metrics.jsonl", class_names=["a", "b"], hash="abc", cached=False)
    return RunResult(**{**base, **kw})


def test_run_result_properties_and_json_round_trip():
    r = result()
    assert (r.miou, r.macc, r.pixel_acc, r.iou) == (0.25, 0.5, 0.75, [0.25, None])
    assert r.train_records() == [{"kind": "train", "iter": 1, "loss": 2.0}]
    d = r.to_dict()
    assert d["config"]["model"]["bins"] == [1, 2]  # nested, as TrainConfig.to_dict
    back = RunResult.from_dict(json.loads(json.dumps(d)))
    assert back == r and back.config.model.bins == (1, 2)
    assert RunResult(config=TrainConfig()).miou is None  # no validation
    nan = result(final={"miou": math.nan, "iou": [math.nan]})
    assert json.loads(json.dumps(nan.to_dict()))["final"] == {"miou": None, "iou": [None]}  # strict JSON


def test_run_result_reads_an_old_result_row():
    """run_grid rows before results were typed: flat scores, flat config (model fields at the top level)."""
    cfg = get_preset("scenes-tiny", bins=(1,), iters=2)
    row = {"hash": "21f246201042fbbb", "cached": False, "config": cfg.flat_dict(), "miou": 0.2, "macc": 0.3,
           "pixel_acc": 0.7, "iou": [0.2, None], "best_miou": 0.2, "iterations": 2, "train_time_s": 0.8,
           "history": [{"kind": "train", "iter": 1, "loss": 2.5}], "checkpoints": {"last": "d/last.pt", "best": None},
           "out_dir": "d"}
    assert "model" not in row["config"] and row["config"]["bins"] == [1]
    r = RunResult.from_dict(json.loads(json.dumps(row)))
    assert r.config == cfg and r.config.model.bins == (1,)
    assert (r.miou, r.macc, r.pixel_acc, r.iou) == (0.2, 0.3, 0.7, [0.2, None])
    assert (r.best_miou, r.iterations, r.train_time_s, r.hash, r.cached, r.out_dir) == (0.2, 2, 0.8,
                                                                                       "21f246201042fbbb", False, "d")
    assert r.checkpoints == {"last": "d/last.pt", "best": None}
    assert r.train_records() == [{"kind": "train", "iter": 1, "loss": 2.5}]
    assert RunResult.from_dict(r.to_dict()) == r  # and it is stored anew in the typed layout

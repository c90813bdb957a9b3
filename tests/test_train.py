"""Trainer: LR schedule, head LR ratio, alpha, exact resume, atomic checkpoints, NaN stop, AMP/channels_last,
accumulation, frozen BN, bad input. Tiny lite models on 64x64 ContextScenes, CPU, a few iterations each."""

import dataclasses
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from pspnet_lite import train as T
from pspnet_lite.presets import get_preset


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(tmp_path, **kw):
    base = dict(out_dir=str(tmp_path / "run"), iters=6, batch_size=4, num_train_images=16, num_val_images=4,
                log_every=1, val_every=-1, workers=0, progress=False)
    return get_preset("scenes-tiny", **{**base, **kw})


def train_records(result):
    return [r for r in result["history"] if r["kind"] == "train"]


def test_poly_lr_values_and_head_ratio(tmp_path):
    cfg = tiny(tmp_path, iters=10, stop_at=5, lr=0.02)
    recs = train_records(T.train(cfg))
    assert [r["iter"] for r in recs] == [1, 2, 3, 4, 5]
    for r in recs:  # lr used in iteration r["iter"] (0-based it = iter - 1)
        expected = 0.02 * (1 - (r["iter"] - 1) / 10) ** 0.9
        assert r["lr"] == pytest.approx(expected, rel=1e-12)
        assert r["lr_head"] == pytest.approx(10 * expected, rel=1e-12)
    assert recs[0]["lr"] == 0.02
    assert recs[4]["lr"] == pytest.approx(0.02 * 0.6 ** 0.9)
    assert T.poly_lr(0.01, 0, 100) == 0.01 and T.poly_lr(0.01, 100, 100) == 0.0
    assert T.poly_lr(0.01, 50, 100) == pytest.approx(0.01 * 0.5 ** 0.9)


def test_param_groups_split_head_and_switch_off():
    from pspnet_lite.model import PSPNet

    model = PSPNet(num_classes=5, backbone="lite")
    groups = T.param_groups(model, 0.01, 10.0)
    head = {id(p) for m in model.head_modules() for p in m.parameters()}
    backbone = {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in groups[1]["params"]} == head
    assert {id(p) for p in groups[0]["params"]} == backbone
    assert groups[1]["lr"] / groups[0]["lr"] == 10.0
    cfg = T.TrainConfig(head_lr_mult=1.0, lr=0.01, iters=10)
    opt, _ = T.build_optimizer(model, cfg)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.01]
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 1e-4 for g in opt.param_groups)


def test_alpha_weights_the_aux_loss(tmp_path):
    for alpha in (0.4, 0.0):
        recs = train_records(T.train(tiny(tmp_path / str(alpha), iters=3, alpha=alpha)))
        for r in recs:
            assert r["loss"] == pytest.approx(r["loss_main"] + alpha * r["loss_aux"], rel=1e-6)
            assert r["loss_aux"] > 0.1


def _load_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_resume_is_exact(tmp_path):
    # augmentation and dropout on: exactness needs the per-sample augmentation seeds and the RNG states
    straight = T.train(tiny(tmp_path / "a", iters=6, dropout=0.1, augment=True))
    T.train(tiny(tmp_path / "b", iters=6, stop_at=3))
    part = _load_state(tmp_path / "b" / "run" / "last.pt")
    assert part["iteration"] == 3
    resumed = T.train(tiny(tmp_path / "b", iters=6, resume="auto", workers=2))  # workers do not change the data
    a = _load_state(straight["checkpoints"]["last"])
    b = _load_state(resumed["checkpoints"]["last"])
    assert a["iteration"] == b["iteration"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 6
    la = [r["loss"] for r in train_records(straight)][3:]
    lb = [r["loss"] for r in train_records(resumed)]
    assert la == lb


def test_checkpoint_contents_load_weights_only(tmp_path):
    res = T.train(tiny(tmp_path, iters=2))
    ck = T.load_checkpoint(res["checkpoints"]["last"])
    for key in ("model", "model_config", "optimizer", "scheduler", "scaler", "iteration", "rng", "sampler", "config"):
        assert key in ck
    assert ck["config"]["iters"] == 2 and ck["config"]["backbone"] == "lite"
    assert set(ck["rng"][0]) == {"torch", "cuda", "numpy", "python"}
    assert ck["sampler"]["samples_seen"] == 8
    json.dumps(ck["config"])  # plain JSON-able
    model, _ = T.model_from_checkpoint(res["checkpoints"]["last"])
    assert model.num_classes == ck["model_config"]["num_classes"]


KILL_SCRIPT = r"""
import os, signal, sys, torch
from pspnet_lite import train as T
path = sys.argv[1]
real_save = torch.save
def half_save(obj, fh):
    fh.write(b"PK\x03\x04 half a checkpoint")
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)   # killed mid-write
torch.save = half_save
T.atomic_save({"model": {"w": torch.ones(3)}, "model_config": {}}, path)
"""


def test_half_written_checkpoint_never_replaces_the_good_one(tmp_path):
    good = tmp_path / "last.pt"
    T.atomic_save({"model": {"w": torch.zeros(3)}, "model_config": {"num_classes": 2}, "iteration": 7}, good)
    before = good.read_bytes()
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(good)], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    assert good.read_bytes() == before
    ck = T.load_checkpoint(good)
    assert ck["iteration"] == 7 and torch.equal(ck["model"]["w"], torch.zeros(3))
    # an exception mid-write also leaves the old file and no temp file
    def boom(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")
    real = torch.save
    torch.save = boom
    try:
        with pytest.raises(OSError):
            T.atomic_save({"x": 1}, good)
    finally:
        torch.save = real
    assert good.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp") and str(os.getpid()) in p.name] == []


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from pspnet_lite.losses import DeepSupervisionLoss

    calls = {"n": 0}
    real = DeepSupervisionLoss.forward

    def forward(self, outputs, target):
        calls["n"] += 1
        total, parts = real(self, outputs, target)
        if calls["n"] >= 4:
            total = total * float("nan")
        return total, parts

    monkeypatch.setattr(DeepSupervisionLoss, "forward", forward)
    cfg = tiny(tmp_path, iters=8, ckpt_every=2)
    with pytest.raises(T.NonFiniteLossError, match=r"loss is nan at iteration 4.*last good checkpoint"):
        T.train(cfg)
    ck = T.load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["iter"] for s in lines] == [1, 2, 3]


def test_bf16_channels_last_and_fp16_on_cpu(tmp_path):
    res = T.train(tiny(tmp_path / "bf16", iters=2, amp="bf16", channels_last=True))
    assert all(r["loss"] is not None and r["loss"] > 0 for r in train_records(res))
    res = T.train(tiny(tmp_path / "fp16", iters=2, amp="fp16"))
    assert all(r["loss"] is not None for r in train_records(res))


@pytest.mark.skipif(not os.environ.get("PSPNET_SLOW_TESTS"), reason="torch.compile on CPU takes minutes; set PSPNET_SLOW_TESTS=1")
def test_compile_on_cpu(tmp_path):
    pytest.importorskip("torch._inductor")
    t0 = time.perf_counter()
    res = T.train(tiny(tmp_path, iters=2, compile=True, aux=True))
    assert all(r["loss"] > 0 for r in train_records(res))
    print(f"compile run took {time.perf_counter() - t0:.1f}s")


def test_accumulation_matches_full_batch_when_bn_frozen(tmp_path):
    # with BN in eval mode and no dropout, 2 micro-batches of 2 give the gradient of one batch of 4
    kw = dict(iters=3, dropout=0.0, freeze_bn="all", augment=False)
    full = _load_state(T.train(tiny(tmp_path / "full", **kw))["checkpoints"]["last"])
    acc = _load_state(T.train(tiny(tmp_path / "acc", micro_batch=2, **kw))["checkpoints"]["last"])
    for k, v in full["model"].items():
        torch.testing.assert_close(acc["model"][k], v, rtol=1e-4, atol=1e-6)
    # with training-mode BN they differ: accumulation does not enlarge BN's batch (paper §4)
    kw["freeze_bn"] = "none"
    full = _load_state(T.train(tiny(tmp_path / "full2", **kw))["checkpoints"]["last"])
    acc = _load_state(T.train(tiny(tmp_path / "acc2", micro_batch=2, **kw))["checkpoints"]["last"])
    w = "backbone.layer1.0.conv1.weight"
    assert not torch.allclose(acc["model"][w], full["model"][w], atol=1e-6)


def test_freeze_bn_keeps_backbone_statistics(tmp_path):
    res = T.train(tiny(tmp_path, iters=2, freeze_bn="backbone"))
    sd = _load_state(res["checkpoints"]["last"])["model"]
    assert torch.equal(sd["backbone.bn1.running_mean"], torch.zeros_like(sd["backbone.bn1.running_mean"]))
    assert int(sd["backbone.bn1.num_batches_tracked"]) == 0
    assert int(sd["cls.1.num_batches_tracked"]) == 2


def test_validation_metrics_logged_and_best_checkpoint(tmp_path):
    res = T.train(tiny(tmp_path, iters=4, val_every=2, log_every=2))
    vals = [r for r in res["history"] if r["kind"] == "val"]
    assert [v["iter"] for v in vals] == [2, 4]
    assert 0 <= vals[-1]["miou"] <= 1 and 0 <= vals[-1]["pixel_acc"] <= 1 and len(vals[-1]["iou"]) > 1
    assert res["final"]["miou"] == vals[-1]["miou"]
    assert res["best_miou"] == max(v["miou"] for v in vals)
    assert os.path.isfile(res["checkpoints"]["best"])
    lines = [json.loads(s) for s in open(res["metrics_file"])]
    assert lines == res["history"]
    rec = lines[0]
    assert {"loss", "loss_main", "loss_aux", "lr", "lr_head", "images_per_s"} <= set(rec)


def test_bad_input_fails_before_work(tmp_path):
    with pytest.raises(ValueError, match="not divisible by the world size 3"):
        T.check_config(T.TrainConfig(batch_size=16), world=3)
    with pytest.raises(ValueError, match="micro_batch 3 must divide"):
        T.check_config(T.TrainConfig(batch_size=16, micro_batch=3), world=2)
    with pytest.raises(ValueError, match="unknown TrainConfig field 'lrr'"):
        T.apply_overrides(T.TrainConfig(), ["lrr=0.1"])
    with pytest.raises(ValueError, match="amp must be one of"):
        T.train(tiny(tmp_path, amp="fp8"))
    with pytest.raises(ValueError):
        T.train(tiny(tmp_path, dataset="ade20k", data_root=str(tmp_path / "empty"), image_size=None))
    res = T.train(tiny(tmp_path / "a", iters=1))
    with pytest.raises(ValueError, match="another architecture or class count.*num_classes"):
        T.train(tiny(tmp_path / "b", iters=2, num_classes=7, resume=res["checkpoints"]["last"]))
    assert not (tmp_path / "b" / "run" / "last.pt").exists()

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


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


def _grads(trainer, batches):
    trainer.opt.zero_grad(set_to_none=True)
    T.set_train_mode(trainer.model, trainer.cfg.freeze_bn)
    parts = trainer.step(batches)
    return parts, {k: p.grad.clone() for k, p in trainer.model.named_parameters() if p.grad is not None}


def test_step_normalises_by_the_labelled_pixels_of_the_whole_batch(tmp_path):
    # ignore pixels spread unevenly over the 4 images (90%, 50%, 10%, 0%): averaging each micro-batch's own
    # mean would weight pixels unequally; the step's gradient must be that of one batch of 4
    kw = dict(dropout=0.0, freeze_bn="all")
    torch.manual_seed(0)
    x = torch.randn(4, 3, 64, 64)  # (4, 3, 64, 64)
    y = torch.randint(0, 6, (4, 64, 64))  # (4, 64, 64)
    for i, frac in enumerate((0.9, 0.5, 0.1, 0.0)):
        y[i, :int(frac * 64)] = 255
    counts = (y != 255).sum((1, 2)).tolist()
    full, acc = T.Trainer(tiny(tmp_path / "full", **kw)), T.Trainer(tiny(tmp_path / "acc", micro_batch=1, **kw))
    try:
        assert (full.accum, acc.accum) == (1, 4)
        pf, gf = _grads(full, [(x, y)])
        pa, ga = _grads(acc, [(x[i:i + 1], y[i:i + 1]) for i in range(4)])
        # the reference: the deep-supervision loss of the whole batch, mean over its labelled pixels
        T.set_train_mode(full.model, "all")
        ref, parts = full.criterion(full.model(x), y)
        assert pf[0].item() == pytest.approx(ref.item(), rel=1e-6)
        torch.testing.assert_close(pa, pf, rtol=1e-5, atol=0)  # logged: the batch means, either way
        assert pa[1].item() == pytest.approx(parts["main"].item(), rel=1e-6)
        assert set(ga) == set(gf)
        for k in gf:
            torch.testing.assert_close(ga[k], gf[k], rtol=1e-4, atol=1e-7, msg=k)
        # what the old per-micro-batch mean would have given is far off (the test has teeth)
        per_image = [acc.criterion(acc.model(x[i:i + 1]), y[i:i + 1])[0].item() for i in range(4)]
        naive = sum(per_image) / 4
        weighted = sum(v * c for v, c in zip(per_image, counts)) / sum(counts)
        assert weighted == pytest.approx(pf[0].item(), rel=1e-5) and abs(naive - weighted) > 1e-3
    finally:
        full.close()
        acc.close()


def _ignored_per_image(cfg, iteration=0):
    """Ignore-pixel counts of the images of one global batch, as the trainer's sampler draws them."""
    train_set, _ = T.build_datasets(cfg)
    sampler = T.IterationBatchSampler(len(train_set), cfg.batch_size, cfg.batch_size, 1, 0, 1, cfg.seed,
                                      iteration, iteration + 1)
    return [int((train_set[key][1] == 255).sum()) for key in next(iter(sampler))]


def test_accumulation_matches_full_batch_with_ignore_pixels_when_bn_frozen(tmp_path):
    # random scale (0.5-2) and rotation pad with 255: the micro-batches hold unequal numbers of labelled
    # pixels. With BN in eval mode and no dropout, 4 micro-batches of 1 give the run of one batch of 4
    kw = dict(iters=3, dropout=0.0, freeze_bn="all", augment=True)
    cfg = tiny(tmp_path / "full", **kw)
    assert (cfg.scale_min, cfg.scale_max, cfg.rotate) == (0.5, 2.0, 10.0)
    ignored = _ignored_per_image(cfg, iteration=1)  # e.g. [118, 2075, 2160, 0] of 4096 pixels each
    assert max(ignored) > 0 and len(set(ignored)) > 1, ignored  # present, and unevenly spread
    full_run = T.train(cfg)
    acc_run = T.train(tiny(tmp_path / "acc", micro_batch=1, **kw))
    full, acc = (_load_state(r["checkpoints"]["last"]) for r in (full_run, acc_run))
    for k, v in full["model"].items():
        torch.testing.assert_close(acc["model"][k], v, rtol=1e-4, atol=1e-6, msg=k)
    la, lf = ([r["loss"] for r in train_records(r)] for r in (acc_run, full_run))
    assert la == pytest.approx(lf, rel=1e-5)
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
    with pytest.raises(ValueError), pytest.warns(T.FromScratchWarning):
        T.train(tiny(tmp_path, dataset="ade20k", data_root=str(tmp_path / "empty"), image_size=None))
    res = T.train(tiny(tmp_path / "a", iters=1))
    with pytest.raises(ValueError, match="another architecture or class count.*num_classes"):
        T.train(tiny(tmp_path / "b", iters=2, num_classes=7, resume=res["checkpoints"]["last"]))
    assert not (tmp_path / "b" / "run" / "last.pt").exists()


def _iters(path):
    return [(r["kind"], r["iter"]) for r in map(json.loads, path.read_text().splitlines())]


def test_fresh_run_starts_a_new_metrics_file_and_keeps_the_old_as_prev(tmp_path):
    cfg = tiny(tmp_path, iters=3)
    T.train(cfg)
    path = tmp_path / "run" / "metrics.jsonl"
    first = path.read_text()
    res = T.train(dataclasses.replace(cfg, iters=2))  # a fresh run into the same out_dir
    assert _iters(path) == [("train", 1), ("train", 2)]  # no duplicated iterations
    assert [json.loads(s) for s in path.read_text().splitlines()] == res["history"]
    assert (tmp_path / "run" / "metrics.jsonl.prev").read_text() == first


def test_resume_drops_the_records_written_after_the_checkpoint(tmp_path, monkeypatch):
    from pspnet_lite.losses import DeepSupervisionLoss

    real, calls = DeepSupervisionLoss.forward, {"n": 0}

    def forward(self, outputs, target):  # the run crashes at iteration 4, after the checkpoint at 2
        calls["n"] += 1
        total, parts = real(self, outputs, target)
        return (total * float("nan") if calls["n"] >= 4 else total), parts

    monkeypatch.setattr(DeepSupervisionLoss, "forward", forward)
    cfg = tiny(tmp_path, iters=5, ckpt_every=2)
    with pytest.raises(T.NonFiniteLossError):
        T.train(cfg)
    path = tmp_path / "run" / "metrics.jsonl"
    with open(path, "a") as fh:
        fh.write('{"kind": "train", "it')  # a line torn by the crash
    assert path.read_text().count("\n") == 3  # iterations 1, 2, 3 (and the torn line)
    monkeypatch.setattr(DeepSupervisionLoss, "forward", real)
    resumed = T.train(dataclasses.replace(cfg, resume="auto"))
    assert _iters(path) == [("train", i) for i in range(1, 6)]  # 3 from the crashed part was dropped
    assert [r["iter"] for r in resumed["history"]] == [3, 4, 5]
    assert not (tmp_path / "run" / "metrics.jsonl.prev").exists()


def test_real_dataset_without_pretrained_weights_warns_at_start(tmp_path):
    cfg = tiny(tmp_path, dataset="ade20k", data_root=str(tmp_path / "no-data"), image_size=None, num_classes=150)
    with pytest.warns(T.FromScratchWarning, match=r"from random weights.*ImageNet.*--pretrained.*resnet50_v2\.pth"):
        with pytest.raises(ValueError):  # the warning comes first, then the missing data stops the run
            T.train(cfg)
    assert T.from_scratch_message(dataclasses.replace(cfg, pretrained="resnet50_v2.pth")) is None
    assert T.from_scratch_message(tiny(tmp_path)) is None  # ContextScenes trains from scratch by design
    msg = T.from_scratch_message(get_preset("ade20k-pspnet50"))
    assert "semseg" in msg and "last.pt" in msg and "--pretrained-kind" in msg


def test_dropout_stream_is_not_the_weight_initialisation_stream(tmp_path):
    """Replaying torch.manual_seed(seed) for dropout made the masks a function of the initial weights."""
    cfg = get_preset("scenes-tiny", iters=1, out_dir=str(tmp_path), val_every=-1)
    trainer = T.Trainer(cfg)
    try:
        after_setup = torch.rand(8)
    finally:
        trainer.close()
    torch.manual_seed(cfg.seed)
    assert not torch.equal(after_setup, torch.rand(8))
    assert T.stream_seed(0, "dropout", 0) != T.stream_seed(0, "dropout", 1) != T.stream_seed(1, "dropout", 0)
    assert T.stream_seed(0, "dropout", 0) == T.stream_seed(0, "dropout", 0) < 2**63

"""pspnet_lite.train.trainer: LR schedule (poly_lr drives the LambdaLR), head LR ratio, alpha, exact resume,
bit-exact reruns, NaN stop, AMP/channels_last, accumulation, frozen BN, validation, bad input. Tiny lite models
on 64x64 ContextScenes, CPU, a few iterations each."""

import errno
import json
import os
import time

import pytest
import torch
from conftest import tiny_config

from pspnet_lite import checkpoint
from pspnet_lite.inference import Protocol
from pspnet_lite.losses import DeepSupervisionLoss
from pspnet_lite.model import PSPNet
from pspnet_lite.train import cli as train_cli
from pspnet_lite.train import trainer as TR
from pspnet_lite.train.config import FromScratchWarning, TrainConfig
from pspnet_lite.train.presets import get_preset
from pspnet_lite.train.runlog import CheckpointWriteError, NonFiniteLossError, RunResult
from pspnet_lite.train.sampling import IterationBatchSampler, build_datasets, stream_seed
from pspnet_lite.train.trainer import Trainer, build_optimizer, param_groups, poly_lr, set_train_mode, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(tmp_path, **kw):
    return tiny_config(tmp_path, **{"iters": 6, **kw})


def _load_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_poly_lr_values_and_head_ratio(tmp_path):
    cfg = tiny(tmp_path, iters=10, stop_at=5, lr=0.02)
    result = train(cfg)
    assert isinstance(result, RunResult)
    recs = result.train_records()
    assert [r["iter"] for r in recs] == [1, 2, 3, 4, 5]
    for r in recs:  # lr used in iteration r["iter"] (0-based it = iter - 1)
        expected = 0.02 * (1 - (r["iter"] - 1) / 10) ** 0.9
        assert r["lr"] == pytest.approx(expected, rel=1e-12)
        assert r["lr_head"] == pytest.approx(10 * expected, rel=1e-12)
    assert recs[0]["lr"] == 0.02
    assert recs[4]["lr"] == pytest.approx(0.02 * 0.6 ** 0.9)
    assert poly_lr(0.01, 0, 100) == 0.01 and poly_lr(0.01, 100, 100) == 0.0
    assert poly_lr(0.01, 50, 100) == pytest.approx(0.01 * 0.5 ** 0.9)
    assert poly_lr(0.01, 150, 100) == 0.0  # past the end: clamped, never negative


def test_the_optimiser_schedule_is_poly_lr(monkeypatch):
    """The LambdaLR of build_optimizer calls poly_lr (no lambda of its own): both groups, head at 10x."""
    calls = []
    real = TR.poly_lr

    def spy(*args, **kw):
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(TR, "poly_lr", spy)
    model = PSPNet(num_classes=3, backbone="lite", width=4)
    cfg = TrainConfig(lr=0.02, head_lr_mult=10.0, iters=7, poly_power=0.5)
    opt, sched = build_optimizer(model, cfg)
    assert [g["name"] for g in opt.param_groups] == ["backbone", "head"]
    for it in range(6):
        lrs = [g["lr"] for g in opt.param_groups]
        assert lrs[0] == pytest.approx(poly_lr(0.02, it, 7, 0.5), rel=1e-12), it
        assert lrs[1] == pytest.approx(poly_lr(0.2, it, 7, 0.5), rel=1e-12), it
        opt.step()
        sched.step()
    assert calls and all(c[2:] == (7, 0.5) for c in calls)  # the config's iters and power reach poly_lr


def test_param_groups_split_head_and_switch_off():
    model = PSPNet(num_classes=5, backbone="lite")
    groups = param_groups(model, 0.01, 10.0)
    head = {id(p) for m in model.head_modules() for p in m.parameters()}
    backbone = {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in groups[1]["params"]} == head
    assert {id(p) for p in groups[0]["params"]} == backbone
    assert groups[1]["lr"] / groups[0]["lr"] == 10.0
    cfg = TrainConfig(head_lr_mult=1.0, lr=0.01, iters=10)
    opt, _ = build_optimizer(model, cfg)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.01]
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 1e-4 for g in opt.param_groups)


def test_build_model_reads_the_nested_architecture():
    cfg = TrainConfig().replace(backbone="lite", layers=(1, 1, 2, 1), bins=(1, 3), aux=False)
    model = TR.build_model(cfg, num_classes=5)
    assert model.config.num_classes == 5 and model.config.bins == (1, 3) and model.aux is None
    assert [len(getattr(model.backbone, f"layer{i}")) for i in range(1, 5)] == [1, 1, 2, 1]
    with pytest.raises(ValueError, match="pretrained weights .*nope.pt.* not found"):
        TR.build_model(cfg.replace(pretrained="nope.pt"), num_classes=5)


def test_alpha_weights_the_aux_loss(tmp_path):
    for alpha in (0.4, 0.0):
        recs = train(tiny(tmp_path / str(alpha), iters=3, alpha=alpha)).train_records()
        for r in recs:
            assert r["loss"] == pytest.approx(r["loss_main"] + alpha * r["loss_aux"], rel=1e-6)
            assert r["loss_aux"] > 0.1


def test_same_seed_and_threads_give_bit_identical_weights(tmp_path):
    """Two runs of one config (augmentation and dropout on) end in the same weights, bit for bit."""
    kw = dict(iters=3, dropout=0.1, augment=True)
    a, b = train(tiny(tmp_path / "a", **kw)), train(tiny(tmp_path / "b", **kw))
    sa, sb = (_load_state(r.checkpoints["last"])["model"] for r in (a, b))
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert [r["loss"] for r in a.train_records()] == [r["loss"] for r in b.train_records()]
    c = _load_state(train(tiny(tmp_path / "c", seed=1, **kw)).checkpoints["last"])["model"]
    assert not torch.equal(c["cls.4.weight"], sa["cls.4.weight"])  # the seed matters (the test has teeth)


def test_resume_is_exact(tmp_path):
    # augmentation and dropout on: exactness needs the per-sample augmentation seeds and the RNG states
    straight = train(tiny(tmp_path / "a", iters=6, dropout=0.1, augment=True))
    train(tiny(tmp_path / "b", iters=6, stop_at=3))
    part = _load_state(tmp_path / "b" / "run" / "last.pt")
    assert part["iteration"] == 3
    resumed = train(tiny(tmp_path / "b", iters=6, resume="auto", workers=2))  # workers do not change the data
    a = _load_state(straight.checkpoints["last"])
    b = _load_state(resumed.checkpoints["last"])
    assert a["iteration"] == b["iteration"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 6
    la = [r["loss"] for r in straight.train_records()][3:]
    lb = [r["loss"] for r in resumed.train_records()]
    assert la == lb


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
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
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at iteration 4.*last good checkpoint"):
        train(cfg)
    ck = checkpoint.load_trainer_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["iter"] for s in lines] == [1, 2, 3]


def test_bf16_channels_last_and_fp16_on_cpu(tmp_path):
    res = train(tiny(tmp_path / "bf16", iters=2, amp="bf16", channels_last=True))
    assert all(r["loss"] is not None and r["loss"] > 0 for r in res.train_records())
    res = train(tiny(tmp_path / "fp16", iters=2, amp="fp16"))
    assert all(r["loss"] is not None for r in res.train_records())


@pytest.mark.skipif(not os.environ.get("PSPNET_SLOW_TESTS"),
                    reason="torch.compile on CPU takes minutes; set PSPNET_SLOW_TESTS=1")
def test_compile_on_cpu(tmp_path):
    pytest.importorskip("torch._inductor")
    t0 = time.perf_counter()
    res = train(tiny(tmp_path, iters=2, compile=True, aux=True))
    assert all(r["loss"] > 0 for r in res.train_records())
    print(f"compile run took {time.perf_counter() - t0:.1f}s")


def _grads(trainer, batches):
    trainer.opt.zero_grad(set_to_none=True)
    set_train_mode(trainer.model, trainer.cfg.freeze_bn)
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
    full, acc = Trainer(tiny(tmp_path / "full", **kw)), Trainer(tiny(tmp_path / "acc", micro_batch=1, **kw))
    try:
        assert (full.accum, acc.accum) == (1, 4)
        pf, gf = _grads(full, [(x, y)])
        pa, ga = _grads(acc, [(x[i:i + 1], y[i:i + 1]) for i in range(4)])
        # the reference: the deep-supervision loss of the whole batch, mean over its labelled pixels
        set_train_mode(full.model, "all")
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
    train_set, _ = build_datasets(cfg)
    sampler = IterationBatchSampler(len(train_set), cfg.batch_size, cfg.batch_size, 1, 0, 1, cfg.seed,
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
    full_run = train(cfg)
    acc_run = train(tiny(tmp_path / "acc", micro_batch=1, **kw))
    full, acc = (_load_state(r.checkpoints["last"]) for r in (full_run, acc_run))
    for k, v in full["model"].items():
        torch.testing.assert_close(acc["model"][k], v, rtol=1e-4, atol=1e-6, msg=k)
    la, lf = ([r["loss"] for r in run.train_records()] for run in (acc_run, full_run))
    assert la == pytest.approx(lf, rel=1e-5)
    # with training-mode BN they differ: accumulation does not enlarge BN's batch (paper §4)
    kw["freeze_bn"] = "none"
    full = _load_state(train(tiny(tmp_path / "full2", **kw)).checkpoints["last"])
    acc = _load_state(train(tiny(tmp_path / "acc2", micro_batch=2, **kw)).checkpoints["last"])
    w = "backbone.layer1.0.conv1.weight"
    assert not torch.allclose(acc["model"][w], full["model"][w], atol=1e-6)


def test_freeze_bn_keeps_backbone_statistics(tmp_path):
    res = train(tiny(tmp_path, iters=2, freeze_bn="backbone"))
    sd = _load_state(res.checkpoints["last"])["model"]
    assert torch.equal(sd["backbone.bn1.running_mean"], torch.zeros_like(sd["backbone.bn1.running_mean"]))
    assert int(sd["backbone.bn1.num_batches_tracked"]) == 0
    assert int(sd["cls.1.num_batches_tracked"]) == 2


def test_validation_metrics_logged_and_best_checkpoint(tmp_path):
    res = train(tiny(tmp_path, iters=4, val_every=2, log_every=2))
    vals = [r for r in res.history if r["kind"] == "val"]
    assert [v["iter"] for v in vals] == [2, 4]
    assert 0 <= vals[-1]["miou"] <= 1 and 0 <= vals[-1]["pixel_acc"] <= 1 and len(vals[-1]["iou"]) > 1
    assert res.final["miou"] == res.miou == vals[-1]["miou"]
    assert res.best_miou == max(v["miou"] for v in vals)
    assert os.path.isfile(res.checkpoints["best"])
    lines = [json.loads(s) for s in open(res.metrics_file)]
    assert lines == res.history
    rec = lines[0]
    assert {"loss", "loss_main", "loss_aux", "lr", "lr_head", "images_per_s"} <= set(rec)


def test_bad_input_fails_before_work(tmp_path):
    with pytest.raises(ValueError, match="amp must be one of"):
        train(tiny(tmp_path, amp="fp8"))
    with pytest.raises(ValueError, match="/empty"):  # a missing data root fails before any model is built
        train(tiny(tmp_path, dataset="ade20k", data_root=str(tmp_path / "empty")))
    res = train(tiny(tmp_path / "a", iters=1))
    with pytest.raises(ValueError, match="another architecture or class count.*num_classes"):
        train(tiny(tmp_path / "b", iters=2, num_classes=7, resume=res.checkpoints["last"]))
    assert not (tmp_path / "b" / "run" / "last.pt").exists()


def _tiny_ade20k(root, n=2):
    """An ADE20K directory with ``n`` 64x64 images per split (the layout prepare_ade20k.py writes)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for split in ("training", "validation"):
        (root / "ADEChallengeData2016" / "images" / split).mkdir(parents=True)
        (root / "ADEChallengeData2016" / "annotations" / split).mkdir(parents=True)
        for i in range(n):
            name = f"ADE_{split}_{i:08d}"
            cv2.imwrite(str(root / "ADEChallengeData2016" / "images" / split / f"{name}.jpg"),
                        rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
            cv2.imwrite(str(root / "ADEChallengeData2016" / "annotations" / split / f"{name}.png"),
                        rng.integers(0, 151, (64, 64), dtype=np.uint8))
    return root


@pytest.mark.filterwarnings("ignore:ADE20K .* the data set is incomplete")
def test_real_dataset_without_pretrained_weights_warns_at_start(tmp_path):
    root = _tiny_ade20k(tmp_path / "ade")
    cfg = tiny(tmp_path, dataset="ade20k", data_root=str(root), num_train_images=2, num_val_images=2, iters=1)
    assert cfg.image_size is None and cfg.model.num_classes is None  # scenes-tiny's own fields were dropped
    with pytest.warns(FromScratchWarning, match=r"from random weights.*ImageNet.*--pretrained.*resnet50_v2\.pth"):
        trainer = Trainer(cfg)
    try:
        assert trainer.num_classes == 150
    finally:
        trainer.close()


def test_dropout_stream_is_not_the_weight_initialisation_stream(tmp_path):
    """Replaying torch.manual_seed(seed) for dropout made the masks a function of the initial weights."""
    cfg = get_preset("scenes-tiny", iters=1, out_dir=str(tmp_path), val_every=-1)
    trainer = Trainer(cfg)
    try:
        after_setup = torch.rand(8)
    finally:
        trainer.close()
    torch.manual_seed(cfg.seed)
    assert not torch.equal(after_setup, torch.rand(8))
    torch.manual_seed(stream_seed(cfg.seed, "dropout", 0))
    assert torch.equal(after_setup, torch.rand(8))  # rank 0's own stream


def first_batches(trainer):
    """The micro-batches of the trainer's first iteration, as fit() draws them."""
    cfg = trainer.cfg
    sampler = IterationBatchSampler(len(trainer.train_set), cfg.batch_size, trainer.micro, trainer.accum, 0, 1,
                                    cfg.seed, 0, 1)
    loader = iter(torch.utils.data.DataLoader(trainer.train_set, batch_sampler=sampler))
    return [next(loader) for _ in range(trainer.accum)]


def test_the_loss_is_float32_under_bf16_autocast(tmp_path):
    """bf16 logits come out of autocast; the loss the gradient starts from is computed in float32."""
    trainer = Trainer(tiny(tmp_path, amp="bf16"))
    seen = []
    criterion = trainer.criterion

    def spy(out, y):
        loss, parts = criterion(out, y)
        seen.append((out[0].dtype, loss.dtype))
        return loss, parts

    spy.ignore_index = criterion.ignore_index
    trainer.criterion = spy
    try:
        parts = trainer.step(first_batches(trainer))
    finally:
        trainer.close()
    assert seen == [(torch.bfloat16, torch.float32)]
    assert parts.dtype == torch.float64 and torch.isfinite(parts).all()


def test_step_reads_nothing_back_from_the_device(tmp_path, monkeypatch):
    """A training step never waits for the device: no .item(), .cpu(), .tolist() or float() of a tensor (on a
    GPU each would stall the host until the step finished); the losses are read once per logged window."""
    trainer = Trainer(tiny(tmp_path))
    batches = first_batches(trainer)
    calls = []
    for name in ("item", "cpu", "tolist", "__float__"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _n=name, _r=real, **k: calls.append(_n) or
                            _r(self, *a, **k))
    try:
        parts = trainer.step(batches)
    finally:
        monkeypatch.undo()
        trainer.close()
    assert calls == [] and parts.shape == (3,)


def test_the_count_goes_to_the_device_without_a_synchronising_copy(tmp_path, monkeypatch):
    """``torch.tensor(value, device="cuda")`` copies from pageable memory and waits for the stream: the step builds
    its host values on the host and moves them with ``non_blocking=True`` (pinned first on CUDA)."""
    trainer = Trainer(tiny(tmp_path))
    batches = first_batches(trainer)
    made, moved = [], []
    real_tensor, real_to = torch.tensor, torch.Tensor.to
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made.append(k.get("device")) or real_tensor(*a, **k))
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: moved.append(k.get("non_blocking")) or
                        real_to(self, *a, **k))
    try:
        trainer.step(batches)
    finally:
        monkeypatch.undo()
        trainer.close()
    assert made and all(d is None for d in made)  # host tensors only
    assert moved and all(moved)  # every copy to the device is queued, none waits


def test_cudnn_benchmark_for_fixed_crops_not_for_whole_images(tmp_path, monkeypatch):
    """cuDNN times its kernels per shape: on for the fixed training crops (set by the trainer on CUDA), off while
    whole images of many sizes are validated, on again after; sliding windows keep it (one shape)."""
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = True
        seen = []
        real = TR.predict
        monkeypatch.setattr(TR, "predict", lambda *a, **k: seen.append(torch.backends.cudnn.benchmark) or
                            real(*a, **k))
        cfg = tiny(tmp_path, val_batch_size=2)
        model = TR.build_model(cfg, 16)
        val = build_datasets(cfg.replace(val_every=0))[1]
        TR.validate(model, val, 16, cfg, "cpu")
        TR.validate(model, val, 16, cfg.replace(val_protocol="whole"), "cpu")
        assert seen and not any(seen) and torch.backends.cudnn.benchmark is True  # whole images: off, then restored
        seen.clear()
        monkeypatch.setitem(TR.PROTOCOLS, "ss", Protocol(mode="slide", crop_size=32))
        TR.validate(model, val, 16, cfg, "cpu")
        assert seen and all(seen)
        torch.backends.cudnn.benchmark = False
        Trainer(tiny(tmp_path / "cpu", iters=1)).close()
        assert torch.backends.cudnn.benchmark is False  # a CPU run leaves the flag alone
    finally:
        torch.backends.cudnn.benchmark = before


def test_every_loader_sets_one_opencv_thread_per_worker(tmp_path, monkeypatch):
    """Without worker_init_fn OpenCV runs as wide as the machine in every DataLoader worker; the trainer's loaders
    (training and validation) pass the package's, and inside a worker OpenCV then has one thread."""
    import cv2

    from pspnet_lite.data import data_loader, worker_init_fn

    class Threads(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return cv2.getNumThreads()

    assert [int(b) for b in data_loader(Threads(), batch_size=1, num_workers=1)] == [1, 1]
    inits = []
    real = torch.utils.data.DataLoader.__init__

    def spy(self, *a, **k):
        inits.append(k.get("worker_init_fn"))
        real(self, *a, **k)

    monkeypatch.setattr(torch.utils.data.DataLoader, "__init__", spy)
    train(tiny(tmp_path, iters=1, val_every=0))
    assert len(inits) == 2 and all(f is worker_init_fn for f in inits)  # the training and the validation loader


@pytest.mark.parametrize("code, fails_in", [(errno.ENOSPC, "write"), (errno.EACCES, "open")])
def test_a_checkpoint_that_cannot_be_written_keeps_the_last_one_and_stops_in_one_line(tmp_path, monkeypatch, capsys,
                                                                                   code, fails_in):
    """Disk full while writing (half a file written) or permission denied when opening, from the second checkpoint
    on: the previous last.pt stays loadable, no temporary file is left, and the run stops with one line naming the
    folder and the cause (the command line: that line and exit status 1)."""
    real_open, real_save, writes = open, torch.save, {"n": 0}

    def fake_open(path, mode="r", *a, **k):
        if str(path).endswith(".tmp") and "w" in mode:
            writes["n"] += 1
            if writes["n"] >= 2 and fails_in == "open":
                raise PermissionError(code, os.strerror(code), str(path))
        return real_open(path, mode, *a, **k)

    def fake_save(obj, f, *a, **k):
        if writes["n"] >= 2 and fails_in == "write":
            f.write(b"half a checkpoint")
            raise OSError(code, os.strerror(code))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(checkpoint, "open", fake_open, raising=False)  # checkpoint.save's open
    monkeypatch.setattr(torch, "save", fake_save)
    with pytest.raises(CheckpointWriteError) as exc:
        train(tiny(tmp_path, iters=6, ckpt_every=2))
    run, message = tmp_path / "run", str(exc.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"cannot write checkpoints into {run}: {os.strerror(code)} [{errno.errorcode[code]}]")
    assert "(writing last.pt at iteration 4); stopping, last.pt of iteration 2 is kept" in message
    assert checkpoint.load_trainer_checkpoint(run / "last.pt")["iteration"] == 2
    assert sorted(p.name for p in run.iterdir() if p.suffix in (".pt", ".tmp")) == ["last.pt"]
    writes["n"] = 0
    capsys.readouterr()
    args = train_cli.get_args_parser().parse_args([
        "--preset", "scenes-tiny", "--iters", "6", "--ckpt-every", "2", "--batch-size", "4", "--set",
        "num_train_images=16", "--val-every", "-1", "--workers", "0", "--no-progress",
        "--out-dir", str(tmp_path / "c")])
    with pytest.raises(SystemExit) as stop:
        train_cli.main(args)
    err = capsys.readouterr().err
    assert stop.value.code == 1 and err.count("\n") == 1 and err.startswith(
        f"error: cannot write checkpoints into {tmp_path / 'c'}: {os.strerror(code)}")


def test_validation_pads_to_8k_plus_1_only_for_networks_trained_on_such_crops():
    """The paper's crops (473, 713) give exact maps in training, so validation pads whole images to 8k+1; the book's
    128 crops trained the stretched map, so validation scores as it trained (pspnet_lite.inference.aligned_for)."""
    for crop, stride, align in ((473, 8, True), (713, 8, True), (128, 8, False), (64, 8, False), (473, 16, False)):
        for name in ("ss", "ms+flip", "whole"):
            p = TR.val_protocol(name, crop, stride)
            assert (p.align, p.crop_size) == (align, crop), (name, crop, stride)

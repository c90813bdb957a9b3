"""pspnet_lite.train.distributed and DDP on gloo: 2 processes (env:// on 127.0.0.1, SyncBatchNorm) give the
weights of 1 process with the same global batch (paper §4: batch 16 with BN statistics gathered across GPUs),
with the full augmentation on.

Why this can hold exactly (to float rounding): the sampler hands rank r of W the block
``[r*m, (r+1)*m)`` of each global batch, every sample's augmentation is seeded by (seed, epoch, index),
SyncBatchNorm normalises the whole micro-batch across ranks, DDP averages gradients, and the loss is
normalised by the labelled-pixel count of the whole global batch (all-reduced before the forward,
times W to undo DDP's averaging). The last point matters here: random scale (0.5-2) and rotation pad
with ignore pixels (255), so the ranks hold unequal numbers of labelled pixels, and a per-rank mean
would not reproduce the 1-process gradient. Dropout is 0 (each rank draws its own dropout masks, so
they cannot match one process's).
The learning rate is 1e-3: at 1e-2 (head 1e-1) this 4-image random-init run is chaotic, and the float
rounding differences of a different reduction order (even 1 vs 2 threads in ONE process) grow to 1% of
the loss by iteration 3. At 1e-3 the 2-process run differs from the 1-process run by as much as the
1-process run with 1 vs 2 threads differs from itself (measured without augmentation: loss 3.5148214
vs 3.5148575 at iteration 3, weights within 5e-5), hence the tolerances.
"""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from pspnet_lite.train import distributed as D
from pspnet_lite.train.config import check_config
from pspnet_lite.train.presets import get_preset
from pspnet_lite.train.sampling import IterationBatchSampler, build_datasets
from pspnet_lite.train.trainer import build_model, train


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(out_dir, **kw):
    return get_preset("scenes-tiny", out_dir=str(out_dir), iters=3, batch_size=4, num_train_images=16,
                      num_val_images=4, dropout=0.0, augment=True, scale_min=0.5, scale_max=2.0, rotate=10.0,
                      log_every=1, val_every=0, val_batch_size=2, workers=0, progress=False, lr=1e-3, seed=1, **kw)


def ignored_per_rank(cfg, world, iteration):
    """Ignore pixels each rank of ``world`` gets in one iteration (the trainer's sampler and augmentation)."""
    train_set, _ = build_datasets(cfg)
    out = []
    for rank in range(world):
        sampler = IterationBatchSampler(len(train_set), cfg.batch_size, cfg.batch_size // world, 1, rank, world,
                                        cfg.seed, iteration, iteration + 1)
        out.append(sum(int((train_set[key][1] == 255).sum()) for key in next(iter(sampler))))
    return out


def _worker(rank, world, port, cfg, out):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    result = train(cfg)
    if rank == 0:
        torch.save({"history": result.history, "final": result.final, "world": result.world_size}, out)


def run_ddp(cfg, world, out):
    mp.spawn(_worker, args=(world, free_port(), cfg, str(out)), nprocs=world, join=True)
    return torch.load(out, weights_only=False)


@pytest.mark.parametrize("micro_batch", [None, 1])
def test_two_process_gloo_matches_one_process(tmp_path, micro_batch):
    torch.set_num_threads(1)
    spread = [ignored_per_rank(config(tmp_path), 2, it) for it in range(3)]
    # the ranks hold unequal numbers of labelled pixels (seed 1: [[0, 5074], [4320, 2411], [2727, 1071]]
    # ignore pixels of 2 x 4096 per rank)
    assert max(abs(a - b) for a, b in spread) > 2000, spread
    single = train(config(tmp_path / "single", micro_batch=None if micro_batch is None else 2))
    ddp = run_ddp(config(tmp_path / "ddp", micro_batch=micro_batch), 2, tmp_path / "ddp.pt")
    assert ddp["world"] == 2 and single.world_size == 1
    a = torch.load(tmp_path / "single" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert b["world_size"] == 2 and len(b["rng"]) == 2  # every rank's RNG state is stored
    assert a["iteration"] == b["iteration"] == 3
    init = build_model(config(tmp_path), a["model_config"]["num_classes"]).state_dict()
    for k, v in a["model"].items():
        # running variances: CPUSyncBatchNorm derives them from all-reduced sums of x and x^2, one process's
        # BN from its own kernel; the rounding of the two formulas differs by ~1.5e-4 relative (measured)
        rtol = 1e-3 if "running_var" in k else 1e-4
        torch.testing.assert_close(b["model"][k].float(), v.float(), rtol=rtol, atol=5e-5, msg=k)
    params = [k for k in a["model"] if a["model"][k].is_floating_point() and "running" not in k]
    ua = torch.cat([(a["model"][k] - init[k]).flatten() for k in params])  # what training changed
    ub = torch.cat([(b["model"][k] - init[k]).flatten() for k in params])
    assert ((ua - ub).norm() / ua.norm()).item() < 5e-3
    # the weights moved, and the BN running statistics are those of the global micro-batch
    assert (a["model"]["cls.4.weight"] - init["cls.4.weight"]).abs().max() > 1e-4
    torch.testing.assert_close(b["model"]["backbone.bn1.running_var"], a["model"]["backbone.bn1.running_var"])
    la = [r["loss"] for r in single.train_records()]
    lb = [r["loss"] for r in ddp["history"] if r["kind"] == "train"]
    assert la == pytest.approx(lb, rel=1e-4)
    # validation is sharded over ranks and all-reduced: same scores
    assert single.final["pixel_acc"] == pytest.approx(ddp["final"]["pixel_acc"], abs=1e-3)


def test_world_size_must_divide_batch(tmp_path):
    with pytest.raises(ValueError, match="not divisible by the world size 3"):
        check_config(config(tmp_path), world=3)  # batch 4 over 3 processes


def test_helpers_without_a_process_group(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    assert not D.is_dist() and (D.get_rank(), D.get_world_size(), D.get_local_rank(), D.env_world_size()) == (
        0, 1, 0, 1)
    assert D.init_distributed("cpu") is False  # nothing to join: the caller owns no group
    t = torch.arange(3.0)
    assert D.all_reduce_sum(t) is t and D.all_gather_object({"a": 1}) == [{"a": 1}]
    D.barrier()
    D.cleanup()
    assert D.resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert D.resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available; use --device cpu"):
            D.resolve_device("cuda")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="WORLD_SIZE=2 but RANK is not set; launch with torchrun"):
        D.init_distributed("cpu")


def test_cpu_sync_batchnorm_is_plain_batchnorm_on_one_process():
    torch.manual_seed(0)
    plain = build_model(config("unused"), num_classes=3)
    synced = D.convert_sync_batchnorm(build_model(config("unused"), num_classes=3), "cpu")
    bns = [m for m in synced.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(isinstance(m, D.CPUSyncBatchNorm) for m in bns)
    assert synced.state_dict().keys() == plain.state_dict().keys()  # checkpoints are interchangeable
    x = torch.randn(2, 3, 32, 32)
    plain.train()
    synced.train()
    torch.manual_seed(1)
    a = plain(x)[0]
    torch.manual_seed(1)
    b = synced(x)[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("asked", ["cuda", "cuda:0", "auto"])
def test_under_torchrun_each_rank_takes_its_local_rank_gpu(monkeypatch, asked):
    """A notebook resolves "auto" to cuda:0 and hands it to torchrun: rank 3 must still take GPU 3."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert D.resolve_device(asked) == torch.device("cuda", 3)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert D.resolve_device("cuda:2") == torch.device("cuda", 2)  # one process: the index asked for

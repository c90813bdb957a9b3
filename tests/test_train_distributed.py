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

import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import ENV, tiny_config

from pspnet_lite import checkpoint
from pspnet_lite.train import distributed as D
from pspnet_lite.train.config import check_config
from pspnet_lite.train.faults import DRILL_ENV, CompileSyncBatchNormWarning
from pspnet_lite.train.presets import get_preset
from pspnet_lite.train.sampling import IterationBatchSampler, build_datasets
from pspnet_lite.train.trainer import Trainer, build_model, train


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


def _start_worker(rank, world, port, cfgs, out):
    """Rank ``rank`` in a group the test owns (so the trainers do not destroy it): a compile run (torch.compile
    stubbed: only the warning is under test), then a resume from a folder that only rank 0's disk holds."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    dist.init_process_group("gloo", init_method="env://")
    torch.compile = lambda net: net
    report = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(cfgs["compile"]).close()
    report["compile_warnings"] = [str(w.message) for w in caught if w.category is CompileSyncBatchNormWarning]
    try:
        Trainer(cfgs["resume"].replace(out_dir=str(Path(cfgs["resume"].out_dir) / f"node{rank}"))).close()
    except ValueError as e:
        report["error"], report["every_rank"] = str(e), getattr(e, "every_rank", False)
    Path(out, f"rank{rank}.json").write_text(json.dumps(report))
    dist.barrier()  # neither rank tears the group down while the other still talks through it (gloo aborts then)
    dist.destroy_process_group()


def test_ranks_must_agree_on_the_start_and_compile_with_sync_bn_warns_once(tmp_path):
    """Multi-node resume without a shared disk: rank 0 finds a last.pt, rank 1 (another node's disk) none. Both
    stop with the same one-line error instead of training from different iterations (and hanging at the end).
    And compile=True with SyncBatchNorm under torchrun warns once, on rank 0, naming the PyTorch issue."""
    first = train(tiny_config(tmp_path / "first", iters=2))
    (tmp_path / "nodes" / "node0").mkdir(parents=True)
    (tmp_path / "nodes" / "node1").mkdir()
    shutil.copy(first.checkpoints["last"], tmp_path / "nodes" / "node0" / "last.pt")
    cfgs = {"compile": tiny_config(tmp_path / "compile", iters=2, compile=True),
            "resume": tiny_config(tmp_path, iters=4, resume="auto").replace(out_dir=str(tmp_path / "nodes"))}
    mp.spawn(_start_worker, args=(2, free_port(), cfgs, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert len(r0["compile_warnings"]) == 1 and r1["compile_warnings"] == []
    assert "graph at every SyncBatchNorm (https://github.com/pytorch/pytorch/issues/161302" in r0["compile_warnings"][0]
    host = socket.gethostname()
    assert r0["error"] == r1["error"] and r0["every_rank"] and len(r0["error"].splitlines()) == 1
    assert r0["error"].startswith(f"the ranks disagree on where to start (rank 0 on {host} found one at iteration 2; "
                                  f"rank 1 on {host} found no checkpoint; resume='auto'")
    assert "put out_dir on a folder all nodes share" in r0["error"]
    assert not (tmp_path / "nodes" / "node1" / "last.pt").exists()


# One small run, launched three ways by torchrun: 2 processes on one node, 2 "nodes" of 1 process (c10d rendezvous
# on 127.0.0.1), and 2 processes of which one is killed after the checkpoint of iteration 2 and restarted. Dropout
# is on: each rank's stream is restored from the checkpoint, so all three end with the same weights.
TORCHRUN_FLAGS = ("--preset", "scenes-tiny", "--iters", "4", "--batch-size", "4", "--set", "num_train_images=8",
                  "--num-val-images", "4", "--ckpt-every", "2", "--log-every", "1", "--workers", "0", "--no-progress",
                  "--device", "cpu", "--resume", "auto")


def torchrun(out: Path, *launch: str, env: dict | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", *launch, "-m", "pspnet_lite.train", *TORCHRUN_FLAGS,
           "--out-dir", str(out), "--result", str(out / "result.json")]
    env = {**ENV, D.FRESH_STORE_ENV: "1", **(env or {})}  # as the README's launch commands
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finished(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    return out


def weights(run: Path) -> dict:
    return checkpoint.read(run / "last.pt")["model"]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """``torchrun --standalone --nproc_per_node 2``: (run directory, its output)."""
    out = tmp_path_factory.mktemp("torchrun") / "single_node"
    return out, finished(torchrun(out, "--standalone", "--nproc_per_node=2"))


def test_under_torchrun_only_rank_0_prints_and_writes_the_result(two_process_run):
    run, out = two_process_run
    assert out.count("done: 4 iterations") == 1  # printed after the process group is gone: rank 0 only
    assert out.count("rank 0/2: device cpu") == 1 and out.count("rank 1/2: device cpu") == 1
    table = [line for line in out.splitlines() if line.split()[:2] == ["sky", "stuff"]]  # one class table
    assert len(table) == 1, out
    assert json.loads((run / "result.json").read_text())["world_size"] == 2


def test_two_nodes_on_one_machine_equal_two_processes_on_one_node(two_process_run, tmp_path):
    """``torchrun --nnodes 2 --node-rank 0|1 --rdzv-backend c10d`` with one gloo process per node: the same run."""
    port = free_port()
    nodes = [torchrun(tmp_path / "nodes", "--nnodes=2", f"--node-rank={i}", "--nproc-per-node=1",
                      "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=pspnet-test")
             for i in range(2)]
    outs = [finished(p) for p in nodes]
    assert sum(o.count("done: 4 iterations") for o in outs) == 1
    a, b = weights(two_process_run[0]), weights(tmp_path / "nodes")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_killed_rank_restarts_the_job_from_last_pt(two_process_run, tmp_path):
    """torchrun --max-restarts 1 and --resume auto: rank 1 dies (SIGKILL) right after the checkpoint of iteration 2;
    torchrun stops rank 0, starts both again, they resume from last.pt and end with the uninterrupted run's weights."""
    run = tmp_path / "killed"
    out = finished(torchrun(run, "--standalone", "--nproc_per_node=2", "--max-restarts=1", env={DRILL_ENV: "1:2"}))
    assert f"rank 1: {DRILL_ENV}=1:2, killing this process after the checkpoint of iteration 2" in out
    assert out.count("rank 0/2: device cpu") == 2  # started twice
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]  # resumed at 3, nothing twice
    a, b = weights(two_process_run[0]), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_restartable_job_on_the_shared_store_is_warned(monkeypatch):
    """torchrun --max-restarts with the agent's shared store (torch >= 2.4): restarted ranks may read stale peer
    addresses (measured: 3 restarts in 4 failed with "Connection refused", 0 in 4 with a store per attempt)."""
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "1")
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    assert "Export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 before torchrun" in D.restart_store_problem()
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "False")  # what that variable makes torchrun announce
    assert D.restart_store_problem() is None
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "0")
    assert D.restart_store_problem() is None

"""Run grids of trainings with a result cache: the book's ablations (Tables 1-3) re-run only what changed.

``run_grid(configs, cache_dir)`` trains each :class:`~pspnet_lite.train.config.TrainConfig` in turn and
returns one :class:`~pspnet_lite.train.runlog.RunResult` per config (a config repeated in the list is
trained once). Each run lives in ``cache_dir/<hash>/``, where ``<hash>`` is the SHA-256 of the config's
non-default fields as sorted JSON (except ``out_dir``, which is derived from the hash, the preset's
name, and the cosmetic ``progress``/``resume``/``tensorboard``), plus a cache version. A finished run writes
``result.json`` there (atomically); calling ``run_grid`` again returns the stored result without training. A grid
interrupted half-way loses nothing: finished runs are cached, and the unfinished one resumes from its
``last.pt`` (set ``ckpt_every`` to checkpoint often).

How the runs are trained: in this process (``launcher="inprocess"``, the default), ``jobs=N`` at a time
in worker processes (CPU grids), or each with ``torchrun --nproc_per_node N`` (``launcher="torchrun"``:
DDP and SyncBatchNorm over N processes; the run's output streams through, and a failed rank fails the
grid with its error).

    from pspnet_lite.train import get_preset, run_grid
    rows = run_grid([get_preset("scenes-lite", bins=b) for b in [(1,), (1, 2, 3, 6)]], "cache/bins")
    [(r.config.model.bins, r.miou) for r in rows]
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.context_scenes import GENERATOR_VERSION
from .config import TrainConfig
from .distributed import FRESH_STORE_ENV
from .runlog import RunResult
from .trainer import train

# fields that do not change a run's result, left out of its cache key: the run directory, display, resuming,
# the preset's name (informational: two presets that resolve to the same settings share their runs), and where
# and how the run executes: the device (another GPU, or its index), the DataLoader workers (augmentation is
# seeded per sample, not per worker), the data set's location (a moved copy keeps its runs: give a different
# data set its own cache folder), and how often it logs and checkpoints
VOLATILE = ("preset", "out_dir", "progress", "resume", "tensorboard", "device", "workers", "data_root",
            "ckpt_every", "log_every")
# 2: the loss is normalised by the global labelled-pixel count (results of version 1 differ slightly)
# 3: dropout draws from its own random stream, no longer a replay of the weight initialisation's
CACHE_VERSION = 3
LAUNCHERS = ("inprocess", "torchrun")


def config_hash(cfg: TrainConfig) -> str:
    """16 hex digits of SHA-256 over the fields that differ from ``TrainConfig()`` (minus :data:`VOLATILE`).

    The fields are the flat ones (:meth:`TrainConfig.flat_dict`: the model's beside the run's), so a
    run keeps its hash whether its config came from a checkpoint written before or after the
    architecture was nested. Hashing only the non-default fields keeps existing caches valid when a
    new field with a neutral default is added; :data:`CACHE_VERSION` is bumped when training itself
    changes in a way that makes old results wrong. ContextScenes runs also hash the generator's
    version, so runs on an older version of the synthetic data are never reused.
    """
    defaults = TrainConfig().flat_dict()
    d = {k: v for k, v in cfg.flat_dict().items() if k not in VOLATILE and v != defaults[k]}
    d["_cache_version"] = CACHE_VERSION
    if cfg.dataset == "context_scenes":  # generated data: a new generator version means new results
        d["_context_scenes_version"] = GENERATOR_VERSION
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def write_json(obj, path: str | os.PathLike) -> None:
    """Write ``obj`` as JSON atomically (temp file + rename): a reader sees the whole file or none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def cached_result(cfg: TrainConfig, cache_dir: str | os.PathLike) -> RunResult | None:
    """The stored result of ``cfg`` in ``cache_dir``, or None if it has not finished there."""
    done = Path(cache_dir) / config_hash(cfg) / "result.json"
    if not done.is_file():
        return None
    result = RunResult.from_dict(json.loads(done.read_text()))
    result.cached = True
    return result


def torchrun_command(cfg: TrainConfig, run_dir: str | os.PathLike, nproc: int, max_restarts: int = 0) -> list[str]:
    """The command that trains ``cfg`` on ``nproc`` processes into ``run_dir`` (resuming its ``last.pt``).

    It is ``torchrun`` as this interpreter's ``python -m torch.distributed.run``; the config travels
    whole, as the ``config.json`` it reads (``--config``), and rank 0 writes ``result.json``. With
    ``max_restarts`` > 0 torchrun restarts every rank when one dies, and they resume from ``last.pt``."""
    run_dir = Path(run_dir)
    restarts = [f"--max-restarts={max_restarts}"] if max_restarts else []
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *restarts,
            "-m", "pspnet_lite.train", "--config", str(run_dir / "launch_config.json"),
            "--out-dir", str(run_dir), "--resume", "auto", "--no-progress", "--result", str(run_dir / "result.json")]


def _torchrun(cfg: TrainConfig, run_dir: Path, nproc: int) -> RunResult:
    write_json(cfg.to_dict(), run_dir / "launch_config.json")
    cmd = torchrun_command(cfg, run_dir, nproc)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.setdefault(FRESH_STORE_ENV, "1")  # a store of its own for each attempt, should torchrun restart the ranks
    tail: list[str] = []
    errors: list[str] = []  # the ranks' own one-line errors, which torchrun's traceback would bury
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        for line in proc.stdout:  # stream every rank's output to this process (a notebook cell, a log), always:
            tail = (tail + [line])[-40:]  # a silent failed rank is the worst way to lose a GPU-day
            if "error: " in line and line not in errors:
                errors.append(line)
            print(line, end="", flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun exited with status {proc.returncode} training {run_dir}:\n" + "".join(errors)
                           + "its last lines:\n" + "".join(tail))
    return RunResult.from_dict(json.loads((run_dir / "result.json").read_text()))


def run_one(cfg: TrainConfig, cache_dir: str | os.PathLike, progress: bool = False, launcher: str = "inprocess",
            nproc_per_node: int = 1) -> RunResult:
    """Train ``cfg`` (or load its cached result) and return the :class:`RunResult`."""
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"run_grid expects TrainConfig objects, got {type(cfg).__name__}")
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {', '.join(LAUNCHERS)}; got {launcher!r}")
    stored = cached_result(cfg, cache_dir)
    if stored is not None:
        return stored
    h = config_hash(cfg)
    run_dir = Path(cache_dir) / h
    run_dir.mkdir(parents=True, exist_ok=True)
    if launcher == "torchrun":
        result = _torchrun(cfg, run_dir, nproc_per_node)
    else:
        result = train(cfg.replace(out_dir=str(run_dir), resume="auto", progress=progress))
    result.config, result.hash, result.cached, result.out_dir = cfg, h, False, str(run_dir)
    write_json(result.to_dict(), run_dir / "result.json")
    return result


def _run_in_worker(cfg: TrainConfig, cache_dir: str, threads: int) -> RunResult:
    """:func:`run_one` in a worker process of :func:`run_grid` (``threads`` torch threads, no bars)."""
    torch.set_num_threads(threads)
    return run_one(cfg, cache_dir, progress=False)


def run_grid(configs, cache_dir: str | os.PathLike, progress: bool = False, jobs: int = 1,
             threads_per_job: int | None = None, launcher: str = "inprocess",
             nproc_per_node: int = 1) -> list[RunResult]:
    """Train every config not already in ``cache_dir`` and return all results (:class:`RunResult`), in order.

    ``launcher="torchrun"`` trains each run with ``torchrun --nproc_per_node nproc_per_node`` (one run
    after another). ``jobs > 1`` (in-process launcher only) trains that many configs at once, each in its
    own process with ``threads_per_job`` torch threads (default: this process's threads divided by
    ``jobs``, at least 1). Small CPU runs scale better this way than with more threads per run: on 2
    cores, 2 one-thread runs at once finish a grid in about half the time. A CPU run's result depends on
    its thread count (not on ``jobs``), so one-thread runs give the same numbers sequentially and in
    parallel. Use ``jobs=1`` on a GPU: the runs would share one device.
    """
    configs, jobs = list(configs), int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    for c in configs:
        if not isinstance(c, TrainConfig):
            raise ValueError(f"run_grid expects TrainConfig objects, got {type(c).__name__}")
    todo = {}  # hash -> config, each unfinished config once
    for c in configs:
        if cached_result(c, cache_dir) is None:
            todo.setdefault(config_hash(c), c)
    if jobs == 1 or len(todo) <= 1 or launcher != "inprocess":
        return [run_one(c, cache_dir, progress, launcher, nproc_per_node)
                for c in tqdm(configs, desc="grid", disable=not progress, mininterval=1)]
    trained = _train_in_workers(todo, cache_dir, jobs, threads_per_job, progress)
    rows = []
    for c in configs:
        row = trained.pop(config_hash(c), None)  # the first occurrence reports "trained"; repeats load from the cache
        rows.append(row if row is not None else run_one(c, cache_dir))
    return rows


def _train_in_workers(todo: dict, cache_dir, jobs: int, threads_per_job: int | None, progress: bool) -> dict:
    """``{hash: RunResult}`` of the configs in ``todo``, trained ``jobs`` at a time in worker processes."""
    threads = threads_per_job or max(1, torch.get_num_threads() // jobs)
    trained = {}
    # spawn: a clean interpreter per worker (fork would copy this process's torch thread pools);
    # ProcessPoolExecutor workers may start DataLoader workers of their own (Pool's daemons may not)
    with ProcessPoolExecutor(min(jobs, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_run_in_worker, c, str(cache_dir), threads): h for h, c in todo.items()}
        try:
            for future in tqdm(as_completed(futures), total=len(futures), desc=f"grid ({jobs} jobs)",
                               disable=not progress, mininterval=1):
                trained[futures[future]] = future.result()  # re-raises a worker's error
        except BaseException:
            pool.shutdown(cancel_futures=True)  # runs not started yet are dropped; finished ones stay cached
            raise
    return trained


def load_rows(cache_dir: str | os.PathLike) -> list[RunResult]:
    """All finished results stored in ``cache_dir`` (any order)."""
    return [RunResult.from_dict(json.loads(p.read_text())) for p in sorted(Path(cache_dir).glob("*/result.json"))]

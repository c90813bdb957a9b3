"""Run grids of trainings with a result cache: the book's ablations (Tables 1-3) re-run only what changed.

``run_grid(configs, cache_dir)`` trains each :class:`~pspnet_lite.train.TrainConfig` in turn and returns
one row per config (a config repeated in the list is trained once). Each run lives in ``cache_dir/<hash>/`` where ``<hash>`` is the SHA-256 of the
config's non-default fields as sorted JSON (except ``out_dir``, which is derived from the hash, and the
cosmetic ``progress``/``resume``/``tensorboard``), plus a cache version. A finished run writes ``result.json`` there (atomically);
calling ``run_grid`` again returns the stored row without training. A grid interrupted half-way loses
nothing: finished runs are cached, and the unfinished one resumes from its ``last.pt`` (set
``ckpt_every`` to checkpoint often). ``jobs=N`` trains N configs at once in worker processes (CPU grids).

    from pspnet_lite.experiments import run_grid
    from pspnet_lite.presets import get_preset
    rows = run_grid([get_preset("scenes-lite", bins=b) for b in [(1,), (1, 2, 3, 6)]], "cache/bins")
    [(r["config"]["bins"], r["miou"]) for r in rows]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from . import train as T

VOLATILE = ("out_dir", "progress", "resume", "tensorboard")
# 2: the loss is normalised by the global labelled-pixel count (results of version 1 differ slightly)
# 3: dropout draws from its own random stream, no longer a replay of the weight initialisation's
CACHE_VERSION = 3


def config_hash(cfg: T.TrainConfig) -> str:
    """16 hex digits of SHA-256 over the fields that differ from ``TrainConfig()`` (minus :data:`VOLATILE`).

    Hashing only the non-default fields keeps existing caches valid when a new field with a neutral
    default is added to TrainConfig; :data:`CACHE_VERSION` is bumped when training itself changes
    in a way that makes old results wrong. ContextScenes runs also hash the generator's version,
    so runs on an older version of the synthetic data are never reused.
    """
    defaults = T.TrainConfig().to_dict()
    d = {k: v for k, v in cfg.to_dict().items() if k not in VOLATILE and v != defaults[k]}
    d["_cache_version"] = CACHE_VERSION
    if cfg.dataset == "context_scenes":  # generated data: a new generator version means new results
        from .data.context_scenes import GENERATOR_VERSION

        d["_context_scenes_version"] = GENERATOR_VERSION
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _write_json(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def run_one(cfg: T.TrainConfig, cache_dir: str | os.PathLike, progress: bool = False) -> dict:
    """Train ``cfg`` (or load its cached row) and return the row."""
    if not isinstance(cfg, T.TrainConfig):
        raise ValueError(f"run_grid expects TrainConfig objects, got {type(cfg).__name__}")
    h = config_hash(cfg)
    run_dir = Path(cache_dir) / h
    done = run_dir / "result.json"
    if done.is_file():
        row = json.loads(done.read_text())
        row["cached"] = True
        return row
    run_dir.mkdir(parents=True, exist_ok=True)
    result = T.train(dataclasses.replace(cfg, out_dir=str(run_dir), resume="auto", progress=progress))
    final = result.get("final") or {}
    row = {"hash": h, "cached": False, "config": cfg.to_dict(), "miou": final.get("miou"), "macc": final.get("macc"),
           "pixel_acc": final.get("pixel_acc"), "iou": final.get("iou"), "best_miou": result.get("best_miou"),
           "iterations": result["iterations"], "train_time_s": result.get("train_time_s"),
           "history": result["history"], "checkpoints": result["checkpoints"], "out_dir": str(run_dir)}
    _write_json(row, done)
    return row


def _run_in_worker(cfg: T.TrainConfig, cache_dir: str, threads: int) -> dict:
    """:func:`run_one` in a worker process of :func:`run_grid` (``threads`` torch threads, no bars)."""
    import torch

    torch.set_num_threads(threads)
    return run_one(cfg, cache_dir, progress=False)


def run_grid(configs, cache_dir: str | os.PathLike, progress: bool = False, jobs: int = 1,
             threads_per_job: int | None = None) -> list[dict]:
    """Train every config not already in ``cache_dir`` and return all rows, in order.

    Each row: ``hash``, ``cached`` (True when loaded, not trained), ``config``, final ``miou``/``macc``/
    ``pixel_acc``/``iou``, ``best_miou``, ``iterations``, ``train_time_s``, ``history`` (the JSONL
    records), ``checkpoints``, ``out_dir``.

    ``jobs > 1`` trains that many configs at once, each in its own process with ``threads_per_job``
    torch threads (default: this process's threads divided by ``jobs``, at least 1). Small CPU runs
    scale better this way than with more threads per run: on 2 cores, 2 one-thread runs at once
    finish a grid in about half the time. A CPU run's result depends on its thread count (not on
    ``jobs``), so one-thread runs give the same numbers sequentially and in parallel. Use ``jobs=1``
    on a GPU: the runs would share one device.
    """
    from tqdm.auto import tqdm

    configs, jobs = list(configs), int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    todo = {}  # hash -> config, each unfinished config once
    for c in configs:
        if not isinstance(c, T.TrainConfig):
            raise ValueError(f"run_grid expects TrainConfig objects, got {type(c).__name__}")
        if not (Path(cache_dir) / config_hash(c) / "result.json").is_file():
            todo.setdefault(config_hash(c), c)
    if jobs == 1 or len(todo) <= 1:
        return [run_one(c, cache_dir, progress) for c in tqdm(configs, desc="grid", disable=not progress,
                                                                 mininterval=1)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch

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
    rows = []
    for c in configs:
        h = config_hash(c)
        row = trained.pop(h, None)  # the first occurrence reports "trained"; repeats load from the cache
        rows.append(row if row is not None else run_one(c, cache_dir))
    return rows


def load_rows(cache_dir: str | os.PathLike) -> list[dict]:
    """All finished rows stored in ``cache_dir`` (any order)."""
    return [json.loads(p.read_text()) for p in sorted(Path(cache_dir).glob("*/result.json"))]

"""What can go wrong in a run over many processes and nodes, and what the trainer does about it.

* Ranks that read different checkpoints (``--resume auto`` on disks that are not shared): :func:`agree_on_start`
  stops every rank with the same one-line error instead of restarting some at iteration 0.
* A checkpoint that cannot be written (disk full, permission denied): :func:`write_failure` is the one line every
  rank stops with; the previous ``last.pt`` stays intact (:func:`pspnet_lite.checkpoint.save` writes a temporary
  file and renames it).
* A rank that dies: ``torchrun --max-restarts N`` restarts every rank, which resume from ``last.pt``;
  :func:`kill_drill` rehearses it (:data:`DRILL_ENV`).
* ``compile=True`` with SyncBatchNorm under torchrun: :func:`compile_sync_bn_message` says why it may not pay.
"""
from __future__ import annotations

import errno
import os
import signal
import socket
from pathlib import Path

from torch import nn

from . import distributed as D
from .config import TrainConfig

DRILL_ENV = "PSPNET_LITE_DRILL_KILL"  # "RANK:ITERATION": that rank kills itself after that checkpoint (first attempt)
COMPILE_SYNC_BN_ISSUE = "https://github.com/pytorch/pytorch/issues/161302"


class RestartStoreWarning(UserWarning):
    """torchrun may restart this job, and its restarted ranks may not reconnect (see
    :func:`~pspnet_lite.train.distributed.restart_store_problem`)."""


class CompileSyncBatchNormWarning(UserWarning):
    """``compile=True`` with SyncBatchNorm over several processes: the graph breaks at every SyncBatchNorm."""


def agree_on_start(path: str | None, iteration: int | None, problem: str | None, cfg: TrainConfig) -> None:
    """Compare every rank's start (the checkpoint ``path`` it found, its ``iteration``, or the ``problem`` reading
    it) and raise the same one-line ValueError on every rank unless they all start at the same iteration."""
    mine = {"iteration": iteration, "path": path, "problem": problem, "host": socket.gethostname(),
            "out_dir": str(cfg.out_dir)}
    seen = D.all_gather_object(mine)
    bad = [(r, s) for r, s in enumerate(seen) if s["problem"]]
    if bad:
        r, s = bad[0]
        raise D.mark_every_rank(ValueError(f"rank {r} on {s['host']} cannot resume from {s['path']}: {s['problem']}"))
    if len({s["iteration"] for s in seen}) > 1:
        raise D.mark_every_rank(ValueError(start_disagreement(seen, cfg)))


def start_disagreement(seen: list[dict], cfg: TrainConfig) -> str:
    """The one-line error of ranks that found different checkpoints (``seen``: each rank's gathered finding; the
    message is the same on every rank)."""
    groups: dict[tuple, list[int]] = {}
    for r, s in enumerate(seen):
        groups.setdefault((s["iteration"], s["host"]), []).append(r)
    parts = [f"{_ranks(rs)} on {host} found {'no checkpoint' if it is None else f'one at iteration {it}'}"
             for (it, host), rs in groups.items()]
    return (f"the ranks disagree on where to start ({'; '.join(parts)}; resume={cfg.resume!r}, out_dir "
            f"{seen[0]['out_dir']!r}): every rank reads its own disk, so put out_dir on a folder all nodes share "
            "(or copy last.pt into it on every node) and launch again")


def _ranks(ranks: list[int]) -> str:
    """``[0]`` -> "rank 0", ``[1, 2, 3]`` -> "ranks 1-3", ``[0, 2]`` -> "ranks 0,2"."""
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    if ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"ranks {ranks[0]}-{ranks[-1]}"
    return "ranks " + ",".join(map(str, ranks))


def write_failure(folder: Path, name: str, iteration: int, e: OSError, saved: int | None) -> str:
    """The one-line message of a checkpoint that could not be written (``saved``: the iteration of the last.pt
    that is still there, None if this run wrote none)."""
    code = errno.errorcode.get(e.errno, "") if e.errno else ""
    cause = f"{e.strerror or e}{f' [{code}]' if code else ''}"
    kept = (f"last.pt of iteration {saved} is kept" if saved is not None and name == "last.pt" else
            f"last.pt of iteration {iteration} was written" if name == "best.pt" else "no checkpoint was written yet")
    return (f"cannot write checkpoints into {folder}: {cause} (writing {name} at iteration {iteration}); stopping, "
            f"{kept}. Free space there or make it writable, then run again with --resume auto")


def kill_drill(rank: int, iteration: int) -> None:
    """The kill drill of :data:`DRILL_ENV` (``RANK:ITERATION``): on torchrun's first attempt, that rank SIGKILLs
    itself right after that checkpoint, as a lost GPU or node would. ``torchrun --max-restarts 1`` then restarts
    every rank, which resumes from ``last.pt`` (``--resume auto``); gpu_check and the tests rehearse it."""
    spec = os.environ.get(DRILL_ENV)
    if not spec or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return
    try:
        at_rank, at_iteration = (int(v) for v in spec.split(":"))
    except ValueError:
        raise ValueError(f"{DRILL_ENV}={spec!r}: expected RANK:ITERATION, e.g. 1:200") from None
    if (at_rank, at_iteration) == (rank, iteration):
        print(f"rank {rank}: {DRILL_ENV}={spec}, killing this process after the checkpoint of iteration {iteration}",
              flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


def compile_sync_bn_message(model: nn.Module) -> str:
    """Why ``compile=True`` with SyncBatchNorm under torchrun is not what it seems (the trainer warns with this)."""
    n = sum(isinstance(m, (nn.SyncBatchNorm, D.CPUSyncBatchNorm)) for m in model.modules())
    return (f"compile=True with SyncBatchNorm over several processes: torch.compile breaks the graph at every "
            f"SyncBatchNorm ({COMPILE_SYNC_BN_ISSUE}, open), {n} in this model (about 110 in PSPNet-101), so the "
            f"step runs as {n + 1} compiled pieces with Python in between and may be no faster than eager, after a "
            "long compile. benchmarks/gpu_check.py times compile + DDP + SyncBN against eager on 2 GPUs; until it "
            "shows a gain, train with --no-compile (or --no-sync-bn where each GPU holds 8 or more images)")

"""torch.distributed helpers for the trainer: torchrun (env://) init, rank/world queries, SyncBatchNorm.

The paper trains with batch size 16 and modifies Caffe to "make it support batch normalization on data
gathered from multiple GPUs based on OpenMPI" (§5.1). Here that is ``DistributedDataParallel`` +
``torch.nn.SyncBatchNorm``, launched by ``torchrun`` (one node or many; ``env://`` rendezvous):

    torchrun --nproc_per_node 8 -m pspnet_lite.train --preset ade20k-pspnet50
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500 \\
        --nproc_per_node 8 -m pspnet_lite.train --preset ade20k-pspnet50

Backends: NCCL on CUDA, gloo on CPU. ``torch.nn.SyncBatchNorm`` only runs on GPUs (and DDP refuses
it in CPU modules), so CPU processes (tests, laptops) use :class:`CPUSyncBatchNorm` below, which
all-reduces the per-channel sums with an autograd-aware all-reduce;
on CUDA it is exactly torch's ``SyncBatchNorm``.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from torch import nn


def env_world_size() -> int:
    """World size announced by torchrun (``WORLD_SIZE``), 1 when not launched by it."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_dist() -> bool:
    """True when a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank (0 when not distributed)."""
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_dist() else 1


def get_local_rank() -> int:
    """Rank on this node (``LOCAL_RANK`` from torchrun; 0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def process_rank() -> int:
    """This process's global rank, also after its process group was destroyed: the group's rank if there is one,
    else torchrun's ``RANK``, else 0. (:func:`get_rank` answers 0 once :func:`cleanup` ran, so code that runs after
    training, such as printing results, asks this instead.)"""
    return get_rank() if is_dist() else int(os.environ.get("RANK", "0"))


def mark_every_rank(error: BaseException) -> BaseException:
    """Mark ``error`` as raised with the same message on every rank (a decision taken from gathered values):
    the command line then reports it from rank 0 only, not once per process."""
    error.every_rank = True
    return error


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` (a host tensor) on ``device`` without making the host wait: on CUDA it is pinned first, and the copy is
    queued (``non_blocking``). A plain ``torch.tensor(value, device="cuda")`` copies from pageable memory and
    synchronises the stream, so the host would wait for every kernel queued before it."""
    if torch.device(device).type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


FRESH_STORE_ENV = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"  # set to 1 for torchrun: a new store per restart


def restart_store_problem() -> str | None:
    """Why a torchrun restart of this job may fail to reconnect, or None.

    With ``--max-restarts`` and the agent's shared store (torchrun's default from torch 2.4 on, announced to the
    workers as ``TORCHELASTIC_USE_AGENT_STORE=True``), every attempt's process group registers under the same keys
    of the same store, so a restarted rank can read a peer's address from the attempt before and fail with
    "Connection refused" (measured with 2 gloo processes on one machine, torch 2.14: 3 restarts in 4 failed so,
    0 in 4 with a store per attempt; pytorch/pytorch#167288 reports the same symptom with NCCL).
    ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` in torchrun's environment gives every attempt a store of its own on a
    fresh port."""
    restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0)
    if restarts < 1 or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    return (f"torchrun --max-restarts {restarts} with the agent's shared store: a restarted rank may read a peer's "
            "address from the attempt before and fail to connect (Connection refused; pytorch/pytorch#167288). "
            f"Export {FRESH_STORE_ENV}=1 before torchrun, on every node, so that each attempt gets a store of its own")


def init_distributed(device: str = "auto", timeout_s: int = 1800) -> bool:
    """Initialise the default process group from torchrun's environment (``init_method="env://"``).

    Does nothing and returns False when ``WORLD_SIZE`` is absent or 1, or when a group already exists
    (then the caller does not own it). Returns True when this call created the group, so the caller
    knows to :func:`cleanup` it. NCCL is used when the device is CUDA, gloo otherwise.
    """
    if is_dist() or env_world_size() <= 1:
        return False
    for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise ValueError(f"WORLD_SIZE={env_world_size()} but {key} is not set; launch with torchrun "
                             "(it sets RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or unset WORLD_SIZE")
    use_cuda = resolve_device(device).type == "cuda"
    if use_cuda:
        torch.cuda.set_device(get_local_rank())
    dist.init_process_group("nccl" if use_cuda else "gloo", init_method="env://",
                            timeout=datetime.timedelta(seconds=timeout_s))
    return True


def cleanup() -> None:
    """Destroy the default process group if there is one."""
    if is_dist():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_dist():
        dist.barrier()


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> this process's CUDA device if available, else CPU; anything else as given.

    Under torchrun (``WORLD_SIZE`` > 1) a CUDA device is always ``cuda:LOCAL_RANK``, one GPU per process,
    whatever index was asked for: a notebook that resolved ``"auto"`` to ``cuda:0`` and handed it to
    ``torchrun --nproc_per_node 8`` would otherwise put all eight ranks on GPU 0.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available; use --device cpu")
        if env_world_size() > 1:
            dev = torch.device("cuda", get_local_rank())
        elif dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks (a copy; ``t`` itself when not distributed)."""
    if not is_dist():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t


def all_gather_object(obj):
    """List of ``obj`` from every rank, in rank order (``[obj]`` when not distributed)."""
    if not is_dist():
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of each rank's input is the sum of the ranks' output gradients."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are synchronised over all ranks, for CPU (gloo) processes.

    ``torch.nn.SyncBatchNorm`` runs only on GPUs (and DDP refuses it on CPU modules), so CPU runs (tests,
    CPU clusters) use this layer instead: in training with world size > 1 it computes the batch mean and
    variance over all ranks from all-reduced ``(sum, sum of squares, count)`` in float64; the all-reduce is
    autograd-aware (its backward all-reduces the gradient), so gradients equal those of one
    process holding the whole batch (paper §5.1: batch normalization on the data of all GPUs). Otherwise (eval mode,
    one process) it is plain BatchNorm2d. Same parameters and buffers, so checkpoints are interchangeable.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_dist() and get_world_size() > 1):
            return super().forward(input)
        x = input
        c = x.shape[1]
        dims = [d for d in range(x.dim()) if d != 1]
        x64 = x.double()
        count = torch.tensor([x.numel() // c], dtype=torch.float64, device=x.device)
        stats = torch.cat([x64.sum(dims), (x64 * x64).sum(dims), count])  # (2C+1,)
        stats = _AllReduceSum.apply(stats)
        n = stats[-1]
        mean = stats[:c] / n  # (C,)
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)  # (C,) biased, as BN normalises
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_mean.mul_(1 - m).add_(m * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - m).add_(m * unbiased.to(self.running_var.dtype))
        shape = [1, c] + [1] * (x.dim() - 2)
        y = ((x64 - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)).to(x.dtype)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_sync_batchnorm(model: nn.Module, device="cuda") -> nn.Module:
    """Synchronise every BatchNorm layer across ranks: ``torch.nn.SyncBatchNorm`` on GPUs,
    :class:`CPUSyncBatchNorm` (same parameters and buffers) on CPU."""
    if torch.device(device).type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # subclasses too (e.g. ppm.OneValueSafeBatchNorm2d)
            m.__class__ = CPUSyncBatchNorm
    return model

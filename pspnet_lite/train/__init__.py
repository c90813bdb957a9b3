"""Train PSPNet the way the paper does (§5.1 "Implementation Details"), on a CPU, a GPU or many GPUs.

The recipe (paper §5.1, and the authors' release: hszhao/semseg ``tool/train.py``, ``config/ade20k/*.yaml``):

* SGD, momentum 0.9, weight decay 1e-4 on every parameter; "poly" learning rate
  ``lr = base_lr * (1 - iter / max_iter) ** 0.9`` recomputed after every optimizer step;
  the new layers (PPM, classifier, aux head: ``model.head_modules()``) at 10x the backbone's rate.
* Deep supervision: ``loss = main + 0.4 * aux`` (§4, Table 2).
* An iteration-based schedule (150K ADE20K, 30K VOC, 90K Cityscapes) with a **global** batch of 16,
  whatever the number of processes: each of W processes takes 16 / W images, split into
  ``accum_steps`` micro-batches of ``micro_batch`` images when it cannot hold them at once.
* The loss of an iteration is the mean cross-entropy over **all labelled pixels of the global batch**:
  the labelled (non-255) pixels of every micro-batch are counted before the forward passes and
  summed over processes, each micro-batch contributes its summed cross-entropy divided by that
  global count, and the result is multiplied by W to undo DDP's gradient averaging. So W processes
  x ``accum_steps`` micro-batches give the gradient of one batch of 16 (to float rounding) even when
  ignore pixels (ADE20K's unlabelled pixels, the padding of random scale/rotation) are spread unevenly;
  see :meth:`Trainer.step`. The logged losses are these global-batch means.

BatchNorm and small batches. Gradient accumulation reproduces the *loss* of batch 16 but not its
BatchNorm statistics: BN normalises each micro-batch on its own, and the paper (§5.1) stresses
that the BN batch size matters (statistics gathered over all 16 images across GPUs). So:

* several GPUs: ``SyncBatchNorm`` (on automatically when world size > 1) makes BN see the global
  micro-batch ``W * micro_batch``; use it whenever you can;
* one GPU that holds >= 8 images per step: plain BN, accumulation for the rest;
* one GPU with 1-4 images per step, fine-tuning from trained or ImageNet weights:
  ``freeze_bn="backbone"`` (or ``"all"``) keeps the BN layers in eval mode, using and not updating the
  pretrained running statistics (their scale/shift are still learned). Tiny-batch BN statistics are
  noise; frozen ones are not. Do not freeze BN when training from scratch (there are no statistics
  to keep).

Where things live: :mod:`.config` (``TrainConfig``, which holds the network's ``PSPNetConfig``),
:mod:`.presets`, :mod:`.sampling` (data order and augmentation seeds), :mod:`.trainer` (the loop),
:mod:`.runlog` (JSONL log, ``RunResult``), :mod:`.experiments` (cached grids of runs, in-process or
torchrun), :mod:`.distributed` (DDP, SyncBatchNorm), :mod:`.faults` (ranks that disagree on the start, checkpoints
that cannot be written, the kill drill of restarts) and :mod:`.cli` (the command line).

Distributed: launched by ``torchrun`` (one or many nodes, ``env://``); DDP + SyncBatchNorm; NCCL on
CUDA, gloo on CPU; only rank 0 logs, writes and prints the results. Several nodes: see the README (the
checkpoint folder must be shared; ranks that find different checkpoints stop with one line). Data order
comes from :class:`IterationBatchSampler`, a seeded, rank-aware sampler positioned by iteration (it plays
DistributedSampler's role but can start mid-epoch and gives every world size the same global batches), and
every sample's augmentation is drawn from a generator seeded by ``(seed, epoch, index)``; so resuming is
exact and a W-process run sees the same global batches as a 1-process run.

Use from Python (notebooks)::

    from pspnet_lite.train import get_preset, train
    result = train(get_preset("scenes-lite", iters=100))   # or get_preset(...).replace(bins=(1,), lr=0.02)
    result.miou, result.history, result.checkpoints["last"]

or from the shell::

    python -m pspnet_lite.train --preset scenes-lite --iters 100 --out-dir runs/lite
    torchrun --nproc_per_node 8 -m pspnet_lite.train --preset ade20k-pspnet50 --data-root /data/ade
"""

from .config import FIELDS, MODEL_FIELDS, RUN_FIELDS, TrainConfig
from .experiments import config_hash, load_rows, run_grid, run_one
from .presets import DEFAULT_PRESET, PRESETS, get_preset, list_presets, resolve_preset
from .runlog import CheckpointWriteError, NonFiniteLossError, RunResult
from .trainer import Trainer, train

__all__ = ["TrainConfig", "FIELDS", "RUN_FIELDS", "MODEL_FIELDS", "PRESETS", "DEFAULT_PRESET", "get_preset",
           "list_presets", "resolve_preset", "Trainer", "train", "RunResult", "NonFiniteLossError",
           "CheckpointWriteError", "run_grid", "run_one", "config_hash", "load_rows"]

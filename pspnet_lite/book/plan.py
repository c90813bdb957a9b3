"""The GPU side of every training chapter: the shared GPU parameters, the run plan, and the dry run.

Every training chapter (01, 04, 05, 06, 07) has the same seven parameters next to its own:

- ``pretrained``: ImageNet weights for the backbone. A real data set needs them (the paper fine-tunes from
  ImageNet, §4-5): without them the chapter stops with an error that names this parameter and the file.
  ``"scratch"`` trains from random weights on purpose; ``"{backbone}"`` in a path is replaced by each
  run's backbone (``"/weights/{backbone}_v2.pth"``, the authors' deep-stem ImageNet ResNets).
- ``amp`` (``"off"``, ``"bf16"``, ``"fp16"``), ``micro_batch`` (images per forward pass on each GPU, accumulated
  to the batch), ``channels_last`` and ``compile``: None keeps the preset's.
- ``nproc_per_node``: 0 trains in the kernel; N trains every run with ``torchrun --nproc_per_node N``.
- ``dry_run``: print the plan and train nothing.

:func:`gpu_config` applies and checks the first five; :func:`train_runs` prints the plan, stops a dry run, or
trains through :func:`pspnet_lite.train.run_grid`. The plan lists each run (rows x seeds, the fields that differ
from the preset, iterations and images seen), the checkpoints' disk use, and an estimate of GPU time.

**How the GPU time is estimated.** A training step costs about 3 forward passes (the backward pass twice
the forward's FLOPs), and a forward pass's FLOPs at the training crop are counted by
:func:`pspnet_lite.book.complexity.count_flops` (aux head included). The estimate divides the run's FLOPs by
a sustained throughput, the first of these that exists:

1. ``"trainer"``: measured through the trainer by ``benchmarks/gpu_check.py`` (its ``throughput_trainer`` step:
   torchrun over the machine's GPUs, DDP + SyncBatchNorm, JPEGs decoded and augmented in DataLoader workers),
   per GPU -- what a real run gets;
2. ``"synthetic"``: gpu_check's best bf16 training step on synthetic tensors on one GPU (no data loading, no DDP or
   SyncBN): an upper bound, since neither the input pipeline nor the gradient all-reduce is paid;
3. ``"assumed"``: :data:`ASSUMED_FRACTION` of the GPU's dense peak (:data:`DENSE_PEAK_TFLOPS`: bf16/fp16 under
   ``amp``, TF32 otherwise), the throughput this project targets for PSPNet-50 at 473 in bf16 on one H100 (200
   images/s), not a measurement.

Every plan names the figure it used (``throughput_source`` and ``basis`` of each row). GPU hours on N GPUs are the
hours divided by N: from a trainer figure measured on as many GPUs that is a measurement, otherwise an assumption of
linear scaling.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..data import build_dataset
from ..model import PSPNet
from ..train import TrainConfig, run_grid
from ..train.experiments import write_json
from .complexity import count_flops, count_parameters, on_meta

SCRATCH = "scratch"
AMP_CHOICES = ("off", "bf16", "fp16")
DENSE_PEAK_TFLOPS = (  # dense (no sparsity) tensor-core peaks from the vendors' data sheets, in TFLOP/s:
    # (pattern in the lower-cased device name, bf16/fp16, tf32); the first match wins, specific names first
    (r"gh200", 989.0, 494.0), (r"h200 nvl", 835.0, 418.0), (r"h200", 989.0, 494.0), (r"h100 nvl", 835.0, 418.0),
    (r"h100 pcie", 756.0, 378.0), (r"h100", 989.0, 494.0),  # "NVIDIA H100 80GB HBM3" is the SXM part
    (r"b200", 2250.0, 1100.0), (r"a100", 312.0, 156.0), (r"a800", 312.0, 156.0), (r"\ba30\b", 165.0, 82.0),
    (r"l40s", 362.0, 183.0), (r"\bl40\b", 181.0, 90.5), (r"\ba10\b", 125.0, 62.5), (r"\bl4\b", 121.0, 60.0),
)


def peak_tflops(gpu: str | None, precision: str = "bf16") -> float | None:
    """The dense tensor-core peak of a GPU by its device name (``precision`` "bf16" / "fp16" or "tf32"), or
    None for a GPU not in :data:`DENSE_PEAK_TFLOPS`."""
    low = (gpu or "").lower()
    for pattern, half, tf32 in DENSE_PEAK_TFLOPS:
        if re.search(pattern, low):
            return half if precision in ("bf16", "fp16") else tf32
    return None
ASSUMED_GPU = "H100"
ASSUMED_FRACTION = 0.21  # 200 training images/s of PSPNet-50 at 473 in bf16 on one H100 (the project's target)
MEASURED_KEY = "train_images_per_s_pspnet50_473_bf16"  # what a gpu_check record may hold, per device name
AUTHORS_WEIGHTS = ("resnet50", "resnet101", "resnet152")  # hszhao/semseg initmodel/{name}_v2.pth


def pretrained_path(pretrained: str | None, backbone: str, dataset: str) -> str | None:
    """The weights file of ``pretrained`` for ``backbone`` (``"{backbone}"`` replaced), None for ``"scratch"``
    or ContextScenes without weights. A real data set without weights, or weights the world does not have
    (ResNet-269), is a ValueError naming the ``pretrained`` parameter and the file to get."""
    if pretrained == SCRATCH:
        return None
    if pretrained is None:
        if dataset == "context_scenes":
            return None
        get = (f"the authors' deep-stem ImageNet ResNet ({backbone}_v2.pth from hszhao/semseg's initmodel folder; "
               "torchvision's weights need stem='torchvision')" if backbone in AUTHORS_WEIGHTS else
               f"ImageNet weights for {backbone}")
        raise ValueError(f"dataset={dataset!r} trains {backbone} from ImageNet weights in the paper (§4); set the "
                         f"chapter parameter pretrained to {get}, e.g. pretrained='/weights/{{backbone}}_v2.pth', or "
                         "pretrained='scratch' to train from random weights on purpose")
    path = str(pretrained).replace("{backbone}", backbone)
    if backbone == "resnet269" and "{backbone}" in str(pretrained):
        raise ValueError(f"pretrained={pretrained!r} asks for ImageNet weights of resnet269, and none are public "
                         "(the authors released resnet50/101/152_v2.pth only): leave resnet269 out, pretrain one "
                         "yourself and pass its file, or use pretrained='scratch' for random weights")
    return path


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 arithmetic


def cpu_flags() -> set[str]:
    """The CPU feature flags of ``/proc/cpuinfo``; empty where there is none (macOS, Windows)."""
    try:
        return set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return set()


def default_amp(device: torch.device | str) -> str | None:
    """``"bf16"`` on a CPU with native bf16 arithmetic (a flag of :data:`CPU_BF16_FLAGS`), else None (the
    preset's precision): the CPU chapters' choice when their ``amp`` parameter is left at None."""
    return "bf16" if torch.device(device).type == "cpu" and cpu_flags() & set(CPU_BF16_FLAGS) else None


def gpu_config(cfg: TrainConfig, *, pretrained: str | None = None, amp: str | None = None,
               micro_batch: int | None = None, channels_last: bool | None = None, compile: bool | None = None,
               nproc_per_node: int = 0) -> TrainConfig:
    """``cfg`` with a chapter's GPU parameters applied (None keeps the preset's value), checked at once:
    weights for a real data set (:func:`pretrained_path`), an ``amp`` this device can run, and a
    ``micro_batch`` that divides each process's share of the batch (the error lists the values that do)."""
    changes: dict[str, Any] = {k: v for k, v in dict(amp=amp, micro_batch=micro_batch, channels_last=channels_last,
                                                     compile=compile).items() if v is not None}
    if "amp" in changes and changes["amp"] not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {', '.join(AMP_CHOICES)}; got {amp!r}")
    cfg = cfg.replace(**changes)
    if pretrained is not None or cfg.dataset != "context_scenes":
        cfg = cfg.replace(pretrained=pretrained_path(pretrained, cfg.model.backbone, cfg.dataset))
    check_amp(cfg.amp, cfg.device)
    check_micro_batch(cfg, max(int(nproc_per_node), 1))
    return cfg


def check_amp(amp: str, device: str) -> None:
    """ValueError when ``amp`` cannot run on ``device``: bf16 on a GPU without bf16 names fp16 instead."""
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    if amp == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"amp='bf16' but {torch.cuda.get_device_name(dev)} has no bf16 support; use amp='fp16' "
                         "(with loss scaling) or amp='off'")
    if amp == "fp16" and dev.type == "cpu":
        raise ValueError("amp='fp16' runs on CUDA GPUs only; on a CPU use amp='bf16' (where the CPU supports it) "
                         "or amp='off'")


def check_micro_batch(cfg: TrainConfig, world: int) -> None:
    """ValueError unless ``micro_batch`` divides the per-process batch; the message lists the values that do."""
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} does not split over nproc_per_node={world} processes; use a "
                         f"multiple of {world}")
    per_rank = cfg.batch_size // world
    if cfg.micro_batch is not None and (cfg.micro_batch < 1 or per_rank % cfg.micro_batch):
        valid = [d for d in range(1, per_rank + 1) if per_rank % d == 0]
        raise ValueError(f"micro_batch={cfg.micro_batch} does not divide the {per_rank} images each process takes "
                         f"(batch_size {cfg.batch_size} / {world} processes); use one of {valid}")


def _flops_per_image(cfg: TrainConfig) -> int:
    """Training FLOPs of one image at the crop: forward (aux head on) + backward ~ 3 forward passes."""
    return _training_flops(dataclasses.replace(cfg.model, num_classes=cfg.model.num_classes or 150), cfg.crop_size)


@functools.lru_cache(maxsize=64)
def _training_flops(model_config, crop_size: int) -> int:
    return 3 * count_flops(on_meta(PSPNet, model_config), crop_size, train=True).flops


def _checkpoint_bytes(cfg: TrainConfig) -> int:
    """One checkpoint file: float32 weights and buffers plus SGD's momentum buffer per parameter."""
    model = on_meta(PSPNet, dataclasses.replace(cfg.model, num_classes=cfg.model.num_classes or 150))
    buffers = sum(b.numel() for b in model.buffers())
    return 4 * (2 * count_parameters(model) + buffers)


def measured_throughput(results: Path) -> dict | None:
    """The measured training throughput of PSPNet-50 at 473 in bf16 in the full (not ``--quick``)
    ``benchmarks/gpu_check.py`` records of ``results``: ``{"images_per_s"`` (per GPU), ``"gpu"``, ``"file"``,
    ``"source"``, ``"gpus"}``, where source is ``"trainer"`` (measured through the trainer: torchrun, data loading,
    DDP + SyncBN), preferred in any record, else ``"synthetic"`` (the best bf16 step on synthetic tensors, one
    GPU); None without a record."""
    found = []
    for path in sorted(results.glob("gpu_check_*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("quick") or not record.get("gpu"):
            continue
        trainer = (record.get("throughput") or {}).get("trainer") or {}
        if trainer.get("ok") and trainer.get("images_per_s_per_gpu") and trainer.get("crop") == 473 \
                and trainer.get("backbone") == "resnet50" and trainer.get("precision") == "bf16":
            found.append({"images_per_s": float(trainer["images_per_s_per_gpu"]), "gpu": str(record["gpu"]),
                          "file": path.name, "source": "trainer", "gpus": int(trainer.get("gpus") or 1)})
        goal = record.get("goal") or {}
        best = (goal.get("best_bf16_row") or {}).get("images_per_s")
        if best and goal.get("crop") == 473:
            found.append({"images_per_s": float(best), "gpu": str(record["gpu"]), "file": path.name,
                          "source": "synthetic", "gpus": 1})
    return min(found, key=lambda m: m["source"] != "trainer", default=None)


def assumed_throughput(precision: str = "bf16") -> tuple[float, str]:
    """(sustained FLOP/s, basis in words) of the assumed figure: :data:`ASSUMED_FRACTION` of one
    :data:`ASSUMED_GPU`'s dense peak in ``precision`` ("bf16" / "fp16", or "tf32" for float32 work, whose
    convolutions PyTorch runs in TF32 on such GPUs). An assumption, and the basis says so."""
    half = precision in ("bf16", "fp16")
    peak = peak_tflops(ASSUMED_GPU, "bf16" if half else "tf32")
    return ASSUMED_FRACTION * peak * 1e12, (
        f"assumed {ASSUMED_FRACTION:.0%} of one {ASSUMED_GPU}'s dense {'bf16' if half else 'TF32'} peak "
        f"({peak:.0f} TFLOP/s), not a measurement")


def gpu_hours(cfg: TrainConfig, images: int, nproc: int = 1, results: Path | None = None) -> dict:
    """GPU-time estimate of training ``images`` images with ``cfg`` (see the module docstring)."""
    flops = _flops_per_image(cfg) * images
    half = cfg.amp in ("bf16", "fp16")
    sustained, basis = assumed_throughput("bf16" if half else "tf32")
    gpu, source = ASSUMED_GPU, "assumed"
    measured = measured_throughput(results) if results is not None and half else None
    if measured is not None:
        reference = TrainConfig().replace(backbone="resnet50", crop_size=473, num_classes=150)
        sustained, gpu, source = measured["images_per_s"] * _flops_per_image(reference), measured["gpu"], \
            measured["source"]
        if source == "trainer":
            ddp = "DDP + SyncBN, " if measured["gpus"] > 1 else ""
            basis = (f"measured through the trainer: {measured['images_per_s']:.0f} training images/s per GPU of "
                     f"PSPNet-50 at 473 in bf16 on {measured['gpus']} x {gpu} (torchrun, {ddp}JPEG loading; "
                     f"results/{measured['file']}), scaled by FLOPs")
        else:
            basis = (f"measured: {measured['images_per_s']:.0f} training images/s of PSPNet-50 at 473 in bf16 on {gpu} "
                     f"(results/{measured['file']}; synthetic steps on one GPU, no data loading, DDP or SyncBN: an "
                     "upper bound), scaled by FLOPs")
    hours = flops / sustained / 3600
    return {"flops": flops, "gpu_hours": hours, "hours_on_nproc": hours / max(nproc, 1), "basis": basis,
            "gpu": gpu, "precision": cfg.amp if half else "fp32/TF32", "throughput_source": source}


def _differences(cfg: TrainConfig, reference: TrainConfig) -> dict:
    ref = reference.flat_dict()
    skip = {"out_dir", "preset", "progress", "resume", "tensorboard", "device", "data_root"}  # where, not what
    return {k: v for k, v in cfg.flat_dict().items() if k not in skip and v != ref.get(k)}


def training_plan(runs: Sequence[tuple[str, TrainConfig]], reference: TrainConfig, nproc_per_node: int = 0,
                  results: Path | None = None) -> dict:
    """The plan of ``runs`` ((row label, config) pairs; a label repeats once per seed): per row its seeds, the
    fields that differ from ``reference`` (the chapter's preset), iterations, images seen, checkpoint disk and
    GPU time; and the totals."""
    rows: dict[str, dict] = {}
    for label, cfg in runs:
        row = rows.setdefault(label, {"seeds": [], "configs": []})
        row["seeds"].append(cfg.seed)
        row["configs"].append(cfg)
    nproc = max(int(nproc_per_node), 1)
    out, total_hours, total_disk = [], 0.0, 0
    for label, row in rows.items():
        cfg = row["configs"][0]
        images = cfg.iters * cfg.batch_size
        est = gpu_hours(cfg, images, nproc, results)
        files = 2 if cfg.val_every >= 0 else 1  # last.pt, and best.pt when it validates
        disk = _checkpoint_bytes(cfg) * files * len(row["seeds"])
        diff = _differences(cfg, reference)
        diff.pop("seed", None)
        out.append({"row": label, "seeds": row["seeds"], "differs_from_preset": diff, "iterations": cfg.iters,
                    "batch_size": cfg.batch_size, "images_seen": images, "dataset": cfg.dataset,
                    "backbone": cfg.model.backbone, "crop_size": cfg.crop_size, "amp": cfg.amp,
                    "ckpt_every": cfg.ckpt_every, "checkpoint_bytes": disk,
                    **{k: est[k] for k in ("gpu_hours", "basis", "precision", "gpu", "throughput_source")}})
        total_hours += est["gpu_hours"] * len(row["seeds"])
        total_disk += disk
    return {"preset": reference.preset, "dataset": reference.dataset, "nproc_per_node": nproc_per_node,
            "rows": out, "runs": len(runs), "total_gpu_hours": total_hours, "total_checkpoint_bytes": total_disk,
            "gpu": out[0]["gpu"] if out else ASSUMED_GPU,
            "throughput_source": out[0]["throughput_source"] if out else "assumed"}


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _hours(h: float) -> str:
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.1f} h"


def format_plan(plan: dict) -> str:
    """The plan as the text a chapter prints."""
    n = plan["nproc_per_node"]
    lines = [f"plan: {plan['runs']} run(s) of preset {plan['preset']} on {plan['dataset']}"
             + (f", each with torchrun --nproc_per_node {n}" if n else ", in this kernel")]
    for r in plan["rows"]:
        diff = ", ".join(f"{k}={v}" for k, v in r["differs_from_preset"].items()) or "the preset as it is"
        lines.append(f"- {r['row']}: seeds {','.join(map(str, r['seeds']))}; {r['backbone']}, crop {r['crop_size']}, "
                     f"{r['iterations']:,} iterations x batch {r['batch_size']} = {r['images_seen']:,} images; "
                     f"differs from the preset in: {diff}")
        lines.append(f"  checkpoints {_size(r['checkpoint_bytes'])} (every {r['ckpt_every'] or 'end-of-run'} "
                     f"iterations, last.pt overwritten); about {_hours(r['gpu_hours'])} of GPU time per run on one "
                     f"{r['gpu']} in {r['precision']} ({r['basis']})")
    hours = plan["total_gpu_hours"]
    lines.append(f"total: about {_hours(hours)} of {plan['gpu']} time"
                 + (f" (about {_hours(hours / n)} on {n} GPUs)" if n > 1 else "")
                 + f", {_size(plan['total_checkpoint_bytes'])} of checkpoints")
    return "\n".join(lines)


def check_data(cfg: TrainConfig) -> None:
    """A missing or half-prepared data root fails here, naming the path and the preparation command."""
    if cfg.dataset != "context_scenes":
        for split in (cfg.train_split, cfg.val_split):
            build_dataset(cfg.dataset, root=cfg.data_root, split=split)


def stop_if_dry_run(dry_run: bool, plan: dict, path: Path | None = None) -> None:
    """Train nothing when ``dry_run``: write the plan to ``path`` and skip every later cell of the notebook.

    In a kernel, each later cell is replaced by a note that it was skipped (until ``dry_run`` is set to False
    again, in a cell that assigns it), so that papermill finishes the notebook without error; outside one, the
    script exits with status 0."""
    if path is not None:
        write_json(plan, path)
    if not dry_run:
        return
    print("dry run: nothing is trained; the cells below are skipped (set dry_run = False to train)")
    try:
        shell = get_ipython()  # type: ignore[name-defined]  # noqa: F821  (defined in a kernel only)
    except NameError:
        raise SystemExit(0) from None
    shell.input_transformers_cleanup.append(_skip_cell(shell))


def _skip_cell(shell):
    def transform(lines: list[str]) -> list[str]:
        if not shell.user_ns.get("dry_run") or any(line.lstrip().startswith("dry_run") for line in lines):
            return lines
        return ['print("dry run: cell skipped")\n']
    return transform


def train_runs(runs: Sequence[tuple[str, TrainConfig]], cache: Path, *, reference: TrainConfig,
               nproc_per_node: int = 0, dry_run: bool = False, results: Path | None = None,
               plan_path: Path | None = None, **grid: Any) -> list:
    """Print the plan of ``runs``, stop if ``dry_run``, else train them with :func:`pspnet_lite.train.run_grid`
    into ``cache`` (``torchrun --nproc_per_node N`` per run when N > 0, its output streamed into the cell) and
    return the :class:`~pspnet_lite.train.RunResult` rows in order. The plan is also written to ``plan_path``
    (default: ``plan.json`` next to ``cache``). ``grid`` goes to ``run_grid``."""
    configs = [cfg for _, cfg in runs]
    for cfg in dict.fromkeys(configs):
        check_data(cfg)
    plan = training_plan(runs, reference, nproc_per_node, results)
    print(format_plan(plan))
    stop_if_dry_run(dry_run, plan, plan_path or Path(cache).parent / "plan.json")
    if dry_run:
        return []
    if nproc_per_node > 0:
        grid.update(launcher="torchrun", nproc_per_node=nproc_per_node, jobs=1)
    return run_grid(configs, cache, **grid)


__all__ = ["SCRATCH", "CPU_BF16_FLAGS", "cpu_flags", "default_amp", "peak_tflops", "gpu_config", "pretrained_path",
           "check_amp", "check_micro_batch", "training_plan", "format_plan", "gpu_hours", "assumed_throughput",
           "stop_if_dry_run", "train_runs", "check_data"]

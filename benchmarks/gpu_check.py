"""GPU validation of the reproduction path: one prepared run, about 5 minutes on one GPU (more on 2 or more GPUs,
where the smoke run compiles the model once).

    PYTHONPATH=. python3 benchmarks/gpu_check.py                # a GPU machine: results/gpu_check_<gpu>.json
    PYTHONPATH=. python3 benchmarks/gpu_check.py --chapters     # + the training chapters through papermill
    PYTHONPATH=. python3 benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu_check.json   # CPU, tiny
    PYTHONPATH=. python3 benchmarks/gpu_check.py --device cpu --quick --only multi_gpu_smoke --cpu-smoke  # 2 gloo ranks

The core needs only PyTorch (2.1 or newer), torchvision, OpenCV and NumPy, with no install step and no
Jupyter (Pillow comes with torchvision; where tqdm is missing, a do-nothing stand-in is put on the path for
this run and its subprocesses). Every step records its own ok/error and time, a failed step does not stop
the next one, and the record is rewritten atomically after every step, so an interrupted or half-failed run
still leaves what it measured. The exit status is 1 if any step failed, 2 for a bad command line (e.g.
``--device cuda`` on a machine without a GPU).

Steps (``--quick``: tiny crops, batches and images, the lite backbone; the record says so):

1. ``fabricate_data``: an ADE20K-shaped tree in a temporary folder, in the real layout
   (``ADEChallengeData2016/images/{training,validation}/*.jpg``, ``annotations/.../*.png``, labels 0..150 with
   0 = "other"), random smooth images at ADE20K's sizes.
2. ``train_inprocess``: a few iterations of preset ``ade20k-pspnet50`` (global batch 16 as micro-batches, bf16,
   channels_last on a GPU), validated at the end. From scratch (``pretrained`` none): this checks the machinery,
   not the accuracy.
3. ``train_torchrun``: the same through ``run_grid(..., launcher="torchrun", nproc_per_node=1)``, then a probe
   under ``torchrun --nproc_per_node 1`` that creates an NCCL process group (gloo on CPU), all-reduces and trains
   one DDP step with SyncBatchNorm (the trainer makes no process group for a single process, so the probe is
   what exercises NCCL).
4. ``evaluate_slide``: ``pspnet_lite.inference.evaluate`` with the authors' sliding window
   (``authors_protocol("ade20k")``: long side 512, windows of 473 with stride 316, flip) on the fabricated val
   images, with the weights of step 2.
5. ``throughput_train``: PSPNet-50 training steps at crop 473, global batch 16 (:func:`pspnet_lite.bench.measure`;
   a smaller micro-batch with accumulation only where the whole batch does not fit), images/s and peak memory
   for fp32 (TF32 as the backend flags allow; they are recorded), bf16, and bf16 + channels_last.
6. ``throughput_infer``: inference images/s at 473 (bf16 on a GPU): single scale whole image, single scale +
   flip (both on 473 x 473 images), and the authors' sliding window (on a 512 x 683 image: long side 512, 2
   windows x 2 flips).
7. ``throughput_trainer``: training images/s measured through the trainer itself, as a real run gets them: ``torchrun``
   over every GPU of the machine (DDP + SyncBatchNorm from 2 on), JPEGs at ADE20K's sizes read and augmented in
   DataLoader workers, global batch 16 at 473 in bf16 + channels_last, cuDNN benchmark on (the trainer sets it), the
   first ``trainer_warmup`` iterations left out. :mod:`pspnet_lite.book.plan` prefers this figure to step 5's
   (synthetic tensors on one GPU, no data loading, no DDP) and says which one it used.
8. ``multi_gpu_smoke`` (2 or more GPUs; recorded as skipped otherwise, and rehearsed with 2 gloo processes on the
   CPU with ``--cpu-smoke``): what a multi-GPU job runs first for real -- NCCL SyncBatchNorm in bf16 / channels_last,
   ``no_sync`` accumulation, the checkpoint's ``all_gather_object`` -- as a 2-process ``torchrun --max-restarts 1``
   of ``smoke_iters`` iterations that checkpoints every ``smoke_ckpt``, loses rank 1 (SIGKILL, the trainer's kill
   drill) after the checkpoint of ``smoke_kill_at``, restarts both ranks with ``--resume auto`` and finishes; then
   compile + DDP + SyncBN timed against eager over 2 processes (GPUs only; ``--compile-timeout`` each).
9. ``throughput_compile``: bf16 + channels_last + ``torch.compile``, in a spawned process with a time limit
   (``--compile-timeout``); it runs last so that a slow or failed compile costs nothing else.
10. ``chapters`` (only with ``--chapters``, needs papermill): every training chapter with ``preset="paper"``,
   ``dataset="ade20k"``, the fabricated tree and ``pretrained="scratch"``, with the tiny parameters of
   :data:`CHAPTER_PARAMETERS`; pass/fail and time per chapter.

Each throughput row gives the fraction of the GPU's dense bf16 peak (``pspnet_lite.book.plan.DENSE_PEAK_TFLOPS``,
matched by device name; an unknown GPU gives null and a note): images/s x FLOPs per training image / peak, where
a training image costs 3 x the training-mode forward FLOPs (``pspnet_lite.book.complexity.count_flops(...,
train=True)``; backward = 2 x forward). The goal is at least 200 training images/s at 473 in bf16 on one
H100-class GPU (about 21% of its dense bf16 peak); the record says whether the best bf16 row met it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

# The tiny parameters of each training chapter for ``--chapters`` (on top of CHAPTER_COMMON, the fabricated
# data root, the device and an out_dir in the temporary folder). Adjust here when a chapter's parameters change.
CHAPTER_COMMON = dict(preset="paper", dataset="ade20k", pretrained="scratch")
CHAPTER_PARAMETERS = {
    "01_observations": dict(iters=2, batch_size=2, crop_size=64, num_train_images=8, num_val_images=2,
                            rf_images=2),
    "04_deep_supervision": dict(alphas="0,0.4", seeds="0", iters=2, batch_size=2, crop_size=64,
                                num_train_images=8, num_val_images=2),
    "04b_training_recipe": dict(iters=1, finetune_iters=1, batch_size=4, crop_size=48, crops="64", bn_batches="2,4",
                                frozen_at="2", seeds="0", num_train_images=8, num_val_images=2, jobs=1),
    "05_ablation": dict(rows="B1236+AVE+DR", seeds="0", iters=1, batch_size=2, crop_size=64, num_train_images=8,
                        num_val_images=2, workers=0, jobs=1),
    "06_depth_and_multiscale": dict(backbones="resnet50", protocols="ss,ms+flip", iters=1, batch_size=2,
                                    crop_size=64, num_train_images=8, num_val_images=2, workers=0),
    "07_benchmarks": dict(iters=2, batch_size=2, crop_size=48, num_train_images=8, num_val_images=2,
                          eval_batch_size=1, num_show=1),
}
CHAPTER_TIMEOUT_S = 600  # per cell

H100_CLASS = (r"gh200", r"h200", r"h100")
GOAL_IMAGES_PER_S = 200  # training images/s at 473 in bf16 on one H100-class GPU
GOAL_PEAK_TFLOPS = 989

FULL = dict(backbone="resnet50", crop=473, batch=16, train_micro=4, train_iters=4, torchrun_iters=2, workers=4,
            n_train=32, n_val=4, sizes=[(512, 683), (683, 512), (512, 512), (384, 512)], probe_crop=97,
            bench_micro=None, warmup=3, iters=8, compile_backend="inductor", infer_images=8, infer_iters=4,
            slide_hw=(512, 683), slide_crop=473, slide_base=512,
            trainer_iters=50, trainer_warmup=10, smoke_iters=20, smoke_ckpt=5, smoke_kill_at=10)
QUICK = dict(backbone="lite", crop=32, batch=4, train_micro=2, train_iters=2, torchrun_iters=1, workers=0,
             n_train=8, n_val=2, sizes=[(40, 56), (56, 40)], probe_crop=32,
             bench_micro=2, warmup=1, iters=2, compile_backend="eager", infer_images=2, infer_iters=2,
             slide_hw=(40, 56), slide_crop=32, slide_base=48,
             trainer_iters=3, trainer_warmup=1, smoke_iters=4, smoke_ckpt=2, smoke_kill_at=2)
TRAIN_ROWS = [("fp32", "contiguous"), ("bf16", "contiguous"), ("bf16", "channels_last")]
STEPS = ("fabricate_data", "train_inprocess", "train_torchrun", "evaluate_slide", "throughput_train",
         "throughput_infer", "throughput_trainer", "multi_gpu_smoke", "throughput_compile", "chapters")
PROBE_TAG = "GPU_CHECK_PROBE "

TQDM_STAND_IN = '''"""A do-nothing stand-in for tqdm, put on the path by benchmarks/gpu_check.py."""
import sys


class tqdm:
    def __init__(self, iterable=None, *args, total=None, **kwargs):
        self.iterable, self.total, self.n = iterable, total, 0

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else ())

    def __len__(self):
        return len(self.iterable) if self.iterable is not None else (self.total or 0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n=1):
        self.n += n

    def close(self):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def set_description(self, *args, **kwargs):
        pass

    def refresh(self, *args, **kwargs):
        pass

    @staticmethod
    def write(s, file=None, end="\\n"):
        print(s, end=end, file=file or sys.stdout)


def trange(*args, **kwargs):
    return tqdm(range(*args), **kwargs)
'''


def _prepend_pythonpath(folder: Path) -> None:
    """Put ``folder`` first on this process's import path and on its subprocesses' PYTHONPATH."""
    sys.path.insert(0, str(folder))
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(folder), *parts])


def _ensure_tqdm() -> str:
    """"installed", or put the stand-in on the path and say so (the package's progress bars import tqdm)."""
    try:
        import tqdm  # noqa: F401
        return "installed"
    except ImportError:
        folder = Path(tempfile.gettempdir()) / f"gpu_check_tqdm_{os.getuid()}"
        (folder / "tqdm").mkdir(parents=True, exist_ok=True)
        (folder / "tqdm" / "__init__.py").write_text(TQDM_STAND_IN)
        (folder / "tqdm" / "auto.py").write_text("from tqdm import tqdm, trange  # noqa: F401\n")
        _prepend_pythonpath(folder)
        return f"not installed: a do-nothing stand-in from {folder}"


TQDM = _ensure_tqdm()
if str(ROOT) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    _prepend_pythonpath(ROOT)  # this process and its subprocesses (torchrun, spawned rows, kernels) find the package

from pspnet_lite import bench  # noqa: E402
from pspnet_lite.book.complexity import count_flops, on_meta  # noqa: E402
from pspnet_lite.book.plan import peak_tflops  # noqa: E402
from pspnet_lite.checkpoint import load_model  # noqa: E402
from pspnet_lite.data import build_dataset  # noqa: E402
from pspnet_lite.data.transforms import EvalTransform  # noqa: E402
from pspnet_lite.inference import PROTOCOLS, authors_protocol, evaluate, predict  # noqa: E402
from pspnet_lite.losses import DeepSupervisionLoss  # noqa: E402
from pspnet_lite.model import PSPNet  # noqa: E402
from pspnet_lite.train import get_preset, train  # noqa: E402
from pspnet_lite.train.distributed import FRESH_STORE_ENV, convert_sync_batchnorm, resolve_device  # noqa: E402
from pspnet_lite.train.experiments import run_grid, torchrun_command, write_json  # noqa: E402
from pspnet_lite.train.faults import DRILL_ENV  # noqa: E402

# ---------------------------------------------------------------------------------------------------- helpers


def gpu_slug(name: str) -> str:
    """``"NVIDIA H200"`` -> ``"nvidia-h200"``: the file-name part of the record."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def bf16_peak_tflops(name: str | None) -> float | None:
    """The dense bf16 peak of a GPU by its device name (:data:`pspnet_lite.book.plan.DENSE_PEAK_TFLOPS`), or None."""
    return peak_tflops(name, "bf16")


def tf32_flags() -> dict:
    """The float32 tensor-core settings as they are now (the old flags and, from torch 2.9, the new API)."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch deprecates reading the old flags
        for key, obj, attr in (("cuda.matmul.allow_tf32", torch.backends.cuda.matmul, "allow_tf32"),
                               ("cudnn.allow_tf32", torch.backends.cudnn, "allow_tf32"),
                               ("cuda.matmul.fp32_precision", torch.backends.cuda.matmul, "fp32_precision"),
                               ("cudnn.conv.fp32_precision", getattr(torch.backends.cudnn, "conv", None),
                                "fp32_precision")):
            try:
                value = getattr(obj, attr, None) if obj is not None else None
            except Exception as e:  # a mix of old and new settings can make the old getter raise
                value = f"unreadable: {e}"
            if value is not None:
                out[key] = value
        out["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    return out


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return out.stdout.strip() + (" (uncommitted changes)" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def one_line(e: BaseException) -> str:
    """``Type: message`` on one line: a papermill error's own exception, else the first non-empty line."""
    if getattr(e, "ename", None):  # papermill.PapermillExecutionError: the exception raised in the cell
        return f"{e.ename}: {e.evalue}".splitlines()[0][:300]
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0]}"[:300] if lines else type(e).__name__


class Tee:
    """A stdout that also keeps the last lines written (a subprocess's streamed output, for the record)."""

    def __init__(self, stream, prefix: str = "    | "):
        self.stream, self.prefix, self.lines, self._at_start = stream, prefix, [], True

    def write(self, text: str) -> int:
        for part in text.splitlines(keepends=True):
            self.stream.write((self.prefix if self._at_start else "") + part)
            self._at_start = part.endswith("\n")
            if part.strip():
                self.lines = (self.lines + [part.rstrip()])[-40:]
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


# ----------------------------------------------------------------------------------------------------- steps


def fabricate_ade20k(root: Path, n_train: int, n_val: int, sizes: list[tuple[int, int]], seed: int = 0) -> dict:
    """An ADEChallengeData2016 tree under ``root``: smooth random JPEGs and label PNGs (0..150, 0 = other)."""
    rng = np.random.default_rng(seed)
    base = root / "ADEChallengeData2016"
    for split, sub, n in (("train", "training", n_train), ("val", "validation", n_val)):
        (base / "images" / sub).mkdir(parents=True, exist_ok=True)
        (base / "annotations" / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = sizes[i % len(sizes)]
            small = rng.integers(0, 256, (max(h // 16, 2), max(w // 16, 2), 3), dtype=np.uint8)
            image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)  # (h, w, 3) RGB, photo-like
            labels = rng.integers(0, 151, (max(h // 32, 2), max(w // 32, 2)), dtype=np.uint8)
            mask = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)  # (h, w) regions of one label
            stem = f"ADE_{split}_{i + 1:08d}"
            cv2.imwrite(str(base / "images" / sub / f"{stem}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(base / "annotations" / sub / f"{stem}.png"), mask)  # 8-bit grey: mode L
    return {"root": str(base), "train_images": n_train, "val_images": n_val, "sizes": [list(s) for s in sizes],
            "summary": f"{n_train} train / {n_val} val images, sizes {', '.join(f'{h}x{w}' for h, w in sizes)}"}


class Check:
    """One run of the whole check: its settings, the record, and every step."""

    def __init__(self, args: argparse.Namespace, device: torch.device):
        self.args, self.device = args, device
        self.s = QUICK if args.quick else FULL
        self.cuda = device.type == "cuda"
        self.bf16 = (torch.cuda.is_bf16_supported() if self.cuda else True)
        self.amp = "bf16" if self.cuda and self.bf16 else "off"
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        self.data_root = self.tmp / "ade20k"
        self.gpu = torch.cuda.get_device_name(device) if self.cuda else None
        self.peak = bf16_peak_tflops(self.gpu) if self.cuda else None
        self.out = Path(args.out) if args.out else ROOT / "results" / (
            f"gpu_check_{gpu_slug(self.gpu) if self.gpu else 'cpu'}{'_quick' if args.quick else ''}.json")
        self.t0 = time.perf_counter()
        self.record = {"format": "pspnet_lite.gpu_check/1", "command": " ".join([Path(sys.executable).name,
                                                                               *sys.argv]),
                       "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                       "quick": bool(args.quick), "device": str(device), "gpu": self.gpu, "env": self.environment(),
                       "settings": {k: v for k, v in self.s.items()}, "steps": {},
                       "throughput": {"train": [], "infer": []}, "goal": None, "ok": None, "wall_s": None}
        self.flops_per_train_image = None
        self.last_checkpoint = None

    # -- the record
    def environment(self) -> dict:
        env = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
               "torch": torch.__version__, "torch_cuda": torch.version.cuda,
               "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
               "torch_threads": torch.get_num_threads(), "tqdm": TQDM, "git_commit": git_commit(),
               "nccl_available": torch.distributed.is_available() and torch.distributed.is_nccl_available()}
        try:
            import torchvision  # lazy: only its version is recorded
            env["torchvision"] = torchvision.__version__
        except ImportError:
            env["torchvision"] = None
        env["opencv"], env["numpy"] = cv2.__version__, np.__version__
        if self.cuda:
            p = torch.cuda.get_device_properties(self.device)
            env.update(gpu=self.gpu, gpu_slug=gpu_slug(self.gpu), gpu_memory_gb=round(p.total_memory / 2**30, 1),
                       capability=f"{p.major}.{p.minor}", gpu_count=torch.cuda.device_count(),
                       bf16_supported=self.bf16, bf16_dense_peak_tflops=self.peak,
                       peak_note=None if self.peak else f"{self.gpu!r} is not in the table of dense bf16 peaks "
                       "(pspnet_lite.book.plan.DENSE_PEAK_TFLOPS); fractions of peak are null")
        env["tf32"] = tf32_flags()
        return env

    def save(self) -> None:
        self.record["wall_s"] = round(time.perf_counter() - self.t0, 1)
        write_json(self.record, self.out)

    def step(self, name: str, fn, index: int, total: int) -> bool:
        print(f"[{index}/{total}] {name} ...", flush=True)
        entry = {"ok": False}
        self.record["steps"][name] = entry
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                entry.update(fn() or {})
                entry["ok"] = True
            except Exception as e:  # every failure is recorded; the next step still runs
                entry["ok"], entry["error"] = False, one_line(e)
                entry["traceback"] = traceback.format_exc().splitlines()[-25:]
        messages = sorted({f"{w.category.__name__}: {str(w.message)[:200]}" for w in caught})
        if messages:
            entry["warnings"] = messages[:10]
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        free_memory(self.device)
        self.save()
        status = ("skipped" if entry.get("skipped") else "ok") if entry["ok"] else f"FAILED: {entry['error']}"
        print(f"    {status} ({entry['seconds']:.1f} s){' - ' + entry['summary'] if entry.get('summary') else ''}",
              flush=True)
        return entry["ok"]

    # -- steps
    def fabricate_data(self) -> dict:
        s = self.s
        return fabricate_ade20k(self.data_root, s["n_train"], s["n_val"], s["sizes"])

    def train_config(self, iters: int, out_dir: Path, **overrides):
        s = self.s
        settings = dict(data_root=str(self.data_root), pretrained=None, backbone=s["backbone"], crop_size=s["crop"],
                        batch_size=s["batch"], micro_batch=s["train_micro"], iters=iters, amp=self.amp,
                        channels_last=self.cuda, device=self.args.device, workers=s["workers"], val_batch_size=1,
                        log_every=1, ckpt_every=0, out_dir=str(out_dir), progress=False, seed=0, val_every=0)
        return get_preset("ade20k-pspnet50", **{**settings, **overrides})

    def train_inprocess(self) -> dict:
        cfg = self.train_config(self.s["train_iters"], self.tmp / "run_inprocess")
        reset_peak(self.device)
        result = train(cfg)
        losses = [r["loss"] for r in result.history if r.get("kind") == "train"]
        if len(losses) != cfg.iters or not all(np.isfinite(losses)):
            raise RuntimeError(f"expected {cfg.iters} finite training losses, got {losses}")
        last = Path(result.checkpoints["last"])
        if not last.is_file():
            raise RuntimeError(f"no checkpoint at {last}")
        self.last_checkpoint = last
        speed = [r["images_per_s"] for r in result.history if r.get("kind") == "train"]
        return {"preset": cfg.preset, "backbone": cfg.model.backbone, "crop": cfg.crop_size,
                "global_batch": cfg.batch_size, "micro_batch": cfg.micro_batch, "amp": cfg.amp,
                "channels_last": cfg.channels_last, "pretrained": "none (from scratch: checks the machinery, "
                "not the accuracy)", "iterations": result.iterations, "losses": losses,
                "images_per_s_last_iteration": speed[-1], "val_miou": result.final.get("miou"),
                "val_protocol": result.final.get("protocol"), "peak_mb": peak_mb(self.device),
                "checkpoint": "last.pt written",
                "summary": f"{result.iterations} iterations, loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
                           f"val mIoU {100 * (result.final.get('miou') or 0):.2f}% (random weights, random data)"}

    def train_torchrun(self) -> dict:
        # validation was checked in process; under torchrun it would only print a table of 150 classes
        cfg = self.train_config(self.s["torchrun_iters"], self.tmp / "unused", val_every=-1)
        cache = self.tmp / "grid"
        tee = Tee(sys.stdout)
        out = {"command": " ".join(torchrun_command(cfg, cache / "<hash>", 1))}
        try:
            with contextlib.redirect_stdout(tee):
                [result] = run_grid([cfg], cache, launcher="torchrun", nproc_per_node=1)
        except Exception:
            out["output_tail"] = tee.lines
            raise
        losses = [r["loss"] for r in result.history if r.get("kind") == "train"]
        if result.iterations != cfg.iters or not all(np.isfinite(losses)):
            raise RuntimeError(f"torchrun run: {result.iterations} iterations, losses {losses}")
        out.update(iterations=result.iterations, world_size=result.world_size, losses=losses)
        out["nccl_probe"] = probe = self.run_probe()
        out["summary"] = (f"trainer under torchrun: {result.iterations} iterations; probe: {probe['backend']} "
                          f"group of {probe['world_size']}, all_reduce {probe['all_reduce']}, one DDP + SyncBN step")
        return out

    def run_probe(self) -> dict:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
               str(Path(__file__).resolve()), "--dist-probe", "--device", self.args.device]
        cmd += ["--quick"] if self.args.quick else []
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(PROBE_TAG)]
        if proc.returncode != 0 or not lines:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            raise RuntimeError(f"torchrun probe exited with status {proc.returncode}: " + " | ".join(tail))
        return json.loads(lines[-1][len(PROBE_TAG):])

    def model_for_eval(self):
        if self.last_checkpoint is not None:
            return load_model(self.last_checkpoint, device=self.device).model, "the weights of train_inprocess"
        torch.manual_seed(0)
        return PSPNet(num_classes=150, backbone=self.s["backbone"]).to(self.device), "random weights (no checkpoint)"

    def protocol(self):
        p = authors_protocol("ade20k")
        if self.args.quick:  # the same protocol scaled down to the tiny images
            p = dataclasses.replace(p, crop_size=self.s["slide_crop"], base_size=self.s["slide_base"])
        return p

    def evaluate_slide(self) -> dict:
        model, weights = self.model_for_eval()
        val = build_dataset("ade20k", root=str(self.data_root), split="val", transform=EvalTransform())
        loader = torch.utils.data.DataLoader(val, batch_size=1)
        p = self.protocol()
        reset_peak(self.device)
        scores = evaluate(model, loader, 150, protocols={"authors-ss": p}, device=self.device, progress=False)
        sc = scores["authors-ss"]
        d = sc.as_dict()
        return {"protocol": sc.protocol, "weights": weights, "images": len(val), "views": sc.extra.get("views"),
                "miou": d.get("miou"), "pixel_acc": d.get("pixel_acc"), "peak_mb": peak_mb(self.device),
                "summary": f"{len(val)} images, {sc.protocol}, mIoU {100 * (d.get('miou') or 0):.2f}%"}

    def train_flops(self) -> int:
        if self.flops_per_train_image is None:
            model = on_meta(PSPNet, num_classes=150, backbone=self.s["backbone"])
            self.flops_per_train_image = 3 * count_flops(model, self.s["crop"], train=True).flops
            self.record["throughput"]["flops_per_train_image"] = self.flops_per_train_image
            self.record["throughput"]["flops_note"] = ("3 x the training-mode forward FLOPs "
                                                       "(pspnet_lite.book.complexity.count_flops, train=True)")
        return self.flops_per_train_image

    def train_row(self, precision: str, memory_format: str, compile_: bool) -> dict:
        """One throughput row, trying smaller micro-batches where the global batch does not fit."""
        s = self.s
        row = {"precision": precision, "memory_format": memory_format, "compile": compile_,
               "global_batch": s["batch"], "crop": s["crop"], "backbone": s["backbone"]}
        if precision == "fp32":
            row["tf32"] = tf32_flags()
        if compile_:
            row["compile_backend"] = s["compile_backend"]
        if precision == "bf16" and self.cuda and not self.bf16:
            row.update(ok=False, error="this GPU has no bf16 support")
            return row
        micros = [s["bench_micro"]] if s["bench_micro"] else [m for m in (16, 8, 4, 2, 1) if s["batch"] % m == 0]
        spec = dict(backbone=s["backbone"], num_classes=150, crop=s["crop"], batch=s["batch"], device=str(self.device),
                    precision=precision, memory_format=memory_format, compile=compile_, mode="train",
                    warmup=s["warmup"], iters=s["iters"], threads=None, compile_backend=s["compile_backend"])
        for micro in micros:
            spec["micro_batch"] = micro
            try:
                result = self.measure_compiled(spec) if compile_ else bench.measure(spec)
            except torch.cuda.OutOfMemoryError as e:
                row.setdefault("out_of_memory_at_micro_batch", []).append(micro)
                row["error"] = one_line(e)
                free_memory(self.device)
                continue
            except Exception as e:
                row.update(ok=False, micro_batch=micro, error=one_line(e))
                return row
            row.pop("error", None)
            row.update(ok=True, micro_batch=micro, accumulation_steps=s["batch"] // micro, **result)
            row["fraction_of_bf16_peak"] = (result["images_per_s"] * self.train_flops() / (self.peak * 1e12)
                                            if self.peak else None)
            return row
        row["ok"] = False
        return row

    def measure_compiled(self, spec: dict) -> dict:
        """:func:`bench.measure` of a compiled row in a spawned process, killed after ``--compile-timeout`` s."""
        free_memory(self.device)
        ctx = mp.get_context("spawn")
        with ctx.Pool(1) as pool:
            job = pool.apply_async(_measure_with_flags, (spec, self.backend_flags()))
            try:
                return job.get(timeout=self.args.compile_timeout)
            except mp.TimeoutError:
                raise TimeoutError(f"torch.compile row did not finish within --compile-timeout "
                                   f"{self.args.compile_timeout} s (compile happens in its {spec['warmup']} "
                                   "warm-up steps)") from None

    def backend_flags(self) -> dict:
        return {"cudnn_benchmark": torch.backends.cudnn.benchmark}

    def throughput_rows(self, rows) -> dict:
        self.train_flops()
        table = self.record["throughput"]["train"]
        for precision, fmt in rows:
            print(f"    measuring {precision} / {fmt} ...", flush=True)
            table.append(self.train_row(precision, fmt, False))
            free_memory(self.device)
            self.save()
        return self._rows_result(table[-len(rows):])

    def _rows_result(self, rows: list[dict]) -> dict:
        failed = [f"{r['precision']}/{r['memory_format']}{'/compile' if r['compile'] else ''}: {r.get('error')}"
                  for r in rows if not r.get("ok")]
        self.record["goal"] = self.goal()
        if failed:
            raise RuntimeError("rows failed: " + "; ".join(failed))
        return {"rows": len(rows), "summary": ", ".join(
            f"{r['precision']}{'+cl' if r['memory_format'] == 'channels_last' else ''}"
            f"{'+compile' if r['compile'] else ''} {r['images_per_s']:.1f} img/s" for r in rows)}

    def throughput_train(self) -> dict:
        return self.throughput_rows(TRAIN_ROWS)

    def throughput_compile(self) -> dict:
        print("    measuring bf16 / channels_last / compile (spawned process) ...", flush=True)
        table = self.record["throughput"]["train"]
        table.append(self.train_row("bf16", "channels_last", True))
        return self._rows_result(table[-1:])

    def throughput_infer(self) -> dict:
        s = self.s
        torch.manual_seed(0)
        model = PSPNet(num_classes=150, backbone=s["backbone"]).to(self.device).eval()
        dt = torch.bfloat16 if self.cuda and self.bf16 else None
        square = torch.randn(s["infer_images"], 3, s["crop"], s["crop"], device=self.device)  # (N, 3, 473, 473)
        h, w = s["slide_hw"]
        ade = torch.randn(s["infer_images"], 3, h, w, device=self.device)  # (N, 3, 512, 683)
        protocols = [("ss", PROTOCOLS["ss"], square), ("ss+flip", PROTOCOLS["ss+flip"], square),
                     ("authors-slide", self.protocol(), ade)]
        table = self.record["throughput"]["infer"]
        for name, p, images in protocols:
            row = {"protocol": name, "name": p.name, "images": images.shape[0], "image_hw": list(images.shape[-2:]),
                   "precision": "bf16" if dt else "fp32", "backbone": s["backbone"]}
            try:
                def run(p=p, images=images):
                    with torch.autocast(self.device.type, dtype=dt, enabled=dt is not None):
                        predict(model, images, num_classes=150, protocol=p)
                run()  # warm-up (cuDNN autotuning)
                reset_peak(self.device)
                t0 = time.perf_counter()
                for _ in range(s["infer_iters"]):
                    run()
                if self.cuda:
                    torch.cuda.synchronize(self.device)
                elapsed = time.perf_counter() - t0
                row.update(ok=True, images_per_s=s["infer_iters"] * images.shape[0] / elapsed,
                           forward_passes_per_image=self.forward_passes(p, images.shape[-2:]),
                           peak_mb=peak_mb(self.device))
            except Exception as e:
                row.update(ok=False, error=one_line(e))
            table.append(row)
            self.save()
        failed = [f"{r['protocol']}: {r['error']}" for r in table if not r["ok"]]
        if failed:
            raise RuntimeError("rows failed: " + "; ".join(failed))
        return {"rows": len(table), "summary": ", ".join(f"{r['protocol']} {r['images_per_s']:.1f} img/s"
                                                         for r in table)}

    # -- through the trainer and over several processes
    def gpus(self) -> int:
        return torch.cuda.device_count() if self.cuda else 0

    def torchrun_run(self, cfg, run_dir: Path, nproc: int, env: dict | None = None, max_restarts: int = 0,
                     timeout: float = 900) -> tuple[dict, str]:
        """Train ``cfg`` with ``torchrun --nproc_per_node nproc`` into ``run_dir``: (its result.json, its output)."""
        write_json(cfg.to_dict(), run_dir / "launch_config.json")
        cmd = torchrun_command(cfg, run_dir, nproc, max_restarts)
        env = {FRESH_STORE_ENV: "1", **os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
               **(env or {})}  # a fresh store per attempt: torchrun's restarts reconnect (see restart_store_problem)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        out = proc.stdout + proc.stderr
        if proc.returncode != 0 or not (run_dir / "result.json").is_file():
            tail = [line for line in out.splitlines() if line.strip()][-12:]
            raise RuntimeError(f"torchrun over {nproc} processes exited with status {proc.returncode}: "
                               + " | ".join(tail))
        return json.loads((run_dir / "result.json").read_text()), out

    @staticmethod
    def steady_images_per_s(history: list, batch: int, warmup: int) -> float:
        """Training images/s from the iteration after ``warmup`` to the last (the trainer's logged ``time_s``)."""
        recs = [r for r in history if r.get("kind") == "train"]
        first = next(r for r in recs if r["iter"] == warmup)
        return (recs[-1]["iter"] - first["iter"]) * batch / (recs[-1]["time_s"] - first["time_s"])

    def trainer_micro_batch(self, per_rank: int) -> int:
        """The largest micro-batch that divides ``per_rank`` and is no larger than what fit in step 5."""
        fitted = [r["micro_batch"] for r in self.record["throughput"]["train"]
                  if r.get("ok") and r["precision"] == "bf16" and not r["compile"]]
        cap = max(fitted) if fitted else self.s["train_micro"]
        return max(m for m in range(1, per_rank + 1) if per_rank % m == 0 and m <= cap)

    def throughput_trainer(self) -> dict:
        s = self.s
        nproc = max((n for n in range(1, max(self.gpus(), 1) + 1) if s["batch"] % n == 0), default=1)
        per_rank = s["batch"] // nproc
        micro = self.trainer_micro_batch(per_rank)
        workers = 1 if self.args.quick else max(2, min(8, (os.cpu_count() or 2) // nproc))
        warmup, iters = s["trainer_warmup"], s["trainer_iters"]
        cfg = self.train_config(iters, self.tmp / "trainer", val_every=-1, micro_batch=micro, workers=workers,
                                log_every=warmup)
        result, _ = self.torchrun_run(cfg, self.tmp / "trainer", nproc)
        ips = self.steady_images_per_s(result["history"], s["batch"], warmup)
        row = {"ok": True, "images_per_s": ips, "gpus": nproc if self.cuda else 0, "processes": nproc,
               "images_per_s_per_gpu": ips / nproc if self.cuda else None, "gpu": self.gpu,
               "backbone": s["backbone"], "crop": s["crop"], "global_batch": s["batch"], "micro_batch": micro,
               "accumulation_steps": per_rank // micro, "precision": cfg.amp, "channels_last": cfg.channels_last,
               "workers_per_rank": workers, "iterations": iters, "warmup_iterations": warmup,
               "ddp_sync_bn": nproc > 1, "cudnn_benchmark": self.cuda,
               "data": "JPEGs at ADE20K's sizes, decoded and augmented (scale, rotate, blur, mirror, crop) in "
                       "DataLoader workers"}
        self.record["throughput"]["trainer"] = row
        where = f"{nproc} GPU(s)" if self.cuda else f"{nproc} CPU process(es)"
        return {**row, "summary": f"{ips:.1f} img/s through the trainer on {where} (torchrun, JPEG loading"
                                  f"{', DDP + SyncBN' if nproc > 1 else ''}), micro-batch {micro}"}

    def multi_gpu_smoke(self) -> dict:
        gpus = self.gpus()
        if gpus < 2 and not (self.args.cpu_smoke and not self.cuda):
            why = f"needs 2 GPUs; this machine has {gpus}" + ("" if self.cuda else " (--cpu-smoke rehearses it)")
            return {"skipped": why, "summary": f"skipped: {why}"}
        s, run = self.s, self.tmp / "smoke"
        micro = max(1, s["batch"] // 4)  # 2 micro-batches per rank: DDP's no_sync accumulation runs too
        kill = s["smoke_kill_at"]
        cfg = self.train_config(s["smoke_iters"], run, val_every=-1, micro_batch=micro, ckpt_every=s["smoke_ckpt"],
                                log_every=1)
        result, out = self.torchrun_run(cfg, run, 2, env={DRILL_ENV: f"1:{kill}"}, max_restarts=1)
        records = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]
        iters, losses = [r["iter"] for r in records], [r["loss"] for r in records]  # both attempts
        problems = [p for p, bad in (
            (f"the kill drill did not run ({DRILL_ENV})", f"{DRILL_ENV}=1:{kill}" not in out),
            ("the ranks did not start twice", out.count("rank 0/2: device") != 2),
            (f"iterations logged {iters}, expected 1..{cfg.iters} once each", iters != list(range(1, cfg.iters + 1))),
            (f"non-finite losses {losses}", not all(np.isfinite(losses)))) if bad]
        if problems:
            raise RuntimeError("; ".join(problems))
        entry = {"processes": 2, "backend": "nccl" if self.cuda else "gloo", "iterations": result["iterations"],
                 "amp": cfg.amp, "channels_last": cfg.channels_last, "micro_batch": micro,
                 "accumulation_steps": s["batch"] // 2 // micro, "checkpoint_every": cfg.ckpt_every,
                 "killed": f"rank 1 (SIGKILL) after the checkpoint of iteration {kill}",
                 "restart": "torchrun --max-restarts 1; both ranks resumed from last.pt (--resume auto)",
                 "losses": losses}
        if self.cuda:
            entry["compile_vs_eager"] = self.compile_vs_eager()
        entry["summary"] = (f"2 processes ({entry['backend']}), rank 1 killed after iteration {kill}, restarted, "
                            f"finished {result['iterations']} iterations"
                            + (f"; {entry['compile_vs_eager']['summary']}" if self.cuda else
                               "; compile vs eager: GPUs only"))
        return entry

    def compile_vs_eager(self) -> dict:
        """Images/s of 2-process DDP + SyncBN training with and without ``torch.compile`` (the trainer warns that the
        graph breaks at every SyncBatchNorm; this measures what that costs)."""
        s, rows = self.s, {}
        warmup, iters = s["trainer_warmup"], s["trainer_iters"]
        for name, compile_ in (("eager", False), ("compile", True)):
            run = self.tmp / f"smoke_{name}"
            cfg = self.train_config(iters, run, val_every=-1, micro_batch=self.trainer_micro_batch(s["batch"] // 2),
                                    log_every=warmup, compile=compile_)
            result, _ = self.torchrun_run(cfg, run, 2, timeout=self.args.compile_timeout + 300)
            recs = [r for r in result["history"] if r.get("kind") == "train"]
            rows[name] = {"images_per_s": self.steady_images_per_s(result["history"], s["batch"], warmup),
                          "first_iterations_s": recs[0]["time_s"], "first_iterations": recs[0]["iter"]}
        ratio = rows["compile"]["images_per_s"] / rows["eager"]["images_per_s"]
        return {**rows, "speedup": ratio, "summary": f"compile + DDP + SyncBN {ratio:.2f}x eager "
                f"({rows['compile']['images_per_s']:.1f} vs {rows['eager']['images_per_s']:.1f} img/s; first "
                f"{warmup} iterations {rows['compile']['first_iterations_s']:.0f} vs "
                f"{rows['eager']['first_iterations_s']:.0f} s)"}

    @staticmethod
    def forward_passes(p, hw) -> int:
        """Forward passes per image of protocol ``p`` on an image of size ``hw`` (windows x flips x scales)."""
        if p.mode == "whole":
            return len(p.views)
        h, w = hw
        total = 0
        for scale in p.scales:
            side = round(scale * (p.base_size or max(h, w)))
            sh, sw = (side, round(side / h * w)) if h >= w else (round(side / w * h), side)
            (ch, cw), (th, tw) = p.crop_hw, p.stride_hw
            ny = -(-max(max(sh, ch) - ch, 0) // th) + 1
            nx = -(-max(max(sw, cw) - cw, 0) // tw) + 1
            total += ny * nx * (2 if p.flip else 1)
        return total

    def chapters(self) -> dict:
        import papermill  # lazy: only --chapters needs it (checked at start)

        rows = {}
        self.record["chapters"] = rows
        for name, tiny in CHAPTER_PARAMETERS.items():
            params = {**CHAPTER_COMMON, "data_root": str(self.data_root), "device": self.args.device,
                      "out_dir": str(self.tmp / "chapters" / name), **tiny}
            print(f"    chapter {name} ...", flush=True)
            t0 = time.perf_counter()
            row = {"parameters": params}
            try:
                (self.tmp / "chapters").mkdir(parents=True, exist_ok=True)
                papermill.execute_notebook(str(ROOT / "book" / f"{name}.ipynb"),
                                           str(self.tmp / "chapters" / f"{name}.out.ipynb"), parameters=params,
                                           kernel_name="python3", cwd=str(self.tmp / "chapters"),
                                           progress_bar=False, execution_timeout=CHAPTER_TIMEOUT_S)
                row["ok"] = True
            except Exception as e:
                row.update(ok=False, error=one_line(e))
                for attr in ("ename", "evalue", "exec_count"):
                    if getattr(e, attr, None) is not None:
                        row[attr] = str(getattr(e, attr))[:300]
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows[name] = row
            print(f"      {'ok' if row['ok'] else 'FAILED: ' + row['error']} ({row['seconds']:.1f} s)", flush=True)
            self.save()
        failed = [n for n, r in rows.items() if not r["ok"]]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(rows)} chapters failed: {', '.join(failed)}")
        return {"summary": f"{len(rows)} chapters passed"}

    # -- the goal and the summary
    def goal(self) -> dict:
        flops = self.flops_per_train_image
        goal = {"images_per_s": GOAL_IMAGES_PER_S, "crop": 473, "precision": "bf16", "gpu_class": "H100",
                "fraction_of_h100_bf16_peak": (GOAL_IMAGES_PER_S * flops / (GOAL_PEAK_TFLOPS * 1e12)
                                               if flops and not self.args.quick else None)}
        bf16 = [r for r in self.record["throughput"]["train"] if r.get("ok") and r["precision"] == "bf16"]
        best = max(bf16, key=lambda r: r["images_per_s"], default=None)
        goal["best_bf16_row"] = None if best is None else {
            k: best[k] for k in ("memory_format", "compile", "images_per_s", "fraction_of_bf16_peak")}
        h100 = self.gpu is not None and any(re.search(p, self.gpu.lower()) for p in H100_CLASS)
        if self.args.quick or not self.cuda:
            goal["met"], goal["note"] = None, "not comparable: " + ("quick mode" if self.args.quick else "CPU")
        elif best is None:
            goal["met"], goal["note"] = None, "no bf16 row was measured"
        elif h100:
            goal["met"] = best["images_per_s"] >= GOAL_IMAGES_PER_S
            goal["note"] = f"best bf16 row {best['images_per_s']:.1f} img/s against the goal's {GOAL_IMAGES_PER_S}"
        else:
            goal["met"] = None
            frac, want = best.get("fraction_of_bf16_peak"), goal["fraction_of_h100_bf16_peak"]
            goal["fraction_met"] = None if frac is None or want is None else frac >= want
            goal["note"] = (f"{self.gpu} is not H100-class; compare the fraction of its own peak "
                            f"({'unknown' if frac is None else f'{100 * frac:.1f}%'}) with the goal's "
                            f"{100 * want:.1f}%" if want else f"{self.gpu} is not H100-class")
        return goal

    def summary(self) -> str:
        r = self.record
        env = r["env"]
        lines = ["", f"gpu_check on {env.get('gpu') or 'CPU'} ({r['device']}), torch {env['torch']}"
                 + (f", CUDA {env['torch_cuda']}" if self.cuda else "") + (" - QUICK MODE" if r["quick"] else ""),
                 "", f"{'step':<20} {'result':<7} {'time':>7}  details"]
        for name, st in r["steps"].items():
            result = ("skipped" if st.get("skipped") else "ok") if st["ok"] else "FAILED"
            lines.append(f"{name:<20} {result:<7} {st['seconds']:>6.1f}s  "
                         + (st.get("summary") or "" if st["ok"] else st.get("error", "")))
        s = self.s
        if r["throughput"]["train"]:
            lines += ["", f"training throughput: PSPNet {s['backbone']}, crop {s['crop']}, global batch {s['batch']}"
                      + ("" if self.peak else " (dense bf16 peak of this device unknown: no fraction)"),
                      f"{'precision':<9} {'memory':<14} {'compile':<8} {'img/s':>8} {'micro':>6} {'peak MB':>9} "
                      f"{'% bf16 peak':>12}"]
            for row in r["throughput"]["train"]:
                head = f"{row['precision']:<9} {row['memory_format']:<14} {'yes' if row['compile'] else 'no':<8}"
                if not row.get("ok"):
                    lines.append(f"{head} FAILED: {row.get('error')}")
                    continue
                frac = row["fraction_of_bf16_peak"]
                lines.append(f"{head} {row['images_per_s']:>8.1f} {row['micro_batch']:>6} {row['peak_mb']:>9.0f} "
                             f"{'-' if frac is None else f'{100 * frac:.1f}%':>12}")
            tf32 = next((row["tf32"] for row in r["throughput"]["train"] if "tf32" in row), None)
            if tf32:
                lines.append("fp32 row TF32 flags: " + ", ".join(f"{k}={v}" for k, v in tf32.items()))
        tr = r["throughput"].get("trainer")
        if tr:
            ddp = ", DDP + SyncBN" if tr["ddp_sync_bn"] else ""
            lines += ["", f"through the trainer (torchrun, JPEG loading{ddp}): {tr['images_per_s']:.1f} img/s on "
                      f"{tr['processes']} process(es)"
                      + (f", {tr['images_per_s_per_gpu']:.1f} per GPU" if tr["images_per_s_per_gpu"] else "")
                      + f", {tr['precision']}, micro-batch {tr['micro_batch']}, {tr['workers_per_rank']} workers/rank"]
        if r["throughput"]["infer"]:
            lines += ["", f"{'inference':<16} {'img/s':>8} {'forwards/img':>13} {'peak MB':>9}  protocol"]
            for row in r["throughput"]["infer"]:
                if not row.get("ok"):
                    lines.append(f"{row['protocol']:<16} FAILED: {row.get('error')}")
                    continue
                pk = row["peak_mb"]
                lines.append(f"{row['protocol']:<16} {row['images_per_s']:>8.1f} {row['forward_passes_per_image']:>13} "
                             f"{'-' if pk is None else f'{pk:.0f}':>9}  {row['name']}, {row['precision']}, "
                             f"{row['image_hw'][0]}x{row['image_hw'][1]}")
        if r.get("goal"):
            g = r["goal"]
            lines += ["", f"goal ({g['images_per_s']} training img/s at 473 in bf16 on one H100-class GPU): "
                      + {True: "MET", False: "NOT MET", None: "n/a"}[g["met"]] + f" - {g.get('note', '')}"]
        lines += ["", f"record: {self.out}  ({r['wall_s']:.0f} s)"]
        return "\n".join(lines)


def _measure_with_flags(spec: dict, flags: dict) -> dict:
    """:func:`bench.measure` in a spawned process, with the parent's backend flags."""
    torch.backends.cudnn.benchmark = flags["cudnn_benchmark"]
    return bench.measure(spec)


def _nccl_version() -> str:
    v = torch.cuda.nccl.version()  # a tuple on newer torch, an int such as 2708 on older
    return ".".join(map(str, v)) if isinstance(v, tuple) else str(v)


def dist_probe(device_name: str, quick: bool) -> int:
    """Under torchrun: a process group (NCCL on CUDA, gloo on CPU), an all_reduce, one DDP + SyncBN step."""
    import torch.distributed as dist  # lazy: only the probe process needs it

    s = QUICK if quick else FULL
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method="env://", timeout=datetime.timedelta(seconds=120))
    try:
        t = torch.full((1,), float(dist.get_rank() + 1), device=device)
        dist.all_reduce(t)
        torch.manual_seed(0)
        model = convert_sync_batchnorm(PSPNet(num_classes=150, backbone=s["backbone"]), device).to(device)
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        c = s["probe_crop"]
        x = torch.randn(2, 3, c, c, device=device)  # (2, 3, crop, crop)
        y = torch.randint(0, 150, (2, c, c), device=device)  # (2, crop, crop)
        loss, _ = DeepSupervisionLoss(0.4)(ddp(x), y)
        loss.backward()
        opt.step()
        sync_bn = sorted({type(m).__name__ for m in model.modules() if "BatchNorm" in type(m).__name__})
        info = {"backend": dist.get_backend(), "world_size": dist.get_world_size(), "all_reduce": t.item(),
                "device": str(device), "loss": loss.item(), "batch_norm": sync_bn,
                "nccl_version": _nccl_version() if backend == "nccl" else None}
        print(PROBE_TAG + json.dumps(info), flush=True)
    finally:
        dist.destroy_process_group()
    return 0


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("benchmarks/gpu_check.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda: this is a GPU check)")
    p.add_argument("--quick", action="store_true", help="tiny crops, batches and images, lite backbone (CPU test)")
    p.add_argument("--out", default=None, help="record path (default results/gpu_check_<gpu or cpu>.json; "
                   "_quick is added before .json in quick mode)")
    p.add_argument("--chapters", action="store_true", help="also run the training chapters through papermill")
    p.add_argument("--only", default=None, help=f"comma list of steps to run ({', '.join(STEPS[1:])}); "
                   "fabricate_data always runs")
    p.add_argument("--compile-timeout", type=float, default=150.0, help="seconds for the torch.compile row")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary folder (data, runs, notebooks)")
    p.add_argument("--cpu-smoke", action="store_true", help="with --device cpu: rehearse the 2-GPU smoke run with 2 "
                   "gloo processes (it is skipped on fewer than 2 GPUs otherwise)")
    p.add_argument("--dist-probe", action="store_true", help=argparse.SUPPRESS)
    return p


def usage_error(message: str) -> None:
    """One ``error: ...`` line on stderr and exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def check_device(name: str) -> torch.device:
    """The device, or one ``error:`` line and exit 2."""
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        usage_error(f"unknown device {name!r}; use cuda, cuda:N or cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            usage_error(f"--device {name} but no CUDA GPU is visible (torch {torch.__version__}, built for CUDA "
                        f"{torch.version.cuda}); run on a GPU machine, or use --device cpu --quick")
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            usage_error(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
        device = torch.device("cuda", index)
    return device


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    device = check_device(args.device)
    if args.dist_probe:
        return dist_probe(args.device, args.quick)
    only = None
    if args.only:
        only = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = only - set(STEPS)
        if unknown:
            usage_error(f"--only: unknown step(s) {sorted(unknown)}; choose from {', '.join(STEPS[1:])}")
        if "chapters" in only:
            args.chapters = True
    if args.chapters:
        try:
            import papermill  # noqa: F401  # lazy: only --chapters needs it
        except ImportError:
            usage_error("--chapters needs papermill and a python3 Jupyter kernel: pip install papermill ipykernel "
                        "(or pip install -e '.[book]')")
    if args.out and Path(args.out).is_dir():
        usage_error(f"--out {args.out!r} is a folder; give a file name such as gpu_check.json")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    check = Check(args, device)
    check.record["env"]["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    steps = [s for s in STEPS if (s != "chapters" or args.chapters) and (only is None or s in only
                                                                          or s == "fabricate_data")]
    print(f"gpu_check: {check.gpu or 'CPU'} ({device}), torch {torch.__version__}, "
          f"{'quick mode, ' if args.quick else ''}{len(steps)} steps; record: {check.out}", flush=True)
    try:
        for i, name in enumerate(steps, 1):
            check.step(name, getattr(check, name), i, len(steps))
            if name == "fabricate_data" and not check.record["steps"][name]["ok"]:
                print("    no data set: the remaining steps need it", flush=True)
                break
    finally:
        ok = all(st["ok"] for st in check.record["steps"].values()) and len(check.record["steps"]) == len(steps)
        check.record["ok"] = ok
        check.save()
        if not args.keep_tmp:
            shutil.rmtree(check.tmp, ignore_errors=True)
        else:
            print(f"temporary folder kept: {check.tmp}")
    print(check.summary(), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

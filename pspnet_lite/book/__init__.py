"""Small helpers every chapter of the book uses: environment check, parameter parsing, paths, records.

Chapters run in JupyterLab (working directory ``book/``) and under papermill (any working directory), so
paths are resolved from the repository root, never from the current directory.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The repository root (the folder holding ``book/``), or the current directory for a wheel install."""
    candidate = PACKAGE_DIR.parent
    return candidate if (candidate / "book").is_dir() else Path.cwd()


def resolve_path(path: str | os.PathLike) -> Path:
    """A relative path is taken from the repository root, so a chapter writes to the same place wherever it runs."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else repo_root() / path


def parse_list(value: Any, cast: Callable[[Any], Any] = int) -> list:
    """Accept a list parameter in every form papermill can deliver it.

    ``papermill -p seeds 0,1,2`` arrives as the string ``"0,1,2"``, ``-p seeds "[0, 1]"`` as ``"[0, 1]"``,
    ``-y "seeds: [0, 1]"`` as a real list and ``-p seeds 3`` as an int. All become ``[cast(x), ...]``.
    """
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "(")):
            try:
                items = list(ast.literal_eval(text))
            except (ValueError, SyntaxError) as err:
                raise ValueError(f"cannot read the list parameter {value!r}; write it as 0,1,2") from err
        else:
            items = [part.strip() for part in text.split(",") if part.strip()]
    elif value is None:
        items = []
    else:
        items = [value]
    try:
        return [cast(item) for item in items]
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot read the list parameter {value!r} as {getattr(cast, '__name__', cast)}s") from err


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; anything else is passed to ``torch.device``.

    The same rule as the command lines (:func:`pspnet_lite.distributed.resolve_device`, which it calls):
    a bare ``"cuda"`` becomes the current device with its index (``cuda:0``); a CUDA device without a
    visible GPU raises a ValueError that names the notebook-side fix.
    """
    from .distributed import resolve_device

    if device != "auto" and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but no CUDA GPU is visible; use device='cpu' or 'auto'")
    return resolve_device(device)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def hardware_info(device: torch.device | str = "cpu") -> dict:
    """What a result was measured on: CPU model and cores, GPU name, library versions."""
    device = torch.device(device)
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def git_commit() -> str | None:
    """The repository's current commit (with ``-dirty`` when there are local changes), or None."""
    try:
        root = repo_root()
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_record(path: str | os.PathLike, *, name: str, config: dict, metrics: dict, seconds: float,
                 device: torch.device | str = "cpu", **extra: Any) -> Path:
    """Write a reproduction record (config, commit, hardware, metrics, time) as JSON, atomically."""
    path = resolve_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "config": config, "metrics": metrics, "seconds": round(seconds, 2),
              "git_commit": git_commit(), "hardware": hardware_info(device),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, path)
    return path


def grid_base_config(preset: str, cpu: dict, *, dataset: str, data_root, device, **given):
    """The TrainConfig a grid chapter (05, 06) starts every run from.

    ``preset`` "cpu": ``scenes-lite`` with the chapter's CPU-scale settings ``cpu``; "paper": the §5.1 recipe
    (``ade20k-pspnet50``); anything else: that preset. Then the data set and device, the validation and
    checkpoint cadence (CPU: score once at the end, no intermediate checkpoints; otherwise the preset's
    validation and a checkpoint at least every 1000 iterations, so a GPU run can resume), and every
    ``given`` setting that is not None. ``image_size`` is dropped for data sets other than ContextScenes.
    """
    from .presets import get_preset

    if preset == "cpu":
        base = get_preset("scenes-lite", **cpu)
    elif preset == "paper":
        base = get_preset("ade20k-pspnet50")  # §4/§5.1: SGD 0.01, poly 0.9, batch 16, crop 473, 150K iterations
    else:
        base = get_preset(preset)
    base = dataclasses.replace(base, dataset=dataset, data_root=data_root, device=str(device),
                               num_classes=base.num_classes if dataset == base.dataset else None,
                               val_every=0 if preset == "cpu" else base.val_every,
                               ckpt_every=0 if preset == "cpu" else base.ckpt_every or 1000)
    base = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
    if base.dataset != "context_scenes":
        base = dataclasses.replace(base, image_size=None)
    return base


def setup(device: str = "auto", seed: int = 0, threads: int | None = None) -> torch.device:
    """The check cell of every chapter: print versions and the device, seed everything, return the device."""
    if threads:
        torch.set_num_threads(int(threads))
    dev = pick_device(device)
    seed_everything(seed)
    from . import __version__

    print(f"pspnet_lite {__version__} | torch {torch.__version__} | python {platform.python_version()} | "
          f"device {dev}{' (' + torch.cuda.get_device_name(dev) + ')' if dev.type == 'cuda' else ''} | "
          f"{torch.get_num_threads()} CPU threads")
    return dev


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``; chapters report measured run times with it."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start

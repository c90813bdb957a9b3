"""Small helpers every chapter of the book uses: environment check, parameter parsing, paths, records.

Chapters run in JupyterLab (working directory ``book/``) and under papermill (any working directory), so
paths are resolved from the repository root, never from the current directory.
"""
from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..cli import parse_list  # the package's one list parser; chapters read their list parameters with it
from ..train import TrainConfig
from ..train.distributed import resolve_device
from ..train.presets import PRESETS, get_preset, resolve_preset

__all__ = ["repo_root", "resolve_path", "parse_list", "pick_device", "seed_everything", "hardware_info", "git_commit",
           "write_record", "records_like", "preset_config", "grid_base_config", "setup", "Timer"]

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # pspnet_lite/


def repo_root() -> Path:
    """The repository root (the folder holding ``book/``), or the current directory for a wheel install."""
    candidate = PACKAGE_DIR.parent
    return candidate if (candidate / "book").is_dir() else Path.cwd()


def resolve_path(path: str | os.PathLike) -> Path:
    """A relative path is taken from the repository root, so a chapter writes to the same place wherever it runs."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else repo_root() / path


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; anything else is passed to ``torch.device``.

    The same rule as the command lines (:func:`pspnet_lite.train.distributed.resolve_device`, which it
    calls): a bare ``"cuda"`` becomes the current device with its index (``cuda:0``); a CUDA device without a
    visible GPU raises a ValueError that names the notebook-side fix.
    """
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


def records_like(results_dir: str | os.PathLike, pattern: str, config: dict, match: Sequence[str],
                 vary: Sequence[str]) -> dict[str, tuple[dict, dict]]:
    """The stored records of the same grid as ``config`` with other settings: every ``pattern`` file in
    ``results_dir`` whose configuration equals ``config`` in each key of ``match`` and differs in at least one key
    of ``vary``. Returns ``{file name: (record, {varied key: the record's value})}``, sorted by file name.

    Values are compared as JSON (a tuple equals a list); a key a record lacks counts as different. Unreadable
    files raise, naming the file."""
    mine = json.loads(json.dumps({k: config.get(k) for k in (*match, *vary)}, default=str))
    found = {}
    for path in sorted(resolve_path(results_dir).glob(pattern)):
        try:
            record = json.loads(path.read_text())
            theirs = record["config"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a reproduction record with a config ({err})") from err
        varied = {k: theirs.get(k) for k in vary if theirs.get(k, object()) != mine[k]}
        if varied and all(k in theirs and theirs[k] == mine[k] for k in match):
            found[path.name] = (record, varied)
    return found


def preset_config(preset: str | None, dataset: str | None = None, **given: Any) -> TrainConfig:
    """The TrainConfig a chapter starts from: ``preset`` with every ``given`` setting that is not None.

    ``preset`` means the same in every chapter: a name of ``python -m pspnet_lite.train --list-presets``,
    or ``"paper"``, the paper's preset of ``dataset`` (:func:`pspnet_lite.train.resolve_preset`:
    ``ade20k-pspnet50``, ``voc-pspnet101``, ``cityscapes-pspnet101``; ``ade20k-pspnet50`` on ContextScenes).
    ``dataset`` None keeps the preset's; another data set drops the preset's ContextScenes-only fields and
    class count (:func:`pspnet_lite.train.get_preset`). A chapter parameter left at None means "the
    preset's", so it is not passed on.
    """
    changes = {k: v for k, v in given.items() if v is not None}
    if dataset is not None:
        changes["dataset"] = dataset
    return get_preset(resolve_preset(preset, dataset), **changes)


def grid_base_config(preset: str | None, *, dataset: str, data_root, device, **given: Any) -> TrainConfig:
    """The TrainConfig a grid chapter (05, 06) starts every run from.

    ``preset`` as in :func:`preset_config`, moved to ``dataset`` with ``data_root`` and ``device``. A preset
    that sets its checkpoint cadence keeps it (the chapters' CPU presets ``scenes-ablation`` and
    ``scenes-depth``: score once at the end, no intermediate checkpoints); any other gets a checkpoint every
    1000 iterations, so that a long GPU run can resume. Then every ``given`` setting that is not None;
    ``image_size`` is dropped for data sets other than ContextScenes.
    """
    base = preset_config(preset, dataset, data_root=data_root, device=str(device))
    if "ckpt_every" not in PRESETS[base.preset]:
        base = base.replace(ckpt_every=1000)
    base = base.replace(**{k: v for k, v in given.items() if v is not None})
    if base.dataset != "context_scenes":
        base = base.replace(image_size=None, data_seed=None)
    return base


def setup(device: str = "auto", seed: int = 0, threads: int | None = None) -> torch.device:
    """The check cell of every chapter: print versions and the device, seed everything, return the device."""
    if threads:
        torch.set_num_threads(int(threads))
    dev = pick_device(device)
    seed_everything(seed)
    print(f"pspnet_lite {__version__} | torch {torch.__version__} | python {platform.python_version()} | "
          f"device {dev}{' (' + torch.cuda.get_device_name(dev) + ')' if dev.type == 'cuda' else ''} | "
          f"{torch.get_num_threads()} CPU threads")
    return dev


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``; chapters report measured run times with it."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start

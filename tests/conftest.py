"""Shared test fixtures. Everything runs on the CPU, offline, in seconds."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pspnet_lite.train.presets import get_preset

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


@pytest.fixture
def one_torch_thread():
    """Train on one torch thread (tiny models: faster, and the same numbers however busy the machine is)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # command lines in subprocesses: one thread, the same numbers

# The checkpoint layout written before the package was laid out by role (format "pspnet_lite.train/1"), as the
# old trainer's ``Trainer.checkpoint`` wrote it: ``model_config`` = the flat PSPNet keyword arguments
# (``model.config`` was a dict), ``config`` = the FLAT ``TrainConfig.to_dict()`` with the architecture fields at
# the top level. These two dicts are what the old code wrote for ``get_preset("scenes-tiny")`` (copied from a
# checkpoint it wrote; only the run-specific values are replaced by :func:`old_format`).
OLD_MODEL_CONFIG = {"num_classes": 16, "backbone": "lite", "width": 16, "bins": [1, 2, 3, 6], "pooling": "avg",
                    "reduction": True, "aux": True, "stem": "deep", "dilation": "full", "output_stride": 8,
                    "dropout": 0.1, "align_corners": True, "layers": None}
OLD_SCENES_TINY_CONFIG = {
    "preset": "scenes-tiny", "dataset": "context_scenes", "data_root": None, "train_split": "train",
    "val_split": "val", "num_train_images": 32, "num_val_images": 8, "image_size": 64, "augment": True,
    "crop_size": 64, "scale_min": 0.5, "scale_max": 2.0, "rotate": 10.0, "blur": True, "flip": True,
    "num_classes": None, "backbone": "lite", "width": None, "bins": [1, 2, 3, 6], "pooling": "avg",
    "reduction": True, "aux": True, "stem": "deep", "dilation": "full", "output_stride": 8, "layers": None,
    "dropout": 0.1, "align_corners": True, "pretrained": None, "pretrained_kind": "auto", "iters": 20,
    "batch_size": 4, "micro_batch": None, "lr": 0.01, "head_lr_mult": 10.0, "momentum": 0.9, "weight_decay": 0.0001,
    "poly_power": 0.9, "alpha": 0.4, "freeze_bn": "none", "sync_bn": True, "device": "auto", "amp": "off",
    "channels_last": False, "compile": False, "workers": 0, "seed": 0, "val_every": 0, "val_protocol": "ss",
    "val_batch_size": 8, "log_every": 5, "ckpt_every": 0, "out_dir": "runs/scenes-tiny", "resume": None,
    "stop_at": None, "tensorboard": False, "progress": False}
# config fields added later, whose defaults mean the old behaviour
ADDED_SINCE_OLD_FORMAT = ("data_seed", "stride_in_1x1")
OLD_CHECKPOINT_KEYS = ("format", "model", "model_config", "optimizer", "scheduler", "scaler", "iteration", "best_miou",
                       "metrics", "rng", "sampler", "config", "class_names", "world_size")


def tiny_config(tmp_path, iters: int = 6, **kw):
    """scenes-tiny made smaller still: a few iterations of batch 4, a log record every iteration, no validation."""
    base = dict(out_dir=str(tmp_path / "run"), iters=iters, batch_size=4, num_train_images=16, num_val_images=4,
                log_every=1, val_every=-1, workers=0, progress=False)
    return get_preset("scenes-tiny", **{**base, **kw})


def old_format(ckpt: dict, **run_values) -> dict:
    """``ckpt`` (a scenes-tiny trainer checkpoint) rewritten as the old trainer wrote it: format 1, the flat
    config (OLD_SCENES_TINY_CONFIG with ``run_values``, e.g. iters, out_dir) and the flat model_config."""
    unknown = set(run_values) - set(OLD_SCENES_TINY_CONFIG)
    assert not unknown, unknown
    model_config = {**OLD_MODEL_CONFIG, "num_classes": ckpt["model_config"]["num_classes"]}
    old = {k: ckpt[k] for k in OLD_CHECKPOINT_KEYS if k in ckpt}
    old.update({"format": "pspnet_lite.train/1", "model_config": model_config,
                "config": {**OLD_SCENES_TINY_CONFIG, **run_values}})
    return old


def train_cli(out_dir, *flags) -> str:
    """``python -m pspnet_lite.train --preset scenes-tiny ... --out-dir out_dir`` in a subprocess; its stdout."""
    cmd = [sys.executable, "-m", "pspnet_lite.train", "--preset", "scenes-tiny", *flags, "--out-dir", str(out_dir),
           "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


TINY_RUN_FLAGS = ("--iters", "3", "--batch-size", "2", "--set", "num_train_images=8", "--num-val-images", "4",
                  "--log-every", "1")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A scenes-tiny run of 3 iterations trained by the command line: (run directory, its stdout).

    The directory holds metrics.jsonl, config.json, last.pt and best.pt (validation at the end)."""
    out = tmp_path_factory.mktemp("tiny_run") / "run"
    stdout = train_cli(out, *TINY_RUN_FLAGS)
    return out, stdout


@pytest.fixture(scope="session")
def old_checkpoint(tiny_run, tmp_path_factory):
    """``tiny_run``'s last.pt in the old layout (format "pspnet_lite.train/1", flat config and model_config)."""
    run, _ = tiny_run
    ckpt = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    old = old_format(ckpt, iters=3, batch_size=2, num_train_images=8, num_val_images=4, log_every=1,
                     out_dir=str(run))
    path = tmp_path_factory.mktemp("old") / "last.pt"
    torch.save(old, path)
    return path


@pytest.fixture
def run_notebook(tmp_path):
    """Execute ``book/<name>.ipynb`` with papermill and the given parameters; return the executed notebook.

    Chapters run in ``tmp_path`` as working directory, so a chapter that depends on the working directory
    fails here. Pass ``out_dir=str(tmp_path / ...)`` in the parameters to keep results out of the repo.
    """
    papermill = pytest.importorskip("papermill")

    def run(name: str, timeout: int = 600, **parameters):
        output = tmp_path / f"{name}.out.ipynb"
        return papermill.execute_notebook(
            str(BOOK / f"{name}.ipynb"), str(output), parameters=parameters, kernel_name="python3",
            cwd=str(tmp_path), progress_bar=False, execution_timeout=timeout,
        )

    return run


def notebook_text(nb) -> str:
    """All text outputs of an executed notebook, for asserting on what a reader sees."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append(out["text"])
            parts.extend(str(v) for k, v in out.get("data", {}).items() if k == "text/plain")
    return "\n".join(parts)

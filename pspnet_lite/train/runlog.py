"""The run's log (JSONL records in ``out_dir/metrics.jsonl``, optional TensorBoard, an in-memory history)
and its result (:class:`RunResult`)."""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..metrics import json_safe
from .config import TrainConfig


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the run stopped and the last good checkpoint was kept."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, permission denied, ...); the run stopped, and the previous
    ``last.pt`` is intact (checkpoints are written to a temporary file and renamed)."""


class RunLogger:
    """JSONL metrics (``out_dir/metrics.jsonl``), optional TensorBoard, and an in-memory history (rank 0 only).

    A fresh run into a directory that already has a ``metrics.jsonl`` moves the old file to
    ``metrics.jsonl.prev`` (replacing an older ``.prev``) and starts a new one, so a plot never shows
    two runs' iterations. A resumed run (``resume_from`` = the checkpoint's iteration) keeps the records
    up to that iteration, drops those the interrupted run wrote after its last checkpoint (they are
    trained again), and appends. ``history`` holds this process's records only.
    """

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool, resume_from: int | None = None):
        self.enabled, self.history, self.tb = enabled, [], None
        self.path = out_dir / "metrics.jsonl"
        if enabled and self.path.is_file():
            if resume_from is None:
                os.replace(self.path, self.path.with_name(self.path.name + ".prev"))
            else:
                self._truncate(resume_from)
        if enabled and tensorboard:
            try:  # lazy: tensorboard is an optional, heavy dependency
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("tensorboard=True but the tensorboard package is not installed; JSONL only",
                              stacklevel=2)
            else:
                self.tb = SummaryWriter(str(out_dir / "tb"))

    def _truncate(self, iteration: int) -> None:
        """Keep the records with ``iter <= iteration`` (and drop a half-written last line)."""
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("iter"), int) and rec["iter"] <= iteration:
                kept.append(line + "\n")
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, self.path)

    def log(self, record: dict) -> None:
        record = json_safe(record)
        self.history.append(record)
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tb is not None:
            tag = record.get("kind", "train")
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "iter":
                    self.tb.add_scalar(f"{tag}/{k}", v, record["iter"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


@dataclass
class RunResult:
    """What one training run produced: :func:`~pspnet_lite.train.train` returns it, and so does every row
    of :func:`~pspnet_lite.train.experiments.run_grid` (``hash`` and ``cached`` then say where it lives).

    ``final`` holds the last validation's scores (``miou``, ``macc``, ``pixel_acc``, per-class ``iou``;
    fractions, None where undefined), ``history`` the JSONL records, ``checkpoints`` the ``last`` and
    ``best`` paths. Stored as ``result.json`` by :meth:`to_dict` and read back by :meth:`from_dict`.
    """

    config: TrainConfig
    final: dict = field(default_factory=dict)
    best_miou: float | None = None
    best: dict | None = None
    iterations: int = 0
    train_time_s: float | None = None
    history: list = field(default_factory=list)
    checkpoints: dict = field(default_factory=dict)
    out_dir: str | None = None
    metrics_file: str | None = None
    class_names: list | None = None
    world_size: int = 1
    hash: str | None = None
    cached: bool = False

    @property
    def miou(self) -> float | None:
        """Mean IoU of the final validation (a fraction), None if there was none."""
        return self.final.get("miou")

    @property
    def macc(self) -> float | None:
        return self.final.get("macc")

    @property
    def pixel_acc(self) -> float | None:
        return self.final.get("pixel_acc")

    @property
    def iou(self) -> list | None:
        return self.final.get("iou")

    def train_records(self) -> list[dict]:
        """The ``kind == "train"`` records of the history (loss, learning rates, throughput)."""
        return [r for r in self.history if r.get("kind") == "train"]

    def to_dict(self) -> dict:
        """JSON-able dict (the config nested as :meth:`TrainConfig.to_dict`)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["config"] = self.config.to_dict()
        return json_safe(d)

    @classmethod
    def from_dict(cls, d: dict) -> RunResult:
        """Read :meth:`to_dict`'s dict, or a row stored before results were typed (scores at the top level)."""
        d = dict(d)
        d["config"] = TrainConfig.from_dict(d["config"])
        if "final" not in d:  # the older row layout
            d["final"] = {k: d.get(k) for k in ("miou", "macc", "pixel_acc", "iou")}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

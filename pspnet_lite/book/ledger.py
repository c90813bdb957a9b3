"""The claims ledger of the closing chapter: every claim of the paper, where the book tests it, and the verdict its
stored record holds.

Each entry names the paper's claim, its evidence in the paper, the chapter that tests it and how its verdict is
read: a declared claim of a chapter's record (``record["claims"]``, decided by :mod:`pspnet_lite.book.stats` with
Holm's correction), a paired interval a chapter stores without a declared claim (``record["intervals"]``), or
nothing (not tested here), with the command that runs it on the real data. The ledger reads records and trains
nothing.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from . import resolve_path

__all__ = ["Entry", "LEDGER", "TABLE4_STEPS", "read_entry", "read_ledger", "load_record"]


@dataclass(frozen=True)
class Entry:
    """One claim of the paper in the ledger.

    ``record`` is a file of ``results/`` and ``key`` the claim's name in its ``claims`` (or, with ``interval``, the
    key of its ``intervals`` and the direction the paper claims: +1 if the difference should be positive, -1 if
    negative). ``record=None`` means not tested here; ``command`` is the chapter's run on real data."""

    claim: str
    paper: str
    chapter: str
    record: str | None = None
    key: str | None = None
    interval: int = 0
    command: str = ""


_ADE = ("-p preset paper -p dataset ade20k -p data_root /data/ADEChallengeData2016 "
        "-p pretrained /weights/{backbone}_v2.pth")
LEDGER: tuple[Entry, ...] = (
    Entry("every pyramid beats the dilated FCN (B1+AVE)", "Table 1: +2.84 mIoU", "05 §3",
          "05_ablation_cpu_context_scenes.json", "C1", command=f"papermill book/05_ablation.ipynb out.ipynb {_ADE}"),
    Entry("every pyramid beats the dilated FCN (B1+MAX)", "Table 1: +2.71 mIoU", "05 §3",
          "05_ablation_cpu_context_scenes.json", "C2", command=f"papermill book/05_ablation.ipynb out.ipynb {_ADE}"),
    Entry("the full PSPNet beats the dilated FCN", "Table 1: +4.45 mIoU", "05 §3",
          "05_ablation_cpu_context_scenes.json", "C3", command=f"papermill book/05_ablation.ipynb out.ipynb {_ADE}"),
    Entry("average pooling beats max pooling", "§5.2, Table 1: +0.13 (one bin)", "05 §3",
          "05_ablation_cpu_context_scenes.json", "C4", command=f"papermill book/05_ablation.ipynb out.ipynb {_ADE}"),
    Entry("four levels beat one global bin", "§5.2: +1.61 mIoU", "05 §3", "05_ablation_cpu_context_scenes.json", "C5",
          command=f"papermill book/05_ablation.ipynb out.ipynb {_ADE}"),
    Entry("sub-regions fix what one global vector loses (regional)", "§3.2", "05 §3",
          "05_ablation_cpu_context_scenes.json", "C6"),
    Entry("a global prior fixes the mismatched relationship", "§3.1, Fig. 2 row 1", "05 §3",
          "05_ablation_cpu_context_scenes.json", "C7"),
    Entry("a global prior fixes confusion categories", "§3.1, Fig. 2 row 2", "05 §3",
          "05_ablation_cpu_context_scenes.json", "C8"),
    Entry("the pyramid finds inconspicuous objects", "§3.1, Fig. 2 row 3", "05 §3",
          "05_ablation_cpu_context_scenes.json", "C9"),
    Entry("dimension reduction helps", "Table 1: +0.61 (AVE), +0.69 (MAX) mIoU", "05 exercise 2",
          command="papermill book/05_ablation.ipynb out.ipynb -p rows B1236+AVE,B1236+AVE+DR,B1236+MAX,B1236+MAX+DR "
                  "-p seeds 20,21,22,23,24 (CPU), or with " + _ADE),
    Entry("the auxiliary loss helps", "Table 2: +1.41 mIoU", "04 §3", "04_deep_supervision_cpu_context_scenes.json",
          "A1", command=f"papermill book/04_deep_supervision.ipynb out.ipynb {_ADE}"),
    Entry("α = 0.4 is the best weight", "Table 2: +0.24 over α = 0.9", "04 §3",
          "04_deep_supervision_cpu_context_scenes.json", "A2",
          command=f"papermill book/04_deep_supervision.ipynb out.ipynb {_ADE}"),
    Entry("data augmentation helps", "Table 4: +1.54 mIoU", "04b §6", "04b_training_recipe_cpu_context_scenes.json",
          "FCN DA on - FCN DA off", interval=+1,
          command=f"papermill book/04b_training_recipe.ipynb out.ipynb {_ADE}"),
    Entry("a larger BN batch is better", "§5.1 (no number)", "04b §5", "04b_training_recipe_cpu_context_scenes.json",
          "BN 2 - BN 16", interval=-1, command=f"papermill book/04b_training_recipe.ipynb out.ipynb {_ADE}"),
    Entry("a larger crop is better", "§5.1 (no number)", "04b §5", "04b_training_recipe_cpu_context_scenes.json",
          "crop 48 - crop 64", interval=-1, command=f"papermill book/04b_training_recipe.ipynb out.ipynb {_ADE}"),
    Entry("deeper is better", "Fig. 5: +1.49 score from 50 to 269 layers", "06 §4",
          "06_depth_and_multiscale_cpu_context_scenes.json", "D1",
          command=f"papermill book/06_depth_and_multiscale.ipynb out.ipynb {_ADE}"),
    Entry("multi-scale testing helps (shallowest)", "Table 3: +0.89 to +1.33 mIoU", "06 §4",
          "06_depth_and_multiscale_cpu_context_scenes.json", "M1",
          command=f"papermill book/06_depth_and_multiscale.ipynb out.ipynb {_ADE}"),
    Entry("multi-scale testing helps (deepest)", "Table 3: +0.89 to +1.33 mIoU", "06 §4",
          "06_depth_and_multiscale_cpu_context_scenes.json", "M2",
          command=f"papermill book/06_depth_and_multiscale.ipynb out.ipynb {_ADE}"),
    Entry("the benchmark numbers: ADE20K challenge, VOC 2012, Cityscapes", "Tables 5-8", "07",
          command="papermill book/07_benchmarks.ipynb out.ipynb -p preset paper -p dataset voc|cityscapes|ade20k "
                  "-p data_root DIR -p pretrained /weights/{backbone}_v2.pth"),
)
"""Every claim of the paper the book discusses, in the closing chapter's order."""

TABLE4_STEPS: tuple[tuple[str, str, str, str | None, str | None], ...] = (
    ("+DA", "ResNet50-Baseline", "ResNet50+DA", "04b_training_recipe_cpu_context_scenes.json",
     "FCN DA on - FCN DA off"),
    ("+AL", "ResNet50+DA", "ResNet50+DA+AL", "04_deep_supervision_cpu_context_scenes.json", "A1"),
    ("+PSP", "ResNet50+DA+AL", "ResNet50+DA+AL+PSP", "05_ablation_cpu_context_scenes.json", "C3"),
    ("ResNet269", "ResNet50+DA+AL+PSP", "ResNet269+DA+AL+PSP", "06_depth_and_multiscale_cpu_context_scenes.json", "D1"),
    ("+MS", "ResNet269+DA+AL+PSP", "ResNet269+DA+AL+PSP+MS", "06_depth_and_multiscale_cpu_context_scenes.json", "M2"),
)
"""Table 4's steps (name, the paper's row before and after it in ``paper.TABLE4_ADE20K``) and the book's CPU
analogue (record, claim or interval key), for the closing chapter's waterfall."""


def load_record(results_dir: str | os.PathLike, name: str) -> dict | None:
    """The stored record ``results_dir/name``, or None when it is missing (the ledger then says so)."""
    path = resolve_path(results_dir) / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a JSON record ({err}); restore it from the repository") from err


def _from_interval(found: dict, direction: int) -> dict:
    lo, hi = found["ci95"]
    shown = lo > 0 if direction > 0 else hi < 0
    reversed_ = hi < 0 if direction > 0 else lo > 0
    verdict = "shown" if shown else "reversed" if reversed_ else "not resolved"
    sign = 1 if direction > 0 else -1  # report the difference in the claimed direction
    return {"mean": sign * found["mean"], "ci95": sorted([sign * lo, sign * hi]), "seeds": found["seeds"],
            "verdict": verdict + " (uncorrected)"}


def read_entry(entry: Entry, results_dir: str | os.PathLike = "results") -> dict:
    """The entry's verdict from its record: ``{"verdict", "mean", "ci95", "seeds", "source"}`` (in the claimed
    direction), or ``{"verdict": "not tested here", ...}``; a missing record or key says which."""
    row = {"claim": entry.claim, "paper": entry.paper, "chapter": entry.chapter, "command": entry.command}
    if entry.record is None:
        return row | {"verdict": "not tested here", "source": None}
    record = load_record(results_dir, entry.record)
    if record is None:
        return row | {"verdict": f"no record: {entry.record} is missing (run chapter {entry.chapter.split()[0]})",
                      "source": entry.record}
    if entry.interval:
        found = record.get("intervals", {}).get(entry.key)
        if found is None:
            return row | {"verdict": f"{entry.record} has no interval {entry.key!r}", "source": entry.record}
        return row | _from_interval(found, entry.interval) | {"source": entry.record}
    found = next((c for c in record.get("claims", []) if c["name"] == entry.key), None)
    if found is None:
        return row | {"verdict": f"{entry.record} has no claim {entry.key!r}", "source": entry.record}
    return row | {"verdict": found["verdict"], "mean": found["mean"], "ci95": found["ci95"],
                  "seeds": len(found["seeds"]), "source": f"{entry.record} {entry.key}"}


def read_ledger(results_dir: str | os.PathLike = "results", entries=LEDGER) -> list[dict]:
    """:func:`read_entry` of every entry."""
    return [read_entry(e, results_dir) for e in entries]

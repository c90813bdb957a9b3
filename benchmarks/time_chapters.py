"""Measure each chapter's default run: ``time papermill book/<chapter>.ipynb out.ipynb``, one after another.

Every chapter runs with its default parameters except ``out_dir`` (and ``runs_dir``, where a chapter keeps its
runs elsewhere), which point into a fresh temporary folder, so each run starts with an empty run cache (a first
run, training everything it trains). ``--cached NAME`` runs a chapter a second time on the same folder as well:
the time a reader waits on a re-run. The record
(wall seconds per chapter, the command, the machine, the commit) is written atomically to ``--out``; the
README's table of run times is taken from it. Run it on an otherwise idle machine:

    python benchmarks/time_chapters.py --out results/book_run_times.json --cached 02_pyramid_pooling
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import papermill

from pspnet_lite import book

ROOT = Path(__file__).resolve().parents[1]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chapters", default=None, help="comma list, e.g. 00_introduction,05_ablation (default: all)")
    p.add_argument("--cached", default="", help="comma list of chapters to run a second time on the same cache")
    p.add_argument("--out", default="results/book_run_times.json", help="the JSON record (repository-relative)")
    p.add_argument("--update", action="store_true", help="keep the other chapters' entries of an existing --out "
                   "record and replace only the chapters run now")
    p.add_argument("--work", default=None, help="keep the executed notebooks and run folders here (default: a "
                   "temporary folder, removed at the end)")
    return p


def chapters(names: str | None) -> list[Path]:
    """The chapter notebooks, in book order (``NN_topic.ipynb``, ``04b_topic.ipynb``)."""
    found = sorted((ROOT / "book").glob("[0-9][0-9]*_*.ipynb"))
    if names is None:
        return found
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = sorted(set(wanted) - {p.stem for p in found})
    if unknown:
        raise SystemExit(f"unknown chapter(s) {unknown}; the book has {[p.stem for p in found]}")
    return [p for p in found if p.stem in wanted]


def time_papermill(notebook: Path, out_dir: Path, work: Path) -> dict:
    """Run one chapter with papermill (its own default parameters, ``out_dir`` changed); wall seconds."""
    command = [sys.executable, "-m", "papermill", str(notebook.relative_to(ROOT)),
               str(work / f"{notebook.stem}.out.ipynb"), "-p", "out_dir", str(out_dir), "--no-progress-bar"]
    if "runs_dir" in papermill.inspect_notebook(str(notebook)):  # a run cache of its own (chapter 02)
        command += ["-p", "runs_dir", str(out_dir / "runs")]
    load = os.getloadavg()[0]  # how idle the machine was: near 0 on an idle machine
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{notebook.name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return {"seconds": round(seconds, 1), "minutes": round(seconds / 60, 2), "load_1min_before": round(load, 2),
            "command": shlex.join(command)}


def main(args) -> dict:
    times = {}
    with tempfile.TemporaryDirectory(prefix="time_chapters_") as tmp:
        work = Path(args.work or tmp)
        if (work / "runs").exists():
            raise SystemExit(f"{work / 'runs'} exists: a first run needs an empty cache; pass a new --work folder")
        work.mkdir(parents=True, exist_ok=True)
        for notebook in chapters(args.chapters):
            out_dir = work / "runs" / notebook.stem
            times[notebook.stem] = time_papermill(notebook, out_dir, work)
            print(f"{notebook.stem:28s} {times[notebook.stem]['seconds']:7.1f} s", flush=True)
            if notebook.stem in args.cached.split(","):
                times[notebook.stem + " (cached)"] = time_papermill(notebook, out_dir, work)
                print(f"{notebook.stem + ' (cached)':28s} {times[notebook.stem + ' (cached)']['seconds']:7.1f} s")
    out = book.resolve_path(args.out)
    if args.update and out.is_file():
        times = json.loads(out.read_text())["metrics"] | times
    total = sum(t["seconds"] for name, t in times.items() if not name.endswith("(cached)"))
    path = book.write_record(args.out, name="default run time of each chapter (papermill, first run)",
                             config={"chapters": list(times)}, metrics=times, seconds=total)
    print(f"record: {path}; all chapters one after another: {total / 60:.1f} min")
    return times


if __name__ == "__main__":
    main(get_args_parser().parse_args())

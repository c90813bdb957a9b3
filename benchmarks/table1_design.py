"""Chapter 05's design runs: Table 1's default rows on ContextScenes *development* seeds, never the report's.

Chapter 05 reports its verdicts on fresh seeds (its ``seeds`` parameter). The choices behind its default (one
fresh ContextScenes sample per run seed, the step count and image size that fit 10 minutes) were made on the
seeds of this script, whose record is ``results/05_design_dev_seeds_context_scenes.json``. Each grid trains the
given rows x seeds with the trainer (``run_grid``) at the chapter's preset, and stores every run's mIoU and
per-role IoU.

    python benchmarks/table1_design.py --grid budget --iters 200 --image-size 128
    python benchmarks/table1_design.py --grid fixed-data --iters 200 --image-size 128
    python benchmarks/table1_design.py --grid global-dr --iters 400 --batch-size 4 --lr 0.02 --val-images 400
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from pspnet_lite.book.plan import default_amp
from pspnet_lite.book.table1 import ROLES, role_iou, row_settings
from pspnet_lite.train import get_preset, run_grid

DEV_SEEDS = (10, 11, 12, 13, 14)
GRIDS = {  # rows, and whether each run draws its own ContextScenes sample (data_seed = seed) or all use sample 0
    "budget": (("baseline", "B1+MAX", "B1+AVE", "B1236+AVE+DR"), True),
    "fixed-data": (("B1+AVE", "B1236+AVE+DR"), False),
    "global-dr": (("B1+AVE", "B1+AVE+DR"), True),  # the demonstration script's "B1" reduced the global vector (DR)
}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--grid", choices=list(GRIDS), required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEV_SEEDS))
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.04)
    p.add_argument("--val-images", type=int, default=200)
    p.add_argument("--amp", default=None, help="off or bf16 (default: bf16 where the CPU has bf16 units)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--cache", default="runs/05_design")
    p.add_argument("--out", default="results/05_design_dev_seeds_context_scenes.json")
    return p


def main(args) -> dict:
    rows, per_seed_data = GRIDS[args.grid]
    amp = args.amp or default_amp("cpu") or "off"
    base = get_preset("scenes-ablation", iters=args.iters, image_size=args.image_size, crop_size=args.image_size,
                      batch_size=args.batch_size, lr=args.lr, num_val_images=args.val_images, amp=amp,
                      channels_last=True, device="cpu", progress=False)
    configs = [base.replace(seed=s, data_seed=s if per_seed_data else None, **row_settings(r))
               for r in rows for s in args.seeds]
    t0 = time.perf_counter()
    results = run_grid(configs, args.cache, progress=True, jobs=args.jobs, threads_per_job=1)
    wall = time.perf_counter() - t0
    runs = {r: {} for r in rows}
    for (row, seed), res in zip([(r, s) for r in rows for s in args.seeds], results):
        runs[row][str(seed)] = {"miou": 100 * res.miou, **{k: 100 * v for k, v in role_iou(res.iou).items()}}
    key = (f"{args.grid}_{args.image_size}px_{args.iters}it_batch{args.batch_size}_lr{args.lr}_val{args.val_images}"
           f"_{amp}")
    entry = {"rows": list(rows), "seeds": args.seeds, "data_seed": "seed" if per_seed_data else 0,
             "iters": args.iters, "image_size": args.image_size, "batch_size": args.batch_size, "lr": args.lr,
             "num_val_images": args.val_images, "amp": amp, "wall_seconds": round(wall, 1),
             "runs": runs}
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.is_file() else {"grids": {}}
    record["grids"][key] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{key}: {len(results)} runs, {wall / 60:.1f} min")
    for row in rows:
        m = np.array([v["miou"] for v in runs[row].values()])
        roles = {k: np.nanmean([v[k] for v in runs[row].values()]) for k in ROLES}
        print(f"{row:14s} mIoU {m.mean():6.2f} (sd {m.std(ddof=1):4.2f}) "
              + " ".join(f"{k} {v:5.1f}" for k, v in roles.items()))
    return entry


if __name__ == "__main__":
    main(get_args_parser().parse_args())

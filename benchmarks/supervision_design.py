"""Chapter 04's design runs: the auxiliary loss on a deep, narrow dilated FCN, on development seeds only.

Chapter 04 reports its verdict on fresh seeds. Its network and budget (a ResNet-50 layout at width 8, so that the
auxiliary loss has depth to act on, at a budget where the optimisation is still the bottleneck) were chosen on the
seeds of this script; its record is ``results/04_design_dev_seeds_context_scenes.json``. Each grid trains every
alpha x seed with the trainer (``run_grid``) and stores every run's mIoU and last logged losses.

    python benchmarks/supervision_design.py --backbone resnet50 --width 8 --iters 200 --alphas 0 0.4
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pspnet_lite.book import stats
from pspnet_lite.train import get_preset, run_grid

DEV_SEEDS = (10, 11, 12, 13, 14)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.4])
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEV_SEEDS))
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--train-images", type=int, default=400)
    p.add_argument("--val-images", type=int, default=200)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--cache", default="runs/04_design")
    p.add_argument("--out", default="results/04_design_dev_seeds_context_scenes.json")
    return p


def main(args) -> dict:
    base = get_preset("scenes-supervision", backbone=args.backbone, width=args.width, iters=args.iters,
                      batch_size=args.batch_size, lr=args.lr, image_size=args.image_size, crop_size=args.image_size,
                      num_train_images=args.train_images, num_val_images=args.val_images, device="cpu",
                      progress=False, log_every=max(1, args.iters // 10))
    configs = [base.replace(alpha=a, aux=a > 0, seed=s, data_seed=s) for a in args.alphas for s in args.seeds]
    t0 = time.perf_counter()
    results = run_grid(configs, args.cache, progress=True, jobs=args.jobs, threads_per_job=1)
    wall = time.perf_counter() - t0
    runs = {str(a): {} for a in args.alphas}
    for cfg, res in zip(configs, results):
        last = res.train_records()[-1]
        runs[str(cfg.alpha)][str(cfg.seed)] = {"miou": 100 * res.miou, "loss_main": last.get("loss_main"),
                                               "loss_aux": last.get("loss_aux")}
    key = (f"{args.backbone}@{args.width}_{args.image_size}px_{args.iters}it_batch{args.batch_size}_lr{args.lr}"
           f"_val{args.val_images}")
    entry = {"backbone": args.backbone, "width": args.width, "alphas": args.alphas, "seeds": args.seeds,
             "iters": args.iters, "batch_size": args.batch_size, "lr": args.lr, "image_size": args.image_size,
             "num_train_images": args.train_images, "num_val_images": args.val_images,
             "wall_seconds": round(wall, 1), "runs": runs}
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.is_file() else {"grids": {}}
    record["grids"][key] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{key}: {len(results)} runs, {wall / 60:.1f} min")
    no_al = {int(s): v["miou"] for s, v in runs[str(args.alphas[0])].items()}
    for a in args.alphas:
        values = {int(s): v["miou"] for s, v in runs[str(a)].items()}
        m, sd, n = stats.mean_sd(list(values.values()))
        line = f"alpha {a:<4} mIoU {m:6.2f} (sd {sd:4.2f}, {n} seeds)"
        if a != args.alphas[0]:
            p = stats.paired(values, no_al)
            line += f"  vs alpha {args.alphas[0]}: {p.mean:+6.2f} [{p.ci[0]:+6.2f}, {p.ci[1]:+6.2f}] p={p.p:.4f}"
        print(line)
    return entry


if __name__ == "__main__":
    main(get_args_parser().parse_args())

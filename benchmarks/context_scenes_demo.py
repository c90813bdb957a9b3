"""ContextScenes demonstration: the dilated FCN vs PSPNet B1 vs PSPNet B1236 per §3.1 failure mode.

Trains the three heads of paper Table 1 (baseline = no PPM, B1 = global average pooling only,
B1236 = the pyramid) on the same backbone ("lite": width 16, one bottleneck per stage, output stride 8),
from scratch, with the same small CPU budget, over several seeds, and reports IoU per role of
:mod:`pspnet_lite.data.context_scenes` (mean +- std over seeds). The training loop is deliberately
minimal: SGD with momentum, "poly" learning rate (§4), the deep-supervision loss (alpha 0.4, §4).

    python benchmarks/context_scenes_demo.py --seeds 0 1 2 --jobs 2 \\
        --out benchmarks/results/context_scenes_demo.json
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path

import numpy as np
import torch

from pspnet_lite.data.context_scenes import CLASSES, ROLE_NAMES, ContextScenes, classes_by_role
from pspnet_lite.losses import DeepSupervisionLoss
from pspnet_lite.metrics import ConfusionMatrix
from pspnet_lite.model import PSPNet

MODELS = {"baseline": (), "B1": (1,), "B1236": (1, 2, 3, 6)}
GROUPS = list(ROLE_NAMES) + ["context"]  # "context" = mismatched + confusion


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iters", type=int, default=450)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.04)
    p.add_argument("--train-images", type=int, default=1000)
    p.add_argument("--val-images", type=int, default=200)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (the machine is shared)")
    p.add_argument("--jobs", type=int, default=1, help="seeds trained in parallel processes")
    p.add_argument("--cache-dir", default=None, help="cache generated splits as .npz here")
    p.add_argument("--out", default="benchmarks/results/context_scenes_demo.json")
    return p


def train_one(bins, train_set, args, seed: int) -> PSPNet:
    """Train one model from scratch: SGD, poly LR (power 0.9), DeepSupervisionLoss (§4)."""
    torch.manual_seed(seed)
    model = PSPNet(num_classes=len(CLASSES), backbone="lite", bins=bins)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: (1 - it / args.iters) ** 0.9)
    loss_fn = DeepSupervisionLoss(alpha=0.4)
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                         drop_last=True, generator=gen)
    model.train()
    it = 0
    while it < args.iters:
        for x, y in loader:  # (N, 3, S, S) float, (N, S, S) int64
            loss, _ = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            it += 1
            if it == args.iters:
                break
    return model


@torch.no_grad()
def evaluate(model, val_set, batch_size: int = 50) -> dict:
    """Per-class IoU on the val split, and the mean IoU of each role group (nan classes skipped)."""
    model.eval()
    cm = ConfusionMatrix(len(CLASSES))
    for x, y in torch.utils.data.DataLoader(val_set, batch_size=batch_size):
        cm.update(model(x).argmax(1), y)  # (N, S, S)
    scores = cm.compute()
    iou = scores.iou.numpy()
    out = {"miou": float(scores.miou), "pixel_acc": float(scores.pixel_acc),
           "iou": {c: float(v) for c, v in zip(CLASSES, iou)}}
    for g in GROUPS:
        out[g] = float(np.nanmean(iou[classes_by_role(g)]))
    return out


def table(results: dict) -> str:
    """Rows: models; columns: mIoU per role group, mean +- std over seeds (percent)."""
    cols = ["miou"] + GROUPS
    lines = [f"{'model':<10}" + "".join(f"{c:>17}" for c in cols)]
    for name, runs in results.items():
        cells = []
        for c in cols:
            v = 100 * np.array([r[c] for r in runs])
            cells.append(f"{v.mean():>9.1f} +- {v.std():>4.1f}")
        lines.append(f"{name:<10}" + "".join(cells))
    return "\n".join(lines)


def run_seed(args, seed: int) -> dict:
    """All models for one seed (data seed = init seed = ``seed``); returns model name -> scores."""
    torch.set_num_threads(args.threads)
    kw = dict(image_size=args.image_size, seed=seed, cache_dir=args.cache_dir)
    train_set = ContextScenes("train", args.train_images, **kw)
    val_set = ContextScenes("val", args.val_images, **kw)
    out = {}
    for name in args.models:
        t = time.time()
        model = train_one(MODELS[name], train_set, args, seed)
        r = evaluate(model, val_set)
        r.update(seed=seed, train_s=time.time() - t)
        out[name] = r
        print(f"seed {seed} {name:<8} mIoU {100 * r['miou']:5.1f} "
              + " ".join(f"{g} {100 * r[g]:5.1f}" for g in GROUPS) + f"  ({r['train_s']:.0f}s)", flush=True)
    return out


def main(args) -> dict:
    t0 = time.time()
    if args.jobs > 1:  # one process per seed, each single-threaded
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(args.jobs, len(args.seeds))) as pool:
            per_seed = pool.starmap(run_seed, [(args, s) for s in args.seeds])
    else:
        per_seed = [run_seed(args, s) for s in args.seeds]
    results = {name: [r[name] for r in per_seed] for name in args.models}
    print(f"\nContextScenes val IoU (%), {len(args.seeds)} seeds, {args.iters} iters, batch {args.batch_size}, "
          f"{args.image_size}px, total {time.time() - t0:.0f}s\n" + table(results))
    out = {"args": vars(args), "results": results, "table": table(results)}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main(get_args_parser().parse_args())

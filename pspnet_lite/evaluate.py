"""Score a checkpoint under the paper's test protocols: ``python -m pspnet_lite.evaluate``.

The paper reports single-scale and multi-scale (+flip) numbers (§5.2 Table 3 "MS", Tables 4-7); the
public code bases differ in flip, resizing and whole-image vs sliding-window inference (REFERENCES §1c,
§3 item 13), so every number here is printed with its protocol. One pass over the data scores all the
requested protocols (``pspnet_lite.inference.evaluate``); per-class IoU tables are printed and
everything is written as JSON.

    python -m pspnet_lite.evaluate --checkpoint runs/scenes-lite/best.pt --protocols ss ss+flip ms ms+flip
    python -m pspnet_lite.evaluate --checkpoint ade.pt --dataset ade20k --data-root /data/ade \\
        --mode slide --crop-size 473 --base-size 512 --protocols ss ms+flip --out ade_eval.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from .train import _clean, model_from_checkpoint


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        "python -m pspnet_lite.evaluate", add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate a pspnet_lite checkpoint (mIoU, mAcc, pixel accuracy; paper §5.2) under "
                    "single/multi-scale, flip, whole-image or sliding-window protocols.",
        epilog="Protocols: ss = one scale, ss+flip, ms = scales 0.5..1.75 (paper), ms+flip.\n"
               "The data set defaults to the one the checkpoint was trained on (its stored config).")
    p.add_argument("--checkpoint", required=True, help="trainer checkpoint (last.pt / best.pt)")
    p.add_argument("--dataset", default=None, help="data set name (default: the checkpoint's)")
    p.add_argument("--data-root", default=None, help="data set root (default: the checkpoint's)")
    p.add_argument("--split", default=None, help="split to score (default: the checkpoint's val_split)")
    p.add_argument("--num-images", type=int, default=None, help="score only the first N images")
    p.add_argument("--image-size", type=int, default=None, help="context_scenes only: image size "
                   "(default: the checkpoint's)")
    p.add_argument("--protocols", nargs="+", default=["ss"], choices=["ss", "ss+flip", "ms", "ms+flip"],
                   help="protocols to score in one pass")
    p.add_argument("--mode", choices=["whole", "slide"], default=None,
                   help="whole image or sliding window (default: whole)")
    p.add_argument("--crop-size", type=int, default=None, help="sliding-window size (default: the training crop)")
    p.add_argument("--stride-rate", type=float, default=None, help="window stride / crop (default 2/3)")
    p.add_argument("--base-size", type=int, default=None,
                   help="resize the --resize side to this times each scale (default: the image's own size)")
    p.add_argument("--resize", choices=["long", "short"], default=None, help="side matched to --base-size")
    p.add_argument("--batch-size", type=int, default=1, help="images per batch (>1 needs equal-size images)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--out", default=None, help="JSON file for the scores (default: <checkpoint dir>/eval_<split>.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def protocols_from_args(args, crop_size: int) -> dict:
    """PROTOCOLS entries named in ``args.protocols`` with the mode/crop/stride/base/resize overrides."""
    from .inference import PROTOCOLS

    changes = {k: v for k, v in dict(mode=args.mode, crop_size=args.crop_size or crop_size,
                                     stride_rate=args.stride_rate, base_size=args.base_size,
                                     resize=args.resize).items() if v is not None}
    return {name: dataclasses.replace(PROTOCOLS[name], **changes) for name in args.protocols}


def main(args: argparse.Namespace | None = None) -> dict:
    """Entry point; returns ``{protocol: scores dict}``."""
    from .data import build_dataset
    from .distributed import resolve_device
    from .inference import evaluate

    args = args if args is not None else get_args_parser().parse_args()
    device = resolve_device(args.device)
    model, ckpt = model_from_checkpoint(args.checkpoint, device)
    tcfg = ckpt.get("config", {})
    name = args.dataset or tcfg.get("dataset", "context_scenes")
    root = args.data_root if args.data_root is not None else (tcfg.get("data_root") if args.dataset is None else None)
    split = args.split or tcfg.get("val_split") or "val"
    kw = {}
    if name == "context_scenes":
        size = args.image_size or tcfg.get("image_size")
        if size:
            kw["image_size"] = size
        if args.num_images:
            kw["num_images"] = args.num_images
    dataset = build_dataset(name, root=root, split=split, **kw)
    if args.num_images and len(dataset) > args.num_images:
        dataset = torch.utils.data.Subset(dataset, range(args.num_images))
    num_classes = model.num_classes
    ds_classes = getattr(dataset, "classes", None) or getattr(getattr(dataset, "dataset", None), "classes", None)
    if ds_classes is not None and len(ds_classes) != num_classes:
        raise ValueError(f"the checkpoint predicts {num_classes} classes but {name!r} has {len(ds_classes)}; "
                         "evaluate on the data set it was trained for")
    protocols = protocols_from_args(args, int(tcfg.get("crop_size", 473)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
    scores = evaluate(model, loader, num_classes, protocols=protocols, device=device, progress=not args.no_progress)
    out = {"checkpoint": str(args.checkpoint), "dataset": name, "split": split, "num_images": len(dataset),
           "iteration": ckpt.get("iteration"), "protocols": {}}
    for pname, s in scores.items():
        print(f"\n== {pname}: {s}")
        print(s.table(list(ds_classes) if ds_classes is not None else None))
        out["protocols"][pname] = _clean(s.as_dict())
    path = Path(args.out) if args.out else Path(args.checkpoint).with_name(f"eval_{split}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {path}")
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)

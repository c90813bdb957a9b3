"""Score a checkpoint under the paper's test protocols: ``python -m pspnet_lite.evaluate``.

The paper reports single-scale and multi-scale (+flip) numbers (§5.2 Table 3 "MS", Tables 4-7); the
public code bases differ in flip, resizing and whole-image vs sliding-window inference (REFERENCES §1c,
§3 item 13), so every number here is printed with its protocol. One pass over the data scores all the
requested protocols (``pspnet_lite.inference.evaluate``); per-class IoU tables are printed and
everything is written as JSON.

The checkpoint is a trainer checkpoint (``last.pt`` / ``best.pt``, which records its architecture and
data set) or any weights file :func:`pspnet_lite.weights.load_weights` reads, e.g. the authors'
hszhao/semseg PSPNet checkpoints; such a file does not record the architecture, so give it with the
model flags (``--backbone``, ``--bins``, ...; the defaults are the authors' PSPNet) and the data set
with ``--dataset`` (which also gives ``--num-classes``).

    python -m pspnet_lite.evaluate --checkpoint runs/scenes-lite/best.pt --protocols ss ss+flip ms ms+flip
    python -m pspnet_lite.evaluate --checkpoint ade.pt --dataset ade20k --data-root /data/ade \\
        --mode slide --crop-size 473 --base-size 512 --protocols ss,ms+flip --out ade_eval.json
    python -m pspnet_lite.evaluate --checkpoint train_epoch_100.pth --backbone resnet50 --dataset ade20k \\
        --data-root /data/ade --mode slide --base-size 512 --protocols ss+flip ms+flip
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from .train import CommaList, _clean, cli_errors, model_from_checkpoint_dict

PROTOCOL_NAMES = ("ss", "ss+flip", "ms", "ms+flip")
WEIGHT_KINDS = ("auto", "semseg", "pspnet_lite")


def dataset_num_classes(name: str | None) -> int | None:
    """Classes of a named data set (paper §5: ADE20K 150, VOC 21, Cityscapes 19), None if unknown."""
    if name == "context_scenes":
        from .data.context_scenes import CLASSES
        return len(CLASSES)
    from .data.datasets import ADE20K_CLASSES, CITYSCAPES_CLASSES, VOC_CLASSES
    classes = {"ade20k": ADE20K_CLASSES, "voc": VOC_CLASSES, "cityscapes": CITYSCAPES_CLASSES}.get(name)
    return len(classes) if classes is not None else None


def _int_list(text: str) -> tuple[int, ...]:
    text = text.strip().strip("[]()")
    if text.lower() in ("", "none"):
        return ()
    try:
        return tuple(int(v) for v in text.replace(" ", ",").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,2,3,6; got {text!r}")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Architecture flags for weights files that are not trainer checkpoints (ignored for those)."""
    g = p.add_argument_group("architecture of a plain weights file (e.g. the authors' semseg checkpoint; "
                             "trainer checkpoints record their own and ignore these)")
    g.add_argument("--backbone", default=None, help="resnet50|resnet101|resnet152|resnet269|lite (default resnet50)")
    g.add_argument("--num-classes", type=int, default=None, help="classes (default: --dataset's)")
    g.add_argument("--width", type=int, default=None, help="backbone width (default 64, 16 for lite)")
    g.add_argument("--layers", type=_int_list, default=None, help="blocks per stage, e.g. 3,4,6,3")
    g.add_argument("--bins", type=_int_list, default=None, help="pyramid bins (default 1,2,3,6; 'none' = FCN)")
    g.add_argument("--pooling", choices=["avg", "max"], default=None, help="PPM pooling (default avg)")
    g.add_argument("--reduction", action=argparse.BooleanOptionalAction, default=None,
                   help="PPM 1/N channel reduction (default on)")
    g.add_argument("--stem", choices=["deep", "torchvision"], default=None, help="default deep (authors')")
    g.add_argument("--dilation", choices=["full", "contracted"], default=None, help="default full (authors')")
    g.add_argument("--output-stride", type=int, choices=[8, 16, 32], default=None, help="default 8")
    g.add_argument("--align-corners", action=argparse.BooleanOptionalAction, default=None,
                   help="bilinear align_corners (default on, as the authors)")
    g.add_argument("--weights-kind", choices=WEIGHT_KINDS, default="auto",
                   help="layout for pspnet_lite.weights.load_weights (default: guessed from the keys)")


def load_model(args: argparse.Namespace, device) -> tuple[torch.nn.Module, dict]:
    """(model in eval mode, checkpoint-like dict) from ``args.checkpoint``: a trainer checkpoint, or any
    file :func:`pspnet_lite.weights.load_weights` reads, built from the architecture flags. For the
    latter the dict is ``{"config": {"dataset": args.dataset}, "iteration": None, "weights": report}``."""
    from .model import PSPNet
    from .weights import load_weights

    path = Path(args.checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file
        raise ValueError(f"cannot read {str(path)!r} with torch.load(weights_only=True) ({type(e).__name__}: "
                         f"{e}); expected a pspnet_lite or semseg checkpoint") from e
    if isinstance(obj, dict) and "model" in obj and "model_config" in obj:
        return model_from_checkpoint_dict(obj, device), obj
    num_classes = args.num_classes or dataset_num_classes(getattr(args, "dataset", None))
    if not num_classes:
        raise ValueError(f"{str(path)!r} is a plain weights file (not a trainer checkpoint), so it does not say how "
                         "many classes it predicts; pass --num-classes N or --dataset NAME (ade20k, voc, cityscapes)")
    arch = {k: getattr(args, k) for k in ("backbone", "width", "layers", "bins", "pooling", "reduction", "stem",
                                            "dilation", "output_stride", "align_corners")
            if getattr(args, k, None) is not None}
    model = PSPNet(num_classes=num_classes, aux=False, **arch)  # aux is training-only (§4): its weights are skipped
    report = load_weights(model, str(path), kind=args.weights_kind)
    print(f"weights: {report}", file=sys.stderr)
    return model.to(device).eval(), {"config": {"dataset": getattr(args, "dataset", None)}, "iteration": None,
                                     "weights": str(report)}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        "python -m pspnet_lite.evaluate", add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate a pspnet_lite checkpoint (mIoU, mAcc, pixel accuracy; paper §5.2) under "
                    "single/multi-scale, flip, whole-image or sliding-window protocols.",
        epilog="Protocols: ss = one scale, ss+flip, ms = scales 0.5..1.75 (paper), ms+flip.\n"
               "The data set defaults to the one the checkpoint was trained on (its stored config).")
    p.add_argument("--checkpoint", required=True, help="trainer checkpoint (last.pt / best.pt) or a weights file "
                   "pspnet_lite.weights.load_weights reads (e.g. the authors' semseg checkpoint; give --dataset and "
                   "the architecture flags)")
    p.add_argument("--dataset", default=None, help="data set name (default: the checkpoint's)")
    p.add_argument("--data-root", default=None, help="data set root (default: the checkpoint's)")
    p.add_argument("--split", default=None, help="split to score (default: the checkpoint's val_split)")
    p.add_argument("--num-images", type=int, default=None, help="score only the first N images")
    p.add_argument("--image-size", type=int, default=None, help="context_scenes only: image size "
                   "(default: the checkpoint's)")
    p.add_argument("--protocols", action=CommaList, valid=PROTOCOL_NAMES, default=["ss"],
                   help=f"protocols to score in one pass, space- or comma-separated: {', '.join(PROTOCOL_NAMES)}")
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
    add_model_args(p)
    return p


def protocols_from_args(args, crop_size: int) -> dict:
    """PROTOCOLS entries named in ``args.protocols`` with the mode/crop/stride/base/resize overrides."""
    from .inference import PROTOCOLS

    changes = {k: v for k, v in dict(mode=args.mode, crop_size=args.crop_size or crop_size,
                                     stride_rate=args.stride_rate, base_size=args.base_size,
                                     resize=args.resize).items() if v is not None}
    return {name: dataclasses.replace(PROTOCOLS[name], **changes) for name in args.protocols}


def main(args: argparse.Namespace | None = None) -> dict:
    """Entry point; returns ``{protocol: scores dict}``. Bad flags or files: one ``error:`` line, exit 2."""
    args = args if args is not None else get_args_parser().parse_args()
    with cli_errors():
        return run(args)


def run(args: argparse.Namespace) -> dict:
    """What :func:`main` does, raising ValueError / FileNotFoundError instead of exiting."""
    from .data import build_dataset
    from .distributed import resolve_device
    from .inference import evaluate

    device = resolve_device(args.device)
    model, ckpt = load_model(args, device)
    tcfg = ckpt.get("config") or {}
    if "weights" in ckpt and not args.dataset:
        raise ValueError(f"{args.checkpoint!r} does not record its data set; pass --dataset "
                         "(ade20k, voc, cityscapes, context_scenes) and --data-root")
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
    if ckpt.get("weights"):
        out["weights"] = ckpt["weights"]
    path = Path(args.out) if args.out else Path(args.checkpoint).with_name(f"eval_{split}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {path}")
    return out


if __name__ == "__main__":
    main()

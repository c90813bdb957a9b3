"""Score a checkpoint under the paper's test protocols: ``python -m pspnet_lite.evaluate``.

The paper reports single-scale and multi-scale (+flip) numbers (§5.2 Table 3 "MS", Tables 4-7); the
public code bases differ in flip, resizing and whole-image vs sliding-window inference (hszhao/semseg
``tool/test.py`` slides a window with flip; open-mmlab/mmsegmentation's PSPNet configs score whole
images without flip), so every number here is printed with its protocol. One pass over the data scores
all the requested protocols (``pspnet_lite.inference.evaluate``); per-class IoU tables are printed and
everything is written as JSON.

The checkpoint is read by :func:`pspnet_lite.checkpoint.load_model`: a trainer checkpoint (``last.pt`` /
``best.pt``, which records its architecture and data set) or any weights file it reads, e.g. the
authors' hszhao/semseg PSPNet checkpoints. Such a file does not record the architecture, so give it with
the architecture flags, one per :class:`~pspnet_lite.model.PSPNetConfig` field (``--backbone``,
``--bins``, ...; the defaults are the authors' PSPNet), and the data set with ``--dataset`` (which also
gives ``--num-classes``).

    python -m pspnet_lite.evaluate --checkpoint runs/scenes-lite/best.pt --protocols ss ss+flip ms ms+flip
    python -m pspnet_lite.evaluate --checkpoint ade.pt --dataset ade20k --data-root /data/ade \\
        --mode slide --crop-size 473 --base-size 512 --protocols ss,ms+flip --out ade_eval.json
    python -m pspnet_lite.evaluate --checkpoint train_epoch_100.pth --backbone resnet50 --dataset ade20k \\
        --data-root /data/ade --mode slide --base-size 512 --protocols ss+flip ms+flip

A checkpoint that records its preprocessing and test protocol (one converted from the authors' Caffe release by
``python -m pspnet_lite.convert caffe``: BGR minus the mean, no std; sliding 473 / 713 windows, long side 513 /
2049, flip) is scored with them when no flag says otherwise: ``--protocols`` defaults to ``ss+flip`` there, and
``--mode``, ``--crop-size``, ``--stride-rate``, ``--base-size``, ``--resize`` to the recorded values.

``--predictions DIR`` scores a folder of prediction PNGs instead, with no model, in the format of the
data set's evaluation server (:mod:`pspnet_lite.submission`: ADE20K class ids 1..150, VOC 0..20, Cityscapes
label ids in files named ``city_seq_frame*.png``):

    python -m pspnet_lite.evaluate --dataset cityscapes --data-root /data/cityscapes --split val \\
        --predictions preds/ --out scores.json

The JSON holds ``miou``, ``macc``, ``pixel_acc`` and ``per_class`` (fractions in [0, 1]); for Cityscapes also
the four scores of the paper's Table 7, ``iou_class``, ``iiou_class``, ``iou_category`` and ``iiou_category``
(:mod:`pspnet_lite.cityscapes_metrics`; ``--no-iiou`` skips the instance-level two). A checkpoint's JSON holds
the same keys per protocol under ``protocols``, and those of its first protocol at the top level. The file is
written whole (temporary file, then renamed) once everything is scored, or not at all.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from . import checkpoint
from .cityscapes_metrics import CityscapesMetrics
from .cli import ArgumentParser, CommaList, add_field_flags, cli_errors, field_values
from .data import build_dataset, data_loader
from .data.context_scenes import CLASSES as SCENES_CLASSES
from .data.datasets import ADE20K_CLASSES, CITYSCAPES_CLASSES, VOC_CLASSES
from .data.transforms import IMAGENET, EvalTransform
from .inference import PROTOCOLS, aligned_for, default_crop_size, evaluate
from .metrics import SegmentationScores, json_safe
from .model import PSPNetConfig
from .submission import score_predictions
from .train.distributed import resolve_device
from .train.experiments import write_json

PROTOCOL_NAMES = ("ss", "ss+flip", "ms", "ms+flip")
WEIGHT_KINDS = ("auto", "semseg", "pspnet_lite")
DATASET_CLASSES = {"context_scenes": SCENES_CLASSES, "ade20k": ADE20K_CLASSES, "voc": VOC_CLASSES,
                   "cityscapes": CITYSCAPES_CLASSES}
ARCH_FIELDS = list(dataclasses.fields(PSPNetConfig))


def dataset_num_classes(name: str | None) -> int | None:
    """Classes of a named data set (paper §5: ADE20K 150, VOC 21, Cityscapes 19), None if unknown."""
    classes = DATASET_CLASSES.get(name)
    return len(classes) if classes is not None else None


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Architecture flags (one per :class:`~pspnet_lite.model.PSPNetConfig` field) for weights files that are
    not trainer checkpoints; trainer checkpoints record their own and ignore them."""
    g = p.add_argument_group("architecture of a plain weights file (e.g. the authors' semseg checkpoint; "
                             "trainer checkpoints record their own and ignore these)")
    add_field_flags(g, ARCH_FIELDS, defaults={"num_classes": "--dataset's"})
    g.add_argument("--weights-kind", choices=WEIGHT_KINDS, default="auto",
                   help="layout for pspnet_lite.checkpoint.load_weights (default: guessed from the keys)")


def arch_from_args(args: argparse.Namespace) -> PSPNetConfig:
    """The PSPNetConfig the architecture flags describe (defaults: the authors' PSPNet; classes: --dataset's)."""
    given = field_values(args, ARCH_FIELDS)
    given.setdefault("num_classes", dataset_num_classes(getattr(args, "dataset", None)))
    return PSPNetConfig(**given)


def load_model(args: argparse.Namespace, device) -> checkpoint.Loaded:
    """The model of ``args.checkpoint`` (:func:`pspnet_lite.checkpoint.load_model`): a trainer checkpoint, or a
    weights file built with the architecture flags. A plain weights file reports what it loaded."""
    loaded = checkpoint.load_model(args.checkpoint, arch_from_args(args), kind=args.weights_kind, device=device)
    if not loaded.trainer:
        print(f"weights: {loaded.state['weights']}")
    return loaded


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = ArgumentParser(
        "python -m pspnet_lite.evaluate", add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate a pspnet_lite checkpoint (mIoU, mAcc, pixel accuracy; paper §5.2) under "
                    "single/multi-scale, flip, whole-image or sliding-window protocols.",
        epilog="Protocols: ss = one scale, ss+flip, ms = scales 0.5..1.75 (the authors' release), ms+flip.\n"
               "The data set defaults to the one the checkpoint was trained on (its stored config).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="trainer checkpoint (last.pt / best.pt) or a weights file "
                        "pspnet_lite.checkpoint.load_model reads (e.g. the authors' semseg checkpoint; give --dataset "
                        "and the architecture flags)")
    source.add_argument("--predictions", help="score a folder of prediction PNGs in the data set's server format "
                        "instead (no model; give --dataset)")
    p.add_argument("--no-iiou", action="store_true", help="Cityscapes: score IoU class/category only (no "
                   "*_gtFine_instanceIds.png needed)")
    p.add_argument("--dataset", default=None, help="data set name (default: the checkpoint's)")
    p.add_argument("--data-root", default=None, help="data set root (default: the checkpoint's)")
    p.add_argument("--split", default=None, help="split to score (default: the checkpoint's val_split)")
    p.add_argument("--num-images", type=int, default=None, help="score only the first N images")
    p.add_argument("--image-size", type=int, default=None, help="context_scenes only: image size "
                   "(default: the checkpoint's)")
    p.add_argument("--protocols", action=CommaList, valid=PROTOCOL_NAMES, default=None,
                   help=f"protocols to score in one pass, space- or comma-separated: {', '.join(PROTOCOL_NAMES)} "
                        "(default: ss, or ss+flip for a checkpoint whose recorded protocol flips)")
    p.add_argument("--mode", choices=["whole", "slide"], default=None,
                   help="whole image or sliding window (default: whole)")
    p.add_argument("--crop-size", type=int, default=None, help="sliding-window size (default: the training crop; "
                   "for a plain weights file the authors' crop of --dataset: 713 on Cityscapes, else 473)")
    p.add_argument("--stride-rate", type=float, default=None, help="window stride / crop (default 2/3)")
    p.add_argument("--base-size", type=int, default=None,
                   help="resize the --resize side to this times each scale (default: the image's own size)")
    p.add_argument("--resize", choices=["long", "short"], default=None, help="side matched to --base-size")
    p.add_argument("--batch-size", type=int, default=1, help="images per batch (>1 needs equal-size images)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--out", default=None, help="JSON file for the scores (default: <checkpoint dir>/eval_<split>.json; "
                   "<predictions dir>/../scores_<split>.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(p)
    return p


RECORDED = ("mode", "crop_size", "stride_rate", "base_size", "resize")  # protocol fields a checkpoint may record


def default_protocol_names(recorded: dict | None) -> list[str]:
    """The protocols scored when ``--protocols`` is not given: ``ss``, or ``ss+flip`` when the checkpoint's
    recorded protocol flips (the authors' releases always average the mirrored image)."""
    return ["ss+flip"] if (recorded or {}).get("flip") else ["ss"]


def protocol_changes(recorded: dict | None, given: dict) -> dict:
    """The Protocol fields to change: a checkpoint's ``recorded`` protocol (its :data:`RECORDED` fields), then the
    ``given`` values that are not None (flags) on top."""
    kept = {k: v for k, v in (recorded or {}).items() if k in RECORDED and v is not None}
    return {**kept, **{k: v for k, v in given.items() if v is not None}}


def protocols_from_args(args, crop_size: int, align: bool = False, recorded: dict | None = None) -> dict:
    """PROTOCOLS entries named in ``args.protocols`` with the mode/crop/stride/base/resize overrides; ``crop_size``
    is the training crop (the default window) and ``align`` whether inputs are padded to 8k+1 (see
    :func:`pspnet_lite.inference.aligned_for`). ``recorded`` (a checkpoint's ``"protocol"``) gives the defaults of
    the flags that are not given."""
    names = args.protocols or default_protocol_names(recorded)
    changes = protocol_changes(recorded, dict(mode=args.mode, crop_size=args.crop_size, stride_rate=args.stride_rate,
                                              base_size=args.base_size, resize=args.resize))
    changes.setdefault("crop_size", crop_size)
    changes["align"] = align
    return {name: dataclasses.replace(PROTOCOLS[name], **changes) for name in names}


def main(args: argparse.Namespace | None = None) -> dict:
    """Entry point; returns ``{protocol: scores dict}``. Bad flags or files: one ``error:`` line, exit 2."""
    args = args if args is not None else get_args_parser().parse_args()
    with cli_errors():
        return run(args)


def _dataset(args: argparse.Namespace, loaded: checkpoint.Loaded | None):
    """(name, split, data set, crop size) to score: the flags, else what the checkpoint was trained on."""
    stored = (loaded.state.get("config") or {}) if loaded is not None and loaded.trainer else {}
    if not stored and not args.dataset:
        what = f"{args.checkpoint!r} does not record its data set" if loaded is not None else "--predictions"
        raise ValueError(f"{what}; pass --dataset (ade20k, voc, cityscapes, context_scenes) and --data-root")
    name = args.dataset or stored.get("dataset", "context_scenes")
    root = args.data_root if args.data_root is not None else (stored.get("data_root") if args.dataset is None else None)
    split = args.split or stored.get("val_split") or "val"
    kw = {}
    if name == "context_scenes":
        size = args.image_size or stored.get("image_size")
        if size:
            kw["image_size"] = size
        if args.num_images:
            kw["num_images"] = args.num_images
    if name == "cityscapes" and loaded is not None:
        kw["instances"] = not args.no_iiou
    pre = getattr(loaded, "preprocessing", IMAGENET)
    if pre != IMAGENET:  # e.g. the Caffe release's BGR minus the mean
        kw["transform"] = EvalTransform(preprocessing=pre)
    dataset = build_dataset(name, root=root, split=split, **kw)
    if args.num_images and len(dataset) > args.num_images:
        dataset = torch.utils.data.Subset(dataset, range(args.num_images))
    return name, split, dataset, int(stored.get("crop_size") or default_crop_size(name))


def _classes(dataset) -> list[str] | None:
    names = getattr(dataset, "classes", None) or getattr(getattr(dataset, "dataset", None), "classes", None)
    return list(names) if names is not None else None


def scores_record(scores: SegmentationScores, classes: list[str] | None) -> dict:
    """The JSON entry of one set of scores: ``as_dict()`` (nan as None) and ``per_class`` by class name."""
    record = scores.as_dict()
    if classes is not None:
        record["per_class"] = scores.per_class(classes)
    return json_safe(record)


def _report(scores: SegmentationScores, classes: list[str] | None, title: str) -> None:
    print(f"\n== {title}: {scores}")
    print(scores.table(classes))


def run(args: argparse.Namespace) -> dict:
    """What :func:`main` does, raising ValueError / FileNotFoundError instead of exiting."""
    if args.num_images is not None and args.num_images < 1:
        raise ValueError(f"--num-images must be a positive integer; got {args.num_images}")
    if args.predictions is not None:
        return run_predictions(args)
    device = resolve_device(args.device)
    loaded = load_model(args, device)
    model = loaded.model
    name, split, dataset, crop_size = _dataset(args, loaded)
    num_classes = model.num_classes
    ds_classes = _classes(dataset)
    if ds_classes is not None and len(ds_classes) != num_classes:
        raise ValueError(f"the checkpoint predicts {num_classes} classes but {name!r} has {len(ds_classes)}; "
                         "evaluate on the data set it was trained for")
    protocols = protocols_from_args(args, crop_size, aligned_for(crop_size, model.config.output_stride),
                                    loaded.protocol)
    loader = data_loader(dataset, batch_size=args.batch_size, num_workers=args.workers)
    metric = (lambda: CityscapesMetrics(instances=not args.no_iiou, device=device)) if name == "cityscapes" else None
    scores = evaluate(model, loader, num_classes, protocols=protocols, device=device, progress=not args.no_progress,
                      metric=metric)
    out = {"checkpoint": str(args.checkpoint), "dataset": name, "split": split, "num_images": len(dataset),
           "iteration": loaded.state.get("iteration"), "protocols": {}}
    for pname, s in scores.items():
        _report(s, ds_classes, pname)
        out["protocols"][pname] = scores_record(s, ds_classes)
    out.update({k: v for k, v in out["protocols"][next(iter(scores))].items() if k not in out})
    if not loaded.trainer:
        out["weights"] = loaded.state["weights"]
    path = Path(args.out) if args.out else Path(args.checkpoint).with_name(f"eval_{split}.json")
    write_json(out, path)
    print(f"\nwrote {path}")
    return out


def run_predictions(args: argparse.Namespace) -> dict:
    """``--predictions DIR``: score the server-format PNGs in DIR against the data set's labels."""
    if args.dataset in (None, "context_scenes"):
        raise ValueError("--predictions needs --dataset ade20k, voc or cityscapes (the formats of their servers) "
                         "and --data-root")
    name, split, dataset, _ = _dataset(args, None)
    scores = score_predictions(dataset, args.predictions, iiou=not args.no_iiou, progress=not args.no_progress)
    classes = _classes(dataset)
    _report(scores, classes, "predictions")
    out = {"predictions": str(args.predictions), "dataset": name, "split": split, "num_images": len(dataset),
           **scores_record(scores, classes)}
    path = Path(args.out) if args.out else Path(args.predictions).resolve().parent / f"scores_{split}.json"
    write_json(out, path)
    print(f"\nwrote {path}")
    return out


if __name__ == "__main__":
    main()

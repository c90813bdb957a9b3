"""Segment image files with a checkpoint: ``python -m pspnet_lite.predict IMAGES... --checkpoint C --out DIR``.

For every input ``name.ext`` it writes ``DIR/name_mask.png`` (the predicted classes in the data set's
palette), ``DIR/name_overlay.png`` (the mask blended over the image) and ``DIR/name_labels.png``
(8-bit class ids, for scoring). Inference follows the paper's test protocols (§5.2; see
``pspnet_lite.inference``): single scale by default, ``--protocol ms+flip`` for the multi-scale one.

The checkpoint is a trainer checkpoint or any weights file :func:`pspnet_lite.checkpoint.load_model`
reads (e.g. the authors' hszhao/semseg PSPNet checkpoints); for the latter give the architecture with
the model flags (defaults: the authors' PSPNet) and ``--dataset`` (classes and palette) or ``--num-classes``.

    python -m pspnet_lite.predict photo1.jpg photo2.png --checkpoint runs/scenes-lite/best.pt --out preds/
    python -m pspnet_lite.predict street.png --checkpoint train_epoch_200.pth --backbone resnet101 \\
        --dataset cityscapes --mode slide --crop-size 713 --base-size 2048 --out preds/

A checkpoint that records its preprocessing and test protocol (converted from the authors' Caffe release by
``python -m pspnet_lite.convert caffe``) is run with them: images become BGR minus the mean, and ``--protocol``,
``--mode``, ``--crop-size`` and ``--base-size`` default to the recorded ones (``ss+flip``, sliding 473 / 713
windows, long side 513 / 2049).

``--format ade20k|voc|cityscapes`` writes, instead, exactly the files the data set's evaluation server takes
(:mod:`pspnet_lite.submission`: names, id space, bit depth, palette), one per image, into a new folder ``--out``
that appears only once every image is written. ``--split`` predicts a data set's split instead of files:

    python -m pspnet_lite.predict --checkpoint best.pt --dataset cityscapes --data-root /data/cityscapes \\
        --split val --format cityscapes --out preds/      # then: evaluate --predictions preds/
    python -m pspnet_lite.predict /data/cityscapes/leftImg8bit/test/*/*_leftImg8bit.png --checkpoint best.pt \\
        --format cityscapes --out cityscapes_test/ && (cd cityscapes_test && zip -qr ../submission.zip .)

``--backend onnxruntime --onnx FILE`` runs a model written by ``python -m pspnet_lite.export`` with onnxruntime
instead of a checkpoint with PyTorch (:mod:`pspnet_lite.onnx_runtime`); the file carries the classes, data set and
training crop. Its input size is fixed, so the protocol defaults to the sliding window with the exported size as
the window (every window one run; any image size); ``--mode whole`` works only for images whose forward pass has
the exported size. Flip and multi-scale (``--protocol ms+flip``) run as with PyTorch:

    python -m pspnet_lite.export best.pt --onnx model.onnx --size 473 473
    python -m pspnet_lite.predict photo.jpg --backend onnxruntime --onnx model.onnx --out preds/
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from . import data
from .book.viz import colorize, overlay
from .cli import ArgumentParser, cli_errors
from .data.context_scenes import PALETTE as SCENES_PALETTE
from .data.datasets import read_image, voc_colormap
from .data.transforms import Preprocessing
from .evaluate import PROTOCOL_NAMES, add_model_args, default_protocol_names, load_model, protocol_changes
from .inference import PROTOCOLS, Protocol, aligned_for, default_crop_size, predict
from .onnx_runtime import OnnxModel
from .submission import FORMATS, VOC_COMPETITIONS, check_format, image_key, write
from .train.distributed import resolve_device

BACKENDS = ("torch", "onnxruntime")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = ArgumentParser(
        "python -m pspnet_lite.predict", add_help=add_help,
        description="Predict segmentation masks for image files with a pspnet_lite checkpoint; writes coloured "
                    "masks (<name>_mask.png), overlays (<name>_overlay.png) and class-id maps (<name>_labels.png).")
    p.add_argument("images", nargs="*", help="image files (any format OpenCV reads); or give --split")
    p.add_argument("--checkpoint", default=None, help="trainer checkpoint (last.pt / best.pt) or a weights file "
                   "pspnet_lite.checkpoint.load_model reads (give the architecture flags and --dataset)")
    p.add_argument("--backend", choices=BACKENDS, default=None, help="torch (a --checkpoint) or onnxruntime (an "
                   "--onnx file from python -m pspnet_lite.export) [default: onnxruntime if --onnx is given]")
    p.add_argument("--onnx", default=None, metavar="FILE", help="--backend onnxruntime: the exported ONNX model; "
                   "the window of the sliding window (the default mode) is its input size")
    p.add_argument("--dataset", default=None, help="data set whose classes/palette a plain weights file uses "
                   "(ade20k, voc, cityscapes, context_scenes; trainer checkpoints record theirs)")
    p.add_argument("--out", required=True, help="output directory (created; with --format it must be new or empty)")
    p.add_argument("--format", choices=list(FORMATS), default=None,
                   help="write the evaluation server's files (pspnet_lite.submission) instead of masks and overlays")
    p.add_argument("--voc-competition", choices=VOC_COMPETITIONS, default="comp6",
                   help="--format voc: comp6 (outside data, as the paper's COCO pre-training) or comp5 (VOC only)")
    p.add_argument("--split", default=None, help="predict the images of this split of --dataset (e.g. val)")
    p.add_argument("--data-root", default=None, help="--split: the data set's root (default: the checkpoint's)")
    p.add_argument("--num-images", type=int, default=None, help="--split: only the first N images")
    p.add_argument("--protocol", default=None, choices=PROTOCOL_NAMES, help="test protocol (default: ss, or ss+flip "
                   "for a checkpoint whose recorded protocol flips)")
    p.add_argument("--mode", choices=["whole", "slide"], default=None, help="whole image or sliding window")
    p.add_argument("--crop-size", type=int, default=None, help="sliding-window size (default: the training crop; "
                   "for a plain weights file the authors' crop of --dataset: 713 on Cityscapes, else 473)")
    p.add_argument("--base-size", type=int, default=None, help="resize the long side to this (times each scale)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the mask")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    add_model_args(p)
    return p


def palette_for(ckpt: dict, num_classes: int) -> np.ndarray:
    """The colour palette of the data set a checkpoint was trained on ((C, 3) uint8)."""
    name = (ckpt.get("config") or {}).get("dataset", "")
    if name == "context_scenes":
        pal = SCENES_PALETTE
    else:
        pal = {"ade20k": data.ADE20K_PALETTE, "voc": data.VOC_PALETTE,
               "cityscapes": data.CITYSCAPES_PALETTE}.get(name)
    pal = np.asarray(pal if pal is not None else voc_colormap(256), dtype=np.uint8)
    if len(pal) < num_classes:
        pal = np.asarray(voc_colormap(max(256, num_classes)), dtype=np.uint8)
    return pal[:num_classes]


def main(args: argparse.Namespace | None = None) -> list[str]:
    """Entry point; returns the written paths. Bad flags or files: one ``error:`` line, exit 2."""
    args = args if args is not None else get_args_parser().parse_args()
    with cli_errors():
        return run(args)


def train_crop(args: argparse.Namespace, stored: dict) -> int:
    """The crop the network was trained on: the checkpoint's, else (a plain weights file, which records none) the
    authors' crop of the data set: 713 on Cityscapes, 473 on ADE20K and VOC (§5.1)."""
    return int(stored.get("crop_size") or default_crop_size(args.dataset or stored.get("dataset")))


def window_size(args: argparse.Namespace, stored: dict) -> int:
    """The sliding window: ``--crop-size``, else the training crop (:func:`train_crop`)."""
    return args.crop_size or train_crop(args, stored)


def split_images(args: argparse.Namespace, stored: dict) -> list[str]:
    """The image files of ``--split`` of ``--dataset`` (default: the checkpoint's data set and root)."""
    name = args.dataset or stored.get("dataset")
    if name is None or name == "context_scenes":
        raise ValueError("--split predicts the image files of a data set on disk; give --dataset ade20k, voc or "
                         "cityscapes and --data-root")
    root = args.data_root if args.data_root is not None else (stored.get("data_root") if not args.dataset else None)
    dataset = data.build_dataset(name, root=root, split=args.split)
    return [str(p) for p, _ in dataset.samples[: args.num_images]]


def check_backend(args: argparse.Namespace) -> str:
    """The backend the flags ask for (``--backend``, else onnxruntime when ``--onnx`` is given), with its model file;
    ValueError for a missing or contradicting one."""
    backend = args.backend or ("onnxruntime" if args.onnx else "torch")
    if backend == "onnxruntime":
        if not args.onnx:
            raise ValueError("--backend onnxruntime needs --onnx FILE (written by python -m pspnet_lite.export)")
        if args.checkpoint:
            raise ValueError("--backend onnxruntime reads the model from --onnx; drop --checkpoint (export the "
                             "checkpoint with python -m pspnet_lite.export)")
    else:
        if args.onnx:
            raise ValueError("--onnx is run by --backend onnxruntime; drop --backend torch or --onnx")
        if not args.checkpoint:
            raise ValueError("give --checkpoint FILE (or --backend onnxruntime --onnx FILE)")
    return backend


def run(args: argparse.Namespace) -> list[str]:
    """What :func:`main` does, raising ValueError / FileNotFoundError instead of exiting."""
    if args.num_images is not None and args.num_images < 1:
        raise ValueError(f"--num-images must be a positive integer; got {args.num_images}")
    if bool(args.images) == bool(args.split):
        raise ValueError("give image files or --split (with --dataset and --data-root), not both and not neither")
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise ValueError(f"image file(s) not found: {missing}")
    out = Path(args.out)
    if args.format and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} already exists and is not an empty folder; --format writes a new submission "
                         "folder, so choose a new path or remove the old one")
    backend = check_backend(args)
    if backend == "onnxruntime":
        device = torch.device("cpu") if args.device == "auto" else resolve_device(args.device)
        model = OnnxModel(args.onnx, device)
        ckpt, stored = model.state, model.state["config"]
        crop = args.crop_size or model.input_size  # the exported size is the only window it runs
        align = bool(model.metadata["align"])
        mode = args.mode or "slide"
        if mode == "slide" and Protocol(crop_size=crop).crop_hw != model.input_size:
            raise ValueError(f"--crop-size {args.crop_size}: {args.onnx} runs only its exported "
                             f"{model.input_size[0]} x {model.input_size[1]} windows; drop --crop-size, or export "
                             f"again with --size {args.crop_size} {args.crop_size}")
        print(f"onnxruntime: {args.onnx} ({model.input_size[0]} x {model.input_size[1]}, {model.num_classes} classes)")
        prepare = Preprocessing.from_dict(ckpt.get("preprocessing"))  # the exported checkpoint's own record
        recorded_protocol = dict(ckpt.get("protocol") or {})
    else:
        device = resolve_device(args.device)
        loaded = load_model(args, device)
        model, ckpt = loaded.model, loaded.state
        if not loaded.trainer:
            ckpt = {"config": {"dataset": args.dataset}}
        stored = ckpt.get("config") or {}
        crop = window_size(args, stored)
        align = aligned_for(train_crop(args, stored), model.config.output_stride)  # 8k+1 training crops: pad to 8k+1
        mode = args.mode
        prepare = loaded.preprocessing  # RGB -> the network's input (ImageNet RGB, or the Caffe release's BGR - mean)
        recorded_protocol = loaded.protocol
    if args.format:
        check_format(args.format, model.num_classes)
    images = args.images or split_images(args, stored)
    changes = protocol_changes(recorded_protocol, dict(mode=mode, crop_size=crop, base_size=args.base_size,
                                                       align=align))
    name = args.protocol or default_protocol_names(recorded_protocol)[0]
    protocol = dataclasses.replace(PROTOCOLS[name], **changes)

    def labels_of(path: str) -> tuple[np.ndarray, np.ndarray]:
        image = read_image(path)  # (H, W, 3) uint8 RGB
        x = prepare(image)[None].to(device)  # (1, 3, H, W)
        with torch.no_grad():
            return image, predict(model, x, num_classes=model.num_classes, protocol=protocol)[0].cpu().numpy()

    if args.format:
        return write_submission(args, images, labels_of)
    pal = palette_for(ckpt, model.num_classes)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in images:
        image, labels = labels_of(path)  # (H, W) train ids
        stem = Path(path).stem
        files = {f"{stem}_mask.png": colorize(labels, pal),
                 f"{stem}_overlay.png": overlay(image, labels, pal, args.alpha),
                 f"{stem}_labels.png": labels.astype(np.uint8)}
        for fname, arr in files.items():
            arr = np.asarray(arr)
            if arr.ndim == 3:
                arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(out / fname), arr):
                raise ValueError(f"could not write {out / fname}")
            written.append(str(out / fname))
        print(f"{path}: " + ", ".join(files))
    print(f"wrote {len(written)} files to {out}")
    return written


def write_submission(args: argparse.Namespace, images: list[str], labels_of) -> list[str]:
    """Write every image's prediction in ``args.format`` into a temporary folder, then move it to ``--out``."""
    out = Path(args.out)
    keys = [image_key(args.format, p) for p in images]
    twice = next((k for k in keys if keys.count(k) > 1), None)
    if twice:
        raise ValueError(f"two images are named {twice!r} in --format {args.format}; a submission holds one "
                         "prediction per image")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        written = []
        for path in tqdm(images, desc=f"predict ({args.format})", disable=len(images) < 2, mininterval=1.0):
            written.append(write(args.format, labels_of(path)[1], path, staging, args.voc_competition))
        if out.exists():
            out.rmdir()  # checked empty above
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    paths = [str(out / p.relative_to(staging)) for p in written]
    print(f"wrote {len(paths)} {args.format} predictions to {out}")
    return paths


if __name__ == "__main__":
    main()

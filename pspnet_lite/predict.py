"""Segment image files with a checkpoint: ``python -m pspnet_lite.predict IMAGES... --checkpoint C --out DIR``.

For every input ``name.ext`` it writes ``DIR/name_mask.png`` (the predicted classes in the data set's
palette), ``DIR/name_overlay.png`` (the mask blended over the image) and ``DIR/name_labels.png``
(8-bit class ids, for scoring). Inference follows the paper's test protocols (§5.2; see
``pspnet_lite.inference``): single scale by default, ``--protocol ms+flip`` for the multi-scale one.

    python -m pspnet_lite.predict photo1.jpg photo2.png --checkpoint runs/scenes-lite/best.pt --out preds/
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        "python -m pspnet_lite.predict", add_help=add_help,
        description="Predict segmentation masks for image files with a pspnet_lite checkpoint; writes coloured "
                    "masks (<name>_mask.png), overlays (<name>_overlay.png) and class-id maps (<name>_labels.png).")
    p.add_argument("images", nargs="+", help="image files (any format OpenCV reads)")
    p.add_argument("--checkpoint", required=True, help="trainer checkpoint (last.pt / best.pt)")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--protocol", default="ss", choices=["ss", "ss+flip", "ms", "ms+flip"], help="test protocol")
    p.add_argument("--mode", choices=["whole", "slide"], default=None, help="whole image or sliding window")
    p.add_argument("--crop-size", type=int, default=None, help="sliding-window size (default: the training crop)")
    p.add_argument("--base-size", type=int, default=None, help="resize the long side to this (times each scale)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the mask")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    return p


def palette_for(ckpt: dict, num_classes: int) -> np.ndarray:
    """The colour palette of the data set a checkpoint was trained on ((C, 3) uint8)."""
    from . import data
    from .data.datasets import voc_colormap

    name = (ckpt.get("config") or {}).get("dataset", "")
    if name == "context_scenes":
        from .data.context_scenes import PALETTE
        pal = PALETTE
    else:
        pal = {"ade20k": data.ADE20K_PALETTE, "voc": data.VOC_PALETTE,
               "cityscapes": data.CITYSCAPES_PALETTE}.get(name)
    pal = np.asarray(pal if pal is not None else voc_colormap(256), dtype=np.uint8)
    if len(pal) < num_classes:
        pal = np.asarray(voc_colormap(max(256, num_classes)), dtype=np.uint8)
    return pal[:num_classes]


def main(args: argparse.Namespace | None = None) -> list[str]:
    """Entry point; returns the written paths."""
    import cv2

    from .data.datasets import read_image
    from .data.transforms import to_tensor
    from .distributed import resolve_device
    from .inference import PROTOCOLS, predict
    from .train import model_from_checkpoint
    from .viz import colorize, overlay

    args = args if args is not None else get_args_parser().parse_args()
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise ValueError(f"image file(s) not found: {missing}")
    device = resolve_device(args.device)
    model, ckpt = model_from_checkpoint(args.checkpoint, device)
    crop = args.crop_size or int((ckpt.get("config") or {}).get("crop_size", 473))
    changes = {k: v for k, v in dict(mode=args.mode, crop_size=crop, base_size=args.base_size).items() if v is not None}
    protocol = dataclasses.replace(PROTOCOLS[args.protocol], **changes)
    pal = palette_for(ckpt, model.num_classes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in args.images:
        image = read_image(path)  # (H, W, 3) uint8 RGB
        x = to_tensor(image)[None].to(device)  # (1, 3, H, W)
        with torch.no_grad():
            labels = predict(model, x, num_classes=model.num_classes, protocol=protocol)[0].cpu().numpy()  # (H, W)
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


if __name__ == "__main__":
    main()

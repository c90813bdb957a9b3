"""What whole-image alignment (:func:`pspnet_lite.inference.aligned_forward`) changes, measured on ContextScenes.

    PYTHONPATH=. python benchmarks/alignment.py --out-dir /tmp/alignment       # trains two scenes-lite models first
    PYTHONPATH=. python benchmarks/alignment.py --checkpoint runs/scenes-lite/last.pt   # or scores one trained model

PSPNet upsamples its stride-8 map with ``align_corners=True``; that is exact only at sizes ``8k + 1`` (the authors'
473 and 713), and at other sizes the map is stretched by up to 7 pixels at the bottom and right edges. With
``Protocol(align=True)`` inference pads such images at the bottom and right to ``8k + 1`` and crops the output back.
For two scenes-lite models (300 iterations of batch 16, seed 0), one trained on crops of 128 (the book's) and one on
crops of 121 (``8k + 1``), this script compares the plain forward pass ("before", ``align=False``) with the padded
one ("after", ``align=True``):

1. whole image against a sliding window of ``8k + 1`` (which pads the same row and column, so the two must agree
   once aligned): the largest absolute difference of the logits and of the probabilities, on val images of 128 px
   (not ``8k + 1``) and of 129 px (``8k + 1``, where nothing may change);
2. mIoU / pixel accuracy of single-scale whole-image inference on 200 val images of 128 px, before and after.

Measured on a 2-core CPU (both models trained by this script): the differences are 0 after alignment (9.2 and 11.7
in the logits before), 0 before and after at 129 px; mIoU 58.81 -> 71.88 for the network trained on 121 crops,
75.77 -> 63.73 for the one trained on 128 crops. A network is scored as it was trained: aligned when its training
crop is ``8k + 1`` (:func:`pspnet_lite.inference.aligned_for`).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pspnet_lite import checkpoint
from pspnet_lite.data import ContextScenes, data_loader
from pspnet_lite.inference import Protocol, aligned_forward, grid_size, predict
from pspnet_lite.metrics import ConfusionMatrix
from pspnet_lite.train import get_preset, train


def trained_models(args) -> dict:
    """``{training crop: model}``: the model of ``--checkpoint``, or scenes-lite models trained at each of ``--crops``
    into ``--out-dir/crop<crop>`` (a finished run there is read, not trained again)."""
    if args.checkpoint:
        loaded = checkpoint.load_model(args.checkpoint)
        return {(loaded.state.get("config") or {}).get("crop_size"): loaded.model.eval()}
    models = {}
    for crop in (int(c) for c in args.crops.split(",")):
        cfg = get_preset("scenes-lite", out_dir=f"{args.out_dir}/crop{crop}", resume="auto", seed=args.seed,
                         progress=False, val_every=-1, crop_size=crop)
        last = Path(cfg.out_dir) / "last.pt"
        done = last.is_file() and checkpoint.read(last)["iteration"] >= cfg.iters
        models[crop] = checkpoint.load_model(last if done else train(cfg).checkpoints["last"]).model.eval()
    return models


def max_differences(model, images: torch.Tensor) -> dict:
    """Largest |whole - slide| of logits and probabilities, before (plain forward) and after (aligned)."""
    h, w = images.shape[-2:]
    window = (grid_size(h, 8), grid_size(w, 8))
    slide = predict(model, images, protocol=Protocol(mode="slide", crop_size=window), return_probs=True)[1]
    with torch.no_grad():
        top, left = (window[0] - h) // 2, (window[1] - w) // 2  # the slide protocol pads centrally
        padded = torch.nn.functional.pad(images, (left, window[1] - w - left, top, window[0] - h - top))
        slide_logits = model(padded)[..., top:top + h, left:left + w]
        before, after = model(images), aligned_forward(model, images)
    whole = predict(model, images, protocol=Protocol(mode="whole", align=True), return_probs=True)[1]
    return {"size": [h, w], "window": list(window),
            "logits_before": (before - slide_logits).abs().max().item(),
            "logits_after": (after - slide_logits).abs().max().item(),
            "probs_before": (before.softmax(1) - slide).abs().max().item(),
            "probs_after": (whole - slide).abs().max().item()}


def scores(model, dataset, aligned: bool) -> dict:
    """mIoU and pixel accuracy of single-scale whole-image inference, plain (before) or aligned (after)."""
    cm = ConfusionMatrix(dataset.num_classes)
    for x, y in data_loader(dataset, batch_size=20):
        with torch.no_grad():
            pred = predict(model, x, protocol=Protocol(mode="whole", align=aligned))
        cm.update(pred, y)
    s = cm.compute()
    return {"miou": 100 * s.miou, "pixel_acc": 100 * s.pixel_acc}


def main() -> None:
    p = argparse.ArgumentParser("benchmarks/alignment.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="a trained model (default: train scenes-lite into --out-dir)")
    p.add_argument("--out-dir", default="runs/alignment", help="where scenes-lite is trained when no --checkpoint")
    p.add_argument("--seed", type=int, default=0, help="seed of the scenes-lite run")
    p.add_argument("--num-images", type=int, default=200, help="val images scored")
    p.add_argument("--crops", default="128,121", help="training crops of the scenes-lite models (128: the book's; "
                   "121 = 8 x 15 + 1, the authors' kind of size)")
    args = p.parse_args()
    val = ContextScenes("val", num_images=args.num_images, image_size=128)
    val_odd = ContextScenes("val", num_images=8, image_size=129)
    records = []
    for crop, model in trained_models(args).items():
        out = {"train_crop": crop, "differences": [max_differences(model, torch.stack([val[i][0] for i in range(8)])),
               max_differences(model, torch.stack([val_odd[i][0] for i in range(8)]))],
               "before": scores(model, val, aligned=False), "after": scores(model, val, aligned=True),
               "val_images": len(val)}
        print(f"scenes-lite trained at crop {crop}:")
        for d in out["differences"]:
            print(f"  {d['size'][0]}x{d['size'][1]} images, slide window {d['window'][0]}: max |whole - slide| logits "
                  f"{d['logits_before']:.4g} -> {d['logits_after']:.4g}, probabilities {d['probs_before']:.4g} -> "
                  f"{d['probs_after']:.4g} (before -> after)")
        b, a = out["before"], out["after"]
        print(f"  ContextScenes val, {len(val)} images of 128 px, whole image, one scale: mIoU {b['miou']:.2f} -> "
              f"{a['miou']:.2f}, pixel accuracy {b['pixel_acc']:.2f} -> {a['pixel_acc']:.2f} (before -> after)")
        records.append(out)
    print(json.dumps(records))


if __name__ == "__main__":
    main()

"""Export a checkpoint to a fixed-size ONNX model: ``python -m pspnet_lite.export CHECKPOINT --onnx OUT --size H W``.

The ONNX graph computes the network's logits (N = 1, 3, H, W) -> (1, C, H, W) at one input size. The size is
fixed because the pyramid pooling module pools the feature map into 1, 2, 3 and 6 bins (§3.2): an adaptive
pooling whose windows depend on the map's size, which ONNX has no operator for; at a fixed size the exporter
writes it as fixed gathers and means. Run it with ``predict --backend onnxruntime --onnx OUT``
(:mod:`pspnet_lite.onnx_runtime`): the sliding window runs the exported model on every window, so export at the
window size (the default: the training crop, 473 for the authors' ADE20K and VOC nets, 713 for Cityscapes).

    python -m pspnet_lite.export runs/scenes-lite/best.pt --onnx scenes.onnx
    python -m pspnet_lite.export train_epoch_100.pth --dataset ade20k --onnx pspnet50_ade20k_473.onnx --size 473 473
    python -m pspnet_lite.predict street.png --backend onnxruntime --onnx pspnet50_ade20k_473.onnx --out preds/

**8n+1 sizes.** The authors' networks upsample with ``align_corners=True`` and are fed only ``8n + 1`` sizes
(473, 713; ``Protocol.align``): for such a network (align_corners and a training crop of ``8n + 1``, or a plain
weights file, whose crop is the authors') the size is rounded up to ``8n + 1`` with a warning, the size predict
feeds it. A network trained on other crops (the book's 64 and 128) is fed its windows as they are, so its size is
kept.

**Checked at export.** onnxruntime and eager PyTorch run the same random input; the largest absolute logit
difference is printed, and above ``--tolerance`` (1e-3) the export fails and no file is written.

**Exporter.** ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript, the default since torch 2.9):
it writes adaptive pooling for any fixed map size. The older TorchScript exporter (``dynamo=False``, deprecated)
refuses adaptive pooling unless every bin count divides the map (60 x 60 at 473 works for 1-2-3-6; 7 x 7 at 49
or bins 1-2-4 at 713 do not). The packages (onnx, onnxruntime, onnxscript) are the ``[export]`` extra.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .cli import ArgumentParser, cli_errors
from .evaluate import add_model_args, load_model
from .inference import aligned_for, grid_size
from .onnx_runtime import FORMAT, OnnxModel, require
from .predict import train_crop

TOLERANCE = 1e-3
"""Largest absolute logit difference between onnxruntime and eager PyTorch that an export may have."""
EXPORT_PACKAGES = ("onnx", "onnxruntime", "onnxscript")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = ArgumentParser(
        "python -m pspnet_lite.export", add_help=add_help,
        description="Export a pspnet_lite checkpoint to a fixed-size ONNX model of its logits, checked against "
                    "eager PyTorch with onnxruntime; run it with predict --backend onnxruntime --onnx OUT.")
    p.add_argument("checkpoint", help="trainer checkpoint (last.pt / best.pt) or a weights file "
                   "pspnet_lite.checkpoint.load_model reads (give the architecture flags and --dataset)")
    p.add_argument("--onnx", required=True, metavar="OUT", help="the ONNX file to write (one file, weights inside)")
    p.add_argument("--size", nargs="+", type=int, default=None, metavar="H W",
                   help="input height and width (one value: square); default: the training crop (for a plain "
                   "weights file the authors' crop of --dataset). Rounded up to 8n+1 for 8n+1 networks")
    p.add_argument("--dataset", default=None, help="data set of a plain weights file (its classes; ade20k, voc, "
                   "cityscapes, context_scenes); trainer checkpoints record theirs")
    p.add_argument("--tolerance", type=float, default=TOLERANCE,
                   help=f"largest max |onnxruntime - pytorch| logit difference accepted [default: {TOLERANCE}]")
    add_model_args(p)
    return p


def min_size(model: nn.Module) -> int:
    """The smallest input side whose ``1/output_stride`` feature map holds the largest pyramid level's bins
    (``output_stride * (max_bin - 1) + 1``: 41 for the paper's 6 x 6 level at stride 8); smaller inputs would make
    the adaptive pooling repeat cells."""
    cfg = model.config
    return cfg.output_stride * (max(max(cfg.bins, default=1), 2) - 1) + 1


def export_size(size: Sequence[int] | None, model: nn.Module, train_crop: int) -> tuple[tuple[int, int], bool]:
    """``(height, width)`` to export and whether it was rounded: ``size`` (default ``train_crop``), rounded up to
    ``output_stride * n + 1`` for networks fed such sizes (align_corners and an 8n+1 training crop). ValueError
    for a malformed size or one below :func:`min_size`."""
    size = [train_crop] if not size else list(size)
    if len(size) not in (1, 2) or any(s < 1 for s in size):
        raise ValueError(f"--size takes a height and width (or one value for a square) of positive pixels; got "
                         f"{' '.join(map(str, size))}")
    hw = (size[0], size[-1])
    stride = model.config.output_stride
    rounded = hw
    if model.config.align_corners and aligned_for(train_crop, stride):
        rounded = (grid_size(hw[0], stride), grid_size(hw[1], stride))
    low = min_size(model)
    if min(rounded) < low:
        bins = max(model.config.bins, default=1)
        raise ValueError(f"--size {rounded[0]} {rounded[1]} is below this model's minimum {low} x {low}: its {bins} x "
                         f"{bins} pyramid level needs a 1/{stride} feature map of at least {bins} x {bins} cells")
    return rounded, rounded != hw


def write_onnx(model: nn.Module, path: str | os.PathLike, size: tuple[int, int], metadata: dict) -> None:
    """``torch.onnx.export(dynamo=True)`` of ``model``'s eval-mode logits at (1, 3, *size), one file with its weights,
    ``metadata`` (JSON-able values) stored as the model's ``metadata_props``."""
    x = torch.zeros(1, 3, *size)  # (1, 3, H, W): only its shape is traced
    with torch.no_grad():
        program = torch.onnx.export(model.eval(), (x,), dynamo=True, input_names=["images"],
                                    output_names=["logits"], external_data=False, verbose=False)
    program.model.metadata_props.update({k: json.dumps(v) for k, v in metadata.items()})
    program.save(os.fspath(path), external_data=False)


def max_logit_difference(model: nn.Module, path: str | os.PathLike, size: tuple[int, int], seed: int = 0) -> float:
    """max |onnxruntime - eager PyTorch| over the logits of one random normal input of the exported size."""
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))  # (1, 3, H, W)
    with torch.inference_mode():
        expected = model.eval()(x)  # (1, C, H, W)
        got = OnnxModel(path)(x)    # (1, C, H, W)
    return float((got - expected).abs().max())


def run(args: argparse.Namespace) -> dict:
    """What :func:`main` does, raising ValueError / FileNotFoundError instead of exiting; returns the metadata."""
    require(*EXPORT_PACKAGES)
    if not (args.tolerance > 0):
        raise ValueError(f"--tolerance must be a positive number; got {args.tolerance}")
    out = Path(args.onnx)
    if out.is_dir():
        raise IsADirectoryError(f"--onnx {out} is a directory; give the file to write, e.g. {out / 'model.onnx'}")
    loaded = load_model(args, "cpu")
    model = loaded.model.eval()
    stored = (loaded.state.get("config") or {}) if loaded.trainer else {"dataset": args.dataset}
    crop = train_crop(args, stored)  # the window predict slides: the training crop, or the authors' for the data set
    size, rounded = export_size(args.size, model, crop)
    if rounded:
        given = args.size or [crop]
        print(f"warning: --size {given[0]} {given[-1]} rounded up to {size[0]} {size[1]} "
              f"({model.config.output_stride}n+1): this network upsamples with align_corners=True and was trained "
              f"on {crop} px crops, so it is fed {model.config.output_stride}n+1 sizes", file=sys.stderr)
    metadata = {
        "format": FORMAT, "input_size": list(size), "num_classes": model.num_classes,
        "model_config": model.config.to_dict(), "train_crop": crop,
        "align": bool(model.config.align_corners and aligned_for(crop, model.config.output_stride)),
        "config": stored, "class_names": loaded.state.get("class_names"),
        "preprocessing": loaded.state.get("preprocessing"), "protocol": loaded.protocol or None,
        "checkpoint": Path(args.checkpoint).name,
        "exporter": f"torch {torch.__version__}: torch.onnx.export(dynamo=True)",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        metadata["max_abs_logit_diff"] = None
        write_onnx(model, tmp, size, metadata)
        diff = max_logit_difference(model, tmp, size)
        print(f"max |onnxruntime - pytorch| logit difference at {size[0]} x {size[1]}: {diff:.2e} "
              f"(tolerance {args.tolerance:g})")
        if not diff <= args.tolerance:
            raise ValueError(f"onnxruntime and PyTorch disagree by {diff:.2e} in the logits (tolerance "
                             f"{args.tolerance:g}); {out} not written")
        metadata["max_abs_logit_diff"] = diff
        write_metadata(tmp, metadata)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    print(f"wrote {out}: {size[0]} x {size[1]} -> {model.num_classes} classes (run it with python -m "
          f"pspnet_lite.predict IMAGES --backend onnxruntime --onnx {out} --out DIR)")
    return metadata


def write_metadata(path: str | os.PathLike, metadata: dict) -> None:
    """Replace the ``metadata_props`` of the ONNX file at ``path`` with ``metadata`` (values as JSON)."""
    import onnx  # lazy: the optional [export] extra, checked by run()

    proto = onnx.load(os.fspath(path))
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {k: json.dumps(v) for k, v in metadata.items()})
    onnx.save(proto, os.fspath(path))


def main(args: argparse.Namespace | Sequence[str] | None = None) -> dict:
    """Entry point (a Namespace, an argv list, or None for ``sys.argv``); returns the stored metadata. Bad flags or
    files, or an export outside the tolerance: one ``error:`` line, exit status 2."""
    if not isinstance(args, argparse.Namespace):
        args = get_args_parser().parse_args(None if args is None else list(args))
    with cli_errors():
        return run(args)


if __name__ == "__main__":
    main()

"""The authors' released Caffe models (hszhao/PSPNet) in chapter 07: where the files are, the commands that convert
and score them, what the scoring costs on a GPU, and the scoring itself.

The paper's numbers come from three released networks, each a deploy prototxt in the release's
``evaluation/prototxt/`` and a ``.caffemodel`` that its README links on Google Drive (:data:`RELEASED`).
``python -m pspnet_lite.convert caffe`` turns each pair into a checkpoint that records the release's
preprocessing and test protocol, and ``python -m pspnet_lite.evaluate`` applies both with no flags; the commands
are :meth:`ReleasedModel.convert_command` and :meth:`ReleasedModel.evaluate_command`.

**The price of scoring** (:func:`scoring_cost`): for each model and protocol, the crop-sized forward passes one
validation image costs (:func:`pspnet_lite.inference.crop_passes`, on the protocols exactly as ``evaluate`` builds
them from the checkpoint's record), times the images of the split (:data:`VALIDATION`), times the FLOPs of one
crop (:func:`pspnet_lite.book.complexity.count_flops` on the release's architecture, built on the meta device),
divided by :func:`pspnet_lite.book.plan.assumed_throughput` in TF32 (``evaluate`` runs in float32). Resizing,
softmax, the averaging of windows and data loading are not counted, so the estimate is a floor of the wall time.

:func:`score_checkpoints` runs ``evaluate`` (its Python API) on converted checkpoints and data roots and returns
the measured scores beside the release's (:data:`pspnet_lite.book.paper.RELEASE_CAFFE`).
"""
from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import checkpoint as ckpt_io
from .. import evaluate
from ..convert.caffe import release_protocol
from ..evaluate import protocols_from_args
from ..inference import aligned_for, crop_passes
from ..model import PSPNet, PSPNetConfig
from . import paper
from .complexity import count_flops, on_meta
from .plan import assumed_throughput

RELEASE_REPO = "hszhao/PSPNet"
"""The authors' Caffe release; its README ("3. Evaluation") and ``evaluation/model/README.md`` link the models."""


@dataclass(frozen=True)
class ReleasedModel:
    """One released network: its prototxt, its caffemodel's download link, the architecture the converter reads off
    the prototxt (:func:`pspnet_lite.convert.caffe.plan`), and its crop (the prototxt's input size)."""

    name: str  # the caffemodel's stem, e.g. "pspnet50_ADE20K"
    dataset: str  # ade20k, voc, cityscapes
    prototxt: str  # file name in evaluation/prototxt/
    download: str  # the Google Drive link of the release's README
    config: PSPNetConfig
    crop: int
    checkpoint: str  # the converted file's suggested name

    @property
    def caffemodel(self) -> str:
        return f"{self.name}.caffemodel"

    def convert_command(self, release_dir: str = "PSPNet") -> str:
        """The command that converts this model, with the release cloned to ``release_dir`` and the caffemodel
        downloaded into its ``evaluation/model/`` (where the release's README puts it)."""
        return (f"python -m pspnet_lite.convert caffe {release_dir}/evaluation/prototxt/{self.prototxt} "
                f"{release_dir}/evaluation/model/{self.caffemodel} --out {self.checkpoint}")

    def evaluate_command(self, data_root: str, multi_scale: bool = False) -> str:
        """The command that scores the converted checkpoint on the validation split under the release's protocol:
        no protocol flags (the checkpoint records them; the default is ``ss+flip``), ``--protocols ms+flip`` for
        the release's six scales."""
        stem = Path(self.checkpoint).stem
        flags = " --protocols ms+flip" if multi_scale else ""
        return (f"python -m pspnet_lite.evaluate --checkpoint {self.checkpoint} --data-root {data_root}{flags} "
                f"--out {stem}_{'ms' if multi_scale else 'ss'}.json")

    @property
    def reported(self) -> dict:
        """The release's own scores (:data:`pspnet_lite.book.paper.RELEASE_CAFFE`): split, ``ss`` and ``ms``."""
        return paper.RELEASE_CAFFE[self.name]


_DRIVE = "https://drive.google.com/open?id="
RELEASED = {
    m.name: m for m in (
        ReleasedModel("pspnet50_ADE20K", "ade20k", "pspnet50_ADE20K_473.prototxt",
                      _DRIVE + "0BzaU285cX7TCN1R3QnUwQ0hoMTA",
                      PSPNetConfig(num_classes=150, backbone="resnet50", width=64, aux=False,
                                   stride_in_1x1=True), 473,
                      "pspnet50_ade20k.pt"),
        ReleasedModel("pspnet101_VOC2012", "voc", "pspnet101_VOC2012_473.prototxt",
                      _DRIVE + "0BzaU285cX7TCNVhETE5vVUdMYk0",
                      PSPNetConfig(num_classes=21, backbone="resnet101", width=64, aux=False), 473, "pspnet101_voc.pt"),
        ReleasedModel("pspnet101_cityscapes", "cityscapes", "pspnet101_cityscapes_713.prototxt",
                      _DRIVE + "0BzaU285cX7TCT1M3TmNfNjlUeEU",
                      PSPNetConfig(num_classes=19, backbone="resnet101", width=64, aux=False), 713,
                      "pspnet101_cityscapes.pt"),
    )
}
"""The three released models. Download links as the release's README lists them (hszhao/PSPNet README.md,
"3. Evaluation", and evaluation/model/README.md)."""


PORT_REPORTS = (
    {"source": "meetps/pytorch-semseg issue #166 (2018)", "model": "pspnet101_cityscapes", "split": "Cityscapes val",
     "before": 52.0, "before_input": "the port's own preprocessing (no BGR mean-only input)",
     "after": 78.65, "after_pixel_acc": 96.31,
     "after_input": "BGR minus the mean with no std, align_corners=True upsampling, the 1025 x 2049 (8k+1) image, "
                    "one whole-image pass without flip"},
)
"""What users of a port reported for the released Cityscapes model (mIoU on the validation set): about 52 with the
port's preprocessing, then 78.65 / 96.31 (mIoU / pixel accuracy) once it matched the release's."""


@dataclass(frozen=True)
class ValidationSet:
    """A validation split as the cost estimate sees it: its image count and one size (H, W) standing for all."""

    dataset: str
    split: str
    images: int
    size: tuple[int, int]
    note: str


VALIDATION = {
    "ade20k": ValidationSet("ade20k", "val", 2000, (512, 683),
                            "sizes vary; a 4:3 landscape image stands for all: the protocol resizes every long side "
                            "to 513, so only the aspect ratio counts"),
    "voc": ValidationSet("voc", "val", 1449, (375, 500), "most are about this size; the long side is resized to 513"),
    "cityscapes": ValidationSet("cityscapes", "val", 500, (1024, 2048), "every frame; long side resized to 2049"),
}
"""Validation splits: ADE20K 2,000 images (paper §5.2), VOC 2012 1,449 (§5.3), Cityscapes 500 (§5.4)."""

PROTOCOL_NAMES = {"ss": "ss+flip", "ms": "ms+flip"}  # the release's names -> evaluate's protocols


def release_protocols(model: ReleasedModel, names: Iterable[str] = ("ss+flip", "ms+flip")) -> dict:
    """The :class:`~pspnet_lite.inference.Protocol` of each ``evaluate`` protocol name for a converted checkpoint of
    ``model``, built as ``evaluate`` builds it from the protocol the checkpoint records (no flags given)."""
    flags = argparse.Namespace(protocols=list(names), mode=None, crop_size=None, stride_rate=None, base_size=None,
                               resize=None)
    return protocols_from_args(flags, model.crop, aligned_for(model.crop, model.config.output_stride),
                               release_protocol(model.dataset, model.crop))


@functools.lru_cache(maxsize=8)
def crop_flops(config: PSPNetConfig, crop: int) -> int:
    """FLOPs of one inference forward pass of ``config`` on a ``crop x crop`` input (built on the meta device)."""
    return count_flops(on_meta(PSPNet, config), crop).flops


def scoring_cost(model: ReleasedModel, names: Sequence[str] = ("ss+flip", "ms+flip"),
                 validation: ValidationSet | None = None) -> list[dict]:
    """One row per protocol: crop passes per image and in all, TFLOPs, and estimated minutes on one GPU (see the
    module docstring; ``basis`` says what the throughput is)."""
    val = validation or VALIDATION[model.dataset]
    per_crop = crop_flops(model.config, model.crop)
    sustained, basis = assumed_throughput("tf32")
    rows = []
    for name, protocol in release_protocols(model, names).items():
        per_image = crop_passes(protocol, *val.size)
        flops = per_crop * per_image * val.images
        rows.append({"model": model.name, "dataset": model.dataset, "split": val.split, "images": val.images,
                     "image_size": list(val.size), "protocol": name, "protocol_name": protocol.name,
                     "passes_per_image": per_image, "passes": per_image * val.images, "gflops_per_crop": per_crop / 1e9,
                     "tflops": flops / 1e12, "gpu_minutes": flops / sustained / 60, "basis": basis})
    return rows


def cost_table(models: Iterable[ReleasedModel] | None = None) -> list[dict]:
    """:func:`scoring_cost` of every released model (default: all three), single- and multi-scale."""
    return [row for m in (models or RELEASED.values()) for row in scoring_cost(m)]


def format_cost_table(rows: list[dict]) -> str:
    """The cost rows as the chapter prints them."""
    head = (f"{'model':<21} {'split':<15} {'images':>6} {'protocol':<8} {'passes/img':>10} {'passes':>8} "
            f"{'TFLOPs':>9} {'GPU min':>8}")
    lines = [head]
    for r in rows:
        split = f"{r['dataset']} {r['split']}"
        lines.append(f"{r['model']:<21} {split:<15} {r['images']:>6,} {r['protocol']:<8} {r['passes_per_image']:>10} "
                     f"{r['passes']:>8,} {r['tflops']:>9,.0f} {r['gpu_minutes']:>8.1f}")
    return "\n".join(lines)


def parse_paths(text: str | None, what: str) -> dict[str, str]:
    """``"ade20k=/data/ade,cityscapes=/data/cs"`` -> ``{"ade20k": "/data/ade", ...}`` (empty for ``""`` / None);
    a malformed entry or an unknown data set is a ValueError naming ``what``."""
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep or not value.strip() or key.strip() not in VALIDATION:
            raise ValueError(f"{what}: {item!r} is not DATASET=PATH with DATASET one of {', '.join(VALIDATION)} "
                             f"(e.g. {what}='ade20k=/data/ADEChallengeData2016,cityscapes=/data/cityscapes')")
        out[key.strip()] = value.strip()
    return out


def released_model_of(ckpt: dict, path: str) -> ReleasedModel:
    """The :data:`RELEASED` model a converted checkpoint dict comes from (by its recorded data set); a checkpoint
    not converted from the Caffe release is a ValueError naming the file and the converter."""
    source = ckpt.get("source") or {}
    dataset = (ckpt.get("config") or {}).get("dataset")
    model = next((m for m in RELEASED.values() if m.dataset == dataset), None)
    if source.get("framework") != "caffe" or model is None:
        raise ValueError(f"{path!r} is not a checkpoint converted from the authors' Caffe release (no 'source: caffe' "
                         "record for ade20k, voc or cityscapes); convert the caffemodel first with "
                         "python -m pspnet_lite.convert caffe PROTOTXT CAFFEMODEL --out FILE")
    return model


def score_checkpoints(checkpoints: Sequence[str], data_roots: dict[str, str], protocols: Sequence[str] = ("ss+flip",),
                      out_dir: str | Path = ".", num_images: int | None = None, device: str = "auto",
                      evaluate_main: Callable | None = None) -> list[dict]:
    """Score converted checkpoints with ``python -m pspnet_lite.evaluate`` (its Python API, no protocol flags: each
    checkpoint's recorded protocol) on the validation split of ``data_roots[dataset]``; ``protocols`` are evaluate's
    names (``ss+flip``, ``ms+flip``). One row per checkpoint and protocol: the measured mIoU and pixel accuracy (in
    percent) beside the release's, and the split each is on. Each checkpoint's scores are also written to
    ``out_dir/<checkpoint stem>_eval.json``."""
    run = evaluate_main or evaluate.run
    rows = []
    for path in checkpoints:
        model = released_model_of(ckpt_io.read(path), str(path))
        if model.dataset not in data_roots:
            raise ValueError(f"{path!r} is {model.name} ({model.dataset}) but data_roots has no {model.dataset}=PATH "
                             f"entry (it has {sorted(data_roots) or 'none'})")
        argv = ["--checkpoint", str(path), "--data-root", data_roots[model.dataset], "--protocols", *protocols,
                "--out", str(Path(out_dir) / f"{Path(path).stem}_eval.json"), "--device", device, "--no-progress",
                "--workers", "0"]
        if num_images:
            argv += ["--num-images", str(num_images)]
        result = run(evaluate.get_args_parser().parse_args(argv))
        reported = model.reported
        for name, scores in result["protocols"].items():
            key = next((k for k, v in PROTOCOL_NAMES.items() if v == name), None)
            release = reported.get(key) if key and reported["split"] == result["split"] else None
            rows.append({"model": model.name, "checkpoint": str(path), "dataset": model.dataset,
                         "split": result["split"], "num_images": result["num_images"], "protocol": name,
                         "miou": 100 * scores["miou"], "pixel_acc": 100 * scores["pixel_acc"],
                         "release": list(release) if release else None,
                         "release_split": f"{reported['data']} {reported['split']}"})
    return rows


def format_scores(rows: list[dict]) -> str:
    """Measured scores beside the release's, as the chapter prints them."""
    def pair(v):
        if not v:
            return "-"
        return " / ".join("-" if x is None else f"{x:.2f}" for x in v)

    lines = [f"{'model':<21} {'split (images)':<22} {'protocol':<8} {'measured mIoU / pixAcc':>22}  "
             f"release (its split)"]
    for r in rows:
        split = f"{r['dataset']} {r['split']} ({r['num_images']})"
        lines.append(f"{r['model']:<21} {split:<22} {r['protocol']:<8} {r['miou']:>12.2f} / {r['pixel_acc']:5.2f}  "
                     f"{pair(r['release'])} ({r['release_split']})")
    return "\n".join(lines)


__all__ = ["RELEASE_REPO", "RELEASED", "PORT_REPORTS", "ReleasedModel", "VALIDATION", "ValidationSet",
           "release_protocols", "crop_flops", "scoring_cost", "cost_table", "format_cost_table", "parse_paths",
           "released_model_of", "score_checkpoints", "format_scores"]

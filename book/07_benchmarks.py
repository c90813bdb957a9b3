# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Benchmarks: the test protocol, and ADE20K, VOC 2012 and Cityscapes (Tables 4-8)
#
# **Paper:** §5.2 (ADE20K, Table 4 and the "MS" rows of Table 3), §5.3 (PASCAL VOC 2012, Table 6 with
# per-class IoU) and §5.4 (Cityscapes, Table 7 and the per-class Table 8).
#
# A benchmark number is a network *and* a test protocol. The paper's tables call their numbers
# "single-scale" and "MS" (multi-scale testing), but the authors' single-scale evaluation is not one pass over the
# image: it resizes the image, slides a window of the training crop over it and averages each window with
# its mirror image. Toolboxes differ among themselves: torchvision's references make one whole-image pass without
# flipping, and mmsegmentation's configs pass the whole image on ADE20K but slide a window on Cityscapes, both
# without flipping in their "mIoU" column. How much the protocol alone moves the score is measured below on one
# checkpoint; the paper itself shows that test-time choices matter at the scale of Table 1's differences, since
# its multi-scale testing adds 0.89-1.33 mIoU to its single scale (Table 3).
# In this chapter you will see
#
# 1. the protocols, spelled out for ADE20K, VOC and Cityscapes, and how many forward passes each costs;
# 2. a model trained here (cached by its config) **or** loaded from a checkpoint (`-p checkpoint ...`),
#    including the authors' released PSPNet weights through `pspnet_lite.checkpoint.load_model`;
# 3. its scores under four protocols from one pass over the data, every number labelled with its protocol,
#    next to the paper's;
# 4. per-class IoU: next to Table 6 (VOC) or Table 8 (Cityscapes) for those data sets, and on ContextScenes
#    grouped by the role each class plays in §3.1's failure modes;
# 5. coloured predictions next to the ground truth;
# 6. Cityscapes' four scores of Table 7 (IoU and iIoU, over classes and categories) worked out by hand on a
#    large and a small car, and the commands that write each test server's files;
# 7. the paper's own released models: where they are, the commands that convert and score them under the
#    authors' protocol, the release's numbers beside them, and what the scoring costs in GPU minutes (a dry run;
#    with converted checkpoints and data roots as parameters the section scores them); then the reproduction
#    record.
#
# By default everything runs on CPU on ContextScenes, with the same protocol logic at a small scale.
#
# **Measured default run time:** see the README's table (`time papermill`, most of it training 400 iterations,
# the rest evaluating 50 images under 4 protocols); a re-run reuses the cached training. The last cell prints
# the time of your run.

# %%
import dataclasses
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from pspnet_lite import book
from pspnet_lite.book import paper, release
from pspnet_lite.book.plan import gpu_config, stop_if_dry_run, train_runs
from pspnet_lite.book.viz import plot_class_iou, show_predictions, use_book_style
from pspnet_lite.checkpoint import load_model
from pspnet_lite.cityscapes_metrics import AVERAGE_INSTANCE_SIZE, CityscapesMetrics
from pspnet_lite.convert.caffe import CAFFE_PREPROCESSING
from pspnet_lite.data import build_dataset
from pspnet_lite.data.datasets import CITYSCAPES_CLASSES, CITYSCAPES_LABEL_TO_TRAIN
from pspnet_lite.inference import PAPER_SCALES, Protocol, authors_protocol, evaluate, predict
from pspnet_lite.model import PSPNetConfig

# %% tags=["parameters"]
preset = "scenes-benchmarks"  # a preset (python -m pspnet_lite.train --list-presets), or "paper": the data set's (GPUs)
dataset = None  # data set (None: the preset's): context_scenes, ade20k, voc, cityscapes
data_root = None  # data set folder (None for context_scenes)
backbone = None  # backbone (None: the preset's; for a foreign checkpoint the architecture to build)
checkpoint = None  # path to evaluate instead of training: trainer .pt, authors' semseg .pth, or a state dict
checkpoint_kind = "auto"  # layout of a weights file: auto, semseg (authors' release), pspnet_lite
iters = None  # training iterations (None: the preset's; 400 in scenes-benchmarks, 150K with preset paper)
batch_size = None  # training batch (None: the preset's, 16)
crop_size = None  # training crop, also the sliding window (None: the preset's; 96 here, the paper: 473, Cityscapes 713)
image_size = None  # ContextScenes image side, the base size the authors' protocol resizes to (None: the preset's, 128)
scale_range = None  # training random-scale range, e.g. "0.5,2.0" (None: the preset's; 0.5-2, the paper's §5.1)
num_train_images = None  # training images (None: the preset's; 400 ContextScenes images, all of a real set)
num_val_images = None  # validation images scored (None: the preset's; 50 ContextScenes images, a whole real split)
protocols = "toolbox,toolbox+flip,authors-ss,authors-ms"  # protocols to score (see section 1)
eval_batch_size = 20  # images per evaluation batch (real data sets: 1, their images differ in size)
num_show = 4  # validation images drawn with their predictions
seed = 0  # training seed
pretrained = None  # ImageNet weights for training on real data ("{backbone}" is replaced; "scratch": random weights)
amp = None  # mixed precision "off", "bf16" or "fp16" (None: the preset's, off; bf16 on an A100/H100)
micro_batch = None  # images per forward pass on each GPU, accumulated to the batch (None: all of its share)
channels_last = None  # NHWC memory format, faster convolutions on tensor cores (None: the preset's, off)
compile = None  # torch.compile the model (None: the preset's, off)
nproc_per_node = 0  # 0: train in this kernel; N > 0: train with `torchrun --nproc_per_node N`
dry_run = False  # True: print the plan (iterations, checkpoint disk, GPU time) and train nothing
caffe_checkpoints = ""  # section 7: checkpoints converted from the Caffe release to score, comma-separated ("": none)
data_roots = ""  # section 7: their data roots, comma-separated pairs of data set and folder (format in section 7)
release_protocols = "ss+flip"  # section 7: evaluate's protocols for them: ss+flip and/or ms+flip (the release's ss/ms)
release_num_images = None  # section 7: score only the first N validation images (None: the whole split)
device = "auto"  # "auto", "cpu" or "cuda"
out_dir = "runs/07_benchmarks"  # run cache, figures and the JSON record (relative to the repository root)

# %%
device = book.setup(device, seed)
use_book_style()
out = book.resolve_path(out_dir)
out.mkdir(parents=True, exist_ok=True)
cfg = book.preset_config(preset, dataset, data_root=data_root, backbone=backbone, iters=iters, batch_size=batch_size,
                         crop_size=crop_size, num_train_images=num_train_images, num_val_images=num_val_images,
                         device=str(device), seed=seed, val_every=0, log_every=10)
scenes = cfg.dataset == "context_scenes"
if scenes and image_size:
    cfg = cfg.replace(image_size=image_size)
image_size, num_val_images = cfg.image_size, cfg.num_val_images  # None on a real data set: its own sizes, all of it
if not checkpoint:  # training here: the GPU settings, and ImageNet weights on a real data set
    cfg = gpu_config(cfg, pretrained=pretrained, amp=amp, micro_batch=micro_batch, channels_last=channels_last,
                     compile=compile, nproc_per_node=nproc_per_node)
if scale_range:
    cfg = cfg.replace(**dict(zip(("scale_min", "scale_max"), book.parse_list(scale_range, float, "scale_range"))))
wanted = book.parse_list(protocols, str, "protocols")
print(f"dataset={cfg.dataset} backbone={cfg.model.backbone} crop={cfg.crop_size} "
      f"scales {cfg.scale_min}-{cfg.scale_max} "
      + (f"checkpoint={checkpoint}" if checkpoint else f"train: preset={cfg.preset} iters={cfg.iters} "
         f"batch={cfg.batch_size}")
      + f"\nprotocols={wanted} val images={num_val_images or 'all'} out={out}")
print("estimate on an idle 2-core CPU with the defaults: ~2 min training + ~1.5 min evaluation; "
      "a re-run reuses the cached training")
chapter_start = time.perf_counter()

# %% [markdown]
# ## 1. The test protocols
#
# The paper states its protocols in a few words. ADE20K (§5.2, Tables 1-4 on the validation set, Table 5 on
# the test set):
#
# > "For evaluation, both pixel-wise accuracy (Pixel Acc.) and mean of class-wise intersection over union
# > (Mean IoU) are used." (§5.2)
#
# > "All our results except the last-row one use single-scale test." (§5.2, Table 4)
#
# > "The final score is the mean of Mean IoU and Pixel Acc. Results are evaluated on the testing set."
# > (Table 5)
#
# PASCAL VOC 2012 (test server, Table 6):
#
# > "We evaluate PSPNet with several-scale input and use the average results following [3, 24]." (§5.3)
#
# Cityscapes (test server, Tables 7-8):
#
# > "Our base model is ResNet101 as in DeepLab [4] for fair comparison and the testing procedure follows
# > Section 5.3." (§5.4)
#
# Everything else (sizes, window, stride, flip, the scales) comes from the authors' evaluation code (their
# Caffe `scale_process.m` and the PyTorch `tool/test.py` of hszhao/semseg), which does, for every test image:
#
# - resize the **long side** to a base size (512 for ADE20K and VOC, 2048 for Cityscapes), times each scale
#   (1.0 only for "single scale"; 0.5, 0.75, 1.0, 1.25, 1.5, 1.75 for "MS");
# - run a **sliding window** of the training crop (473; 713 for Cityscapes) with a stride of 2/3 of the crop,
#   rounded up, padding images smaller than a crop (section 1's formulas below);
# - **always flip**: each window is also run mirrored, and the softmax probabilities are averaged;
# - average over scales and take the arg-max at the original resolution.
#
# The toolboxes' default "mIoU" is one whole-image forward pass at the test size, no flip. `Protocol` names
# every choice; `authors_protocol(dataset, multi_scale)` gives the authors':

# %%
toolbox = Protocol(mode="whole")
paper_protocols = {name: {"ss": authors_protocol(name).name, "ms": authors_protocol(name, multi_scale=True).name}
                   for name in ("ade20k", "voc", "cityscapes")}  # for the record
for name in ("ade20k", "voc", "cityscapes"):
    print(f"{name:<11} authors single scale: {authors_protocol(name).name}")
    print(f"{'':<11} authors MS:           {authors_protocol(name, multi_scale=True).name}")
print(f"{'toolboxes':<11} plain mIoU:           {toolbox.name}")

# %% [markdown]
# What do these cost? A model that only counts its calls and the pixels it sees answers that without any
# arithmetic, here for a typical 512 × 683 ADE20K image:

# %%
class CountingModel(nn.Module):
    """Returns zero logits and counts forward passes and input pixels (cost of a protocol, no compute)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes, self.calls, self.pixels = num_classes, 0, 0

    def forward(self, x):
        self.calls += x.shape[0]
        self.pixels += x.shape[0] * x.shape[-2] * x.shape[-1]
        return x.new_zeros(x.shape[0], self.num_classes, *x.shape[-2:])  # (N, C, H, W)


def protocol_cost(protocol, height, width, num_classes=2):
    counter = CountingModel(num_classes)
    predict(counter, torch.zeros(1, 3, height, width), protocol=protocol)
    return counter.calls, counter.pixels / (height * width)


ade20k_costs = {}  # forward passes on a 512 x 683 image, for the record
for label, p in [("toolbox whole, no flip", toolbox), ("authors single scale", authors_protocol("ade20k")),
                 ("authors MS", authors_protocol("ade20k", True))]:
    calls, rel = protocol_cost(p, 512, 683)
    ade20k_costs[label] = {"forward_passes": calls, "pixels_vs_whole": rel}
    print(f"{label:<24} {calls:3d} forward passes, {rel:5.1f}x the pixels of one whole-image pass")

# %% [markdown]
# Where the counts come from: a crop of side $c$ moves by the stride
#
# $$s = \left\lceil \tfrac{2}{3}\, c \right\rceil$$
#
# (the authors' `stride_rate` of 2/3; 316 for $c = 473$, 476 for $c = 713$). An image side of $H$ pixels
# (after the resize, and after padding to at least $c$) is covered by
#
# $$n = \left\lceil \frac{H - c}{s} \right\rceil + 1$$
#
# windows, the last one placed flush with the border; a view costs $n_H \cdot n_W$ windows, twice that with
# flip. In `pspnet_lite.inference`, `Protocol.stride_hw` computes $s$ and `_window_starts` computes $n$; here
# the formula by hand, next to the passes the counting model saw:

# %%
def windows(side: int, crop: int, stride: int) -> int:
    """n = ceil((H - c) / s) + 1 windows along one side (H padded to at least the crop)."""
    return math.ceil((max(side, crop) - crop) / stride) + 1


for name, (h, w) in (("ade20k", (512, 683)), ("cityscapes", (1024, 2048))):
    p = authors_protocol(name)
    crop, stride = p.crop_size, math.ceil(2 / 3 * p.crop_size)
    assert (stride, stride) == p.stride_hw
    side = p.base_size / max(h, w)  # the long side resized to the base size
    n_h, n_w = windows(round(h * side), crop, stride), windows(round(w * side), crop, stride)
    calls = protocol_cost(p, h, w)[0]
    print(f"{name:<10} {h} x {w}: crop {crop}, stride {stride}, windows {n_h} x {n_w} -> "
          f"{2 * n_h * n_w} passes with flip (counted: {calls})")
    assert calls == 2 * n_h * n_w

# %% [markdown]
# The authors' "single scale" already costs four crop-sized passes per ADE20K image (two windows, each
# flipped); their MS costs tens. So when a paper says "single-scale" and a toolbox says "single-scale", they
# may not mean the same thing: **every number in this chapter carries its protocol.**
#
# On ContextScenes we build the same protocols at our scale: the "base size" is the image side
# (`image_size`), the window is the training crop, the scales and the flip are the paper's.

# %%
if scenes:
    authors_ss = Protocol(mode="slide", crop_size=cfg.crop_size, stride_rate=2 / 3, flip=True,
                          base_size=image_size, resize="long")
    authors_ms = dataclasses.replace(authors_ss, scales=PAPER_SCALES)
else:
    authors_ss, authors_ms = authors_protocol(cfg.dataset), authors_protocol(cfg.dataset, multi_scale=True)
all_protocols = {"toolbox": toolbox, "toolbox+flip": dataclasses.replace(toolbox, flip=True),
                 "authors-ss": authors_ss, "authors-ms": authors_ms}
unknown = [p for p in wanted if p not in all_protocols]
if unknown:
    raise ValueError(f"unknown protocols {unknown}; choose from {list(all_protocols)}")
chosen = {k: all_protocols[k] for k in wanted}
for k, p in chosen.items():
    print(f"{k:<13} {p.name}")

# %% [markdown]
# ## 2. A model: trained here, or loaded from a checkpoint
#
# Without `checkpoint`, the preset is trained through `pspnet_lite.train.run_grid`, which caches the
# finished run under `out_dir` by a hash of its full configuration (a re-run of this chapter reuses it).
# With `checkpoint`, the file is loaded instead, by `pspnet_lite.checkpoint.load_model`: a trainer checkpoint
# rebuilds its own architecture; any other file (the authors' released `train_epoch_100.pth`, a plain state
# dict) is loaded into `PSPNet(num_classes, backbone)`, which checks every key and shape (the auxiliary head is
# training-only, §4: its weights are skipped and reported).

# %%
def model_from_file(path, num_classes, backbone_name, kind="auto"):
    """(model, where it came from, what was loaded): a trainer checkpoint rebuilds itself; anything else is
    loaded into PSPNet(num_classes, backbone)."""
    path = str(book.resolve_path(path))
    loaded = load_model(path, arch=PSPNetConfig(num_classes=num_classes, backbone=backbone_name), kind=kind,
                        device=device)
    if loaded.trainer:
        report = f"trainer checkpoint: iteration {loaded.state.get('iteration')}, model {loaded.config.backbone}"
        print(report)
        return loaded.model, f"{path} (trainer checkpoint)", report
    print(loaded.state["weights"])
    return loaded.model, f"{path} ({backbone_name}, load_weights)", loaded.state["weights"]

# %%
val_kw = dict(image_size=image_size) if scenes else {}
cityscapes = cfg.dataset == "cityscapes"
if cityscapes:
    val_kw["instances"] = True  # the ground truth's instance ids, for the iIoU scores (section 6)
val_set = build_dataset(cfg.dataset, root=cfg.data_root, split="val", **val_kw)
if num_val_images and len(val_set) > num_val_images:
    val_set = torch.utils.data.Subset(val_set, range(num_val_images))
base_set = getattr(val_set, "dataset", val_set)
classes, palette, num_classes = list(base_set.classes), base_set.palette, len(base_set.classes)
train_row = None
with book.Timer() as train_timer:
    if checkpoint:
        stop_if_dry_run(dry_run, {"runs": 0, "checkpoint": checkpoint})  # nothing to train: scoring costs minutes
    else:
        (train_row, *_) = train_runs([("model", cfg)], out / "runs", reference=book.preset_config(preset, dataset),
                                     nproc_per_node=nproc_per_node, dry_run=dry_run,
                                     results=book.resolve_path("results")) or [None]

# %%
if checkpoint:
    model, source, load_report = model_from_file(checkpoint, num_classes, backbone or cfg.model.backbone,
                                                 checkpoint_kind)
else:
    print(f"{'loaded from the cache' if train_row.cached else 'trained'}: {train_row.iterations} "
          f"iterations in {train_row.train_time_s / 60:.1f} min -> {train_row.out_dir}")
    model, source, load_report = model_from_file(train_row.checkpoints["last"], num_classes, cfg.model.backbone)
print(f"model from {source}; {sum(p.numel() for p in model.parameters()):,} parameters; "
      f"{len(val_set)} validation images, {num_classes} classes")

# %% [markdown]
# ## 3. Scores under every protocol, in one pass
#
# `pspnet_lite.inference.evaluate` runs all protocols over the validation set in one pass, computing the
# views they share (the unflipped scale-1 whole image, for example) only once.

# %%
loader = torch.utils.data.DataLoader(val_set, batch_size=eval_batch_size if scenes else 1, num_workers=0)
with book.Timer() as eval_timer:
    scores = evaluate(model, loader, num_classes, protocols=chosen, device=device, progress=True,
                      metric=(lambda: CityscapesMetrics(device=device)) if cityscapes else None)
costs = {k: protocol_cost(p, *((image_size,) * 2 if scenes else (512, 683)))[0] for k, p in chosen.items()}
print(f"{'protocol':<13} {'mIoU':>6} {'mAcc':>6} {'pixAcc':>6} {'passes':>6}  what it is")
for k, s in scores.items():
    print(f"{k:<13} {100 * s.miou:6.2f} {100 * s.macc:6.2f} {100 * s.pixel_acc:6.2f} {costs[k]:6d}  "
          f"{chosen[k].name}")
print(f"(evaluation of {len(val_set)} images under {len(chosen)} protocols took {eval_timer.seconds:.0f} s "
      f"on {device})")
if cityscapes:  # Table 7's four scores (section 6 explains them)
    print(f"\n{'protocol':<13} {'IoU class':>9} {'iIoU class':>10} {'IoU cat.':>9} {'iIoU cat.':>9}")
    for k, s in scores.items():
        c = s.cityscapes
        print(f"{k:<13} {100 * c['iou_class']:9.2f} {100 * c['iiou_class']:10.2f} {100 * c['iou_category']:9.2f} "
              f"{100 * c['iiou_category']:9.2f}")

# %% [markdown]
# The rows differ only in the protocol; compare them with the paper's own gains from multi-scale testing.
# Multi-scale averaging includes scales 0.5 and 1.75: it can only help a model that was trained across such
# scales, which is why the paper's training randomly rescales by 0.5-2 (§5.1) and why this chapter trains with
# the same range (`scale_range`). The paper's MS gains, next to ours:

# %%
print("paper (ADE20K val, protocol: authors' single scale -> authors' MS, Table 3):")
paper_ms_gains = {}  # ResNet depth -> mIoU gain of the authors' MS over their single scale, for the record
for depth in (50, 101, 152, 269):
    (m1, a1), (m2, a2) = paper.TABLE3_DEPTH[depth], paper.TABLE3_DEPTH_MS[depth]
    paper_ms_gains[depth] = round(m2 - m1, 2)
    print(f"  ResNet{depth:<4} mIoU {m1:5.2f} -> {m2:5.2f} ({m2 - m1:+.2f})   pixel acc {a1:5.2f} -> {a2:5.2f} "
          f"({a2 - a1:+.2f})")
gains = {}
for a, b in [("toolbox", "authors-ss"), ("authors-ss", "authors-ms"), ("toolbox", "authors-ms")]:
    if a in scores and b in scores:
        gains[f"{a} -> {b}"] = 100 * (scores[b].miou - scores[a].miou)
        print(f"ours ({cfg.dataset}, {cfg.model.backbone}): {a} -> {b}: mIoU {100 * scores[a].miou:.2f} -> "
              f"{100 * scores[b].miou:.2f} ({gains[f'{a} -> {b}']:+.2f})")
chain = [k for k in ("toolbox", "toolbox+flip", "authors-ss", "authors-ms") if k in scores]
print("ours, one change at a time, mIoU / pixel acc: "
      + " -> ".join(f"{k} {100 * scores[k].miou:.2f} / {100 * scores[k].pixel_acc:.2f}" for k in chain))

# %% [markdown]
# And the paper's headline numbers for each benchmark, with the protocol they were measured with, next to
# ours (on ContextScenes the numbers are not comparable in value, only in how the protocols order them):

# %%
ours = {k: f"{100 * s.miou:.2f} / {100 * s.pixel_acc:.2f}" for k, s in scores.items()}
print(f"{'source':<44} {'data':<14} {'mIoU / pixel acc':>18}  protocol")
headline = [  # (source, data, mIoU / pixel acc, protocol)
    ("paper: ResNet50+DA+AL+PSP (Table 4)", "ADE20K val",
     "{:.2f} / {:.2f}".format(*paper.TABLE4_ADE20K["ResNet50+DA+AL+PSP"]), "authors single scale (slide + flip)"),
    ("paper: ResNet269+DA+AL+PSP+MS (Table 4)", "ADE20K val",
     "{:.2f} / {:.2f}".format(*paper.TABLE4_ADE20K["ResNet269+DA+AL+PSP+MS"]), "authors MS + flip"),
    ("paper: PSPNet-101 (Table 6)", "VOC test", f"{paper.TABLE6_VOC_MIOU['PSPNet']:>11.1f} /   -",
     "authors MS + flip (test server)"),
    ("paper: PSPNet-101 fine (Table 7)", "City test", f"{paper.TABLE7_CITYSCAPES['PSPNet (fine)'][0]:>11.1f} /   -",
     "authors MS + flip (test server)"),
]
for source_name, data, numbers, protocol_name in headline:
    print(f"{source_name:<44} {data:<14} {numbers:>18}  {protocol_name}")
who = f"ours: {cfg.model.backbone}, {cfg.iters} iters" if not checkpoint else f"ours: ...{str(checkpoint)[-35:]}"
for k, v in ours.items():
    print(f"{who:<44} {cfg.dataset:<14} {v:>18}  {k}: {chosen[k].name}")

# %% [markdown]
# ## 4. Per-class IoU
#
# The paper prints per-class IoU for VOC (Table 6) and Cityscapes (Table 8), both on the test servers with
# multi-scale testing. On those data sets we put our per-class IoU (validation set, the protocol named in the
# header) next to the paper's. On ContextScenes each class has a role in §3.1's argument: stuff, the
# mismatched-relationship pair (boat/car), the confusion pair (building/skyscraper), the inconspicuous pair
# (pillow/rug) and the regional-context pair.

# %%
best_key = "authors-ms" if "authors-ms" in scores else list(scores)[-1]
first_key = list(scores)[0]
paper_table, paper_name = None, None
if cfg.dataset == "voc":
    paper_name = "PSPNet (Table 6, test, MS)"
    paper_table = {i + 1: v for i, v in enumerate(paper.TABLE6_VOC_PER_CLASS["PSPNet"].values())}  # 0 = background
elif cfg.dataset == "cityscapes":
    paper_name = "PSPNet fine (Table 8, test, MS)"
    paper_table = dict(enumerate(paper.TABLE8_CITYSCAPES_PER_CLASS["PSPNet (fine)"].values()))
roles = getattr(base_set, "roles", None)
head = f"{'class':<14}" + (f" {'role':<13}" if roles else "") + f" {first_key:>12} {best_key:>12}"
print(head + (f"  {paper_name}" if paper_table else ""))
def pct(v):
    return "-" if np.isnan(v) else f"{100 * v:.2f}"  # "-": class absent from ground truth and prediction


for c, name in enumerate(classes):
    a, b = (pct(float(scores[k].iou[c])) for k in (first_key, best_key))
    line = f"{name:<14}" + (f" {roles[c]:<13}" if roles else "") + f" {a:>12} {b:>12}"
    print(line + (f"  {paper_table[c]:8.1f}" if paper_table and c in paper_table else ""))

# %%
role_iou = {}
if roles:
    for role in dict.fromkeys(roles):
        idx = [c for c in range(num_classes) if roles[c] == role]
        role_iou[role] = {k: 100 * float(torch.nanmean(scores[k].iou[idx])) for k in (first_key, best_key)}
        print(f"{role:<14} mean IoU {role_iou[role][first_key]:6.2f} ({first_key})  "
              f"{role_iou[role][best_key]:6.2f} ({best_key})")

# %% [markdown]
# Compare the roles: expect the context classes (the mismatched and confusion pairs) and the small
# inconspicuous objects to be where a short training run struggles, and where a change of protocol (more
# context per window at small scales, more detail at large ones) moves the IoU the most; the table above says
# whether this run bears it out.

# %%
fig = plot_class_iou({first_key: scores[first_key], best_key: scores[best_key]}, class_names=classes,
                     title=f"{cfg.dataset}: mIoU {100 * scores[first_key].miou:.1f} ({first_key}) vs "
                           f"{100 * scores[best_key].miou:.1f} ({best_key})")
fig.savefig(out / "per_class_iou.png", bbox_inches="tight")
plt.show()

# %% [markdown]
# ## 5. Predictions next to the ground truth
#
# A few validation images, their ground truth and the predictions of the cheapest and the most expensive
# protocol, in the data set's palette (black = ignored).

# %%
images, masks = zip(*[val_set[i][:2] for i in range(min(num_show, len(val_set)))])  # (Cityscapes: no instances)
shown = {}
for k in dict.fromkeys([first_key, best_key]):
    if scenes:  # equal sizes: one batched call
        shown[k] = list(predict(model, torch.stack(images).to(device), num_classes, chosen[k]).cpu())
    else:
        shown[k] = [predict(model, im[None].to(device), num_classes, chosen[k])[0].cpu() for im in images]
fig = show_predictions(list(images), list(masks), shown, palette=palette, class_names=classes)
fig.suptitle(f"{cfg.dataset}: ground truth vs {first_key} and {best_key} predictions")
fig.savefig(out / "predictions.png", bbox_inches="tight")
plt.show()

# %% [markdown]
# Look at object boundaries and at the context classes: averaging windows, flips and scales smooths the
# label maps and removes isolated wrong pixels.

# %% [markdown]
# ## 6. Cityscapes' four scores, and the test servers' files
#
# Table 7 reports four numbers per method. *IoU class* is the mean IoU over the 19 classes, as everywhere
# in this book:
#
# $$\mathrm{IoU}_c = \frac{TP_c}{TP_c + FP_c + FN_c}, \qquad \text{IoU class} = \frac{1}{19}\sum_c \mathrm{IoU}_c .$$
#
# A pixel count favours large objects: a missed car far down the street costs a few hundred pixels, a close
# one tens of thousands. *iIoU class* (instance-level IoU) removes that bias for the 8 classes with instances
# (person, rider, car, truck, bus, train, motorcycle, bicycle). Each ground-truth instance $i$ of class $c$
# weighs its true-positive and false-negative pixels by the class's average instance size $\bar{S}_c$ over
# its own size $S_i$; false positives belong to no instance and stay unweighted:
#
# $$\mathrm{iIoU}_c = \frac{\sum_i w_i\, TP_i}{\sum_i w_i\, TP_i + FP_c + \sum_i w_i\, FN_i}, \qquad
#   w_i = \frac{\bar{S}_c}{S_i} .$$
#
# *IoU category* and *iIoU category* are the same over the 7 categories (flat, construction, object, nature,
# sky, human, vehicle): taking a car for a truck is an error of class but not of category. The definitions are
# those of the official evaluation script (`cityscapesscripts`, `evalPixelLevelSemanticLabeling.py`), which
# also supplies $\bar{S}_c$; `pspnet_lite.cityscapes_metrics` computes them and the tests compare it with that
# script. Below, one street frame has a large car and a small one. The prediction gets the large car right but
# calls a tenth of it "truck", and misses the small car (road).

# %%
H, W = 256, 512
label = np.full((H, W), 7, np.int64)  # label id 7: road
instances = label.copy()  # stuff pixels carry their label id; instance pixels label_id * 1000 + k
cars = {"large car": (slice(100, 200), slice(50, 250)), "small car": (slice(120, 140), slice(400, 430))}
for k, (ys, xs) in enumerate(cars.values()):
    label[ys, xs], instances[ys, xs] = 26, 26 * 1000 + k  # 26: car
pred = label.copy()
pred[100:110, 50:250] = 27  # a tenth of the large car taken for a truck (27)
pred[cars["small car"]] = 7  # the small car missed: road
size = {n: (ys.stop - ys.start) * (xs.stop - xs.start) for n, (ys, xs) in cars.items()}
weight = {n: AVERAGE_INSTANCE_SIZE["car"] / size[n] for n in cars}
truck_px = 10 * 200
# by hand, from the formulas above
tp_car, fn_car = size["large car"] - truck_px, truck_px + size["small car"]
by_hand = {"car IoU": tp_car / (tp_car + fn_car),
           "car iIoU": tp_car * weight["large car"] / (tp_car * weight["large car"] + truck_px * weight["large car"]
                                                       + size["small car"] * weight["small car"]),
           "vehicle IoU": size["large car"] / (size["large car"] + size["small car"]),
           "vehicle iIoU": size["large car"] * weight["large car"]
           / (size["large car"] * weight["large car"] + size["small car"] * weight["small car"])}
# the package
example = CityscapesMetrics()
example.update(torch.from_numpy(pred)[None], torch.from_numpy(CITYSCAPES_LABEL_TO_TRAIN[label])[None],
               torch.from_numpy(instances)[None], ids="label")
example_scores = example.compute()
ex = example_scores.cityscapes
package = {"car IoU": example_scores.iou[CITYSCAPES_CLASSES.index("car")].item(),
           "car iIoU": ex["iiou_per_class"]["car"], "vehicle IoU": ex["iou_per_category"]["vehicle"],
           "vehicle iIoU": ex["iiou_per_category"]["vehicle"]}
for n in cars:
    print(f"{n}: {size[n]:6d} px, weight {AVERAGE_INSTANCE_SIZE['car']:.0f} / {size[n]} = {weight[n]:.3f}")
print(f"\n{'score':<13} {'by hand':>8} {'package':>8}")
for key in by_hand:
    print(f"{key:<13} {100 * by_hand[key]:8.2f} {100 * package[key]:8.2f}")
    assert abs(by_hand[key] - package[key]) < 1e-12, key
print(f"\nthe frame's four means: IoU class {100 * ex['iou_class']:.2f}, iIoU class {100 * ex['iiou_class']:.2f}, "
      f"IoU category {100 * ex['iou_category']:.2f}, iIoU category {100 * ex['iiou_category']:.2f}")
cityscapes_example = {"sizes": size, "weights": weight, "by_hand": by_hand, "package": package,
                      "means": {k: ex[k] for k in ("iou_class", "iiou_class", "iou_category", "iiou_category")}}

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 2.6))
names = {7: "road", 26: "car", 27: "truck"}
colours = {7: (128, 64, 128), 26: (0, 0, 142), 27: (0, 0, 70)}  # the Cityscapes palette
for ax, (title, img) in zip(axes[:2], [("ground truth (label ids)", label), ("prediction", pred)]):
    rgb = np.zeros((H, W, 3), np.uint8)
    for lid, c in colours.items():
        rgb[img == lid] = c
    ax.imshow(rgb)
    ax.set_title(title)
pixel_weight = np.zeros((H, W))
for n, (ys, xs) in cars.items():
    pixel_weight[ys, xs] = weight[n]
im = axes[2].imshow(pixel_weight, cmap="magma")
axes[2].set_title("iIoU weight of each car pixel")
fig.colorbar(im, ax=axes[2], fraction=0.025)
for ax in axes:
    ax.set_axis_off()
fig.savefig(out / "cityscapes_iiou.png", bbox_inches="tight")
plt.show()

# %% [markdown]
# Read the printed table: by pixels the car class looks good, because the large car dominates; weighted by
# instance, the missed small car counts as much as the large one, and iIoU falls far below IoU. The truck
# pixels cost the car class but not the vehicle category. Table 7's iIoU columns are therefore the ones that
# reward getting small and distant objects right. What resolves them is the stride-8 feature map (chapter 03),
# not the pyramid: a 6 × 6 bin covers about 80 pixels of a 473 crop, far more than a distant car.
#
# **The test servers.** Tables 5-7 are test-set numbers from the benchmarks' servers, which take predictions in
# their own formats (`pspnet_lite.submission`): ADE20K class ids 1..150; VOC palette PNGs under
# `results/VOC2012/Segmentation/comp6_test_cls/`; Cityscapes *label* ids (7 = road, not train id 0) in files
# named after the frame. `predict --format` writes exactly those files, and `evaluate --predictions` scores the
# same files on a validation split, so the files you upload are the files you checked:
#
# ```
# # check on val first: predict the split into server files, then score those files
# python -m pspnet_lite.predict --checkpoint best.pt --split val --format cityscapes --out val_preds/
# python -m pspnet_lite.evaluate --dataset cityscapes --data-root /data/cityscapes --split val \
#     --predictions val_preds/ --out scores.json
# # Cityscapes test (label ids, full 2048x1024): zip the PNGs
# python -m pspnet_lite.predict /data/cityscapes/leftImg8bit/test/*/*_leftImg8bit.png --checkpoint best.pt \
#     --format cityscapes --protocol ms+flip --mode slide --crop-size 713 --base-size 2048 --out city_test/
# (cd city_test && zip -qr ../cityscapes_submission.zip .)
# # PASCAL VOC 2012 test (the 1,456 ids of ImageSets/Segmentation/test.txt): a tar.gz of results/
# python -m pspnet_lite.predict $(sed 's|.*|/data/VOC2012test/JPEGImages/&.jpg|' \
#     /data/VOC2012test/ImageSets/Segmentation/test.txt) --checkpoint best.pt --format voc \
#     --protocol ms+flip --mode slide --base-size 512 --out voc_test/
# tar -czf voc_submission.tar.gz -C voc_test results
# # ADE20K scene parsing test (ids 1..150): zip the PNGs
# python -m pspnet_lite.predict /data/release_test/testing/*.jpg --checkpoint best.pt --format ade20k \
#     --protocol ms+flip --mode slide --base-size 512 --out ade_test/
# (cd ade_test && zip -qr ../ade20k_submission.zip .)
# ```

# %% [markdown]
# ## 7. Score the paper's own models
#
# > "Our implementation is based on the public platform Caffe [15]." (§5.1)
#
# The authors released three of the networks behind the paper's numbers as Caffe models: `pspnet50_ADE20K`,
# `pspnet101_VOC2012` and `pspnet101_cityscapes`, each a deploy prototxt in the release's `evaluation/prototxt/`
# and a `.caffemodel` of trained weights. Scoring them on the validation sets is the cheapest real reproduction of
# the paper's numbers: no training, only forward passes, where training them again means the paper's schedule,
#
# > "The performance can be improved by increasing the iteration number, which is set to 150K for ImageNet
# > experiment, 30K for PASCAL VOC and 90K for Cityscapes." (§5.1)
#
# on the paper's multi-GPU batch-normalisation setup. The weights compute what the paper measured only when they
# are fed what they were trained on, and the release's evaluation code (`evaluation/pre_img.m`, `eval_all.m` and
# the `Interp` layer of its Caffe fork) fixes four things:
#
# - the channel order is **BGR**, not RGB;
# - the mean pixel is subtracted and nothing is divided: **no std scaling**, the values stay in pixel units;
# - upsampling aligns the corners (`align_corners=True`, Caffe's `Interp`);
# - inputs are $8n+1$ pixels on a side (the prototxts' crops), so that the stride-8 map's corner cells sit on the
#   image's corner pixels (section 1's windows are such crops).
#
# `python -m pspnet_lite.convert caffe` writes the first two into the checkpoint and sets the last two in the
# model's config; `evaluate` and `predict` apply them with no flags. Ports that skipped them saw the score
# collapse; the cell prints what users of one port reported for the Cityscapes model, and what a converted
# checkpoint records:

# %%
for r in release.PORT_REPORTS:
    print(f"reported by users of a port ({r['source']}), {r['model']} on {r['split']}:")
    print(f"  mIoU about {r['before']:.0f} with {r['before_input']}")
    print(f"  mIoU {r['after']:.2f} / pixel acc {r['after_pixel_acc']:.2f} with {r['after_input']}")
pre = CAFFE_PREPROCESSING.to_dict()
print(f"\na converted checkpoint's preprocessing: channel order {pre['channel_order']}, mean {pre['mean']} "
      f"(in that order), std {pre['std']} (no scaling)")

# %% [markdown]
# **The three models, and the commands.** The release's README links each caffemodel on Google Drive, to be put
# in the release's `evaluation/model/` folder. This chapter downloads nothing: fetch the three files by hand from
# the links the cell prints, clone the release for its prototxts, and run the commands. `convert` checks every
# layer of the prototxt against `PSPNet` and stops, naming the layer, at anything it cannot map; the checkpoint it
# writes records the preprocessing above and the release's protocol, so the `evaluate` commands carry no protocol
# flags and score the split the checkpoint records (val). `--protocols ms+flip` adds the release's six scales.
# The data roots are the `data_roots` parameter's where it names one, else placeholders.

# %%
roots = release.parse_paths(data_roots, "data_roots")
placeholder = {"ade20k": "/data/ADEChallengeData2016", "voc": "/data/voc", "cityscapes": "/data/cityscapes"}
print(f"git clone https://github.com/{release.RELEASE_REPO}.git   # the prototxts: PSPNet/evaluation/prototxt/")
for m in release.RELEASED.values():
    root = roots.get(m.dataset, placeholder[m.dataset])
    print(f"\n# {m.name}: download {m.caffemodel} from {m.download} into PSPNet/evaluation/model/")
    print(m.convert_command())
    print(m.evaluate_command(root))
    print(m.evaluate_command(root, multi_scale=True))

# %% [markdown]
# The release's own numbers (its README's "expected scores"), with the split each is on and the protocols
# `evaluate` runs for a converted checkpoint (built from what the checkpoint records, as `evaluate` builds them).
# The release's "ss" already averages the mirrored image. For VOC the release reports only the test server, whose
# files section 6's `predict --format voc` command writes; on VOC val there is no release number to compare with.
# Beside them, the paper's own table entries for the same models, kept apart (the paper has no Cityscapes
# validation number; its Table 7 is the test server).

# %%
def pair(v, fmt=".2f"):
    """(mIoU, pixel acc) as printed by its source: the release with two decimals, the paper as it prints them."""
    return "-" if not v else " / ".join("-" if x is None else format(x, fmt) for x in v)


print(f"source: {paper.RELEASE_SOURCE}")
print(f"{'model':<21} {'release split':<17} {'ss mIoU / pixAcc':>17} {'ms mIoU / pixAcc':>17}   evaluate on val")
for m in release.RELEASED.values():
    r, ps = m.reported, release.release_protocols(m)
    split = f"{r['data']} {r['split']}"
    print(f"{m.name:<21} {split:<17} {pair(r['ss']):>17} {pair(r['ms']):>17}   ss+flip: {ps['ss+flip'].name}")
    print(f"{'':<21} {'':<17} {'':>17} {'':>17}   ms+flip: {ps['ms+flip'].name}")
paper_same_models = [  # (model, the paper's entry, its split, mIoU / pixel acc)
    ("pspnet50_ADE20K", "Table 4 ResNet50+DA+AL+PSP (ss)", "ADE20K val", paper.TABLE4_ADE20K["ResNet50+DA+AL+PSP"]),
    ("pspnet50_ADE20K", "Table 3 ResNet50 +MS", "ADE20K val", paper.TABLE3_DEPTH_MS[50]),
    ("pspnet101_VOC2012", "Table 6 PSPNet, COCO pre-trained (ms)", "VOC 2012 test",
     (paper.TABLE6_VOC_MIOU["PSPNet (COCO pre-trained)"], None)),
    ("pspnet101_cityscapes", "Table 7 PSPNet fine (ms)", "Cityscapes test",
     (paper.TABLE7_CITYSCAPES["PSPNet (fine)"][0], None)),
]
print(f"\n{'model':<21} {'the paper':<38} {'split':<16} mIoU / pixAcc")
for name, entry, split, v in paper_same_models:
    print(f"{name:<21} {entry:<38} {split:<16} {pair(v, 'g')}")

# %% [markdown]
# Two differences remain between the package's protocol and the release's MATLAB code: images smaller than a crop
# are padded centrally (the release pads bottom and right), and the flip's softmax probabilities are averaged (the
# release sums the logits first). Expect measured scores near the release's, not equal to the last digit.
#
# ### What the scoring costs: a dry run
#
# The price needs no GPU. Per image, the protocol makes $P$ crop-sized forward passes
# (`pspnet_lite.inference.crop_passes` places the windows as section 1's sliding window does, at every scale, and
# counts the mirrored pass); the split has $N$ images; one crop costs $F$ FLOPs (`count_flops` on the release's
# architecture, built on the meta device, so nothing is computed). At a sustained throughput $\eta\,F_{peak}$ the
# scoring takes
#
# $$T = \frac{N \cdot P \cdot F}{\eta\, F_{peak}} .$$
#
# $\eta\,F_{peak}$ is the book's planning assumption (`pspnet_lite.book.plan.assumed_throughput`, the figure the
# training chapters' dry runs use): a fixed fraction of one GPU's dense peak, TF32 here because `evaluate` runs in
# float32. It is an assumption, not a measurement. Resizing, softmax, the averaging of windows and data loading are
# not counted, so a real run takes longer than $T$. The images: ADE20K's sizes vary, and one landscape size stands
# for all (the protocol resizes every long side to the same base, so only the aspect ratio matters).

# %%
release_costs = release.cost_table()
for m in release.RELEASED.values():
    v = release.VALIDATION[m.dataset]
    print(f"{m.name:<21} {m.config.backbone}, crop {m.crop}: {release.crop_flops(m.config, m.crop) / 1e9:,.0f} "
          f"GFLOPs per crop; {v.dataset} {v.split}: {v.images:,} images of {v.size[0]} x {v.size[1]} (H x W; {v.note})")
print(f"throughput: {release_costs[0]['basis']}\n")
print(release.format_cost_table(release_costs))
release_totals = {p: sum(r["gpu_minutes"] for r in release_costs if r["protocol"] == p) for p in ("ss+flip", "ms+flip")}
print(f"\nall three models: about {release_totals['ss+flip']:.1f} GPU minutes with ss+flip, "
      f"{release_totals['ms+flip']:.1f} with ms+flip (one evaluate call with both protocols costs the ms+flip row: "
      "they share the scale-1 passes)")

# %% [markdown]
# Read the table: the multi-scale rows cost several times the single-scale ones, most of it at the large scales,
# where the resized image needs more windows on both axes; Cityscapes' wide frames need the most windows at every
# scale. Even so, scoring all three released models takes minutes to tens of minutes of GPU time by this estimate,
# where training one again takes the tens of thousands of iterations quoted above.
#
# ### Scoring for real
#
# With converted checkpoints in `caffe_checkpoints` and their data roots in `data_roots`, the next cell runs
# `evaluate` on each (through its Python API: `pspnet_lite.book.release.score_checkpoints`) under
# `release_protocols`, and prints the measured scores beside the release's (only where the split is the same).
# By default the parameters are empty and it scores nothing:
#
# ```
# papermill book/07_benchmarks.ipynb out.ipynb -p device cuda \
#     -p caffe_checkpoints pspnet50_ade20k.pt,pspnet101_cityscapes.pt \
#     -p data_roots ade20k=/data/ADEChallengeData2016,cityscapes=/data/cityscapes \
#     -p release_protocols ss+flip,ms+flip
# ```

# %%
release_files = book.parse_list(caffe_checkpoints, str, "caffe_checkpoints")
release_scores = []
if release_files:
    with book.Timer() as release_timer:
        release_scores = release.score_checkpoints(
            [str(book.resolve_path(f)) for f in release_files], roots,
            book.parse_list(release_protocols, str, "release_protocols"), out_dir=out,
            num_images=release_num_images, device=str(device))
    print(release.format_scores(release_scores))
    print(f"({len(release_scores)} score(s) in {release_timer.seconds / 60:.1f} min on {device})")
else:
    print("caffe_checkpoints is empty: nothing is scored here; the commands and the estimate above are this "
          "section's output (pass converted checkpoints and data_roots to score them)")

# %% [markdown]
# A measured mIoU far below the release's points at the input first: the channel order, the mean, the std, the
# corner alignment (the port report above). A few tenths either way are the two protocol differences named above.

# %% [markdown]
# The record of this run:

# %%
assert all(0 <= s.miou <= 1 and 0 <= s.pixel_acc <= 1 for s in scores.values())
assert all(s.num_classes == num_classes for s in scores.values())
seconds = time.perf_counter() - chapter_start
record = book.write_record(
    out / "record.json", name="07_benchmarks",
    config=cfg.flat_dict() | {"checkpoint": checkpoint, "protocols": {k: p.name for k, p in chosen.items()},
                              "num_val_images": len(val_set)},
    metrics={k: {"miou": 100 * s.miou, "macc": 100 * s.macc, "pixel_acc": 100 * s.pixel_acc,
                 "iou": [100 * float(v) for v in s.iou], "protocol": chosen[k].name, "forward_passes": costs[k]}
             | ({key: 100 * s.cityscapes[key] for key in ("iou_class", "iiou_class", "iou_category", "iiou_category")}
                if s.cityscapes else {})
             for k, s in scores.items()} | {"miou_gains": gains, "role_iou": role_iou},
    cityscapes_example=cityscapes_example,
    seconds=seconds, device=device, source=source, train_seconds=train_timer.seconds,
    eval_seconds=eval_timer.seconds, load_report=load_report,
    trained_iterations=None if train_row is None else train_row.iterations,
    paper_protocols=paper_protocols, ade20k_costs=ade20k_costs, paper_ms_gains=paper_ms_gains,
    paper_headline=headline, release_numbers=paper.RELEASE_CAFFE, release_costs=release_costs,
    release_scores=release_scores)
print(f"record: {record}\nthis run: {seconds / 60:.1f} min on {device} "
      f"(model {train_timer.seconds:.0f} s, evaluation {eval_timer.seconds:.0f} s)")

# %% [markdown]
# ## Summary
#
# - The paper's "single scale" is the authors' protocol: long side to 512 (2048), sliding window of the
#   training crop, flip always on. "MS" adds six scales. A toolbox's plain mIoU is one whole-image pass
#   without flip. State the protocol next to every number; this chapter's tables do.
# - The printed gains above show what flip, sliding window and scales add for this model; the paper's MS gain
#   on ADE20K is +0.89 to +1.33 mIoU (Table 3). Section 3's one-change-at-a-time line splits this model's
#   change from `toolbox` to `authors-ms` into what flip, the sliding window and the extra scales each add or
#   cost.
#   A window smaller than the image can cost: a 96 px window on a 128 px ContextScenes image hides the far-away
#   context that decides boat vs car, so the pyramid pools less of the scene; the authors' protocol is built
#   for windows that are large relative to the context they need (473 px on ADE20K). With one seed the spread
#   is not measured: differences of a point are not established by this run.
# - Per-class IoU shows where the gains land; on ContextScenes, the context classes of §3.1.
# - The cheapest real reproduction is to score the authors' released models: convert each caffemodel, and
#   `evaluate` applies the release's preprocessing and protocol from the checkpoint. Section 7 prints the
#   commands, the release's numbers beside them and the GPU minutes the scoring costs (an estimate from FLOPs and
#   an assumed throughput, not a measurement).
# - ContextScenes results demonstrate mechanisms; they are not evidence about ADE20K (chapter 00 says what ContextScenes
#   results can and cannot show).

# %% [markdown]
# ## Exercises
#
# Compare each change with the default run's record (`runs/07_benchmarks/record.json`, written by the last
# code cell); give each variant its own folder (`-p out_dir runs/07_exercise1`, ...) so that record stays.

# %% [markdown]
# **1.** Evaluate the same checkpoint with the authors' single-scale protocol and a smaller window
# (`crop_size` 64 instead of the training crop 96): how does the window size change the score?
#
# <details><summary>Hint</summary>
#
# Pass the trained checkpoint instead of training again: section 2 prints the run folder, so
# `-p checkpoint runs/07_benchmarks/runs/<hash>/last.pt -p crop_size 64 -p protocols toolbox,authors-ss`.
# With `checkpoint` set, `crop_size` changes only the window (nothing is trained).
#
# </details>
#
# <details><summary>Answer</summary>
#
# With $c = 64$ the stride is $s = \lceil 2/3 \cdot 64 \rceil = 43$ and a 128 px side needs
# $n = \lceil (128 - 64)/43 \rceil + 1 = 3$ windows, so 9 windows per image and 18 forward passes with flip
# (the protocol table prints the count). `toolbox` does not change (no window). Expect `authors-ss` to fall
# further below `toolbox` than with the 96 px window: each window now shows a quarter of the image, so the
# pyramid's global bin pools a quarter of the scene, and the classes that §3.1's failure modes are about (a
# boat is a boat because of the water around it) lose the context that decides them. The role table of
# section 4 shows it: the context roles drop most, the stuff classes least. A window is only harmless when it
# is large relative to the context a pixel needs, as 473 px is on ADE20K.
#
# </details>

# %% [markdown]
# **2.** Make a protocol with `scales=(0.75, 1.0, 1.25)` and no flip: how much of the MS gain do three scales
# keep?
#
# <details><summary>Hint</summary>
#
# Add it to `all_protocols` in section 1, built from `authors_ss` with `dataclasses.replace`, and ask for it
# with `-p protocols`.
#
# </details>
#
# <details><summary>Answer</summary>
#
# ```python
# all_protocols["ms3"] = dataclasses.replace(authors_ss, scales=(0.75, 1.0, 1.25), flip=False)
# ```
#
# then `-p protocols toolbox,toolbox+flip,authors-ss,authors-ms,ms3`. The one-change-at-a-time line of
# section 3 splits the default run's gains into flip, window and scales. `ms3` has no flip, so it gives up the
# flip's share; of the scale share it keeps the views closest to the image's own size, and drops 0.5 (the
# 128 px image shrunk to 64 px, 8 × 8 features) and 1.5-1.75, where a 96 px window covers less than half of
# each side of the enlarged scene (the context argument of exercise 1). Expect `ms3` between `authors-ss` and
# `authors-ms`, for 3 views instead of the 12 of `authors-ms` (each view one or more windows).
#
# </details>

# %% [markdown]
# **3.** Train longer (`-p iters 600`): does the gap between protocols shrink as the model gets better?
#
# <details><summary>Hint</summary>
#
# The cache key is the full configuration, so this trains a new model. Compare the chapter's `miou_gains`
# (the record's `metrics`) with the default run's.
#
# </details>
#
# <details><summary>Answer</summary>
#
# Averaging helps where the views disagree: flip, windows and scales average out errors that depend on
# position and size. A better-trained model is more consistent across views, so expect every protocol's mIoU
# to rise and the gains between them to shrink. The paper's Table 3 is the same picture
# at scale: its MS gain is around one point on networks that are already at 41-44 mIoU. At 600 iterations and
# one seed, though, a change of the gap by less than a point is within what a second seed could change.
#
# </details>

# %% [markdown]
# **Run it for real.** With the authors' released weights (hszhao/semseg; ADE20K PSPNet-50):
#
# ```
# papermill book/07_benchmarks.ipynb out.ipynb -p preset ade20k-pspnet50 -p dataset ade20k \
#     -p data_root /data/ADEChallengeData2016 -p checkpoint exp/ade20k/pspnet50/model/train_epoch_100.pth \
#     -p backbone resnet50 -p crop_size None -p num_val_images None -p device cuda
# papermill book/07_benchmarks.ipynb out.ipynb -p preset voc-pspnet101 -p dataset voc -p data_root /data/voc \
#     -p checkpoint exp/voc2012/pspnet101/model/train_epoch_50.pth -p backbone resnet101 -p crop_size None \
#     -p num_val_images None
# ```
#
# Or train here with the paper's settings (`-p iters None -p batch_size None -p crop_size None
# -p num_train_images None`; days on one GPU), or first with torchrun
# (`torchrun --nproc_per_node 8 -m pspnet_lite.train --preset cityscapes-pspnet101 --data-root /data/cityscapes
# --pretrained resnet101_v2.pth`) and pass `-p checkpoint runs/.../last.pt`.

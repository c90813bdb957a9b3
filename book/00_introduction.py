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
# # 00 · Scene parsing, its data sets, and how it is scored (§1, §5)
#
# PSPNet (Zhao et al., CVPR 2017) parses scenes: it gives **every pixel** of an image one of a fixed set
# of class labels ("wall", "sky", "person", ...). This chapter sets the stage for the rest of the book:
#
# 1. the three data sets of the paper's experiments (ADE20K, PASCAL VOC 2012, Cityscapes): classes,
#    sizes, colour palettes, as `pspnet_lite.data` defines them;
# 2. **ContextScenes**, the small synthetic data set this book trains on by default, built so that the
#    failure modes of §3.1 really happen on a CPU;
# 3. the two scores of the paper's ADE20K tables, **mean IoU** and **pixel accuracy** (§5.2),
#    computed by hand with NumPy on a tiny example and checked against `pspnet_lite.metrics`.
#
# Measured default run time (`time papermill` on a 2-core CPU): see the README's table. Nothing is trained.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch

from pspnet_lite import book
from pspnet_lite.book import paper, viz
from pspnet_lite.data import context_scenes
from pspnet_lite.data import datasets as real_datasets
from pspnet_lite.data.context_scenes import ContextScenes
from pspnet_lite.metrics import ConfusionMatrix, json_safe

# %% tags=["parameters"]
num_images = 6  # ContextScenes samples shown in the grid
image_size = 128  # ContextScenes image side in pixels
device = "auto"  # "auto", "cpu" or "cuda" (nothing heavy runs here)
seed = 0  # ContextScenes generator seed
out_dir = "runs/00_introduction"  # figures and the JSON record are saved here (relative to the repository root)

# %%
start_time = time.perf_counter()
device = book.setup(device, seed)
out_path = book.resolve_path(out_dir)
out_path.mkdir(parents=True, exist_ok=True)
viz.use_book_style()
print(f"num_images={num_images} image_size={image_size} seed={seed} out_dir={out_path}")
print("estimated run time: a few seconds (no training)")

# %% [markdown]
# ## The paper's data sets
#
# The paper evaluates on three benchmarks (§5): the ImageNet scene parsing challenge 2016 (ADE20K, stuff and
# objects in every kind of scene), PASCAL VOC 2012 (objects, augmented with SBD for training) and Cityscapes
# (urban street scenes). Their classes, in the paper's words:
#
# > "The new ADE20K dataset [43] contains 150 stuff/object category labels" (§3.1)
#
# > "[...] which contains 20 object categories and one background class." (§5.3)
#
# > "It defines 19 categories containing both stuff and objects." (§5.4)
#
# `pspnet_lite.data` knows their classes, palettes and expected split sizes:

# %%
print(f"{'data set':<12} {'classes':>7} {'train':>7} {'val':>6}  first classes")
for name, cls in real_datasets.DATASETS.items():
    counts = cls.expected_counts
    print(f"{name:<12} {len(cls.classes):>7} {counts['train']:>7} {counts['val']:>6}  "
          f"{', '.join(cls.classes[:5])}, ...")

# %% [markdown]
# The split sizes agree with the paper's (the test splits have no public labels, so the package does not count
# them; ADE20K's "20K/2K" are the rounded counts of the released ADEChallengeData2016 printed above):
#
# > "The challenge data is divided into 20K/2K/3K images for training, validation and testing." (§5.2)
#
# > "[...] we use augmented data with the annotation of [10] resulting 10,582, 1,449 and 1,456 images for
# > training, validation and testing." (§5.3)
#
# > "The images are divided into sets with numbers 2,975, 500, and 1,525 for training, validation and
# > testing." (§5.4)
#
# Each data set comes with a fixed colour per class, which every figure of this book uses:

# %%
fig, axes = plt.subplots(3, 1, figsize=(9, 2.6))
for ax, (name, cls) in zip(axes, real_datasets.DATASETS.items()):
    ax.imshow(np.asarray(cls.palette)[None, :40], aspect="auto")
    ax.set_yticks([0])
    ax.set_yticklabels([name])
    ax.set_xticks(range(0, min(40, len(cls.classes)), 5))
axes[-1].set_xlabel("class id (first 40)")
fig.suptitle("Every data set has a fixed palette: one colour per class id")
plt.show()

# %% [markdown]
# Getting the real data sets needs large downloads (`data_scripts/` fetches and checks them), and a
# paper-length training run takes days of GPU time. For learning, we need something smaller.

# %% [markdown]
# ## ContextScenes: the paper's observations, made small
#
# ContextScenes is generated on the fly from a seed. Its classes are built so that the three problems of
# §3.1 happen: look-alike objects whose class depends on the surroundings (a "boat" on water vs a "car" on
# a road), large look-alike classes decided by a whole-object property, and small objects whose texture
# is close to the stuff they lie on.
#
# **What ContextScenes can and cannot show.** Its results are *demonstrations by construction*: the data set is
# built so that context decides these classes.
#
# - *Can show*: whether a mechanism of the paper works when the data needs it, e.g. whether a global prior lets a
#   network label a boat by water it cannot see locally, and whether the pyramid's sub-regions add what one global
#   vector loses. It can also show a mechanism *failing* where it should act: a claim that is reversed on data built
#   for it is evidence against the mechanism as implemented, and one that stays unresolved says the mechanism is
#   weaker than the design assumed, or the budget too small.
# - *Cannot show*: how much any of it helps on ADE20K, VOC or Cityscapes, whose classes, scales and statistics are
#   not ContextScenes'. Only the runs on the real data (every training chapter's `-p preset paper`) can.
# - *How the book guards against fooling itself*: each chapter declares its claims before it trains, designs its
#   setting on development seeds and reports on fresh ones, and decides every claim by a paired 95% interval over
#   the seeds with Holm's correction (chapter 05); chapter 09 lists every verdict.
#
# The chapters refer back to this paragraph instead of repeating it. Each class has a **role**:

# %%
data = ContextScenes(split="val", num_images=max(24, num_images), image_size=image_size, seed=seed)
for role in ("stuff", "mismatched", "confusion", "inconspicuous", "regional"):
    ids = context_scenes.classes_by_role(role)
    print(f"{role:<14} {', '.join(f'{i}:{context_scenes.CLASSES[i]}' for i in ids)}")
print(f"{len(data.classes)} classes; scene kinds {context_scenes.SCENE_TYPES}; "
      f"here {len(data)} validation images of {image_size}x{image_size} px")

# %% [markdown]
# The task, as §1 states it, is one label per pixel:
#
# > "The goal is to assign each pixel in the image a category label." (§1)
#
# A few scenes with their label maps (the target of that task), drawn in the data set's palette, one of each
# kind first (ignored pixels, label 255, would be black; ContextScenes labels every pixel):

# %%
first_of_kind = [data.scene_types.index(k) for k in context_scenes.SCENE_TYPES if k in data.scene_types]
shown = (first_of_kind + [i for i in range(len(data)) if i not in first_of_kind])[:num_images]
fig, axes = plt.subplots(2, len(shown), figsize=(1.9 * len(shown), 4.4), squeeze=False)
for col, i in enumerate(shown):
    image, mask = data[i]  # (3, H, W) normalised, (H, W) int64
    axes[0, col].imshow(viz.denormalize(image))
    axes[1, col].imshow(viz.colorize(mask.numpy(), data.palette))
    axes[0, col].set_title(f"{data.scene_types[i]}", fontsize=9)
for ax in axes.flat:
    ax.set_xticks([]), ax.set_yticks([])
axes[0, 0].set_ylabel("image"), axes[1, 0].set_ylabel("labels")
present = sorted(set(np.concatenate([np.unique(data.masks[i]) for i in shown]).tolist()))
handles = [Patch(facecolor=data.palette[c] / 255, edgecolor="0.5", label=data.classes[c]) for c in present]
fig.legend(handles=handles, loc="outside lower center", ncol=min(8, len(present)))
fig.suptitle("ContextScenes: every pixel has a class; context decides several of them")
fig.savefig(out_path / "context_scenes_samples.png", dpi=100)
plt.show()

# %% [markdown]
# Notice that the label map is as dense as ADE20K's: the task is to reproduce the bottom row from the top row.

# %% [markdown]
# ## Scoring a prediction: IoU and pixel accuracy by hand
#
# The paper reports two numbers:
#
# > "For evaluation, both pixel-wise accuracy (Pixel Acc.) and mean of class-wise intersection over union
# > (Mean IoU) are used." (§5.2)
#
# **Pixel accuracy** is the share of labelled pixels predicted correctly; **mean IoU** is the mean over
# classes of intersection over union between predicted and true regions. A tiny 4x6 example with classes
# sky (0), tree (1), road (2), car (3) and one unlabelled pixel (255, ignored by both scores):

# %%
names = ["sky", "tree", "road", "car"]
gt = np.array([[0, 0, 0, 0, 1, 1],
               [0, 0, 0, 1, 1, 1],
               [2, 2, 2, 2, 1, 255],
               [2, 2, 2, 2, 2, 2]])
pred = np.array([[0, 0, 0, 0, 0, 1],
                 [0, 0, 1, 1, 1, 1],
                 [2, 2, 2, 2, 2, 2],
                 [2, 2, 2, 2, 2, 2]])
valid = gt != 255
print(f"{valid.sum()} labelled pixels, {(pred == gt)[valid].sum()} predicted correctly")

# %% [markdown]
# IoU per class, counting pixels of the two regions directly. For class $c$, $TP_c$ counts the labelled pixels
# of class $c$ predicted as $c$, $FP_c$ those predicted as $c$ whose true class is another, $FN_c$ those of
# class $c$ predicted as another; the intersection is $TP_c$ and the union $TP_c + FP_c + FN_c$:
#
# $$\mathrm{IoU}_c = \frac{|G_c \cap P_c|}{|G_c \cup P_c|} = \frac{TP_c}{TP_c + FP_c + FN_c}$$
#
# where $G_c$ and $P_c$ are the true and predicted pixels of class $c$. The mean runs over the set $C'$ of
# classes whose union is not empty (car appears in neither map, so its IoU is 0/0, undefined, and left out),
# and pixel accuracy divides the correct pixels by the $N$ labelled ones:
#
# $$\mathrm{mIoU} = \frac{1}{|C'|} \sum_{c \in C'} \mathrm{IoU}_c, \qquad
# \text{Pixel Acc.} = \frac{1}{N} \sum_c TP_c$$

# %%
iou_by_hand = []
for c, name in enumerate(names):
    inter = ((gt == c) & (pred == c) & valid).sum()
    union = (((gt == c) | (pred == c)) & valid).sum()
    iou_by_hand.append(inter / union if union else np.nan)
    print(f"{name:<5} intersection {inter:>2} / union {union:>2} = {iou_by_hand[-1]:.3f}")
miou_by_hand = np.nanmean(iou_by_hand)
pixel_acc_by_hand = (pred == gt)[valid].mean()
print(f"mean IoU = {miou_by_hand:.4f} (over the 3 classes present), pixel accuracy = {pixel_acc_by_hand:.4f}")

# %% [markdown]
# Pixel accuracy is high (most pixels are sky and road) while mean IoU punishes the errors on the small
# "tree" region: every class counts the same, whatever its size. That is why the paper's ADE20K tables quote both.
#
# Benchmarks compute both from one **confusion matrix** $M$ (`M[true, predicted]`, pixel counts) summed over all
# images. Row $c$ sums to the true pixels of class $c$ ($TP_c + FN_c$), column $c$ to the predicted ones
# ($TP_c + FP_c$), so
#
# $$TP_c = M_{cc}, \qquad \mathrm{IoU}_c = \frac{M_{cc}}{\sum_k M_{ck} + \sum_k M_{kc} - M_{cc}}, \qquad
# \text{Pixel Acc.} = \frac{\sum_c M_{cc}}{\sum_{c,k} M_{ck}}$$

# %%
K = len(names)
conf = np.zeros((K, K), dtype=np.int64)
np.add.at(conf, (gt[valid], pred[valid]), 1)  # rows: ground truth, columns: prediction
tp = np.diag(conf)
with np.errstate(invalid="ignore"):
    iou_from_matrix = tp / (conf.sum(0) + conf.sum(1) - tp)
print(conf)
print("IoU from the matrix:", np.round(iou_from_matrix, 4), " pixel acc:", tp.sum() / conf.sum())

# %% [markdown]
# The package's `ConfusionMatrix` (which the trainer and evaluator use) must agree:

# %%
cm = ConfusionMatrix(num_classes=K)
cm.update(torch.from_numpy(pred)[None], torch.from_numpy(gt)[None])  # (N, H, W) labels
scores = cm.compute()
np.testing.assert_array_equal(cm.mat.numpy(), conf)
np.testing.assert_allclose(scores.iou.numpy(), iou_by_hand, equal_nan=True)
assert abs(scores.miou - miou_by_hand) < 1e-12 and abs(scores.pixel_acc - pixel_acc_by_hand) < 1e-12
print(scores.table(names))

# %% [markdown]
# Same numbers. Two conventions are worth knowing: absent classes give `nan` and are left out of the mean
# (another option, `absent="zero"`, counts them as 0 as the authors' code does), and counts are summed over
# the whole data set **before** dividing. Averaging per-image mIoUs gives a different number:

# %%
pred2 = np.full_like(gt, 2)  # a second image where everything is predicted "road"
per_image = []
total = ConfusionMatrix(num_classes=K)
for p in (pred, pred2):
    one = ConfusionMatrix(num_classes=K)
    one.update(torch.from_numpy(p)[None], torch.from_numpy(gt)[None])
    per_image.append(one.compute().miou)
    total.merge(one)
print(f"mean of per-image mIoU: {np.mean(per_image):.4f}   data-set mIoU: {total.compute().miou:.4f}")

# %% [markdown]
# The benchmarks (and this package) use the data-set level number. Finally, the ImageNet challenge ranked
# entries by the average of the two scores:
#
# > "The final score is the mean of Mean IoU and Pixel Acc." (Table 5)
#
# $$\text{score} = \tfrac{1}{2}\left(\mathrm{mIoU} + \text{Pixel Acc.}\right)$$
#
# `paper.score` computes it; for PSPNet's best single model on ADE20K val (the paper's Table 4):

# %%
miou, acc = paper.TABLE4_ADE20K["ResNet269+DA+AL+PSP+MS"]
print(f"PSPNet-269 multi-scale: mIoU {miou}, pixel acc {acc}, score {paper.score(miou, acc):.2f} (paper, %)")
assert 0 <= scores.miou <= 1 and 0 <= scores.pixel_acc <= 1

# %% [markdown]
# Everything this chapter computed goes into one JSON record (`record.json` in `out_dir`), with the
# commit and the machine it ran on, so that a later run can be compared number by number.

# %%
elapsed = time.perf_counter() - start_time
metrics = {
    "datasets": {name: {"classes": len(cls.classes), **cls.expected_counts}
                 for name, cls in real_datasets.DATASETS.items()},
    "context_scenes_roles": {role: {str(i): context_scenes.CLASSES[i] for i in context_scenes.classes_by_role(role)}
                             for role in ("stuff", "mismatched", "confusion", "inconspicuous", "regional")},
    "example": {"labelled_pixels": int(valid.sum()), "correct_pixels": int((pred == gt)[valid].sum()),
                "iou_by_hand": [float(v) for v in iou_by_hand], "miou_by_hand": float(miou_by_hand),
                "pixel_acc_by_hand": float(pixel_acc_by_hand), "confusion_matrix": conf.tolist(),
                "package": scores.as_dict()},
    "per_image_miou_mean": float(np.mean(per_image)), "dataset_miou": total.compute().miou,
    "paper_psp269_ms": {"miou": miou, "pixel_acc": acc, "score": paper.score(miou, acc)},
    "figures": sorted(p.name for p in out_path.glob("*.png")),
}
record = book.write_record(out_path / "record.json", name="00_introduction", seconds=elapsed, device=device,
                           config=dict(num_images=num_images, image_size=image_size, seed=seed),
                           metrics=json_safe(metrics))
print(f"record: {record}")
print(f"chapter ran in {elapsed:.1f} s on {book.hardware_info(device)['cpu_count']} CPU cores ({device})")

# %% [markdown]
# ## Summary
#
# * Scene parsing labels every pixel; the paper's benchmarks are ADE20K (150 classes), VOC 2012 (21) and
#   Cityscapes (19).
# * ContextScenes is a small synthetic stand-in whose classes are built around the failure modes of §3.1;
#   chapter 01 trains a baseline on it and watches it fail. What it shows is a demonstration by construction,
#   not evidence about ADE20K.
# * Pixel accuracy = correct / labelled pixels; $\mathrm{IoU}_c = TP_c / (TP_c + FP_c + FN_c)$; mean IoU
#   averages over classes, so small classes weigh as much as large ones. Both come from one confusion matrix
#   summed over the data set; `pspnet_lite.metrics.ConfusionMatrix` matches our hand computation.

# %% [markdown]
# ## Exercises
#
# Each one changes a line or two of the cells above; the answers are worked on the 4x6 example.

# %% [markdown]
# **1.** Change one "road" pixel of `pred` to "car" (say `pred[3, 0] = 3`): which IoUs change, and why does
# car's IoU become 0, not nan? What happens to the mean IoU?
#
# <details><summary>Hint</summary>
#
# Write down $TP$, $FP$ and $FN$ for road and for car before and after the change. Which classes have a
# non-empty union afterwards?
#
# </details>
#
# <details><summary>Answer</summary>
#
# The pixel is road in the ground truth, so road loses a true positive and gains a false negative:
# $\mathrm{IoU}_\text{road}$ goes from $10/11$ to $9/11$ (the union stays 11, the intersection drops by one).
# Car now has one false positive and nothing else: $TP = 0$, union $= 1$, so $\mathrm{IoU}_\text{car} = 0/1 = 0$.
# The union is no longer empty, so car is *defined* and counts in the mean: the mean now runs over 4 classes,
# one of them at 0. One wrong pixel out of 23 lowers pixel accuracy by only $1/23$, but mIoU falls by more than a
# quarter (from $(3/4 + 4/7 + 10/11)/3$ to $(3/4 + 4/7 + 9/11 + 0)/4$). This is why a network that "invents" a
# rare class in a few pixels is punished hard by mIoU.
#
# ```python
# pred_x = pred.copy(); pred_x[3, 0] = 3
# cm_x = ConfusionMatrix(num_classes=K)
# cm_x.update(torch.from_numpy(pred_x)[None], torch.from_numpy(gt)[None])
# print(cm_x.compute().table(names))
# ```
#
# </details>

# %% [markdown]
# **2.** Compute the mean accuracy (`scores.macc`) by hand from `conf`, and say how it differs from pixel
# accuracy.
#
# <details><summary>Hint</summary>
#
# The accuracy of class $c$ is $TP_c / (TP_c + FN_c)$: the diagonal divided by the **row** sum (the true pixels
# of the class). Average over the classes that occur in the ground truth.
#
# </details>
#
# <details><summary>Answer</summary>
#
# ```python
# with np.errstate(invalid="ignore"):
#     acc_c = np.diag(conf) / conf.sum(1)  # (K,): sky 6/7, tree 4/6, road 10/10, car 0/0 = nan
# print(np.nanmean(acc_c), scores.macc)
# ```
#
# The two agree. Mean accuracy gives each class the same weight, like mIoU, but ignores false positives:
# a class that is predicted everywhere gets accuracy 1. Pixel accuracy is $\sum_c TP_c / N$, the same
# ratio pooled over all pixels, so it is dominated by the big classes (sky and road here).
#
# </details>

# %% [markdown]
# **3.** Run `cm.compute(absent="zero")`: how much does the mean IoU drop, and why? Which convention should a
# table that compares with the paper use?
#
# <details><summary>Hint</summary>
#
# With `absent="zero"` a class with an empty union gets IoU 0 and stays in the mean. How many classes does
# the mean run over now?
#
# </details>
#
# <details><summary>Answer</summary>
#
# Car is in neither map, so it now contributes a 0 and the mean runs over 4 classes instead of 3: the result
# is exactly $3/4$ of the default mIoU. Nothing about the prediction changed, only the bookkeeping. The two
# conventions agree whenever every class occurs in the ground truth or the prediction, which is the normal case
# on a whole benchmark validation set; they differ on small subsets and single images, which is why a number
# must say which one it uses. The authors' code adds a tiny epsilon to the union, which amounts to
# `absent="zero"`; for a comparison with the paper either works on a full split, and on a subset report both.
#
# </details>

# %% [markdown]
# ## Run it for real
#
# Prepare a real data set with the scripts in `data_scripts/` (for example
# `python data_scripts/prepare_ade20k.py --root /data/ade20k`), then look at it with
# `pspnet_lite.data.build_dataset("ade20k", root="/data/ade20k", split="val")`.
# Every notebook in book/ is paired with a percent-format .py script (edit either; `jupytext --sync` keeps both).

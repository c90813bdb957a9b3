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
# # 02 · The pyramid pooling module (§3.2, Fig. 3)
#
# Section 3.2 of the paper proposes a *hierarchical global prior*: pool the last feature map of the
# network into a few grids of bins (1x1, 2x2, 3x3, 6x6), shrink each pooled map to 1/N of the channels
# with a 1x1 convolution, upsample it back and concatenate everything with the feature map itself
# (Fig. 3(c)). In this chapter you will
#
# 1. build that module step by step, on the feature map a trained network computes for a real image, and
#    check that it equals the package's `pspnet_lite.ppm.PyramidPooling` to the last bit;
# 2. see which pixels each bin "looks at" and what it sees of the labels (the context prior);
# 3. compare average and max pooling (Table 1's AVE vs MAX);
# 4. do the channel arithmetic behind the 1/N dimension reduction ("DR" in Table 1);
# 5. play with the bin-size widget, followed by a static figure of what it shows;
# 6. follow one position of the trained network's feature map through every level: the bin that holds it,
#    the bilinear weights that bring each level's pooled value back to it, and what the prediction does
#    when levels are switched off.
#
# Every section looks at one trained network: the B1236 row of chapter 05's Table 1 (bins 1, 2, 3, 6, average
# pooling, 1/N reduction), trained on ContextScenes before section 1, once: it is cached in `runs_dir` and
# loaded from there on later runs. Sections 1-5 pool its backbone's features of ContextScenes validation
# images, images it never trained on; section 6 runs the whole network.
#
# The run times of the last default run (first run, which trains; later runs, which load the cached
# network) are in the README's table.

# %%
import inspect
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pspnet_lite import book
from pspnet_lite.backbone import DilatedResNet
from pspnet_lite.book import feature_widget, paper, pixel_context, viz, widgets
from pspnet_lite.data import build_dataset
from pspnet_lite.data.context_scenes import ContextScenes
from pspnet_lite.data.transforms import EvalTransform
from pspnet_lite.model import PSPNet
from pspnet_lite.ppm import PyramidPooling
from pspnet_lite.train import config_hash

# %% tags=["parameters"]
dataset = "context_scenes"  # "context_scenes" (synthetic, built in) or "ade20k" / "voc" / "cityscapes"
data_root = None  # folder of the real data set (None for context_scenes)
backbone = "lite"  # "lite" (the trained B1236's, 512 channels) or "resnet50" (the paper's 2048; untrained here)
crop_size = 128  # long side of the image fed to the backbone (the paper crops 473)
bins = "1,2,3,6"  # pyramid levels (the paper's 1,2,3,6)
image_index = 0  # which validation image to look at
num_images = 6  # images offered by the widget
device = "auto"  # "auto", "cpu" or "cuda"
seed = 0  # seeds the data (and the random initialisation of a backbone other than the trained B1236's)
iters = 200  # training iterations of the B1236 network (scenes-ablation at batch 8, lr 0.04)
batch_size = None  # its batch (None: the preset's, 8)
image_size = None  # its ContextScenes image side (None: the preset's, 128)
num_train_images = None  # its training images (None: the preset's, 1000)
num_val_images = None  # its validation images (None: the preset's, 200)
train = True  # train the B1236 network when runs_dir lacks it (False: stop, naming the command that trains it)
runs_dir = "runs/02_pyramid_pooling/runs"  # run cache of the B1236 network (relative to the repository root)
out_dir = "runs/02_pyramid_pooling"  # figures and the JSON record are saved here (relative to the repository root)

# %%
start_time = time.perf_counter()
device = book.setup(device, seed)
bins = tuple(book.parse_list(bins))
out_path = book.resolve_path(out_dir)
out_path.mkdir(parents=True, exist_ok=True)
viz.use_book_style()
print(f"dataset={dataset} backbone={backbone} crop_size={crop_size} bins={bins} out_dir={out_path}")
print("estimated run time: under a minute on a laptop CPU once the B1236 network is trained; training it "
      "(the first run, unless runs_dir holds it) takes a few minutes")

# %% [markdown]
# ## The trained network whose features we dissect
#
# The pyramid pooling module is a fixed recipe, but what its levels carry depends on the feature map it
# receives. So we first train (once; it is cached in `runs_dir`) the B1236 row of chapter 05's Table 1 for
# `iters` iterations, and take the feature maps of every section from its backbone.

# %%
b1236 = pixel_context.b1236_config(device, iters=iters, batch_size=batch_size, image_size=image_size,
                                   num_train_images=num_train_images, num_val_images=num_val_images)
print(f"B1236: {b1236.iters} iterations of batch {b1236.batch_size} on {b1236.num_train_images} images of "
      f"{b1236.image_size} px; cache {book.resolve_path(runs_dir)}")
with book.Timer() as train_timer:
    model, run = pixel_context.load_b1236(runs_dir, train=train, config=b1236, device=device, progress=True)
checkpoint = book.resolve_path(runs_dir) / config_hash(b1236) / "last.pt"
print(f"{'loaded from the cache' if run.cached else 'trained'} in {train_timer.seconds:.0f} s; "
      f"val mIoU {100 * run.miou:.1f} (ss, {b1236.num_val_images} images); checkpoint {checkpoint}")

# %% [markdown]
# ## A real image and its feature map
#
# We take one validation image, with its labels, and run it through the trained network's backbone, the
# dilated ResNet of §3.3. Its stage-4 output is the feature map of Fig. 3(b): 1/8 of the image's size.

# %%
extra = {"num_images": max(40, num_images, image_index + 1), "image_size": crop_size} \
    if dataset == "context_scenes" else {}  # 40 images hold every scene kind, for the widget
data = build_dataset(dataset, root=data_root, split="val",
                     transform=EvalTransform(base_size=crop_size, resize_mask=True), **extra)
image, mask = data[image_index]  # (3, H, W) normalised float, (H, W) int64
palette, class_names = np.asarray(data.palette), list(data.classes)
x = image[None].to(device)  # (1, 3, H, W)
print(f"image {tuple(image.shape)}, mask {tuple(mask.shape)}, {len(class_names)} classes; "
      f"present: {[class_names[c] for c in mask.unique().tolist() if c != 255]}")

# %%
if backbone == model.config.backbone:  # the trained network's own backbone
    net, features_from = model.backbone.eval(), f"the trained B1236 checkpoint {checkpoint}"
else:  # no B1236 of this backbone is trained here: its features are those of a random initialisation
    torch.manual_seed(seed)
    net, features_from = DilatedResNet(backbone).to(device).eval(), f"a randomly initialised {backbone} (seed {seed})"
with torch.no_grad():
    c3, feature = net(x)  # (1, C/2, H/8, W/8), (1, C, H/8, W/8)
C, h, w = feature.shape[1:]
print(f"feature map (Fig. 3(b)): {tuple(feature.shape)} = 1/{image.shape[-1] // w} of the image, "
      f"from {features_from}")

# %%
feature_rgb = pixel_context.pca_colours(feature.cpu())[0]  # (h, w, 3): the three principal components
fig, axes = plt.subplots(1, 4, figsize=(11, 3))
axes[0].imshow(viz.denormalize(image))
axes[1].imshow(viz.colorize(mask.numpy(), palette))
axes[2].imshow(feature[0].norm(dim=0).cpu(), cmap="viridis")
axes[3].imshow(feature_rgb, interpolation="nearest")
for ax, title in zip(axes, ["image (a)", "labels", f"features (b): L2 norm of {C} channels",
                            "features (b): 3 principal comp. as RGB"]):
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.suptitle("The feature map the pyramid pools is 1/8 of the image")
fig.savefig(out_path / "feature_map.png", dpi=100)
plt.show()

# %% [markdown]
# Each of the `h x w` cells of the feature map is one vector of `C` numbers describing a patch of the
# image. The pyramid pooling module summarises those vectors over bins. The trained network has learnt
# vectors that follow the scene: in the last panel (the three principal components of the 512-dimensional
# vectors as RGB) the water strips, the road strips, the grass and the small objects each get their own
# colour, and the norm panel is brightest on the objects. The buoy and the traffic cone come out in nearly
# the same colour: from their own patch alone the features hardly tell them apart, which is the case for
# context that §3.1 makes.

# %% [markdown]
# ## Building the module step by step
#
# > "The pyramid pooling module fuses features under four different pyramid scales." (§3.2)
#
# > "Our pyramid pooling module is a four-level one with bin sizes of $1 \times 1$ , $2 \times 2$ ,
# > $3 \times 3$ and $6 \times 6$ respectively." (§3.2)
#
# Those are the default `bins`. One level of the pyramid, for bin size `b`, is four operations: adaptive
# average pooling to a `b x b` grid, a 1x1 convolution from `C` to `C/N` channels (N = number of levels),
# batch norm + ReLU, and bilinear upsampling back to `h x w`. Concatenated with the feature map itself, the
# $N$ levels give
#
# $$C_{\mathrm{out}} = C + N \cdot \left\lfloor \frac{C}{N} \right\rfloor$$
#
# channels: $2048 + 4 \cdot 512 = 4096$ on the paper's ResNet stage 4. The cell prints the same count for the
# feature map at hand.

# %%
N = len(bins)
level_shapes = {}
for b in bins:
    pooled = F.adaptive_avg_pool2d(feature, b)  # (1, C, b, b): one C-vector per bin
    level_shapes[b] = list(pooled.shape)
    print(f"bin {b}: pooled {tuple(pooled.shape)} -> 1x1 conv -> {(1, C // N, b, b)} "
          f"-> upsample -> {(1, C // N, h, w)}")
print(f"concatenated: {C} + {N} x {C // N} = {C + N * (C // N)} channels")

# %% [markdown]
# Notice that every level ends at the same `h x w` size, so the levels can be stacked along the channel
# axis with the feature map. Now the whole module as ten lines of our own. The loop body follows §3.2
# sentence by sentence. First `pool(x, b)`:
#
# > "The coarsest level highlighted in red is global pooling to generate a single bin output. The following
# > pyramid level separates the feature map into different sub-regions and forms pooled representation for
# > different locations." (§3.2)
#
# Then `conv` (`C` to `C/N` channels; BN + ReLU follow it, as in the authors' code):
#
# > "To maintain the weight of global feature, we use $1 \times 1$ convolution layer after each pyramid level
# > to reduce the dimension of context representation to $1/N$ of the original one if the level size of
# > pyramid is $N$ ." (§3.2)
#
# Then `F.interpolate(..., mode="bilinear")` (with `align_corners=True`, as in the authors' code):
#
# > "Then we directly upsample the low-dimension feature maps to get the same size feature as the original
# > feature map via bilinear interpolation." (§3.2)
#
# And finally `torch.cat(levels, 1)`, where `levels` starts with the feature map itself:
#
# > "Finally, different levels of features are concatenated as the final pyramid pooling global feature."
# > (§3.2)
#
# > "Then we concatenate the prior with the original feature map in the final part of (c)." (§3.3)

# %%
def my_pyramid_pooling(x, bins, convs, bns, pool=F.adaptive_avg_pool2d):
    """Fig. 3(c) from scratch: pool, 1x1 conv to C/N, BN + ReLU, upsample, concatenate."""
    h, w = x.shape[-2:]
    levels = [x]                                                            # (1, C, h, w)
    for b, conv, bn in zip(bins, convs, bns):
        y = pool(x, b)                                                      # (1, C, b, b)
        y = F.relu(bn(conv(y)))                                             # (1, C/N, b, b)
        levels.append(F.interpolate(y, (h, w), mode="bilinear", align_corners=True))  # (1, C/N, h, w)
    return torch.cat(levels, 1)                                             # (1, 2C, h, w)


# %% [markdown]
# To check it against the package, give our layers the trained module's weights (its 1x1 convolutions and
# batch norms with their running statistics) and compare outputs with the trained `PyramidPooling` in eval
# mode. With other `bins` or another `backbone` there is no trained module of that shape, and our layers get
# random weights and batch-norm statistics, copied into a fresh `PyramidPooling`.

# %%
torch.manual_seed(seed)
convs = [nn.Conv2d(C, C // N, 1, bias=False).to(device) for _ in bins]
bns = [nn.BatchNorm2d(C // N).to(device).eval() for _ in bins]
trained_module = net is model.backbone and tuple(model.ppm.bins) == bins
if trained_module:
    ppm = model.ppm.eval()
    for level, conv, bn in zip(ppm.features, convs, bns):
        conv.load_state_dict(level[1].state_dict())
        bn.load_state_dict(level[2].state_dict())
else:
    for bn in bns:
        bn.running_mean.uniform_(-0.1, 0.1), bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5), bn.bias.data.uniform_(-0.2, 0.2)
    ppm = PyramidPooling(C, bins).to(device).eval()
    for level, conv, bn in zip(ppm.features, convs, bns):
        level[1].load_state_dict(conv.state_dict())
        level[2].load_state_dict(bn.state_dict())
with torch.no_grad():
    mine, theirs = my_pyramid_pooling(feature, bins, convs, bns), ppm(feature)
torch.testing.assert_close(mine, theirs)
max_diff = {"avg": (mine - theirs).abs().max().item()}
print(f"ours == PyramidPooling ({'the trained module' if trained_module else 'random weights'}): "
      f"{tuple(mine.shape)}, max |diff| = {(mine - theirs).abs().max().item():.1e}")

# %% [markdown]
# The two agree: our ten lines with the trained weights compute the trained module's output. Here is the
# package's `forward`, which reads like our function:

# %%
print(inspect.getsource(PyramidPooling.forward))

# %% [markdown]
# The same check holds for max pooling (the `MAX` rows of Table 1), with `F.adaptive_max_pool2d` (the
# weights, learnt for average pooling, only serve the check here):

# %%
ppm_max = PyramidPooling(C, bins, pooling="max").to(device).eval()
ppm_max.load_state_dict(ppm.state_dict())
with torch.no_grad():
    mine_max, theirs_max = my_pyramid_pooling(feature, bins, convs, bns, F.adaptive_max_pool2d), ppm_max(feature)
torch.testing.assert_close(mine_max, theirs_max)
max_diff["max"] = (mine_max - theirs_max).abs().max().item()
print("ours (max) == PyramidPooling(pooling='max')")

# %% [markdown]
# ## What each bin size sees
#
# For a map of height $H$ and $b$ bins, `nn.AdaptiveAvgPool2d(b)` averages bin $i$ ($i = 0, \dots, b-1$) over
# the rows
#
# $$\left\lfloor \frac{iH}{b} \right\rfloor \le y \lt \left\lceil \frac{(i+1)H}{b} \right\rceil$$
#
# and the columns likewise with the width $W$. When $b$ does not divide $H$, neighbouring windows share a row.
# Our own adaptive pooling writes the window out (the ceiling as `-(-a // b)`); we check it against PyTorch
# for every level, and the module built on it against `PyramidPooling`:

# %%
def my_adaptive_avg_pool2d(x, b):
    """Bin (i, j) is the mean over rows floor(iH/b) <= y < ceil((i+1)H/b) and the same columns for W."""
    H, W = x.shape[-2:]
    rows = [(i * H // b, -(-(i + 1) * H // b)) for i in range(b)]
    cols = [(j * W // b, -(-(j + 1) * W // b)) for j in range(b)]
    return torch.stack([torch.stack([x[..., r0:r1, c0:c1].mean((-2, -1)) for c0, c1 in cols], -1)
                        for r0, r1 in rows], -2)  # (N, C, b, b)


# %%
for b in bins:
    torch.testing.assert_close(my_adaptive_avg_pool2d(feature, b), F.adaptive_avg_pool2d(feature, b))
with torch.no_grad():
    torch.testing.assert_close(my_pyramid_pooling(feature, bins, convs, bns, my_adaptive_avg_pool2d), theirs)
b = max(bins)
print(f"the {b} windows of the {b}x{b} level on the feature map's H = {h} rows:")
for i in range(b):
    print(f"  bin {i}: floor({i}*{h}/{b}) = {i * h // b} <= y < ceil({i + 1}*{h}/{b}) = {-(-(i + 1) * h // b)}")

# %% [markdown]
# The windows printed are exactly PyTorch's (the asserts pass), and our module built on our own pooling
# equals `PyramidPooling`. Mapped back to the image (x8), this is how much of the scene one bin summarises:
#
# > "Using our 4-level pyramid, the pooling kernels cover the whole, half of, and small portions of the
# > image." (§3.3)

# %%
H, W = image.shape[-2:]
print(f"{'bins':>5} {'cells/bin (feature)':>20} {'pixels/bin (image)':>19} {'share of image':>15} {'overlap':>8}")
bin_table = {}
for b in bins:
    edges = widgets.adaptive_bin_edges(h, b)
    cells = [e - s for s, e in edges]
    overlap = sum(edges[i][1] - edges[i + 1][0] for i in range(b - 1))
    bin_table[b] = {"cells_min": min(cells), "cells_max": max(cells), "share": 1 / b ** 2, "overlap": overlap}
    print(f"{b:>5} {f'{min(cells)}..{max(cells)} rows':>20} {f'~{H // b}x{W // b}':>19} "
          f"{1 / b ** 2:>15.1%} {overlap:>8}")

# %% [markdown]
# The 1x1 level sees the whole image (the "global pooling" of ParseNet); a 6x6 bin sees 1/36 of it (the
# 2.8% of the table), still far more than a single feature cell. Below, one channel of the trained feature
# map, the most varied one, and what each level makes of it after upsampling (before the 1x1 convolution):

# %%
channel = int(feature[0].flatten(1).var(1).argmax())  # the most varied channel
fig, axes = plt.subplots(1, N + 1, figsize=(2.2 * (N + 1), 2.4))
vmin, vmax = feature[0, channel].min().item(), feature[0, channel].max().item()  # one colour scale for all
axes[0].imshow(feature[0, channel].cpu(), cmap="viridis", vmin=vmin, vmax=vmax)
axes[0].set_title(f"channel {channel}", fontsize=9)
for ax, b in zip(axes[1:], bins):
    up = F.interpolate(F.adaptive_avg_pool2d(feature[:, channel:channel + 1], b), (h, w),
                       mode="bilinear", align_corners=True)  # (1, 1, h, w)
    ax.imshow(up[0, 0].cpu(), cmap="viridis", vmin=vmin, vmax=vmax)
    ax.set_title(f"{b}x{b} pooled, upsampled", fontsize=9)
for ax in axes:
    ax.axis("off")
fig.suptitle("Coarser levels keep less layout and more context")
plt.show()

# %% [markdown]
# In the default run this channel is brightest on the two small objects (compare the image in section 1).
# The 6x6 level keeps a blob at each of them and the 3x3 level a fainter one, while the 2x2 and 1x1 levels
# spread them into a nearly flat value over the whole grid: what is left is context, "something small is in
# this scene", handed to every position.
#
# The labels tell the same story: average pooling of the one-hot label map gives the class
# distribution of each bin, the *context prior* a level can encode. In words, for the 2x2 level:

# %%
hist = widgets.bin_class_histograms(mask, 2, len(class_names))
prior_2x2 = widgets.dominant_classes(hist, class_names)
for k, top in enumerate(prior_2x2):
    print(f"bin ({k // 2}, {k % 2}): " + ", ".join(f"{name} {share:.0%}" for name, share in top))

# %% [markdown]
# A bin knows which classes share its part of the scene: the kind of cue (the water around a boat, the bed under
# a pillow) that §3.1 says a local classifier lacks. Whether a network uses it is a question for training, not
# for the pooling: chapter 05 finds, on fresh seeds, that the pyramid fixes the boat/car and buoy/cone classes but
# does not measurably help the pillow and rug. In a ContextScenes "regional" scene (one half edged with water,
# the other with road; the default image) the 1x1 bin sees both, while the 2x2 bins separate them: only the finer
# levels tell a buoy in the water half from a traffic cone in the road half. The trained features follow
# the same split: in row 3 of the figures after the bin-size widget, the 2x2 level colours the water half
# and the road half differently, the 6x6 level keeps the water strips, the road strips and both objects
# apart, and the 1x1 level is one colour over the whole grid.

# %% [markdown]
# ## Average vs max pooling
#
# Table 1 of the paper compares both and picks average pooling:

# %%
for row in ("B1+MAX", "B1+AVE", "B1236+MAX", "B1236+AVE", "B1236+MAX+DR", "B1236+AVE+DR"):
    miou, acc = paper.TABLE1_ABLATION[row]
    print(f"{row:<14} mIoU {miou:5.2f}  pixel acc {acc:5.2f}   (paper, ResNet50, ADE20K val)")

# %% [markdown]
# Why might average be better? In max pooling each channel's value comes from a single cell of the
# feature map. We count the cells behind the global (1x1) pooled vector, and measure how much a small
# patch pasted into the image (12x12 pixels, a bit of a foreign object) moves it.

# %%
used_by_max = feature[0].flatten(1).argmax(1).unique().numel()  # cells holding at least one channel's max
patched = x.clone()
patched[..., H // 2 - 6:H // 2 + 6, W // 2 - 6:W // 2 + 6] = 2.5  # a bright square (normalised units)
with torch.no_grad():
    feature_patched = net(patched)[1]  # (1, C, h, w)
patch_change = {}
for name, pool in (("avg", F.adaptive_avg_pool2d), ("max", F.adaptive_max_pool2d)):
    v, v2 = pool(feature, 1).flatten(), pool(feature_patched, 1).flatten()  # (C,)
    patch_change[name] = ((v2 - v).norm() / v.norm()).item()
    print(f"{name}: change from the patch = {patch_change[name]:.1%} of the global vector")
print(f"each channel of the global vector depends on: avg {h * w} cells, max 1 cell "
      f"({used_by_max} different cells over all {C} channels)")

# %% [markdown]
# Average pooling listens to every cell equally; max pooling gives each channel to a single cell, so an
# outlier in one cell can swing it. On the trained features of the default run the patch moves the
# max-pooled global vector more than the average-pooled one (the two shares printed), and the last line
# counts the cells that the maxima of all the channels come from: the rest of the grid has no say in the
# max-pooled vector. For labels the difference is sharper still: average pooling of the one-hot map gives
# class *shares*, max pooling only the set of classes *present* (try the widget's avg/max toggle below).

# %% [markdown]
# ## The 1/N dimension reduction keeps the global prior's weight
#
# §3.2 gives the 1x1 convolution (quoted above, beside `my_pyramid_pooling`) a reason: "to maintain the
# weight of global feature". Our reading, in channels, with the formula for $C_{\mathrm{out}}$ above: with
# reduction the concatenation is always half local feature (C) and half pyramid
# (N x C/N = C), whatever N; without it the pyramid takes N/(N+1) of the channels and outweighs the
# feature map in the next convolution.

# %%
C_paper = 2048
print(f"{'levels N':>8} {'channels with DR':>17} {'pyramid share':>14} {'channels no DR':>15} {'pyramid share':>14}")
dr_table = []
for n in range(1, 7):
    with_dr, no_dr = C_paper + n * (C_paper // n), C_paper + n * C_paper
    dr_table.append({"levels": n, "channels_dr": with_dr, "pyramid_share_dr": n * (C_paper // n) / with_dr,
                     "channels_no_dr": no_dr, "pyramid_share_no_dr": n * C_paper / no_dr})
    print(f"{n:>8} {with_dr:>17} {n * (C_paper // n) / with_dr:>14.0%} {no_dr:>15} {n * C_paper / no_dr:>14.0%}")

# %% [markdown]
# The next layer of PSPNet is a 3x3 convolution to 512 channels, so the channel count is also a cost.
# We count parameters of the paper's PSPNet-50 head (PPM + classifier) without allocating memory:

# %%
def head_params(**kw):
    with torch.device("meta"):
        model = PSPNet(num_classes=150, backbone="resnet50", aux=False, **kw)
    return sum(p.numel() for m in model.head_modules() for p in m.parameters()), model.ppm.out_channels


counts = {reduction: head_params(reduction=reduction) for reduction in (True, False)}
for reduction, (params, channels) in counts.items():
    print(f"reduction={reduction!s:<5}: PPM output {channels} channels, "
          f"PPM + classifier {params / 1e6:.1f} M parameters")
print(f"the reduction makes the head {counts[False][0] / counts[True][0]:.1f}x smaller")

# %% [markdown]
# The 3x3 classifier reads 4096 instead of 10240 channels, so the reduction also makes the head about
# half the size. The paper's Table 1 shows it also helps accuracy (B1236+AVE+DR 41.68 vs B1236+AVE 41.07 mIoU).

# %% [markdown]
# ## The bin-size widget
#
# Pick an image (one of each ContextScenes scene kind), choose bin sizes (the paper's 1, 2, 3, 6 or others;
# more than six wrap onto a second row) and avg/max pooling. Row 1 draws each level's bins over the image,
# row 2 the pooled pixel colours upsampled back as PSPNet does, so you can see the bins at work. Row 3 is
# what the module pools in the network: the trained backbone's features of the same image on the 1/8 grid,
# pooled and upsampled the same way, in the colours of the feature map's three principal components (as
# in section 1's last panel: equal colours, equal feature vectors). Row 4 is an *oracle*: the ground-truth
# class share of each bin, which the network never sees; it shows what a level could encode. Without a
# kernel (an executed notebook, the book's site) the widget's output is a picture of its state, and the
# static figures after it show the same panels.

# %%
if dataset == "context_scenes":
    picks = widgets.scene_kind_indices(data.scene_types)[:num_images]
    names = widgets.kind_names([data.scene_types[i] for i in picks])
else:
    picks = list(range(min(num_images, len(data))))
    names = [f"{dataset} val #{i}" for i in picks]
samples = []
for name, i in zip(names, picks):
    sample_image, sample_mask = data[i]
    with torch.no_grad():
        sample_features = net(sample_image[None].to(device))[1][0].cpu()  # (C, h, w): what the module pools
    samples.append({"name": name, "image": sample_image, "mask": sample_mask, "features": sample_features,
                    "palette": palette, "class_names": class_names})
explorer = widgets.PoolingExplorer(samples, bins=bins)
explorer.image.value = picks.index(image_index) if image_index in picks else 0
explorer

# %%
fig = widgets.draw_pyramid(image, mask, bins, "avg", palette=palette, class_names=class_names, features=feature[0])
fig.suptitle("Each level sees a coarser summary: the 1x1 bin mixes every class, 6x6 bins are nearly pure")
fig.savefig(out_path / "pyramid_avg.png", dpi=100)
plt.show()

# %%
fig = widgets.draw_pyramid(image, mask, bins, "max", palette=palette, class_names=class_names, features=feature[0])
fig.suptitle("Max pooling keeps only which classes are present, not how much of each")
fig.savefig(out_path / "pyramid_max.png", dpi=100)
plt.show()

# %% [markdown]
# Notice how the global bin's distribution is the whole scene's, while 6x6 bins are dominated by one or two
# classes: the pyramid gives each position both the scene and its neighbourhood. Row 3 shows the trained
# features doing the same. With max pooling, the coarse levels' pooled vectors fall outside the colour
# range of the map's own vectors (pale, washed-out panels; the 1x1 level white): each channel takes its
# largest value from anywhere in the bin, and the mix of maxima is no vector the map itself holds.

# %% [markdown]
# ## One position of a trained network, level by level
#
# The bin-size panels above pool pixels, labels and the backbone's features. The whole network does more
# with a pooled feature: a 1x1 convolution, BN + ReLU, upsampling and a classifier, all trained. We now run
# the B1236 network of section 1 end to end (it is trained already: this section reuses it).

# %%
print(f"B1236 of section 1: {'loaded from the cache' if run.cached else 'trained'}, {b1236.iters} iterations, "
      f"val mIoU {100 * run.miou:.1f}; its levels {list(model.ppm.bins)}, {model.config.pooling} pooling")

# %% [markdown]
# Move the sliders to a cell of the feature grid and switch levels off. For each level the explorer shows
# the bin holding the cell (yellow; two where adaptive windows overlap), the bins it draws context from with
# the bilinear weights of the upsampling, the level's pooled stage-4 features brought back to the grid (the
# colours are the features' three principal components), and the oracle row of true class shares. The
# bottom row compares the prediction with every level on and with the checked levels only; unchecked levels
# output zeros. The default cell holds the image's smallest object.

# %%
scenes = feature_widget.scene_samples(b1236.image_size)
pixel_explorer = feature_widget.FeatureContextExplorer(model, scenes, ContextScenes.classes, ContextScenes.palette)
pixel_explorer

# %% [markdown]
# The same geometry in numbers, for the default cell of the first scene: where the windows overlap a cell
# sits in two bins, and with `align_corners=True` it takes its context from the bins whose *centres*
# surround it, which need not be the bin that holds it.

# %%
grid = pixel_explorer.analysis(0)["grid"]
for b, info in pixel_explorer.context.items():
    held = " and ".join(f"bin {i},{j}" for i, j in info["holding"])
    sources = ", ".join(f"{i},{j}: {weight:.2f}" for i, j, weight in info["sources"])
    print(f"{b}x{b} on the {grid[0]}x{grid[1]} grid: cell {pixel_explorer.cell[0]},{pixel_explorer.cell[1]} "
          f"in {held}; context from {sources}")

# %% [markdown]
# Now switch levels off for every scene kind and count which classes flip: keep only the global 1x1
# level, or drop it and keep 2, 3 and 6.

# %%
flip_table = {}
for scene in scenes:
    analysis = feature_widget.analyse(model, scene)
    for active in ((1,), (2, 3, 6)):
        f = feature_widget.flips(model, scene, active, analysis)
        top = ", ".join(f"{ContextScenes.classes[a]} -> {ContextScenes.classes[b]} {n}" for a, b, n in f["pairs"][:3])
        flip_table[f"{scene['kind']}|{','.join(map(str, active))}"] = f
        print(f"{scene['name']:<20} levels {', '.join(map(str, active)):<8} {f['changed']:6.1%} of pixels "
              f"change; most: {top or 'none'}")

# %% [markdown]
# With only the 1x1 level, a position knows the whole scene but not which half it is in, so in the
# regional scene (water on one side, road on the other) the classes decided by the half, buoy and traffic
# cone, are among those that flip in the default run (the cell above names each scene's most frequent flips);
# the finer levels carry that sub-region prior (§3.2) (chapter 00 says what ContextScenes results can and cannot show).
# The static figure below is the explorer's view of the regional scene with only the
# 1x1 level on.

# %%
regional = next(i for i, s in enumerate(scenes) if s["kind"] == "regional")
pixel_explorer.image.value = regional
for b in (2, 3, 6):
    pixel_explorer.levels[b].value = False
fig = pixel_explorer.figure
fig.savefig(out_path / "pixel_context.png", dpi=100)
fig

# %%
assert mine.shape == (1, C + N * (C // N), h, w)
assert all(abs(p.sum() - 1) < 1e-5 for b in bins for p in
           widgets.context_prior(mask, b, len(class_names)).reshape(-1, len(class_names)) if p.sum() > 0)
elapsed = time.perf_counter() - start_time
metrics = {
    "features": {"trained": net is model.backbone, "source": features_from,
                 "checkpoint": str(checkpoint) if net is model.backbone else None, "hash": config_hash(b1236),
                 "mean_norm": feature[0].norm(dim=0).mean().item(), "trained_module": trained_module},
    "image_shape": list(image.shape), "feature_shape": list(feature.shape), "stride": image.shape[-1] // w,
    "level_shapes": {str(b): v for b, v in level_shapes.items()}, "level_channels": C // N,
    "concat_channels": C + N * (C // N), "ppm_output_shape": list(theirs.shape), "max_abs_diff": max_diff,
    "bins_table": {str(b): v for b, v in bin_table.items()}, "prior_2x2": prior_2x2,
    "patch_change": patch_change, "max_pool_cells": used_by_max,
    "paper_table1": {row: paper.TABLE1_ABLATION[row] for row in
                     ("B1+MAX", "B1+AVE", "B1236+MAX", "B1236+AVE", "B1236+MAX+DR", "B1236+AVE+DR")},
    "dimension_reduction": dr_table,
    "head": {("reduction" if r else "no_reduction"): {"ppm_channels": ch, "head_params": n}
             for r, (n, ch) in counts.items()},
    "explorer_levels": list(explorer.levels), "figures": sorted(p.name for p in out_path.glob("*.png")),
    "b1236": {"miou": run.miou, "cached": run.cached, "iters": b1236.iters, "seconds": train_timer.seconds,
              "hash": config_hash(b1236)},
    "scenes": [s["name"] for s in scenes], "feature_grid": list(grid),
    "pixel_context": {str(b): {"holding": info["holding"], "sources": info["sources"]}
                      for b, info in pixel_context.pixel_context(grid, model.ppm.bins,
                                                                 pixel_explorer.cell).items()},
    "flips": flip_table, "pixel_explorer": {"active": list(pixel_explorer.active), "changed": pixel_explorer.changed},
}
record = book.write_record(out_path / "record.json", name="02_pyramid_pooling", seconds=elapsed, device=device,
                           config=dict(dataset=dataset, backbone=backbone, crop_size=crop_size, bins=list(bins),
                                       image_index=image_index, num_images=num_images, seed=seed),
                           metrics=metrics)
print(f"record: {record}")
print(f"chapter ran in {elapsed:.1f} s on {book.hardware_info(device)['cpu_count']} CPU cores ({device})")

# %% [markdown]
# ## Summary
#
# * The pyramid pooling module is pool -> 1x1 conv to C/N -> BN + ReLU -> upsample, for each of N bin
#   sizes, concatenated with the feature map: our ten lines equal `PyramidPooling` exactly.
# * A `b x b` level gives each position a summary of about `1/b^2` of the scene; with bins 1, 2, 3, 6 a
#   position sees the whole scene, its quadrant (2 x 2), its ninth (3 x 3) and its neighbourhood (6 x 6).
# * On the trained B1236's features the 1x1 level gives every position one vector for the whole scene,
#   while the 2x2 to 6x6 levels keep where the water, the road and the small objects are.
# * Average pooling summarises class *shares*, max pooling only *presence*, and max can be swung by a
#   single cell; the paper measures average pooling better (Table 1).
# * With the 1/N reduction the context is always half of the 2C channels, and the head is about half the
#   size it has without it.

# %% [markdown]
# ## Exercises
#
# Each has a hint and a worked answer; open them after trying.

# %% [markdown]
# **1.** Run with `-p bins 1,2,4,8`: which windows overlap now, and how many channels does each level get?
#
# <details><summary>Hint</summary>
#
# Apply the window formula of "What each bin size sees" to the feature map's height (printed by the feature
# map cell: the crop divided by 8), and the formula for $C_{\mathrm{out}}$ to the lite backbone's 512 channels.
#
# </details>
#
# <details><summary>Answer</summary>
#
# At the default crop of 128 the feature map is $16 \times 16$, and 1, 2, 4 and 8 all divide 16: every window
# is exactly $16/b$ rows, so the `overlap` column of the bin table reads 0 for every level. With the paper's
# 1, 2, 3, 6, the 3x3 and 6x6 levels overlap because 3 and 6 do not divide 16 (for $b = 6$, bin 1 covers
# rows $\lfloor 16/6 \rfloor = 2$ to $\lceil 32/6 \rceil = 6$, bin 2 starts at $\lfloor 32/6 \rfloor = 5$).
# The channel count does not change: still four levels, so each gets $\lfloor 512/4 \rfloor = 128$ channels
# and the module outputs $512 + 4 \cdot 128 = 1024$. With `-p crop_size 64` the map is $8 \times 8$ and the
# 8x8 level has one cell per bin: it pools nothing and only re-projects the feature map through its 1x1
# convolution.
#
# </details>

# %% [markdown]
# **2.** Build the module without the dimension reduction: `PyramidPooling(C, bins, reduction=False)` in the
# check cell. What must change in `my_pyramid_pooling` (and in the cell that copies the weights) for the
# check to pass?
#
# <details><summary>Hint</summary>
#
# Print `PyramidPooling(C, bins, reduction=False).features[0]`: what is left of each level?
#
# </details>
#
# <details><summary>Answer</summary>
#
# Without reduction each level of the package is only the pooling layer: no 1x1 convolution, no BN, no ReLU,
# no parameters (the module docstring says so, and it matches Table 1's rows without "DR"). So the loop body
# becomes `levels.append(F.interpolate(pool(x, b), (h, w), mode="bilinear", align_corners=True))`, the weight
# copying cell goes away, and the output has $C + N \cdot C$ channels instead of $2C$: $512 + 4 \cdot 512 =
# 2560$ for the lite backbone, the 10240 of the head-size cell for the paper's 2048. The pyramid is then
# $N/(N+1)$ of the channels, which is what the 1/N reduction avoids.
#
# ```python
# def my_pyramid_pooling_no_dr(x, bins, pool=F.adaptive_avg_pool2d):
#     h, w = x.shape[-2:]
#     return torch.cat([x] + [F.interpolate(pool(x, b), (h, w), mode="bilinear", align_corners=True)
#                             for b in bins], 1)
# ```
#
# </details>

# %% [markdown]
# **3.** In the bin-size widget, pick the max toggle on an image with a small object (a pillow, a buoy): how
# many bins of each level "see" it, with average and with max pooling?
#
# <details><summary>Hint</summary>
#
# Row 4 (the oracle) shows each bin's class shares. A bin sees an object under max pooling if any pixel of its
# window holds it; windows of the 3x3 and 6x6 levels overlap.
#
# </details>
#
# <details><summary>Answer</summary>
#
# With average pooling the object appears in every bin whose window holds part of it, but only as a small
# share (its pixel count over the bin's), which the coarse levels dilute most: in the 1x1 bin it is a sliver
# of the whole scene. With max pooling every bin whose window touches the object shows it as present at full
# strength, whatever its size: one bin per level for an object inside one window, two or four where it lies
# on an overlap or a border of the 3x3 and 6x6 grids. That is the difference the static figures state: max
# keeps *which* classes are present, average *how much* of each.
#
# </details>

# %% [markdown]
# **4.** In the pixel-context explorer, find a cell of the feature grid that sits in two 6x6 bins, and one
# whose 6x6 context comes from a bin that does not hold it. Then switch the 1x1 level off (keep 2, 3, 6) for
# each scene kind: which changes most?
#
# <details><summary>Hint</summary>
#
# With `align_corners=True`, output row $y$ of an $h$-row grid reads the pooled row at
# $y \cdot (b-1)/(h-1)$, between the two bins whose centres surround it. For the second part, compare the
# `levels 2, 3, 6` lines of the flip cell.
#
# </details>
#
# <details><summary>Answer</summary>
#
# On the default $16 \times 16$ grid the 6x6 windows are rows $[0, 3), [2, 6), [5, 8), [8, 11), [10, 14),
# [13, 16)$, so rows 2, 5, 10 and 13 (and the same columns) lie in two bins; a cell on such a row and column
# is in four. Row 7 is held only by bin 2, but reads the pooled row at $7 \cdot 5/15 \approx 2.33$: two thirds
# from bin 2 and one third from bin 3, which starts at row 8 and does not hold it. The explorer's default cell
# (row 7, column 11) is such a case: the geometry cell prints its 6x6 context from four bins, of which only one
# holds it. For the second part, expect the scene whose label is a property of the *whole* scene to change
# most. A ContextScenes city holds one facade kind only (a downtown or a suburb), so the global bin can carry
# "skyscrapers here" to every facade pixel, while the 2x2, 3x3 and 6x6 bins each see only part of a tall
# facade; the regional and mismatched cues (a band of water or road) are still inside the 2x2 bins. In the
# default run the `levels 2, 3, 6` lines of the flip cell do show the confusion scene (building vs skyscraper)
# changing most. That is what this network learned on a data set built for it, not a law: another seed may
# spread the scene's cue over the levels differently.
#
# </details>

# %% [markdown]
# ## Run it for real
#
# With the paper's backbone on a real ADE20K image (a GPU helps but is not needed). No B1236 of that
# backbone is trained here, so sections 1-5 then pool the features of a randomly initialised ResNet-50
# (the feature-map cell says where its features come from); section 6 still runs the lite B1236.
#
# ```
# papermill book/02_pyramid_pooling.ipynb out.ipynb -p backbone resnet50 -p dataset ade20k \
#     -p data_root /data/ADEChallengeData2016 -p crop_size 473
# ```

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
# # 03 · The architecture: dilated ResNet, output stride 8, and what PSPNet costs
#
# **Paper:** §3.3 "Network Architecture" and Fig. 3 (b)–(d); the implementation notes of §5.1.
#
# PSPNet is three pieces: a pretrained ResNet "with the dilated network strategy" whose final feature map is
# 1/8 of the input (Fig. 3b), the pyramid pooling module of chapter 02 (Fig. 3c), and a convolution that
# turns the result into per-pixel class scores (Fig. 3d). The paper adds one sentence on cost (quoted in
# section 3 below). In this chapter you will see
#
# 0. Fig. 3 itself, drawn from one real forward pass of the package's `PSPNet`: every tensor's shape on it is
#    recorded while the network runs, none is typed;
# 1. the feature-map size after every stage at the paper's 473 × 473 crop, and why dilation keeps stages 3
#    and 4 at 1/8 of the input where a plain ResNet would shrink to 1/32;
# 2. the authors' deep 3 × 3 stem against torchvision's 7 × 7 stem, and "full" against "contracted" dilation;
# 3. parameter and FLOP counts of the dilated FCN and of PSPNet for ResNet-50/101/152/269, checked against
#    counts made on the network that the authors' code defines (hszhao/semseg, model/pspnet.py; no file of
#    theirs states a count) — and the paper's claim on cost put into numbers;
# 4. where the compute goes: one 3 × 3 convolution in the classifier is the most expensive layer of PSPNet;
# 5. and, in exercises 4 and 5, you write the network yourself: `PSPNet.forward`, and a torchvision ResNet-50
#    turned into output stride 8 by dilation, each checked against the package with the same weights.
#
# Nothing is trained here. Models are built on PyTorch's `meta` device (shapes without storage), so even a
# ResNet-269 PSPNet is counted in a fraction of a second. Fig. 3 comes from one real forward pass at the crop
# size, the exercise checks run a few at `check_size`, and two networks are timed at the end.
#
# **Measured default run time** (`time papermill` on a 2-core CPU): see the README's table.

# %%
import inspect
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pspnet_lite import book
from pspnet_lite.backbone import BACKBONES, DilatedResNet
from pspnet_lite.book.complexity import count_flops, count_parameters, feature_shapes, on_meta, parameter_breakdown
from pspnet_lite.book.fig3 import fig3
from pspnet_lite.book.viz import use_book_style
from pspnet_lite.model import PSPNet
from pspnet_lite.weights import load_state

# %% tags=["parameters"]
backbone = "resnet50"  # the network of Fig. 3 and sections 1, 2 and 4 (any key of pspnet_lite.backbone.BACKBONES)
depths = "resnet50,resnet101,resnet152,resnet269"  # backbones of the FCN-vs-PSPNet cost table (Table 3's depths)
crop_size = 473  # input side of Fig. 3, shapes and FLOPs (the paper's ADE20K/VOC crop; 713 for Cityscapes)
num_classes = 150  # classifier outputs (150 ADE20K, 21 VOC, 19 Cityscapes)
time_size = 233  # input side of the measured forward pass on this machine (0 skips the timing)
time_iters = 3  # timed forward passes per model (median reported)
check_size = 129  # input side of the exercise checks with real weights (exercise 5's crop_size shape check is free)
device = "auto"  # "auto", "cpu" or "cuda" (only the timing uses it)
seed = 0  # random seed (the timed models' weights)
out_dir = "runs/03_architecture"  # figures and the JSON record are written here

# %%
device = book.setup(device, seed)
use_book_style()
depth_list = book.parse_list(depths, str)
out = book.resolve_path(out_dir)
out.mkdir(parents=True, exist_ok=True)
for name in [backbone, *depth_list]:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
print(f"backbone={backbone} depths={depth_list} crop_size={crop_size} num_classes={num_classes} "
      f"time_size={time_size} time_iters={time_iters} check_size={check_size} device={device} out={out}")
print("estimated run time: about a minute on a laptop CPU (counting is free on the meta device; Fig. 3 is one "
      f"forward pass at {crop_size}x{crop_size}, the exercise checks eight at {check_size}x{check_size}, "
      f"the timing {2 * time_iters + 2} at {time_size}x{time_size})")
chapter_start = time.perf_counter()

# %% [markdown]
# ## Fig. 3, drawn from one forward pass
#
# > "Overview of our proposed PSPNet. Given an input image (a), we first use CNN to get the feature map of the
# > last convolutional layer (b), then a pyramid parsing module is applied to harvest different sub-region
# > representations, followed by upsampling and concatenation layers to form the final feature representation,
# > which carries both local and global context information in (c). Finally, the representation is fed into a
# > convolution layer to get the final per-pixel prediction (d)." (Fig. 3)
#
# > "Using our 4-level pyramid, the pooling kernels cover the whole, half of, and small portions of the image.
# > They are fused as the global prior. Then we concatenate the prior with the original feature map in the final
# > part of (c). It is followed by a convolution layer to generate the final prediction map in (d)." (§3.3)
#
# The paper's figure draws the network without sizes. We draw it from the network itself: the package's
# `PSPNet` (the `backbone` parameter, with random weights) runs once on an image of `crop_size`, forward hooks
# record the output shape of every module of the figure, and the bilinear upsamplings (function calls, not
# modules) are recorded as they happen (`pspnet_lite.book.fig3.trace_shapes`). The pass runs in training mode,
# so that the auxiliary classifier of §4 runs too, on the output of the fourth stage in the paper's counting
# (`backbone.layer3` here, "res4"):
#
# > "Apart from the main branch using softmax loss to train the final classifier, another classifier is applied
# > after the fourth stage, i.e., the res4b22 residue block." (§4)
#
# Each box below is one recorded tensor, labelled channels × height × width (the batch left out).

# %%
torch.manual_seed(seed)
net = PSPNet(num_classes=num_classes, backbone=backbone)  # real (random) weights, on the CPU
t0 = time.perf_counter()
fig, fig3_shapes = fig3(net, crop_size, path=out / "fig3.png")
plt.show()
print(f"one forward pass of PSPNet ({backbone}, {crop_size}x{crop_size}, training mode): "
      f"{time.perf_counter() - t0:.1f} s; the recorded shapes, in the order of the pass:")
for name, shape in fig3_shapes.items():
    print(f"  {name:26s} {tuple(shape)}")

# %% [markdown]
# Read the figure left to right. The ResNet's stem and first two stages bring the image down to 1/8 of its side,
# and stages 3 and 4 stay on that grid (section 1 explains how). Each pyramid level pools the feature map to a
# $b \times b$ grid of full-width features, reduces them to $1/N$ of the channels ($N$ levels), and upsamples them
# back to the grid, so that the concatenation holds the feature map and $N$ levels of $C/N$ channels each: twice
# the feature map's $C$ channels (chapter 02 builds this module). The classifier's 3 × 3 convolution narrows that
# to an eighth (512 channels at full width), a 1 × 1 convolution gives one score per class and grid cell
# (Fig. 3(d)), and bilinear upsampling with `align_corners=True` takes the scores to the input size. The factor in
# the last box is $(H - 1)/(h - 1)$ for an $h$-row grid taken to $H$ rows, exactly 8 for the paper's 473 (section
# 1 says why 473). The dashed branch exists only in training; at test time the model returns the main logits
# alone. The cell below checks these relations on the record. (The default run's figure, ResNet-50 at 473, is
# kept as `results/03_fig3.png`.)

# %%
fs = fig3_shapes
levels = [k for k in fs if k.startswith("ppm.features.") and k.count(".") == 2 and ":" not in k]
assert fs["ppm"][1] == fs["backbone.layer4"][1] + sum(fs[k][1] for k in levels)  # 2048 + 4 x 512 = 4096
assert [fs[k][2] for k in levels] == list(net.ppm.bins)  # the pooled grids are the bins 1, 2, 3, 6
assert all(fs[k + ":upsampled"][2:] == fs["backbone.layer4"][2:] for k in levels)
assert fs["cls.0"][1] * 8 == fs["ppm"][1]  # the 3x3 conv: 4096 -> 512
assert fs["cls"][2:] == fs["aux"][2:] == fs["backbone.layer3"][2:] == fs["backbone.layer4"][2:]
assert fs["cls:upsampled"][2:] == fs["aux:upsampled"][2:] == fs["input"][2:]
print(f"concat {fs['ppm'][1]} = feature map {fs['backbone.layer4'][1]} + {len(levels)} levels x {fs[levels[0]][1]}; "
      f"prediction {fs['cls'][2]}x{fs['cls'][3]} -> {fs['cls:upsampled'][2]}x{fs['cls:upsampled'][3]}")

# %% [markdown]
# ## 1. Output stride 8: the feature-map size through the network
#
# > "Given an input image in Fig. 3(a), we use a pretrained ResNet [13] model with the dilated network
# > strategy [3, 40] to extract the feature map. The final feature map size is $1/8$ of the input image, as
# > shown in Fig. 3(b)." (§3.3)
#
# A ResNet halves the resolution five times (stem convolution, max-pool, stages 2, 3 and 4). The **output
# stride** is the product of the strides $s_l$ of all layers on the way, the factor between input and final
# feature map:
#
# $$\mathrm{OS} = \prod_l s_l = \frac{H_{in}}{H_{out}}, \qquad \mathrm{OS}_\text{ResNet} = 2^5 = 32, \qquad
# \mathrm{OS}_\text{PSPNet} = 2^3 = 8 .$$
#
# The "dilated network strategy" (Yu & Koltun; DeepLab) removes the strides of stages 3 and 4 and dilates
# their 3 × 3 convolutions by 2 and 4 instead, so the receptive field still grows while the map stays at 1/8.
# Each layer maps a side $H_{in}$ to
#
# $$H_{out} = \left\lfloor \frac{H_{in} + 2p - d\,(k - 1) - 1}{s} \right\rfloor + 1$$
#
# (kernel $k$, padding $p$, dilation $d$, stride $s$); a 3 × 3 layer with $p = d$ keeps the side when $s = 1$
# and gives $\lceil H_{in} / 2 \rceil$ when $s = 2$. We trace one forward pass of the package's `PSPNet`
# (built on the `meta` device: no weights, no compute).

# %%
stages = ["backbone.conv1", "backbone.maxpool", "backbone.layer1", "backbone.layer2", "backbone.layer3",
          "backbone.layer4", "ppm", "cls"]
model = on_meta(PSPNet, num_classes=num_classes, backbone=backbone)
shapes = feature_shapes(model, stages, crop_size)
print(f"{'module':18s} {'channels':>8s} {'H x W':>11s} {'stride':>6s}")
for name, (_, c, h, w) in shapes.items():
    print(f"{name:18s} {c:8d} {h:5d} x {w:<5d} {round(crop_size / h):6d}")
print(f"{'output (upsampled)':18s} {num_classes:8d} {crop_size:5d} x {crop_size:<5d}")

# %% [markdown]
# At 473 the stem gives 237, the max-pool 119, stage 2 halves to 60, and stages 3 and 4 **stay at 60 × 60**:
# 1/8 of the input, as Fig. 3(b) says ($\lceil 473/2 \rceil = 237$, $\lceil 237/2 \rceil = 119$,
# $\lceil 119/2 \rceil = 60$). The odd crop size is deliberate: $(60 - 1) \cdot 8 + 1 = 473$, so with
# `align_corners=True` the ×8 bilinear upsampling maps the 60 × 60 grid exactly onto the 473 × 473 pixels.

# %%
os_shapes = {}
for os_ in (8, 16, 32):
    m = on_meta(PSPNet, num_classes=num_classes, backbone=backbone, output_stride=os_)
    os_shapes[os_] = [crop_size] + [s[2] for s in feature_shapes(m, stages[:6], crop_size).values()]
labels = ["input", "stem", "max-pool", "stage 1", "stage 2", "stage 3", "stage 4"]
fig, ax = plt.subplots(figsize=(7, 3.6))
for os_, sizes in os_shapes.items():
    ax.plot(labels, sizes, marker="o", label=f"output stride {os_}" + (" (PSPNet)" if os_ == 8 else ""))
    ax.annotate(str(sizes[-1]), (len(labels) - 1, sizes[-1]), textcoords="offset points", xytext=(6, -3))
ax.set(yscale="log", ylabel=f"feature map side (pixels, input {crop_size})", xlabel="network position",
       title=f"Dilation keeps stages 3-4 at {os_shapes[8][-1]}x{os_shapes[8][-1]} "
             f"instead of {os_shapes[32][-1]}x{os_shapes[32][-1]}")
ax.legend()
fig.savefig(out / "feature_map_sizes.png", bbox_inches="tight")
plt.show()

# %% [markdown]
# A plain ResNet (output stride 32) ends at 15 × 15 for a 473 input: each output cell would have to label a
# 32 × 32 patch of pixels. Output stride 8 keeps 16 times more positions at the same parameter count.

# %%
assert shapes["backbone.layer4"][2:] == shapes["backbone.layer2"][2:] == (-(-crop_size // 8),) * 2
assert all(count_parameters(on_meta(PSPNet, num_classes=num_classes, backbone=backbone, output_stride=s))
           == count_parameters(model) for s in (16, 32))  # dilation changes no parameter

# %% [markdown]
# ## 2. Dilation, "full" or "contracted"; the deep stem
#
# > "Our network contains dilated convolution following [4]." (§5.1)
#
# The paper does not say which blocks are dilated. The authors' code dilates **every** block of stage 3 by 2
# and of stage 4 by 4 ("full"; hszhao/semseg, model/pspnet.py). mmsegmentation (`contract_dilation=True` in
# open-mmlab/mmsegmentation, configs/_base_/models/pspnet_r50-d8.py) and the CSAIL code (`ResnetDilated` in
# CSAILVision/semantic-segmentation-pytorch, mit_semseg/models/models.py) use "contracted" dilation: the first
# block of each dilated stage uses half of it. Both have the same weights and cost; pretrained checkpoints are
# only correct with the variant they were trained with.

# %%
dilations = {}
for variant in ("full", "contracted"):
    bb = on_meta(PSPNet, num_classes=num_classes, backbone=backbone, dilation=variant).backbone
    d3 = [blk.conv2.dilation[0] for blk in bb.layer3]
    d4 = [blk.conv2.dilation[0] for blk in bb.layer4]
    dilations[variant] = {"stage3": d3, "stage4": d4}
    print(f"{variant:10s} stage 3 dilations {d3}   stage 4 dilations {d4}")

# %% [markdown]
# Only the first block of each stage differs. Next, the stem: the authors replace ResNet's single 7 × 7
# convolution (torchvision) by three 3 × 3 convolutions 3 → 64 → 64 → 128 (the "deep base" of their ImageNet
# weights: `deep_base=True` in hszhao/semseg, model/resnet.py), so stage 1 receives 128 channels instead of 64.

# %%
rows = []
for stem in ("deep", "torchvision"):
    m = on_meta(PSPNet, num_classes=num_classes, backbone=backbone, stem=stem)
    rep = count_flops(m, crop_size)
    stem_names = [n for n in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3") if hasattr(m.backbone, n)]
    stem_params = sum(count_parameters(getattr(m.backbone, n)) for n in stem_names)
    stem_macs = sum(rep.module(f"backbone.{n}") for n in stem_names) / 2
    rows.append((stem, stem_params, stem_macs / 1e9, count_parameters(m.backbone), rep.gmacs))
print(f"{'stem':12s} {'stem params':>12s} {'stem GMACs':>11s} {'backbone params':>16s} {'PSPNet GMACs':>13s}")
for stem, sp, sg, bp, g in rows:
    print(f"{stem:12s} {sp:12,d} {sg:11.2f} {bp:16,d} {g:13.1f}")
print(f"deep / 7x7 stem: {rows[0][1] / rows[1][1]:.0f}x the parameters, {rows[0][2] / rows[1][2]:.0f}x the MACs")

# %% [markdown]
# With the default ResNet-50 the deep stem has about 12 times the parameters of the 7 × 7 convolution (the last
# line above), but that is a small fraction of the backbone's parameters; its real cost is compute: three
# convolutions at 237 × 237 cost several GMACs where the 7 × 7 costs about half a GMAC. The authors chose it for
# accuracy (it is their ImageNet model); the cost is a few percent of the whole.

# %% [markdown]
# ## 3. FCN vs PSPNet: parameters and FLOPs for ResNet-50 to 269
#
# The paper's one sentence on cost:
#
# > "In terms of computational cost, our PSPNet does not much increase it compared to the original dilated
# > FCN network." (§3.3)
#
# The baseline of Tables 1–2 is the same network without the pyramid pooling module (`PSPNet(bins=())`):
# the classifier's 3 × 3 convolution then reads the 2048-channel map instead of the 4096-channel
# concatenation. We count parameters and forward FLOPs at the crop size. The auxiliary head of §4 reads the
# output of stage 3 (`backbone.layer3`, 1024 channels; in the paper's ResNet-101 its last block is res4b22):
#
# > "The auxiliary loss is added after the res4b22 residue block." (Fig. 4)
#
# It is used only in training, so we report parameters with and without it:
#
# > "In the testing phase, we abandon this auxiliary branch and only use the well optimized master branch for
# > final prediction." (§4)
#
# A convolution with $C_{in}$ input and $C_{out}$ output channels, a $k \times k$ kernel and $g$ groups has
# $C_{out} C_{in} k^2 / g$ weights (plus $C_{out}$ biases if it has any) and performs one multiply-accumulate
# per weight and output position:
#
# $$\mathrm{MACs} = H_{out}\, W_{out}\, C_{out}\, \frac{C_{in}}{g}\, k^2, \qquad \mathrm{FLOPs} = 2 \cdot
# \mathrm{MACs} .$$
#
# `torch.utils.flop_counter` counts FLOPs this way, for the convolutions only (BN, ReLU, pooling and
# upsampling are not counted); we report GMACs $= \mathrm{FLOPs} / (2 \cdot 10^9)$. All our convolutions have
# $g = 1$.

# %%
cost = {}
for name in depth_list:
    for kind, bins in (("FCN", ()), ("PSPNet", (1, 2, 3, 6))):
        m = on_meta(PSPNet, num_classes=num_classes, backbone=name, bins=bins)
        total = count_parameters(m)
        cost[name, kind] = dict(train_params=total, params=total - count_parameters(m.aux),
                                gmacs=count_flops(m, crop_size).gmacs)
print(f"{'backbone':10s} {'FCN params':>12s} {'PSPNet params':>14s} {'+params':>8s} "
      f"{'FCN GMACs':>10s} {'PSPNet GMACs':>13s} {'+GMACs':>7s}")
for name in depth_list:
    f, p = cost[name, "FCN"], cost[name, "PSPNet"]
    print(f"{name:10s} {f['params'] / 1e6:11.2f}M {p['params'] / 1e6:13.2f}M {p['params'] / f['params'] - 1:8.1%} "
          f"{f['gmacs']:10.1f} {p['gmacs']:13.1f} {p['gmacs'] / f['gmacs'] - 1:7.1%}")

# %% [markdown]
# Inference cost (no auxiliary head), at the crop size. PSPNet adds the same absolute amount to every
# depth (the head does not depend on the backbone), so the relative increase shrinks as the backbone grows.

# %%
x = np.arange(len(depth_list))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for ax, key, unit in ((axes[0], "params", 1e6), (axes[1], "gmacs", 1.0)):
    for i, kind in enumerate(("FCN", "PSPNet")):
        vals = [cost[n, kind][key] / unit for n in depth_list]
        bars = ax.bar(x + (i - 0.5) * 0.38, vals, 0.38, label=kind if kind == "FCN" else "PSPNet (FCN + PPM)")
    for j, n in enumerate(depth_list):
        rel = cost[n, "PSPNet"][key] / cost[n, "FCN"][key] - 1
        ax.annotate(f"+{rel:.0%}", (j + 0.19, cost[n, "PSPNet"][key] / unit), ha="center", va="bottom")
    ax.set(xticks=x, xticklabels=[n.replace("resnet", "ResNet-") for n in depth_list],
           ylabel="parameters (M)" if key == "params" else f"GMACs at {crop_size}x{crop_size}")
    ax.margins(y=0.12)
    ax.legend()
first, last = depth_list[0], depth_list[-1]
rel = lambda n: cost[n, "PSPNet"]["gmacs"] / cost[n, "FCN"]["gmacs"] - 1  # noqa: E731
fig.suptitle(f"PSPNet costs +{rel(first):.0%} compute over the dilated FCN with {first}, +{rel(last):.0%} with {last}")
fig.savefig(out / "fcn_vs_pspnet_cost.png", bbox_inches="tight")
plt.show()

# %% [markdown]
# ### Checked against the authors' code
#
# Neither the paper nor the authors' releases (the PyTorch code hszhao/semseg, the Caffe models hszhao/PSPNet)
# state the models' sizes. The reference values below are therefore counts made on the authors' code: the
# parameters of the network that `PSPNet(layers=50 or 101, classes=150)` builds in hszhao/semseg,
# model/pspnet.py (with the deep-base ResNet of model/resnet.py; its auxiliary head is built with the model, so
# the count with the head is the one of the model as constructed), and the multiply-accumulates of that
# network's convolutions at each input size, from the formula above. Our counts follow the same convention
# (convolution weights, BN affine parameters and classifier biases; BN running statistics are buffers, not
# parameters).

# %%
reference = {  # (backbone, crop, classes): (params with aux, params without aux, GMACs inference)
    ("resnet50", 473, 150): (49_180_908, 46_782_550, 161.9),
    ("resnet101", 473, 150): (68_173_036, 65_774_678, 230.1),
    ("resnet50", 512, 150): (None, None, 184.4),
    ("resnet101", 512, 150): (None, None, 262.0),
    ("resnet50", 713, 19): (None, None, 363.8),
}
print(f"{'model':28s} {'params (train) ours / ref':>28s} {'params (infer) ours / ref':>28s} {'GMACs ours / ref':>18s}")
checks = {}
for (name, size, classes), (ref_train, ref_infer, ref_g) in reference.items():
    m = on_meta(PSPNet, num_classes=classes, backbone=name)
    ours_train, ours_infer = count_parameters(m), count_parameters(m) - count_parameters(m.aux)
    g = count_flops(m, size).gmacs
    checks[f"{name}@{size},C={classes}"] = dict(params_train=ours_train, params_infer=ours_infer, gmacs=round(g, 2),
                                                ref_params_train=ref_train, ref_params_infer=ref_infer, ref_gmacs=ref_g)
    fmt = lambda v: "-" if v is None else f"{v:,.0f}"  # noqa: E731
    print(f"{f'PSPNet-{name[6:]} @{size} C={classes}':28s} {f'{ours_train:,} / {fmt(ref_train)}':>28s} "
          f"{f'{ours_infer:,} / {fmt(ref_infer)}':>28s} {f'{g:.1f} / {ref_g}':>18s}")

# %% [markdown]
# Both networks match the counts made on the authors' code to the parameter, with and without the auxiliary
# head, and the multiply-accumulates match the reference counts at every size of the table (to the 0.1 GMAC
# they are given to).

# %%
m50 = on_meta(PSPNet, num_classes=150, backbone="resnet50")
assert count_parameters(m50) == 49_180_908 and count_parameters(m50) - count_parameters(m50.aux) == 46_782_550
m101 = on_meta(PSPNet, num_classes=150, backbone="resnet101")
assert count_parameters(m101) == 68_173_036 and count_parameters(m101) - count_parameters(m101.aux) == 65_774_678
assert abs(count_flops(m50, 473).gmacs - 161.9) < 0.1

# %% [markdown]
# ## 4. Where the compute goes
#
# The last step of Fig. 3, the convolution that makes the prediction:
#
# > "It is followed by a convolution layer to generate the final prediction map in (d)." (§3.3)
#
# In the authors' code that is a 3 × 3 convolution 4096 → 512 followed by a 1 × 1 convolution to the classes
# (`cls.0` and `cls.4` here). The per-module counts of `FlopCounterMode` show which layers pay for PSPNet. We
# group them by stage and list the most expensive single layers of the model dissected here.

# %%
model = on_meta(PSPNet, num_classes=num_classes, backbone=backbone)
rep = count_flops(model, crop_size)
groups = {"stem": sum(rep.module(f"backbone.{n}") for n in ("conv1", "conv2", "conv3")),
          **{f"stage {i}": rep.module(f"backbone.layer{i}") for i in range(1, 5)},
          "PPM (4 levels)": rep.module("ppm"), "cls 3x3 conv": rep.module("cls.0"), "cls 1x1 conv": rep.module("cls.4")}
assert sum(groups.values()) == rep.flops
params = parameter_breakdown(model, depth=2)
print(f"{'part':16s} {'GMACs':>8s} {'share':>6s}")
for part, f in groups.items():
    print(f"{part:16s} {f / 2e9:8.2f} {f / rep.flops:6.1%}")
print("most expensive single layers:", *(f"{n}: {f / 2e9:.1f} GMACs" for n, f in rep.top(4)), sep="\n  ")

# %% [markdown]
# With the default ResNet-50, the single 3 × 3 convolution 4096 → 512 of the classifier (`cls.0`) costs more
# than all of stages 1–3 together: it runs at 1/8 resolution on the widest input of the network. The pyramid
# pooling module itself is almost free (its 1 × 1 convolutions run on 1 × 1 to 6 × 6 maps). The MAC formula
# of section 3, by hand, gives the counter's number for that layer:

# %%
conv = model.cls[0]
h_out, w_out = shapes["backbone.layer4"][2:]  # the classifier runs on the stride-8 map
macs_by_hand = h_out * w_out * conv.out_channels * conv.in_channels // conv.groups * conv.kernel_size[0] ** 2
print(f"cls.0: {h_out} x {w_out} x {conv.out_channels} x {conv.in_channels} x {conv.kernel_size[0]}^2 "
      f"= {macs_by_hand:,} MACs; counter: {rep.module('cls.0') // 2:,}")
assert macs_by_hand == rep.module("cls.0") // 2

# %%
fig, ax = plt.subplots(figsize=(8, 3.4))
names, vals = list(groups), [v / 2e9 for v in groups.values()]
colors = ["C0"] * 5 + ["C2", "C3", "C1"]
ax.barh(names[::-1], vals[::-1], color=colors[::-1])
for i, v in enumerate(vals[::-1]):
    ax.annotate(f"{v:.1f} ({v * 2e9 / rep.flops:.0%})", (v, i), xytext=(3, 0), textcoords="offset points", va="center")
ax.set(xlabel=f"GMACs at {crop_size}x{crop_size} (inference)", xlim=(0, max(vals) * 1.25),
       title=f"One 3x3 conv in the classifier is {rep.share('cls.0'):.0%} of PSPNet's compute; "
             f"the PPM is {rep.share('ppm'):.2%}")
fig.savefig(out / "compute_by_module.png", bbox_inches="tight")
plt.show()

# %% [markdown]
# The figure's title gives both shares. The pyramid pooling module's own cost, against the classifier's:

# %%
ppm_params = count_parameters(model.ppm)
extra = cost[backbone, "PSPNet"]["params"] - cost[backbone, "FCN"]["params"] if (backbone, "PSPNet") in cost else None
print(f"PPM parameters: {ppm_params:,} ({ppm_params / count_parameters(model):.1%} of PSPNet); "
      f"PPM compute: {rep.module('ppm') / 2e9:.3f} GMACs ({rep.share('ppm'):.3%})")
print(f"classifier 3x3 conv: {count_parameters(model.cls[0]):,} parameters, {rep.module('cls.0') / 2e9:.1f} GMACs")
if extra is not None:
    print(f"PSPNet - FCN: {extra:,} parameters = PPM {ppm_params:,} + wider classifier conv {extra - ppm_params:,}")

# %% [markdown]
# So "does not much increase" needs a qualifier. The pyramid pooling **module** adds about
# $4 \times 2048 \times 512$ parameters (four 1 × 1 reductions, plus their BN) and a tiny share of the compute
# (the first line above). But it doubles the channels that the classifier reads (2048 → 4096), and the
# classifier's 3 × 3 convolution doubles with them: that is where the extra parameters and FLOPs of the table in
# section 3 come from. The increase is the same absolute amount at every depth, so relative to the whole it
# shrinks as the backbone gets deeper (the table's rows).

# %% [markdown]
# ## 5. Measured: one forward pass on this machine
#
# FLOPs are a model of cost; the clock is the truth on a given machine. We time the dilated FCN and PSPNet
# with real (random) weights, in eval mode, batch 1, at `time_size` (small on a CPU). Timings are noisy on
# a shared machine; we report the median of `time_iters` passes, and the ratio of the two, which is steadier
# than either time.

# %%
def median_forward_seconds(model, x, iters):
    """Median wall time of ``iters`` eval forward passes after one warm-up (synchronising on CUDA)."""
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(iters):
            t0 = time.perf_counter()
            model(x)
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


# %%
timing, gmacs = {}, {}
for kind, bins in (("FCN", ()), ("PSPNet", (1, 2, 3, 6))) if time_size and time_iters else ():
    torch.manual_seed(seed)
    m = PSPNet(num_classes=num_classes, backbone=backbone, bins=bins).to(device).eval()
    x = torch.randn(1, 3, time_size, time_size, device=device)  # (1, 3, S, S)
    timing[kind] = median_forward_seconds(m, x, time_iters)
    gmacs[kind] = count_flops(on_meta(PSPNet, num_classes=num_classes, backbone=backbone, bins=bins), time_size).gmacs
    print(f"{kind:7s} {timing[kind] * 1e3:8.0f} ms per image at {time_size}x{time_size} "
          f"({gmacs[kind]:.1f} GMACs -> {gmacs[kind] / timing[kind]:.1f} GMAC/s)")
if timing:
    print(f"PSPNet / FCN: time {timing['PSPNet'] / timing['FCN']:.2f}x, "
          f"GMACs {gmacs['PSPNet'] / gmacs['FCN']:.2f}x on {device}")

# %% [markdown]
# Compare the two ratios in the last line. Where the time ratio comes close to the GMAC ratio, nearly all the
# time goes to large convolutions, and the one PSPNet adds is the most efficient kind (big, regular). Layers
# that FLOPs ignore (BN, ReLU, the pooling levels, upsampling) make up the rest; on a GPU their share is larger.

# %% [markdown]
# ## Record
#
# Everything this chapter counted and timed goes into one JSON record (`record.json` in `out_dir`).

# %%
seconds = time.perf_counter() - chapter_start
metrics = {"fig3_shapes": {k: list(v) for k, v in fig3_shapes.items()},
           "shapes": {k: list(v) for k, v in shapes.items()},
           "output_stride_sizes": {str(k): v for k, v in os_shapes.items()}, "dilations": dilations,
           "stems": {stem: dict(stem_params=sp, stem_gmacs=sg, backbone_params=bp, gmacs=g)
                     for stem, sp, sg, bp, g in rows},
           "cost": {f"{n}/{k}": v for (n, k), v in cost.items()},
           "reference_checks": checks, "compute_share": {k: v / rep.flops for k, v in groups.items()},
           "ppm_params": ppm_params, "cls_conv_params": count_parameters(model.cls[0]),
           "pspnet_minus_fcn_params": extra,
           "timing_seconds": timing, "timing_gmacs": gmacs}
record = book.write_record(out / "record.json", name="03_architecture", seconds=seconds, device=device,
                           config=dict(backbone=backbone, depths=depth_list, crop_size=crop_size,
                                       num_classes=num_classes, time_size=time_size, time_iters=time_iters),
                           metrics=metrics)
print(f"record: {record}  ({seconds:.1f} s)")

# %%
first, last = depth_list[0], depth_list[-1]
for n in dict.fromkeys([first, last]):
    f, p = cost[n, "FCN"], cost[n, "PSPNet"]
    print(f"PSPNet over the dilated FCN with {n}: {p['params'] / f['params'] - 1:+.1%} parameters, "
          f"{p['gmacs'] / f['gmacs'] - 1:+.1%} compute at {crop_size}x{crop_size}")
print(f"{backbone}: classifier 3x3 conv {rep.share('cls.0'):.1%} of PSPNet's MACs, PPM {rep.share('ppm'):.2%}; "
      f"PSPNet-50 at 473, C=150: {checks['resnet50@473,C=150']['gmacs']:.1f} GMACs")

# %% [markdown]
# ## Summary
#
# - Fig. 3, drawn from one forward pass of the package's PSPNet, has a measured shape on every tensor: the
#   feature map at 1/8 of the input, four pooled grids reduced to $1/N$ of its channels, their concatenation
#   with it, the prediction at 1/8 and its upsampling to the input size, and the auxiliary branch on res4.
#   Exercises 4 and 5 rebuild its forward pass, and its dilated backbone from torchvision's ResNet-50, and find
#   both equal to the package with the same weights.
# - The dilated ResNet keeps a 60 × 60 map (1/8 of 473) through stages 3 and 4, with the same weights as a
#   plain ResNet; "full" and "contracted" dilation differ only in the first block of each stage.
# - Our PSPNet-50 and PSPNet-101 have exactly the parameter counts made on the authors' code (hszhao/semseg,
#   model/pspnet.py), and PSPNet-50 counts 161.9 GMACs at 473 × 473 (the last line above).
# - PSPNet over the dilated FCN, with the default parameters: +41.1 % parameters and +26.6 % compute with
#   ResNet-50, +12.4 % and +8.5 % with ResNet-269 (the lines above). The pyramid pooling module itself is nearly
#   free; the cost is the classifier's 3 × 3 convolution on twice as many channels, which alone is 42.0 % of
#   PSPNet-50's multiply-accumulates ($60 \cdot 60 \cdot 512 \cdot 4096 \cdot 3^2$ of them).

# %% [markdown]
# ## Exercises
#
# Exercises 1-3 are a few lines on top of the cells above (`on_meta`, `count_parameters`, `count_flops`); in 4 and
# 5 you write the network of Fig. 3 yourself, and the cell after each checks its worked answer against the package.

# %% [markdown]
# **1.** Replace the classifier's 3 × 3 convolution by a 1 × 1 (as SMP's "PSPNet" does) in a copy of the model:
# how do the parameters and GMACs change? What does the head lose?
#
# <details><summary>Hint</summary>
#
# Use the formulas of section 3: weights $C_{out} C_{in} k^2$ and MACs $H_{out} W_{out} C_{out} C_{in} k^2$.
# Only $k$ changes. For the loss, think of what a 3 × 3 kernel on the stride-8 map mixes.
#
# </details>
#
# <details><summary>Answer</summary>
#
# ```python
# m = on_meta(PSPNet, num_classes=num_classes, backbone=backbone)
# with torch.device("meta"):
#     m.cls[0] = torch.nn.Conv2d(4096, 512, 1, bias=False)
# print(count_parameters(m) - count_parameters(m.aux), count_flops(m, crop_size).gmacs)
# ```
#
# The layer's weights and MACs both fall to $1/9$: $4096 \cdot 512 \cdot 9$ weights become $4096 \cdot 512$,
# and its MACs drop from the `cls.0` line of section 4 to a ninth of it, so PSPNet-50's total falls by
# $8/9$ of that layer's cost. The head loses its spatial mixing: a 3 × 3 kernel on the stride-8 map combines
# each position with its 8 neighbours (it adds $(3 - 1) \cdot 8 = 16$ pixels to the theoretical receptive field,
# chapter 01's recursion) and smooths the labels across the upsampled grid; a 1 × 1 head classifies each
# position of the concatenated features on its own. The paper does not test this; the authors' code uses 3 × 3.
#
# </details>

# %% [markdown]
# **2.** Count FLOPs at 713 × 713 with 19 classes (Cityscapes). Why is the increase over 473 not
# $(713/473)^2$?
#
# <details><summary>Hint</summary>
#
# Look at the map sizes: 90 vs 60 at stride 8. Which parts of the network do not scale with the image at all?
#
# </details>
#
# <details><summary>Answer</summary>
#
# ```python
# for size, classes in ((473, 150), (473, 19), (713, 19)):
#     print(size, classes, count_flops(on_meta(PSPNet, num_classes=classes, backbone="resnet50"), size).gmacs)
# ```
#
# Almost all MACs are at stride 8, where the side is $\lceil 713/8 \rceil = 90$ against
# $\lceil 473/8 \rceil = 60$: a factor $(90/60)^2 = 2.25$, slightly less than $(713/473)^2 \approx 2.27$,
# because an input side of $8n + 1$ pixels gives a map of $n + 1$ cells, and that extra cell counts for more on
# the smaller map. The stem layers scale with their own
# sides (357 vs 237). The pyramid's pooled maps are $1 \times 1$ to $6 \times 6$ whatever the input, so its
# 1 × 1 convolutions cost the same at both sizes, and the last classifier is cheaper with 19 classes than with
# 150. Compare with the reference row at 713 in section 3's table (PSPNet-50, C = 19).
#
# </details>

# %% [markdown]
# **3.** Build `PSPNet(output_stride=16)`: how much compute does it save, and what happens to the 6 × 6 bins of
# the pyramid on the smaller map? And at output stride 32?
#
# <details><summary>Hint</summary>
#
# The figure of section 1 gives the final map side for each output stride. Which layers run at that side? For
# the bins, divide the side by 6: `AdaptiveAvgPool2d` tiles exactly only when the division is exact.
#
# </details>
#
# <details><summary>Answer</summary>
#
# At 473, output stride 16 leaves a 30 × 30 map: stage 3 (after the strided convolution of its first block),
# stage 4, the pyramid and the classifier run on a quarter of the positions, so these layers cost about a
# quarter of their MACs at output stride 8, the big classifier convolution included. Count it with
# `count_flops(on_meta(PSPNet, num_classes=num_classes, backbone=backbone, output_stride=16), crop_size)`.
# The parameters do not change (the assert of section 1). On 30 × 30 the 6 × 6 bins are exact 5 × 5 windows,
# as 10 × 10 windows tile the 60 × 60 map. At output stride 32 the map is 15 × 15: 15/6 is not whole, so the
# adaptive bins are uneven and overlap (windows of 3 pixels, starting every 2 or 3), and the 3 × 3 bins cover
# 5 × 5 windows; one output cell now stands for a 32 × 32 patch, and the prediction is coarser. That trade of
# resolution for cost is why the paper keeps 1/8.
#
# </details>

# %% [markdown]
# **4.** Write `PSPNet.forward` yourself: a function `my_pspnet_forward(model, x)` that uses only the submodules
# of a package `PSPNet` (`model.backbone`, `model.ppm`, `model.cls`, `model.aux`) and returns what `model(x)`
# returns: the main logits at the input size in eval mode, `(main, aux)` in training mode. Follow Fig. 3 above
# from (a) to (d), then the dashed branch. The cell after this exercise checks the worked answer on the network
# of Fig. 3 (the `backbone` parameter, at `check_size`): same weights, same logits, in both modes; put your own
# function in its place.
#
# <details><summary>Hint</summary>
#
# `model.backbone(x)` returns two maps, stage 3 ("res4", for the auxiliary head) and stage 4 (Fig. 3(b)).
# `model.ppm` and `model.cls` are ordinary modules applied in turn; the only step of the figure that is not a
# module is the bilinear upsampling to the input size: `F.interpolate(..., size, mode="bilinear",
# align_corners=True)`, as the authors'. `model.training` says which mode you are in. The dilated-FCN baseline
# (`PSPNet(bins=())`) has `model.ppm = None`.
#
# </details>
#
# <details><summary>Answer</summary>
#
# ```python
# def my_pspnet_forward(model, x):
#     """Fig. 3 (a) -> (d), and the auxiliary branch of §4 in training mode."""
#     size = x.shape[-2:]                                 # (a) (N, 3, H, W)
#     c3, c4 = model.backbone(x)                          # res4 (N, 1024, h, w), (b) res5 (N, 2048, h, w)
#     f = model.ppm(c4) if model.ppm is not None else c4  # (c) (N, 4096, h, w)
#     main = F.interpolate(model.cls(f), size, mode="bilinear", align_corners=True)  # (d) (N, C, H, W)
#     if not model.training:
#         return main
#     aux = None if model.aux is None else F.interpolate(model.aux(c3), size, mode="bilinear", align_corners=True)
#     return main, aux
# ```
#
# Eight lines: the network is its modules, and `forward` only wires them as the figure does. Two things make the
# training-mode comparison subtle. `Dropout2d` in `cls` and `aux` draws random channels, so both passes must start
# from the same state of the random generator (the check seeds before each); the auxiliary head runs after the
# main one in both, so the draws line up. And batch norm uses the batch's statistics in training mode, its
# running statistics in eval mode, which the check makes different from their initial values so that eval mode
# really uses them. The package's `PSPNet.forward` is the same function (printed by the check), with one more
# line: a check of the input's shape and type.
#
# </details>

# %%
# check the worked answer of exercise 4: the code of its Answer, then the comparison with the package
def my_pspnet_forward(model, x):
    """Fig. 3 (a) -> (d), and the auxiliary branch of §4 in training mode."""
    size = x.shape[-2:]                                 # (a) (N, 3, H, W)
    c3, c4 = model.backbone(x)                          # res4 (N, 1024, h, w), (b) res5 (N, 2048, h, w)
    f = model.ppm(c4) if model.ppm is not None else c4  # (c) (N, 4096, h, w)
    main = F.interpolate(model.cls(f), size, mode="bilinear", align_corners=True)  # (d) (N, C, H, W)
    if not model.training:
        return main
    aux = None if model.aux is None else F.interpolate(model.aux(c3), size, mode="bilinear", align_corners=True)
    return main, aux


torch.manual_seed(seed)
for m in net.modules():  # BN statistics other than (0, 1), so that eval mode really uses them
    if isinstance(m, nn.BatchNorm2d):
        m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 2.0)
x = torch.randn(1, 3, check_size, check_size)  # (1, 3, S, S)
with torch.no_grad():
    mine, theirs = my_pspnet_forward(net.eval(), x), net(x)
    torch.testing.assert_close(mine, theirs)
    diffs = {"eval": (mine - theirs).abs().max().item()}
    net.train()
    torch.manual_seed(seed)
    mine_main, mine_aux = my_pspnet_forward(net, x)
    torch.manual_seed(seed)
    main, aux = net(x)
torch.testing.assert_close(mine_main, main)
torch.testing.assert_close(mine_aux, aux)
diffs.update(train=(mine_main - main).abs().max().item(), aux=(mine_aux - aux).abs().max().item())
net.eval()
print(f"exercise 4: my_pspnet_forward == PSPNet.forward ({backbone}, input {tuple(x.shape)}): eval logits "
      f"{tuple(mine.shape)}, training (main, aux) {tuple(main.shape)}, {tuple(aux.shape)}; max |diff| "
      + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
print(inspect.getsource(PSPNet.forward))

# %% [markdown]
# **5.** Turn torchvision's ResNet-50 (`torchvision.models.resnet50(weights=None)`) into the dilated network of
# §3.3: remove the strides of stages 3 and 4 (`layer3`, `layer4`) and dilate their 3 × 3 convolutions by 2 and 4,
# so that a 473 input gives a 60 × 60 map. Then compare your network with torchvision's own option
# `replace_stride_with_dilation=[False, True, True]`, and with the package's backbone built with torchvision's stem
# (`DilatedResNet("resnet50", stem="torchvision")`), the same weights loaded into each.
#
# <details><summary>Hint</summary>
#
# In torchvision's `Bottleneck` the stride sits on `conv2` (the 3 × 3) and on `downsample[0]` (the 1 × 1 of the
# shortcut), as in the package. A convolution's `stride`, `dilation` and `padding` are plain attributes you may
# set after it is built, and section 1's formula says which padding keeps the side of a dilated 3 × 3 at stride 1.
# For the map, write the forward pass up to `layer4` yourself (torchvision's ends in global pooling and `fc`).
# The package's parameter names are torchvision's, so `load_state(backbone, resnet.state_dict(), kind="imagenet")`
# loads the weights (and drops `fc`).
#
# </details>
#
# <details><summary>Answer</summary>
#
# ```python
# import torchvision
#
#
# def dilate_resnet(net, dilations=(2, 4)):
#     """Output stride 8 (§3.3): no stride in stages 3 and 4, each of their 3x3 convolutions dilated 2 and 4."""
#     for stage, d in zip((net.layer3, net.layer4), dilations):
#         for block in stage:
#             block.conv2.stride, block.conv2.dilation, block.conv2.padding = (1, 1), (d, d), (d, d)
#             if block.downsample is not None:
#                 block.downsample[0].stride = (1, 1)
#     return net
#
#
# def resnet_features(net, x):
#     """torchvision's ResNet forward up to stage 4: the stage-3 and stage-4 maps."""
#     x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
#     c3 = net.layer3(net.layer2(net.layer1(x)))
#     return c3, net.layer4(c3)
# ```
#
# With padding $p = d$ a dilated 3 × 3 keeps the side at stride 1 ($H_{out} = H_{in} + 2d - 2d - 1 + 1$), so
# stages 3 and 4 stay at the size of stage 2: $\lceil 473/8 \rceil = 60$. The weights do not change: a dilated
# kernel has the same 3 × 3 weights, spread over a $(2d + 1) \times (2d + 1)$ window. Every block of stage 3 is
# dilated by 2 and every block of stage 4 by 4, the first included: the package's default `dilation="full"` and
# the authors' code, and the check finds your network equal to `DilatedResNet(stem="torchvision")` layer by layer
# and in its features. torchvision's `replace_stride_with_dilation` gives the first block of each dilated stage
# the dilation of the stage before (1 in stage 3, 2 in stage 4): that is `dilation="contracted"` (section 2).
# Same weights, same output stride, other features: the check prints how far apart, the reason a pretrained PSPNet
# is only right with the dilation it was trained with.
#
# </details>

# %%
# check the worked answer of exercise 5: the code of its Answer, then the comparison with the package
import torchvision


def dilate_resnet(net, dilations=(2, 4)):
    """Output stride 8 (§3.3): no stride in stages 3 and 4, each of their 3x3 convolutions dilated 2 and 4."""
    for stage, d in zip((net.layer3, net.layer4), dilations):
        for block in stage:
            block.conv2.stride, block.conv2.dilation, block.conv2.padding = (1, 1), (d, d), (d, d)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
    return net


def resnet_features(net, x):
    """torchvision's ResNet forward up to stage 4: the stage-3 and stage-4 maps."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    c3 = net.layer3(net.layer2(net.layer1(x)))
    return c3, net.layer4(c3)


# output stride 8 at the crop size: shapes only, on the meta device (no weights, no compute)
with torch.device("meta"):
    _, c4 = resnet_features(dilate_resnet(torchvision.models.resnet50(weights=None)),
                            torch.empty(1, 3, crop_size, crop_size))
side = -(-crop_size // 8)
assert tuple(c4.shape) == (1, 2048, side, side)
print(f"exercise 5: your dilated torchvision ResNet-50 maps {crop_size}x{crop_size} to {tuple(c4.shape)}")

# %% [markdown]
# The same check, layer by layer and with real weights: one set of random weights (with non-trivial batch-norm
# statistics) goes into four networks, yours, torchvision's `replace_stride_with_dilation`, and the package's
# backbone with full and with contracted dilation, and each pair is compared at `check_size`.

# %%
torch.manual_seed(seed)
resnet = dilate_resnet(torchvision.models.resnet50(weights=None)).eval()
for m in resnet.modules():
    if isinstance(m, nn.BatchNorm2d):
        m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 2.0)
tv_contracted = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True]).eval()
tv_contracted.load_state_dict(resnet.state_dict())
ours = {v: DilatedResNet("resnet50", stem="torchvision", dilation=v).eval() for v in ("full", "contracted")}
for backbone_ in ours.values():
    load_state(backbone_, resnet.state_dict(), kind="imagenet")


def conv_settings(network):
    """(name, stride, dilation, padding) of every convolution of stages 3 and 4."""
    return [(n, m.stride[0], m.dilation[0], m.padding[0]) for n, m in network.named_modules()
            if isinstance(m, nn.Conv2d) and n.startswith(("layer3", "layer4"))]


assert conv_settings(resnet) == conv_settings(ours["full"])
assert conv_settings(tv_contracted) == conv_settings(ours["contracted"])
print(f"{'3x3 conv':16s} {'yours':>7s} {'package full':>13s} {'torchvision option':>19s} {'package contracted':>19s}")
for (n, s1, d1, _), (_, s2, d2, _), (_, s3, d3, _), (_, s4, d4, _) in zip(
        conv_settings(resnet), conv_settings(ours["full"]), conv_settings(tv_contracted),
        conv_settings(ours["contracted"])):
    if n.endswith("conv2"):
        print(f"{n:16s} {f's{s1} d{d1}':>7s} {f's{s2} d{d2}':>13s} {f's{s3} d{d3}':>19s} {f's{s4} d{d4}':>19s}")
x = torch.randn(1, 3, check_size, check_size)  # (1, 3, S, S)
with torch.no_grad():
    feats = {"yours": resnet_features(resnet, x), "torchvision option": resnet_features(tv_contracted, x),
             **{f"package {v}": b(x) for v, b in ours.items()}}
for a, b in (("yours", "package full"), ("torchvision option", "package contracted")):
    for mine, theirs in zip(feats[a], feats[b]):
        torch.testing.assert_close(mine, theirs)
gap = (feats["yours"][1] - feats["torchvision option"][1]).abs().max() / feats["yours"][1].abs().max()
print(f"exercise 5: yours == package full, torchvision option == package contracted (stage-3 and stage-4 maps "
      f"{tuple(feats['yours'][0].shape)}, {tuple(feats['yours'][1].shape)}); full vs contracted with the same "
      f"weights: max |diff| of the stage-4 map = {gap:.0%} of its largest value")

# %% [markdown]
# ## Run it for real
#
# Other settings need no code edits, e.g. Cityscapes-sized counts and a GPU timing:
#
# ```
# papermill book/03_architecture.ipynb out.ipynb -p crop_size 713 -p num_classes 19 -p time_size 713 -p device cuda
# papermill book/03_architecture.ipynb out.ipynb -p backbone resnet101 -p depths resnet50,resnet101
# ```

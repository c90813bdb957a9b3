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
# turns the result into per-pixel class scores (Fig. 3d). The paper adds one sentence on cost: "our PSPNet
# does not much increase it compared to the original dilated FCN network". In this chapter you will see
#
# 1. the feature-map size after every stage at the paper's 473 × 473 crop (237, 119, 60, 60, 60), and why
#    dilation keeps stages 3 and 4 at 60 × 60 where a plain ResNet would shrink to 15 × 15;
# 2. the authors' deep 3 × 3 stem against torchvision's 7 × 7 stem, and "full" against "contracted" dilation;
# 3. parameter and FLOP counts of the dilated FCN and of PSPNet for ResNet-50/101/152/269, checked against
#    counts made on the authors' code (hszhao/semseg, model/pspnet.py: 49,180,908 parameters for PSPNet-50) —
#    and the claim put into numbers;
# 4. where the compute goes: one 3 × 3 convolution in the classifier costs 42 % of PSPNet-50.
#
# Nothing is trained here. Models are built on PyTorch's `meta` device (shapes without storage), so even a
# ResNet-269 PSPNet is counted in a fraction of a second; one real forward pass is timed at the end.
#
# **Measured default run time: about 1 min on a 2-core CPU** (56 s with `papermill`, measured while the machine was
# shared with other jobs at a load of about 4; the chapter's own cells take under 10 s when the machine is idle).

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from pspnet_lite import book
from pspnet_lite.backbone import BACKBONES
from pspnet_lite.book.complexity import count_flops, count_parameters, feature_shapes, on_meta, parameter_breakdown
from pspnet_lite.book.viz import use_book_style
from pspnet_lite.model import PSPNet

# %% tags=["parameters"]
backbone = "resnet50"  # the network dissected in sections 1, 2 and 4 (any key of pspnet_lite.backbone.BACKBONES)
depths = "resnet50,resnet101,resnet152,resnet269"  # backbones of the FCN-vs-PSPNet cost table (Table 3's depths)
crop_size = 473  # input side for shapes and FLOPs (the paper's ADE20K/VOC crop; 713 for Cityscapes)
num_classes = 150  # classifier outputs (150 ADE20K, 21 VOC, 19 Cityscapes)
time_size = 233  # input side of the measured forward pass on this machine (0 skips the timing)
time_iters = 3  # timed forward passes per model (median reported)
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
      f"time_size={time_size} time_iters={time_iters} device={device} out={out}")
print("estimated run time: under a minute on a laptop CPU (counting is free on the meta device; "
      f"the timing runs {2 * time_iters} real forward passes at {time_size}x{time_size})")
chapter_start = time.perf_counter()

# %% [markdown]
# ## 1. Output stride 8: the feature-map size through the network
#
# A ResNet halves the resolution five times (stem convolution, max-pool, stages 2, 3 and 4): output stride 32.
# The "dilated network strategy" (Yu & Koltun; DeepLab) removes the strides of stages 3 and 4 and dilates
# their 3 × 3 convolutions by 2 and 4 instead, so the receptive field still grows while the map stays at 1/8.
# We trace one forward pass of the package's `PSPNet` (built on the `meta` device: no weights, no compute).

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
# 1/8 of the input, as Fig. 3(b) says. The odd crop size is deliberate: (60 − 1) · 8 + 1 = 473, so with
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
# The authors dilate **every** block of stage 3 by 2 and of stage 4 by 4 ("full"; hszhao/semseg,
# model/pspnet.py). mmsegmentation (`contract_dilation=True` in open-mmlab/mmsegmentation,
# configs/_base_/models/pspnet_r50-d8.py) and the CSAIL code (`ResnetDilated` in
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

# %% [markdown]
# The deep stem has 12 times the parameters of the 7 × 7 convolution, but that is only ~0.1 M of ~24 M; its
# real cost is compute: three convolutions at 237 × 237 cost several GMACs where the 7 × 7 costs half a GMAC.
# The authors chose it for accuracy (it is their ImageNet model); the cost is a few percent of the whole.

# %% [markdown]
# ## 3. FCN vs PSPNet: parameters and FLOPs for ResNet-50 to 269
#
# The baseline of Tables 1–2 is the same network without the pyramid pooling module (`PSPNet(bins=())`):
# the classifier's 3 × 3 convolution then reads the 2048-channel map instead of the 4096-channel
# concatenation. We count parameters (the auxiliary head is used only in training, so we report both) and
# forward FLOPs at the crop size (`torch.utils.flop_counter`; 1 MAC = 2 FLOPs; convolutions only).

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
# Neither the paper nor the authors' PyTorch code (hszhao/semseg) states the models' sizes, so the reference
# values below are counted on that code: the parameters of `PSPNet(layers=50 or 101, classes=150)` as defined
# in hszhao/semseg, model/pspnet.py (with the deep-base ResNet of model/resnet.py), and the multiply-accumulates
# of its convolutions at each input size. Our counts follow the same convention (convolution weights, BN
# affine parameters and classifier biases; BN running statistics are buffers, not parameters).

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
# Both networks match the authors' code to the parameter, with and without the auxiliary head, and the
# multiply-accumulates match the reference count at every size.

# %%
m50 = on_meta(PSPNet, num_classes=150, backbone="resnet50")
assert count_parameters(m50) == 49_180_908 and count_parameters(m50) - count_parameters(m50.aux) == 46_782_550
m101 = on_meta(PSPNet, num_classes=150, backbone="resnet101")
assert count_parameters(m101) == 68_173_036 and count_parameters(m101) - count_parameters(m101.aux) == 65_774_678
assert abs(count_flops(m50, 473).gmacs - 161.9) < 0.1

# %% [markdown]
# ## 4. Where the compute goes
#
# The per-module counts of `FlopCounterMode` show which layers pay for PSPNet. We group them by stage and
# list the most expensive single layers of the model dissected here.

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
# The single 3 × 3 convolution 4096 → 512 of the classifier (`cls.0`) costs more than all of stages 1–3
# together: it runs at 60 × 60 on the widest input of the network. The pyramid pooling module itself is
# almost free (its 1 × 1 convolutions run on 1 × 1 to 6 × 6 maps).

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
# So "does not much increase" needs a qualifier. The pyramid pooling **module** adds 4 × 2048 × 512 ≈ 4.2 M
# parameters and well under 0.1 % of the compute. But it doubles the channels that the classifier reads
# (2048 → 4096), and the classifier's 3 × 3 convolution doubles with them: that is where the extra parameters
# and FLOPs of the table above come from. Against ResNet-269 the increase is under 10 %.

# %%
ppm_params = count_parameters(model.ppm)
extra = cost[backbone, "PSPNet"]["params"] - cost[backbone, "FCN"]["params"] if (backbone, "PSPNet") in cost else None
print(f"PPM parameters: {ppm_params:,} ({ppm_params / count_parameters(model):.1%} of PSPNet); "
      f"PPM compute: {rep.module('ppm') / 2e9:.3f} GMACs ({rep.share('ppm'):.3%})")
print(f"classifier 3x3 conv: {count_parameters(model.cls[0]):,} parameters, {rep.module('cls.0') / 2e9:.1f} GMACs")
if extra is not None:
    print(f"PSPNet - FCN: {extra:,} parameters = PPM {ppm_params:,} + wider classifier conv {extra - ppm_params:,}")

# %% [markdown]
# ## 5. Measured: one forward pass on this machine
#
# FLOPs are a model of cost; the clock is the truth on a given machine. We time the dilated FCN and PSPNet
# with real (random) weights, in eval mode, batch 1, at `time_size` (small on a CPU). Timings are noisy on
# a shared machine; we report the median of `time_iters` passes.

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
# The measured time ratio is close to the GMAC ratio: nearly all the time goes to large convolutions, and
# the one PSPNet adds is the most efficient kind (big, regular). Layers that FLOPs ignore (BN, ReLU, the
# pooling levels, upsampling) make up the rest; on a GPU their share is larger.

# %% [markdown]
# ## Record and summary

# %%
seconds = time.perf_counter() - chapter_start
metrics = {"shapes": {k: list(v) for k, v in shapes.items()},
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

# %% [markdown]
# **What we saw.**
# - The dilated ResNet keeps a 60 × 60 map (1/8 of 473) through stages 3 and 4, with the same weights as a
#   plain ResNet; "full" and "contracted" dilation differ only in the first block of each stage.
# - Our PSPNet-50 and PSPNet-101 have exactly the parameter counts of the authors' code (hszhao/semseg,
#   model/pspnet.py), and 161.9 GMACs at 473 × 473 for PSPNet-50.
# - PSPNet over the dilated FCN: about +41 % parameters and +27 % compute with ResNet-50, +12 % and +8.5 %
#   with ResNet-269. The pyramid pooling module itself is nearly free; the cost is the classifier's 3 × 3
#   convolution on twice as many channels, which alone is 42 % of PSPNet-50's multiply-accumulates.
#
# **Exercises.**
# 1. Replace the classifier's 3 × 3 convolution by a 1 × 1 (as SMP does) in a copy of the model: how do the
#    parameters and GMACs change? What receptive field does the head lose?
# 2. Count FLOPs at 713 × 713 with 19 classes (Cityscapes). Why is the increase over 473 not (713/473)²?
#    (Hint: look at the map sizes, 90 vs 60.)
# 3. Build `PSPNet(output_stride=16)`: how much compute does it save, and what happens to the 6 × 6 bins
#    of the pyramid on a 30 × 30 map?
#
# **Run it for real.** Other settings need no code edits, e.g. Cityscapes-sized counts and a GPU timing:
#
# ```
# papermill book/03_architecture.ipynb out.ipynb -p crop_size 713 -p num_classes 19 -p time_size 713 -p device cuda
# papermill book/03_architecture.ipynb out.ipynb -p backbone resnet101 -p depths resnet50,resnet101
# ```

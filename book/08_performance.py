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
# # 08 · Performance: where a training step spends its time, and what the speed knobs buy
#
# **Paper:** no section of its own. The paper trains PSPNet for 150K iterations at batch 16 on ADE20K (§5.1)
# on GPUs of 2016, with batch normalization over data gathered from several GPUs (§5.1, quoted in section 4);
# how long that takes today decides whether a reader can reproduce Tables 1-8 at all. This chapter measures
# instead of guessing:
#
# 1. **FLOPs**: which layers of the full PSPNet-50 cost the most (the 3 × 3 4096 → 512 classifier conv is
#    a surprise), counted with `torch.utils.flop_counter` at the paper's 473 crop;
# 2. **the profiler**: `torch.profiler` on real training steps of a small model (forward, loss, backward,
#    optimizer step), top operators and time per module next to the FLOP shares;
# 3. **the knobs**: bf16 autocast, `channels_last`, `torch.compile`, measured by `pspnet_lite.bench` in this
#    run, with fp32 + contiguous + eager as the reference row;
# 4. **SyncBN**: what synchronising BatchNorm across processes (§5.1) costs: count of all-reduces and bytes for
#    PSPNet-50, and a measured two-process run on CPU (gloo);
# 5. **the GPU goal** in FLOP/s;
# 6. **deployment**: the network exported to ONNX and run by onnxruntime on a CPU, next to eager PyTorch (a stored
#    benchmark record, read here, not re-run).
#
# With `-p device cuda` the same cells give GPU numbers. The project's goal for the GPU path is
# **≥ 200 images/s training PSPNet-50 at 473 × 473 in bf16 on one H100**; it is **not yet measured on a
# GPU** (a CPU run of this chapter cannot measure it); section 5 shows what it implies.
#
# **Measured default run time:** see the README's table (`time papermill` with the defaults on a 2-core CPU).

# %%
import inspect
import json
import shutil
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile, record_function

from pspnet_lite import bench, book
from pspnet_lite.book.complexity import count_flops, on_meta
from pspnet_lite.book.plan import CPU_BF16_FLAGS, cpu_flags, peak_tflops
from pspnet_lite.book.viz import use_book_style
from pspnet_lite.losses import DeepSupervisionLoss
from pspnet_lite.model import PSPNet
from pspnet_lite.train import get_preset, run_grid
from pspnet_lite.train.trainer import param_groups

# %% tags=["parameters"]
backbone = "lite"  # model profiled and benchmarked ("lite" on CPU; "resnet50" on a GPU)
num_classes = 16  # output classes (16: ContextScenes, 150: ADE20K)
crop_size = 128  # square input of the profiled/benchmarked steps (the paper: 473)
batch_size = 8  # images per step (the paper: 16)
profile_steps = 3  # training steps recorded by torch.profiler (after one warm-up step)
precisions = "fp32,bf16"  # autocast precisions benchmarked ("fp16" too on a GPU)
memory_formats = "contiguous,channels_last"  # memory formats benchmarked
compile = False  # also benchmark torch.compile rows (off: compiling takes minutes on a 2-core CPU)
bench_warmup = 1  # untimed steps per benchmark row (compilation happens here)
bench_iters = 3  # timed steps per benchmark row
bench_isolate = True  # CPU: each benchmark row in a fresh process (honest memory column; False is faster)
syncbn_procs = 2  # processes for the measured SyncBN run on CPU (0: skip the measurement)
syncbn_iters = 12  # training iterations per SyncBN run
flop_crop = 473  # input size of the FLOP count of the full PSPNet-50
threads = None  # torch CPU threads (None: torch's default)
seed = 0  # seed of the model initialisation and inputs
device = "auto"  # "auto", "cpu" or "cuda"
out_dir = "runs/08_performance"  # benchmark JSON, figures and the record (relative to the repository root)
onnx_record = "results/onnx_cpu_benchmark.json"  # stored onnxruntime vs PyTorch CPU benchmark read by section 6

# %%
device = book.setup(device, seed, threads)
use_book_style()
prec_list = book.parse_list(precisions, str)
fmt_list = book.parse_list(memory_formats, str)
out = book.resolve_path(out_dir)
out.mkdir(parents=True, exist_ok=True)
n_rows = len(prec_list) * len(fmt_list) * (2 if compile else 1)
print(f"model PSPNet/{backbone}, {num_classes} classes, crop {crop_size}, batch {batch_size}, device {device}\n"
      f"benchmark: {n_rows} rows x (train, infer) x ({bench_warmup} warm-up + {bench_iters} timed steps); "
      f"SyncBN run: {syncbn_procs or 'skipped'} processes; out={out}")
print("estimate on a 2-core CPU with the defaults: ~3 min (torch.compile rows add minutes of compilation)")
chapter_start = time.perf_counter()

# %% [markdown]
# ## 1. FLOPs: what the full PSPNet-50 computes
#
# We build the full model on the `meta` device (no memory, no arithmetic) and count the forward FLOPs of a
# training step at 473 × 473, per module. A training step costs roughly three forward passes (the backward
# pass computes gradients for both activations and weights, about twice the forward).

# %%
full = on_meta(PSPNet, num_classes=150, backbone="resnet50")
flops = count_flops(full, flop_crop, train=True)
groups = {"stem": ["backbone.conv1", "backbone.conv2", "backbone.conv3"],
          **{f"stage {i}": [f"backbone.layer{i}"] for i in range(1, 5)},
          "PPM": ["ppm"], "cls 3x3 conv 4096->512": ["cls.0"], "cls rest": ["cls.4"], "aux head": ["aux"]}
shares = {g: sum(flops.share(m) for m in ms) for g, ms in groups.items()}
print(f"PSPNet-50 training forward at {flop_crop}: {flops.gmacs:.1f} GMACs per image")
for g, s in shares.items():
    print(f"  {g:<24} {100 * s:5.1f}%")
cls_share = flops.share("cls.0")
cls_side = -(-flop_crop // 8)  # the 1/8 feature map, ceil(473 / 8) = 60
print(f"cls 3x3 conv: {full.cls[0].weight.numel() / 1e6:.1f} M weights at {cls_side} x {cls_side} = "
      f"{cls_side ** 2:,} positions -> {cls_share * flops.gmacs:.1f} GMACs per image; stem + stages 1-2: "
      f"{100 * (shares['stem'] + shares['stage 1'] + shares['stage 2']):.1f}%")

# %% [markdown]
# The one 3 × 3 convolution that fuses the pyramid (4096 channels in, 512 out, at 1/8 resolution: 60 × 60
# at 473) is the most expensive single layer of the network: the last line above gives its weights, the
# positions they see and its MACs per image, more than the whole of stage 4. The dilated stages 3 and 4 (kept
# at 1/8 resolution instead of 1/16 and 1/32) are next; the pooling branches themselves are almost free (they
# run on 1 × 1 to 6 × 6 maps), and the stem and stages 1-2 together are a small share (printed last).
#
# ## 2. The profiler: a real training step
#
# On a model small enough to run here, we record `profile_steps` full training steps (the trainer's step:
# forward, deep-supervision loss, backward, SGD with the 10× head learning rate), each phase labelled with
# `record_function`. Throughput, here and in every table of this chapter, is images per second of a step of
# $B$ images (`batch_size`) that takes $t_\mathrm{step}$ seconds:
#
# $$\mathrm{throughput} = \frac{B}{t_\mathrm{step}}\ \ \mathrm{images/s}, \qquad
#   t_\mathrm{step} = t_\mathrm{forward} + t_\mathrm{loss} + t_\mathrm{backward} + t_\mathrm{optimizer}$$

# %%
torch.manual_seed(seed)
model = PSPNet(num_classes=num_classes, backbone=backbone).to(device).train()
opt = torch.optim.SGD(param_groups(model, 0.01, 10.0), lr=0.01, momentum=0.9, weight_decay=1e-4)
crit = DeepSupervisionLoss(0.4)
x = torch.randn(batch_size, 3, crop_size, crop_size, device=device)  # (B, 3, crop, crop)
y = torch.randint(0, num_classes, (batch_size, crop_size, crop_size), device=device)  # (B, crop, crop)


def train_step():
    with record_function("forward"):
        outputs = model(x)  # (main, aux) logits, each (B, C, crop, crop)
    with record_function("loss"):
        loss, _ = crit(outputs, y)
    with record_function("backward"):
        loss.backward()
    with record_function("optimizer"):
        opt.step()
        opt.zero_grad(set_to_none=True)


train_step()  # warm-up: allocator, kernels, first-call overheads
activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
with profile(activities=activities) as prof:
    for _ in range(profile_steps):
        train_step()
    if device.type == "cuda":
        torch.cuda.synchronize()

# %%
sort_key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
averages = prof.key_averages()
self_key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"  # the same, as an attribute
top_ops = [e.key for e in sorted(averages, key=lambda e: getattr(e, self_key), reverse=True)[:12]]  # the table's rows
print(averages.table(sort_by=sort_key, row_limit=12, max_name_column_width=40))

# %% [markdown]
# Sorted by *self* time (time inside the operator, not its children). The convolution operators and their
# backward (`convolution_backward`) lead; BatchNorm, ReLU and the element-wise optimizer updates follow.

# %%
def total_ms(event) -> float:
    us = event.device_time_total if device.type == "cuda" else event.cpu_time_total
    return us / 1000 / profile_steps


phases = {e.key: total_ms(e) for e in averages if e.key in ("forward", "loss", "backward", "optimizer")}
step_ms = sum(phases.values())
for name, ms in phases.items():
    print(f"{name:<10} {ms:8.1f} ms per step  ({100 * ms / step_ms:4.1f}%)")
print(f"step       {step_ms:8.1f} ms -> {batch_size / step_ms * 1000:.1f} images/s (under the profiler)")

# %% [markdown]
# The FLOP argument says backward ≈ 2 × forward (gradients for activations and for weights). On a CPU the
# measured ratio is often lower, because the forward pass also pays for memory-bound operators (BatchNorm,
# ReLU, upsampling) whose backward is cheap; the loss and the SGD update are small either way. Which modules
# does the forward time go to? Forward hooks time each top-level part of the network (wall-clock; on a GPU we
# synchronise first, so the numbers are per module there too).

# %%
parts = {"stem convs": [model.backbone.conv1, model.backbone.conv3],
         **{f"stage {i}": [getattr(model.backbone, f"layer{i}")] for i in range(1, 5)},
         "PPM": [model.ppm], "cls": [model.cls], "aux head": [model.aux]}
sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
module_ms = {name: 0.0 for name in parts}
start = {}


def timing_hooks(name, first, last):
    def enter(module, args):  # returns None: the inputs are left alone
        sync()
        start[name] = time.perf_counter()

    def leave(module, args, output):
        sync()
        module_ms[name] += 1000 * (time.perf_counter() - start[name])

    return [first.register_forward_pre_hook(enter), last.register_forward_hook(leave)]


hooks = [h for name, mods in parts.items() for h in timing_hooks(name, mods[0], mods[-1])]
for _ in range(profile_steps):
    with torch.no_grad():
        model(x)
for h in hooks:
    h.remove()
module_ms = {k: v / profile_steps for k, v in module_ms.items()}

# %%
small_flops = count_flops(model, crop_size, train=True)
small_groups = {"stem convs": ["backbone.conv1", "backbone.conv2", "backbone.conv3"],
                **{f"stage {i}": [f"backbone.layer{i}"] for i in range(1, 5)},
                "PPM": ["ppm"], "cls": ["cls"], "aux head": ["aux"]}
flop_share = {g: sum(small_flops.share(m) for m in ms) for g, ms in small_groups.items()}
time_share = {k: v / sum(module_ms.values()) for k, v in module_ms.items()}
print(f"{'module':<10} {'forward ms':>10} {'time %':>7} {'FLOP %':>7}")
for k in parts:
    print(f"{k:<10} {module_ms[k]:>10.2f} {100 * time_share[k]:>6.1f}% {100 * flop_share[k]:>6.1f}%")

# %%
names = list(parts)
ypos = np.arange(len(names))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw=dict(wspace=0.6))
axes[0].barh(ypos - 0.2, [100 * time_share[k] for k in names], 0.4, label=f"forward time ({device.type})")
axes[0].barh(ypos + 0.2, [100 * flop_share[k] for k in names], 0.4, label="FLOPs")
axes[0].set(yticks=ypos, yticklabels=names, xlabel="share of the forward pass (%)",
            title=f"PSPNet/{backbone} at {crop_size}: time vs FLOPs")
axes[0].invert_yaxis()
axes[0].legend()
full_names = list(shares)
axes[1].barh(np.arange(len(full_names)), [100 * shares[k] for k in full_names], color="C2")
axes[1].set(yticks=np.arange(len(full_names)), yticklabels=full_names, xlabel="share of FLOPs (%)",
            title=f"PSPNet-50 at {flop_crop}: cls 3x3 conv = {100 * cls_share:.0f}% of FLOPs")
axes[1].invert_yaxis()
slowest = max(time_share, key=time_share.get)
fig.suptitle(f"The 4096->512 classifier conv is {100 * cls_share:.0f}% of PSPNet-50's FLOPs; on {device.type} the lite "
             f"model's largest time share is {slowest} ({100 * time_share[slowest]:.0f}%)")
fig.savefig(out / "time_vs_flops.png", bbox_inches="tight")
plt.show()

# %% [markdown]
# Where time and FLOP shares differ, the difference is memory traffic and small-kernel overhead: BatchNorm,
# ReLU and the upsampling of 8× logits to full size cost time but almost no FLOPs, and on a CPU the small
# lite model is far from compute-bound. In the full model the heavy layers dominate even more.
#
# ## 3. What the speed knobs buy: `pspnet_lite.bench`
#
# `pspnet_lite.bench` times a full training step and an inference forward for every combination of
# precision, memory format and compilation, each row in a fresh process on a CPU (so memory numbers do not
# leak between rows), with fp32 + contiguous + eager as the reference row. Its measuring function:

# %%
print(inspect.getsource(bench.measure).split("    sync =")[0])

# %%
argv = ["--backbone", backbone, "--num-classes", str(num_classes), "--crop", str(crop_size),
        "--batch", str(batch_size), "--device", str(device), "--precisions", *prec_list,
        "--memory-formats", *fmt_list, "--warmup", str(bench_warmup), "--iters", str(bench_iters),
        "--json", str(out / "bench.json")] + (["--compile"] if compile else []) + (
        [] if bench_isolate else ["--no-isolate"]) + (
        ["--threads", str(threads)] if threads else [])
print("python -m pspnet_lite.bench " + " ".join(argv))
with book.Timer() as bench_timer:
    rows = bench.main(bench.get_args_parser().parse_args(argv))
print(f"(benchmark took {bench_timer.seconds:.0f} s)")

# %%
labels = [f"{r['precision']}/{r['memory_format']}/{'compile' if r['compile'] else 'eager'}" for r in rows]
fig, ax = plt.subplots(figsize=(7, 0.6 + 0.45 * len(rows)))
for k, mode in enumerate(("train", "infer")):
    ax.barh(np.arange(len(rows)) + (k - 0.5) * 0.4, [r[mode]["speedup"] for r in rows], 0.4, label=mode)
ax.axvline(1.0, color="k", lw=0.8)
ax.set(yticks=np.arange(len(rows)), yticklabels=labels, xlabel="speed-up over fp32/contiguous/eager (x)")
ax.invert_yaxis()
ax.legend()
best = max(rows, key=lambda r: r["train"]["speedup"])
ax.set_title(f"{device.type.upper()}: best training row {labels[rows.index(best)]} at "
             f"{best['train']['speedup']:.2f}x ({best['train']['images_per_s']:.1f} img/s)")
fig.savefig(out / "bench_speedups.png", bbox_inches="tight")
plt.show()

# %% [markdown]
# Read the speed-ups against the hardware (the next cell prints this CPU's bf16 support). A CPU without bf16
# instructions (AVX512-BF16, AMX) emulates bf16 and autocast only adds conversions; one with them runs oneDNN's
# bf16 convolutions faster, more so for inference than for training, whose backward and fp32 weight updates
# stay partly in fp32. `channels_last` is the layout oneDNN's convolutions prefer, so it saves the
# reorders between layouts. On an
# H100, bf16 runs on tensor cores (about 2× the dense throughput of TF32 and far above fp32),
# `channels_last` is what cuDNN's fastest convolution kernels want, and `torch.compile` fuses the
# BatchNorm/ReLU/element-wise chains that the profiler above showed as pure memory traffic. Timings on a
# shared machine are noisy: a few percent either way is not a finding.

# %%
print(f"{device.type}: " + (torch.cuda.get_device_name(device) if device.type == "cuda" else
      "bf16 instructions: " + (", ".join(sorted(cpu_flags() & {*CPU_BF16_FLAGS, "amx_tile"})) or "none found")))

# %% [markdown]
# ## 4. SyncBatchNorm: what synchronising BN costs
#
# The paper's batch of 16 is spread over several GPUs, and its BatchNorm layers see all of it:
#
# > "During the course of experiments, we notice that an appropriately large "cropsize" can yield good
# > performance and "batchsize" in the batch normalization [14] layer is of great importance." (§5.1)
#
# > "Due to limited physical memory on GPU cards, we set the "batchsize" to 16 during training." (§5.1)
#
# > "make it support batch normalization on data gathered from multiple GPUs based on OpenMPI." (§5.1)
#
# PyTorch's `SyncBatchNorm` does the same over `torch.distributed`: every BN layer all-reduces its
# per-channel statistics in the forward pass and the corresponding gradients in the backward pass
# (`pspnet_lite.train.distributed.convert_sync_batchnorm`). How much is that for PSPNet-50?

# %%
bn_layers = [m for m in full.modules() if isinstance(m, torch.nn.BatchNorm2d)]
bn_channels = sum(m.num_features for m in bn_layers)
# torch.nn.SyncBatchNorm: forward all-gathers (mean, invstd, count) = 2C+1 floats per rank, backward
# all-reduces (sum_dy, sum_dy_xmu) = 2C floats
floats_per_step = sum(2 * m.num_features + 1 + 2 * m.num_features for m in bn_layers)
print(f"PSPNet-50: {len(bn_layers)} BN layers, {bn_channels:,} channels -> {2 * len(bn_layers)} collective "
      f"calls and ~{floats_per_step * 4 / 1e6:.2f} MB fp32 per rank per step")
n_weights = sum(p.numel() for p in full.parameters())
print(f"for comparison, DDP all-reduces the gradients of all {n_weights / 1e6:.1f} M parameters: "
      f"{n_weights * 4 / 1e6:.0f} MB fp32 per step")

# %% [markdown]
# The bytes are negligible next to the gradients DDP all-reduces anyway (the second line); the cost is the
# *latency* of the many small collectives (the first line's count) that sit on the critical path, each a
# synchronisation point between the forward layers. We measure it on this CPU: the same tiny training, launched with
# `torchrun` on `syncbn_procs` gloo processes of one thread each (`run_grid(..., launcher="torchrun")`, unless
# `OMP_NUM_THREADS` says otherwise), with and without `sync_bn` (the trainer's `CPUSyncBatchNorm`; on GPUs it
# is `torch.nn.SyncBatchNorm` over NCCL).

# %%
def syncbn_run(sync_bn: bool) -> float:
    """Images/s of a short multi-process training (scenes-tiny preset), from the run's training records."""
    cfg = get_preset("scenes-tiny", iters=syncbn_iters, sync_bn=sync_bn, log_every=4, batch_size=2 * syncbn_procs,
                     val_split=None, progress=False, device="cpu")
    cache = out / f"syncbn_{'on' if sync_bn else 'off'}"
    shutil.rmtree(cache, ignore_errors=True)  # a throughput is measured afresh, never read from the cache
    [result] = run_grid([cfg], cache, launcher="torchrun", nproc_per_node=syncbn_procs)
    speeds = [r["images_per_s"] for r in result.train_records()][1:]  # drop the warm-up window
    return float(np.mean(speeds))


syncbn = {}
if syncbn_procs:
    syncbn = {"plain BN": syncbn_run(False), "SyncBN": syncbn_run(True)}
    for k, v in syncbn.items():
        print(f"{k:<9} {v:6.1f} images/s ({syncbn_procs} CPU processes, gloo)")
    print(f"SyncBN / plain BN throughput: {syncbn['SyncBN'] / syncbn['plain BN']:.2f}")

# %% [markdown]
# Read the ratio above for what it is: on a CPU each gloo collective is a round trip through the operating
# system, the trainer's `CPUSyncBatchNorm` computes its statistics in float64, and a small model's step is
# short, so the 2 × (number of BN layers) synchronisation points per step weigh heavily here. On GPUs with
# NCCL the same collectives take microseconds and toolbox users report SyncBN costing a few percent of step
# time; it buys the paper's BN batch of 16 when each GPU holds only 2 images.
#
# ## 5. The GPU goal: 200 images/s for PSPNet-50 at 473 in bf16
#
# The project aims at ≥ 200 training images/s for PSPNet-50 at 473 × 473 in bf16 on one H100 (paper
# recipe: deep stem, output stride 8, aux head). It is **not yet measured on a GPU** (`-p device cuda` on an
# H100 measures it: section 3's table). What would it take? From the forward MACs $M$ of section 1 (one
# multiply-add is 2 FLOPs, and backward ≈ 2 × forward), a training step of $B$ images costs
#
# $$\mathrm{FLOPs}_\mathrm{step} \approx 3 \cdot 2M \cdot B,$$
#
# and a throughput $T$ (images/s) uses this fraction of the GPU's dense peak $P$ (FLOP/s):
#
# $$\mathrm{fraction\ of\ peak} = \frac{T \cdot 3 \cdot 2M}{P}.$$

# %%
train_tflop_per_image = 3 * 2 * flops.macs / 1e12  # forward + backward (2x forward) in FLOPs
need = 200 * train_tflop_per_image
h100_bf16_dense = peak_tflops("NVIDIA H100 80GB HBM3", "bf16")  # TFLOP/s, the SXM part's data sheet (dense)
print(f"one training image at {flop_crop}: ~{train_tflop_per_image:.2f} TFLOP -> 200 img/s needs "
      f"~{need:.0f} TFLOP/s = {100 * need / h100_bf16_dense:.0f}% of an H100's dense bf16 peak "
      f"({h100_bf16_dense:.0f} TFLOP/s)")

# %% [markdown]
# Sustaining that fraction of peak needs the whole kit from section 3: bf16 autocast, `channels_last`,
# `torch.compile` (to fuse BN/ReLU and the loss), a data pipeline that decodes and augments 200 images/s
# (chapter 04b's OpenCV transforms, several workers), and a batch large enough to fill the GPU. Measure it
# with `python -m pspnet_lite.bench --backbone resnet50 --crop 473 --batch 16 --device cuda --precisions fp32
# bf16 --memory-formats contiguous channels_last --compile` and put the number in the record below.

# %%
assert all(r["train"]["images_per_s"] > 0 and r["infer"]["images_per_s"] > 0 for r in rows)
assert rows[0]["precision"] == "fp32" and abs(rows[0]["train"]["speedup"] - 1) < 1e-9
assert 0 < cls_share < 1 and abs(sum(flop_share.values()) - 1) < 0.05
seconds = time.perf_counter() - chapter_start
record = book.write_record(
    out / "record.json", name="08_performance",
    config=dict(backbone=backbone, num_classes=num_classes, crop_size=crop_size, batch_size=batch_size,
                precisions=prec_list, memory_formats=fmt_list, compile=compile, bench_iters=bench_iters,
                syncbn_procs=syncbn_procs),
    metrics={"pspnet50_train_gmacs": flops.gmacs, "flop_crop": flop_crop, "flop_shares": shares,
             "cls_conv_flop_share": cls_share, "phase_ms": phases, "profiled_img_s": batch_size / step_ms * 1000,
             "top_self_time_ops": top_ops,
             "module_forward_ms": module_ms, "module_time_share": time_share, "module_flop_share": flop_share,
             "bench": [{"row": label, "train_img_s": r["train"]["images_per_s"],
                        "train_speedup": r["train"]["speedup"], "infer_img_s": r["infer"]["images_per_s"],
                        "infer_speedup": r["infer"]["speedup"]} for label, r in zip(labels, rows)],
             "bn_layers": len(bn_layers), "bn_channels": bn_channels, "syncbn_mb_per_step": floats_per_step * 4 / 1e6,
             "syncbn_img_s": syncbn, "train_tflop_per_image": train_tflop_per_image, "h100_goal_tflops": need,
             "h100_goal_peak_share": need / h100_bf16_dense, "h100_goal_img_s": 200,
             "h100_goal_measured": device.type == "cuda"},
    seconds=seconds, device=device)
print(f"record: {record}  ({seconds / 60:.1f} min on {device})")

# %% [markdown]
# ## 6. Deployment: the network in ONNX, run by onnxruntime on a CPU
#
# A trained network often runs where a PyTorch install is not wanted: an inference server, an edge device.
# `python -m pspnet_lite.export` writes the network's logits as one ONNX file, and `python -m pspnet_lite.predict
# --backend onnxruntime` runs it under the same test protocols as the PyTorch model (sliding window, flip,
# multi-scale; `pspnet_lite.onnx_runtime.OnnxModel` has the model's call signature, so the protocol code is the
# same):
#
# ```
# python -m pspnet_lite.export runs/lite/best.pt --onnx lite.onnx --size 473 473
# python -m pspnet_lite.predict photo.jpg --backend onnxruntime --onnx lite.onnx --out predictions/
# ```
#
# The export has **one fixed input size**, and the pyramid is the reason. Each level pools the $h \times w$ feature
# map into $b \times b$ bins, bin $i$ covering rows $\lfloor i h / b \rfloor$ to $\lceil (i + 1) h / b \rceil$:
#
# > "The following pyramid level separates the feature map into different sub-regions and forms pooled
# > representation for different locations." (§3.2)
#
# Those windows depend on $h$ and $w$, and ONNX has no adaptive pooling; at a known map size the exporter writes
# each level as fixed gathers and means. So the sliding window runs the exported crop on each window (any image
# size), and a whole-image prediction needs an image of the exported size. The size is rounded up to $8n + 1$ for
# networks trained on $8n + 1$ crops (the paper's 473), the size predict feeds them. At export time onnxruntime and
# eager PyTorch run the same input and the largest logit difference is printed; above $10^{-3}$ the export fails.
#
# `benchmarks/bench_onnx.py` timed both on this project's CPU: the authors' ADE20K PSPNet-50 with random weights
# (speed does not depend on the weights' values), fp32, batch 1, the same number of threads for each, a whole
# 473 × 473 image and a sliding window of 473 over a larger image, interleaved repeats, median. The record (not
# re-run here; it takes minutes):

# %%
onnx_bench = json.loads(book.resolve_path(onnx_record).read_text())
cfg_o, m_o = onnx_bench["config"], onnx_bench["metrics"]
print(f"{onnx_record}: PSPNet {cfg_o['backbone']}, {cfg_o['num_classes']} classes, exported at {cfg_o['size']}, "
      f"{cfg_o['threads']} threads each, median of {cfg_o['repeats']}; {onnx_bench['cpu_model']}, "
      f"{onnx_bench['hardware']['cpu_count']} cores; "
      f"{', '.join(f'{k} {v}' for k, v in onnx_bench['versions'].items())}")
print(f"command: {onnx_bench['command']}; export check: max |logit difference| "
      f"{m_o['export_max_abs_logit_diff']:.1e}; load average before/after: "
      f"{onnx_bench['load_average_before'][0]:.1f} / {onnx_bench['load_average_after'][0]:.1f}")
print(f"{'protocol':<16} {'image':>9} {'passes':>6} {'PyTorch s':>10} {'onnxruntime s':>14} {'speed-up':>9} "
      f"{'max prob diff':>14}")
for name, r in m_o["rows"].items():
    print(f"{name:<16} {'x'.join(map(str, r['image'])):>9} {r['forward_passes']:>6} {r['pytorch_s']['median']:>10.2f} "
          f"{r['onnxruntime_s']['median']:>14.2f} {r['speedup_median']:>8.2f}x {r['max_prob_diff']:>14.1e}")

# %%
names_o = list(m_o["rows"])
fig, ax = plt.subplots(figsize=(7, 2.6))
for k, backend in enumerate(("pytorch", "onnxruntime")):
    ax.barh(np.arange(len(names_o)) + (k - 0.5) * 0.4, [m_o["rows"][n][f"{backend}_s"]["median"] for n in names_o],
            0.4, label={"pytorch": "eager PyTorch", "onnxruntime": "onnxruntime"}[backend])
ax.set(yticks=np.arange(len(names_o)), yticklabels=names_o, xlabel=f"seconds per image (median, {cfg_o['threads']} "
       "CPU threads)")
ax.invert_yaxis()
ax.legend()
ax.set_title(f"PSPNet {cfg_o['backbone']} at {cfg_o['size']}: onnxruntime " + ", ".join(
    f"{m_o['rows'][n]['speedup_median']:.2f}x ({n})" for n in names_o) + " of eager PyTorch's speed")
fig.savefig(out / "onnx_vs_pytorch.png", bbox_inches="tight")
plt.show()

# %% [markdown]
# The two backends compute the same network: their probabilities differ by float rounding only (the last column).
# The speed-up comes from what a fixed graph allows before the first image: the export folds every BatchNorm into the
# weights of the convolution before it, and onnxruntime fuses each ReLU and residual addition into its convolution
# and runs them in a blocked channel layout (NCHWc), so the memory-bound operators of section 2 stop being separate
# passes over memory; it also plans every buffer for the one input shape. The sliding window runs the same 473 graph
# once per window, so its gain is of the same kind as the whole image's.
#
# Read the seconds with the load averages printed above (a load near the core count means other work shared the
# machine). Each repeat ran PyTorch and onnxruntime back to back, so a row's ratio is fairer than its seconds; still,
# measure on the machine and with the threads you will deploy with before relying on the speed-up.

# %% [markdown]
# ## Summary
#
# - A PSPNet-50 training image at 473 costs ~3 × the forward FLOPs printed above; the 3 × 3 4096 → 512
#   classifier conv alone is the share printed in section 1 (about two fifths), the dilated stages 3-4 most of
#   the rest, the pooling branches nearly nothing.
# - The FLOP count puts forward : backward at about 1 : 2, with the loss and the SGD update small; the profiler
#   shows how this machine splits a step (section 2), and BN, ReLU and upsampling take more time than their
#   FLOPs suggest (memory-bound).
# - bf16, `channels_last` and `torch.compile` are hardware questions: measure them (the table above) on
#   the machine you train on. SyncBN sends ~2 collectives per BN layer per step; small in bytes.
# - The H100 goal of ≥ 200 img/s (PSPNet-50, 473, bf16) is a target, not yet measured on a GPU; section 5
#   gives the fraction of the H100's peak it needs.
# - For deployment, a fixed-size ONNX export run by onnxruntime agrees with PyTorch to float rounding, and on this
#   CPU it runs PSPNet-50 faster than eager PyTorch by the ratios of section 6, whole image and sliding window alike.

# %% [markdown]
# ## Exercises
#
# Timings change from machine to machine and from run to run: compare shares and ratios, not milliseconds.

# %% [markdown]
# **1.** Re-run with `-p backbone resnet50 -p crop_size 257 -p batch_size 2`: does the time share of the cls
# conv approach its FLOP share as the model gets bigger?
#
# <details><summary>Hint</summary>
#
# Section 2's table of modules prints both shares for the profiled model; the FLOP share of `cls` hardly
# depends on the input size, because the cls conv and the dilated stages 3-4 all run on the same 1/8 map.
#
# </details>
#
# <details><summary>Answer</summary>
#
# Expect the `cls` row's time share to move up towards its FLOP share, and the memory-bound parts (the
# stem's full-resolution BN/ReLU, the upsampling of the logits) to fall back towards theirs. A
# convolution with 4096 input channels and 18.9 M weights (section 1) does enough arithmetic per byte it
# reads to keep the CPU's vector units busy; the lite model's convolutions are so small that per-call overhead
# and memory traffic dominate, which is why its time and FLOP shares differ. The match will not be exact on a
# CPU (oneDNN is faster on some shapes than others); on a GPU with bf16 the largest convolutions come closest
# to their FLOP share. The step is slow: ResNet-50 at 257 × 257 is tens of GMACs per image.
#
# </details>

# %% [markdown]
# **2.** Count the FLOPs of the FCN baseline (`PSPNet(bins=())`): how much of PSPNet's extra cost is the cls
# conv?
#
# <details><summary>Hint</summary>
#
# Without pyramid levels the cls conv sees only the backbone's 2048 channels instead of the 4096 of the
# concatenation; everything else in the backbone and the aux head is the same.
#
# </details>
#
# <details><summary>Answer</summary>
#
# ```python
# fcn = on_meta(PSPNet, num_classes=150, backbone="resnet50", bins=())
# fcn_flops = count_flops(fcn, flop_crop, train=True)
# extra = flops.gmacs - fcn_flops.gmacs
# cls_extra = cls_share * flops.gmacs - fcn_flops.share("cls.0") * fcn_flops.gmacs
# ppm = flops.share("ppm") * flops.gmacs
# print(f"PSPNet - FCN: {extra:.2f} GMACs, of which the cls conv {cls_extra:.2f}; the PPM {ppm:.2f}")
# ```
#
# The cls conv's MACs are proportional to its input channels, so in the FCN it costs exactly half of
# PSPNet's; the other half is PSPNet's extra cost almost entirely, because the PPM's four 1 × 1 convolutions
# run on 1 × 1 to 6 × 6 maps. The paper's claim
#
# > "In terms of computational cost, our PSPNet does not much increase it compared to the original dilated
# > FCN network." (§3.3)
#
# holds for the pyramid itself; what PSPNet does add is the wider fusion conv, about a fifth of its forward
# MACs (half of the cls conv's share printed in section 1).
#
# </details>

# %% [markdown]
# **3.** Set `-p compile True`: how many warm-up steps does compilation take, and when does it pay off?
#
# <details><summary>Hint</summary>
#
# `bench_warmup` is the number of untimed steps; compilation happens in the first one (training and
# inference compile separately). Time a row's first step against the timed ones, then work out a
# break-even number of steps.
#
# </details>
#
# <details><summary>Answer</summary>
#
# The first call of the compiled model traces and compiles the forward and backward graphs, so one warm-up
# step takes the whole compilation (a change of input shape or of train/eval mode compiles again); after that
# each step costs $t_\mathrm{compiled}$ instead of $t_\mathrm{eager}$. Compiling pays off after
#
# $$N = \frac{t_\mathrm{compile}}{t_\mathrm{eager} - t_\mathrm{compiled}}$$
#
# steps, and never if the compiled step is not faster. On this chapter's CPU benchmark (3 timed steps) it
# cannot pay off; for a 150K-iteration GPU training, where fusing BN/ReLU chains saves a share of every step,
# minutes of compilation are a small price.
#
# </details>

# %% [markdown]
# **Run it for real** (one GPU):
#
# ```
# papermill book/08_performance.ipynb out.ipynb -p device cuda -p backbone resnet50 -p num_classes 150 \
#     -p crop_size 473 -p batch_size 16 -p precisions fp32,bf16,fp16 -p compile True -p bench_iters 20 \
#     -p bench_warmup 5 -p syncbn_procs 0
# torchrun --nproc_per_node 8 -m pspnet_lite.train --preset ade20k-pspnet50 --data-root /data/ade \
#     --amp bf16 --channels-last --compile
# ```

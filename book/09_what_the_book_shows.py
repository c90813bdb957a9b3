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
# # 09 · What the book shows: the claims ledger
#
# **Paper:** all of it, and its summary:
#
# > "The global pyramid pooling feature provides additional contextual information. We have also provided a deeply
# > supervised optimization strategy for ResNet-based FCN network." (§6)
#
# Every chapter before this one declared the claims it tests before it trained, and decided them from its runs with
# the book's statistics helper (paired 95% t-intervals over fresh seeds, Holm's correction within a family;
# chapter 05 explains it). This chapter trains nothing: it reads the stored records in `results/` and puts every
# claim of the paper in one ledger, with the chapter that tests it, the verdict and its interval, and, where the book
# cannot test a claim on a CPU, the command that tests it on the real data. Then Table 4 as a waterfall, with the
# book's CPU analogue beside each step.
#
# **What the verdicts can mean.** They come from ContextScenes, a synthetic data set built so that the paper's
# mechanisms can act (chapter 00), with small networks trained from scratch for minutes. A claim *shown* here means
# the mechanism works where the data needs it; *not resolved* means this budget cannot tell; *reversed* would be
# evidence against the mechanism as implemented. None of them is evidence about ADE20K, VOC or Cityscapes.

# %%
import matplotlib.pyplot as plt
import numpy as np

from pspnet_lite import book
from pspnet_lite.book import ledger, paper
from pspnet_lite.book.plan import gpu_hours
from pspnet_lite.book.viz import use_book_style
from pspnet_lite.train import get_preset

# %% tags=["parameters"]
results_dir = "results"  # the stored records the ledger reads (relative to the repository root)
out_dir = "runs/09_what_the_book_shows"  # the figure and the JSON record (relative to the repository root)

# %%
book.setup("cpu")
use_book_style()
out = book.resolve_path(out_dir)
out.mkdir(parents=True, exist_ok=True)
rows = ledger.read_ledger(results_dir)
print(f"{len(rows)} claims read from {book.resolve_path(results_dir)}")

# %% [markdown]
# ## 1. The ledger
#
# Each line: the paper's claim and its evidence there, the chapter and section that test it, and the stored
# verdict: the mean difference in the claimed direction with its 95% interval and the number of seeds. The verdicts
# of declared claims carry Holm's correction within their chapter's family; those marked "uncorrected" are paired
# intervals a chapter reports without a declared family (chapter 04b's recipe studies).

# %%
def interval_text(row: dict) -> str:
    """``"+11.19 [+4.99, +17.39], 5 seeds"``, or nothing for a claim without an interval."""
    if row.get("mean") is None:
        return ""
    lo, hi = row["ci95"]
    return f"{row['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}], {row['seeds']} seeds"


for row in rows:
    print(f"{row['claim'][:58]:58s} | {row['paper'][:38]:38s} | {row['chapter']:13s} | {row['verdict']:26s} | "
          f"{interval_text(row)}")

# %% [markdown]
# Read the verdicts by kind (the stored records; compare the printout). The mechanisms the data was built for are
# shown where the book's networks can use them: a global prior for the boat and car decided by far-away water or
# road, and the sub-regions of the pyramid for the buoy and cone decided by their own half of the image; so are the
# full PSPNet over the dilated FCN, average over max pooling for one bin, and a larger BN batch. Four levels over
# one on all classes, the auxiliary loss, data augmentation, the crop and the building and pillow classes are not
# resolved at these budgets. Depth and multi-scale testing are reversed: the paper's gains rest on ImageNet
# pre-training, which the CPU runs do not have (chapter 06). The cell below lists what a GPU run on the real data
# would add: the chapter's command with the paper's preset (each chapter's `-p dry_run True` prints the plan and
# its GPU time before anything trains).

# %%
counts = {v: sum(r["verdict"].startswith(v) for r in rows) for v in ("shown", "reversed", "not resolved", "not tested")}
print(", ".join(f"{n} {v}" for v, n in counts.items()))
for row in rows:
    if row["command"]:
        print(f"{row['chapter']:13s} {row['claim'][:40]:40s} {row['command']}")

# %% [markdown]
# What would those runs cost? An estimate of the GPU time of each training chapter's paper run on ADE20K, from the
# FLOPs of its networks (`pspnet_lite.book.plan.gpu_hours`; its basis is printed: an assumption, not a measurement,
# until a GPU record exists), with the seeds the claims need:

# %%
def paper_estimate(runs: int, **changes) -> dict:
    """The GPU-time estimate of ``runs`` runs of the ADE20K paper preset with ``changes`` (gpu_hours for all)."""
    cfg = get_preset("ade20k-pspnet50", amp="bf16", **changes)
    est = gpu_hours(cfg, cfg.iters * cfg.batch_size, 1, book.resolve_path(results_dir))
    return est | {"gpu_hours": runs * est["gpu_hours"]}


estimates = {"04 (3 alphas x 5 seeds, dilated FCN)": [paper_estimate(15, bins=())],
             "06 (ResNet-50, 101, 152 x 5 seeds)": [paper_estimate(5, backbone=b)
                                                    for b in ("resnet50", "resnet101", "resnet152")]}
costs = {name: sum(e["gpu_hours"] for e in ests) for name, ests in estimates.items()}
plan_05 = ledger.load_record(results_dir, "05_plan_paper_ade20k.json")  # chapter 05's stored dry run
if plan_05:
    costs["05 (5 rows x 3 seeds, its stored dry run)"] = plan_05["total_gpu_hours"]
for name, hours in costs.items():
    print(f"chapter {name:42s} about {hours:6.0f} GPU-hours")
print(f"basis: {estimates[next(iter(estimates))][0]['basis']}")

# %% [markdown]
# ## 2. Table 4 as a waterfall
#
# > "Using data augmentation, our result exceeds the baseline by 1.54/0.72 and reaches 35.82/77.07. Using the
# > auxiliary loss can further improve it by 1.41/0.94 and reaches 37.23/78.01." (§5.2)
#
# Table 4 builds the final system step by step: data augmentation, the auxiliary loss, the pyramid, a deeper
# backbone and multi-scale testing. The paper's gain of step $k$ is the difference of consecutive rows,
#
# $$\Delta_k = \mathrm{mIoU}_k - \mathrm{mIoU}_{k-1},$$
#
# and beside each step stands the book's CPU analogue from its chapter's record (the same kind of change on
# ContextScenes, not the same network or data), with its 95% interval.

# %%
steps = []
for name, before, after, record, key in ledger.TABLE4_STEPS:
    entry = next(e for e in ledger.LEDGER if e.record == record and e.key == key)
    ours = ledger.read_entry(entry, results_dir)
    gain = paper.TABLE4_ADE20K[after][0] - paper.TABLE4_ADE20K[before][0]
    steps.append({"step": name, "paper": round(gain, 2), "ours": ours})
    print(f"{name:10s} paper {gain:+5.2f} mIoU | ours ({entry.chapter}, {ours['claim']}): {ours['verdict']}, "
          f"{interval_text(ours)}")

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.2, 1]})
start = paper.TABLE4_ADE20K["ResNet50-Baseline"][0]
level = start
for k, s in enumerate(steps):
    left.bar(k, s["paper"], bottom=level, color="C0")
    left.text(k, level + s["paper"] + 0.1, f"{s['paper']:+.2f}", ha="center", fontsize=8)
    level += s["paper"]
left.set_xticks(range(len(steps)), [s["step"] for s in steps])
left.set(ylim=(start - 1, level + 1), ylabel="ADE20K val mIoU (%)",
         title=f"paper, Table 4: {start:.2f} -> {level:.2f}")
have = [(k, s) for k, s in enumerate(steps) if s["ours"].get("mean") is not None]
right.errorbar([s["ours"]["mean"] for _, s in have], [k for k, _ in have],
               xerr=np.array([[s["ours"]["mean"] - s["ours"]["ci95"][0], s["ours"]["ci95"][1] - s["ours"]["mean"]]
                              for _, s in have]).T, fmt="o", capsize=4)
right.axvline(0, color="0.5", lw=0.8)
right.set_yticks(range(len(steps)), [f"{s['step']}: {s['ours']['verdict']}" for s in steps])
right.invert_yaxis()
right.set(xlabel="the book's CPU analogue: difference, 95% interval", title="ours (ContextScenes, from scratch)")
fig.suptitle("Table 4's steps: the paper's gains and the book's analogues (different data and networks)", fontsize=10)
fig.savefig(out / "table4_waterfall.png", bbox_inches="tight")
plt.show()

# %% [markdown]
# The left panel adds up to the paper's final 44.94. On the right (the stored records), the pyramid step is shown on
# the CPU, data augmentation and the auxiliary loss are not resolved, and depth and multi-scale testing are
# reversed: networks trained from scratch, where a deeper one is a harder optimisation problem rather than a better
# pre-trained one (chapter 06).

# %%
record = book.write_record(out / "record.json", name="09_what_the_book_shows (claims ledger)",
                           config={"results_dir": results_dir}, metrics={"counts": counts}, seconds=0.0,
                           ledger=rows, table4_steps=steps,
                           gpu_hours={name: round(h, 1) for name, h in costs.items()})
print(f"record: {record}")
assert len(rows) == len(ledger.LEDGER) and all(r["verdict"] for r in rows)

# %% [markdown]
# ## Summary
#
# - Every claim of the paper the book discusses has a line in the ledger, with its verdict read from a stored
#   record, or "not tested here" and the command that tests it on the real data.
# - The ledger is only as good as its records: each comes from a chapter's default run on fresh seeds, its claims
#   declared before the run (`results/README.md` lists them with their hardware and run times).
# - Nothing in it is evidence about ADE20K: the GPU commands are how to get that.

# %% [markdown]
# ## Exercises

# %% [markdown]
# **1.** Re-run chapter 05 with other seeds (`-p seeds 30,31,32,33,34`), copy its record over
# `results/05_ablation_cpu_context_scenes.json` in a scratch clone, and re-run this chapter. Which verdicts change?
#
# <details><summary>Hint</summary>
#
# A verdict near its threshold (a Holm p close to 0.05, an interval that barely excludes zero) can move with new
# seeds; one far from it should not.
#
# </details>
#
# <details><summary>Answer</summary>
#
# The claims whose intervals are far from zero in the stored record (the mismatched and regional classes, the full
# PSPNet over the FCN) should stay shown; claims with an interval that touches zero or a Holm p near 0.05 (B1 + AVE
# over the FCN, average over max pooling) can change. That is what an interval over 5 seeds means: another 5 seeds
# give another interval, and 95% of such intervals contain the true difference, so a verdict is a statement about
# the evidence, not a fact about the method.
#
# </details>

# %% [markdown]
# **2.** Add a line to the ledger for a claim the book does not list yet, for example "PSPNet's gain is larger on
# the classes that need context than on stuff", from chapter 05's record.
#
# <details><summary>Hint</summary>
#
# `ledger.Entry` takes a record and the name of a declared claim; a claim a chapter did not declare needs the
# chapter to declare it first (and a new run), or it is only exploratory: chapter 05's role intervals are stored
# under `role_differences`.
#
# </details>
#
# <details><summary>Answer</summary>
#
# Declaring it properly means adding a `Claim` to `pspnet_lite.book.table1.CLAIMS` (for example B1236+AVE+DR over
# the baseline on the stuff role, expecting a small or no gain) and re-running chapter 05 on fresh seeds, since a
# claim chosen after seeing the data is not a test. Reading it off `role_differences["B1236+AVE+DR - baseline"]` of
# the stored record gives an uncorrected, exploratory interval: useful for the next design, not a verdict.
#
# </details>

"""Throughput benchmark: ``python -m pspnet_lite.bench``.

Measures images/s of a full training step (forward, deep-supervision loss (§4), backward, SGD step)
and of inference (one whole-image forward) for one backbone / crop / batch / device, over a grid of
precision (fp32, bf16, fp16 autocast), memory format (contiguous, channels_last) and ``torch.compile``.
The first row, fp32 + contiguous + eager, is the reference; every row's speed-up is against it,
measured in the same run on the same machine.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` during the timed steps. On CPU, each row
runs in a fresh process and reports the growth of the resident set during its steps: the kernel's
high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs`` just before the first step, so the
peak of imports and model building does not count) minus ``VmRSS`` at that moment. It includes
allocator caching and is an approximation of the tensors' peak, not an exact count. Where the reset
is not possible (not Linux) it falls back to ``ru_maxrss``, which never decreases.

Every value is checked before the first measurement (:func:`check_args`): a bad one (an unknown backbone,
precision or device, a crop or batch that is not a positive integer) ends in exit status 2 and one
``error: ...`` line that names it and the fix.

    python -m pspnet_lite.bench --backbone resnet50 --crop 257 --batch 2 --device cpu --precisions fp32 bf16 \\
        --memory-formats contiguous channels_last
    python -m pspnet_lite.bench --backbone resnet50 --crop 473 --batch 16 --device cuda --precisions fp32 bf16 \\
        --memory-formats contiguous channels_last --compile
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import torch

from .backbone import BACKBONES
from .cli import ArgumentParser, CommaList, cli_errors
from .losses import DeepSupervisionLoss
from .model import PSPNet
from .train.distributed import resolve_device
from .train.trainer import grad_scaler, param_groups

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MEMORY_FORMATS = ("contiguous", "channels_last")


def _proc_status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (Linux) in MB, or None where there is no such file."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (VmHWM) to the current RSS; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_mb() -> float:
    rss = _proc_status_mb("VmRSS")
    return rss if rss is not None else _peak_rss_mb()


def _peak_rss_mb() -> float:
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 / (1024 if sys.platform == "darwin" else 1)  # KiB on Linux, bytes on macOS


def measure(spec: dict) -> dict:
    """Time ``spec["mode"]`` ("train" or "infer") for one row; returns images/s and peak memory (MB).

    Optional keys: ``micro_batch`` (a training step of ``batch`` images as ``batch / micro_batch``
    accumulated forward/backward passes, one optimiser step; images/s still counts the whole batch) and
    ``compile_backend`` (the ``torch.compile`` backend, default inductor)."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    torch.manual_seed(0)
    model = PSPNet(num_classes=spec["num_classes"], backbone=spec["backbone"]).to(device)
    cl = spec["memory_format"] == "channels_last"
    if cl:
        model = model.to(memory_format=torch.channels_last)
    train = spec["mode"] == "train"
    model.train(train)
    net = torch.compile(model, backend=spec.get("compile_backend") or "inductor") if spec["compile"] else model
    b, c = spec["batch"], spec["crop"]
    m = (spec.get("micro_batch") or b) if train else b
    if b % m:
        raise ValueError(f"micro_batch {m} does not divide the batch {b}; use one of "
                         f"{[d for d in range(1, b + 1) if b % d == 0]}")
    accum = b // m
    x = torch.randn(m if train else b, 3, c, c, device=device)  # (micro-batch, 3, crop, crop)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, spec["num_classes"], (x.shape[0], c, c), device=device)  # (micro-batch, crop, crop)
    dt = DTYPES[spec["precision"]]
    opt = torch.optim.SGD(param_groups(model, 0.01, 10.0), lr=0.01, momentum=0.9, weight_decay=1e-4)
    scaler = grad_scaler(enabled=dt is torch.float16 and device.type == "cuda")
    crit = DeepSupervisionLoss(0.4, check_labels=False)

    def step():
        if not train:
            with torch.autocast(device.type, dtype=dt, enabled=dt is not None), torch.inference_mode():
                return net(x)
        for _ in range(accum):  # the same micro-batch again: the arithmetic of a real one
            with torch.autocast(device.type, dtype=dt, enabled=dt is not None):
                out = net(x)
            loss, _ = crit(out, y)
            scaler.scale(loss / accum).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    _reset_peak_rss()  # the high-water mark of imports and model building must not count
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    for _ in range(spec["warmup"]):
        step()
    sync()
    warm_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(spec["iters"]):
        step()
    sync()
    elapsed = time.perf_counter() - t0
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    else:
        peak, kind = max(_peak_rss_mb() - rss0, 0.0), "cpu rss growth"
    return {"images_per_s": spec["iters"] * b / elapsed, "step_ms": 1000 * elapsed / spec["iters"],
            "warmup_s": warm_s, "peak_mb": peak, "memory_kind": kind}


def run_row(spec: dict, isolate: bool) -> dict:
    """:func:`measure` in a fresh spawned process (``isolate``) or in this one."""
    if not isolate:
        return measure(spec)
    # lazy: under ``python -m pspnet_lite.bench`` this module runs as ``__main__``; the spawned worker gets
    # ``measure`` pickled by its package name instead, and a module can import itself only once loaded
    from pspnet_lite.bench import measure as fn

    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, (spec,))


# the integer flags: smallest value, and the example an error message gives
INT_FLAGS = {"num_classes": (1, 150), "crop": (1, 473), "batch": (1, 16), "warmup": (0, 2), "iters": (1, 5),
             "threads": (1, 4)}


def _int_error(name: str, value) -> str:
    """What is wrong with ``value`` for the integer flag ``name`` and how to write it."""
    minimum, example = INT_FLAGS[name]
    flag = "--" + name.replace("_", "-")
    return f"must be an integer >= {minimum} (e.g. {flag} {example}); got {value!r}"


def _int_flag(name: str):
    """argparse ``type`` for the integer flag ``name``: a bad value names the flag, the value and the fix."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < INT_FLAGS[name][0]:
            raise argparse.ArgumentTypeError(_int_error(name, text))
        return value

    parse.__name__ = name
    return parse


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = ArgumentParser(
        "python -m pspnet_lite.bench", add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="PSPNet training-step and inference throughput (images/s) and peak memory, for every "
                    "combination of precision x memory format x compile; speed-ups against fp32/contiguous/eager "
                    "measured in the same run.")
    p.add_argument("--backbone", default="resnet50", help="|".join(BACKBONES))
    p.add_argument("--num-classes", type=_int_flag("num_classes"), default=150, help="output classes (150 = ADE20K)")
    p.add_argument("--crop", type=_int_flag("crop"), default=473, help="square input size (the paper: 473 / 713)")
    p.add_argument("--batch", type=_int_flag("batch"), default=16, help="images per step")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N")
    p.add_argument("--precisions", action=CommaList, valid=list(DTYPES), default=["fp32", "bf16"],
                   help="autocast precisions to measure, space- or comma-separated: fp32, bf16, fp16")
    p.add_argument("--memory-formats", action=CommaList, valid=MEMORY_FORMATS, default=list(MEMORY_FORMATS),
                   help="memory formats to measure, space- or comma-separated: contiguous, channels_last")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile'd rows")
    p.add_argument("--modes", action=CommaList, valid=("train", "infer"), default=["train", "infer"],
                   help="training step and/or inference (train, infer)")
    p.add_argument("--warmup", type=_int_flag("warmup"), default=2,
                   help="untimed steps per row (compile happens here)")
    p.add_argument("--iters", type=_int_flag("iters"), default=5, help="timed steps per row")
    p.add_argument("--threads", type=_int_flag("threads"), default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-isolate", action="store_true", help="CPU: run rows in this process (memory column "
                   "then only shows growth of the process-wide peak)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    return p


def format_table(rows: list[dict], modes: list[str]) -> str:
    head = f"{'precision':<9} {'memory_format':<14} {'compile':<8}"
    for m in modes:
        head += f" {m + ' img/s':>12} {'speedup':>7} {m + ' peak MB':>14}"
    lines = [head, "-" * len(head)]
    for r in rows:
        line = f"{r['precision']:<9} {r['memory_format']:<14} {'yes' if r['compile'] else 'no':<8}"
        for m in modes:
            line += (f" {r[m]['images_per_s']:>12.2f} {r[m]['speedup']:>6.2f}x {r[m]['peak_mb']:>14.0f}")
        lines.append(line)
    return "\n".join(lines)


def main(args: argparse.Namespace | None = None) -> list[dict]:
    """Entry point; prints the table and returns the rows. Bad flags: one ``error:`` line, exit 2."""
    args = args if args is not None else get_args_parser().parse_args()
    with cli_errors():
        return run(args)


def check_args(args: argparse.Namespace) -> torch.device:
    """Check every value before anything is measured; returns the device. A bad value raises a ValueError
    that names it and the fix (what the command line prints as its one ``error:`` line)."""
    if args.backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {args.backbone!r}; choose one of {', '.join(BACKBONES)}")
    for name in INT_FLAGS:
        value = getattr(args, name)
        if value is None and name == "threads":
            continue
        if not isinstance(value, int) or value < INT_FLAGS[name][0]:
            raise ValueError(f"--{name.replace('_', '-')} {_int_error(name, value)}")
    if "train" in args.modes and args.batch * (-(-args.crop // 8)) ** 2 < 2:
        raise ValueError(f"--crop {args.crop} --batch {args.batch}: a training step needs more than one value per "
                         f"channel at 1/8 resolution for batch norm; use --crop 9 or more, or --batch 2 or more")
    try:
        device = resolve_device(args.device)
    except RuntimeError:  # torch.device's own error for a string it does not know
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {args.device!r}; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {args.device!r}: this machine has {torch.cuda.device_count()} GPU(s); "
                         f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if args.json and Path(args.json).is_dir():
        raise ValueError(f"--json {args.json!r} is a folder; give a file name such as bench.json")
    return device


def run(args: argparse.Namespace) -> list[dict]:
    """What :func:`main` does, raising ValueError instead of exiting."""
    device = check_args(args)
    isolate = device.type == "cpu" and not args.no_isolate
    combos = list(itertools.product(args.precisions, args.memory_formats, [False, True] if args.compile else [False]))
    ref = ("fp32", "contiguous", False)
    combos = [ref] + [c for c in combos if c != ref]
    rows = []
    for prec, fmt, comp in combos:
        row = {"precision": prec, "memory_format": fmt, "compile": comp}
        for mode in args.modes:
            spec = dict(backbone=args.backbone, num_classes=args.num_classes, crop=args.crop, batch=args.batch,
                        device=str(device), precision=prec, memory_format=fmt, compile=comp, mode=mode,
                        warmup=args.warmup, iters=args.iters, threads=args.threads)
            row[mode] = run_row(spec, isolate)
            base = rows[0][mode]["images_per_s"] if rows else row[mode]["images_per_s"]
            row[mode]["speedup"] = row[mode]["images_per_s"] / base
        rows.append(row)
        print(f"  measured {prec}/{fmt}/{'compile' if comp else 'eager'}", file=sys.stderr, flush=True)
    threads = args.threads or torch.get_num_threads()
    title = (f"PSPNet {args.backbone}, {args.num_classes} classes, crop {args.crop}, batch {args.batch}, "
             f"device {device}{f' ({threads} threads)' if device.type == 'cpu' else ''}, torch {torch.__version__}")
    mem = rows[0][args.modes[0]]["memory_kind"]
    print(title)
    print(format_table(rows, args.modes))
    print(f"reference row: fp32 / contiguous / eager; peak memory = {mem}"
          + (" (fresh process per row)" if isolate else ""))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"title": title, "rows": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()

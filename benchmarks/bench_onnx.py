"""onnxruntime vs eager PyTorch on the CPU: PSPNet-50 at 473, whole image and sliding window, side by side.

    nice -n 10 python benchmarks/bench_onnx.py                 # writes results/onnx_cpu_benchmark.json
    python benchmarks/bench_onnx.py --backbone lite --num-classes 16 --size 65 --slide-image 97 97 --repeats 1 \\
        --out /tmp/onnx_bench.json                             # a seconds-long smoke run

What it does, in one process:

1. builds the authors' ADE20K PSPNet-50 (``PSPNet(num_classes=150)``, deep stem, output stride 8, pyramid 1-2-3-6)
   with **random weights** (``torch.manual_seed(0)``; the speed of a dense network does not depend on the values
   of its weights, so no trained checkpoint is needed), saves it as a trainer checkpoint trained on 473 crops and
   exports it with ``python -m pspnet_lite.export CKPT --onnx OUT --size 473 473`` (the real command line,
   which checks onnxruntime against PyTorch and stores the max logit difference);
2. times :func:`pspnet_lite.inference.predict` with the torch model and with :class:`OnnxModel` (the
   ``predict --backend onnxruntime`` path) under two protocols:

   * **whole image**: one 473 x 473 image, one forward pass;
   * **sliding window**: one 713 x 713 image, 473 windows with the authors' stride ceil(2/3 * 473) = 316, i.e.
     2 x 2 = 4 forward passes of the exported 473 model, probabilities averaged;

   both fp32, no flip, one scale, ``align=True`` (the authors' 8n+1 protocol), batch 1;
3. every repeat runs torch then onnxruntime (interleaved, so a busy neighbour slows both alike), after one
   untimed warm-up each; reports the median and min over ``--repeats`` and the speed-up (torch median /
   onnxruntime median), and the largest probability difference and label agreement between the two backends.

Threads: ``torch.set_num_threads(T)`` and onnxruntime's ``intra_op_num_threads = T`` (``--threads``, 2 by
default), inter-op 1. The record holds the hardware, library versions, the command and the machine's load
average before and after (the project's machine is shared: a busy neighbour shows there).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import torch

from pspnet_lite import book, export
from pspnet_lite.checkpoint import CHECKPOINT_FORMAT
from pspnet_lite.inference import Protocol, predict
from pspnet_lite.model import PSPNet
from pspnet_lite.onnx_runtime import OnnxModel

ROOT = Path(__file__).resolve().parents[1]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("benchmarks/bench_onnx.py", description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--num-classes", type=int, default=150)
    p.add_argument("--size", type=int, default=473, help="exported size = whole image = window (8n+1)")
    p.add_argument("--slide-image", type=int, nargs=2, default=[713, 713], metavar=("H", "W"),
                   help="image of the sliding-window row")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of each backend")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per backend and protocol (median reported)")
    p.add_argument("--out", default=str(ROOT / "results" / "onnx_cpu_benchmark.json"))
    return p


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_row(name: str, backends: dict, x: torch.Tensor, protocol: Protocol, repeats: int) -> dict:
    """Median and min seconds of ``predict`` per backend (interleaved repeats after one warm-up each), the number of
    forward passes, and how far the two backends' probabilities and labels are apart."""
    outs = {b: predict(m, x, protocol=protocol, return_probs=True) for b, m in backends.items()}  # warm-up
    times = {b: [] for b in backends}
    for r in range(repeats):
        for b, m in backends.items():
            times[b].append(timed(lambda m=m: predict(m, x, protocol=protocol)))
        print(f"{name} repeat {r + 1}/{repeats}: " + ", ".join(f"{b} {t[-1]:.2f} s" for b, t in times.items()),
              file=sys.stderr, flush=True)
    calls = []
    hook = backends["onnxruntime"].register_forward_hook(lambda *_: calls.append(1))
    predict(backends["onnxruntime"], x, protocol=protocol)
    hook.remove()
    (lab_t, prob_t), (lab_o, prob_o) = outs["pytorch"], outs["onnxruntime"]
    return {
        "image": list(x.shape[-2:]), "protocol": protocol.name, "forward_passes": len(calls),
        **{f"{b}_s": {"median": statistics.median(t), "min": min(t), "all": t} for b, t in times.items()},
        "speedup_median": statistics.median(times["pytorch"]) / statistics.median(times["onnxruntime"]),
        "max_prob_diff": float((prob_t - prob_o).abs().max()),
        "label_agreement": float((lab_t == lab_o).float().mean()),
    }


def main(argv=None) -> dict:
    args = get_args_parser().parse_args(argv)
    started = time.perf_counter()
    load_before = os.getloadavg()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = PSPNet(num_classes=args.num_classes, backbone=args.backbone, aux=False).eval()  # random weights
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, onnx_path = Path(tmp) / "random.pt", Path(tmp) / "model.onnx"
        torch.save({"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "model_config": model.config.to_dict(),
                    "config": {"dataset": "ade20k", "crop_size": args.size}}, ckpt)
        t0 = time.perf_counter()
        meta = export.main([str(ckpt), "--onnx", str(onnx_path), "--size", str(args.size), str(args.size)])
        export_s = time.perf_counter() - t0
        onnx_mb = onnx_path.stat().st_size / 1e6
        ort_model = OnnxModel(onnx_path, threads=args.threads)
        gen = torch.Generator().manual_seed(1)
        rows = {
            "whole image": (torch.randn(1, 3, args.size, args.size, generator=gen),
                            Protocol(mode="whole", align=True)),
            "sliding window": (torch.randn(1, 3, *args.slide_image, generator=gen),
                               Protocol(mode="slide", crop_size=args.size, align=True)),
        }
        results = {name: bench_row(name, {"pytorch": model, "onnxruntime": ort_model}, x, protocol, args.repeats)
                   for name, (x, protocol) in rows.items()}
    seconds = time.perf_counter() - started
    command = "python " + " ".join([os.path.relpath(__file__, ROOT), *(argv if argv is not None else sys.argv[1:])])
    versions = {p: version(p) for p in ("torch", "onnx", "onnxruntime", "onnxscript", "numpy")}
    path = book.write_record(
        args.out, name="onnx_cpu_benchmark",
        config={"backbone": args.backbone, "num_classes": args.num_classes, "size": args.size,
                "slide_image": args.slide_image, "threads": args.threads, "repeats": args.repeats,
                "weights": "random (torch.manual_seed(0)): speed does not depend on weight values",
                "precision": "fp32", "batch": 1, "flip": False, "scales": [1.0]},
        metrics={"export_max_abs_logit_diff": meta["max_abs_logit_diff"], "export_seconds": export_s,
                 "onnx_file_mb": onnx_mb, "rows": results},
        seconds=seconds, device="cpu", command=command, versions=versions,
        cpu_model=cpu_model(), load_average_before=list(load_before), load_average_after=list(os.getloadavg()))
    print(f"PSPNet {args.backbone} at {args.size}, {args.threads} threads each, median of {args.repeats} "
          f"(export max |logit diff| {meta['max_abs_logit_diff']:.2e})")
    print(f"{'protocol':<16} {'passes':>6} {'pytorch s':>10} {'onnxruntime s':>14} {'speed-up':>9} "
          f"{'max prob diff':>14}")
    for name, r in results.items():
        print(f"{name:<16} {r['forward_passes']:>6} {r['pytorch_s']['median']:>10.2f} "
              f"{r['onnxruntime_s']['median']:>14.2f} {r['speedup_median']:>8.2f}x {r['max_prob_diff']:>14.1e}")
    print(f"record: {path}")
    return results


if __name__ == "__main__":
    main()

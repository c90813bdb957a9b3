"""Every command line of the package (``python -m pspnet_lite.train|evaluate|predict|bench`` and the data-set check
``python -m pspnet_lite.data.datasets``) answers ``--help`` with exit status 0 and names its flags; the README's
bench command runs end to end. (Each command line's behaviour and errors: tests/test_train_cli.py,
test_evaluate.py, test_predict.py, test_bench.py, test_datasets.py.)"""

import json
import subprocess
import sys

import pytest
from conftest import ENV

from pspnet_lite import bench


def run(*args):
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("module,words", [
    ("pspnet_lite.train", ["--preset", "--set", "--resume", "--amp", "--channels-last", "--compile", "--freeze-bn",
                           "--micro-batch", "--head-lr-mult", "--stop-at", "torchrun", "--config", "--result",
                           "--bins", "--backbone", "--layers", "--no-aux"]),
    ("pspnet_lite.evaluate", ["--checkpoint", "--protocols", "--mode", "--base-size", "--out", "--backbone",
                              "--bins", "--num-classes", "--weights-kind"]),
    ("pspnet_lite.predict", ["--checkpoint", "--out", "--protocol", "--alpha", "--backbone", "--dataset"]),
    ("pspnet_lite.bench", ["--backbone", "--crop", "--batch", "--precisions", "--memory-formats", "--compile"]),
    ("pspnet_lite.data.datasets", ["--root", "--split", "ade20k"]),
])
def test_help(module, words):
    out = run(module, "--help")
    assert out.startswith(f"usage: python -m {module}")
    for w in words:
        assert w in out, w


def test_bench_table(tmp_path):
    out = tmp_path / "bench.json"
    stdout = run("pspnet_lite.bench", "--backbone", "lite", "--crop", "64", "--batch", "2", "--device", "cpu",
                 "--precisions", "fp32", "bf16", "--memory-formats", "contiguous", "--warmup", "1", "--iters", "1",
                 "--threads", "1", "--no-isolate", "--json", str(out))
    assert "speedup" in stdout and "reference row: fp32 / contiguous / eager" in stdout
    rows = json.loads(out.read_text())["rows"]
    assert [(r["precision"], r["memory_format"]) for r in rows] == [("fp32", "contiguous"), ("bf16", "contiguous")]
    assert rows[0]["train"]["speedup"] == 1.0 and rows[1]["infer"]["images_per_s"] > 0


def test_readme_bench_command_runs_every_row():
    # the README's flags, at a CPU test size (the README's --crop 473 --batch 16 is a GPU run)
    args = bench.get_args_parser().parse_args(
        "--backbone resnet50 --crop 473 --precisions fp32 bf16 --memory-formats contiguous channels_last".split()
        + "--crop 33 --batch 1 --modes infer --warmup 0 --iters 1 --threads 1 --no-isolate --device cpu".split())
    rows = bench.main(args)
    assert [(r["precision"], r["memory_format"]) for r in rows] == [
        ("fp32", "contiguous"), ("fp32", "channels_last"), ("bf16", "contiguous"), ("bf16", "channels_last")]
    assert all(r["infer"]["images_per_s"] > 0 for r in rows)

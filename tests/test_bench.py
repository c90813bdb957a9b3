"""pspnet_lite.bench: its command line (help, one-line errors for every bad value) and its CPU peak memory."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pspnet_lite import bench

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_bench(*argv):
    proc = subprocess.run([sys.executable, "-m", "pspnet_lite.bench", *argv], capture_output=True, text=True,
                          env=ENV, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_help_names_every_flag():
    rc, out, err = run_bench("--help")
    assert rc == 0 and err == ""
    for flag in ("--backbone", "--num-classes", "--crop", "--batch", "--device", "--precisions", "--memory-formats",
                 "--compile", "--modes", "--warmup", "--iters", "--threads", "--no-isolate", "--json"):
        assert flag in out, flag
    assert "resnet50|resnet101|resnet152|resnet269|lite" in out


@pytest.mark.parametrize("argv,message", [
    (["--backbone", "resnet5"], "error: unknown backbone 'resnet5'; choose one of resnet50, resnet101, resnet152, "
                                "resnet269, lite"),
    (["--precisions", "fp32,fp8"], "error: argument --precisions: invalid choice(s) ['fp8'] (choose from fp32, "
                                   "bf16, fp16; space- or comma-separated)"),
    (["--memory-formats", "nhwc"], "error: argument --memory-formats: invalid choice(s) ['nhwc'] (choose from "
                                   "contiguous, channels_last"),
    (["--modes", "eval"], "error: argument --modes: invalid choice(s) ['eval'] (choose from train, infer"),
    (["--crop", "abc"], "error: argument --crop: must be an integer >= 1 (e.g. --crop 473); got 'abc'"),
    (["--crop", "0"], "error: argument --crop: must be an integer >= 1 (e.g. --crop 473); got '0'"),
    (["--crop", "8", "--batch", "1"], "error: --crop 8 --batch 1: a training step needs more than one value per "
                                      "channel at 1/8 resolution for batch norm; use --crop 9 or more, or --batch 2"),
    (["--batch", "0"], "error: argument --batch: must be an integer >= 1 (e.g. --batch 16); got '0'"),
    (["--batch", "1.5"], "error: argument --batch: must be an integer >= 1 (e.g. --batch 16); got '1.5'"),
    (["--iters", "0"], "error: argument --iters: must be an integer >= 1"),
    (["--warmup", "-1"], "error: argument --warmup: must be an integer >= 0"),
    (["--threads", "0"], "error: argument --threads: must be an integer >= 1"),
    (["--num-classes", "x"], "error: argument --num-classes: must be an integer >= 1"),
    (["--device", "foo"], "error: unknown device 'foo'; use auto, cpu, cuda or cuda:N"),
    (["--device", "mps"], "error: unknown device 'mps'; use auto, cpu, cuda or cuda:N"),
    (["--no-such-flag"], "error: unrecognized arguments: --no-such-flag"),
])
def test_every_bad_value_is_one_error_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:  # what ``python -m pspnet_lite.bench ARGV`` runs, in this process
        bench.main(bench.get_args_parser().parse_args(argv))
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(message), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_the_command_line_itself_exits_2_with_one_line():
    rc, out, err = run_bench("--crop", "abc")
    assert rc == 2 and out == "" and err.strip() == ("error: argument --crop: must be an integer >= 1 (e.g. --crop "
                                                     "473); got 'abc' (see python -m pspnet_lite.bench --help)")


def test_cuda_without_a_gpu_names_the_fix(monkeypatch, capsys):
    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        bench.main(bench.get_args_parser().parse_args(["--device", "cuda"]))
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err == "error: device='cuda' but CUDA is not available; use --device cpu\n"


def test_a_gpu_index_past_the_last_gpu_names_the_range(monkeypatch):
    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(bench.torch.cuda, "device_count", lambda: 2)
    args = bench.get_args_parser().parse_args(["--device", "cuda:3"])
    with pytest.raises(ValueError, match=r"device 'cuda:3': this machine has 2 GPU\(s\); use cuda:0 to cuda:1"):
        bench.check_args(args)


def test_values_are_checked_when_called_from_python(capsys, tmp_path):
    args = bench.get_args_parser().parse_args(["--crop", "33"])
    args.batch = 0  # a Namespace built or changed in Python skips argparse's checks; check_args repeats them
    with pytest.raises(ValueError, match=r"--batch must be an integer >= 1 \(e.g. --batch 16\); got 0"):
        bench.check_args(args)
    with pytest.raises(SystemExit) as exc:
        bench.main(args)
    assert exc.value.code == 2 and capsys.readouterr().err.startswith("error: --batch must be an integer >= 1")
    args = bench.get_args_parser().parse_args(["--json", str(tmp_path)])
    with pytest.raises(ValueError, match="is a folder; give a file name such as bench.json"):
        bench.check_args(args)
    ok = bench.get_args_parser().parse_args(["--crop", "8", "--batch", "1", "--modes", "infer", "--device", "cpu"])
    assert bench.check_args(ok).type == "cpu"  # inference needs no batch statistics


def test_one_row_in_process_and_isolated(tmp_path):
    argv = ["--backbone", "lite", "--num-classes", "4", "--crop", "33", "--batch", "2", "--device", "cpu",
            "--precisions", "fp32", "--memory-formats", "contiguous", "--modes", "infer", "--warmup", "0",
            "--iters", "1", "--threads", "1"]
    for extra in (["--no-isolate"], ["--json", str(tmp_path / "rows.json")]):  # the second: a spawned process
        rows = bench.main(bench.get_args_parser().parse_args(argv + extra))
        assert len(rows) == 1 and rows[0]["infer"]["images_per_s"] > 0 and rows[0]["infer"]["speedup"] == 1.0
    assert (tmp_path / "rows.json").is_file()


def test_the_readme_command_measures_every_row_train_and_infer(tmp_path, capsys):
    # the README's flags, at a CPU test size (the README's --crop 473 --batch 16 is a GPU run)
    readme = "--backbone resnet50 --crop 473 --precisions fp32 bf16 --memory-formats contiguous channels_last".split()
    small = "--crop 33 --batch 2 --warmup 0 --iters 1 --threads 1 --no-isolate --device cpu --num-classes 5".split()
    rows = bench.main(bench.get_args_parser().parse_args(readme + small + ["--json", str(tmp_path / "b.json")]))
    assert [(r["precision"], r["memory_format"], r["compile"]) for r in rows] == [
        ("fp32", "contiguous", False), ("fp32", "channels_last", False), ("bf16", "contiguous", False),
        ("bf16", "channels_last", False)]
    for mode in ("train", "infer"):
        assert rows[0][mode]["speedup"] == 1.0 and all(r[mode]["images_per_s"] > 0 for r in rows)
        assert all(r[mode]["memory_kind"] == "cpu rss growth" for r in rows)
    stdout = capsys.readouterr().out
    assert "PSPNet resnet50, 5 classes, crop 33, batch 2, device cpu (1 threads)" in stdout
    assert "reference row: fp32 / contiguous / eager" in stdout
    stored = json.loads((tmp_path / "b.json").read_text())
    assert stored["rows"] == json.loads(json.dumps(rows)) and stored["title"].startswith("PSPNet resnet50")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM reset is Linux-only")
def test_peak_rss_resets_and_sees_a_new_allocation():
    """bench's CPU peak memory measures the steps, not what the process did before them."""
    big = np.ones(150 * 2**20 // 8)  # 150 MB, touched
    del big
    assert bench._reset_peak_rss()
    before = bench._rss_mb()
    assert bench._peak_rss_mb() - before < 100  # the earlier 150 MB peak is forgotten
    block = np.ones(80 * 2**20 // 8)  # 80 MB
    assert bench._peak_rss_mb() - before >= 70
    del block

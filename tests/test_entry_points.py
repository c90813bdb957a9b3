"""Every command line of the package (``python -m pspnet_lite.train|evaluate|predict|bench``, the data-set check
``python -m pspnet_lite.data.datasets`` and the data preparation ``python -m pspnet_lite.data.prepare_*``) answers
``--help`` with exit status 0 and names its flags; so does each console script of pyproject.toml (``pspnet-train``
...), under its own name, and its exit status is the command's; the README's bench command runs end to end. (Each
command line's behaviour and errors: tests/test_train_cli.py, test_evaluate.py, test_predict.py, test_bench.py,
test_datasets.py, test_data_scripts.py; the scripts of an installed wheel: test_wheel.py.)"""

import importlib
import json
import runpy
import subprocess
import sys
import tomllib

import pytest
from conftest import ENV, ROOT

from pspnet_lite import bench

SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def run(*args):
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


HELP_WORDS = {
    "pspnet_lite.train": ["--preset", "--set", "--resume", "--amp", "--channels-last", "--compile", "--freeze-bn",
                          "--micro-batch", "--head-lr-mult", "--stop-at", "torchrun", "--config", "--result",
                          "--bins", "--backbone", "--layers", "--no-aux"],
    "pspnet_lite.evaluate": ["--checkpoint", "--protocols", "--mode", "--base-size", "--out", "--backbone",
                             "--bins", "--num-classes", "--weights-kind"],
    "pspnet_lite.predict": ["--checkpoint", "--out", "--protocol", "--alpha", "--backbone", "--dataset"],
    "pspnet_lite.bench": ["--backbone", "--crop", "--batch", "--precisions", "--memory-formats", "--compile"],
    "pspnet_lite.convert": ["caffe"],
    "pspnet_lite.export": ["--onnx", "--size", "--tolerance"],
    "pspnet_lite.data.datasets": ["--root", "--split", "ade20k"],
    "pspnet_lite.data.prepare_ade20k": ["--root", "--archive", "--no-verify", "--force", "pspnet-prepare-ade20k"],
    "pspnet_lite.data.prepare_voc": ["--root", "--voc-archive", "--sbd-archive", "pspnet-prepare-voc"],
    "pspnet_lite.data.prepare_cityscapes": ["--root", "--gtfine-zip", "--leftimg-zip", "Log in"],
}
# each console script and the python -m command it is
COMMANDS = {"pspnet-train": "pspnet_lite.train", "pspnet-evaluate": "pspnet_lite.evaluate",
            "pspnet-predict": "pspnet_lite.predict", "pspnet-bench": "pspnet_lite.bench",
            "pspnet-convert": "pspnet_lite.convert", "pspnet-export": "pspnet_lite.export",
            "pspnet-datasets": "pspnet_lite.data.datasets",
            "pspnet-prepare-ade20k": "pspnet_lite.data.prepare_ade20k",
            "pspnet-prepare-voc": "pspnet_lite.data.prepare_voc",
            "pspnet-prepare-cityscapes": "pspnet_lite.data.prepare_cityscapes"}


@pytest.mark.parametrize("module", sorted(m for m in HELP_WORDS if ".prepare_" not in m))
def test_help(module):
    out = run(module, "--help")
    assert out.startswith(f"usage: python -m {module}")
    for w in HELP_WORDS[module]:
        assert w in out, w


@pytest.mark.parametrize("module", sorted(m for m in HELP_WORDS if ".prepare_" in m))
def test_help_of_the_data_preparation(module, monkeypatch, capsys):
    # in this process (``python -m`` is runpy.run_module): each subprocess would spend seconds importing torch
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with pytest.raises(SystemExit) as e:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ")
    for w in HELP_WORDS[module]:
        assert w in out, w


def entry_point(name: str):
    """The function a console script of pyproject.toml calls (``module:function``)."""
    module, function = SCRIPTS[name].split(":")
    return getattr(importlib.import_module(module), function)


def call(monkeypatch, name: str, *args: str):
    """Run console script ``name`` as its script does: ``sys.exit(entry_point())`` with ``sys.argv``."""
    monkeypatch.setattr(sys, "argv", [name, *args])
    return entry_point(name)()


def test_every_command_line_has_a_console_script():
    assert set(SCRIPTS) == set(COMMANDS) and set(COMMANDS.values()) == set(HELP_WORDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_console_script_help(name, monkeypatch, capsys):
    with pytest.raises(SystemExit) as e:
        call(monkeypatch, name, "--help")
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {name} ")  # the script's own name, not python -m ...
    for w in HELP_WORDS[COMMANDS[name]]:
        assert w in out, w


def test_console_scripts_return_exit_statuses(monkeypatch, capsys, tmp_path):
    # main() returns results (rows, a run record) to Python callers; the script must exit 0, not print them
    assert call(monkeypatch, "pspnet-bench", "--backbone", "lite", "--crop", "33", "--batch", "1", "--modes", "infer",
                "--precisions", "fp32", "--memory-formats", "contiguous", "--warmup", "0", "--iters", "1",
                "--threads", "1", "--no-isolate", "--device", "cpu") == 0
    assert call(monkeypatch, "pspnet-train", "--list-presets") == 0
    assert "scenes-lite" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # an argparse error names the script
        call(monkeypatch, "pspnet-evaluate", "--checkpoint", "x.pt", "--protocols", "sss")
    assert e.value.code == 2 and "(see pspnet-evaluate --help)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # a bad value: one error line, status 2
        call(monkeypatch, "pspnet-datasets", "voc", "--root", str(tmp_path / "none"))
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: VOCAug not found: the data root") and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as e:  # the data preparation: one error line, status 1 (sys.exit of a string)
        call(monkeypatch, "pspnet-prepare-ade20k", "--archive", str(tmp_path / "no.zip"), "--root", str(tmp_path))
    assert e.value.code == f"error: archive {tmp_path / 'no.zip'} does not exist; check the path or leave the " \
                          f"option out to download it"


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

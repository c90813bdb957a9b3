"""The package as a pip user gets it: a wheel built from the sources, installed into a fresh virtual environment
outside the clone, its console scripts run from a folder outside the clone.

Isolation: the wheel is built (``pip wheel --no-build-isolation --no-index``, offline) from a copy of
``pyproject.toml``, ``README.md`` and ``pspnet_lite/`` (what an sdist carries), never in the clone. The new
environment is made ``--without-pip`` and the wheel goes in with ``pip --python NEW --no-deps --no-index``, so its
scripts point at the new interpreter. Its dependencies (torch, torchvision, NumPy, OpenCV, ...) are not downloaded
again: a ``.pth`` file names the site-packages folders they are installed in here. A ``.pth`` line that is a path
only appends that folder; the ``.pth`` files inside it (the editable install of this clone among them) are not
read, and the new environment's own site-packages comes first. ``PYTHONPATH`` is removed, and the test checks
that ``pspnet_lite`` is imported from the new environment.

Takes about 30-60 s: a wheel build (5 s), an install (4 s) and three processes of the new environment that each
import torch (every script's ``--help`` in one of them, the ADE20K preparation beside it, then the data-set check).
"""
import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from fake_datasets import make_ade20k

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SCRIPTS = PROJECT["scripts"]
DEPENDENCIES = ("torch", "torchvision", "numpy", "cv2", "PIL", "tqdm")  # the import names of the dependencies
TIMEOUT = 300


def _version(name: str) -> tuple[int, ...] | None:
    """The installed version of distribution ``name`` (read from its metadata, not imported), or None."""
    try:
        return tuple(int(p) for p in importlib.metadata.version(name).split(".")[:2])
    except importlib.metadata.PackageNotFoundError:
        return None


def _can_build_offline() -> str | None:
    """Why a wheel cannot be built and installed here without downloading anything, or None."""
    if (_version("pip") or (0,)) < (22, 3):
        return "pip >= 22.3 is needed (its --python option)"
    setuptools = _version("setuptools")
    if setuptools is None:
        return "setuptools is not installed"
    if setuptools < (70, 1) and _version("wheel") is None:  # setuptools >= 70.1 builds wheels alone
        return "setuptools < 70.1 needs the 'wheel' package to build a wheel"
    return None


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, **kw)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    reason = _can_build_offline()
    if reason:
        pytest.skip(f"cannot build the wheel offline: {reason} (pip install 'setuptools>=70.1')")
    src = tmp_path_factory.mktemp("src")
    shutil.copy2(ROOT / "pyproject.toml", src)
    shutil.copy2(ROOT / "README.md", src)
    shutil.copytree(ROOT / "pspnet_lite", src / "pspnet_lite",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
    dist = tmp_path_factory.mktemp("dist")
    done = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                 "-w", str(dist), str(src)], cwd=src)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = dist.glob("pspnet_lite-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    env = tmp_path_factory.mktemp("env") / "venv"
    done = _run([sys.executable, "-m", "venv", "--without-pip", str(env)])
    assert done.returncode == 0, done.stderr
    python = env / "bin" / "python"
    done = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
                 str(wheel)])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    shared = dict.fromkeys(str(Path(importlib.import_module(m).__file__).resolve().parents[1]) for m in DEPENDENCIES)
    (Path(purelib) / "shared_dependencies.pth").write_text("".join(f"{d}\n" for d in shared))
    return env


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1"}


def test_the_wheel_holds_the_package_and_nothing_else(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    assert {n.split("/")[0] for n in names} == {"pspnet_lite", dist_info}  # no tests/, book/, data_scripts/, results/
    package = {p.relative_to(ROOT).as_posix() for p in (ROOT / "pspnet_lite").rglob("*") if p.is_file()
               and p.suffix != ".pyc" and not any(d == "__pycache__" or d.startswith(".") for d in p.parts)}
    assert package <= names, f"missing from the wheel: {sorted(package - names)}"  # data files included
    assert {n for n in names if n.startswith("pspnet_lite/")} == package
    scripts = entry_points.split("[console_scripts]\n", 1)[1].split("\n[", 1)[0]
    assert dict(line.split(" = ") for line in scripts.strip().splitlines()) == SCRIPTS


def _zip_tree(tree: Path, archive: Path) -> None:
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(tree.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(tree).as_posix())


# Runs each installed script file as ``SCRIPT --help`` in one interpreter of the new environment (runpy runs the
# file pip wrote, with its own ``sys.exit(main())``): a process per script would import torch eight times.
HELP_EVERY_SCRIPT = """
import contextlib, io, json, runpy, sys
import pspnet_lite
helps = {}
for path in sys.argv[1:]:
    sys.argv, out, code = [path, "--help"], io.StringIO(), "returned"
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as e:
            code = e.code
    helps[path] = [code, out.getvalue()]
print(json.dumps({"package": pspnet_lite.__file__, "helps": helps}))
"""


def test_the_installed_scripts_run_outside_the_clone(venv, tmp_path):
    work = tmp_path / "elsewhere"  # a folder outside the clone, as a pip user's
    work.mkdir()
    make_ade20k(work / "tree", n_val=2, h=24, w=32)
    _zip_tree(work / "tree", work / "ADEChallengeData2016.zip")
    bin_ = venv / "bin"
    scripts = [bin_ / name for name in SCRIPTS]
    for script in scripts:
        assert script.read_text().startswith(f"#!{bin_ / 'python'}\n"), f"{script} does not run the new environment"
    prepare = [str(bin_ / "pspnet-prepare-ade20k"), "--archive", str(work / "ADEChallengeData2016.zip"),
               "--root", str(work / "ade"), "--no-verify", "--quiet", "--workers", "1"]
    run = dict(cwd=work, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    helps = subprocess.Popen([str(bin_ / "python"), "-c", HELP_EVERY_SCRIPT, *map(str, scripts)], **run)
    prepared = subprocess.Popen(prepare, **run)  # side by side: each process spends seconds importing torch

    stdout, stderr = helps.communicate(timeout=TIMEOUT)
    assert helps.returncode == 0 and stderr == "", stderr
    report = json.loads(stdout)
    assert Path(report["package"]).is_relative_to(venv), f"pspnet_lite came from {report['package']}, not the wheel"
    for script in scripts:
        code, text = report["helps"][str(script)]
        assert code == 0 and text.startswith(f"usage: {script.name} "), f"{script.name} --help: {code}\n{text}"
    stdout, stderr = prepared.communicate(timeout=TIMEOUT)
    assert prepared.returncode == 0 and stderr == "", stderr
    assert "ADE20K train: 1 samples" in stdout and "ADE20K ready" in stdout
    base = work / "ade" / "ADEChallengeData2016"
    assert (base / "val.txt").read_text().splitlines() == [
        f"images/validation/ADE_val_{i:08d}.jpg annotations/validation/ADE_val_{i:08d}.png" for i in (1, 2)]

    check = _run([str(bin_ / "pspnet-datasets"), "ade20k", "--root", str(work / "ade"), "--quiet"], cwd=work,
                 env=_env())
    assert check.returncode == 0, check.stderr
    assert "split='train', n=1): 1 samples OK" in check.stdout and "n=2): 2 samples OK" in check.stdout

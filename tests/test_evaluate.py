"""pspnet_lite.evaluate (``python -m pspnet_lite.evaluate``): scores a trainer checkpoint (this format or the one
written before the package was laid out by role) or an authors' semseg file, writes JSON, and answers every bad
value with one ``error:`` line and a non-zero exit, never a traceback."""

import dataclasses
import json
import subprocess
import sys
import types

import pytest
import torch
from conftest import ENV

from pspnet_lite import evaluate
from pspnet_lite.data.context_scenes import CLASSES, ContextScenes
from pspnet_lite.inference import PROTOCOLS
from pspnet_lite.inference import evaluate as score
from pspnet_lite.model import PSPNet, PSPNetConfig
from pspnet_lite.weights import pspnet_lite_to_semseg

FAST = ["--workers", "0", "--no-progress", "--device", "cpu"]


def run_evaluate(*argv):
    proc = subprocess.run([sys.executable, "-m", "pspnet_lite.evaluate", *argv], capture_output=True, text=True,
                          env=ENV, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def main(*argv):
    return evaluate.main(evaluate.get_args_parser().parse_args(list(argv)))


def test_evaluate_prints_table_and_writes_json(tiny_run, tmp_path):
    run, _ = tiny_run
    out = tmp_path / "eval.json"
    rc, stdout, stderr = run_evaluate("--checkpoint", str(run / "last.pt"), "--protocols", "ss", "ss+flip",
                                      "--num-images", "2", "--out", str(out), *FAST)
    assert rc == 0, stderr
    assert "IoU" in stdout and "pixel acc" in stdout and CLASSES[0] in stdout
    data = json.loads(out.read_text())
    assert set(data["protocols"]) == {"ss", "ss+flip"} and data["num_images"] == 2 and data["iteration"] == 3
    assert data["dataset"] == "context_scenes" and data["split"] == "val"  # the checkpoint's own data set
    assert 0 <= data["protocols"]["ss"]["pixel_acc"] <= 1


def test_default_output_file_is_next_to_the_checkpoint(tiny_run, tmp_path):
    run, _ = tiny_run
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes((run / "best.pt").read_bytes())
    res = main("--checkpoint", str(ckpt), "--num-images", "1", *FAST)
    assert json.loads((tmp_path / "eval_val.json").read_text()) == res


def test_readme_evaluate_command_all_four_protocols(tiny_run, tmp_path):
    run, _ = tiny_run
    out = tmp_path / "e.json"
    res = main("--checkpoint", str(run / "best.pt"), "--protocols", "ss", "ss+flip", "ms", "ms+flip",
               "--num-images", "1", "--out", str(out), *FAST)
    assert list(res["protocols"]) == ["ss", "ss+flip", "ms", "ms+flip"]
    assert json.loads(out.read_text())["protocols"]["ms+flip"]["pixel_acc"] >= 0


def test_an_old_checkpoint_evaluates_as_the_new_one(old_checkpoint, tiny_run, tmp_path):
    """A checkpoint written before the re-layout (flat config, format 1) scores the same from the shell."""
    run, _ = tiny_run
    rc, _, stderr = run_evaluate("--checkpoint", str(old_checkpoint), "--num-images", "2", "--out",
                                 str(tmp_path / "old.json"), *FAST)
    assert rc == 0, stderr
    old = json.loads((tmp_path / "old.json").read_text())
    new = main("--checkpoint", str(run / "last.pt"), "--num-images", "2", "--out", str(tmp_path / "new.json"), *FAST)
    assert old["protocols"] == new["protocols"] and old["iteration"] == new["iteration"] == 3
    assert old["dataset"] == "context_scenes"


@pytest.fixture(scope="module")
def semseg_file(tmp_path_factory):
    """A PSPNet saved in the authors' hszhao/semseg key layout (layer0.*, layer1..4, ppm, cls, aux), nested
    under "state_dict" with DataParallel's "module." prefix, as their train_epoch_*.pth files."""
    torch.manual_seed(3)
    model = PSPNet(num_classes=len(CLASSES), backbone="lite", bins=(1, 2, 4))
    for m in model.modules():  # non-trivial BN statistics, so a wrong mapping shows in the scores
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {f"module.{k}": v for k, v in pspnet_lite_to_semseg(model.state_dict()).items()}
    assert any(k.startswith("module.layer0.") for k in state) and not any(".backbone." in k for k in state)
    path = tmp_path_factory.mktemp("semseg") / "train_epoch_100.pth"
    torch.save({"epoch": 100, "state_dict": state}, path)
    return path, model.eval()


SEMSEG_FLAGS = ["--backbone", "lite", "--bins", "1,2,4", "--dataset", "context_scenes"]


def test_evaluate_reads_an_authors_semseg_checkpoint(semseg_file, tmp_path, capsys):
    path, model = semseg_file
    out = tmp_path / "e.json"
    res = main("--checkpoint", str(path), *SEMSEG_FLAGS, "--image-size", "64", "--num-images", "3",
               "--protocols", "ss,ss+flip", "--out", str(out), *FAST)
    ds = ContextScenes("val", num_images=3, image_size=64)
    # a plain weights file is the authors' kind, trained on 8k+1 crops: scored with inputs padded to 8k+1
    aligned = {name: dataclasses.replace(PROTOCOLS[name], align=True) for name in ("ss", "ss+flip")}
    ref = score(model, torch.utils.data.DataLoader(ds, batch_size=1), ds.num_classes, protocols=aligned,
                progress=False)
    for name in ("ss", "ss+flip"):
        assert res["protocols"][name]["miou"] == pytest.approx(ref[name].miou, abs=1e-9)
        assert res["protocols"][name]["pixel_acc"] == pytest.approx(ref[name].pixel_acc, abs=1e-9)
    assert "semseg layout" in res["weights"] and "skipped" in res["weights"]  # aux.* is training-only
    assert "weights: loaded" in capsys.readouterr().out  # what was loaded is reported
    # without --dataset / --num-classes the class count is unknown: one clear error
    with pytest.raises(SystemExit) as exc:
        main("--checkpoint", str(path), "--backbone", "lite")
    assert exc.value.code == 2 and "--num-classes N or --dataset NAME" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # wrong architecture flags: the strict key check's error, exit 2
        main("--checkpoint", str(path), "--backbone", "lite", "--dataset", "context_scenes")
    assert "does not fit PSPNet" in capsys.readouterr().err


def test_a_weights_file_slides_the_authors_window_of_its_data_set(monkeypatch):
    """A plain weights file records no training crop: the window is the authors' crop of --dataset (713 on
    Cityscapes, 473 on ADE20K); a trainer checkpoint's own crop wins, and so does --crop-size."""
    monkeypatch.setattr(evaluate, "build_dataset", lambda name, root=None, split=None, **kw: [])
    plain = types.SimpleNamespace(trainer=False, state={"weights": "..."})
    for dataset, crop in (("cityscapes", 713), ("ade20k", 473), ("voc", 473)):
        args = evaluate.get_args_parser().parse_args(["--checkpoint", "w.pth", "--dataset", dataset])
        assert evaluate._dataset(args, plain)[3] == crop
        assert {(p.crop_size, p.align) for p in evaluate.protocols_from_args(args, crop, True).values()} == {
            (crop, True)}
    trained = types.SimpleNamespace(trainer=True, state={"config": {"dataset": "cityscapes", "crop_size": 512}})
    args = evaluate.get_args_parser().parse_args(["--checkpoint", "last.pt"])
    assert evaluate._dataset(args, trained)[3] == 512
    args = evaluate.get_args_parser().parse_args(["--checkpoint", "w.pth", "--dataset", "cityscapes",
                                                  "--crop-size", "600"])
    assert evaluate.protocols_from_args(args, evaluate._dataset(args, plain)[3])["ss"].crop_size == 600


def test_architecture_flags_are_the_pspnet_config_fields():
    args = evaluate.get_args_parser().parse_args(["--checkpoint", "c", "--backbone", "lite", "--bins", "[1, 2]",
                                                  "--no-aux", "--layers", "1,1,2,1", "--dataset", "voc"])
    assert evaluate.arch_from_args(args) == PSPNetConfig(num_classes=21, backbone="lite", bins=(1, 2), aux=False,
                                                         layers=(1, 1, 2, 1))
    defaults = evaluate.arch_from_args(evaluate.get_args_parser().parse_args(["--checkpoint", "c"]))
    assert defaults == PSPNetConfig(num_classes=None)  # the authors' PSPNet; classes from --dataset
    assert evaluate.dataset_num_classes("ade20k") == 150 and evaluate.dataset_num_classes("nope") is None


def test_missing_checkpoint_from_the_shell():
    rc, out, err = run_evaluate("--checkpoint", "/missing.pt", "--no-progress")
    assert rc == 2 and out == ""
    assert err == "error: file '/missing.pt' does not exist; check the path\n"


@pytest.fixture(scope="module")
def bad_files(tiny_run, tmp_path_factory):
    run, _ = tiny_run
    d = tmp_path_factory.mktemp("bad")
    (d / "cut.pt").write_bytes((run / "last.pt").read_bytes()[:3000])  # a truncated download
    (d / "notes.txt").write_text("not a checkpoint\n")
    torch.save({"weights": [1, 2, 3]}, d / "odd.pt")
    return d


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "no/such/last.pt"], "error: file 'no/such/last.pt' does not exist"),
    (["--checkpoint", "{run}/last.pt", "--num-images", "0"], "error: --num-images must be a positive integer; got 0"),
    (["--checkpoint", "{bad}/cut.pt"], "error: cannot read '{bad}/cut.pt'"),
    (["--checkpoint", "{bad}/notes.txt"], "error: cannot read '{bad}/notes.txt'"),
    (["--checkpoint", "{bad}/odd.pt", "--dataset", "context_scenes"], "error: {bad}/odd.pt does not hold a state"),
    (["--checkpoint", "{run}/last.pt", "--bins", "x"], "error: cannot read bins 'x' as ints"),
    (["--checkpoint", "{run}/last.pt", "--dataset", "ade20k", "--data-root", "/missing"], "error: "),
    (["--checkpoint", "{run}/last.pt", "--num-images", "abc"], "error: argument --num-images: invalid int value"),
    (["--checkpoint", "{run}/last.pt", "--protocols", "ss,zz"], "error: argument --protocols: invalid choice(s)"),
    (["--checkpoint", "{run}/last.pt", "--pooling", "sum"], "error: pooling must be one of avg, max; got 'sum'"),
])
def test_every_bad_value_is_one_error_line_and_exit_2(argv, message, tiny_run, bad_files, capsys):
    run, _ = tiny_run
    argv = [a.format(run=run, bad=bad_files) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(*argv, *FAST)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(bad=bad_files)), err
    assert len(err.strip().splitlines()) == 1, err
    if "/missing" in argv:
        assert "/missing" in err and "prepare_ade20k" in err


def test_weights_for_other_classes_are_refused(tmp_path, capsys):
    torch.save(PSPNet(num_classes=21, backbone="lite", width=4).state_dict(), tmp_path / "voc.pt")
    with pytest.raises(SystemExit) as exc:
        main("--checkpoint", str(tmp_path / "voc.pt"), "--backbone", "lite", "--width", "4", "--num-classes", "21",
             "--dataset", "context_scenes", "--num-images", "1", *FAST)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: the checkpoint predicts 21 classes but 'context_scenes' has 16" in err

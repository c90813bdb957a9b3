"""pspnet_lite.checkpoint: the one reader/writer of model files. Trainer checkpoints (this format and the one
written before the package was laid out by role), plain weights files, atomic writes, errors that name the file."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import ADDED_SINCE_OLD_FORMAT, OLD_SCENES_TINY_CONFIG, old_format
from torch import nn

from pspnet_lite import checkpoint
from pspnet_lite.checkpoint import (
    CHECKPOINT_FORMAT,
    Loaded,
    load_model,
    load_trainer_checkpoint,
    load_weights,
    model_config,
    read,
    save,
)
from pspnet_lite.model import PSPNet, PSPNetConfig
from pspnet_lite.train import TrainConfig, get_preset, train
from pspnet_lite.weights import pspnet_lite_to_semseg

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(out_dir, **kw):
    base = dict(out_dir=str(out_dir), iters=2, batch_size=4, num_train_images=16, num_val_images=4, log_every=1,
                val_every=-1, workers=0, progress=False)
    return get_preset("scenes-tiny", **{**base, **kw})


def test_trainer_checkpoint_contents_load_weights_only(tiny_run):
    run, _ = tiny_run
    ck = load_trainer_checkpoint(run / "last.pt")
    for key in ("format", "model", "model_config", "optimizer", "scheduler", "scaler", "iteration", "rng", "sampler",
                "config", "class_names", "world_size", "best_miou", "metrics"):
        assert key in ck, key
    assert ck["format"] == CHECKPOINT_FORMAT == "pspnet_lite.train/2"
    assert ck["config"]["iters"] == 3 and ck["config"]["model"]["backbone"] == "lite"  # the architecture is nested
    assert ck["model_config"] == model_config(ck).to_dict() and model_config(ck).width == 16
    assert set(ck["rng"][0]) == {"torch", "cuda", "numpy", "python"}
    assert ck["sampler"]["samples_seen"] == 6  # 3 iterations of batch 2
    json.dumps(ck["config"])  # plain JSON-able
    assert TrainConfig.from_dict(ck["config"]).iters == 3
    loaded = load_model(run / "last.pt")
    assert isinstance(loaded, Loaded) and loaded.trainer and not loaded.model.training
    assert loaded.model.num_classes == ck["model_config"]["num_classes"] == len(ck["class_names"])
    assert loaded.config == model_config(ck) and loaded.state["iteration"] == 3
    sd = loaded.model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in ck["model"].items())


KILL_SCRIPT = r"""
import os, signal, sys, torch
from pspnet_lite import checkpoint
path = sys.argv[1]
def half_save(obj, fh):
    fh.write(b"PK\x03\x04 half a checkpoint")
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)   # killed mid-write
torch.save = half_save
checkpoint.save({"model": {"w": torch.ones(3)}, "model_config": {}}, path)
"""


def test_half_written_checkpoint_never_replaces_the_good_one(tmp_path, monkeypatch):
    good = tmp_path / "last.pt"
    save({"model": {"w": torch.zeros(3)}, "model_config": {"num_classes": 2}, "iteration": 7}, good)
    before = good.read_bytes()
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(good)], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    assert good.read_bytes() == before
    ck = load_trainer_checkpoint(good)
    assert ck["iteration"] == 7 and torch.equal(ck["model"]["w"], torch.zeros(3))

    # an exception mid-write also leaves the old file and no temp file
    def boom(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save({"x": 1}, good)
    monkeypatch.undo()
    assert good.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp") and str(os.getpid()) in p.name] == []


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pth.*does not exist"):
        read(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_weights(PSPNet(num_classes=2, backbone="lite", width=4), tmp_path / "nope.pth")
    # a file holding code (a pickled module) is refused: weights_only=True
    torch.save({"state_dict": {"a": torch.zeros(1)}, "extra": nn.ReLU()}, tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match=r"pickled\.pth.*weights_only=True"):
        load_weights(PSPNet(num_classes=2, backbone="lite", width=4), tmp_path / "pickled.pth")


def test_truncated_file_is_a_value_error_naming_it(tiny_run, tmp_path):
    run, _ = tiny_run
    cut = tmp_path / "cut.pt"
    cut.write_bytes((run / "last.pt").read_bytes()[:2000])
    for call in (read, load_trainer_checkpoint, load_model):
        with pytest.raises(ValueError, match=r"cut\.pt.*truncated"):
            call(cut)


def test_trainer_checkpoint_reader_rejects_other_files(tmp_path):
    model = PSPNet(num_classes=3, backbone="lite", width=4)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a pspnet_lite training checkpoint"):
        load_trainer_checkpoint(tmp_path / "plain.pt")
    save({"format": "pspnet_lite.train/99", "model": model.state_dict(), "model_config": model.config.to_dict()},
         tmp_path / "future.pt")
    with pytest.raises(ValueError, match=r"format 'pspnet_lite.train/99'.*Upgrade"):
        load_trainer_checkpoint(tmp_path / "future.pt")


def test_plain_weights_file_needs_the_architecture(tmp_path):
    torch.manual_seed(0)
    src = PSPNet(num_classes=3, backbone="lite", width=4, bins=(1, 2)).eval()
    torch.save(src.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"plain weights file.*--num-classes N or --dataset NAME"):
        load_model(tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="plain weights file"):
        load_model(tmp_path / "plain.pt", arch=PSPNetConfig(num_classes=None, backbone="lite"))
    loaded = load_model(tmp_path / "plain.pt", arch=PSPNetConfig(num_classes=3, backbone="lite", width=4, bins=(1, 2)))
    assert not loaded.trainer and loaded.config.aux is False and loaded.model.aux is None  # aux: training only
    assert "pspnet_lite layout" in loaded.state["weights"] and "skipped" in loaded.state["weights"]
    x = torch.randn(1, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), src(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="does not fit PSPNet"):  # the wrong architecture: strict key check
        load_model(tmp_path / "plain.pt", arch=PSPNetConfig(num_classes=3, backbone="lite", width=8))


def test_authors_semseg_file_loads_with_its_architecture(tmp_path):
    torch.manual_seed(1)
    src = PSPNet(num_classes=4, backbone="lite", width=4).eval()
    state = {f"module.{k}": v for k, v in pspnet_lite_to_semseg(src.state_dict()).items()}
    torch.save({"epoch": 100, "state_dict": state}, tmp_path / "train_epoch_100.pth")
    loaded = load_model(tmp_path / "train_epoch_100.pth", arch=PSPNetConfig(num_classes=4, backbone="lite", width=4))
    assert "semseg layout" in loaded.state["weights"]
    x = torch.randn(1, 3, 17, 17)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), src(x), rtol=0, atol=0)


def test_load_weights_takes_a_trainer_checkpoint_or_a_state_dict(tiny_run):
    run, _ = tiny_run
    ck = load_trainer_checkpoint(run / "last.pt")
    for source in (run / "last.pt", str(run / "last.pt"), ck["model"]):
        model = PSPNet(model_config(ck))
        report = load_weights(model, source)
        assert report.kind == "pspnet_lite" and len(report.loaded) == len(ck["model"])
        assert all(torch.equal(model.state_dict()[k], v) for k, v in ck["model"].items())
    with pytest.raises(ValueError, match="file path or a state dict"):
        load_weights(PSPNet(model_config(ck)), 3)


# -- checkpoints written before the package was laid out by role (format "pspnet_lite.train/1")

def test_old_checkpoint_loads(old_checkpoint, tiny_run):
    run, _ = tiny_run
    raw = torch.load(old_checkpoint, weights_only=True)
    assert raw["format"] == "pspnet_lite.train/1" and "model" not in raw["config"]  # the old, flat layout
    assert raw["config"]["backbone"] == "lite" and raw["model_config"]["bins"] == [1, 2, 3, 6]
    old, new = load_model(old_checkpoint), load_model(run / "last.pt")
    assert old.trainer and old.config == new.config
    assert old.state["iteration"] == 3
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(old.model(x), new.model(x), rtol=0, atol=0)
    cfg = TrainConfig.from_dict(old.state["config"])
    assert cfg == TrainConfig.from_dict(new.state["config"])
    assert cfg.model.backbone == "lite" and cfg.model.bins == (1, 2, 3, 6) and cfg.iters == 3


def test_old_flat_config_reads_as_the_same_train_config():
    cfg = TrainConfig.from_dict(OLD_SCENES_TINY_CONFIG)
    assert cfg == get_preset("scenes-tiny")
    flat = {k: v for k, v in cfg.flat_dict().items() if k not in ADDED_SINCE_OLD_FORMAT}
    assert flat == OLD_SCENES_TINY_CONFIG  # flat_dict is the old layout, key for key (plus fields added since)
    assert cfg.model.num_classes is None and cfg.model.bins == (1, 2, 3, 6) and cfg.image_size == 64


def test_resume_from_an_old_last_pt_is_exact(tmp_path):
    straight = train(tiny(tmp_path / "straight", iters=4))
    train(tiny(tmp_path / "part", iters=4, stop_at=2))
    new = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    old = old_format(new, iters=4, stop_at=2, batch_size=4, num_train_images=16, num_val_images=4, log_every=1,
                     val_every=-1, out_dir=str(tmp_path / "part"))
    torch.save(old, tmp_path / "old_last.pt")
    resumed = train(tiny(tmp_path / "resumed", iters=4, resume=str(tmp_path / "old_last.pt")))
    assert resumed.iterations == 4 and [r["iter"] for r in resumed.train_records()] == [3, 4]
    a = torch.load(straight.checkpoints["last"], weights_only=True)
    b = torch.load(resumed.checkpoints["last"], weights_only=True)
    assert b["format"] == CHECKPOINT_FORMAT  # written anew in this format
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["loss"] for r in straight.train_records()][2:] == [r["loss"] for r in resumed.train_records()]


def test_checkpoint_module_reads_with_weights_only(monkeypatch, tmp_path):
    seen = []
    real = torch.load

    def spy(*args, **kw):
        seen.append(kw.get("weights_only"))
        return real(*args, **kw)

    monkeypatch.setattr(checkpoint.torch, "load", spy)
    model = PSPNet(num_classes=2, backbone="lite", width=4)
    save({"model": model.state_dict(), "model_config": model.config.to_dict()}, tmp_path / "c.pt")
    load_model(tmp_path / "c.pt")
    load_weights(model, tmp_path / "c.pt")
    load_trainer_checkpoint(tmp_path / "c.pt")
    assert seen and all(w is True for w in seen)

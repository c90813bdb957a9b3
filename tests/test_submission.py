"""pspnet_lite.submission with ``predict --format`` and ``evaluate --predictions``: each server's files (names, id
space, bit depth, palette), the round trip predict -> score equal to scoring the checkpoint, and one-line errors
for every folder a server would reject."""

import json
import math

import numpy as np
import pytest
import torch
from fake_datasets import make_ade20k, make_cityscapes, make_voc
from PIL import Image

from pspnet_lite import evaluate, predict, submission
from pspnet_lite.data.datasets import CITYSCAPES_TRAIN_TO_LABEL, voc_colormap
from pspnet_lite.model import PSPNet

pytestmark = pytest.mark.filterwarnings("ignore:.*the official split has")
FAST = ["--workers", "0", "--no-progress", "--device", "cpu"]
MAKERS = {"ade20k": make_ade20k, "voc": make_voc, "cityscapes": make_cityscapes}


@pytest.fixture(scope="module", params=["ade20k", "voc", "cityscapes"])
def setup(request, tmp_path_factory):
    """(data set name, data root, weights file, architecture flags) of a random lite PSPNet for the data set."""
    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    MAKERS[name](tmp / "data")
    torch.manual_seed(0)
    model = PSPNet(num_classes=submission.FORMATS[name], backbone="lite", width=4, bins=(1, 2))
    with torch.no_grad():
        model.cls[-1].weight.mul_(200)  # a random net whose answers vary over the image
        if name == "ade20k":  # and, for ADE20K, are among the classes the fabricated labels hold
            model.cls[-1].bias[[i for i in range(150) if i not in (*range(7), 36, 149)]] = -1e4
        logits = model.eval()(torch.randn(1, 3, 48, 96))[0]  # (C, H, W)
        margin = logits[1:].max(0).values - logits[0]  # class 0 is the background of every fabricated label map
        model.cls[-1].bias[0] += margin.median()  # about half the pixels answered with it
    torch.save(model.state_dict(), tmp / "weights.pt")
    flags = ["--checkpoint", str(tmp / "weights.pt"), "--backbone", "lite", "--width", "4", "--bins", "1,2",
             "--dataset", name, "--data-root", str(tmp / "data"), "--device", "cpu"]
    return name, tmp, flags


def run_evaluate(*argv):
    return evaluate.main(evaluate.get_args_parser().parse_args(list(argv)))


def run_predict(*argv):
    return predict.main(predict.get_args_parser().parse_args(list(argv)))


def predict_split(setup, out, *extra):
    name, tmp, flags = setup
    return run_predict(*flags, "--split", "val", "--format", name, "--out", str(out), *extra)


def test_round_trip_equals_scoring_the_checkpoint(setup):
    name, tmp, flags = setup
    direct = run_evaluate(*flags, "--split", "val", "--out", str(tmp / "direct.json"), "--workers", "0",
                          "--no-progress")
    preds = tmp / "round_trip"
    predict_split(setup, preds)
    scored = run_evaluate("--predictions", str(preds), *flags[4:], "--split", "val", "--out", str(tmp / "p.json"),
                          "--no-progress")
    keys = ["miou", "macc", "pixel_acc", "iou", "acc", "per_class", "num_pixels"]
    if name == "cityscapes":
        keys += ["iou_class", "iiou_class", "iou_category", "iiou_category", "iiou_per_class", "iou_per_category"]
        assert all(0 < scored[k] < 1 for k in ("iou_class", "iiou_class", "iou_category", "iiou_category"))
    for key in keys:
        assert scored[key] == direct[key] == direct["protocols"]["ss"][key], key
    assert 0 < scored["miou"] < 1 and scored["num_images"] == 3
    assert json.loads((tmp / "p.json").read_text()) == scored


def test_files_are_what_the_server_takes(setup, tmp_path):
    name, tmp, _ = setup
    paths = predict_split(setup, tmp_path / "sub")
    assert len(paths) == 3
    for p in paths:
        im = Image.open(p)
        ids = np.array(im)
        assert ids.dtype == np.uint8 and ids.ndim == 2
        if name == "ade20k":
            assert im.mode == "L" and ids.min() >= 1 and ids.max() <= 150 and p.endswith(".png")
            assert p.split("/")[-1].startswith("ADE_val_")
        if name == "voc":
            assert im.mode == "P" and "results/VOC2012/Segmentation/comp6_test_cls/2007_0000" in p
            assert np.array(im.getpalette()[: 3 * 21]).reshape(21, 3).tolist() == voc_colormap(21).tolist()
            assert ids.max() <= 20
        if name == "cityscapes":
            assert im.mode == "L" and p.endswith("_leftImg8bit.png")
            assert set(np.unique(ids).tolist()) <= set(CITYSCAPES_TRAIN_TO_LABEL.tolist())  # label ids, not train ids


def error_of(capsys, fn, *argv) -> str:
    with pytest.raises(SystemExit) as exc:
        fn(*argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture
def folder(setup, tmp_path):
    """A correct prediction folder of the split (a fresh copy per test) and the evaluate flags that score it."""
    name, tmp, flags = setup
    out = tmp_path / "preds"
    predict_split(setup, out)
    return out, ["--predictions", str(out), *flags[4:], "--split", "val", "--out", str(tmp_path / "s.json"),
                 "--no-progress"]


def test_a_missing_prediction_is_named(setup, folder, capsys, tmp_path):
    out, argv = folder
    victim = sorted(out.rglob("*.png"))[1]
    victim.unlink()
    err = error_of(capsys, run_evaluate, *argv)
    assert "no prediction for 1 of 3 images" in err and str(victim) in err and "predict" in err
    assert not (tmp_path / "s.json").exists()  # nothing half-written


def test_extra_files_are_named(setup, folder, capsys):
    out, argv = folder
    (out / "holiday_photo.png").write_bytes(next(out.rglob("*.png")).read_bytes())
    err = error_of(capsys, run_evaluate, *argv)
    assert "1 file(s)" in err and "holiday_photo.png" in err and "match no image" in err


def test_a_prediction_of_the_wrong_size_is_named(setup, folder, capsys):
    out, argv = folder
    victim = sorted(out.rglob("*.png"))[0]
    im = Image.open(victim)
    im.resize((im.width // 2, im.height // 2), Image.NEAREST).save(victim)
    err = error_of(capsys, run_evaluate, *argv)
    assert str(victim) in err and "full resolution" in err


def test_train_ids_where_the_server_wants_other_ids_are_detected(setup, folder, capsys):
    name, _, _ = setup
    out, argv = folder
    victim = sorted(out.rglob("*.png"))[0]
    ids = np.array(Image.open(victim))
    if name == "ade20k":
        train = (ids - 1).astype(np.uint8)  # 0..149, as the network outputs them
        train[0, 0] = 0  # wall's train id
        Image.fromarray(train).save(victim)
        expect = "look like 0-based train ids"
    elif name == "cityscapes":
        train = np.argsort(CITYSCAPES_TRAIN_TO_LABEL)[np.searchsorted(np.sort(CITYSCAPES_TRAIN_TO_LABEL), ids)]
        train[0, 0] = 0  # road's train id, surely there
        Image.fromarray(train.astype(np.uint8)).save(victim)
        expect = "look like train ids"
    else:
        ids[0, 0] = 255
        Image.fromarray(ids).save(victim)
        expect = "outside VOC's class ids 0..20"
    err = error_of(capsys, run_evaluate, *argv)
    assert str(victim) in err and expect in err


@pytest.mark.parametrize("setup", ["cityscapes"], indirect=True)
def test_cityscapes_without_instance_files_names_the_file_and_the_fix(setup, folder, capsys, tmp_path):
    name, tmp, flags = setup
    out, argv = folder
    inst = sorted((tmp / "data" / "gtFine" / "val").rglob("*_instanceIds.png"))
    assert len(inst) == 3
    moved = [p.rename(p.with_suffix(".bak")) for p in inst]
    try:
        err = error_of(capsys, run_evaluate, *argv)
        assert "instanceIds.png" in err and "--no-iiou" in err
        err = error_of(capsys, run_evaluate, *flags, "--split", "val", *FAST)
        assert "instanceIds.png" in err and "--no-iiou" in err
        scored = run_evaluate(*argv, "--no-iiou")
        assert scored["iiou_class"] is None and 0 < scored["iou_category"] < 1
    finally:
        for p in moved:
            p.rename(p.with_suffix(".png"))


def test_predict_format_refuses_a_used_folder_and_leaves_nothing_on_failure(setup, tmp_path, capsys, monkeypatch):
    name, _, flags = setup
    used = tmp_path / "used"
    used.mkdir()
    (used / "old.png").write_bytes(b"")
    err = error_of(capsys, run_predict, *flags, "--split", "val", "--format", name, "--out", str(used))
    assert "already exists and is not an empty folder" in err
    calls = []

    def failing_write(*a, **k):
        calls.append(a)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*a, **k)

    real = predict.write
    monkeypatch.setattr(predict, "write", failing_write)
    with pytest.raises(OSError):
        predict.run(predict.get_args_parser().parse_args(
            [*flags, "--split", "val", "--format", name, "--out", str(tmp_path / "new")]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["used"]  # no half-written submission, no staging


def test_format_must_fit_the_model(setup, tmp_path, capsys):
    name, _, flags = setup
    other = "voc" if name != "voc" else "ade20k"
    err = error_of(capsys, run_predict, *flags, "--split", "val", "--format", other, "--out", str(tmp_path / "x"))
    assert f"--format {other} holds" in err


def test_decode_and_encode_are_inverse():
    rng = np.random.default_rng(0)
    for fmt, n in submission.FORMATS.items():
        train = rng.integers(0, n, (5, 7))
        ids = submission.encode(fmt, train)
        back = submission.decode(fmt, ids, "x.png")
        expect = CITYSCAPES_TRAIN_TO_LABEL[train] if fmt == "cityscapes" else train
        assert (back == expect).all(), fmt
    assert math.isclose(len(submission.FORMATS), 3)

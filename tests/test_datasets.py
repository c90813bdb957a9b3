"""Data sets of §5 on tiny fabricated trees: label mapping, file checks, clear errors, validate(), and the
data-set check command line (``python -m pspnet_lite.data.datasets``)."""
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from pspnet_lite.data import (
    ADE20K,
    CITYSCAPES_CLASSES,
    Cityscapes,
    SegmentationFolder,
    TrainTransform,
    VOCAug,
    build_dataset,
)
from pspnet_lite.data.datasets import ADE20K_CLASSES, ADE20K_PALETTE, CITYSCAPES_LABEL_TO_TRAIN, VOC_PALETTE
from pspnet_lite.data.datasets import main as validate_main
from pspnet_lite.data.datasets.check import main as check_main

pytestmark = pytest.mark.filterwarnings("ignore:.*the official split has:UserWarning")


def _img(path, h=24, w=32, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(path), rgb[:, :, ::-1])
    return rgb


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_ade(root, n_train=2, n_val=1):
    base = root / "ADEChallengeData2016"
    raws = {}
    for split, sub, n in (("train", "training", n_train), ("val", "validation", n_val)):
        for i in range(n):
            stem = f"ADE_{split}_{i + 1:08d}"
            _img(base / "images" / sub / f"{stem}.jpg", seed=i)
            raw = np.random.default_rng(i).integers(0, 151, (24, 32)).astype(np.uint8)
            raw[0, :4] = [0, 1, 150, 75]
            _png(base / "annotations" / sub / f"{stem}.png", raw)
            raws[(split, i)] = raw
    return raws


def test_ade20k_maps_zero_to_ignore_and_shifts(tmp_path):
    raws = make_ade(tmp_path)
    with pytest.warns(UserWarning, match="official split has 20210"):
        ds = ADE20K(tmp_path, "train")
    assert len(ds) == 2 and ds.num_classes == 150 and ds.classes[0] == "wall" and ds.classes[-1] == "flag"
    image, mask = ds.load(0)
    assert image.shape == (24, 32, 3) and image.dtype == np.uint8
    raw = raws[("train", 0)]
    assert list(mask[0, :4]) == [255, 0, 149, 74]
    np.testing.assert_array_equal(mask, np.where(raw == 0, 255, raw.astype(int) - 1))
    x, y = ds[0]  # default EvalTransform
    assert x.shape == (3, 24, 32) and y.dtype == torch.int64
    assert len(ADE20K(tmp_path / "ADEChallengeData2016", "val")) == 1  # root may be the inner dir


def test_palettes_and_class_lists():
    assert len(ADE20K_CLASSES) == 150 and ADE20K_PALETTE.shape == (150, 3)
    # objectInfo150's first name of each row: row 90 (class 89) is "television", not mmseg's "television receiver"
    assert (ADE20K_CLASSES[0], ADE20K_CLASSES[88], ADE20K_CLASSES[89], ADE20K_CLASSES[90]) == (
        "wall", "booth", "television", "airplane")
    assert ADE20K_CLASSES[44] == "chest of drawers" and ADE20K_CLASSES[149] == "flag"
    assert VOC_PALETTE[:3].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    assert VOC_PALETTE[15].tolist() == [192, 128, 128]  # person
    assert len(CITYSCAPES_CLASSES) == 19
    expected = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
    for label_id in range(256):
        assert CITYSCAPES_LABEL_TO_TRAIN[label_id] == expected.get(label_id, 255)


@pytest.mark.parametrize("name,script", [("ade20k", "prepare_ade20k"), ("voc", "prepare_voc"),
                                         ("cityscapes", "prepare_cityscapes")])
def test_missing_root_names_the_root_and_the_prepare_command(tmp_path, name, script):
    missing = tmp_path / "missing"
    with pytest.raises(ValueError) as e:
        build_dataset(name, root=str(missing), split="train")
    msg = str(e.value)
    assert f"the data root {missing} does not exist" in msg
    assert f"`python data_scripts/{script}.py --root {missing}`" in msg


def test_missing_default_root_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("PSPNET_DATA", str(tmp_path))
    with pytest.raises(ValueError, match=r"data root .*ade20k \(the default root: \$PSPNET_DATA/ade20k, or "
                                         r"\./data/ade20k when PSPNET_DATA is unset\) does not exist"):
        build_dataset("ade20k", split="val")


def test_incomplete_root_names_the_missing_folder(tmp_path):
    with pytest.raises(ValueError, match=r"python data_scripts/prepare_ade20k.py --root"):
        ADE20K(tmp_path / "nowhere", "train")
    (tmp_path / "ade").mkdir()
    with pytest.raises(ValueError, match=r"ade/images/training does not exist.*prepare_ade20k.py --root"):
        ADE20K(tmp_path / "ade", "train")
    with pytest.raises(ValueError, match=r"prepare_voc.py"):
        VOCAug(tmp_path, "val")
    with pytest.raises(ValueError, match=r"prepare_cityscapes.py"):
        Cityscapes(tmp_path, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        ADE20K(tmp_path, "test")


def test_bad_files_raise_errors_naming_them(tmp_path):
    make_ade(tmp_path, n_train=4)
    base = tmp_path / "ADEChallengeData2016"
    ann = base / "annotations" / "training"
    (ann / "ADE_train_00000001.png").unlink()
    _png(ann / "ADE_train_00000002.png", np.zeros((10, 10), np.uint8))
    (base / "images" / "training" / "ADE_train_00000003.jpg").write_bytes(b"not a jpeg")
    bad = np.ones((24, 32), np.uint8)
    bad[3, 3] = 200  # raw 200 -> 199, outside 0..149
    _png(ann / "ADE_train_00000004.png", bad)
    ds = ADE20K(tmp_path, "train")
    with pytest.raises(ValueError, match=r"ADE_train_00000001\.png for image .*ADE_train_00000001\.jpg does not exist"):
        ds.load(0)
    with pytest.raises(ValueError, match=r"ADE_train_00000002\.png has size \(10, 10\) but image .*00000002\.jpg"):
        ds.load(1)
    with pytest.raises(ValueError, match=r"cannot decode image .*ADE_train_00000003\.jpg"):
        ds.load(2)
    with pytest.raises(ValueError, match=r"ADE_train_00000004\.png has label value 199"):
        ds.load(3)
    with pytest.raises(ValueError, match="4 of 4 samples failed validation"):
        ds.validate(progress=False)
    assert ADE20K(tmp_path, "train", check_labels=False).load(3)[1][3, 3] == 199


def test_validate_report_and_cli(tmp_path, capsys):
    make_ade(tmp_path)
    rep = ADE20K(tmp_path, "train").validate(progress=False)
    assert rep["checked"] == 2 and rep["errors"] == [] and rep["label_counts"].sum() == 2 * 24 * 32
    assert validate_main(["ade20k", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ADE20K(root=" in out and "split='train', n=2): 2 samples OK" in out and "split='val', n=1)" in out
    assert check_main(["ade20k", "--root", str(tmp_path), "--split", "val", "--quiet"]) == 0
    assert "1 samples OK" in capsys.readouterr().out
    assert check_main(["ADE20K", "--root", str(tmp_path), "--split", "train,val", "--split", "val", "--quiet"]) == 0
    assert capsys.readouterr().out.count("samples OK") == 3


def test_cli_reports_failed_samples_with_status_1(tmp_path, capsys):
    make_ade(tmp_path)
    (tmp_path / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_val_00000001.png").unlink()
    assert check_main(["ade20k", "--root", str(tmp_path), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert "split='train', n=2): 2 samples OK" in out
    assert "1 of 1 samples failed validation" in err and "ADE_val_00000001.png" in err


@pytest.mark.parametrize("argv,message", [
    (["imagenet"], "error: unknown data set 'imagenet'; the check knows ade20k, cityscapes, voc"),
    (["ade20k", "--root", "{tmp}/missing"], "error: ADE20K not found: the data root {tmp}/missing does not exist. "
                                             "Prepare the data set with `pspnet-prepare-ade20k --root "
                                             "{tmp}/missing` (in a clone: `python data_scripts/prepare_ade20k.py "
                                             "--root {tmp}/missing`"),
    (["voc", "--root", "{tmp}", "--split", "test"], "error: VOCAug: split must be one of train, val, train_voc; "
                                                     "got 'test'"),
    (["ade20k", "--root", "{tmp}", "--max-errors", "many"], "error: --max-errors must be a whole number >= 1; "
                                                             "got 'many'"),
    (["ade20k", "--root", "{tmp}", "--max-errors", "0"], "error: --max-errors must be a whole number >= 1"),
    (["cityscapes", "--root", "{tmp}/none", "--split", "[train"], "error: cannot read --split '[train'"),
])
def test_cli_bad_values_end_in_one_error_line(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as e:
        check_main(argv)
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith(message.format(tmp=tmp_path))


def test_cli_as_a_module_help_and_error(tmp_path):
    """``python -m pspnet_lite.data.datasets``: --help works; a bad value is one line, no traceback or warning."""
    run = [sys.executable, "-m", "pspnet_lite.data.datasets"]
    ok = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "--root" in ok.stdout and "--split" in ok.stdout and ok.stderr == ""
    bad = subprocess.run([*run, "ade20k", "--root", str(tmp_path / "missing")], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        f"error: ADE20K not found: the data root {tmp_path / 'missing'} does not exist. Prepare the data set with "
        f"`pspnet-prepare-ade20k --root {tmp_path / 'missing'}` (in a clone: "
        f"`python data_scripts/prepare_ade20k.py --root {tmp_path / 'missing'}`), or point the data root at an "
        f"existing copy"]


def make_voc(root, ids_train=("2007_000032", "2008_000002"), ids_val=("2007_000033",)):
    base = root / "VOCdevkit" / "VOC2012"
    for i, sid in enumerate(ids_train + ids_val):
        _img(base / "JPEGImages" / f"{sid}.jpg", seed=i)
        m = np.random.default_rng(i).integers(0, 21, (24, 32)).astype(np.uint8)
        m[0, 0] = 255
        _png(base / "SegmentationClassAug" / f"{sid}.png", m)
    (base / "ImageSets/SegmentationAug").mkdir(parents=True)
    (base / "ImageSets/Segmentation").mkdir(parents=True)
    (base / "ImageSets/SegmentationAug/train_aug.txt").write_text("\n".join(ids_train) + "\n")
    (base / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids_val) + "\n")
    return base


def test_voc_aug_loads_lists(tmp_path):
    make_voc(tmp_path)
    with pytest.warns(UserWarning, match="10582"):
        ds = VOCAug(tmp_path, "train")
    assert len(ds) == 2 and ds.num_classes == 21
    _, mask = ds.load(1)
    assert mask[0, 0] == 255 and mask.max() == 255 and np.sort(np.unique(mask))[-2] <= 20
    assert len(VOCAug(tmp_path / "VOCdevkit", "val")) == 1


def make_cityscapes(root, label_name="labelIds"):
    ids = np.array([[0, 7, 8, 11], [26, 33, 34, 4]], np.uint8).repeat(6, 0).repeat(8, 1)
    for split, city in (("train", "aachen"), ("val", "lindau")):
        stem = f"{city}_000000_000019"
        _img(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", h=12, w=32)
        arr = ids if label_name == "labelIds" else CITYSCAPES_LABEL_TO_TRAIN[ids]
        _png(root / "gtFine" / split / city / f"{stem}_gtFine_{label_name}.png", arr)
    return ids


def test_cityscapes_reads_train_ids_or_maps_label_ids(tmp_path):
    ids = make_cityscapes(tmp_path / "a", "labelIds")
    make_cityscapes(tmp_path / "b", "labelTrainIds")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = Cityscapes(tmp_path / "a", "train"), Cityscapes(tmp_path / "b", "val")
    ma, mb = a.load(0)[1], b.load(0)[1]
    np.testing.assert_array_equal(ma, mb)
    assert ma[0, :: 8].tolist() == [255, 0, 1, 2] and ma[6, :: 8].tolist() == [13, 18, 255, 255]
    assert ids.shape == ma.shape


def test_segmentation_folder(tmp_path):
    (tmp_path / "ann").mkdir()
    for i in range(3):
        _img(tmp_path / "img" / f"{i}.jpg", seed=i)
        pal = Image.fromarray(np.full((24, 32), i, np.uint8)).convert("P")  # palette PNGs give their indices
        pal.putpalette(VOC_PALETTE.ravel().tolist())
        pal.save(tmp_path / "ann" / f"{i}.png")
    (tmp_path / "list.txt").write_text("# comment\n" + "".join(f"img/{i}.jpg ann/{i}.png\n" for i in range(3)))
    ds = SegmentationFolder(tmp_path, "list.txt", classes=["a", "b", "c"])
    assert len(ds) == 3 and ds.palette.shape == (3, 3)
    assert ds.palette.tolist() == VOC_PALETTE[1:4].tolist()  # default palette: no class drawn black (= ignore)
    assert ds.load(2)[1].max() == 2
    ds2 = build_dataset("folder", tmp_path, list_file="list.txt", num_classes=2)
    with pytest.raises(ValueError, match=r"2\.png has label value 2"):
        ds2.load(2)
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(tmp_path / "ann" / "rgb.png")
    (tmp_path / "bad.txt").write_text("img/0.jpg ann/rgb.png\nonly_one_column\n")
    with pytest.raises(ValueError, match="line 2"):
        SegmentationFolder(tmp_path, "bad.txt", num_classes=3)
    (tmp_path / "rgb.txt").write_text("img/0.jpg ann/rgb.png\n")
    with pytest.raises(ValueError, match="RGB image"):
        SegmentationFolder(tmp_path, "rgb.txt", num_classes=3).load(0)
    with pytest.raises(ValueError, match="classes"):
        SegmentationFolder(tmp_path, "list.txt")


def test_build_dataset_and_training_transform(tmp_path):
    make_ade(tmp_path)
    ds = build_dataset("ade20k", tmp_path, "train", transform=TrainTransform(crop_size=16, seed=0))
    x, y = ds[0]
    assert x.shape == (3, 16, 16) and y.shape == (16, 16)
    assert set(np.unique(y.numpy())) <= set(np.unique(ds.load(0)[1])) | {255}
    with pytest.raises(ValueError, match="unknown data set"):
        build_dataset("imagenet")


def test_default_root_uses_env(tmp_path, monkeypatch):
    make_ade(tmp_path / "ade20k")
    monkeypatch.setenv("PSPNET_DATA", str(tmp_path))
    assert len(build_dataset("ade20k", split="val")) == 1


def test_build_dataset_context_scenes():
    ds = build_dataset("context_scenes", split="val", num_images=2, image_size=64)
    x, y = ds[0]
    assert len(ds) == 2 and x.shape == (3, 64, 64) and y.shape == (64, 64) and y.dtype == torch.int64

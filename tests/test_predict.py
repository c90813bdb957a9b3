"""pspnet_lite.predict (``python -m pspnet_lite.predict``): masks, overlays and class-id maps for image files, from
a trainer checkpoint (either format) or an authors' semseg file; bad values end in one ``error:`` line."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import ENV

from pspnet_lite import predict
from pspnet_lite.data.context_scenes import CLASSES, PALETTE, ContextScenes
from pspnet_lite.inference import aligned_forward
from pspnet_lite.model import PSPNet
from pspnet_lite.weights import pspnet_lite_to_semseg


def main(*argv):
    return predict.main(predict.get_args_parser().parse_args(list(argv)))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    ds = ContextScenes("val", num_images=2, image_size=64)
    d = tmp_path_factory.mktemp("images")
    paths = []
    for i in range(2):
        p = d / f"img{i}.png"
        cv2.imwrite(str(p), cv2.cvtColor(ds.images[i], cv2.COLOR_RGB2BGR))
        paths.append(str(p))
    return paths, ds


def test_predict_writes_masks_and_overlays(tiny_run, images, tmp_path):
    run, _ = tiny_run
    paths, ds = images
    out = tmp_path / "pred"
    proc = subprocess.run([sys.executable, "-m", "pspnet_lite.predict", *paths, "--checkpoint", str(run / "last.pt"),
                           "--out", str(out), "--device", "cpu"], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote 6 files to {out}" in proc.stdout
    for i in range(2):
        for kind in ("mask", "overlay"):
            img = cv2.imread(str(out / f"img{i}_{kind}.png"))
            assert img is not None and img.shape == (64, 64, 3)
        labels = cv2.imread(str(out / f"img{i}_labels.png"), cv2.IMREAD_UNCHANGED)
        assert labels.shape == (64, 64) and labels.max() < ds.num_classes
        mask = cv2.cvtColor(cv2.imread(str(out / f"img{i}_mask.png")), cv2.COLOR_BGR2RGB)
        assert (mask == np.asarray(PALETTE, dtype=np.uint8)[labels]).all()  # the data set's palette


def test_an_old_checkpoint_predicts_as_the_new_one(old_checkpoint, tiny_run, images, tmp_path):
    run, _ = tiny_run
    paths, _ = images
    main(paths[0], "--checkpoint", str(old_checkpoint), "--out", str(tmp_path / "old"), "--device", "cpu")
    main(paths[0], "--checkpoint", str(run / "last.pt"), "--out", str(tmp_path / "new"), "--device", "cpu")
    for kind in ("labels", "mask"):
        old = cv2.imread(str(tmp_path / "old" / f"img0_{kind}.png"), cv2.IMREAD_UNCHANGED)
        new = cv2.imread(str(tmp_path / "new" / f"img0_{kind}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(old, new), kind


def test_predict_reads_an_authors_semseg_checkpoint(images, tmp_path):
    paths, ds = images
    torch.manual_seed(3)
    model = PSPNet(num_classes=len(CLASSES), backbone="lite", bins=(1, 2, 4)).eval()
    state = {f"module.{k}": v for k, v in pspnet_lite_to_semseg(model.state_dict()).items()}
    torch.save({"epoch": 100, "state_dict": state}, tmp_path / "train_epoch_100.pth")
    written = main(paths[0], "--out", str(tmp_path / "pred"), "--device", "cpu", "--checkpoint",
                   str(tmp_path / "train_epoch_100.pth"), "--backbone", "lite", "--bins", "1,2,4", "--dataset",
                   "context_scenes")
    labels = cv2.imread(str(tmp_path / "pred" / "img0_labels.png"), cv2.IMREAD_UNCHANGED)
    x = ds[0][0][None]
    with torch.no_grad():
        # whole image at 64 px: padded to 65 (8k+1) and cropped, as all whole-image inference
        assert len(written) == 3 and (labels == aligned_forward(model, x).argmax(1)[0].numpy()).all()


def test_missing_image_from_the_shell(tiny_run, tmp_path):
    run, _ = tiny_run
    proc = subprocess.run([sys.executable, "-m", "pspnet_lite.predict", "missing.png", "--checkpoint",
                           str(run / "last.pt"), "--out", str(tmp_path / "o")], capture_output=True, text=True,
                          env=ENV, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "error: image file(s) not found: ['missing.png']\n"


@pytest.mark.parametrize("argv, message", [
    (["missing.png", "--checkpoint", "{run}/last.pt"], "error: image file(s) not found: ['missing.png']"),
    (["{image}", "--checkpoint", "/missing.pt"], "error: file '/missing.pt' does not exist"),
    (["{image}", "--checkpoint", "{cut}"], "error: cannot read '{cut}'"),
    (["{image}", "--checkpoint", "{run}/last.pt", "--crop-size", "x"],
     "error: argument --crop-size: invalid int value: 'x' (see python -m pspnet_lite.predict --help)"),
    (["{image}", "--checkpoint", "{run}/last.pt", "--protocol", "zz"], "error: argument --protocol: invalid choice"),
])
def test_every_bad_value_is_one_error_line_and_exit_2(argv, message, tiny_run, images, tmp_path, capsys):
    run, _ = tiny_run
    cut = tmp_path / "cut.pt"
    cut.write_bytes((run / "last.pt").read_bytes()[:3000])
    argv = [a.format(run=run, image=images[0][0], cut=cut) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(*argv, "--out", str(tmp_path / "o"), "--device", "cpu")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(cut=cut)) and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_a_weights_file_slides_the_authors_window_of_its_data_set():
    """No training crop is recorded in a plain weights file: 713 on Cityscapes (the authors'), 473 on ADE20K/VOC."""
    def args(*argv):
        return predict.get_args_parser().parse_args(["img.png", "--checkpoint", "w.pth", "--out", "o", *argv])

    assert predict.window_size(args("--dataset", "cityscapes"), {"dataset": "cityscapes"}) == 713
    assert predict.window_size(args("--dataset", "ade20k"), {"dataset": "ade20k"}) == 473
    assert predict.window_size(args(), {"dataset": "cityscapes", "crop_size": 512}) == 512  # the checkpoint's crop
    assert predict.window_size(args("--crop-size", "600"), {"crop_size": 512}) == 600

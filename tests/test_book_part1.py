"""Chapters 00-02 of the book, executed with tiny parameters; asserts on what a reader sees."""
import json
import re

import pytest

from conftest import notebook_text

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def test_00_introduction(run_notebook, tmp_path):
    nb = run_notebook("00_introduction", num_images=2, image_size=64, out_dir=str(tmp_path / "o"))
    text = notebook_text(nb)
    assert re.search(r"ade20k\s+150\s+20210\s+2000", text)
    assert re.search(r"voc\s+21\s+10582\s+1449", text) and re.search(r"cityscapes\s+19\s+2975\s+500", text)
    assert "mismatched     8:boat, 9:car" in text and "confusion      10:building, 11:skyscraper" in text
    # the hand computation and the package's ConfusionMatrix print the same numbers
    assert "mean IoU = 0.7435 (over the 3 classes present), pixel accuracy = 0.8696" in text
    assert re.search(r"mean\s+74\.35", text) and re.search(r"pixel acc\s+86\.96", text)
    assert "mean of per-image mIoU: 0.4442   data-set mIoU: 0.4320" in text
    assert _images(nb) >= 2
    assert (tmp_path / "o" / "context_scenes_samples.png").is_file()


def test_02_pyramid_pooling(run_notebook, tmp_path):
    nb = run_notebook("02_pyramid_pooling", crop_size=64, num_images=2, out_dir=str(tmp_path / "o"))
    text = notebook_text(nb)
    assert "feature map (Fig. 3(b)): (1, 512, 8, 8) = 1/8 of the image" in text
    assert "concatenated: 512 + 4 x 128 = 1024 channels" in text
    assert "ours == PyramidPooling: (1, 1024, 8, 8)" in text and "ours (max) == PyramidPooling" in text
    assert "def forward" in text  # the package's code, rendered with inspect.getsource
    assert re.search(r"avg: change from the patch = [\d.]+% of the global vector", text)
    assert "reduction=True : PPM output 4096 channels" in text and "reduction=False: PPM output 10240 channels" in text
    assert re.search(r"4\s+4096\s+50%\s+10240\s+80%", text)  # the 1/N arithmetic at the paper's N = 4
    assert "PoolingExplorer" in text or "VBox" in text  # the widget was displayed
    assert (tmp_path / "o" / "pyramid_avg.png").is_file() and (tmp_path / "o" / "pyramid_max.png").is_file()


def test_02_other_bins(run_notebook, tmp_path):
    nb = run_notebook("02_pyramid_pooling", crop_size=64, num_images=1, bins="1,2,4", out_dir=str(tmp_path / "o"))
    text = notebook_text(nb)
    assert "concatenated: 512 + 3 x 170 = 1022 channels" in text and "ours == PyramidPooling: (1, 1022, 8, 8)" in text


def test_01_observations(run_notebook, tmp_path):
    out = tmp_path / "o"
    nb = run_notebook("01_observations", iters=2, batch_size=2, crop_size=64, num_train_images=8,
                      num_val_images=8, rf_images=2, out_dir=str(out))
    text = notebook_text(nb)
    assert "preset=cpu (scenes-lite-fcn) dataset=context_scenes backbone=lite bins=() iters=2" in text
    assert re.search(r"seed 0: mIoU [\d.]+, pixel acc [\d.]+ \(trained in", text)
    assert "8 validation images: mIoU" in text
    assert "backbone: 127 px, stride 8; with the 3x3 classifier: 143 px" in text
    assert "gradient support: 127 px wide; walk: 127 px" in text
    assert re.search(r"empirical: 50% of the gradient within [\d.]+ px, 90% within [\d.]+ px", text)
    for role in ("stuff", "mismatched", "confusion", "inconspicuous", "regional"):
        assert re.search(rf"^{role}\s", text, re.M)
    assert _images(nb) >= 3
    record = json.loads((out / "record.json").read_text())
    assert record["config"]["bins"] == [] and record["metrics"]["rf_theory_px"] == 143
    assert (out / "fig2_failures.png").is_file() and (out / "receptive_field.png").is_file()

"""pspnet_lite.book.viz: exact colour mapping, overlays, denormalisation, and figure layout (Agg backend)."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from pspnet_lite.book import widgets
from pspnet_lite.book.viz import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    colorize,
    default_palette,
    denormalize,
    overlay,
    plot_class_iou,
    plot_confusion,
    show_predictions,
    use_book_style,
)
from pspnet_lite.data import datasets, transforms
from pspnet_lite.metrics import ConfusionMatrix

PALETTE = np.array([[10, 20, 30], [200, 0, 0], [0, 255, 7]], dtype=np.uint8)
MASK = np.array([[0, 1, 2], [255, 2, 0]])


def test_colorize_maps_every_value_exactly():
    out = colorize(MASK, PALETTE)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    expected = np.array([[[10, 20, 30], [200, 0, 0], [0, 255, 7]],
                         [[0, 0, 0], [0, 255, 7], [10, 20, 30]]], dtype=np.uint8)
    assert np.array_equal(out, expected)
    assert np.array_equal(colorize(torch.from_numpy(MASK), torch.from_numpy(PALETTE)), expected)


def test_colorize_rejects_bad_labels_and_shapes():
    with pytest.raises(ValueError, match=r"\[3, 7\]"):
        colorize(np.array([[3, 7], [0, 255]]), PALETTE)
    with pytest.raises(ValueError, match="2D"):
        colorize(MASK[None], PALETTE)
    with pytest.raises(ValueError, match="integer"):
        colorize(MASK.astype(float), PALETTE)
    with pytest.raises(ValueError, match=r"\(C, 3\)"):
        colorize(MASK, PALETTE[:, :2])


def test_default_palette_is_voc_without_black():
    pal = default_palette(4)
    assert pal.tolist() == [[128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]  # VOC entries 1..4
    assert len({tuple(c) for c in default_palette(150)}) == 150
    assert not (default_palette(150) == 0).all(1).any()
    with pytest.raises(ValueError, match="num_classes"):
        default_palette(0)


def test_one_palette_and_one_mean_std_for_the_package():
    assert default_palette is datasets.default_palette is widgets.default_palette
    assert IMAGENET_MEAN is transforms.MEAN and IMAGENET_STD is transforms.STD
    assert widgets.MEAN.tolist() == list(transforms.MEAN) and widgets.STD.tolist() == list(transforms.STD)


def test_overlay_blends_and_keeps_ignored_pixels():
    image = np.full((2, 3, 3), 100, dtype=np.uint8)
    out = overlay(image, MASK, PALETTE, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert out[0, 1].tolist() == [150, 50, 50]  # (100 + 200) / 2, (100 + 0) / 2, ...
    assert out[1, 0].tolist() == [100, 100, 100]  # ignore: the image shows through
    assert np.array_equal(overlay(image, MASK, PALETTE, alpha=0.0), image)
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, MASK, PALETTE, alpha=1.5)
    with pytest.raises(ValueError, match="does not match"):
        overlay(image, MASK[:, :2], PALETTE)


def test_denormalize_inverts_imagenet_normalisation():
    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3)).astype(np.uint8)
    x = (torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) \
        / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert np.array_equal(denormalize(x), rgb)
    assert np.array_equal(denormalize(x[None]), rgb)
    with pytest.raises(ValueError, match=r"\(3,H,W\)"):
        denormalize(torch.zeros(2, 3, 4, 4))


@pytest.fixture
def plt():
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_use_book_style_sets_rcparams(plt):
    import matplotlib as mpl

    applied = use_book_style()
    assert mpl.rcParams["font.size"] == applied["font.size"] == 9
    assert mpl.rcParams["image.interpolation"] == "nearest"


def test_show_predictions_layout(plt):
    images = torch.randn(3, 3, 8, 10)
    gts = torch.randint(0, 3, (3, 8, 10))
    gts[:, 0] = 255
    preds = {"FCN": torch.randint(0, 3, (3, 8, 10)), "PSPNet": gts.clamp(max=2)}
    fig = show_predictions(images, gts, preds, PALETTE, class_names=["wall", "car", "boat"])
    assert len(fig.axes) == 3 * 4
    assert [ax.get_title() for ax in fig.axes[:4]] == ["image", "ground truth", "FCN", "PSPNet"]
    assert len(fig.legends) == 1
    assert {t.get_text() for t in fig.legends[0].get_texts()} <= {"wall", "car", "boat"}
    # the ground-truth panel shows exactly colorize's output
    assert np.array_equal(fig.axes[1].get_images()[0].get_array(), colorize(gts[0], PALETTE))
    fig2 = show_predictions([np.zeros((8, 10, 3), np.uint8)], None, {"PSPNet": gts[:1]}, PALETTE, alpha=0.5)
    assert len(fig2.axes) == 2
    with pytest.raises(ValueError, match="masks for 3 images"):
        show_predictions(images, gts, {"FCN": gts[:2]}, PALETTE)


def test_plot_class_iou_and_confusion(plt):
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[0, 1, 1, 0]]), torch.tensor([[0, 1, 0, 0]]))
    s = cm.compute()  # class 2 absent -> dropped from the bars
    fig = plot_class_iou(s, ["a", "b", "c"])
    bars = fig.axes[0].patches
    assert len(bars) == 2
    assert sorted(round(b.get_width(), 6) for b in bars) == [50.0, round(100 * 2 / 3, 6)]
    fig = plot_class_iou({"FCN": s, "PSPNet": [0.9, 0.8, 0.1]}, ["a", "b", "c"])
    assert len(fig.axes[0].patches) == 4
    with pytest.raises(ValueError, match="class names"):
        plot_class_iou(s, ["a"])
    fig = plot_confusion(cm, ["a", "b", "c"])
    shown = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(np.asarray(shown), [[2 / 3, 1 / 3, 0], [0, 1, 0], [0, 0, 0]])


def test_package_imports_without_matplotlib():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import numpy as np, pspnet_lite, pspnet_lite.book.viz as v, pspnet_lite.metrics, pspnet_lite.inference\n"
            "print(v.colorize(np.zeros((2, 2), int), np.ones((1, 3), np.uint8)).sum())\n"
            "try:\n    v.use_book_style()\nexcept ImportError:\n    print('lazy')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["12", "lazy"]

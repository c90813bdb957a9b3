"""The bin-size pooling explorer (pspnet_lite.book.widgets): its logic against torch, and its controls driven."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from pspnet_lite.book import widgets as W
from pspnet_lite.data.context_scenes import CLASSES


@pytest.mark.parametrize("size,bins", [(8, 2), (10, 3), (7, 6), (60, 6), (5, 5), (3, 6), (17, 4)])
def test_bin_edges_match_adaptive_pool_windows(size, bins):
    # Probe each output cell with an indicator input: the cell's value is nonzero iff the pixel is in its window.
    edges = W.adaptive_bin_edges(size, bins)
    pool = nn.AdaptiveMaxPool1d(bins)
    for pixel in range(size):
        x = torch.zeros(1, 1, size)
        x[0, 0, pixel] = 1.0
        seen = pool(x)[0, 0].numpy() > 0
        expected = np.array([start <= pixel < end for start, end in edges])
        np.testing.assert_array_equal(seen, expected, err_msg=f"pixel {pixel} of {size}, {bins} bins")
    assert edges[0][0] == 0 and edges[-1][1] == size


def test_bin_edges_overlap_only_when_not_divisible():
    assert W.adaptive_bin_edges(12, 3) == [(0, 4), (4, 8), (8, 12)]
    assert W.adaptive_bin_edges(10, 3) == [(0, 4), (3, 7), (6, 10)]


def test_bad_bins_and_pooling_raise_clear_errors():
    with pytest.raises(ValueError, match="bins=0"):
        W.adaptive_bin_edges(10, 0)
    with pytest.raises(ValueError, match="cannot read bins '1,x' as ints; write it as 1,2,3"):
        W.parse_bins("1,x")  # the package's one list parser (pspnet_lite.cli.parse_list) reads the text
    with pytest.raises(ValueError, match="at least one level"):  # and PyramidPooling's check_bins the sizes
        W.parse_bins([])
    with pytest.raises(ValueError, match=r"positive ints .*bad: \[0\]"):
        W.parse_bins("0,2")
    with pytest.raises(ValueError, match="pooling='mean'"):
        W.pool_level(np.zeros((4, 4, 3)), 2, "mean")
    assert W.parse_bins("6, 1,2 3") == (1, 2, 3, 6)
    assert W.parse_bins(6) == (6,)
    assert W.parse_bins("[3, 1, 3]") == (1, 3) and W.parse_bins(np.array([6, 2])) == (2, 6)
    assert W.parse_bins(np.int64(2)) == (2,) and all(type(b) is int for b in W.parse_bins(np.array([1, 2])))


@pytest.mark.parametrize("pooling,module", [("avg", nn.AdaptiveAvgPool2d), ("max", nn.AdaptiveMaxPool2d)])
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_pooled_maps_equal_torch_adaptive_pooling(pooling, module, bins):
    rng = np.random.default_rng(bins)
    image = rng.random((37, 50, 3)).astype(np.float32)
    expected = module(bins)(torch.from_numpy(image).permute(2, 0, 1)[None])[0].permute(1, 2, 0)
    torch.testing.assert_close(torch.from_numpy(W.pool_level(image, bins, pooling)), expected)


def test_pyramid_levels_upsample_like_pspnet():
    image = np.random.default_rng(0).random((20, 30, 3)).astype(np.float32)
    levels = W.pyramid_levels(image, "1,2,3,6")
    assert list(levels) == [1, 2, 3, 6]
    for b, level in levels.items():
        assert level["pooled"].shape == (b, b, 3) and level["upsampled"].shape == (20, 30, 3)
    np.testing.assert_allclose(levels[1]["upsampled"], np.broadcast_to(image.mean((0, 1)), (20, 30, 3)), atol=1e-6)
    # bilinear with align_corners=True reproduces the pooled values at the corners
    np.testing.assert_allclose(levels[2]["upsampled"][0, 0], levels[2]["pooled"][0, 0], atol=1e-6)
    np.testing.assert_allclose(levels[2]["upsampled"][-1, -1], levels[2]["pooled"][1, 1], atol=1e-6)
    tiles = W.pyramid_levels(image, [2], upsample="nearest")[2]
    np.testing.assert_allclose(tiles["upsampled"][:10, :15], np.broadcast_to(tiles["pooled"][0, 0], (10, 15, 3)))


def test_image_conversion_accepts_uint8_and_normalised_tensors():
    raw = np.random.default_rng(1).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    as_float = W.as_image_array(raw)
    np.testing.assert_allclose(as_float, raw / 255.0, atol=1e-6)
    normalised = (torch.from_numpy(raw / 255.0).permute(2, 0, 1) - torch.tensor(W.MEAN)[:, None, None]) \
        / torch.tensor(W.STD)[:, None, None]
    np.testing.assert_allclose(W.as_image_array(normalised.float()), as_float, atol=1e-5)
    np.testing.assert_allclose(W.as_image_array(normalised.float()[None]), as_float, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        W.as_image_array(np.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="does not match"):
        W.as_mask_array(np.zeros((3, 3)), (4, 4))


@pytest.mark.parametrize("size,bins", [((12, 12), 3), ((10, 13), 3), ((31, 17), 6), ((9, 9), 2)])
def test_class_histograms_sum_to_bin_pixel_counts(size, bins):
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 5, size)
    hist = W.bin_class_histograms(mask, bins, num_classes=5)
    assert hist.shape == (bins, bins, 5)
    rows, cols = W.adaptive_bin_edges(size[0], bins), W.adaptive_bin_edges(size[1], bins)
    for i, (top, bottom) in enumerate(rows):
        for j, (left, right) in enumerate(cols):
            assert hist[i, j].sum() == (bottom - top) * (right - left)
            window = mask[top:bottom, left:right]
            np.testing.assert_array_equal(hist[i, j], np.bincount(window.ravel(), minlength=5))
    # a 1x1 level sees the whole image's class histogram
    np.testing.assert_array_equal(W.bin_class_histograms(mask, 1, 5)[0, 0], np.bincount(mask.ravel(), minlength=5))


def test_class_histograms_skip_ignored_pixels_and_check_ids():
    mask = np.array([[0, 1, 255, 255], [1, 1, 255, 2]])
    hist = W.bin_class_histograms(mask, 2, num_classes=3)
    np.testing.assert_array_equal(hist[0, 0], [1, 1, 0])
    np.testing.assert_array_equal(hist[0, 1], [0, 0, 0])
    np.testing.assert_array_equal(hist[1, 1], [0, 0, 1])
    with pytest.raises(ValueError, match=r"class ids \[7\]"):
        W.bin_class_histograms(np.array([[0, 7]]), 1, num_classes=3)


def test_context_prior_is_avg_or_max_pooling_of_the_one_hot_mask():
    rng = np.random.default_rng(3)
    mask = rng.integers(0, 4, (19, 23))
    one_hot = torch.nn.functional.one_hot(torch.from_numpy(mask), 4).permute(2, 0, 1)[None].float()  # (1, 4, H, W)
    for pooling, module in (("avg", nn.AdaptiveAvgPool2d), ("max", nn.AdaptiveMaxPool2d)):
        for bins in (1, 2, 3, 6):
            expected = module(bins)(one_hot)[0].permute(1, 2, 0)
            torch.testing.assert_close(torch.from_numpy(W.context_prior(mask, bins, 4, pooling)), expected)


def test_prior_mosaic_paints_class_shares():
    palette = np.array([[255, 0, 0], [0, 0, 255]], dtype=np.uint8)
    prior = np.zeros((1, 1, 2))
    prior[0, 0] = [0.25, 0.75]
    img = W.prior_mosaic(prior, palette, cell=40)
    assert img.shape == (40, 40, 3)
    inner = img[1:, 1:]
    red = (inner == [255, 0, 0]).all(-1).mean()
    assert abs(red - 0.25) < 0.05 and abs((inner == [0, 0, 255]).all(-1).mean() - 0.75) < 0.05
    with pytest.raises(ValueError, match="palette"):
        W.prior_mosaic(np.zeros((1, 1, 3)), palette)


def test_dominant_classes_names_the_majority():
    hist = np.array([[[3, 1, 0]]])
    assert W.dominant_classes(hist, ["sky", "boat", "car"]) == [[("sky", 0.75), ("boat", 0.25)]]


def _two_images():
    rng = np.random.default_rng(0)
    left = np.zeros((24, 36), dtype=np.int64)
    left[:, 18:] = 1
    image_a = rng.random((24, 36, 3)).astype(np.float32)
    image_b = (rng.random((24, 36, 3)) * 0.2).astype(np.float32)
    return [{"name": "halves", "image": image_a, "mask": left, "class_names": ["sea", "sand"],
             "palette": np.array([[0, 0, 200], [200, 200, 0]], dtype=np.uint8)},
            (image_b, np.full((24, 36), 1))]


def test_draw_pyramid_makes_one_column_per_level():
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sample = _two_images()[0]
    fig = W.draw_pyramid(sample["image"], sample["mask"], bins=(1, 3), palette=sample["palette"],
                         class_names=sample["class_names"])
    assert len(fig.axes) == 6 and "bins 1,3" in fig._suptitle.get_text()
    plt.close(fig)
    fig = W.draw_pyramid(sample["image"], None, bins=(2,), pooling="max")
    assert len(fig.axes) == 2
    plt.close(fig)


def test_widget_controls_drive_the_outputs():
    pytest.importorskip("ipywidgets")
    import matplotlib
    matplotlib.use("Agg")

    explorer = W.PoolingExplorer(_two_images(), bins=(1, 2, 3, 6))
    assert list(explorer.levels) == [1, 2, 3, 6] and list(explorer.priors) == [1, 2, 3, 6]
    np.testing.assert_allclose(explorer.priors[1][0, 0], [0.5, 0.5])  # the global bin sees half sea, half sand
    np.testing.assert_allclose(explorer.priors[2][0, 0], [1.0, 0.0])  # the top-left quarter sees only sea
    first_figure = explorer.figure

    explorer.bins.value = (1, 4)
    assert list(explorer.levels) == [1, 4] and explorer.levels[4]["pooled"].shape == (4, 4, 3)
    assert explorer.figure is not first_figure and len(explorer.figure.axes) == 6

    avg = explorer.levels[4]["pooled"].copy()
    explorer.pooling.value = "max"
    assert (explorer.levels[4]["pooled"] >= avg - 1e-6).all() and (explorer.levels[4]["pooled"] > avg).any()
    np.testing.assert_allclose(explorer.priors[1][0, 0], [1.0, 1.0])  # max pooling: both classes present

    explorer.image.value = 1
    assert explorer.levels[1]["pooled"].max() <= 0.2 and "image #1" in explorer.status.value
    explorer.upsample.value = "nearest"
    level = explorer.levels[4]
    np.testing.assert_allclose(level["upsampled"][0, 0], level["pooled"][0, 0])

    explorer.bins.value = ()
    assert "at least one" in explorer.status.value


def test_infer_num_classes():
    assert W.infer_num_classes(np.array([[0, 4, 255]])) == 5
    assert W.infer_num_classes(np.full((2, 2), 255)) == 1
    assert W.infer_num_classes(np.array([[0]]), ["a", "b", "c"]) == 3


def test_default_explorer_shows_context_scenes():
    pytest.importorskip("ipywidgets")
    import matplotlib
    matplotlib.use("Agg")

    explorer = W.PoolingExplorer(bins=(1, 6))
    assert len(explorer.samples) == 6 and "ContextScenes" in explorer.samples[0]["name"]
    assert explorer.priors[6].shape == (6, 6, len(CLASSES))
    np.testing.assert_allclose(explorer.priors[1].sum(), 1.0, atol=1e-5)
    before = explorer.priors[1].copy()
    explorer.image.value = 1
    assert not np.allclose(before, explorer.priors[1])  # another scene, another global prior

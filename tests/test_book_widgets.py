"""The explorers of chapter 02: the bin-size explorer (pspnet_lite.book.widgets) and the pixel-context explorer
on a trained network's features (pspnet_lite.book.pixel_context, feature_widget): logic against torch, and every
control driven."""
import base64

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from pspnet_lite.book import feature_widget as FW
from pspnet_lite.book import pixel_context as PC
from pspnet_lite.book import widgets as W
from pspnet_lite.data.context_scenes import CLASSES, PALETTE
from pspnet_lite.model import PSPNet


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
    assert len(fig.axes) == 6 and "bins 1, 3" in fig._suptitle.get_text()
    assert fig.axes[4].get_ylabel().startswith("oracle")  # the label row is marked as what the network never sees
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

    assert "(" not in explorer.status.value and "levels 1, 4" in explorer.status.value  # no Python tuples

    explorer.bins.value = ()  # nothing to draw: the figure is cleared, not left stale
    assert "at least one" in explorer.status.value and explorer.figure is None and explorer.png is None
    assert explorer.output.outputs == ()
    explorer.image.value = 0  # still nothing drawn, and the status names the new image
    assert explorer.figure is None and explorer.status.value.startswith("halves")
    explorer.bins.value = (2,)
    assert explorer.figure is not None and "level 2," in explorer.status.value


def test_infer_num_classes():
    assert W.infer_num_classes(np.array([[0, 4, 255]])) == 5
    assert W.infer_num_classes(np.full((2, 2), 255)) == 1
    assert W.infer_num_classes(np.array([[0]]), ["a", "b", "c"]) == 3


def test_default_explorer_shows_context_scenes():
    pytest.importorskip("ipywidgets")
    import matplotlib
    matplotlib.use("Agg")

    explorer = W.PoolingExplorer(bins=(1, 6))
    names = [s["name"] for s in explorer.samples]  # one image of each scene kind, named by its kind
    assert sorted(names) == sorted(f"{kind} scene" for kind in ("mismatched", "confusion", "inconspicuous", "regional"))
    assert explorer.priors[6].shape == (6, 6, len(CLASSES))
    np.testing.assert_allclose(explorer.priors[1].sum(), 1.0, atol=1e-5)
    before = explorer.priors[1].copy()
    explorer.image.value = 1
    assert not np.allclose(before, explorer.priors[1])  # another scene, another global prior


def test_many_levels_wrap_onto_rows_of_at_most_six():
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sample = _two_images()[0]
    fig = W.draw_pyramid(sample["image"], sample["mask"], bins=W.BIN_CHOICES)  # ten levels
    grid = fig.axes[0].get_subplotspec().get_gridspec()
    assert (grid.nrows, grid.ncols) == (6, W.MAX_COLUMNS)  # two rows of levels, three panels each
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == [f"{b}x{b} bins" for b in W.BIN_CHOICES]
    plt.close(fig)


def test_explorer_output_carries_a_static_picture_of_its_state():
    pytest.importorskip("ipywidgets")
    explorer = W.PoolingExplorer(_two_images(), bins=(1, 2))
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # the live widget where a kernel runs
    assert base64.b64decode(bundle["image/png"]) == explorer.png and explorer.png.startswith(b"\x89PNG")
    shown = explorer.output.outputs[0]["data"]["image/png"]  # the output area shows the same picture
    assert base64.b64decode(shown) == explorer.png
    before = explorer.png
    explorer.pooling.value = "max"
    assert explorer._repr_mimebundle_()["image/png"] != base64.b64encode(before).decode()


def _lab(rgb):
    rgb = np.asarray(rgb, float) / 255
    rgb = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = rgb @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    f = np.cbrt(xyz / np.array([0.95047, 1.0, 1.08883]))
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def test_context_scenes_colours_are_told_apart():
    lab = _lab(PALETTE)
    gap = np.linalg.norm(lab[:, None] - lab[None], axis=-1) + np.eye(len(lab)) * 1e9
    assert gap.min() > 20  # CIE76 distance between any two classes
    assert gap[CLASSES.index("grass"), CLASSES.index("traffic cone")] > 50  # no longer two greens


# --------------------------------------------------------------------------------------------------
# pixel_context: geometry on the 1/8 feature grid, against torch


@pytest.mark.parametrize("grid,bins,cell", [((16, 16), 3, (5, 10)), ((16, 16), 6, (3, 15)), ((8, 12), 2, (0, 7)),
                                            ((16, 16), 1, (9, 2)), ((10, 7), 6, (9, 0))])
def test_upsample_weights_bring_the_pooled_values_back_like_the_network(grid, bins, cell):
    pooled = torch.randn(1, 5, bins, bins)
    up = F.interpolate(pooled, grid, mode="bilinear", align_corners=True)  # what PyramidPooling does
    weights = PC.upsample_weights(grid, bins, cell)
    assert weights.shape == (bins, bins) and weights.sum() == pytest.approx(1.0)
    expected = up[0, :, cell[0], cell[1]].numpy()
    np.testing.assert_allclose((torch.from_numpy(weights)[None] * pooled[0]).sum((1, 2)).numpy(), expected, atol=1e-5)
    context = PC.pixel_context(grid, [bins], cell)[bins]
    assert {(i, j) for i, j, _ in context["sources"]} == {tuple(ij) for ij in np.argwhere(weights > 1e-9)}
    assert [w for *_, w in context["sources"]] == sorted((w for *_, w in context["sources"]), reverse=True)


def test_a_cell_in_overlapping_windows_is_held_by_two_bins():
    assert W.adaptive_bin_edges(16, 3) == [(0, 6), (5, 11), (10, 16)]
    assert PC.holding_bins(16, 3, 5) == [0, 1] and PC.holding_bins(16, 3, 4) == [0]
    context = PC.pixel_context((16, 16), (1, 3), (5, 0))
    assert context[1]["holding"] == [(0, 0)] and context[3]["holding"] == [(0, 0), (1, 0)]
    assert context[3]["windows"][1, 0] == (5, 11, 0, 6)
    with pytest.raises(ValueError, match="cell 16 is outside the feature grid of 16 cells; pick 0..15"):
        PC.holding_bins(16, 3, 16)


def test_focus_cell_finds_the_small_object():
    mask = np.zeros((32, 32), dtype=np.int64)
    mask[20:26, 9:13] = 5  # a small object in cells rows 2-3, col 1
    assert PC.focus_cell(mask, stride=8) in {(2, 1), (3, 1)}
    assert PC.focus_cell(np.full((8, 8), 255)) == (0, 0)


@pytest.fixture(scope="module")
def tiny_pspnet():
    torch.manual_seed(0)
    model = PSPNet(num_classes=len(CLASSES), backbone="lite").eval()
    for level in model.ppm.features:  # non-trivial batch-norm statistics, so every level matters
        level[2].running_mean.uniform_(-0.5, 0.5)
    return model


def test_levels_off_zero_exactly_that_level(tiny_pspnet):
    x = torch.randn(1, 3, 64, 64)
    c4 = PC.stage4_features(tiny_pspnet, x)
    assert c4.shape == (1, 512, 8, 8)
    with torch.no_grad():
        full = tiny_pspnet.ppm(c4)
        with PC.levels_off(tiny_pspnet, [2]):
            off = tiny_pspnet.ppm(c4)
        again = tiny_pspnet.ppm(c4)
    n = tiny_pspnet.ppm.level_channels  # channels: the map (512), then levels 1, 2, 3, 6 (128 each)
    assert off[:, 512 + n:512 + 2 * n].abs().max() == 0 and full[:, 512 + n:512 + 2 * n].abs().max() > 0
    torch.testing.assert_close(torch.cat([off[:, :512 + n], off[:, 512 + 2 * n:]], 1),
                               torch.cat([full[:, :512 + n], full[:, 512 + 2 * n:]], 1))
    torch.testing.assert_close(again, full)  # the hooks are gone afterwards
    assert PC.predict_labels(tiny_pspnet, x, active=(1, 2)).shape == (1, 64, 64)
    with pytest.raises(ValueError, match=r"levels \[4\] are not in the model"):
        with PC.levels_off(tiny_pspnet, [4]):
            pass


def test_pca_colours_share_one_scale(tiny_pspnet):
    c4 = PC.stage4_features(tiny_pspnet, torch.randn(1, 3, 64, 64))
    feature_rgb, global_rgb = PC.pca_colours(c4, PC.pooled_upsampled(c4, 1))
    assert feature_rgb.shape == global_rgb.shape == (8, 8, 3)
    assert 0 <= feature_rgb.min() and feature_rgb.max() <= 1
    np.testing.assert_allclose(global_rgb, np.broadcast_to(global_rgb[0, 0], global_rgb.shape), atol=1e-6)


def _tiny_b1236(**kw):
    return PC.b1236_config("cpu", iters=2, batch_size=2, num_train_images=4, num_val_images=2, image_size=64,
                           crop_size=64, val_batch_size=2, **kw)


def test_missing_run_names_the_command_or_trains(tmp_path):
    cfg = _tiny_b1236()
    assert (cfg.model.bins, cfg.model.pooling, cfg.model.reduction, cfg.seed) == ((1, 2, 3, 6), "avg", True, 0)
    with pytest.raises(FileNotFoundError, match=r"no finished B1236 run in .*; train it with: .*-m pspnet_lite.train "
                                                 r"--config .*launch_config.json"):
        PC.load_b1236(tmp_path / "cache", train=False, config=cfg)
    model, result = PC.load_b1236(tmp_path / "cache", config=cfg)
    assert not result.cached and model.ppm.bins == (1, 2, 3, 6) and not model.training
    _, again = PC.load_b1236(tmp_path / "cache", train=False, config=cfg)
    assert again.cached


def test_feature_explorer_controls_all_redraw(tiny_pspnet):
    pytest.importorskip("ipywidgets")
    samples = FW.scene_samples(image_size=64, num_images=12)
    assert [s["kind"] for s in samples] == [s["name"].removesuffix(" scene") for s in samples]
    explorer = FW.FeatureContextExplorer(tiny_pspnet, samples, CLASSES, PALETTE)
    assert explorer.active == (1, 2, 3, 6) and explorer.changed == 0.0
    assert set(explorer.context) == {1, 2, 3, 6} and explorer.row.max == 7
    assert "image/png" in explorer._repr_mimebundle_()
    pictures = [explorer.png]
    for control, value in [(explorer.row, 1), (explorer.col, 6), (explorer.image, 1), (explorer.levels[6], False),
                           (explorer.levels[1], False), (explorer.levels[2], False), (explorer.levels[3], False)]:
        control.value = value
        assert explorer.png not in pictures, f"{control.description} did not change the picture"
        pictures.append(explorer.png)
    assert explorer.active == () and explorer.cell == (1, 6) and explorer.changed > 0
    status = explorer.status.value
    assert status.startswith(samples[1]["name"]) and "levels none" in status and "(" not in status
    flips = FW.flips(tiny_pspnet, samples[1], ())
    assert flips["changed"] == pytest.approx(explorer.changed)
    assert sum(n for *_, n in flips["pairs"]) == round(explorer.changed * 64 * 64)


def test_feature_levels_pool_a_feature_map_and_colour_it_by_its_principal_components():
    rng = np.random.default_rng(0)
    features = torch.from_numpy(rng.standard_normal((1, 16, 8, 8)).astype(np.float32))  # (1, C, h, w)
    levels = W.feature_levels(features, bins=(1, 3))
    assert list(levels) == [1, 3]
    assert levels[3]["pooled"].shape == (3, 3, 16) and levels[3]["upsampled"].shape == (8, 8, 16)
    np.testing.assert_allclose(levels[1]["pooled"][0, 0], features[0].mean((1, 2)).numpy(), atol=1e-6)
    assert levels[3]["rgb"].shape == (8, 8, 3) and 0 <= levels[3]["rgb"].min() and levels[3]["rgb"].max() <= 1
    assert np.ptp(levels[1]["rgb"].reshape(-1, 3), 0).max() < 1e-6  # the global level: one vector, one colour
    nearest = W.feature_levels(features, bins=(3,), pooling="max", upsample="nearest")[3]
    np.testing.assert_allclose(nearest["upsampled"][0, 0], features[0, :, :3, :3].amax((1, 2)).numpy())
    with pytest.raises(ValueError, match="one .C, h, w. feature map"):
        W.feature_levels(np.zeros((2, 16, 8, 8)))


def test_explorer_shows_the_pooled_features_a_sample_carries():
    pytest.importorskip("ipywidgets")
    import matplotlib
    matplotlib.use("Agg")

    sample = dict(_two_images()[0], features=torch.randn(16, 3, 4))  # a 1/8 grid of the 24x36 image
    explorer = W.PoolingExplorer([sample, _two_images()[1]], bins=(1, 2))
    assert list(explorer.feature_levels) == [1, 2] and explorer.feature_levels[2]["pooled"].shape == (2, 2, 16)
    assert len(explorer.figure.axes) == 8  # image grid, pooled pixels, pooled features, oracle per level
    assert explorer.figure.axes[4].get_ylabel().startswith("trained features")  # row 3 of two columns
    explorer.image.value = 1  # an image without features: three rows again
    assert explorer.feature_levels == {} and len(explorer.figure.axes) == 6

"""Pyramid pooling module (paper §3.2, Fig. 3(c)) against hand computations."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from pspnet_lite.book.widgets import PAPER_BINS as widget_bins
from pspnet_lite.model import PSPNet, PSPNetConfig
from pspnet_lite.ppm import PAPER_BINS, OneValueSafeBatchNorm2d, PyramidPooling, check_bins


def hand_pool(a: np.ndarray, b: int, op) -> np.ndarray:
    """Adaptive pooling by hand: cell i covers rows floor(i*H/b) .. ceil((i+1)*H/b) - 1."""
    h, w = a.shape
    out = np.zeros((b, b))
    for i in range(b):
        for j in range(b):
            r0, r1 = (i * h) // b, math.ceil((i + 1) * h / b)
            c0, c1 = (j * w) // b, math.ceil((j + 1) * w / b)
            out[i, j] = op(a[r0:r1, c0:c1])
    return out


def hand_upsample(p: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling with align_corners=True by hand: output pixel i samples input i*(b-1)/(h-1)."""
    def weights(n_in, n_out):
        m = np.zeros((n_out, n_in))
        for i in range(n_out):
            s = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
            lo = min(int(math.floor(s)), n_in - 1)
            hi = min(lo + 1, n_in - 1)
            m[i, lo] += 1 - (s - lo)
            m[i, hi] += s - lo
        return m
    return weights(p.shape[0], h) @ p @ weights(p.shape[1], w).T


@pytest.mark.parametrize("pooling, op", [("avg", np.mean), ("max", np.max)])
@pytest.mark.parametrize("size", [6, 5])  # 6 tiles exactly; 5 gives overlapping cells for bins 2, 3
def test_levels_match_hand_pooling_and_upsampling(pooling, op, size):
    torch.manual_seed(0)
    x = torch.randn(1, 1, size, size, dtype=torch.float64)
    ppm = PyramidPooling(1, bins=(1, 2, 3, 6), pooling=pooling, reduction=False).double()
    out = ppm(x)
    assert out.shape == (1, 5, size, size)
    a = x[0, 0].numpy()
    np.testing.assert_array_equal(out[0, 0].numpy(), a)  # the feature map itself comes first
    for k, b in enumerate((1, 2, 3, 6)):
        pooled = hand_pool(a, b, op)
        np.testing.assert_allclose(ppm.features[k](x)[0, 0].numpy(), pooled, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(out[0, k + 1].numpy(), hand_upsample(pooled, size, size), rtol=1e-12, atol=1e-12)


def test_global_level_is_constant_and_6x6_level_is_identity_on_a_6x6_map():
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    out = PyramidPooling(1, bins=(1, 6), reduction=False)(x)
    assert torch.all(out[0, 1] == 17.5)  # mean of 0..35
    torch.testing.assert_close(out[0, 2], x[0, 0])


def test_reduction_is_1x1_conv_bn_relu_to_one_nth():
    ppm = PyramidPooling(4, bins=(1, 2), reduction=True).eval()
    assert ppm.level_channels == 2 and ppm.out_channels == 4 + 2 * 2
    for level in ppm.features:
        nn.init.ones_(level[1].weight)  # each output channel = sum of the pooled input channels
    torch.manual_seed(0)
    x = torch.randn(1, 4, 4, 4)
    x[:, 0] += 3.0  # positive global sum, so the ReLU passes it
    out = ppm(x)
    bn = 1 / math.sqrt(1 + ppm.features[0][2].eps)  # eval BN at init: (v - 0) / sqrt(1 + eps) * 1 + 0
    g = x.mean((2, 3)).sum().item() * bn  # global level: sum over channels of the global means
    assert g > 0
    torch.testing.assert_close(out[0, 4], torch.full((4, 4), g))
    torch.testing.assert_close(out[0, 5], out[0, 4])  # both reduced channels of level 1 are equal
    cells = x.reshape(1, 4, 2, 2, 2, 2).mean((3, 5)).sum(1)[0] * bn  # level 2: 2x2 cells of 2x2 pixels
    torch.testing.assert_close(out[0, 6, ::3, ::3], torch.relu(cells))  # corners = cells (align_corners)


@pytest.mark.parametrize("reduction, pooling, channels", [(True, "avg", 2048 + 4 * 512), (False, "max", 5 * 2048)])
def test_paper_widths(reduction, pooling, channels):
    with torch.device("meta"):
        ppm = PyramidPooling(2048, pooling=pooling, reduction=reduction)
    assert ppm.out_channels == channels
    assert ppm(torch.empty(2, 2048, 60, 60, device="meta")).shape == (2, channels, 60, 60)


def test_key_layout_matches_semseg():
    keys = set(PyramidPooling(8, bins=(1, 2)).state_dict())
    assert {"features.0.1.weight", "features.0.2.weight", "features.0.2.bias", "features.0.2.running_mean",
            "features.0.2.running_var", "features.1.2.num_batches_tracked"} <= keys
    assert not any(k.startswith("features.0.0") or k.startswith("features.0.3") for k in keys)
    assert PyramidPooling(8, bins=(1, 2), reduction=False).state_dict() == {}


def test_plain_batchnorm_fails_on_one_value_per_channel():
    """The failure the safe BN avoids: the authors' PPM with one image per process."""
    with pytest.raises(ValueError, match="more than 1 value"):
        nn.BatchNorm2d(3).train()(torch.randn(1, 3, 1, 1))


def test_batch_of_one_training_uses_running_stats_on_the_global_level():
    torch.manual_seed(0)
    ppm = PyramidPooling(8, bins=(1, 2, 3, 6)).train()
    x = torch.randn(1, 8, 6, 6, requires_grad=True)
    out = ppm(x)
    out.sum().backward()
    bn1, bn2 = ppm.features[0][2], ppm.features[1][2]
    assert isinstance(bn1, OneValueSafeBatchNorm2d)
    assert bn1.num_batches_tracked.item() == 0 and torch.all(bn1.running_mean == 0)  # untouched
    assert bn2.num_batches_tracked.item() == 1 and not torch.all(bn2.running_mean == 0)  # normal BN
    assert bn1.weight.grad is not None and x.grad is not None
    # the global level is exactly the eval-mode result of that branch
    ref = torch.relu(ppm.features[0][1](x.mean((2, 3), keepdim=True)) / math.sqrt(1 + bn1.eps))
    torch.testing.assert_close(out[:, 8:10, 0, 0], ref[:, :, 0, 0])


def test_batch_of_two_uses_batch_statistics():
    ppm = PyramidPooling(8, bins=(1,)).train()
    ppm(torch.randn(2, 8, 3, 3))
    assert ppm.features[0][2].num_batches_tracked.item() == 1


@pytest.mark.parametrize("bins", [(), (0,), (1.5,), (-1, 2), (True,), "1236", 6, None, np.array([[1, 2]]),
                                  np.array([1.0, 2.0]), (np.int64(0),), (np.bool_(True),), {1, 2}])
def test_bad_bins(bins):
    with pytest.raises(ValueError, match="bins"):
        PyramidPooling(8, bins=bins)


@pytest.mark.parametrize("bins", [np.array([1, 2, 3, 6]), [np.int64(1), np.int32(2), 3, np.uint8(6)],
                                  (1, 2, 3, 6), [1, 2, 3, 6], range(1, 4)])
def test_check_bins_accepts_any_integers_and_returns_plain_ints(bins):
    out = check_bins(bins)
    assert out == tuple(int(b) for b in bins) and all(type(b) is int for b in out)
    assert PyramidPooling(8, bins=bins, reduction=False).bins == out


def test_paper_bins_is_the_default():
    assert PAPER_BINS == (1, 2, 3, 6) and widget_bins is PAPER_BINS
    assert PyramidPooling(8).bins == PAPER_BINS
    assert PSPNet(num_classes=3, backbone="lite").config.bins == PAPER_BINS
    assert PSPNetConfig().bins == PAPER_BINS
    assert check_bins(np.array([], dtype=np.int64), allow_empty=True) == ()


def test_bad_pooling_and_too_many_bins():
    with pytest.raises(ValueError, match="'sum'"):
        PyramidPooling(8, pooling="sum")
    with pytest.raises(ValueError, match="channel per level"):
        PyramidPooling(2, bins=(1, 2, 3))

"""Test-time protocols (paper section 5): sliding window, flip and multi-scale averaging, evaluation."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pspnet_lite.data.transforms import EvalTransform
from pspnet_lite.inference import (
    PAPER_SCALES,
    PROTOCOLS,
    Protocol,
    _scaled_size,
    _window_starts,
    aligned_for,
    aligned_forward,
    authors_protocol,
    crop_passes,
    default_crop_size,
    evaluate,
    grid_size,
    predict,
)
from pspnet_lite.metrics import ConfusionMatrix
from pspnet_lite.model import PSPNet

C = 4


def _pointwise(seed: int = 0) -> nn.Module:
    """A 1x1 conv: every output pixel depends only on its own input pixel."""
    torch.manual_seed(seed)
    return nn.Conv2d(3, C, 1)


class Positional(nn.Module):
    """Pointwise logits plus a learned map over window positions: the window layout changes the result."""

    def __init__(self, size: int):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, C, 1)
        self.pos = nn.Parameter(torch.randn(1, C, size, size))

    def forward(self, x):
        return self.conv(x) + self.pos[:, :, :x.shape[2], :x.shape[3]]


class Recorder(nn.Module):
    """Pointwise model that records the spatial size of every batch it sees."""

    def __init__(self):
        super().__init__()
        self.conv = _pointwise()
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape))
        return self.conv(x)


def _images(n=2, h=21, w=34, seed=0):
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_whole_ss_is_softmax_of_the_model():
    model, x = _pointwise(), _images()
    labels, probs = predict(model, x, protocol=Protocol(), return_probs=True)
    with torch.no_grad():
        expected = model(x).softmax(1)
    assert torch.equal(probs, expected)
    assert torch.equal(labels, expected.argmax(1))
    assert labels.shape == (2, 21, 34) and labels.dtype == torch.int64


@pytest.mark.parametrize("crop, h, w", [(8, 21, 34), (16, 21, 34), (40, 21, 34), (21, 21, 21), (7, 50, 9)])
def test_slide_equals_whole_for_a_pointwise_model(crop, h, w):
    model, x = _pointwise(), _images(h=h, w=w)
    whole_l, whole_p = predict(model, x, protocol=Protocol(), return_probs=True)
    slide_l, slide_p = predict(model, x, protocol=Protocol(mode="slide", crop_size=crop), return_probs=True)
    assert torch.equal(slide_l, whole_l)
    torch.testing.assert_close(slide_p, whole_p, rtol=0, atol=1e-6)


def test_slide_equals_whole_for_a_padded_conv_when_the_image_fits_one_crop():
    # Central zero padding to the crop is exactly what a zero-padded 3x3 conv sees at the border anyway.
    torch.manual_seed(0)
    model, x = nn.Conv2d(3, C, 3, padding=1), _images(h=13, w=20)
    whole = predict(model, x, return_probs=True)[1]
    slide = predict(model, x, protocol=Protocol(mode="slide", crop_size=(24, 31)), return_probs=True)[1]
    torch.testing.assert_close(slide, whole, rtol=0, atol=1e-6)


def _reference_slide(model, image, crop, stride_rate, flip):
    """Independent loop version of the authors' scale_process for one (3,H,W) image (numpy accumulation)."""
    _, h, w = image.shape
    pad_h, pad_w = max(crop - h, 0), max(crop - w, 0)
    padded = np.zeros((3, h + pad_h, w + pad_w), dtype=np.float32)
    padded[:, pad_h // 2:pad_h // 2 + h, pad_w // 2:pad_w // 2 + w] = image.numpy()
    new_h, new_w = padded.shape[1:]
    stride = int(np.ceil(crop * stride_rate))
    grid_h = int(np.ceil(float(new_h - crop) / stride) + 1)
    grid_w = int(np.ceil(float(new_w - crop) / stride) + 1)
    acc = np.zeros((C, new_h, new_w))
    cnt = np.zeros((new_h, new_w))
    for i in range(grid_h):
        for j in range(grid_w):
            e_h = min(i * stride + crop, new_h)
            e_w = min(j * stride + crop, new_w)
            s_h, s_w = e_h - crop, e_w - crop
            window = torch.from_numpy(padded[None, :, s_h:e_h, s_w:e_w].copy())
            with torch.no_grad():
                p = model(window).softmax(1)[0].numpy()
                if flip:
                    p = (p + model(window.flip(3)).softmax(1)[0].flip(2).numpy()) / 2
            acc[:, s_h:e_h, s_w:e_w] += p
            cnt[s_h:e_h, s_w:e_w] += 1
    out = acc / cnt
    return out[:, pad_h // 2:pad_h // 2 + h, pad_w // 2:pad_w // 2 + w]


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("h, w", [(30, 45), (10, 37), (12, 12)])
def test_slide_matches_independent_reference_with_position_dependent_model(h, w, flip):
    crop = 16
    model, x = Positional(crop), _images(n=2, h=h, w=w, seed=3)
    probs = predict(model, x, protocol=Protocol(mode="slide", crop_size=crop, flip=flip), return_probs=True)[1]
    for k in range(2):
        ref = _reference_slide(model, x[k], crop, 2 / 3, flip)
        np.testing.assert_allclose(probs[k].numpy(), ref, rtol=0, atol=1e-6)


def test_window_grid_follows_the_authors_rule():
    # size 45, crop 16, stride ceil(16*2/3)=11: ceil(29/11)+1 = 4 windows, last one flush right
    assert _window_starts(45, 16, 11) == [0, 11, 22, 29]
    assert _window_starts(16, 16, 11) == [0]
    assert Protocol(mode="slide", crop_size=473).stride_hw == (316, 316)


def test_flip_averaging_equals_hand_computation():
    torch.manual_seed(0)
    model, x = nn.Conv2d(3, C, 3, padding=1), _images()  # a 3x3 conv is not mirror-symmetric
    probs = predict(model, x, protocol=Protocol(flip=True), return_probs=True)[1]
    with torch.no_grad():
        expected = (model(x).softmax(1) + model(x.flip(3)).softmax(1).flip(3)) / 2
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-7)
    plain = predict(model, x, return_probs=True)[1]
    assert (probs - plain).abs().max() > 1e-3  # flip really changed something


def test_multiscale_averaging_equals_hand_computation():
    torch.manual_seed(0)
    model, x = nn.Conv2d(3, C, 3, padding=1), _images(n=1, h=20, w=30)
    probs = predict(model, x, protocol=Protocol(scales=(0.5, 1.5)), return_probs=True)[1]
    expected = 0
    with torch.no_grad():
        for size in [(10, 15), (30, 45)]:
            xs = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            p = model(xs).softmax(1)
            expected = expected + F.interpolate(p, size=(20, 30), mode="bilinear", align_corners=False)
    torch.testing.assert_close(probs, expected / 2, rtol=0, atol=1e-6)


def test_multiscale_with_a_scale_invariant_model_equals_single_scale():
    # A pointwise model on a constant-colour image: every scale gives the same constant probabilities.
    model = _pointwise()
    x = torch.randn(2, 3, 1, 1).expand(2, 3, 23, 31).contiguous()
    ss = predict(model, x, protocol=PROTOCOLS["ss"], return_probs=True)[1]
    for name in ("ms", "ms+flip", "ss+flip"):
        other = predict(model, x, protocol=PROTOCOLS[name], return_probs=True)[1]
        torch.testing.assert_close(other, ss, rtol=0, atol=1e-6)
    slide_ms = Protocol(mode="slide", crop_size=16, scales=PAPER_SCALES, flip=True)
    slide = predict(model, x, protocol=slide_ms, return_probs=True, batch_size=256)[1]
    torch.testing.assert_close(slide, ss, rtol=0, atol=1e-6)


def test_resize_by_long_or_short_side_with_base_size():
    model, x = Recorder(), _images(n=1, h=30, w=40)
    labels = predict(model, x, protocol=Protocol(base_size=20, resize="long", scales=(1.0, 0.5)))
    assert [s[-2:] for s in model.sizes] == [(15, 20), (8, 10)]  # round(20/40*30)=15, round(10/40*30)=8
    assert labels.shape == (1, 30, 40)
    model.sizes.clear()
    predict(model, x, protocol=Protocol(base_size=20, resize="short"))
    assert model.sizes[0][-2:] == (20, 27)  # round(20/30*40)=27
    assert _scaled_size(512, 683, 1.75, 512, "long") == (672, 896)
    assert _scaled_size(30, 40, 1.0, None, "long") == (30, 40)


def test_probabilities_sum_to_one_under_every_protocol():
    model, x = _pointwise(), _images(h=17, w=26)
    for protocol in [*PROTOCOLS.values(), Protocol(mode="slide", crop_size=8, scales=(0.75, 1.25), flip=True)]:
        labels, probs = predict(model, x, protocol=protocol, return_probs=True, batch_size=256)
        assert probs.shape == (2, C, 17, 26)
        torch.testing.assert_close(probs.sum(1), torch.ones(2, 17, 26), rtol=0, atol=1e-5)
        assert torch.equal(labels, probs.argmax(1))
        labels[0, 0, 0] = 255  # results are ordinary tensors, editable outside inference mode


def test_batch_size_does_not_change_results_and_windows_are_batched():
    model, x = Recorder(), _images(n=3, h=20, w=30)
    protocol = Protocol(mode="slide", crop_size=12, flip=True)
    # 20x30 with crop 12, stride 8: rows start 0, 8; columns 0, 8, 16, 18 -> 8 windows x 3 images
    default = predict(model, x, protocol=protocol, return_probs=True)[1]
    assert [s[0] for s in model.sizes] == [3] * 16  # one window position for the 3 images per pass, 2 views
    model.sizes.clear()
    full = predict(model, x, protocol=protocol, return_probs=True, batch_size=24)[1]
    assert [s[0] for s in model.sizes] == [24, 24]  # all windows in one pass per flip view
    model.sizes.clear()
    small = predict(model, x, protocol=protocol, return_probs=True, batch_size=2)[1]
    assert max(s[0] for s in model.sizes) == 2
    torch.testing.assert_close(full, default, rtol=0, atol=1e-6)
    torch.testing.assert_close(small, default, rtol=0, atol=1e-6)


def test_eval_mode_inside_and_flags_restored():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, C, 1), nn.BatchNorm2d(C)
            self.seen = []

        def forward(self, x):
            self.seen.append(self.training)
            return self.bn(self.conv(x))

    net = Net().train()
    net.bn.eval()  # e.g. frozen BN during fine-tuning
    predict(net, _images())
    assert net.seen == [False]
    assert net.training and not net.bn.training


def test_model_returning_a_tuple_and_lower_resolution_is_handled():
    class Strided(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, C, 3, stride=2, padding=1)

        def forward(self, x):
            return self.conv(x), None

    labels = predict(Strided(), _images(h=17, w=25))
    assert labels.shape == (2, 17, 25)


def test_bad_inputs_raise_value_errors():
    model = _pointwise()
    with pytest.raises(ValueError, match="4D"):
        predict(model, torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="float"):
        predict(model, torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="num_classes=7"):
        predict(model, _images(), num_classes=7)
    with pytest.raises(ValueError, match="protocol"):
        predict(model, _images(), protocol="single")
    with pytest.raises(ValueError, match="batch_size"):
        predict(model, _images(), batch_size=0)
    for bad in [dict(mode="sliding"), dict(crop_size=0), dict(crop_size=(4, 4, 4)), dict(stride_rate=0),
                dict(stride_rate=1.5), dict(scales=()), dict(scales=(1.0, -0.5)), dict(base_size=0),
                dict(resize="width")]:
        with pytest.raises(ValueError):
            Protocol(**bad)


def test_protocol_names_and_presets():
    assert PROTOCOLS["ss"].name == "ss | whole"
    assert PROTOCOLS["ms+flip"].name == "ms(0.5-1.75)+flip | whole"
    assert PROTOCOLS["ms"].scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    assert PROTOCOLS["ss"].describe() == "whole image at its own size, scales 1.0, no flip"
    assert authors_protocol("ade20k").describe() == "sliding 473 px windows long side 512, scales 1.0, with flip"
    ade = authors_protocol("ade20k")
    assert ade.name == "ss+flip | slide 473 stride 316 | long side 512"
    assert authors_protocol("cityscapes", multi_scale=True).name == (
        "ms(0.5-1.75)+flip | slide 713 stride 476 | long side 2048")
    assert len(authors_protocol("voc", multi_scale=True).views) == 12
    with pytest.raises(ValueError, match="dataset"):
        authors_protocol("coco")


def test_evaluate_several_protocols_in_one_pass_shares_views():
    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, C, 3, padding=1)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.conv(x)

    model = Counting()
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(2, 3, 12, 16, generator=g), torch.randint(0, C, (2, 12, 16), generator=g))
            for _ in range(3)]
    data[0][1][:, :2] = 255
    results = evaluate(model, data, C, protocols=["ss", "ss+flip", "ms", "ms+flip"], progress=False)
    assert list(results) == ["ss", "ss+flip", "ms", "ms+flip"]
    assert model.calls == 3 * 12  # ms+flip's 12 views cover the others: each computed once per batch
    assert results["ms+flip"].protocol == "ms+flip: ms(0.5-1.75)+flip | whole"
    assert results["ms+flip"].extra["views"] == 12
    # each result equals a separate predict + ConfusionMatrix run
    for name, scores in results.items():
        cm = ConfusionMatrix(C)
        for images, masks in data:
            cm.update(predict(model, images, protocol=name), masks)
        assert scores.miou == pytest.approx(cm.compute().miou, abs=1e-12)
        assert scores.pixel_acc == pytest.approx(cm.compute().pixel_acc, abs=1e-12)
        assert 0 <= scores.miou <= 1 and scores.num_pixels == 3 * 2 * 12 * 16 - 2 * 2 * 16


def test_evaluate_accepts_dict_and_labels_protocols():
    model = _pointwise()
    data = [(_images(n=1, h=9, w=9), torch.zeros(1, 9, 9, dtype=torch.long))]
    custom = Protocol(mode="slide", crop_size=5)
    results = evaluate(model, data, C, protocols={"mine": custom, "whole": Protocol()}, progress=False)
    assert results["mine"].protocol == "mine: ss | slide 5 stride 4"
    assert results["mine"].pixel_acc == pytest.approx(results["whole"].pixel_acc)
    assert not math.isnan(results["whole"].miou)
    with pytest.raises(ValueError, match="labels"):
        evaluate(model, [(_images(n=1, h=9, w=9), torch.full((1, 9, 9), 9))], C, progress=False)
    with pytest.raises(ValueError, match="protocols is empty"):
        evaluate(model, data, C, protocols={}, progress=False)


def test_with_pspnet():
    net = PSPNet(num_classes=3, backbone="lite", aux=True)  # in training mode: predict switches to eval inside
    x = _images(n=1, h=33, w=41)
    labels, probs = predict(net, x, num_classes=3, protocol=Protocol(mode="slide", crop_size=33, flip=True),
                            return_probs=True)
    assert labels.shape == (1, 33, 41)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 33, 41), rtol=0, atol=1e-5)
    assert net.training  # restored


def test_evaluate_scores_at_the_label_resolution_when_the_transform_resized_the_image():
    # EvalTransform(base_size=40) resizes a 60x80 image to 30x40 and keeps the 60x80 labels (as the authors
    # score); evaluate must upsample the probabilities to 60x80 before the argmax
    rng = np.random.default_rng(0)
    raw = [(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), rng.integers(0, C, (60, 80)).astype(np.uint8))
           for _ in range(3)]
    raw[0][1][:10] = 255  # some ignored pixels
    tf = EvalTransform(base_size=40)
    samples = [tf(img, mask) for img, mask in raw]
    assert tuple(samples[0][0].shape) == (3, 30, 40) and tuple(samples[0][1].shape) == (60, 80)
    loader = torch.utils.data.DataLoader(samples, batch_size=1)
    model = _pointwise()
    scores = evaluate(model, loader, C, protocols=["ss", "ss+flip"], progress=False)
    for name in ("ss", "ss+flip"):
        cm = ConfusionMatrix(C)
        for x, y in samples:
            _, probs = predict(model, x[None], C, protocol=name, return_probs=True)  # (1, C, 30, 40)
            up = F.interpolate(probs, size=(60, 80), mode="bilinear", align_corners=False)
            cm.update(up.argmax(1), y[None].long())
        ref = cm.compute()
        assert int(cm.mat.sum()) == 3 * 60 * 80 - 10 * 80  # every labelled pixel at full resolution
        assert scores[name].miou == pytest.approx(ref.miou, abs=1e-12)
        assert scores[name].pixel_acc == pytest.approx(ref.pixel_acc, abs=1e-12)
    with pytest.raises(ValueError, match="masks must be"):
        evaluate(model, [(samples[0][0][None], samples[0][1])], C, progress=False)


def _trained_like_pspnet(**kw) -> PSPNet:
    """A lite PSPNet in eval mode with non-trivial BN statistics (random running stats), so maps are not flat."""
    torch.manual_seed(0)
    net = PSPNet(num_classes=3, backbone="lite", aux=False, **kw).eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net


@pytest.mark.parametrize("h, w", [(64, 56), (40, 32)])
def test_whole_image_is_aligned_like_a_window_of_8k_plus_1(h, w):
    """Whole-image inference pads to 8k+1 at the bottom/right: it equals a sliding window of 8k+1 that pads the
    same rows and columns (here one row/column, which the window puts at the bottom/right too), and differs from
    the plain forward pass, whose align_corners=True upsampling is stretched at sizes other than 8k+1."""
    net, x = _trained_like_pspnet(), _images(n=1, h=h, w=w, seed=5)
    assert (grid_size(h, 8), grid_size(w, 8)) == (h + 1, w + 1)
    whole = predict(net, x, protocol=Protocol(align=True), return_probs=True)[1]
    slide = predict(net, x, protocol=Protocol(mode="slide", crop_size=(h + 1, w + 1)), return_probs=True)[1]
    torch.testing.assert_close(whole, slide, rtol=0, atol=1e-5)
    with torch.no_grad():
        plain = net(x).softmax(1)  # what whole-image inference computes without align (the default)
    assert torch.equal(predict(net, x, protocol=Protocol(), return_probs=True)[1], plain)
    assert (plain - slide).abs().max() > 1e-3  # the test has teeth


def test_aligned_forward_pads_only_where_needed():
    net = _trained_like_pspnet()
    x = _images(n=2, h=41, w=33, seed=6)  # 8k+1 already: the plain forward pass, bit for bit
    with torch.no_grad():
        assert torch.equal(aligned_forward(net, x), net(x))
        y = _images(n=2, h=36, w=30, seed=7)  # padded to 41 x 33 with 0 (the mean) at the bottom/right, then cropped
        ref = net(F.pad(y, (0, 3, 0, 5)))[..., :36, :30]
        assert torch.equal(aligned_forward(net, y), ref)
        net16 = _trained_like_pspnet(output_stride=16)  # stride 16: 16k+1
        assert grid_size(36, 16) == 49 and grid_size(30, 16) == 33 and grid_size(1, 8) == 1
        assert torch.equal(aligned_forward(net16, y), net16(F.pad(y, (0, 3, 0, 13)))[..., :36, :30])
        loose = _trained_like_pspnet(align_corners=False)  # no corner alignment to restore: run as it is
        assert torch.equal(aligned_forward(loose, y), loose(y))
        plain = _pointwise()  # a model without a PSPNetConfig: untouched
        assert torch.equal(aligned_forward(plain, y), plain(y))


def test_the_flipped_view_is_padded_after_mirroring():
    net, x = _trained_like_pspnet(), _images(n=1, h=32, w=24, seed=8)
    probs = predict(net, x, protocol=Protocol(flip=True, align=True), return_probs=True)[1]
    with torch.no_grad():
        a = aligned_forward(net, x).softmax(1)
        b = aligned_forward(net, x.flip(3)).softmax(1).flip(3)
    torch.testing.assert_close(probs, (a + b) / 2, rtol=0, atol=1e-6)


def test_align_follows_the_training_crop_and_is_named():
    """Networks trained on 8k+1 crops (the paper's 473, 713) are scored aligned; the book's 128 crops are not (such a
    network learned the stretched map of its crop). The protocol's name says when inputs are padded."""
    assert aligned_for(473) and aligned_for(713) and aligned_for(121) and aligned_for(33, 16)
    assert not aligned_for(128) and not aligned_for(64) and not aligned_for(473, 16)
    assert authors_protocol("ade20k").align and not PROTOCOLS["ss"].align
    assert Protocol(align=True).name == "ss | whole | 8k+1" and Protocol().name == "ss | whole"
    assert Protocol(align=True).describe().endswith("no flip, inputs padded to 8k+1")
    assert authors_protocol("cityscapes").name == "ss+flip | slide 713 stride 476 | long side 2048"  # 8k+1 windows
    net, x = _trained_like_pspnet(), _images(n=1, h=24, w=24, seed=9)  # two protocols that differ in align only
    data = [(x, torch.zeros(1, 24, 24, dtype=torch.long))]
    scores = evaluate(net, data, 3, protocols={"plain": Protocol(), "aligned": Protocol(align=True)}, progress=False)
    with torch.no_grad():
        plain, aligned = net(x).argmax(1), aligned_forward(net, x).argmax(1)
    assert not torch.equal(plain, aligned)  # so the two views must not be shared
    assert scores["plain"].pixel_acc == pytest.approx((plain == 0).float().mean().item())
    assert scores["aligned"].pixel_acc == pytest.approx((aligned == 0).float().mean().item())


def test_default_window_is_the_authors_crop_of_the_data_set():
    assert default_crop_size("cityscapes") == 713
    assert default_crop_size("ade20k") == default_crop_size("voc") == default_crop_size(None) == 473


@pytest.mark.parametrize("protocol", [
    Protocol(),
    Protocol(flip=True, scales=PAPER_SCALES, base_size=40),
    Protocol(mode="slide", crop_size=17, flip=True),
    Protocol(mode="slide", crop_size=17, stride_rate=2 / 3, flip=True, base_size=41, scales=PAPER_SCALES),
    Protocol(mode="slide", crop_size=(9, 17), stride_rate=0.5, base_size=30, resize="short", scales=(0.5, 1.25)),
])
@pytest.mark.parametrize("h, w", [(21, 34), (8, 5), (40, 40)])
def test_crop_passes_counts_the_forward_passes_predict_makes(protocol, h, w):
    seen = Recorder()
    predict(seen, _images(1, h, w), C, protocol)
    assert crop_passes(protocol, h, w) == len(seen.sizes)  # one image: each call is one window or one view
    if protocol.mode == "slide":
        assert {s[-2:] for s in seen.sizes} == {protocol.crop_hw}


def test_crop_passes_of_the_authors_protocol_by_hand():
    # ADE20K 512 x 683 at long side 512: 384 x 512 padded to 473 -> 1 x 2 windows, with flip 4 passes
    assert crop_passes(authors_protocol("ade20k"), 512, 683) == 4
    # Cityscapes 1024 x 2048 at 2048: 2 x 4 windows of 713 (stride 476), with flip 16
    assert crop_passes(authors_protocol("cityscapes"), 1024, 2048) == 16
    with pytest.raises(ValueError, match="positive"):
        crop_passes(Protocol(), 0, 5)

"""PSPNet and PSPNetConfig (paper §3.3, Fig. 3; aux head §4): layer-for-layer parity with the authors' release,
shapes, options, and the one architecture config."""
import dataclasses
import json

import pytest
import torch
from torch import nn

from pspnet_lite.losses import DeepSupervisionLoss
from pspnet_lite.model import PSPNet, PSPNetConfig


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def meta(**kw):
    with torch.device("meta"):
        return PSPNet(**kw)


# Counted on the authors' release (hszhao/semseg, model/pspnet.py).
@pytest.mark.parametrize("kw, with_aux, without_aux", [
    (dict(num_classes=150), 49_180_908, 46_782_550),
    (dict(num_classes=150, backbone="resnet101"), 68_173_036, 65_774_678),
    (dict(num_classes=21), 49_081_578, 46_716_373),
])
def test_parameter_counts_equal_the_authors_release(kw, with_aux, without_aux):
    assert n_params(meta(**kw)) == with_aux
    assert n_params(meta(aux=False, **kw)) == without_aux


def test_lite_parameter_count():
    assert n_params(meta(num_classes=8, backbone="lite")) == 2_104_960
    assert n_params(meta(num_classes=8, backbone="lite", aux=False)) == 1_956_856


def test_default_is_the_authors_ade20k_pspnet50_layer_for_layer():
    m = meta()
    assert m.num_classes == 150 and m.ppm.bins == (1, 2, 3, 6) and m.ppm.pooling == "avg"
    assert [lvl[1].weight.shape for lvl in m.ppm.features] == [(512, 2048, 1, 1)] * 4
    for head, cin, mid in ((m.cls, 4096, 512), (m.aux, 1024, 256)):
        assert head[0].weight.shape == (mid, cin, 3, 3) and head[0].bias is None
        assert isinstance(head[1], nn.BatchNorm2d) and isinstance(head[2], nn.ReLU)
        assert isinstance(head[3], nn.Dropout2d) and head[3].p == 0.1
        assert head[4].weight.shape == (150, mid, 1, 1) and head[4].bias is not None
    assert m.backbone.stem_type == "deep" and m.backbone.layer4[2].conv2.dilation == (4, 4)


@pytest.mark.parametrize("size", [(33, 33), (37, 50), (64, 48), (20, 9)])  # no 8n+1 rule
def test_logits_at_input_size_train_and_eval(size):
    torch.manual_seed(0)
    m = PSPNet(num_classes=5, backbone="lite", width=8)
    main, aux = m.train()(torch.randn(2, 3, *size))
    assert main.shape == aux.shape == (2, 5, *size)
    out = m.eval()(torch.randn(1, 3, *size))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 5, *size)


@pytest.mark.parametrize("kw", [dict(bins=()), dict(bins=None), dict(pooling="max", reduction=False),
                                dict(bins=(2, 4)), dict(output_stride=16), dict(output_stride=32),
                                dict(stem="torchvision"), dict(dilation="contracted"), dict(layers=(1, 2, 1, 1))])
def test_options_forward(kw):
    m = PSPNet(num_classes=3, backbone="lite", width=4, **kw).train()
    main, aux = m(torch.randn(2, 3, 32, 40))
    assert main.shape == aux.shape == (2, 3, 32, 40)


def test_baseline_has_no_ppm():
    m = meta(bins=())
    assert m.ppm is None and m.cls[0].in_channels == 2048
    assert m.head_modules() == [m.cls, m.aux]


def test_aux_off_returns_none_in_training():
    main, aux = PSPNet(num_classes=3, backbone="lite", width=4, aux=False).train()(torch.randn(2, 3, 24, 24))
    assert aux is None and main.shape == (2, 3, 24, 24)


def test_config_rebuilds_the_same_model():
    torch.manual_seed(0)
    m = PSPNet(num_classes=7, backbone="lite", width=8, bins=[1, 3], pooling="max", aux=False)
    assert isinstance(m.config, PSPNetConfig)
    torch.manual_seed(0)
    again = PSPNet(m.config)
    assert again.config == m.config and m.config.bins == (1, 3) and m.config.width == 8
    a, b = m.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(0)
    from_dict = PSPNet(PSPNetConfig.from_dict(json.loads(json.dumps(m.config.to_dict()))))  # a checkpoint's
    assert from_dict.config == m.config and all(torch.equal(from_dict.state_dict()[k], a[k]) for k in a)


def test_model_config_resolves_the_width_and_normalises_values():
    assert meta(num_classes=3, backbone="lite").config.width == 16
    assert meta(num_classes=3).config.width == 64
    c = meta(num_classes=3, backbone="lite", bins=None, reduction=0, aux=1, dropout=0).config
    assert (c.bins, c.reduction, c.aux, c.dropout) == ((), False, True, 0.0)
    assert type(c.dropout) is float and type(c.aux) is bool


def test_pspnet_config_fields_defaults_and_round_trip():
    c = PSPNetConfig()
    assert (c.num_classes, c.backbone, c.width, c.bins, c.pooling, c.reduction, c.aux, c.stem, c.dilation,
            c.output_stride, c.layers, c.dropout, c.align_corners) == (
        150, "resnet50", None, (1, 2, 3, 6), "avg", True, True, "deep", "full", 8, None, 0.1, True)
    assert PSPNet(num_classes=150).config == dataclasses.replace(c, width=64)  # keywords == the config's fields
    c = PSPNetConfig(num_classes=5, backbone="lite", bins=[1, 2], layers=[1, 1, 2, 1])
    assert c.bins == (1, 2) and c.layers == (1, 1, 2, 1)  # lists (JSON, command lines) become tuples
    d = c.to_dict()
    assert d["bins"] == [1, 2] and d["layers"] == [1, 1, 2, 1] and json.loads(json.dumps(d)) == d
    assert PSPNetConfig.from_dict(d) == c and hash(PSPNetConfig.from_dict(d)) == hash(c)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.bins = (1,)
    with pytest.raises(ValueError, match=r"unknown PSPNetConfig field\(s\) \['bogus'\]"):
        PSPNetConfig.from_dict({**d, "bogus": 1})


def test_each_config_field_has_help_text():
    for f in dataclasses.fields(PSPNetConfig):
        assert f.metadata.get("help"), f.name
    choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(PSPNetConfig)}
    assert set(choices["pooling"]) == {"avg", "max"} and 8 in choices["output_stride"]


def test_constructor_takes_a_config_or_keywords_not_both():
    with pytest.raises(ValueError, match="not both"):
        PSPNet(PSPNetConfig(num_classes=3, backbone="lite"), aux=False)
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['bogus'\]"):
        PSPNet(num_classes=3, bogus=1)
    with pytest.raises(TypeError, match="PSPNetConfig"):
        PSPNet({"num_classes": 3})
    with pytest.raises(ValueError, match="num_classes"):  # a training config's "the data set's" is not a model
        PSPNet(PSPNetConfig(num_classes=None))


def test_head_modules_split_parameters_into_backbone_and_heads():
    m = meta()
    head = {id(p) for mod in m.head_modules() for p in mod.parameters()}
    body = {id(p) for p in m.backbone.parameters()}
    assert m.head_modules() == [m.ppm, m.cls, m.aux]
    assert not head & body and head | body == {id(p) for p in m.parameters()}


def test_batch_of_one_trains():
    m = PSPNet(num_classes=4, backbone="lite", width=8).train()
    main, aux = m(torch.randn(1, 3, 40, 40))
    (main.sum() + aux.sum()).backward()
    assert m.ppm.features[0][1].weight.grad is not None


def test_lite_learns_a_fixed_batch():
    """A few SGD steps on one batch lower the deep-supervision loss (the training loop wiring works)."""
    torch.manual_seed(0)
    m = PSPNet(num_classes=3, backbone="lite", width=8).train()
    x = torch.randn(4, 3, 32, 32)
    y = (torch.arange(32).view(1, 1, 32) >= 16).long().expand(4, 32, 32).clone()  # left / right halves
    y[:, :4] = 255
    loss_fn, opt = DeepSupervisionLoss(), torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(8):
        loss, _ = loss_fn(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("x, word", [
    (torch.randn(3, 32, 32), r"\(3, 32, 32\)"), (torch.randn(1, 4, 32, 32), r"\(1, 4, 32, 32\)"),
    (torch.randn(1, 1, 3, 32, 32), "5|shape"), (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "uint8"),
])
def test_bad_input(x, word):
    m = PSPNet(num_classes=3, backbone="lite", width=4).eval()
    with pytest.raises(ValueError, match=word):
        m(x)


@pytest.mark.parametrize("kw, word", [
    (dict(backbone="resnet18"), "resnet18"), (dict(bins=(1, 0)), r"\(1, 0\)"), (dict(bins=(1, 2.5)), "2.5"),
    (dict(stem="v1c"), "v1c"), (dict(pooling="mean"), "mean"), (dict(num_classes=0), "num_classes"),
    (dict(dropout=1.0), "dropout"), (dict(dilation="hdc"), "hdc"), (dict(output_stride=4), "output_stride"),
])
def test_bad_constructor_arguments(kw, word):
    with pytest.raises(ValueError, match=word):
        meta(**kw)

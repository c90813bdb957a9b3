"""Dilated ResNet backbone (paper §3.3): shapes, dilation layouts, torchvision equivalence, bad input."""
import pytest
import torch
from torchvision.models import resnet50

from pspnet_lite.backbone import BACKBONES, DilatedResNet


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_backbone_table():
    assert BACKBONES == {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3),
                         "resnet269": (3, 30, 48, 8), "lite": (1, 1, 1, 1)}


@pytest.mark.parametrize("os_, size, expect", [(8, 64, 8), (16, 64, 4), (32, 64, 2), (8, 33, 5), (8, 473, 60)])
def test_feature_shapes(os_, size, expect):
    net = DilatedResNet("lite", width=4, output_stride=os_).eval()
    c3, c4 = net(torch.randn(1, 3, size, size))
    assert c3.shape == (1, 4 * 4 * 4, expect if os_ != 32 else 2 * expect, expect if os_ != 32 else 2 * expect)
    assert c4.shape == (1, 4 * 8 * 4, expect, expect)
    assert (net.aux_channels, net.out_channels) == (64, 128)


def test_default_widths_and_channels():
    with torch.device("meta"):
        r50, lite = DilatedResNet(), DilatedResNet("lite")
    assert (r50.width, r50.aux_channels, r50.out_channels) == (64, 1024, 2048)
    assert (lite.width, lite.aux_channels, lite.out_channels) == (16, 256, 512)
    assert r50.conv1.weight.shape == (64, 3, 3, 3) and r50.conv3.weight.shape == (128, 64, 3, 3)
    assert r50.layer1[0].conv1.weight.shape == (64, 128, 1, 1)  # layer1 takes the deep stem's 128 channels
    # 23.63M: the authors' deep-stem ResNet-50 (hszhao/semseg, model/resnet.py) without fc
    assert n_params(r50) == 23_631_808


def test_full_dilation_is_the_authors():
    net = DilatedResNet("lite", width=4, layers=(1, 1, 2, 2))
    for stage, d in ((net.layer3, 2), (net.layer4, 4)):
        for block in stage:  # every block, the first included (semseg / Caffe)
            assert block.conv2.dilation == (d, d) and block.conv2.padding == (d, d) and block.conv2.stride == (1, 1)
        assert stage[0].downsample[0].stride == (1, 1)
    assert net.layer2[0].conv2.stride == (2, 2) and net.layer2[0].conv2.dilation == (1, 1)


def test_contracted_dilation_is_mmsegs():
    net = DilatedResNet("lite", width=4, layers=(1, 1, 2, 2), dilation="contracted")
    assert [b.conv2.dilation[0] for b in net.layer3] == [1, 2]
    assert [b.conv2.dilation[0] for b in net.layer4] == [2, 4]
    os16 = DilatedResNet("lite", width=4, layers=(1, 1, 2, 2), output_stride=16, dilation="contracted")
    assert [b.conv2.dilation[0] for b in os16.layer4] == [1, 2] and os16.layer3[0].conv2.stride == (2, 2)


def test_torchvision_stem_loads_torchvision_resnet50_strictly_and_matches():
    torch.manual_seed(0)
    tv = resnet50().eval()
    state = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    net = DilatedResNet("resnet50", stem="torchvision", output_stride=32).eval()
    net.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        ref = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))
        c3, c4 = net(x)
    assert c4.shape == (1, 2048, 2, 2)
    torch.testing.assert_close(c4, ref, rtol=0, atol=0)
    assert n_params(net) == n_params(tv) - 2_049_000  # torchvision resnet50 minus its fc


def test_dilated_torchvision_stem_has_the_same_parameters():
    with torch.device("meta"):
        a = DilatedResNet(stem="torchvision", output_stride=8)
        b = resnet50()
    sb = {k: v.shape for k, v in b.state_dict().items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in a.state_dict().items()} == sb


@pytest.mark.parametrize("kwargs, word", [
    (dict(depth="resnet34"), "resnet34"), (dict(stem="7x7"), "7x7"), (dict(output_stride=4), "4"),
    (dict(dilation="half"), "half"), (dict(layers=(1, 2, 3)), "(1, 2, 3)"), (dict(layers=(1, 0, 1, 1)), "0"),
    (dict(width=0), "0"),
])
def test_bad_constructor_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word.replace("(", r"\(").replace(")", r"\)")):
        DilatedResNet(**kwargs)


@pytest.mark.parametrize("x, word", [
    (torch.randn(1, 1, 16, 16), r"\(1, 1, 16, 16\)"), (torch.randn(3, 16, 16), "unsqueeze"),
    (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), "uint8"),
])
def test_bad_images(x, word):
    with pytest.raises(ValueError, match=word):
        DilatedResNet("lite", width=4)(x)

"""Parameter / FLOP / shape accounting (pspnet_lite.book.complexity), checked against hand-computed values."""
import pytest
from torch import nn

from pspnet_lite.book.complexity import (
    FlopReport,
    count_flops,
    count_parameters,
    feature_shapes,
    on_meta,
    parameter_breakdown,
)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.head = nn.Conv2d(16, 5, 1)
        self.extra = nn.Conv2d(16, 5, 1)  # runs only in training mode, like an aux head

    def forward(self, x):
        y = self.down(self.stem(x))
        out = self.head(y)
        return (out, self.extra(y)) if self.training else out


def test_count_parameters_by_hand():
    m = Tiny()
    stem = 8 * 3 * 9 + 2 * 8  # conv weight + BN affine (running stats are buffers)
    down = 16 * 8 * 9 + 16
    head = 5 * 16 + 5
    assert count_parameters(m) == stem + down + 2 * head
    assert parameter_breakdown(m) == {"stem": stem, "down": down, "head": head, "extra": head}
    assert count_parameters(None) == 0
    m.head.weight.requires_grad_(False)
    assert count_parameters(m, trainable_only=True) == stem + down + head + 5


def test_parameter_breakdown_depth_two_sums_to_total():
    m = Tiny()
    groups = parameter_breakdown(m, depth=2)
    assert groups["stem.0"] == 8 * 3 * 9 and groups["stem.1"] == 16
    assert sum(groups.values()) == count_parameters(m)
    with pytest.raises(ValueError, match="depth"):
        parameter_breakdown(m, depth=0)


def test_count_flops_by_hand_eval_and_train():
    m = Tiny()
    stem = 8 * 3 * 9 * 10 * 10  # MACs: out channels * in * k*k * output pixels
    down = 16 * 8 * 9 * 5 * 5
    head = 5 * 16 * 5 * 5
    rep = count_flops(m, input_size=10)
    assert isinstance(rep, FlopReport)
    assert rep.macs == stem + down + head and rep.flops == 2 * rep.macs
    assert rep.input_shape == (1, 3, 10, 10)
    assert rep.module("stem.0") == 2 * stem and rep.module("") == rep.flops and rep.module("extra") == 0
    assert rep.share("head") == pytest.approx(head / (stem + down + head))
    assert [name for name, _ in rep.top(2)] == ["down", "stem.0"]
    assert m.training  # mode restored
    train = count_flops(m, input_size=(10, 10), batch_size=3, train=True)
    assert train.macs == 3 * (stem + down + 2 * head)


def test_meta_model_counts_torchvision_resnet50():
    torchvision = pytest.importorskip("torchvision")
    model = on_meta(torchvision.models.resnet50)
    assert next(model.parameters()).device.type == "meta"
    assert count_parameters(model) == 25_557_032  # torchvision's documented count
    rep = count_flops(model, input_size=224)
    assert rep.gmacs == pytest.approx(4.09, abs=0.02)  # the usual "4.1 GFLOPs" of ResNet-50 are MACs
    assert rep.share("layer3") > 0.3


def test_feature_shapes():
    m = Tiny()
    shapes = feature_shapes(m, ["stem", "down", "head"], input_size=(12, 8))
    assert shapes == {"stem": (1, 8, 12, 8), "down": (1, 16, 6, 4), "head": (1, 5, 6, 4)}
    assert m.training
    with pytest.raises(ValueError, match="no submodule named"):
        feature_shapes(m, ["nope"])


def test_bad_input_size():
    with pytest.raises(ValueError, match="input_size"):
        count_flops(Tiny(), input_size=(1, 2, 3))
    with pytest.raises(ValueError, match="input_size"):
        count_flops(Tiny(), input_size=0)
    with pytest.raises(ValueError, match="nn.Module"):
        count_parameters("model")

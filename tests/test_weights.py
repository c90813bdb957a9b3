"""Weight loading: the authors' semseg checkpoints, ImageNet ResNets (torchvision and deep stem), our own.

``SemsegPSPNet`` below rebuilds the authors' release (hszhao/semseg model/pspnet.py) the way they build
it: a ResNet assembled from torchvision's Bottleneck, the deep stem wrapped in ``layer0``, and dilation
patched onto every ``conv2`` / ``downsample.0`` after construction. It shares no code with pspnet_lite,
so equal outputs mean the two networks really are the same.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50
from torchvision.models.resnet import Bottleneck as TVBottleneck

from pspnet_lite.backbone import DilatedResNet
from pspnet_lite.checkpoint import load_weights
from pspnet_lite.model import PSPNet
from pspnet_lite.weights import LoadReport, detect_kind, load_state, pspnet_lite_to_semseg, semseg_to_pspnet_lite


def cbr(cin, cout, k, stride=1):
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SemsegPPM(nn.Module):
    def __init__(self, in_dim, reduction_dim, bins):
        super().__init__()
        self.features = nn.ModuleList([nn.Sequential(nn.AdaptiveAvgPool2d(b), *cbr(in_dim, reduction_dim, 1))
                                       for b in bins])

    def forward(self, x):
        return torch.cat([x] + [F.interpolate(f(x), x.shape[2:], mode="bilinear", align_corners=True)
                                for f in self.features], 1)


class SemsegPSPNet(nn.Module):
    """hszhao/semseg PSPNet, width-parametrised (w=64 is the release: heads 512 / 256)."""

    def __init__(self, layers=(1, 1, 1, 1), w=16, classes=5, bins=(1, 2, 3, 6)):
        super().__init__()
        self.layer0 = nn.Sequential(*cbr(3, w, 3, 2), *cbr(w, w, 3), *cbr(w, 2 * w, 3), nn.MaxPool2d(3, 2, 1))
        inplanes = 2 * w
        for i, n in enumerate(layers):
            planes, stride = w * 2**i, 1 if i == 0 else 2
            down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
            blocks = [TVBottleneck(inplanes, planes, stride, down)]
            inplanes = planes * 4
            blocks += [TVBottleneck(inplanes, planes) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        for layer, d in ((self.layer3, 2), (self.layer4, 4)):
            for name, m in layer.named_modules():
                if "conv2" in name:
                    m.dilation, m.padding, m.stride = (d, d), (d, d), (1, 1)
                elif "downsample.0" in name:
                    m.stride = (1, 1)
        fea = 32 * w
        self.ppm = SemsegPPM(fea, fea // len(bins), bins)
        self.cls = nn.Sequential(*cbr(2 * fea, 8 * w, 3), nn.Dropout2d(0.1), nn.Conv2d(8 * w, classes, 1))
        self.aux = nn.Sequential(*cbr(16 * w, 4 * w, 3), nn.Dropout2d(0.1), nn.Conv2d(4 * w, classes, 1))

    def forward(self, x):  # semseg: input sides must be 8n+1
        h, w = (x.shape[2] - 1) // 8 * 8 + 1, (x.shape[3] - 1) // 8 * 8 + 1
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.layer0(x)))))
        x = self.cls(self.ppm(x))
        return F.interpolate(x, (h, w), mode="bilinear", align_corners=True)


def randomize_bn(model, seed=0):
    """Give every BN non-trivial statistics and affine parameters so wrong wiring shows up."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model


def semseg_checkpoint(ref, path):
    """Save like semseg's train.py under DataParallel: {'epoch', 'state_dict': {'module.' + key}}."""
    torch.save({"epoch": 100, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, path)
    return path


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("layers, w, classes, size, via_file", [
    ((2, 1, 2, 2), 16, 5, (41, 33), True),
    ((1, 1, 1, 1), 64, 150, (25, 17), False),  # the release's real widths: 4096 -> 512 -> 150
])
def test_semseg_checkpoint_gives_the_same_outputs(tmp_path, layers, w, classes, size, via_file):
    torch.manual_seed(0)
    ref = randomize_bn(SemsegPSPNet(layers, w, classes)).eval()
    if via_file:
        source = semseg_checkpoint(ref, tmp_path / "train_epoch_100.pth")
    else:
        source = {"epoch": 100, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}
    with torch.device("meta"):  # uninitialised memory: every tensor must come from the checkpoint
        ours = PSPNet(num_classes=classes, backbone="lite", width=w, layers=layers).to_empty(device="cpu")
    report = load_weights(ours, source)
    assert isinstance(report, LoadReport) and report.kind == "semseg"
    assert len(report.loaded) == len(ref.state_dict()) and not report.skipped
    x = torch.randn(2, 3, *size)  # 8n+1 sides, the only sizes semseg accepts
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), ref(x), rtol=1e-4, atol=1e-4)
        c3, _ = ours.backbone(x)
        ref_c3 = ref.layer3(ref.layer2(ref.layer1(ref.layer0(x))))
        torch.testing.assert_close(ours.aux(c3), ref.aux(ref_c3), rtol=1e-4, atol=1e-4)


def test_semseg_key_mapping_round_trips():
    state = SemsegPSPNet().state_dict()
    mapped = semseg_to_pspnet_lite(state)
    assert "backbone.conv2.weight" in mapped and mapped["backbone.conv2.weight"] is state["layer0.3.weight"]
    assert "backbone.bn3.running_var" in mapped and "backbone.layer4.0.downsample.1.weight" in mapped
    assert "ppm.features.3.1.weight" in mapped and "cls.4.bias" in mapped and "aux.1.weight" in mapped
    assert pspnet_lite_to_semseg(mapped).keys() == state.keys()


def test_wrong_num_classes_is_an_error_naming_the_keys(tmp_path):
    path = semseg_checkpoint(SemsegPSPNet(classes=150), tmp_path / "ade.pth")
    ours = PSPNet(num_classes=21, backbone="lite")
    before = snapshot(ours)
    with pytest.raises(ValueError, match=r"(?s)cls\.4\.weight.*aux\.4\.weight.*num_classes=150"):
        load_weights(ours, path)
    after = ours.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing half-loaded


def test_wrong_depth_is_an_error_naming_the_keys(tmp_path):
    path = semseg_checkpoint(SemsegPSPNet(layers=(1, 1, 3, 1)), tmp_path / "deeper.pth")
    with pytest.raises(ValueError, match=r"(?s)layer3\.1\.conv1\.weight.*layer3\.2.*\(1, 1, 3, 1\) blocks"):
        load_weights(PSPNet(num_classes=5, backbone="lite"), path)
    path = semseg_checkpoint(SemsegPSPNet(layers=(1, 1, 1, 1)), tmp_path / "shallower.pth")
    with pytest.raises(ValueError, match=r"missing from the checkpoint .*backbone\.layer1\.1\.conv1\.weight"):
        load_weights(PSPNet(num_classes=5, backbone="lite", layers=(2, 1, 1, 1)), path)


def test_strict_false_loads_what_fits_and_lists_the_rest():
    state = SemsegPSPNet(classes=150).state_dict()
    ours = PSPNet(num_classes=21, backbone="lite")
    report = load_weights(ours, state, kind="semseg", strict=False)
    assert any(k.startswith("cls.4.weight") for k in report.mismatched)
    assert torch.equal(ours.backbone.conv2.weight, state["layer0.3.weight"])
    assert "mismatched" in str(report)


def test_model_without_aux_skips_the_aux_weights():
    state = SemsegPSPNet().state_dict()
    report = load_weights(PSPNet(num_classes=5, backbone="lite", aux=False), state)
    assert sorted(report.skipped) == sorted(k for k in state if k.startswith("aux."))


def test_torchvision_imagenet_round_trip():
    torch.manual_seed(0)
    tv = resnet50().eval()
    randomize_bn(tv)
    net = DilatedResNet("resnet50", stem="torchvision", output_stride=32).eval()
    report = load_weights(net, tv.state_dict())
    assert report.kind == "imagenet" and sorted(report.skipped) == ["fc.bias", "fc.weight"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))
        torch.testing.assert_close(net(x)[1], ref, rtol=0, atol=0)
    psp = PSPNet(num_classes=3, stem="torchvision", layers=(1, 1, 1, 1), width=8)  # wrong depth/width
    with pytest.raises(ValueError, match=r"wrong shape|unexpected"):
        load_weights(psp, tv.state_dict(), kind="imagenet")


def test_torchvision_weights_into_deep_stem_explain_the_authors_weights():
    with torch.device("meta"):
        state = resnet50().state_dict()
        model = PSPNet()
    with pytest.raises(ValueError, match=r"(?s)7x7.*deep stem.*resnet50_v2\.pth.*stem='torchvision'"):
        load_weights(model, state, kind="imagenet")


def test_authors_deep_stem_imagenet_layout(tmp_path):
    """resnet50_v2.pth: conv1..bn3 + layer1..4 + fc, saved before PyTorch tracked BN batches."""
    source = DilatedResNet("lite")
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    state.update({"fc.weight": torch.randn(1000, 512), "fc.bias": torch.zeros(1000)})
    torch.save(state, tmp_path / "resnet_v2.pth")
    model = PSPNet(num_classes=4, backbone="lite")
    report = load_weights(model, tmp_path / "resnet_v2.pth")
    assert report.kind == "imagenet" and len(report.loaded) == len(state) - 2
    assert torch.equal(model.backbone.conv3.weight, source.conv3.weight)
    with pytest.raises(ValueError, match="stem='deep'"):
        load_weights(PSPNet(num_classes=4, backbone="lite", stem="torchvision"), state)


def test_pspnet_lite_round_trip_nested_and_prefixed(tmp_path):
    torch.manual_seed(1)
    src = randomize_bn(PSPNet(num_classes=4, backbone="lite", width=8)).eval()
    torch.save({"model": {f"module.{k}": v for k, v in src.state_dict().items()}, "config": src.config.to_dict()},
               tmp_path / "ckpt.pt")
    dst = PSPNet(src.config).eval()
    assert load_weights(dst, tmp_path / "ckpt.pt").kind == "pspnet_lite"
    x = torch.randn(1, 3, 30, 30)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)


def test_detect_kind():
    assert detect_kind(SemsegPSPNet().state_dict()) == "semseg"
    assert detect_kind(PSPNet(num_classes=2, backbone="lite", width=4).state_dict()) == "pspnet_lite"
    assert detect_kind(DilatedResNet("lite", width=4).state_dict()) == "imagenet"
    with pytest.raises(ValueError, match="decoder.weight"):
        detect_kind({"decoder.weight": torch.zeros(1)})


def test_bad_sources():
    # (missing and unreadable files: tests/test_checkpoint.py, which reads the files)
    model = PSPNet(num_classes=2, backbone="lite", width=4)
    for load in (load_weights, load_state):
        with pytest.raises(ValueError, match="'caffe'"):
            load(model, {}, kind="caffe")
        with pytest.raises(ValueError, match="'epoch'"):
            load(model, {"epoch": 3, "weights": torch.zeros(1)})
        with pytest.raises(ValueError, match="whole PSPNet"):
            load(DilatedResNet("lite", width=4), SemsegPSPNet().state_dict())


def test_load_state_maps_a_state_dict_and_names_its_source():
    ref = randomize_bn(SemsegPSPNet()).eval()
    ours = PSPNet(num_classes=5, backbone="lite")
    report = load_state(ours, {"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}},
                        source="train_epoch_50.pth")
    assert report.kind == "semseg" and report.source == "train_epoch_50.pth"
    assert "from train_epoch_50.pth" in str(report)
    assert torch.equal(ours.backbone.conv3.weight, ref.layer0[6].weight)
    with pytest.raises(ValueError, match=r"train_epoch_50\.pth \(semseg layout\) does not fit PSPNet"):
        load_state(PSPNet(num_classes=7, backbone="lite"), ref.state_dict(), source="train_epoch_50.pth")

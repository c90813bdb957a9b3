"""``python -m pspnet_lite.convert caffe``: the authors' Caffe release (hszhao/PSPNet) as pspnet_lite checkpoints.

No real caffemodel can be downloaded here: the three official deploy prototxts are regenerated from a description
of their layers (``tests/caffe_fixtures.py``; at full size they hash to the official files) and caffemodels are
written with random blobs. Numeric checks run on narrowed copies (width 4, input 89, full depth), against a
NumPy/torch interpreter of the Caffe layers; the full-size layouts are checked blob by blob on shapes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("google.protobuf")

import caffe_fixtures as cf  # noqa: E402
from fake_datasets import make_ade20k, write_image  # noqa: E402

from pspnet_lite import checkpoint, evaluate, predict  # noqa: E402
from pspnet_lite.backbone import DilatedResNet  # noqa: E402
from pspnet_lite.convert import main as convert_main  # noqa: E402
from pspnet_lite.convert.caffe import (  # noqa: E402
    BN_EPS,
    CAFFE_PREPROCESSING,
    CaffeError,
    convert,
    plan,
    read_prototxt,
)
from pspnet_lite.convert.caffe_layout import caffe_pool_out  # noqa: E402
from pspnet_lite.data.transforms import IMAGENET, Preprocessing  # noqa: E402
from pspnet_lite.model import PSPNet, PSPNetConfig  # noqa: E402
from pspnet_lite.ppm import PyramidPooling  # noqa: E402

NAMES = list(cf.RELEASES)
SMALL = dict(width=4, input_size=89)  # a 12x12 map: pyramid kernels 12, 6, 4, 2


def write_pair(tmp_path, name, seed=0, stem="net", **narrow):
    net = cf.release_net(name, **{**SMALL, **narrow})
    model = cf.random_caffemodel(net, seed)
    ptxt, cmodel = tmp_path / f"{stem}.prototxt", tmp_path / f"{stem}.caffemodel"
    ptxt.write_text(cf.prototxt_text(net))
    cmodel.write_bytes(model.SerializeToString())
    return net, model, ptxt, cmodel


def one_line_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        convert_main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


# ------------------------------------------------------------------------------------------------------------
# the fixtures are the official prototxts; the full-size layouts map blob by blob


@pytest.mark.parametrize("name", NAMES)
def test_fixture_is_the_official_prototxt(name):
    net = cf.release_net(name)
    assert hashlib.sha256(net.SerializeToString(deterministic=True)).hexdigest() == cf.OFFICIAL_SHA256[name]


@pytest.mark.parametrize("name", NAMES)
def test_full_size_layout_every_blob_lands_where_it_belongs(name, tmp_path, monkeypatch):
    path = tmp_path / f"{name}.prototxt"
    path.write_text(cf.prototxt_text(cf.release_net(name)))  # through the text parser, as a user's file
    p = plan(read_prototxt(path), name)
    blocks, on_1x1, classes, size = cf.RELEASES[name]
    c = p.config
    assert (c.backbone, c.width, c.num_classes, c.bins, c.aux) == (
        "resnet50" if blocks[2] == 6 else "resnet101", 64, classes, (1, 2, 3, 6), False)
    assert c.stride_in_1x1 is on_1x1 and c.layers is None and c.dropout == pytest.approx(0.1)
    assert p.input_size == (size, size) and p.feature_size == ((size - 1) // 8 + 1,) * 2  # 60 or 90
    monkeypatch.setattr(DilatedResNet, "_init_weights", lambda self: None)  # shapes only: no values, no init
    with torch.device("meta"):
        own = PSPNet(c).state_dict()
    mapped = {}
    for node in p.weighted:
        for shape, key in zip(node.shapes, node.keys):
            want = own[key].shape
            got = (shape[1],) if node.type == "BN" else shape  # BN blobs are (1, C, 1, 1)
            assert tuple(want) == tuple(got), (node.name, key)
            assert key not in mapped, f"{key} filled twice"
            mapped[key] = node.name
    assert set(mapped) == {k for k in own if not k.endswith("num_batches_tracked")}
    last = blocks[2]
    for caffe_name, key in [("conv1_1_3x3_s2", "backbone.conv1.weight"), ("conv1_3_3x3/bn", "backbone.bn3.running_var"),
                            ("conv2_1_1x1_proj", "backbone.layer1.0.downsample.0.weight"),
                            ("conv3_1_1x1_reduce/bn", "backbone.layer2.0.bn1.weight"),
                            (f"conv4_{last}_3x3", f"backbone.layer3.{last - 1}.conv2.weight"),
                            ("conv5_3_1x1_increase/bn", "backbone.layer4.2.bn3.bias"),
                            ("conv5_3_pool1_conv", "ppm.features.0.1.weight"),
                            ("conv5_3_pool6_conv/bn", "ppm.features.3.2.running_mean"),
                            ("conv5_4", "cls.0.weight"), ("conv5_4/bn", "cls.1.weight"), ("conv6", "cls.4.bias")]:
        assert mapped[key] == caffe_name
    # the release concatenates conv5_3, pool6, pool3, pool2, pool1: conv5_4's input channels are reordered
    assert p.concat == ("conv5_3", "conv5_3_pool6_interp", "conv5_3_pool3_interp", "conv5_3_pool2_interp",
                        "conv5_3_pool1_interp")
    perm = p.conv5_4_permutation()
    assert list(perm[[0, 2047, 2048, 2560, 3072, 3584, 4095]]) == [0, 2047, 3584, 3072, 2560, 2048, 2559]


# ------------------------------------------------------------------------------------------------------------
# the converted network computes the Caffe network


@pytest.mark.parametrize("name", NAMES)
def test_converted_checkpoint_computes_the_caffe_network(name, tmp_path, capsys):
    net, model, ptxt, cmodel = write_pair(tmp_path, name, seed=NAMES.index(name))
    out = tmp_path / "converted.pt"
    convert_main(["caffe", str(ptxt), str(cmodel), "--out", str(out)])
    assert "wrote" in capsys.readouterr().out
    loaded = checkpoint.load_model(out)
    assert loaded.trainer and loaded.config.stride_in_1x1 is cf.RELEASES[name][1]
    state, blobs = loaded.model.state_dict(), cf.blobs_of(model)
    perm = plan(net).conv5_4_permutation()
    for node in plan(net).weighted:  # every blob, exactly where it belongs
        for blob, key in zip(blobs[node.name], node.keys):
            want = blob[:, perm] if key == "cls.0.weight" else blob.reshape(state[key].shape)
            assert torch.equal(state[key], torch.from_numpy(want.astype(np.float32))), (node.name, key)
    x = np.random.default_rng(1).normal(0, 60, (1, 3, 89, 89))
    ref = cf.caffe_forward(net, blobs, x)  # (1, C, 89, 89): conv6_interp of the 12x12 map
    with torch.no_grad():
        got = loaded.model(torch.from_numpy(x).float()).double().numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def test_stride_in_1x1_changes_the_features_and_defaults_off():
    assert PSPNetConfig().stride_in_1x1 is False
    default, caffe50 = DilatedResNet(width=4, layers=(1, 1, 1, 1)), DilatedResNet(width=4, layers=(1, 1, 1, 1),
                                                                                   stride_in_1x1=True)
    assert default.layer2[0].conv1.stride == (1, 1) and default.layer2[0].conv2.stride == (2, 2)
    assert caffe50.layer2[0].conv1.stride == (2, 2) and caffe50.layer2[0].conv2.stride == (1, 1)
    assert caffe50.layer3[0].conv1.stride == (1, 1)  # dilated stages have no stride to place
    caffe50.load_state_dict(default.state_dict())  # the same parameters ...
    x = torch.randn(1, 3, 41, 41)
    a, b = default.eval()(x)[1], caffe50.eval()(x)[1]
    assert a.shape == b.shape and not torch.allclose(a, b)  # ... different features
    cfg = PSPNetConfig(num_classes=3, width=4, layers=(1, 1, 1, 1), stride_in_1x1=True)
    assert PSPNet(cfg).config.stride_in_1x1 and PSPNetConfig.from_dict(cfg.to_dict()) == cfg


# ------------------------------------------------------------------------------------------------------------
# BN, pooling and Interp against the Caffe layers' arithmetic


def test_bn_layer_is_the_fork_bn_with_its_epsilon(tmp_path):
    _, model, ptxt, cmodel = write_pair(tmp_path, NAMES[0])
    converted = convert(ptxt, cmodel).model
    assert BN_EPS == 1e-5 and converted.backbone.bn1.eps == BN_EPS
    slope, bias, mean, var = cf.blobs_of(model)["conv1_1_3x3_s2/bn"]
    x = np.random.default_rng(0).normal(0, 2, (2, 4, 5, 7))
    ref = cf.caffe_bn(x, slope, bias, mean, var, eps=1e-5)
    with torch.no_grad():
        got = converted.backbone.bn1(torch.from_numpy(x).float()).double().numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("crop,size", [(473, 60), (713, 90)])
def test_release_fixed_pooling_equals_the_model_pooling(crop, size):
    assert caffe_pool_out(crop, 3, 2, 1) == (crop - 1) // 2 + 1  # nothing rounds differently at 8k+1 inputs
    x = np.random.default_rng(crop).normal(size=(1, 3, size, size))
    ppm = PyramidPooling(8, bins=(1, 2, 3, 6))
    for level, b in zip(ppm.features, (1, 2, 3, 6)):
        k = size // b  # the prototxts' kernel = stride: 60, 30, 20, 10 at 473; 90, 45, 30, 15 at 713
        ref = cf.caffe_pool(x, "AVE", k, k, 0)
        got = level[0](torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    stem = (crop - 1) // 2 + 1  # the map conv1_3_3x3 hands to pool1_3x3_s2 (237 or 357)
    y = np.random.default_rng(1).normal(size=(1, 2, stem, stem))
    np.testing.assert_array_equal(nn.MaxPool2d(3, 2, 1)(torch.from_numpy(y)).numpy(), cf.caffe_pool(y, "MAX", 3, 2, 1))


def test_caffe_pooling_reference_rounds_up_and_counts_padding():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    assert cf.caffe_pool(x, "MAX", 3, 2, 0).shape == (1, 1, 2, 2)  # ceil((4 - 3) / 2) + 1; floor would give 1
    ave = cf.caffe_pool(x, "AVE", 3, 2, 1)
    assert ave[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 9  # padded cells count in the divisor
    torch_ave = F.avg_pool2d(torch.from_numpy(x), 3, 2, 1, ceil_mode=True, count_include_pad=True).numpy()
    np.testing.assert_allclose(ave, torch_ave)


@pytest.mark.parametrize("size", [60, 90])
def test_interp_is_align_corners_bilinear(size):
    rng = np.random.default_rng(size)
    for b in (1, 2, 3, 6):  # the pyramid's Interp to the map size
        x = rng.normal(size=(1, 3, b, b))
        got = F.interpolate(torch.from_numpy(x), (size, size), mode="bilinear", align_corners=True).numpy()
        np.testing.assert_allclose(got, cf.caffe_interp(x, size, size), rtol=1e-5, atol=1e-5)
    x = rng.normal(size=(1, 2, size, size))  # conv6_interp, zoom 8: 60 -> 473, 90 -> 713
    model = PSPNet(num_classes=2, width=4, layers=(1, 1, 1, 1))
    out = 8 * (size - 1) + 1
    got = model.upsample(torch.from_numpy(x), (out, out)).numpy()
    np.testing.assert_allclose(got, cf.caffe_interp(x, out, out), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------------------
# preprocessing and protocol travel with the checkpoint


def test_checkpoint_records_release_preprocessing_and_protocol(tmp_path):
    _, _, ptxt, cmodel = write_pair(tmp_path, "pspnet101_cityscapes_713")
    out = tmp_path / "cs.pt"
    ckpt = convert_main(["caffe", str(ptxt), str(cmodel), "--out", str(out)])
    assert ckpt["preprocessing"] == {"channel_order": "bgr", "mean": [103.939, 116.779, 123.68], "std": [1.0] * 3}
    assert ckpt["protocol"] == {"mode": "slide", "crop_size": 89, "stride_rate": 2 / 3, "base_size": 2049,
                                "resize": "long", "flip": True}
    assert ckpt["source"]["framework"] == "caffe" and ckpt["config"]["preset"] == "caffe:net"
    assert ckpt["config"]["dataset"] == "cityscapes" and len(ckpt["class_names"]) == 19
    loaded = checkpoint.load_model(out)
    assert loaded.preprocessing == CAFFE_PREPROCESSING and loaded.protocol == ckpt["protocol"]
    image = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)  # RGB
    x = loaded.preprocessing(image)
    want = image[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) - np.array([103.939, 116.779, 123.68],
                                                                              np.float32)[:, None, None]
    np.testing.assert_allclose(x.numpy(), want, rtol=0, atol=1e-4)
    assert checkpoint.load_model(out).preprocessing is not IMAGENET
    assert Preprocessing.from_dict(None) == IMAGENET


def test_predict_applies_bgr_mean_and_the_release_protocol_on_its_own(tmp_path, monkeypatch):
    _, _, ptxt, cmodel = write_pair(tmp_path, NAMES[0])
    ckpt = tmp_path / "ade.pt"
    convert_main(["caffe", str(ptxt), str(cmodel), "--out", str(ckpt)])
    image = np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    write_image(tmp_path / "photo.png", image)
    seen = {}
    real = predict.predict

    def spy(model, x, **kw):
        seen["x"], seen["protocol"] = x, kw["protocol"]
        kw["protocol"] = dataclasses.replace(kw["protocol"], base_size=None)  # the image's size: two windows, fast
        return real(model, x, **kw)

    monkeypatch.setattr(predict, "predict", spy)
    written = predict.main(predict.get_args_parser().parse_args(
        [str(tmp_path / "photo.png"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "preds"), "--device", "cpu"]))
    assert len(written) == 3
    np.testing.assert_allclose(seen["x"][0].numpy(), CAFFE_PREPROCESSING(image).numpy())
    p = seen["protocol"]
    assert (p.mode, p.crop_size, p.base_size, p.flip, p.resize, p.align) == ("slide", 89, 513, True, "long", True)


def test_evaluate_applies_them_without_flags(tmp_path, monkeypatch):
    _, _, ptxt, cmodel = write_pair(tmp_path, NAMES[0])
    ckpt = tmp_path / "ade.pt"
    convert_main(["caffe", str(ptxt), str(cmodel), "--out", str(ckpt)])
    make_ade20k(tmp_path / "ade", n_val=1, h=24, w=32)
    seen = {}
    real = evaluate.evaluate

    def spy(model, loader, num_classes, protocols, **kw):
        seen["protocols"] = protocols
        seen["x"] = next(iter(loader))[0]
        fast = {k: dataclasses.replace(p, base_size=None) for k, p in protocols.items()}  # two windows, fast
        return real(model, loader, num_classes, protocols=fast, **kw)

    monkeypatch.setattr(evaluate, "evaluate", spy)
    args = evaluate.get_args_parser().parse_args(["--checkpoint", str(ckpt), "--data-root", str(tmp_path / "ade"),
                                                  "--workers", "0", "--no-progress", "--out",
                                                  str(tmp_path / "scores.json"), "--device", "cpu"])
    out = evaluate.main(args)
    assert out["dataset"] == "ade20k" and list(out["protocols"]) == ["ss+flip"]
    p = seen["protocols"]["ss+flip"]
    assert (p.mode, p.crop_size, p.base_size, p.flip, p.align) == ("slide", 89, 513, True, True)
    x = seen["x"][0]  # BGR minus the mean, unscaled: pixel values far outside the ImageNet-normalised range
    assert x.abs().max() > 20 and x.min() >= -123.68 - 1e-3


# ------------------------------------------------------------------------------------------------------------
# bad input: one line each


def test_prototxt_and_caffemodel_of_different_networks(tmp_path, capsys):
    _, _, ade_txt, ade_model = write_pair(tmp_path, "pspnet50_ADE20K_473", stem="ade")
    _, _, voc_txt, voc_model = write_pair(tmp_path, "pspnet101_VOC2012_473", stem="voc")
    out = str(tmp_path / "x.pt")
    err = one_line_error(capsys, ["caffe", str(ade_txt), str(voc_model), "--out", out])
    assert "conv6" in err and "(21, 32, 1, 1)" in err and "(150, 32, 1, 1)" in err  # first misfit, named
    err = one_line_error(capsys, ["caffe", str(voc_txt), str(ade_model), "--out", out])
    assert "lacks" in err and "conv4_7_1x1_reduce" in err and "another network" in err
    _, _, _, wide_model = write_pair(tmp_path, "pspnet50_ADE20K_473", stem="wide", width=8)
    err = one_line_error(capsys, ["caffe", str(ade_txt), str(wide_model), "--out", out])
    assert "conv1_1_3x3_s2" in err and "(8, 3, 3, 3)" in err
    assert not (tmp_path / "x.pt").exists()


def test_truncated_or_foreign_files_name_the_file(tmp_path, capsys):
    _, _, ptxt, cmodel = write_pair(tmp_path, NAMES[0])
    out = str(tmp_path / "x.pt")
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(cmodel.read_bytes()[: cmodel.stat().st_size // 2])
    err = one_line_error(capsys, ["caffe", str(ptxt), str(cut), "--out", out])
    assert "cut.caffemodel" in err and "truncated" in err
    png = tmp_path / "photo.png"
    write_image(png, np.zeros((8, 8, 3), np.uint8))
    err = one_line_error(capsys, ["caffe", str(ptxt), str(png), "--out", out])
    assert "photo.png" in err
    err = one_line_error(capsys, ["caffe", str(cmodel), str(cmodel), "--out", out])  # the weights as the prototxt
    assert "net.caffemodel" in err and "prototxt" in err
    notes = tmp_path / "notes.prototxt"
    notes.write_text("this is not a network\n")
    err = one_line_error(capsys, ["caffe", str(notes), str(cmodel), "--out", out])
    assert "notes.prototxt" in err
    err = one_line_error(capsys, ["caffe", str(tmp_path / "missing.prototxt"), str(cmodel), "--out", out])
    assert "missing.prototxt" in err and "does not exist" in err


def test_unmapped_layers_and_parameters_are_refused_by_name(tmp_path, capsys):
    net = cf.release_net(NAMES[1], **SMALL)
    extra = net.layer.add(name="prob", type="Softmax")
    extra.bottom.append("conv6_interp")
    extra.top.append("prob")
    with pytest.raises(CaffeError, match="'prob' \\(type Softmax\\)"):
        plan(net)
    net = cf.release_net(NAMES[1], **SMALL)
    pool = next(layer for layer in net.layer if layer.name == "conv5_3_pool3")
    pool.pooling_param.kernel_size = pool.pooling_param.stride = 5
    with pytest.raises(CaffeError, match="conv5_3_pool3"):
        plan(net)
    net = cf.release_net(NAMES[1], **SMALL)
    next(layer for layer in net.layer if layer.name == "conv4_2_3x3").convolution_param.dilation[0] = 3
    with pytest.raises(CaffeError, match="conv4_2_3x3.*dilation"):
        plan(net)
    net = cf.release_net(NAMES[1], **SMALL)
    next(layer for layer in net.layer if layer.name == "conv2_1_1x1_proj/bn").bn_param.eps = 1e-3
    with pytest.raises(CaffeError, match="conv2_1_1x1_proj/bn.*eps"):
        plan(net)
    net = cf.release_net(NAMES[1], width=4, input_size=97)  # 13x13 map: 13 / 6 is no fixed kernel
    with pytest.raises(CaffeError, match="conv5_3_pool"):
        plan(net)


def test_missing_protobuf_is_one_line(tmp_path, capsys, monkeypatch):
    _, _, ptxt, cmodel = write_pair(tmp_path, NAMES[0])
    import google.protobuf

    monkeypatch.delattr(google.protobuf, "text_format", raising=False)  # as if protobuf were not installed
    monkeypatch.setitem(sys.modules, "google.protobuf.text_format", None)
    err = one_line_error(capsys, ["caffe", str(ptxt), str(cmodel), "--out", str(tmp_path / "x.pt")])
    assert "protobuf" in err and "pspnet-lite[caffe]" in err

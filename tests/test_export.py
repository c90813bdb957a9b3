"""pspnet_lite.export and the onnxruntime backend: a fixed-size ONNX export of a tiny PSPNet agrees with eager PyTorch
within 1e-3 under the whole-image and sliding-window protocols (flip and two scales included), through the Python
API and ``predict --backend onnxruntime``; sizes are rounded to 8n+1 for 8n+1 networks with a warning; every bad
input is one ``error:`` line. One real export (a module fixture); the other command-line tests stop before it or
replace it."""

import contextlib
import io
import shutil
import subprocess
import sys

import cv2
import pytest
import torch
from conftest import ENV

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from pspnet_lite import export, predict  # noqa: E402
from pspnet_lite.checkpoint import CHECKPOINT_FORMAT  # noqa: E402
from pspnet_lite.data.context_scenes import CLASSES, ContextScenes  # noqa: E402
from pspnet_lite.data.transforms import Preprocessing  # noqa: E402
from pspnet_lite.inference import Protocol  # noqa: E402
from pspnet_lite.inference import predict as infer  # noqa: E402
from pspnet_lite.model import PSPNet  # noqa: E402
from pspnet_lite.onnx_runtime import OnnxModel  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN_CROP = 33  # 8n+1, as the paper's 473: the network is fed 8n+1 sizes


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = PSPNet(num_classes=len(CLASSES), backbone="lite", width=8, bins=(1, 2, 4)).eval()
    for m in net.modules():  # non-trivial BN statistics, so that a wrong export shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net


@pytest.fixture(scope="module")
def ckpt(model, tmp_path_factory):
    """A trainer checkpoint of ``model`` (the keys checkpoint.load_model reads), trained on 33 px crops."""
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "model_config": model.config.to_dict(),
                "config": {"dataset": "context_scenes", "crop_size": TRAIN_CROP}, "class_names": list(CLASSES)}, path)
    return path


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory):
    """``python -m pspnet_lite.export best.pt --onnx model.onnx --size 30``: (path, metadata, stdout, stderr)."""
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        meta = export.main([str(ckpt), "--onnx", str(path), "--size", "30"])
    return path, meta, out.getvalue(), err.getvalue()


def images(h, w, n=1, seed=0):
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))  # (N, 3, h, w) normalised


def test_export_rounds_to_8n_plus_1_checks_and_stores_metadata(exported, ckpt):
    path, meta, out, err = exported
    assert err.splitlines() == ["warning: --size 30 30 rounded up to 33 33 (8n+1): this network upsamples with "
                                "align_corners=True and was trained on 33 px crops, so it is fed 8n+1 sizes"]
    assert f"wrote {path}: 33 x 33 -> 16 classes" in out
    diff = float(out.split("logit difference at 33 x 33: ")[1].split()[0])
    assert diff == pytest.approx(meta["max_abs_logit_diff"], rel=0.01) and diff < 1e-3
    proto = onnx.load(str(path))
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 33, 33] and [o.name for o in proto.graph.output] == ["logits"]
    assert not list(path.parent.glob("*.data")) and not list(path.parent.glob(".*tmp"))  # one file, weights inside
    onnx_model = OnnxModel(path)
    assert onnx_model.input_size == (33, 33) and onnx_model.num_classes == 16
    assert onnx_model.metadata["train_crop"] == TRAIN_CROP and onnx_model.metadata["align"] is True
    assert onnx_model.state["config"] == {"dataset": "context_scenes", "crop_size": TRAIN_CROP}
    assert onnx_model.state["class_names"] == list(CLASSES) and onnx_model.metadata["checkpoint"] == ckpt.name
    assert onnx_model.config == PSPNet(**onnx_model.metadata["model_config"]).config


def test_whole_image_round_trip(exported, model):
    onnx_model = OnnxModel(exported[0])
    x = images(33, 33, n=2)
    with torch.no_grad():
        assert (onnx_model(x) - model(x)).abs().max() < 1e-3  # the logits
    # a 30 x 26 image is padded to 33 x 33 (8n+1) by the aligned whole-image protocol: the exported size
    for shape in ((33, 33), (30, 26)):
        x = images(*shape, seed=1)
        protocol = Protocol(mode="whole", flip=True, align=True)
        labels, probs = infer(onnx_model, x, num_classes=16, protocol=protocol, return_probs=True)
        ref_labels, ref_probs = infer(model, x, num_classes=16, protocol=protocol, return_probs=True)
        assert (probs - ref_probs).abs().max() < 1e-3 and (labels == ref_labels).float().mean() > 0.999


def test_sliding_window_round_trip(exported, model):
    onnx_model = OnnxModel(exported[0])
    x = images(50, 70, n=2, seed=2)
    protocol = Protocol(mode="slide", crop_size=33, flip=True, scales=(0.75, 1.0), align=True)
    labels, probs = infer(onnx_model, x, num_classes=16, protocol=protocol, return_probs=True)
    ref_labels, ref_probs = infer(model, x, num_classes=16, protocol=protocol, return_probs=True)
    assert (probs - ref_probs).abs().max() < 1e-3 and (labels == ref_labels).float().mean() > 0.999


def test_whole_image_of_another_size_is_one_error_naming_the_way_out(exported):
    with pytest.raises(ValueError, match=r"exported for 33 x 33 inputs, but this forward pass is 41 x 49; use the "
                                         r"sliding window .* --size 41 49"):
        infer(OnnxModel(exported[0]), images(40, 45), protocol=Protocol(mode="whole", align=True))


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    ds = ContextScenes("val", num_images=2, image_size=64)
    d = tmp_path_factory.mktemp("images")
    paths = []
    for i, shape in enumerate([(48, 48), (40, 60)]):
        p = d / f"img{i}.png"
        cv2.imwrite(str(p), cv2.cvtColor(cv2.resize(ds.images[i], shape[::-1]), cv2.COLOR_RGB2BGR))
        paths.append(str(p))
    return paths


def predict_main(*argv):
    return predict.main(predict.get_args_parser().parse_args(list(argv)))


def test_predict_backend_onnxruntime_equals_the_torch_backend(exported, ckpt, image_files, tmp_path, capsys):
    """The sliding window (the onnxruntime default, the exported size as the window) with flip, from image files."""
    predict_main(*image_files, "--backend", "onnxruntime", "--onnx", str(exported[0]), "--out", str(tmp_path / "o"),
                 "--protocol", "ss+flip")
    assert f"onnxruntime: {exported[0]} (33 x 33, 16 classes)" in capsys.readouterr().out
    predict_main(*image_files, "--checkpoint", str(ckpt), "--out", str(tmp_path / "t"), "--protocol", "ss+flip",
                 "--mode", "slide", "--device", "cpu")
    for i in range(2):
        got = cv2.imread(str(tmp_path / "o" / f"img{i}_labels.png"), cv2.IMREAD_UNCHANGED)
        ref = cv2.imread(str(tmp_path / "t" / f"img{i}_labels.png"), cv2.IMREAD_UNCHANGED)
        assert got.shape == ref.shape and (got == ref).mean() > 0.999
        mask = cv2.imread(str(tmp_path / "o" / f"img{i}_mask.png"))
        assert mask.shape == (*got.shape, 3)


def test_export_size_rule_and_minimum(model):
    assert export.min_size(model) == 25  # the 4 x 4 level on a 1/8 map: 8 * 3 + 1
    assert export.min_size(PSPNet(num_classes=2, backbone="lite")) == 41  # the paper's 6 x 6 level
    assert export.export_size([472], model, 473) == ((473, 473), True)
    assert export.export_size([473, 500], model, 473) == ((473, 505), True)
    assert export.export_size([64, 64], model, 64) == ((64, 64), False)  # trained on 64 crops: fed 64 as they are
    assert export.export_size(None, model, 64) == ((64, 64), False)  # default: the training crop
    flat = PSPNet(num_classes=2, backbone="lite", bins=(1, 2, 4), align_corners=False)
    assert export.export_size([40], flat, 473) == ((40, 40), False)  # no align_corners: no stretched map to avoid


def run_export(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        export.main([str(a) for a in argv])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    return captured.err.strip()


@pytest.mark.parametrize("argv, message", [
    (["/missing.pt", "--onnx", "{out}"], "error: file '/missing.pt' does not exist"),
    (["{cut}", "--onnx", "{out}"], "error: cannot read '{cut}' with torch.load"),
    (["{ckpt}", "--onnx", "{out}", "--size", "16"], "error: --size 17 17 is below this model's minimum 25 x 25: its 4 "
     "x 4 pyramid level needs a 1/8 feature map of at least 4 x 4 cells"),
    (["{ckpt}", "--onnx", "{out}", "--size", "33", "33", "33"], "error: --size takes a height and width"),
    (["{ckpt}", "--onnx", "{out}", "--size", "x"], "error: argument --size: invalid int value: 'x'"),
    (["{ckpt}"], "error: the following arguments are required: --onnx"),
])
def test_bad_export_input_is_one_error_line(argv, message, ckpt, tmp_path, capsys):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(ckpt.read_bytes()[:2000])
    fill = dict(out=tmp_path / "m.onnx", cut=cut, ckpt=ckpt)
    err = run_export([a.format(**fill) for a in argv], capsys)
    assert err.startswith(message.format(**fill)), err
    assert not (tmp_path / "m.onnx").exists()


def test_missing_export_extra_names_the_install_command(ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now raises ImportError
    err = run_export([ckpt, "--onnx", tmp_path / "m.onnx"], capsys)
    assert err == ("error: ONNX export and the onnxruntime backend need onnx, onnxruntime, onnxscript (missing: "
                   "onnxscript); install them with pip install 'pspnet-lite[export]'")


def test_a_difference_above_the_tolerance_fails_and_writes_nothing(exported, ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export, "write_onnx", lambda model, path, size, meta: shutil.copy(exported[0], path))
    monkeypatch.setattr(export, "max_logit_difference", lambda model, path, size: 0.25)
    err = run_export([ckpt, "--onnx", tmp_path / "m.onnx"], capsys)
    assert err == f"error: onnxruntime and PyTorch disagree by 2.50e-01 in the logits (tolerance 0.001); " \
                  f"{tmp_path / 'm.onnx'} not written"
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary copy


def test_bad_onnx_backend_input_is_one_error_line(exported, ckpt, image_files, tmp_path, capsys):
    no_meta = tmp_path / "plain.onnx"
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(no_meta))
    model = str(exported[0])
    cases = [
        (["--backend", "onnxruntime"], "error: --backend onnxruntime needs --onnx FILE"),
        (["--onnx", model, "--checkpoint", str(ckpt)], "error: --backend onnxruntime reads the model from --onnx"),
        (["--onnx", model, "--backend", "torch"], "error: --onnx is run by --backend onnxruntime"),
        ([], "error: give --checkpoint FILE (or --backend onnxruntime --onnx FILE)"),
        (["--onnx", str(tmp_path / "no.onnx")], f"error: ONNX file '{tmp_path / 'no.onnx'}' does not exist"),
        (["--onnx", str(ckpt)], f"error: cannot read ONNX model '{ckpt}' with onnxruntime"),
        (["--onnx", str(no_meta)], f"error: '{no_meta}' is an ONNX model without pspnet_lite metadata"),
        (["--onnx", model, "--crop-size", "41"], f"error: --crop-size 41: {model} runs only its exported 33 x 33"),
        (["--onnx", model, "--mode", "whole"], "error: ONNX model"),  # the 40 x 60 image is fed at 41 x 65
    ]
    for flags, message in cases:
        with pytest.raises(SystemExit) as exc:
            predict_main(*image_files, "--out", str(tmp_path / "o"), *flags)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.startswith(message) and len(err.strip().splitlines()) == 1, (flags, err)


def test_export_from_the_shell_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pspnet_lite.export", str(tmp_path / "none.pt"), "--onnx",
                           str(tmp_path / "m.onnx")], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"error: file '{tmp_path / 'none.pt'}' does not exist; check the path\n"


def test_a_caffe_style_record_travels_into_the_onnx_model_and_predict_applies_it(model, image_files, tmp_path,
                                                                                 capsys):
    """A converted Caffe checkpoint's BGR / mean-only preprocessing and recorded protocol (flip) reach onnxruntime
    predictions without a flag, and give what the torch backend gives from the checkpoint itself."""
    bgr = {"channel_order": "bgr", "mean": [103.939, 116.779, 123.68], "std": [1.0, 1.0, 1.0]}
    path = tmp_path / "caffe.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "model_config": model.config.to_dict(),
                "config": {"dataset": "context_scenes", "crop_size": TRAIN_CROP}, "class_names": list(CLASSES),
                "preprocessing": bgr, "protocol": {"mode": "slide", "crop_size": TRAIN_CROP, "flip": True}}, path)
    with contextlib.redirect_stderr(io.StringIO()):
        export.main([str(path), "--onnx", str(tmp_path / "caffe.onnx")])
    onnx_model = OnnxModel(tmp_path / "caffe.onnx")
    assert onnx_model.state["preprocessing"] == bgr and onnx_model.state["protocol"]["flip"] is True
    predict_main(*image_files, "--onnx", str(tmp_path / "caffe.onnx"), "--out", str(tmp_path / "o"))
    predict_main(*image_files, "--checkpoint", str(path), "--out", str(tmp_path / "t"), "--device", "cpu")
    for i in range(2):
        got, ref = (cv2.imread(str(tmp_path / d / f"img{i}_labels.png"), cv2.IMREAD_UNCHANGED) for d in "ot")
        assert (got == ref).mean() > 0.999
    x = torch.from_numpy(cv2.imread(image_files[0])[:, :, ::-1].copy())  # RGB, as the readers return it
    prepared = Preprocessing.from_dict(bgr)(x.numpy())
    assert torch.allclose(prepared[0], x[:, :, 2].float() - 103.939)  # channel 0 is blue, minus its mean, no std

"""``pspnet_lite.book.release``: the released Caffe models' files, commands, scoring cost and scoring (chapter 07)."""
from __future__ import annotations

import math

import pytest

pytest.importorskip("google.protobuf")

import caffe_fixtures as cf  # noqa: E402
from fake_datasets import make_ade20k  # noqa: E402

from pspnet_lite.book import paper  # noqa: E402
from pspnet_lite.book import release as R  # noqa: E402
from pspnet_lite.book.complexity import count_flops, on_meta  # noqa: E402
from pspnet_lite.book.plan import ASSUMED_FRACTION, DENSE_PEAK_TFLOPS, assumed_throughput, gpu_hours  # noqa: E402
from pspnet_lite.convert import main as convert_main  # noqa: E402
from pspnet_lite.convert.caffe import plan  # noqa: E402
from pspnet_lite.inference import PAPER_SCALES  # noqa: E402
from pspnet_lite.model import PSPNet  # noqa: E402
from pspnet_lite.train import TrainConfig  # noqa: E402

PROTOTXT_OF = {m.name: m.prototxt.removesuffix(".prototxt") for m in R.RELEASED.values()}


@pytest.mark.parametrize("name", list(R.RELEASED))
def test_each_released_model_is_what_the_converter_reads_off_its_prototxt(name):
    model = R.RELEASED[name]
    p = plan(cf.release_net(PROTOTXT_OF[name]))  # the official prototxt (tests/caffe_fixtures.py)
    assert p.config == model.config and p.input_size == (model.crop, model.crop)
    assert model.reported is paper.RELEASE_CAFFE[name]
    assert model.download.startswith("https://drive.google.com/open?id=0BzaU285cX7TC")
    assert f"evaluation/prototxt/{model.prototxt}" in model.convert_command()
    assert f"evaluation/model/{name}.caffemodel --out {model.checkpoint}" in model.convert_command()
    ss, ms = model.evaluate_command("/data/x"), model.evaluate_command("/data/x", multi_scale=True)
    assert "--protocols" not in ss and "--mode" not in ss and "--crop-size" not in ss  # recorded in the checkpoint
    assert "--protocols ms+flip" in ms


def test_the_release_numbers_are_the_readme_s_and_name_their_split():
    assert paper.RELEASE_CAFFE["pspnet50_ADE20K"]["ss"] == paper.TABLE4_ADE20K["ResNet50+DA+AL+PSP"]
    assert paper.RELEASE_CAFFE["pspnet50_ADE20K"]["ms"] == paper.TABLE3_DEPTH_MS[50]
    assert paper.RELEASE_CAFFE["pspnet101_VOC2012"]["split"] == "test"
    assert round(paper.RELEASE_CAFFE["pspnet101_VOC2012"]["ms"][0], 1) == paper.TABLE6_VOC_MIOU[
        "PSPNet (COCO pre-trained)"]
    assert paper.RELEASE_CAFFE["pspnet101_cityscapes"]["ss"] == (79.70, 96.38)


def test_release_protocols_are_evaluate_s_from_the_recorded_protocol():
    ps = R.release_protocols(R.RELEASED["pspnet50_ADE20K"])
    assert ps["ss+flip"].name == "ss+flip | slide 473 stride 316 | long side 513"
    assert ps["ms+flip"].scales == PAPER_SCALES and ps["ms+flip"].align
    cs = R.release_protocols(R.RELEASED["pspnet101_cityscapes"], ["ss+flip"])
    assert list(cs) == ["ss+flip"] and cs["ss+flip"].name == "ss+flip | slide 713 stride 476 | long side 2049"


def test_scoring_cost_is_passes_times_crop_flops_over_the_assumed_throughput():
    rows = {(r["model"], r["protocol"]): r for r in R.cost_table()}
    assert len(rows) == 6
    ade = rows["pspnet50_ADE20K", "ss+flip"]
    # 683 -> 513 wide: ceil((513 - 473) / 316) + 1 = 2 windows; 385 high padded to 473: 1; with flip 4
    assert ade["passes_per_image"] == 4 and ade["passes"] == 4 * 2000
    city = rows["pspnet101_cityscapes", "ss+flip"]
    n_w, n_h = math.ceil((2049 - 713) / 476) + 1, math.ceil((1024 - 713) / 476) + 1
    assert city["passes_per_image"] == 2 * n_w * n_h == 16
    per_crop = count_flops(on_meta(PSPNet, R.RELEASED["pspnet101_cityscapes"].config), 713).flops
    assert city["gflops_per_crop"] == pytest.approx(per_crop / 1e9)
    assert city["tflops"] == pytest.approx(16 * 500 * per_crop / 1e12)
    peak = next(tf32 for pattern, _, tf32 in DENSE_PEAK_TFLOPS if pattern == "h100")
    assert city["gpu_minutes"] == pytest.approx(city["tflops"] / (ASSUMED_FRACTION * peak) / 60)
    assert "not a measurement" in city["basis"] and "TF32" in city["basis"]
    for model in R.RELEASED:
        assert rows[model, "ms+flip"]["passes_per_image"] > rows[model, "ss+flip"]["passes_per_image"]
    text = R.format_cost_table(list(rows.values()))
    assert "pspnet101_cityscapes" in text and "GPU min" in text


def test_assumed_throughput_is_the_plan_s_assumption():
    sustained, basis = assumed_throughput("bf16")
    cfg = TrainConfig().replace(backbone="lite", crop_size=64, num_classes=4, amp="bf16")
    assert gpu_hours(cfg, 10)["basis"] == basis and sustained == ASSUMED_FRACTION * 989e12
    assert assumed_throughput("tf32")[0] == ASSUMED_FRACTION * 494e12


def test_parse_paths_and_refusals(tmp_path):
    assert R.parse_paths("", "data_roots") == {} and R.parse_paths(None, "x") == {}
    assert R.parse_paths(" ade20k=/a , cityscapes=/c", "data_roots") == {"ade20k": "/a", "cityscapes": "/c"}
    for bad in ("/a", "ade=/a", "voc="):
        with pytest.raises(ValueError, match="data_roots: .* is not DATASET=PATH"):
            R.parse_paths(bad, "data_roots")
    with pytest.raises(ValueError, match="not a checkpoint converted from the authors' Caffe release"):
        R.released_model_of({"config": {"dataset": "ade20k"}}, "mine.pt")


def test_score_checkpoints_runs_evaluate_on_a_converted_checkpoint(tmp_path):
    """A narrowed pspnet50_ADE20K caffemodel (width 4, one block per stage, 89 px input) converted and scored on a
    fabricated ADE20K val image through evaluate's Python API, with the checkpoint's own protocol."""
    net = cf.release_net("pspnet50_ADE20K_473", width=4, layers=(1, 1, 1, 1), input_size=89)
    (tmp_path / "n.prototxt").write_text(cf.prototxt_text(net))
    (tmp_path / "n.caffemodel").write_bytes(cf.random_caffemodel(net).SerializeToString())
    ckpt = tmp_path / "ade.pt"
    convert_main(["caffe", str(tmp_path / "n.prototxt"), str(tmp_path / "n.caffemodel"), "--out", str(ckpt)])
    make_ade20k(tmp_path / "ade", n_val=2, h=24, w=32)
    rows = R.score_checkpoints([str(ckpt)], {"ade20k": str(tmp_path / "ade")}, ["ss+flip"], out_dir=tmp_path,
                               num_images=1, device="cpu")
    (row,) = rows
    assert row["model"] == "pspnet50_ADE20K" and row["split"] == "val" and row["num_images"] == 1
    assert row["protocol"] == "ss+flip" and 0 <= row["miou"] <= 100 and 0 <= row["pixel_acc"] <= 100
    assert row["release"] == [41.68, 80.04] and row["release_split"] == "ADE20K val"
    assert (tmp_path / "ade_eval.json").exists()
    assert "41.68 / 80.04" in R.format_scores(rows)
    with pytest.raises(ValueError, match="data_roots has no ade20k=PATH"):
        R.score_checkpoints([str(ckpt)], {"voc": "/v"})


def test_a_voc_score_on_val_has_no_release_number_beside_it(tmp_path):
    calls = []

    def fake_run(args):
        calls.append(args)
        return {"split": "val", "num_images": 3, "protocols": {"ss+flip": {"miou": 0.5, "pixel_acc": 0.9}}}

    net = cf.release_net("pspnet101_VOC2012_473", width=4, layers=(1, 1, 1, 1), input_size=89)
    (tmp_path / "v.prototxt").write_text(cf.prototxt_text(net))
    (tmp_path / "v.caffemodel").write_bytes(cf.random_caffemodel(net).SerializeToString())
    convert_main(["caffe", str(tmp_path / "v.prototxt"), str(tmp_path / "v.caffemodel"), "--out",
                  str(tmp_path / "voc.pt")])
    (row,) = R.score_checkpoints([str(tmp_path / "voc.pt")], {"voc": "/data/voc"}, evaluate_main=fake_run)
    assert calls[0].data_root == "/data/voc" and calls[0].protocols == ["ss+flip"]
    assert row["release"] is None and row["release_split"] == "VOC 2012 test" and row["miou"] == 50.0

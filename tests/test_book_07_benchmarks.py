"""Chapter 07 (benchmarks and test protocols, Tables 3-8) runs top to bottom with tiny parameters: training its
model, and loading a checkpoint in the authors' semseg layout (the released-weights path). The assertions read
the record the chapter writes (``out_dir/record.json``)."""
import json

import pytest
import torch
from conftest import notebook_text
from fake_datasets import make_ade20k, make_cityscapes

from pspnet_lite.model import PSPNet
from pspnet_lite.weights import pspnet_lite_to_semseg

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TINY = dict(iters=2, batch_size=2, crop_size=48, image_size=64, num_train_images=8, num_val_images=4,
            eval_batch_size=4, num_show=2)
PROTOCOLS = ("toolbox", "toolbox+flip", "authors-ss", "authors-ms")


def check_record(out) -> dict:
    record = json.loads((out / "record.json").read_text())
    # the authors' protocols per data set, and what they cost on a 512 x 683 ADE20K image
    assert record["paper_protocols"]["ade20k"]["ss"] == "ss+flip | slide 473 stride 316 | long side 512"
    assert record["paper_protocols"]["cityscapes"]["ss"] == "ss+flip | slide 713 stride 476 | long side 2048"
    costs = record["ade20k_costs"]
    assert costs["toolbox whole, no flip"]["forward_passes"] == 1
    assert costs["authors single scale"]["forward_passes"] == 4
    assert costs["authors MS"]["forward_passes"] > 4
    # the ContextScenes versions, and every score with its protocol
    protocols = record["config"]["protocols"]
    assert protocols["authors-ss"] == "ss+flip | slide 48 stride 32 | long side 64"
    assert protocols["authors-ms"] == "ms(0.5-1.75)+flip | slide 48 stride 32 | long side 64"
    m = record["metrics"]
    assert set(m) == {*PROTOCOLS, "miou_gains", "role_iou"}
    for key in PROTOCOLS:
        assert 0 <= m[key]["miou"] <= 100 and len(m[key]["iou"]) == 16 and m[key]["protocol"] == protocols[key]
    assert m["toolbox"]["forward_passes"] == 1
    assert m["authors-ms"]["forward_passes"] > m["authors-ss"]["forward_passes"] > 1
    assert set(m["miou_gains"]) == {"toolbox -> authors-ss", "authors-ss -> authors-ms", "toolbox -> authors-ms"}
    assert {"stuff", "mismatched", "confusion", "inconspicuous", "regional"} <= set(m["role_iou"])
    assert record["paper_ms_gains"]["50"] == pytest.approx(1.10)  # Table 3: 41.68 -> 42.78
    headline = {row[0]: row for row in record["paper_headline"]}
    assert headline["paper: ResNet50+DA+AL+PSP (Table 4)"][2:] == ["41.68 / 80.04",
                                                                   "authors single scale (slide + flip)"]
    assert "82.6" in headline["paper: PSPNet-101 (Table 6)"][2]
    assert record["config"]["num_val_images"] == 4 and record["config"]["crop_size"] == 48
    assert {p.name for p in out.glob("*.png")} == {"per_class_iou.png", "predictions.png", "cityscapes_iiou.png"}
    # the worked example of Cityscapes' scores: by hand equals the package, and the small car pulls iIoU down
    ex = record["cityscapes_example"]
    assert ex["sizes"] == {"large car": 20000, "small car": 600}
    for key, value in ex["by_hand"].items():
        assert value == pytest.approx(ex["package"][key], abs=1e-12)
    assert ex["by_hand"]["car iIoU"] < ex["by_hand"]["car IoU"] < ex["by_hand"]["vehicle IoU"]
    assert ex["by_hand"]["vehicle iIoU"] == pytest.approx(0.5)  # the two cars weigh the same: one hit, one miss
    # section 7: the released models' numbers and the dry run that prices scoring them
    assert record["release_numbers"]["pspnet101_cityscapes"]["ss"] == [79.70, 96.38]
    assert record["release_numbers"]["pspnet101_VOC2012"]["split"] == "test"
    costs = {(r["model"], r["protocol"]): r for r in record["release_costs"]}
    assert len(costs) == 6 and costs["pspnet50_ADE20K", "ss+flip"]["passes_per_image"] == 4
    assert costs["pspnet101_cityscapes", "ss+flip"]["passes"] == 16 * 500
    assert all(0 < r["gpu_minutes"] < 60 and "not a measurement" in r["basis"] for r in costs.values())
    return record


def test_07_benchmarks_trains_and_evaluates(run_notebook, tmp_path):
    out = tmp_path / "o7"
    run_notebook("07_benchmarks", out_dir=str(out), **TINY)
    record = check_record(out)
    assert record["trained_iterations"] == 2 and record["source"].endswith("(trainer checkpoint)")
    assert record["release_scores"] == []  # section 7 scores nothing by default
    assert record["load_report"].startswith("trainer checkpoint: iteration 2, model lite")
    assert record["config"]["preset"] == "scenes-benchmarks" and record["config"]["iters"] == 2
    assert record["config"]["checkpoint"] is None
    assert len(list((out / "runs").glob("*/result.json"))) == 1


def converted_caffe_checkpoint(tmp_path):
    """A narrowed pspnet50_ADE20K caffemodel (width 4, one block per stage, 89 px input, random blobs) converted with
    ``python -m pspnet_lite.convert caffe``."""
    cf = pytest.importorskip("caffe_fixtures")
    from pspnet_lite.convert import main as convert_main

    net = cf.release_net("pspnet50_ADE20K_473", width=4, layers=(1, 1, 1, 1), input_size=89)
    (tmp_path / "ade.prototxt").write_text(cf.prototxt_text(net))
    (tmp_path / "ade.caffemodel").write_bytes(cf.random_caffemodel(net).SerializeToString())
    convert_main(["caffe", str(tmp_path / "ade.prototxt"), str(tmp_path / "ade.caffemodel"), "--out",
                  str(tmp_path / "ade_caffe.pt")])
    return tmp_path / "ade_caffe.pt"


def test_07_benchmarks_loads_a_checkpoint(run_notebook, tmp_path):
    """A lite model saved in the authors' semseg layout goes through checkpoint.load_model (the released-weights
    path): an architecture given by the chapter's parameters, every key and shape checked. Section 7 scores a
    converted Caffe checkpoint on a fabricated ADE20K tree (the real-run path)."""
    torch.manual_seed(0)
    model = PSPNet(num_classes=16, backbone="lite")
    path = tmp_path / "authors_layout.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in pspnet_lite_to_semseg(model.state_dict()).items()}},
               path)
    caffe = converted_caffe_checkpoint(tmp_path)
    make_ade20k(tmp_path / "ade", n_val=2, h=24, w=32)
    out = tmp_path / "o7c"
    nb = run_notebook("07_benchmarks", out_dir=str(out), checkpoint=str(path), backbone="lite",
                      caffe_checkpoints=str(caffe), data_roots=f"ade20k={tmp_path / 'ade'}", release_num_images=1,
                      **TINY)
    record = check_record(out)
    assert "(semseg layout)" in record["load_report"] and record["source"].endswith("(lite, load_weights)")
    assert record["trained_iterations"] is None and not (out / "runs").exists()
    assert record["config"]["checkpoint"] == str(path)
    (scored,) = record["release_scores"]
    assert scored["model"] == "pspnet50_ADE20K" and scored["protocol"] == "ss+flip" and scored["num_images"] == 1
    assert 0 <= scored["miou"] <= 100 and scored["release"] == [41.68, 80.04]
    assert (out / "ade_caffe_eval.json").exists()
    text = notebook_text(nb)
    assert f"--data-root {tmp_path / 'ade'}" in text and "41.68 / 80.04" in text  # the commands use the given root


def test_07_benchmarks_prints_the_four_cityscapes_scores(run_notebook, tmp_path):
    """A Cityscapes run (a fabricated tree with instances) scores and prints Table 7's four numbers."""
    make_cityscapes(tmp_path / "cityscapes", n_val=2)
    out = tmp_path / "o7city"
    nb = run_notebook("07_benchmarks", out_dir=str(out), dataset="cityscapes", data_root=str(tmp_path / "cityscapes"),
                      protocols="toolbox", pretrained="scratch",
                      **{**TINY, "num_val_images": 2, "eval_batch_size": 1, "num_show": 1})
    record = json.loads((out / "record.json").read_text())
    scores = record["metrics"]["toolbox"]
    assert {"iou_class", "iiou_class", "iou_category", "iiou_category"} <= set(scores)
    assert all(0 <= scores[k] <= 100 for k in ("iou_class", "iiou_class", "iou_category", "iiou_category"))
    assert scores["iou_class"] == pytest.approx(scores["miou"])
    assert "IoU class" in notebook_text(nb) and "iIoU cat." in notebook_text(nb)

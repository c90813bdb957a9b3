"""Chapter 04 (deep supervision, §4 and Table 2) runs top to bottom with tiny parameters; the assertions read
the record it writes (``out_dir/record_<preset>_<dataset>.json``) and its run cache."""
import json

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_04_deep_supervision(run_notebook, tmp_path):
    out = tmp_path / "o4"
    run_notebook("04_deep_supervision", alphas="0,0.4", seeds="0,1", iters=2, batch_size=2, crop_size=64,
                 num_train_images=8, num_val_images=4, out_dir=str(out))
    record = json.loads((out / "record_scenes-supervision_context_scenes.json").read_text())
    # where the head sits and what it costs: ResNet-101's stage 3 is res4a + res4b1..res4b22
    aux = record["aux_head"]
    assert aux["resnet101_stage3_blocks"] == 23 and aux["params"] == 2_398_358
    assert aux["train_gmacs_473"] > aux["test_gmacs_473"] > 0
    # the package's loss is main + 0.4 aux, as the hand-written one
    loss = record["loss_check"]
    assert loss["total"] == pytest.approx(loss["hand_written"]) == pytest.approx(loss["main"] + 0.4 * loss["aux"])
    # the aux loss reaches stages 1-3 and its head only; the main loss everything but the aux head
    main, aux_g = record["grad_norms"]["main"], record["grad_norms"]["aux"]
    assert aux_g["backbone.layer4"] == aux_g["ppm"] == aux_g["cls"] == 0.0
    assert min(aux_g[f"backbone.layer{i}"] for i in (1, 2, 3)) > 0 and aux_g["aux"] > 0
    assert main["aux"] == 0.0 and min(v for k, v in main.items() if k != "aux") > 0
    # the sweep: one run per alpha, trained (not cached), logged, scored
    assert record["grid"] == {"runs": 4, "trained": 4, "cached": 0}
    assert record["first_log_record"]["kind"] == "train" and record["first_log_record"]["iter"] >= 1
    assert set(record["metrics"]) == {"0.0", "0.4", "best_alpha"}
    assert record["metrics"]["best_alpha"] in (0.0, 0.4)
    assert 0 <= record["metrics"]["0.4"]["miou_mean"] <= 100 and record["metrics"]["0.4"]["seeds"] == 2
    # the declared claim A1 (alpha 0.4 > no AL), decided from the stored per-seed values
    (claim,) = record["claims"]
    assert claim["name"] == "A1" and claim["df"] == 1 and claim["verdict"] in ("shown", "reversed", "not resolved")
    a, b = (record["per_seed"][r] for r in ("alpha 0.4", "alpha 0"))
    assert claim["differences"] == pytest.approx([a[s]["miou"] - b[s]["miou"] for s in ("0", "1")])
    # the deep network's stages: the aux loss reaches stages 1-3, not stage 4
    grads = record["stage_grad_norms"]["initial"]
    assert grads["aux"][3] == 0.0 and min(grads["aux"][:3]) > 0 and min(grads["main"]) > 0
    assert record["paper_table2"]["no AL"] == [35.82, 77.07] and record["paper_table2"]["0.4"] == [37.23, 78.01]
    cfg = record["config"]
    assert cfg["preset"] == "scenes-supervision" and cfg["bins"] == [] and cfg["alphas"] == [0.0, 0.4]
    assert (cfg["iters"], cfg["batch_size"], cfg["crop_size"], cfg["val_every"]) == (2, 2, 64, 0)
    assert (cfg["backbone"], cfg["width"], cfg["fresh_data"]) == ("resnet50", 8, True)
    assert {p.name for p in out.glob("*.png")} == {"training_curves.png", "alpha_sweep.png"}
    assert len(list((out / "runs").glob("*/result.json"))) == 4

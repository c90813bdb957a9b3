"""Chapter 04b (the training recipe, §5.1 and Table 4's DA row) runs top to bottom with tiny parameters; the
assertions read the record it writes (``out_dir/record_<preset>_<dataset>.json``), its figures and run cache."""
import json

import pytest
from conftest import notebook_text

from pspnet_lite.train.trainer import poly_lr

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TINY = dict(iters=2, finetune_iters=2, batch_size=4, crop_size=48, crops="64", bn_batches="2,4", frozen_at="2",
            seeds="0", image_size=64, num_train_images=8, num_val_images=2, jobs=1)


def test_04b_training_recipe(run_notebook, tmp_path):
    out = tmp_path / "o4b"
    nb = run_notebook("04b_training_recipe", out_dir=str(out), **TINY)
    record = json.loads((out / "record_scenes-recipe_context_scenes.json").read_text())
    # the package's scheduler gives exactly the poly formula in both groups (head at 10x)
    poly = record["poly_check"]
    assert poly["lr_backbone"] == [poly_lr(0.01, it, 20) for it in range(21)]
    assert poly["lr_head"] == [poly_lr(0.1, it, 20) for it in range(21)]
    assert poly["lr_backbone"][0] == 0.01 and poly["lr_head"][-1] == 0.0
    assert set(record["group_sizes"]) == {"backbone", "head"} and min(record["group_sizes"].values()) > 0
    # the training step written in the open is bit-equal to the trainer, every tensor
    bit = record["bit_equal"]
    assert bit["steps"] == 4 and bit["tensors"] > 0 and bit["equal"] == bit["tensors"]
    assert "tensors bit-equal after 4 steps" in notebook_text(nb)
    # micro-batches change the gradient only through BN: frozen BN gives the same gradient up to rounding
    assert record["micro_batch_check"]["all"] < 1e-4 < record["micro_batch_check"]["none"]
    # the gallery pads with the ignore label where the image is shrunk, and nowhere without geometry
    pad = record["padding_fraction"]
    assert pad["none"] == pad["mirror"] == pad["blur 5×5"] == 0.0 and pad["scale 0.5"] == pytest.approx(0.75, abs=0.02)
    assert 0 < pad["rotate +10°"] < 0.2
    # one run per row: from scratch (crops, DA on/off), then fine-tuning from the first crop run's checkpoint
    metrics = record["metrics"]
    assert set(metrics) == {"crop 48", "crop 64", "FCN DA on", "FCN DA off", "BN 2", "BN 4", "BN 2 frozen",
                            "start_checkpoint_miou"}
    runs = [m for k, m in metrics.items() if k.startswith(("c", "F", "B"))]
    assert all(0 <= m["miou"] <= 100 and len(m["values"]) == 1 for m in runs)
    assert metrics["start_checkpoint_miou"] == pytest.approx(metrics["crop 48"]["miou"], abs=1e-3)
    assert record["grid"]["runs"] == 7 and record["grid"]["trained"] == 7
    assert record["config"]["start_from"].endswith("last.pt") and record["config"]["finetune_iters"] == 2
    da = record["table4_da"]
    assert da["baseline (no DA)"]["paper"] == [34.28, 76.35] and da["+ DA"]["paper"] == [35.82, 77.07]
    assert {p.name for p in out.glob("*.png")} == {"poly_lr.png", "augmentation.png", "bn_crop_da.png"}
    assert len(list((out / "runs").glob("*/result.json"))) == 7


def test_04b_dry_run_plans_every_run_and_trains_nothing(run_notebook, tmp_path):
    out = tmp_path / "dry"
    nb = run_notebook("04b_training_recipe", out_dir=str(out), dry_run=True, amp="bf16", nproc_per_node=2,
                      device="cpu", **{**TINY, "jobs": 2})
    plan = json.loads((out / "plan.json").read_text())
    # 2 crops + DA on/off from scratch; BN 2 and 4 are micro-batches of 1 and 2 on 2 processes, + BN 2 frozen
    assert plan["runs"] == 7 and plan["nproc_per_node"] == 2
    assert {r["row"] for r in plan["rows"]} == {"crop 48", "crop 64", "FCN DA on", "FCN DA off", "BN 2", "BN 4",
                                               "BN 2 frozen"}
    assert "dry run: cell skipped" in notebook_text(nb)
    assert not list(out.rglob("*.pt")) and not list(out.rglob("result.json"))

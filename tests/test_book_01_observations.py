"""Chapter 01 (what a dilated FCN gets wrong, §3.1; receptive fields, §3.2) runs top to bottom with tiny
parameters; the assertions read the record it writes (``out_dir/record.json``)."""
import json

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROLES = {"stuff", "mismatched", "confusion", "inconspicuous", "regional"}


def test_01_observations(run_notebook, tmp_path):
    out = tmp_path / "o"
    run_notebook("01_observations", iters=2, batch_size=2, crop_size=64, num_train_images=8, num_val_images=8,
                 rf_images=2, out_dir=str(out))
    record = json.loads((out / "record.json").read_text())
    cfg, m = record["config"], record["metrics"]
    # the chapter's preset, with the tiny parameters; always the dilated FCN (no pyramid)
    assert cfg["preset"] == "scenes-observe" and cfg["bins"] == [] and cfg["backbone"] == "lite"
    assert (cfg["iters"], cfg["batch_size"], cfg["crop_size"], cfg["image_size"]) == (2, 2, 64, 64)
    assert (cfg["num_train_images"], cfg["num_val_images"], cfg["val_every"], cfg["seeds"]) == (8, 8, 0, [0])
    assert [(r["seed"], r["cached"]) for r in record["runs"]] == [(0, False)]
    assert len(m["miou"]) == len(m["pixel_acc"]) == 1 and 0 <= m["miou"][0] <= 100
    assert m["val_images"] == 8 and 0 <= m["val_miou"] <= 1 and 0 <= m["val_pixel_acc"] <= 1
    # the walk over the lite backbone and the gradient check agree; + the 3x3 classifier at stride 8
    assert (m["rf_backbone_px"], m["rf_stride"], m["rf_gradient_support_px"], m["rf_theory_px"]) == (127, 8, 127, 143)
    assert 0 < m["rf_empirical_r50_px"] <= m["rf_empirical_r90_px"]
    assert set(m["role_iou"]) == ROLES and all(0 <= v["mean"] <= 100 for v in m["role_iou"].values())
    assert set(m["mixed_objects"]) == {"mismatched", "confusion", "regional"}
    assert all(0 <= v["share"] <= 1 for v in m["mixed_objects"].values())
    # the context-cue medians the chapter's prose cites (present whenever a vehicle was measured)
    if m["context_vehicles"]:
        assert 0 <= m["context_distance_min_px"] <= m["context_distance_median_px"]
        assert m["context_r90_median_px"] > 0 and 0 <= m["context_correct_share"] <= 1
        assert 0 <= m["context_on_band_median"] <= 1
    assert {"fig2_failures.png", "class_iou.png", "receptive_field.png"} <= {p.name for p in out.glob("*.png")}

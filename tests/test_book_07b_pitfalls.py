"""Chapter 07b (the pitfalls) runs top to bottom with tiny parameters; the assertions read the record it writes
(``out_dir/record_07b_pitfalls.json``): every trap is measured, and every guard gives the right answer."""
import json

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TINY = dict(iters=2, batch_size=4, crop_size=57, image_size=64, num_train_images=8, num_val_images=4,
            fake_images=3, large_side=65, eval_batch_size=4)


def test_07b_pitfalls(run_notebook, tmp_path):
    out = tmp_path / "o7b"
    run_notebook("07b_pitfalls", out_dir=str(out), **TINY)
    record = json.loads((out / "record_07b_pitfalls.json").read_text())
    m = record["metrics"]
    # the label traps: the fixed prediction scores lower under each mistake than with the package's reader
    ade, cs, voc = m["ade20k_shift"], m["cityscapes_ids"], m["voc_palette"]
    assert ade["never_shifted_151"] < ade["right"] and ade["shifted_twice"] < ade["right"]
    assert cs["label_ids_above_18_ignored"] < cs["right"] and cs["fallback_pixels_differ"] == 0
    assert voc["border_as_background"] < voc["right"] and voc["grey_decoded_wrong_pixels_pct"] > 0
    # the model traps: the folded Caffe-style weights reproduce the model on their own input
    caffe = m["caffe_preprocessing"]
    assert caffe["fold_max_logit_diff"] < 1e-3
    assert caffe["caffe_style"]["BGR, mean only (what it expects)"] == pytest.approx(caffe["right"], abs=0.5)
    # an 8k+1 side is left alone, the side below it is off by 7 pixels and changes the logits
    sides = m["alignment"]["at_side"]
    assert sides["65"]["offset_px"] == 0 and sides["65"]["max_logit_diff"] == 0
    assert sides["64"]["offset_px"] == -7 and sides["64"]["max_logit_diff"] > 0
    bn, sync = m["batchnorm"], m["syncbn"]
    assert "Expected more than 1 value per channel" in bn["plain_bn_batch1_error"]
    assert bn["safe_bn_vs_eval_max_diff"] == 0
    assert sync["package_sync_max_diff"] < 1e-4 and sync["torch_sync_no_group_max_diff"] < 1e-4
    assert len(m["protocol"]["scores"]) == 4 and all(0 <= v <= 100 for v in m["protocol"]["scores"].values())
    assert len(record["summary"]) == 14 and all(row["measured cost"] for row in record["summary"])
    assert record["config"]["crop_size"] == 57 and record["config"]["iters"] == 2

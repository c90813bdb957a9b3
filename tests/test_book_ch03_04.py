"""Chapters 03 (architecture) and 04 (deep supervision) run top to bottom with tiny parameters and show what
they say they show."""
import json

from conftest import notebook_text


def test_03_architecture(run_notebook, tmp_path):
    out = tmp_path / "o3"
    nb = run_notebook("03_architecture", backbone="lite", depths="resnet50", crop_size=97, time_size=33,
                      time_iters=1, out_dir=str(out))
    text = notebook_text(nb)
    # feature-map sizes at 97: stem 49, max-pool 25, stages 2-4 at 13 (output stride 8)
    assert "backbone.conv1" in text and "49 x 49" in text and "25 x 25" in text and "13 x 13" in text
    assert "full       stage 3 dilations [2]" in text and "contracted stage 3 dilations [1]" in text
    # the authors' released parameter counts and the reference GMACs, reproduced exactly
    assert "49,180,908 / 49,180,908" in text and "46,782,550 / 46,782,550" in text
    assert "68,173,036 / 68,173,036" in text and "161.9 / 161.9" in text and "230.1 / 230.1" in text
    assert "cls 3x3 conv" in text and "PPM parameters:" in text and "PSPNet / FCN: time" in text
    record = json.loads((out / "record.json").read_text())
    assert record["metrics"]["cost"]["resnet50/PSPNet"]["params"] == 46_782_550
    assert record["metrics"]["cost"]["resnet50/FCN"]["params"] < 46_782_550
    assert abs(sum(record["metrics"]["compute_share"].values()) - 1) < 1e-9
    assert {p.name for p in out.glob("*.png")} == {"feature_map_sizes.png", "fcn_vs_pspnet_cost.png",
                                                    "compute_by_module.png"}


def test_04_deep_supervision(run_notebook, tmp_path):
    out = tmp_path / "o4"
    nb = run_notebook("04_deep_supervision", alphas="0,0.4", seeds="0", iters=2, batch_size=2, crop_size=64,
                      num_train_images=8, num_val_images=2, out_dir=str(out))
    text = notebook_text(nb)
    assert "res4b1..res4b22: 23 blocks" in text
    assert "aux head: 2,398,358 parameters" in text
    assert "def forward(self, outputs, target" in text  # the package's loss, shown with inspect.getsource
    assert "(hand-written:" in text and "|grad| aux loss" in text
    assert "2 trained, 0 from the cache" in text
    assert '"kind": "train"' in text  # one JSONL record of the trainer's log
    assert "no AL |      35.82     77.07" in text and "0.4 |      37.23     78.01" in text
    record = json.loads((out / "record.json").read_text())
    assert set(record["metrics"]) == {"0.0", "0.4", "best_alpha"}
    assert 0 <= record["metrics"]["0.4"]["miou_mean"] <= 100 and record["metrics"]["0.4"]["seeds"] == 1
    assert record["config"]["bins"] == [] and record["config"]["alphas"] == [0.0, 0.4]
    assert {p.name for p in out.glob("*.png")} == {"training_curves.png", "alpha_sweep.png"}
    assert len(list((out / "runs").glob("*/result.json"))) == 2

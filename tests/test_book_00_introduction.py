"""Chapter 00 (scene parsing, its data sets and scores) runs with tiny parameters; asserts on its JSON record."""
import json

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def images_shown(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def test_00_introduction(run_notebook, tmp_path):
    out = tmp_path / "o"
    nb = run_notebook("00_introduction", num_images=2, image_size=64, out_dir=str(out))
    record = json.loads((out / "record.json").read_text())
    assert record["name"] == "00_introduction"
    assert record["config"] == {"num_images": 2, "image_size": 64, "seed": 0}
    m = record["metrics"]
    # the paper's three data sets (§5): classes and split sizes
    sizes = {name: (d["classes"], d["train"], d["val"]) for name, d in m["datasets"].items()}
    assert sizes == {"ade20k": (150, 20210, 2000), "voc": (21, 10582, 1449), "cityscapes": (19, 2975, 500)}
    roles = m["context_scenes_roles"]
    assert roles["mismatched"] == {"8": "boat", "9": "car"} and roles["confusion"] == {"10": "building",
                                                                                       "11": "skyscraper"}
    assert set(roles) == {"stuff", "mismatched", "confusion", "inconspicuous", "regional"}
    # the hand computation and the package's ConfusionMatrix give the same numbers
    ex = m["example"]
    assert (ex["labelled_pixels"], ex["correct_pixels"]) == (23, 20)
    assert ex["miou_by_hand"] == pytest.approx(0.7435, abs=5e-5) and ex["pixel_acc_by_hand"] == pytest.approx(20 / 23)
    assert ex["iou_by_hand"][3] is None  # car: in neither map, 0/0
    assert ex["package"]["miou"] == pytest.approx(ex["miou_by_hand"], abs=1e-12)
    assert ex["package"]["pixel_acc"] == pytest.approx(ex["pixel_acc_by_hand"], abs=1e-12)
    assert ex["package"]["iou"][:3] == pytest.approx(ex["iou_by_hand"][:3]) and ex["package"]["iou"][3] is None
    assert sum(map(sum, ex["confusion_matrix"])) == 23
    # per-image mIoU averaged differs from the data-set mIoU
    assert m["per_image_miou_mean"] == pytest.approx(0.4442, abs=5e-5)
    assert m["dataset_miou"] == pytest.approx(0.4320, abs=5e-5)
    assert m["paper_psp269_ms"] == {"miou": 44.94, "pixel_acc": 81.69, "score": pytest.approx(63.315)}
    assert m["figures"] == ["context_scenes_samples.png"] and (out / "context_scenes_samples.png").is_file()
    assert images_shown(nb) >= 2

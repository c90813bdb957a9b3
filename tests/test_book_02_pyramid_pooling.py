"""Chapter 02 (the pyramid pooling module) runs with tiny parameters; asserts on its JSON record."""
import json
from pathlib import Path

import pytest
import torch
from conftest import notebook_text

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# section 6's B1236 network, trained for two steps on a few 64-pixel images (its own cache per test)
TINY_B1236 = dict(iters=2, batch_size=2, image_size=64, num_train_images=4, num_val_images=2)


def first_val_image(crop_size: int) -> torch.Tensor:
    """The chapter's default image (ContextScenes validation image 0, as its first cells load it) -> (1, 3, H, W)."""
    from pspnet_lite.data import build_dataset
    from pspnet_lite.data.transforms import EvalTransform

    data = build_dataset("context_scenes", split="val", num_images=40, image_size=crop_size,
                         transform=EvalTransform(base_size=crop_size, resize_mask=True))
    return data[0][0][None]


def checkpoint_feature_norm(checkpoint: Path, crop_size: int) -> float:
    """The mean L2 norm of the stage-4 features the checkpoint's backbone computes for the chapter's image."""
    from pspnet_lite.checkpoint import load_model

    model = load_model(checkpoint, device="cpu").model.eval()
    with torch.no_grad():
        return model.backbone(first_val_image(crop_size))[1][0].norm(dim=0).mean().item()


def random_feature_norm(crop_size: int) -> float:
    """The same for a randomly initialised lite backbone (what sections 1-5 used before they used the B1236)."""
    from pspnet_lite.backbone import DilatedResNet

    torch.manual_seed(0)
    with torch.no_grad():
        return DilatedResNet("lite").eval()(first_val_image(crop_size))[1][0].norm(dim=0).mean().item()


def widget_outputs(nb) -> list[dict]:
    """The display outputs of the executed notebook that hold an explorer (a VBox widget; tqdm's bars are HBoxes)."""
    return [out["data"] for cell in nb.cells for out in cell.get("outputs", [])
            if "application/vnd.jupyter.widget-view+json" in out.get("data", {})
            and out["data"]["text/plain"].startswith("VBox")]


def test_02_pyramid_pooling(run_notebook, tmp_path):
    out = tmp_path / "o"
    nb = run_notebook("02_pyramid_pooling", crop_size=64, num_images=2, out_dir=str(out), runs_dir=str(tmp_path / "r"),
                      **TINY_B1236)
    record = json.loads((out / "record.json").read_text())
    assert record["config"]["bins"] == [1, 2, 3, 6] and record["config"]["crop_size"] == 64
    m = record["metrics"]
    # sections 1-5 dissect the trained B1236 of section 6: its checkpoint's backbone computed the feature map, and
    # its trained pyramid module is the one our ten lines are checked against
    features = m["features"]
    assert features["trained"] and features["trained_module"] and features["hash"] == m["b1236"]["hash"]
    checkpoint = Path(features["checkpoint"])
    assert checkpoint == tmp_path / "r" / m["b1236"]["hash"] / "last.pt" and checkpoint.is_file()
    assert "the trained B1236 checkpoint" in features["source"]
    assert features["mean_norm"] == pytest.approx(checkpoint_feature_norm(checkpoint, crop_size=64), rel=1e-4)
    assert features["mean_norm"] != pytest.approx(random_feature_norm(crop_size=64), rel=1e-2)
    # Fig. 3(b): the lite backbone's 512-channel feature map at 1/8 of the image
    assert m["feature_shape"] == [1, 512, 8, 8] and m["stride"] == 8
    assert m["level_shapes"] == {str(b): [1, 512, b, b] for b in (1, 2, 3, 6)}
    # Fig. 3(c): 512 + 4 x 128 = 1024 channels; our ten lines equal PyramidPooling, avg and max
    assert (m["level_channels"], m["concat_channels"], m["ppm_output_shape"]) == (128, 1024, [1, 1024, 8, 8])
    assert m["max_abs_diff"]["avg"] < 1e-5 and m["max_abs_diff"]["max"] < 1e-5
    # adaptive windows on the 8-cell axis: 3 bins overlap by one cell each, 6 bins by four in total
    assert m["bins_table"]["2"] == {"cells_min": 4, "cells_max": 4, "share": 0.25, "overlap": 0}
    assert m["bins_table"]["3"]["overlap"] == 2 and m["bins_table"]["6"]["cells_max"] == 2
    assert len(m["prior_2x2"]) == 4 and all(0 < share <= 1 for b in m["prior_2x2"] for _, share in b)
    assert 0 < m["patch_change"]["avg"] and 0 < m["patch_change"]["max"] and 1 <= m["max_pool_cells"] <= 64
    assert m["paper_table1"]["B1236+AVE+DR"] == [41.68, 80.04]
    # §3.2's 1/N reduction: at N = 4, 4096 channels (half pyramid) with it, 10240 (80% pyramid) without
    n4 = m["dimension_reduction"][3]
    assert (n4["levels"], n4["channels_dr"], n4["channels_no_dr"]) == (4, 4096, 10240)
    assert n4["pyramid_share_dr"] == 0.5 and n4["pyramid_share_no_dr"] == 0.8
    head = m["head"]
    assert head["reduction"]["ppm_channels"] == 4096 and head["no_reduction"]["ppm_channels"] == 10240
    assert head["no_reduction"]["head_params"] / head["reduction"]["head_params"] == pytest.approx(2.04, abs=0.01)
    assert m["explorer_levels"] == [1, 2, 3, 6]
    assert m["figures"] == ["feature_map.png", "pixel_context.png", "pyramid_avg.png", "pyramid_max.png"]
    text = notebook_text(nb)
    assert "def forward" in text  # the package's code, rendered with inspect.getsource
    # both explorers were displayed, each with a picture of its state for pages without a kernel
    displayed = widget_outputs(nb)
    assert len(displayed) == 2 and all(d["image/png"] for d in displayed)
    # section 6: the B1236 network trained into runs_dir, on the 1/8 grid of 64-pixel images
    assert m["b1236"]["iters"] == 2 and not m["b1236"]["cached"] and 0 <= m["b1236"]["miou"] <= 1
    assert sorted(m["scenes"]) == ["confusion scene", "inconspicuous scene", "mismatched scene", "regional scene"]
    assert m["feature_grid"] == [8, 8] and set(m["pixel_context"]) == {"1", "2", "3", "6"}
    assert m["pixel_context"]["1"]["sources"] == [[0, 0, 1.0]]  # the global bin gives every cell its value
    for level in m["pixel_context"].values():
        assert sum(w for *_, w in level["sources"]) == pytest.approx(1.0) and 1 <= len(level["holding"]) <= 4
    assert set(m["flips"]) == {f"{k}|{a}" for k in ("mismatched", "confusion", "inconspicuous", "regional")
                               for a in ("1", "2,3,6")}
    assert all(0 <= f["changed"] <= 1 for f in m["flips"].values())
    assert m["pixel_explorer"]["active"] == [1]


def test_02_names_the_command_when_told_not_to_train(run_notebook, tmp_path):
    papermill = pytest.importorskip("papermill")
    with pytest.raises(papermill.PapermillExecutionError, match="no finished B1236 run in .*train it with"):
        run_notebook("02_pyramid_pooling", crop_size=64, num_images=1, out_dir=str(tmp_path / "o"),
                     runs_dir=str(tmp_path / "empty"), train=False, **TINY_B1236)


def test_02_other_bins(run_notebook, tmp_path):
    out = tmp_path / "o"
    run_notebook("02_pyramid_pooling", crop_size=64, num_images=1, bins="1,2,4", out_dir=str(out),
                 runs_dir=str(tmp_path / "r"), **TINY_B1236)
    m = json.loads((out / "record.json").read_text())["metrics"]
    assert (m["level_channels"], m["concat_channels"], m["ppm_output_shape"]) == (170, 1022, [1, 1022, 8, 8])
    assert list(m["level_shapes"]) == ["1", "2", "4"] and m["explorer_levels"] == [1, 2, 4]

"""pspnet_lite.book.gallery: the rule that picks the gallery's images, exact role confusions, error maps, figure
layout (Agg backend), clear errors, and predictions of tiny untrained models on ContextScenes."""
import numpy as np
import pytest
import torch
from conftest import tiny_config

from pspnet_lite.book import gallery
from pspnet_lite.book.gallery import (
    ERROR_COLOURS,
    Pick,
    error_map,
    pick_gallery,
    picks_table,
    pixel_accuracy,
    plot_role_confusion,
    predict_models,
    present_roles,
    role_confusion,
    show_gallery,
    stack_dataset,
)
from pspnet_lite.data.context_scenes import CLASSES
from pspnet_lite.model import PSPNet
from pspnet_lite.train import get_preset, run_grid
from pspnet_lite.train.runlog import RunResult

GRASS, BOAT, CAR, BUOY, CONE = (CLASSES.index(c) for c in ("grass", "boat", "car", "buoy", "traffic cone"))
ROLES = {"mismatched": [BOAT, CAR], "regional": [BUOY, CONE]}


def fabricated():
    """Four 8x8 images (64 pixels) on grass with known per-image scores (worked out in the comments)."""
    t = np.full((4, 8, 8), GRASS)
    t[0, :4, :4] = BOAT  # 16 boat pixels
    t[1, :4, :4], t[1, 4:, 4:] = BOAT, BUOY  # 16 boat, 16 buoy
    t[2, 0, :2], t[2, 7, 7] = CAR, 255  # only 2 car pixels (below min_pixels=4); one ignored pixel
    t[3, 4:, 4:] = BUOY  # 16 buoy
    fcn = t.copy()
    fcn[0, 1:4, :4] = CAR  # boat 4/16 right
    fcn[1, :4, :4] = CAR  # boat 0/16, buoy 16/16
    fcn[2, 0, :2] = BOAT  # car 0/2
    fcn[3, 4:, 4:] = CONE  # buoy 0/16
    psp = t.copy()  # image 0: all right, 64/64
    psp[1, 2:4, :4] = CAR  # boat 8/16, image 56/64
    psp[2, 4:7] = BOAT  # 24 grass pixels wrong: image 39/63, the worst
    psp[3, 7, 4:] = GRASS  # buoy 12/16, image 60/64
    psp[2, 7, 7] = 0  # any prediction on the ignored pixel counts for nothing
    return t, {"FCN": fcn, "B1": fcn.copy(), "PSPNet": psp}


def test_the_rule_picks_the_largest_gain_per_role_and_the_worst_images():
    targets, preds = fabricated()
    picks = pick_gallery(preds, targets, roles=ROLES, min_pixels=4, worst=2)
    # mismatched gains: image 0 1 - 4/16 = 0.75, image 1 0.5 - 0 = 0.5 (image 2 has 2 pixels only);
    # regional: image 1 1 - 1 = 0, image 3 0.75 - 0 = 0.75; PSPNet image accuracy: 2 < 1 < 3 < 0
    assert [(p.index, p.reason) for p in picks] == [(0, "mismatched"), (3, "regional"), (2, "worst"), (1, "worst")]
    assert picks[0].scores == {"FCN": 0.25, "B1": 0.25, "PSPNet": 1.0} and picks[0].pixels == 16
    assert picks[1].scores["PSPNet"] == 0.75 and picks[1].pixels == 16
    assert picks[2].scores["PSPNet"] == pytest.approx(39 / 63) and picks[2].pixels == 63
    assert picks[3].scores["PSPNet"] == 56 / 64
    picks_1 = pick_gallery(preds, targets, roles={"mismatched": ROLES["mismatched"]}, min_pixels=1, worst=2)
    assert [p.index for p in picks_1] == [2, 1, 3]  # the 2-pixel image wins, and is not shown again as "worst"
    table = picks_table(picks).splitlines()
    assert len(table) == 5 and table[0].split() == ["image", "reason", "pixels", "FCN", "B1", "PSPNet"]
    assert table[1].split() == ["0", "mismatched", "16", "25.0", "25.0", "100.0"]


def test_ties_go_to_the_lowest_index_and_pixel_accuracy_counts_the_role_only():
    targets, preds = fabricated()
    same = {"FCN": preds["PSPNet"], "PSPNet": preds["PSPNet"]}  # every gain is 0
    assert [p.index for p in pick_gallery(same, targets, roles=ROLES, min_pixels=4, worst=0)] == [0, 1]
    acc, pixels = pixel_accuracy(preds["FCN"], targets, ROLES["mismatched"])
    assert pixels.tolist() == [16, 16, 2, 0] and acc[:3].tolist() == [0.25, 0.0, 0.0] and np.isnan(acc[3])
    assert present_roles(targets, min_pixels=4, roles=ROLES) == list(ROLES)
    assert present_roles(targets, min_pixels=17, roles=ROLES) == []  # no image holds 17 pixels of either role
    assert pick_gallery(preds, targets, roles=[], worst=1)[0].reason == "worst"


def test_role_confusion_equals_a_hand_count():
    targets, preds = fabricated()
    conf = role_confusion(preds, targets, roles=ROLES)
    mis, reg = conf["PSPNet"]["mismatched"], conf["PSPNet"]["regional"]
    assert mis.names == ["boat", "car", "other"] and mis.classes == [BOAT, CAR]
    assert mis.counts.tolist() == [[24, 8, 0], [0, 2, 0]]  # boat: 16 + 8 right, 8 called car; car: 2 right
    assert reg.counts.tolist() == [[28, 0, 4], [0, 0, 0]]  # buoy: 16 + 12 right, 4 called grass; no cone pixels
    assert conf["FCN"]["mismatched"].counts.tolist() == [[4, 28, 0], [2, 0, 0]]
    assert conf["FCN"]["regional"].counts.tolist() == [[16, 16, 0], [0, 0, 0]]
    np.testing.assert_allclose(reg.normalized, [[28 / 32, 0, 4 / 32], [0, 0, 0]])


def test_error_map_marks_exactly_the_wrong_pixels():
    targets, preds = fabricated()
    out = error_map(preds["PSPNet"][2], targets[2])
    wrong = (preds["PSPNet"][2] != targets[2]) & (targets[2] != 255)
    assert np.array_equal(np.all(out == ERROR_COLOURS[1], axis=-1), wrong) and wrong.sum() == 24
    assert np.array_equal(np.all(out == ERROR_COLOURS[0], axis=-1), ~wrong & (targets[2] != 255))
    assert out[7, 7].tolist() == [0, 0, 0]  # ignored: black, even though the prediction differs


def test_the_figures_have_the_expected_panels():
    pytest.importorskip("matplotlib").use("Agg")  # no windows
    import matplotlib.pyplot as plt

    targets, preds = fabricated()
    picks = pick_gallery(preds, targets, roles=ROLES, min_pixels=4, worst=2)
    images = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    fig = show_gallery(picks, images, targets, preds)
    assert len(fig.axes) == 4 * (2 + 2 * 3)  # per pick: image, ground truth, 3 predictions, 3 error maps
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:8] == ["#0 mismatched", "ground truth", "FCN 25%", "B1 25%", "PSPNet 100%", "FCN errors",
                          "B1 errors", "PSPNet errors"]
    assert titles[8] == "#3 regional" and titles[16] == "#2 worst" and titles[16 + 4] == "PSPNet 62%"
    fig = plot_role_confusion(role_confusion(preds, targets, roles=ROLES))
    assert [ax.get_title() for ax in fig.axes] == [f"{m} · {r}" for m in preds for r in ROLES]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["boat", "car", "other"]
    assert [t.get_text() for t in fig.axes[-1].texts] == ["88", "0", "12", "-", "-", "-"]  # no cone pixels: "-"
    plt.close("all")


def test_bad_input_names_the_value_and_the_fix(tmp_path):
    targets, preds = fabricated()
    with pytest.raises(ValueError, match=r"prediction 'B1' has shape \(4, 8, 7\).*predict the same"):
        pick_gallery({**preds, "B1": preds["B1"][..., :7]}, targets, roles=ROLES)
    with pytest.raises(ValueError, match=r"unknown role 'boats'; use one of"):
        pick_gallery(preds, targets, roles=["boats"])
    with pytest.raises(ValueError, match=r"role 'inconspicuous'.*none of the 4 images.*lower min_pixels"):
        pick_gallery(preds, targets, roles={"inconspicuous": [12, 13]})
    with pytest.raises(ValueError, match=r"baseline='fcn' is not one of the predictions"):
        pick_gallery(preds, targets, roles=ROLES, baseline="fcn")
    with pytest.raises(ValueError, match="integer labels"):
        role_confusion({"FCN": preds["FCN"].astype(float)}, targets, roles=ROLES)
    with pytest.raises(ValueError, match="no 'last' checkpoint"):
        gallery.as_model(RunResult(config=tiny_config(tmp_path)))
    with pytest.raises(ValueError, match="no picks"):
        show_gallery([], np.zeros((4, 8, 8, 3), np.uint8), targets, preds)


def test_tiny_untrained_models_predict_contextscenes_images(tmp_path, one_torch_thread):
    images, targets = stack_dataset(gallery.validation_set(tiny_config(tmp_path, num_val_images=3)))
    assert images.shape == (3, 3, 64, 64) and targets.shape == (3, 64, 64) and targets.dtype == np.int64
    torch.manual_seed(0)
    models = {"FCN": PSPNet(num_classes=16, backbone="lite", width=4, bins=(), aux=False),
              "PSPNet": PSPNet(num_classes=16, backbone="lite", width=4, aux=False)}
    preds = predict_models(models, images, batch_size=2, progress=False)
    assert list(preds) == ["FCN", "PSPNet"]
    for p in preds.values():
        assert p.shape == (3, 64, 64) and p.dtype == np.int64 and 0 <= p.min() and p.max() < 16
    assert np.array_equal(predict_models(models, images, batch_size=2, progress=False)["PSPNet"], preds["PSPNet"])
    assert isinstance(pick_gallery(preds, targets, roles={}, worst=1)[0], Pick)  # the worst image only


def test_the_chapter_path_from_run_results_to_picks(tmp_path, one_torch_thread):
    base = get_preset("scenes-tiny", iters=1, batch_size=2, num_train_images=2, num_val_images=4, val_every=-1)
    runs = dict(zip(["FCN", "PSPNet"], run_grid([base.replace(bins=()), base.replace(bins=(1, 2, 3, 6))], tmp_path)))
    images, targets = stack_dataset(gallery.validation_set(runs["PSPNet"]))
    assert images.shape == (4, 3, 64, 64)  # the run's validation images
    preds = predict_models(runs, images, progress=False)  # each run's last.pt
    assert {k: p.shape for k, p in preds.items()} == {"FCN": (4, 64, 64), "PSPNet": (4, 64, 64)}
    picks = pick_gallery(preds, targets, roles={}, worst=2)
    assert [p.reason for p in picks] == ["worst", "worst"] and set(picks[0].scores) == {"FCN", "PSPNet"}

"""pspnet_lite.cityscapes_metrics: the four scores of Table 7 equal the official cityscapesscripts evaluation's
on a fabricated val tree with instances, merge across workers, and reject bad ids without changing state."""

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fake_datasets import make_cityscapes, noisy_label_ids
from PIL import Image

from pspnet_lite.cityscapes_metrics import (
    CATEGORIES,
    INSTANCE_CATEGORIES,
    INSTANCE_CLASSES,
    CityscapesMetrics,
)
from pspnet_lite.data.datasets import CITYSCAPES_CLASSES, CITYSCAPES_LABEL_TO_TRAIN, CITYSCAPES_TRAIN_TO_LABEL
from pspnet_lite.metrics import json_safe


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """(label-id GT file, prediction file, label ids, instance ids, prediction) for 4 fabricated val frames."""
    root = tmp_path_factory.mktemp("cityscapes")
    stems = make_cityscapes(root, n_val=4, h=64, w=128, seed=3)
    rng = np.random.default_rng(7)
    out = []
    for stem in stems:
        city = stem.split("_")[0]
        gt = root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png"
        label = np.array(Image.open(gt))
        inst = np.array(Image.open(str(gt).replace("labelIds", "instanceIds"))).astype(np.int64)
        pred = noisy_label_ids(rng, label)
        pred_file = root / "pred" / f"{stem}_leftImg8bit.png"
        pred_file.parent.mkdir(exist_ok=True)
        Image.fromarray(pred.astype(np.uint8)).save(pred_file)
        out.append((str(gt), str(pred_file), label, inst, pred))
    return out


def official(frames, monkeypatch):
    """cityscapesscripts' own evaluation of the frames (its pure-NumPy path, np.in1d shimmed)."""
    pytest.importorskip("cityscapesscripts")
    if not hasattr(np, "in1d"):
        monkeypatch.setattr(np, "in1d", np.isin, raising=False)  # removed in NumPy 2.4; the script still calls it
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs  # lazy: optional dev dependency
    args = cs.args
    for name, value in (("quiet", True), ("JSONOutput", False), ("evalInstLevelScore", True),
                        ("evalPixelAccuracy", False), ("colorized", False)):
        monkeypatch.setattr(args, name, value)
    return cs.evaluateImgLists([f[1] for f in frames], [f[0] for f in frames], args)


def ours(frames, instances=True) -> dict:
    metric = CityscapesMetrics(instances=instances)
    for _, _, label, inst, pred in frames:
        metric.update(torch.from_numpy(pred)[None], torch.from_numpy(CITYSCAPES_LABEL_TO_TRAIN[label])[None],
                      torch.from_numpy(inst)[None], ids="label")
    return metric.compute()


def close(a, b, tol=1e-4):
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def test_the_four_scores_equal_cityscapesscripts(frames, monkeypatch):
    ref = official(frames, monkeypatch)
    scores = ours(frames)
    c = scores.cityscapes
    for key, ref_key in (("iou_class", "averageScoreClasses"), ("iiou_class", "averageScoreInstClasses"),
                         ("iou_category", "averageScoreCategories"),
                         ("iiou_category", "averageScoreInstCategories")):
        assert close(c[key], ref[ref_key]), (key, c[key], ref[ref_key])
        assert 0 < c[key] < 1  # the fabricated tree exercises every score
    for name, v in zip(CITYSCAPES_CLASSES, scores.iou.tolist()):
        assert close(v, ref["classScores"][name]), name
    for name in INSTANCE_CLASSES:
        assert close(c["iiou_per_class"][name], ref["classInstScores"][name]), name
    for cat in CATEGORIES:
        assert close(c["iou_per_category"][cat], ref["categoryScores"][cat]), cat
    for cat in INSTANCE_CATEGORIES:
        assert close(c["iiou_per_category"][cat], ref["categoryInstScores"][cat]), cat
    assert c["iou_class"] == scores.miou and len(INSTANCE_CLASSES) == 8 and len(CATEGORIES) == 7


def test_train_id_predictions_score_like_their_label_ids(frames):
    a, b = CityscapesMetrics(), CityscapesMetrics()
    for _, _, label, inst, _ in frames:
        target = torch.from_numpy(CITYSCAPES_LABEL_TO_TRAIN[label])[None]
        train = torch.randint(0, 19, target.shape, generator=torch.Generator().manual_seed(0))
        a.update(train, target, torch.from_numpy(inst)[None])
        b.update(torch.from_numpy(CITYSCAPES_TRAIN_TO_LABEL[train.numpy()]), target, torch.from_numpy(inst)[None],
                 ids="label")
    assert json_safe(a.compute().as_dict()) == json_safe(b.compute().as_dict())


def test_merging_two_halves_gives_the_whole(frames):
    whole = ours(frames).as_dict()
    halves = [CityscapesMetrics(), CityscapesMetrics()]
    for i, (_, _, label, inst, pred) in enumerate(frames):
        halves[i % 2].update(torch.from_numpy(pred)[None], torch.from_numpy(CITYSCAPES_LABEL_TO_TRAIN[label])[None],
                             torch.from_numpy(inst)[None], ids="label")
    merged = halves[0].merge(halves[1]).compute().as_dict()
    assert merged["iou"] == whole["iou"] and merged["num_pixels"] == whole["num_pixels"]
    for key in ("iiou_class", "iiou_category"):
        assert abs(merged[key] - whole[key]) < 1e-12


def test_without_instances_iiou_is_nan_and_iou_unchanged(frames):
    a, b = ours(frames), ours(frames, instances=False)
    assert math.isnan(b.cityscapes["iiou_class"]) and math.isnan(b.cityscapes["iiou_category"])
    assert a.cityscapes["iou_category"] == b.cityscapes["iou_category"] and a.miou == b.miou


def test_counts_are_int64_and_exact_beyond_float32():
    metric = CityscapesMetrics(instances=False)
    target = torch.zeros(1, 4096, 4097, dtype=torch.uint8)  # 16,781,312 road pixels: past float32's 2**24
    metric.update(target.clone(), target)
    assert metric.confusion.mat.dtype == torch.int64 and int(metric.confusion.mat[0, 0]) == 4096 * 4097


def test_bad_ids_raise_and_leave_the_statistics_alone(frames):
    _, _, label, inst, pred = frames[0]
    metric = CityscapesMetrics()
    target = torch.from_numpy(CITYSCAPES_LABEL_TO_TRAIN[label])[None]
    bad = torch.from_numpy(pred)[None].clone()
    bad[0, 0, 0] = 40
    with pytest.raises(ValueError, match="label id 40 is outside the label ids 0..33"):
        metric.update(bad, target, torch.from_numpy(inst)[None], ids="label")
    with pytest.raises(ValueError, match="instance ids"):
        metric.update(torch.from_numpy(pred)[None], target, None, ids="label")
    assert int(metric.confusion.mat.sum()) == 0 and int(metric.instance_pixels.sum()) == 0


def _all_reduce_worker(rank: int, world_size: int, init_file: str, frames, expected: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        metric = CityscapesMetrics()
        for _, _, label, inst, pred in frames[rank::world_size]:  # each rank scores its share of the frames
            metric.update(torch.from_numpy(pred)[None], torch.from_numpy(CITYSCAPES_LABEL_TO_TRAIN[label])[None],
                          torch.from_numpy(inst)[None], ids="label")
        got = json_safe(metric.all_reduce().compute().as_dict())
        assert got["iou"] == expected["iou"] and got["num_pixels"] == expected["num_pixels"]
        for key in ("iiou_class", "iou_category", "iiou_category"):
            assert abs(got[key] - expected[key]) < 1e-12, key
    finally:
        dist.destroy_process_group()


def test_all_reduce_over_two_gloo_processes(frames, tmp_path):
    expected = json_safe(ours(frames).as_dict())
    mp.spawn(_all_reduce_worker, args=(2, str(tmp_path / "init"), frames, expected), nprocs=2, join=True)

"""Metrics (paper section 5.2) against hand-computed examples, exact counting, merging and all-reduce."""
import json
import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import pspnet_lite.metrics as metrics
from pspnet_lite.metrics import ConfusionMatrix, SegmentationScores, check_label_range, confusion_counts, json_safe

# A hand-made 2x5 example with 5 classes. Class 3 is absent from ground truth and prediction (it is
# predicted only on ignored pixels), class 4 is predicted once but never in the ground truth.
TARGET = torch.tensor([[[0, 0, 0, 1, 1],
                        [2, 255, 255, 1, 0]]])
PRED = torch.tensor([[[0, 0, 1, 1, 1],
                      [4, 3, 0, 1, 0]]])
# counted pixels (gt, pred): (0,0) x3, (0,1), (1,1) x3, (2,4)  -> 8 labelled pixels, 6 correct
EXPECTED_MAT = torch.tensor([[3, 1, 0, 0, 0],
                             [0, 3, 0, 0, 0],
                             [0, 0, 0, 0, 1],
                             [0, 0, 0, 0, 0],
                             [0, 0, 0, 0, 0]])
NAN = float("nan")


def _hand_matrix() -> ConfusionMatrix:
    cm = ConfusionMatrix(5)
    cm.update(PRED, TARGET)
    return cm


def test_matrix_matches_hand_count():
    cm = _hand_matrix()
    assert cm.mat.dtype == torch.int64
    assert torch.equal(cm.mat, EXPECTED_MAT)


def test_scores_nan_mode_match_hand_computation():
    s = _hand_matrix().compute()
    # IoU: c0 3/(4+3-3), c1 3/(3+4-3), c2 0/1, c3 absent, c4 0/(0+1-0)
    torch.testing.assert_close(s.iou, torch.tensor([0.75, 0.75, 0.0, NAN, 0.0], dtype=torch.float64),
                               equal_nan=True)
    # Acc: c0 3/4, c1 3/3, c2 0/1, c3 and c4 have no ground-truth pixels
    torch.testing.assert_close(s.acc, torch.tensor([0.75, 1.0, 0.0, NAN, NAN], dtype=torch.float64),
                               equal_nan=True)
    assert s.miou == pytest.approx(1.5 / 4)
    assert s.macc == pytest.approx(1.75 / 3)
    assert s.pixel_acc == pytest.approx(6 / 8)
    assert s.num_pixels == 8


def test_scores_zero_mode_counts_absent_classes_like_semseg():
    s = _hand_matrix().compute(absent="zero")
    assert s.iou.tolist() == [0.75, 0.75, 0.0, 0.0, 0.0]
    assert s.acc.tolist() == [0.75, 1.0, 0.0, 0.0, 0.0]
    assert s.miou == pytest.approx(1.5 / 5)
    assert s.macc == pytest.approx(1.75 / 5)
    # the authors' formula: intersection / (union + 1e-10), averaged over all classes
    tp, gt, pr = EXPECTED_MAT.diag().double(), EXPECTED_MAT.sum(1).double(), EXPECTED_MAT.sum(0).double()
    assert s.miou == pytest.approx((tp / (gt + pr - tp + 1e-10)).mean().item())
    assert s.pixel_acc == pytest.approx(0.75)


def test_logits_give_same_matrix_as_labels():
    logits = torch.nn.functional.one_hot(PRED, 5).permute(0, 3, 1, 2).float() * 3.0  # (1, 5, 2, 5)
    cm = ConfusionMatrix(5)
    cm.update(logits, TARGET)
    assert torch.equal(cm.mat, EXPECTED_MAT)


def test_accumulating_batches_and_merging_equal_one_update():
    cm_a, cm_b = ConfusionMatrix(5), ConfusionMatrix(5)
    cm_a.update(PRED[:, :1], TARGET[:, :1])
    cm_b.update(PRED[:, 1:], TARGET[:, 1:])
    assert torch.equal(cm_a.merge(cm_b).mat, EXPECTED_MAT)
    cm = ConfusionMatrix(5)
    for i in range(2):
        cm.update(PRED[:, i], TARGET[:, i])
    assert torch.equal(cm.mat, EXPECTED_MAT)
    cm.reset()
    assert int(cm.mat.sum()) == 0


def test_random_labels_against_numpy_reference():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 7, size=(3, 17, 23))
    target[rng.random(target.shape) < 0.2] = 255
    pred = rng.integers(0, 7, size=target.shape)
    ref = np.zeros((7, 7), dtype=np.int64)
    keep = target != 255
    np.add.at(ref, (target[keep], pred[keep]), 1)
    cm = ConfusionMatrix(7)
    cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    assert np.array_equal(cm.mat.numpy(), ref)
    s = cm.compute()
    inter, union = np.diag(ref), ref.sum(0) + ref.sum(1) - np.diag(ref)
    assert s.miou == pytest.approx(np.mean(inter / union))
    assert s.pixel_acc == pytest.approx(inter.sum() / ref.sum())


def test_counts_beyond_2_pow_24_in_one_bin_stay_exact(monkeypatch):
    # 4097 x 4096 = 2**24 + 4096 pixels of class 0, as zero-copy expanded views, in one update() call.
    # A float32 histogram (torch.histc) stops at 16,777,216 here; int64 bincount does not.
    n_h, n_w = 4097, 4096
    target = torch.zeros((), dtype=torch.uint8).expand(1, n_h, n_w)
    pred = torch.zeros((), dtype=torch.uint8).expand(1, n_h, n_w)
    cm = ConfusionMatrix(2)
    cm.update(pred, target)
    assert n_h * n_w > 2**24
    assert int(cm.mat[0, 0]) == n_h * n_w == 16_781_312
    cm.update(pred, target)
    assert int(cm.mat[0, 0]) == 2 * 16_781_312
    assert cm.compute().pixel_acc == 1.0


def test_chunking_does_not_change_counts(monkeypatch):
    rng = np.random.default_rng(1)
    target = torch.from_numpy(rng.integers(0, 4, size=(2, 9, 11)))
    pred = torch.from_numpy(rng.integers(0, 4, size=(2, 9, 11)))
    whole = confusion_counts(pred, target, 4)
    monkeypatch.setattr(metrics, "_CHUNK", 7)
    assert torch.equal(confusion_counts(pred, target, 4), whole)


def test_check_label_range_names_values_range_and_fix():
    check_label_range(torch.tensor([0, 2, 255]), 3, ignore_index=255)  # valid: returns quietly
    check_label_range(torch.zeros(0, dtype=torch.long), 3)
    with pytest.raises(ValueError) as err:
        check_label_range(torch.arange(-2, 20), 3, ignore_index=5, what="target")
    msg = str(err.value)
    assert msg.startswith("target holds labels [-2, -1, 3, 4, 6, 7, 8, 9, 10, 11] ...")  # first ten, 5 skipped
    assert "outside [0, 3) other than the ignore index 5" in msg and "train ids" in msg and "num_classes" in msg
    with pytest.raises(ValueError, match=r"prediction holds labels \[255\] outside \[0, 3\)\. Map"):
        check_label_range(torch.tensor([255]), 3, what="prediction")


@pytest.mark.parametrize("bad_target, bad_pred, value", [(7, None, "7"), (-1, None, "-1"), (None, 9, "9")])
def test_labels_out_of_range_raise_and_leave_matrix_unchanged(bad_target, bad_pred, value):
    cm = _hand_matrix()
    target, pred = TARGET.clone(), PRED.clone()
    if bad_target is not None:
        target[0, 0, 0] = bad_target
    if bad_pred is not None:
        pred[0, 0, 0] = bad_pred
    with pytest.raises(ValueError, match=rf"\[{value}\]"):
        cm.update(pred, target)
    assert torch.equal(cm.mat, EXPECTED_MAT)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix(5).update(PRED[:, :1], TARGET)
    with pytest.raises(ValueError, match="integer labels"):
        ConfusionMatrix(5).update(PRED, TARGET.float())
    with pytest.raises(ValueError, match="logits"):
        ConfusionMatrix(5).update(torch.zeros(1, 3, 2, 5), TARGET)  # 3 channels for 5 classes
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)
    with pytest.raises(ValueError, match="ignore_index"):
        ConfusionMatrix(5, ignore_index=2)
    with pytest.raises(ValueError, match="absent"):
        _hand_matrix().compute(absent="skip")
    with pytest.raises(ValueError, match="merge"):
        _hand_matrix().merge(ConfusionMatrix(4))


def test_empty_and_perfect():
    assert math.isnan(ConfusionMatrix(3).compute().miou)
    assert math.isnan(ConfusionMatrix(3).compute().pixel_acc)
    cm = ConfusionMatrix(5)
    cm.update(TARGET.clamp(max=4), TARGET.clamp(max=4))  # 255 -> 4 in both: every pixel counted and right
    s = cm.compute()
    assert (s.miou, s.macc, s.pixel_acc) == (1.0, 1.0, 1.0)
    assert s.iou[3].isnan()


def test_dataset_level_miou_differs_from_mean_of_per_image_miou():
    # One big image all right, one small image all wrong: the benchmark pools pixels before dividing.
    big_t, big_p = torch.zeros(1, 10, 10, dtype=torch.long), torch.zeros(1, 10, 10, dtype=torch.long)
    small_t, small_p = torch.zeros(1, 1, 2, dtype=torch.long), torch.ones(1, 1, 2, dtype=torch.long)
    pooled = ConfusionMatrix(2)
    pooled.update(big_p, big_t)
    pooled.update(small_p, small_t)
    per_image = []
    for p, t in ((big_p, big_t), (small_p, small_t)):
        cm = ConfusionMatrix(2)
        cm.update(p, t)
        per_image.append(cm.compute().miou)
    # pooled: class 0 IoU 100/102, class 1 IoU 0/2 = 0 -> mean 0.4902; per image: (1.0 + 0.0) / 2 = 0.5
    assert pooled.compute().miou == pytest.approx((100 / 102 + 0.0) / 2)
    assert sum(per_image) / 2 == pytest.approx(0.5)


def test_as_dict_and_table():
    s = _hand_matrix().compute()
    s.protocol = "ss"
    d = s.as_dict()
    assert d["miou"] == pytest.approx(0.375) and d["protocol"] == "ss" and len(d["iou"]) == 5
    assert math.isnan(d["iou"][3])
    text = s.table(["wall", "floor", "tree", "ceiling", "road"])
    lines = text.splitlines()
    assert lines[0] == "protocol: ss"
    assert any(line.startswith("wall") and "75.00" in line for line in lines)
    assert any(line.startswith("ceiling") and line.split()[1:] == ["-", "-"] for line in lines)
    assert any(line.startswith("mean") and "37.50" in line and "58.33" in line for line in lines)
    assert any(line.startswith("pixel acc") and "75.00" in line for line in lines)
    assert "mIoU 37.50" in str(s)
    with pytest.raises(ValueError, match="class names"):
        s.table(["a", "b"])
    assert isinstance(s, SegmentationScores)


def test_json_safe_turns_non_finite_floats_into_none():
    d = {"iou": [0.5, math.nan, math.inf], "miou": -math.inf, "n": 3, "name": "ss", "t": (1.0, math.nan)}
    assert json_safe(d) == {"iou": [0.5, None, None], "miou": None, "n": 3, "name": "ss", "t": [1.0, None]}
    assert json_safe(math.nan) is None and json_safe(2.0) == 2.0


def test_scores_from_dict_reads_as_dict_and_json_safe_records():
    s = _hand_matrix().compute()
    s.protocol = "ss"
    for record in (s.as_dict(), json.loads(json.dumps(json_safe(s.as_dict())))):
        back = SegmentationScores.from_dict(record)
        assert back.as_dict()["iou"][:3] == s.as_dict()["iou"][:3] and math.isnan(back.iou[3])
        assert (back.miou, back.macc, back.pixel_acc, back.protocol, back.num_pixels) == (
            s.miou, s.macc, s.pixel_acc, "ss", s.num_pixels)
        assert back.table(list("abcde")) == s.table(list("abcde"))
    # a trainer's validation record: no acc, nan already None
    short = SegmentationScores.from_dict({"iou": [0.5, None], "miou": 0.5, "pixel_acc": None})
    assert math.isnan(short.acc[0]) and math.isnan(short.pixel_acc) and short.num_classes == 2


def test_table_with_roles_adds_a_role_column_and_per_role_means():
    s = _hand_matrix().compute()
    names = ["wall", "floor", "tree", "ceiling", "road"]
    roles = {"wall": "context", "floor": "context", "tree": "small", "ceiling": "small", "road": "small"}
    lines = s.table(names, roles=roles).splitlines()
    assert lines[0].split() == ["class", "role", "IoU", "Acc"]
    assert next(line for line in lines if line.startswith("wall")).split()[:2] == ["wall", "context"]
    iou = s.iou.tolist()
    for role, members in (("context", [0, 1]), ("small", [2, 4])):  # ceiling (absent, nan) is left out
        row = next(line for line in lines if line.startswith(f"mean {role}"))
        assert row.split()[-1] == f"{100 * sum(iou[i] for i in members) / len(members):.2f}"
    assert "role" not in s.table(names)


def _all_reduce_worker(rank: int, world_size: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        cm = ConfusionMatrix(5)
        cm.update(PRED[:, rank:rank + 1], TARGET[:, rank:rank + 1])  # each rank sees one row
        cm.all_reduce()
        assert torch.equal(cm.mat, EXPECTED_MAT), cm.mat
    finally:
        dist.destroy_process_group()


def test_all_reduce_over_two_gloo_processes(tmp_path):
    mp.spawn(_all_reduce_worker, args=(2, str(tmp_path / "init")), nprocs=2, join=True)


def test_all_reduce_without_process_group_is_a_no_op():
    cm = _hand_matrix()
    assert cm.all_reduce() is cm
    assert torch.equal(cm.mat, EXPECTED_MAT)

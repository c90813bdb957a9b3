"""Deep-supervision loss (paper §4): hand-computed cross-entropy, ignore index, alpha, label checks."""
import math

import pytest
import torch

from pspnet_lite.losses import DeepSupervisionLoss
from pspnet_lite.metrics import ConfusionMatrix


def hand_ce(logits, target, ignore=255):
    """Mean over labelled pixels of -log softmax(logits)[label], written out with math.exp/log."""
    n, c, h, w = logits.shape
    terms = []
    for i in range(n):
        for y in range(h):
            for x in range(w):
                t = int(target[i, y, x])
                if t == ignore:
                    continue
                z = [float(logits[i, k, y, x]) for k in range(c)]
                terms.append(math.log(sum(math.exp(v) for v in z)) - z[t])
    return sum(terms) / len(terms)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    main = torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64)
    aux = torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64)
    target = torch.tensor([[[0, 1], [2, 255]], [[255, 255], [1, 0]]])
    return main, aux, target


def test_single_pixel_value():
    # logits (0, ln 3) and label 0: CE = log(1 + 3) - 0 = ln 4
    logits = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1)
    total, parts = DeepSupervisionLoss()(logits, torch.zeros(1, 1, 1, dtype=torch.long))
    assert total.item() == pytest.approx(math.log(4.0))
    assert parts["aux"] is None


def test_ignore_index_pixels_do_not_count(batch):
    main, _, target = batch
    total, parts = DeepSupervisionLoss()((main, None), target)
    assert total.item() == pytest.approx(hand_ce(main, target), rel=1e-12)
    changed = main.clone()
    changed[0, :, 1, 1] = 100.0  # an ignored pixel: any logits, same loss
    assert DeepSupervisionLoss()(changed, target)[0].item() == pytest.approx(total.item(), rel=1e-12)


@pytest.mark.parametrize("alpha", [0.4, 0.0, 1.0])
def test_alpha_weighting(batch, alpha):
    main, aux, target = batch
    total, parts = DeepSupervisionLoss(alpha=alpha)((main, aux), target)
    m, a = hand_ce(main, target), hand_ce(aux, target)
    assert parts["main"].item() == pytest.approx(m, rel=1e-12)
    assert parts["aux"].item() == pytest.approx(a, rel=1e-12)
    assert total.item() == pytest.approx(m + alpha * a, rel=1e-12)
    assert not parts["main"].requires_grad


def test_gradients_reach_both_heads(batch):
    main, aux, target = (t.clone() for t in batch)
    main.requires_grad_(True)
    aux.requires_grad_(True)
    DeepSupervisionLoss(alpha=0.4)((main, aux), target)[0].backward()
    assert main.grad.abs().sum() > 0 and aux.grad.abs().sum() > 0
    assert torch.all(main.grad[0, :, 1, 1] == 0)  # ignored pixel


def test_all_ignored_gives_zero_not_nan():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    total, _ = DeepSupervisionLoss()((logits, logits), torch.full((1, 2, 2), 255))
    total.backward()
    assert total.item() == 0.0 and torch.all(logits.grad == 0)


def test_custom_ignore_index():
    logits = torch.randn(1, 3, 1, 2, dtype=torch.float64)
    target = torch.tensor([[[1, -1]]])
    total, _ = DeepSupervisionLoss(ignore_index=-1)(logits, target)
    assert total.item() == pytest.approx(hand_ce(logits, target, ignore=-1), rel=1e-12)


@pytest.mark.parametrize("bad", [3, 150, -1, 254])
def test_labels_outside_classes_raise(bad):
    target = torch.tensor([[[0, bad], [255, 1]]])
    with pytest.raises(ValueError, match=f"\\[{bad}\\]"):
        DeepSupervisionLoss()(torch.randn(1, 3, 2, 2), target)



def test_label_message_is_the_metrics_one():
    target = torch.tensor([[[0, 7], [255, 1]]])
    with pytest.raises(ValueError) as loss_err:
        DeepSupervisionLoss()(torch.randn(1, 3, 2, 2), target)
    with pytest.raises(ValueError) as metric_err:
        ConfusionMatrix(3).update(torch.zeros(1, 2, 2, dtype=torch.long), target)
    assert str(loss_err.value) == str(metric_err.value)
    assert "target holds labels [7] outside [0, 3) other than the ignore index 255" in str(loss_err.value)


def test_label_checks_can_be_switched_off_for_valid_labels():
    total, _ = DeepSupervisionLoss(check_labels=False)(torch.randn(1, 3, 2, 2), torch.tensor([[[0, 1], [2, 255]]]))
    assert torch.isfinite(total)


@pytest.mark.parametrize("target, word", [
    (torch.zeros(1, 2, 2), "integer"), (torch.zeros(1, 3, 3, dtype=torch.long), r"\(1, 3, 3\)"),
    (torch.zeros(2, 2, dtype=torch.long), r"\(2, 2\)"),
])
def test_bad_label_tensors(target, word):
    with pytest.raises(ValueError, match=word):
        DeepSupervisionLoss()(torch.randn(1, 3, 2, 2), target)


def test_bad_outputs_and_alpha():
    with pytest.raises(ValueError, match="aux logits"):
        DeepSupervisionLoss()((torch.randn(1, 3, 2, 2), torch.randn(1, 3, 1, 1)),
                              torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="3 items"):
        DeepSupervisionLoss()((torch.randn(1, 3, 2, 2),) * 3, torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="-0.4"):
        DeepSupervisionLoss(alpha=-0.4)

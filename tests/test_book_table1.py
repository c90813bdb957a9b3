"""pspnet_lite.book.table1: Table 1's rows, chapter 05's declared claims, and the inconspicuous-class analysis."""
import numpy as np
import pytest
import torch

from pspnet_lite import PSPNet
from pspnet_lite.book import paper
from pspnet_lite.book.table1 import CLAIMS, ROLES, paper_difference, pixel_flips, prior_share, role_iou, row_settings
from pspnet_lite.data.context_scenes import CLASSES


def test_row_settings_of_every_paper_row_and_a_bad_name():
    assert row_settings("baseline") == {"bins": (), "pooling": "avg", "reduction": True}
    assert row_settings("B1236+MAX") == {"bins": (1, 2, 3, 6), "pooling": "max", "reduction": False}
    assert all(row_settings(name) for name in paper.TABLE1_ABLATION)
    with pytest.raises(ValueError, match="unknown Table 1 row 'B2\\+AVE'"):
        row_settings("B2+AVE")


def test_the_declared_claims_name_rows_and_metrics_that_exist():
    assert len({c.name for c in CLAIMS}) == len(CLAIMS) >= 5
    for c in CLAIMS:
        row_settings(c.a), row_settings(c.b)
        assert c.metric == "miou" or c.metric in ROLES
        assert c.source
    c5 = next(c for c in CLAIMS if c.name == "C5")
    assert paper_difference(c5) == 1.61 and paper_difference(next(c for c in CLAIMS if c.metric != "miou")) is None


def test_role_iou_skips_absent_classes():
    iou = [0.5] * len(CLASSES)
    iou[CLASSES.index("pillow")] = None
    iou[CLASSES.index("rug")] = 0.25
    iou[CLASSES.index("buoy")] = iou[CLASSES.index("traffic cone")] = None
    roles = role_iou(iou)
    assert roles["inconspicuous"] == 0.25 and np.isnan(roles["regional"]) and roles["stuff"] == 0.5


def test_pixel_flips_by_hand():
    pillow, bed, rug, floor = (CLASSES.index(c) for c in ("pillow", "bed", "rug", "floor"))
    target = np.array([[pillow, pillow, pillow, pillow], [rug, rug, bed, bed]])
    a = np.array([[pillow, pillow, pillow, bed], [rug, floor, bed, bed]])  # 4 of 6 right
    b = np.array([[bed, bed, pillow, pillow], [rug, rug, bed, bed]])  # loses 2 pillow pixels to bed, gains 2
    f = pixel_flips(a, b, target, [pillow, rug])
    assert f["pixels"] == 6 and f["acc_a"] == pytest.approx(4 / 6) and f["acc_b"] == pytest.approx(4 / 6)
    assert f["lost"] == pytest.approx(2 / 6) and f["gained"] == pytest.approx(2 / 6) and f["lost_to"] == {"bed": 1.0}
    with pytest.raises(ValueError, match="no pixel of classes"):
        pixel_flips(a, b, np.full_like(target, bed), [pillow])


def test_prior_share_is_zero_or_one_when_one_half_of_the_head_is_silenced():
    torch.manual_seed(0)
    model = PSPNet(num_classes=16, backbone="lite").eval()
    x, t = torch.randn(2, 3, 64, 64), np.random.default_rng(0).integers(0, 16, (2, 64, 64))
    share = prior_share(model, x, t, [12, 13])
    assert 0 < share["classes"] < 1 and 0 < share["others"] < 1
    split = model.ppm.out_channels - len(model.ppm.bins) * model.ppm.level_channels
    with torch.no_grad():
        model.cls[0].weight[:, split:] = 0
    assert prior_share(model, x, t, [12, 13])["classes"] == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        model.cls[0].weight[:, :split] = 0
        model.cls[0].weight[:, split:] = 1
    assert prior_share(model, x, t, [12, 13])["others"] == pytest.approx(1.0, abs=1e-6)
    fcn = PSPNet(num_classes=16, backbone="lite", bins=())
    assert prior_share(fcn, x, t, [12]) == {"classes": 0.0, "others": 0.0}

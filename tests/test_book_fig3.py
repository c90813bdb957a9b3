"""pspnet_lite.book.fig3: the shapes of one real forward pass, and Fig. 3 drawn from them (one box per tensor)."""
from pathlib import Path

import matplotlib
import pytest
import torch

from pspnet_lite.book.complexity import on_meta
from pspnet_lite.book.fig3 import draw_fig3, fig3, trace_shapes
from pspnet_lite.model import PSPNet

matplotlib.use("Agg")


def tiny(**kw):
    torch.manual_seed(0)
    return PSPNet(num_classes=5, backbone="lite", width=4, **kw)


def test_recorded_shapes_are_what_the_model_returns():
    model = tiny().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 41, 33)
    shapes = trace_shapes(model, x=x)
    assert not model.training  # the mode is restored ...
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # ... and the BN statistics
    model.train()
    with torch.no_grad():
        main, aux = model(x)
        c3, c4 = model.backbone(x)
        concat = model.ppm(c4)
    assert shapes["input"] == (2, 3, 41, 33)
    assert shapes["cls:upsampled"] == tuple(main.shape) == (2, 5, 41, 33)
    assert shapes["aux:upsampled"] == tuple(aux.shape)
    assert shapes["backbone.layer3"] == tuple(c3.shape) == (2, 64, 6, 5)
    assert shapes["backbone.layer4"] == tuple(c4.shape) == (2, 128, 6, 5)
    assert shapes["ppm"] == tuple(concat.shape) == (2, 256, 6, 5)
    for i, b in enumerate((1, 2, 3, 6)):
        assert shapes[f"ppm.features.{i}.0"] == (2, 128, b, b)  # pooled, full width
        assert shapes[f"ppm.features.{i}"] == (2, 32, b, b)  # reduced to 1/N
        assert shapes[f"ppm.features.{i}:upsampled"] == (2, 32, 6, 5)
    assert shapes["cls.0"] == (2, 32, 6, 5) and shapes["cls"] == (2, 5, 6, 5)
    assert shapes["aux.0"] == (2, 16, 6, 5) and shapes["aux"] == (2, 5, 6, 5)
    assert list(shapes)[:3] == ["input", "backbone.layer3", "backbone.layer4"]  # in the order of the pass


def test_the_figure_has_one_labelled_box_per_stage():
    fig, shapes = fig3(tiny(), 33)
    ax = fig.axes[0]
    boxes = {p.get_gid(): p for p in ax.patches if p.get_gid()}
    assert len(boxes) == len(shapes) == 22 and set(boxes) == set(shapes)
    labels = {t.get_position(): t.get_text() for t in ax.texts}
    for name, patch in boxes.items():
        bb = patch.get_bbox()
        label = labels[(bb.x0 + bb.width / 2, bb.y0 + bb.height / 2)]
        assert " × ".join(map(str, shapes[name][1:])) in label, (name, label)
    assert "×8 bilinear" in labels[next(t for t in labels if "5 × 33 × 33" in labels[t])]  # (33 - 1) / (5 - 1)
    assert "pool 6×6" in "\n".join(labels.values())


def test_variants_and_errors(tmp_path):
    shapes = trace_shapes(tiny(aux=False, reduction=False), 33)
    assert "aux" not in shapes and "ppm.features.0.0" not in shapes and shapes["ppm.features.3"] == (1, 128, 6, 6)
    fig = draw_fig3(shapes)
    assert {p.get_gid() for p in fig.axes[0].patches if p.get_gid()} == set(shapes)
    # the paper's network at 473, shapes only, on the meta device (no weights, no compute)
    _, big = fig3(on_meta(PSPNet, num_classes=150), 473, path=tmp_path / "f" / "fig3.png")
    assert (tmp_path / "f" / "fig3.png").stat().st_size > 0
    assert big["backbone.layer4"] == (1, 2048, 60, 60) and big["ppm"] == (1, 4096, 60, 60)
    assert big["aux.0"] == (1, 256, 60, 60) and big["backbone.layer3"] == (1, 1024, 60, 60)
    with pytest.raises(ValueError, match="bins=\\(\\)"):
        trace_shapes(tiny(bins=()), 33)
    with pytest.raises(ValueError, match="trace_shapes"):
        draw_fig3({"input": (1, 3, 33, 33)})


def test_the_default_figure_is_kept():
    """Chapter 03's default run (ResNet-50 at 473) is kept in results/ for the site's front page."""
    path = Path(__file__).resolve().parents[1] / "results" / "03_fig3.png"
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

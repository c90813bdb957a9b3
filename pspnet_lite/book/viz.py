"""Figures for the book: colour masks, overlays, prediction panels (paper Fig. 2 / 6) and per-class IoU bars.

matplotlib is imported inside the plotting functions only (lazily: it is an optional, book-only
dependency), so ``colorize``, ``overlay`` and ``denormalize``, which need just numpy, work without it.

``default_palette`` (one colour per class, none black: black marks ignored pixels) and the ImageNet
``MEAN``/``STD`` are defined once, in :mod:`pspnet_lite.data.datasets` and :mod:`pspnet_lite.data.transforms`,
and re-exported here.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.datasets import default_palette
from ..data.transforms import MEAN, STD

IMAGENET_MEAN = MEAN  # alias: the one definition is pspnet_lite.data.transforms.MEAN
IMAGENET_STD = STD

BOOK_STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "figure.figsize": (6.4, 3.6),
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "image.interpolation": "nearest",  # masks must not be blurred between classes
    "figure.constrained_layout.use": True,
}


def use_book_style() -> dict:
    """Apply the book's matplotlib settings (small fonts, tight saves, nearest-neighbour images); returns them."""
    import matplotlib as mpl  # lazy: matplotlib is an optional (book) dependency

    mpl.rcParams.update(BOOK_STYLE)
    return dict(BOOK_STYLE)


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _palette(palette, num_classes_hint: int) -> np.ndarray:
    if palette is None:
        return default_palette(num_classes_hint)
    pal = _to_numpy(palette)
    if pal.ndim != 2 or pal.shape[1] != 3:
        raise ValueError(f"palette must have shape (C, 3), got {pal.shape}")
    if pal.dtype != np.uint8:
        if pal.min() < 0 or pal.max() > 255:
            raise ValueError("palette values must be in 0..255 (uint8 RGB)")
        pal = pal.astype(np.uint8)
    return pal


def colorize(mask, palette=None, ignore_index: int = 255, ignore_color=(0, 0, 0)) -> np.ndarray:
    """Label map (H,W) -> RGB uint8 (H,W,3): class k gets ``palette[k]``, ``ignore_index`` gets black.

    Labels outside [0, C) other than ``ignore_index`` raise a ValueError naming them. ``palette=None``
    uses :func:`default_palette` sized to the largest label.
    """
    m = _to_numpy(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2D (H,W), got shape {m.shape}; index one image of a batch")
    if not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"mask must hold integer labels, got dtype {m.dtype}")
    valid = m != ignore_index
    top = int(m[valid].max()) + 1 if valid.any() else 1
    pal = _palette(palette, top)
    bad = valid & ((m < 0) | (m >= len(pal)))
    if bad.any():
        raise ValueError(f"mask has labels {sorted(np.unique(m[bad]).tolist())[:10]} outside the palette's "
                         f"{len(pal)} classes; pass the data set's palette or map the labels")
    out = np.empty(m.shape + (3,), dtype=np.uint8)  # (H, W, 3)
    out[valid] = pal[m[valid]]
    out[~valid] = np.asarray(ignore_color, dtype=np.uint8)
    return out


def denormalize(image, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """Undo ImageNet normalisation: float (3,H,W) or (1,3,H,W) tensor -> RGB uint8 (H,W,3), clipped to 0..255."""
    x = torch.as_tensor(image).detach().cpu().float()
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a normalised image (3,H,W), got shape {tuple(x.shape)}")
    x = x * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)  # (3, H, W) in 0..1
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, 3)


def _as_rgb(image) -> np.ndarray:
    """A displayable RGB uint8 (H,W,3) from a uint8 HWC array or a normalised float CHW tensor."""
    if isinstance(image, torch.Tensor) and image.is_floating_point():
        return denormalize(image)
    arr = _to_numpy(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H,W,3) or a normalised float tensor (3,H,W), got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"image array must be uint8, got {arr.dtype}; normalised tensors go through denormalize")
    return arr


def overlay(image, mask, palette=None, alpha: float = 0.5, ignore_index: int = 255) -> np.ndarray:
    """Blend the colour mask into the image: ``(1-alpha) * image + alpha * colour``; ignored pixels keep the
    image as it is. ``image`` is uint8 (H,W,3) or a normalised tensor (3,H,W). Returns uint8 (H,W,3)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = _as_rgb(image)
    m = _to_numpy(mask)
    if m.shape != img.shape[:2]:
        raise ValueError(f"mask shape {m.shape} does not match image size {img.shape[:2]}")
    colour = colorize(m, palette, ignore_index)
    out = img.astype(np.float32)
    keep = m != ignore_index
    out[keep] = (1 - alpha) * out[keep] + alpha * colour[keep].astype(np.float32)
    return out.round().clip(0, 255).astype(np.uint8)


def _legend(fig, labels: set[int], palette: np.ndarray, class_names) -> None:
    from matplotlib.patches import Patch  # lazy: matplotlib is an optional (book) dependency

    labels = sorted(c for c in labels if 0 <= c < len(palette))
    # an edge keeps a white class (ContextScenes' buoy) visible on the white figure
    handles = [Patch(facecolor=palette[c] / 255.0, edgecolor="0.4", linewidth=0.5, label=class_names[c])
               for c in labels]
    if not handles:
        return
    ncol = min(len(handles), 6)
    try:  # matplotlib >= 3.7 with constrained layout reserves room for an "outside" legend
        fig.legend(handles=handles, loc="outside lower center", ncol=ncol)
    except ValueError:
        fig.legend(handles=handles, loc="lower center", ncol=ncol, bbox_to_anchor=(0.5, -0.02))


def show_predictions(images, ground_truths, preds_by_name: dict, palette=None, class_names=None,
                     ignore_index: int = 255, alpha: float | None = None, panel_size: float = 2.0):
    """A grid like the paper's Fig. 2 and Fig. 6: one row per image, columns image | ground truth | each model.

    ``images``: normalised float tensor (N,3,H,W) or a list of uint8 (H,W,3) arrays. ``ground_truths``:
    (N,H,W) labels or None (column omitted). ``preds_by_name``: ordered dict name -> (N,H,W) labels, e.g.
    ``{"FCN": fcn_pred, "PSPNet": psp_pred}``. ``alpha`` draws masks as overlays on the image instead of
    flat colours. ``class_names`` adds a legend of the classes shown. Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt  # lazy: matplotlib is an optional (book) dependency

    images = list(images)
    n = len(images)
    columns = [("image", None)]
    if ground_truths is not None:
        if len(ground_truths) != n:
            raise ValueError(f"{len(ground_truths)} ground truths for {n} images")
        columns.append(("ground truth", ground_truths))
    for name, preds in preds_by_name.items():
        if len(preds) != n:
            raise ValueError(f"prediction {name!r} has {len(preds)} masks for {n} images")
        columns.append((name, preds))
    all_labels: set[int] = set()
    for _, masks in columns[1:]:
        for m in masks:
            all_labels |= set(np.unique(_to_numpy(m)).tolist())
    all_labels.discard(ignore_index)
    pal = _palette(palette, max(all_labels, default=0) + 1)
    fig, axes = plt.subplots(n, len(columns), figsize=(panel_size * len(columns), panel_size * n),
                             squeeze=False)
    for i in range(n):
        rgb = _as_rgb(images[i])
        for j, (title, masks) in enumerate(columns):
            ax = axes[i, j]
            if masks is None:
                ax.imshow(rgb)
            elif alpha is None:
                ax.imshow(colorize(masks[i], pal, ignore_index))
            else:
                ax.imshow(overlay(rgb, masks[i], pal, alpha, ignore_index))
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title)
    if class_names is not None:
        _legend(fig, all_labels, pal, class_names)
    return fig


def plot_class_iou(scores, class_names=None, sort: bool = True, top_k: int | None = None, ax=None,
                   title: str | None = None):
    """Horizontal bars of per-class IoU (percent). ``scores``: SegmentationScores, an IoU sequence, or a dict
    name -> either (grouped bars, e.g. FCN vs PSPNet). Sorted by the first entry's IoU; absent classes
    (nan) are dropped. Returns the Figure."""
    import matplotlib.pyplot as plt  # lazy: matplotlib is an optional (book) dependency

    series = scores if isinstance(scores, dict) else {"": scores}
    ious = {name: np.asarray(_to_numpy(getattr(s, "iou", s)), dtype=np.float64) for name, s in series.items()}
    lengths = {len(v) for v in ious.values()}
    if len(lengths) != 1:
        raise ValueError(f"all IoU vectors must have the same number of classes, got {sorted(lengths)}")
    num_classes = lengths.pop()
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"got {len(names)} class names for {num_classes} classes")
    first = next(iter(ious.values()))
    order = [k for k in range(num_classes) if not np.isnan(first[k])]
    if sort:
        order.sort(key=lambda k: -first[k])
    if top_k is not None:
        order = order[:top_k]
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 0.5 + 0.22 * len(order) * max(1, len(ious)) ** 0.5))
    height = 0.8 / len(ious)
    y = np.arange(len(order))
    for s, (name, v) in enumerate(ious.items()):
        ax.barh(y + s * height - 0.4 + height / 2, 100 * np.nan_to_num(v[order]), height=height,
                label=name or None)
    ax.set_yticks(y, [names[k] for k in order])
    ax.invert_yaxis()
    ax.set_xlabel("IoU (%)")
    ax.set_xlim(0, 100)
    if len(ious) > 1:
        ax.legend()
    if title:
        ax.set_title(title)
    return ax.figure


def plot_confusion(mat, class_names=None, normalize: bool = True, ax=None, title: str | None = None):
    """Confusion matrix image (rows = ground truth, columns = prediction), row-normalised by default.

    Shows the paper's "confusion categories" (section 3.1: building vs skyscraper) as off-diagonal mass.
    ``mat`` is a ConfusionMatrix or a (C,C) count array. Returns the Figure."""
    import matplotlib.pyplot as plt  # lazy: matplotlib is an optional (book) dependency

    m = _to_numpy(getattr(mat, "mat", mat)).astype(np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square (C, C) matrix, got shape {m.shape}")
    if normalize:
        rows = m.sum(1, keepdims=True)
        m = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    if ax is None:
        size = min(8.0, 1.5 + 0.3 * len(m))
        _, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(m))]
    if len(names) != len(m):
        raise ValueError(f"got {len(names)} class names for {len(m)} classes")
    ax.set_xticks(range(len(m)), names, rotation=90)
    ax.set_yticks(range(len(m)), names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    if title:
        ax.set_title(title)
    return ax.figure

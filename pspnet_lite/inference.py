"""Inference with an explicit test protocol: whole image or sliding window, multi-scale, horizontal flip.

Published PSPNet numbers depend on the protocol as much as on the network (paper section 5; Tables 3-4
mark "MS" for multi-scale testing, with scales 0.5, 0.75, 1.0, 1.25, 1.5, 1.75 in the authors' release):

* the authors' "single scale" (hszhao/semseg ``tool/test.py``, Caffe ``scale_process.m``) resizes the long
  side to a base size (512 for ADE20K / VOC, 2048 for Cityscapes), runs a sliding window of the training
  crop (473 or 713) with stride ceil(2/3 crop), pads small images with the mean, and **always** averages
  the prediction of the horizontally flipped window;
* the toolboxes' plain "mIoU" (mmsegmentation, torchvision references) is one whole-image pass, no flip.

A :class:`Protocol` names every choice, ``Protocol.name`` spells it out, and :func:`evaluate` computes
several protocols from one pass over the data, sharing the forward passes they have in common.
Softmax probabilities are averaged over windows, flips and scales (as the authors' PyTorch code does;
the Caffe code sums logits over the flip before normalising, a small difference).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .metrics import ConfusionMatrix, SegmentationScores

PAPER_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
MODES = ("whole", "slide")
RESIZES = ("long", "short")


@dataclass(frozen=True)
class Protocol:
    """One test-time protocol (paper section 5; "single-scale" vs "MS" rows of Tables 3-4).

    mode: "whole" runs the model on the full (resized) image; "slide" runs ``crop_size`` windows with stride
        ``ceil(stride_rate * crop_size)``, padding (centrally, with 0 = the mean after normalisation) images
        smaller than a crop, and averages the probabilities of overlapping windows.
    scales: the image is resized so that its ``resize`` side ("long" as the authors, "short" as mmseg /
        torchvision / CSAIL) is ``round(scale * base_size)``; ``base_size=None`` means the image's own size.
        The probabilities are resized back to the input size and averaged over scales.
    flip: also predict the horizontally flipped image (per window) and average.
    align: pad every forward pass's input at the bottom/right to ``8k + 1`` and crop the output back
        (:func:`aligned_forward`): exact for a network trained on ``8k + 1`` crops (the paper's 473 and 713, the
        authors' weights), whose whole-image maps are otherwise stretched by up to 7 pixels. Off by default: a
        network trained on other crops (the book's 128) learned the stretched map of its crop and scores best
        without it (measured in :func:`aligned_forward`); :func:`aligned_for` decides from the training crop, as
        the trainer's validation, ``evaluate`` and ``predict`` do.
    """

    mode: str = "whole"
    crop_size: int | tuple[int, int] = 473
    stride_rate: float = 2 / 3
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    base_size: int | None = None
    resize: str = "long"
    align: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"Protocol mode must be one of {MODES}, got {self.mode!r}")
        crop = (self.crop_size,) * 2 if isinstance(self.crop_size, int) else tuple(self.crop_size)
        if len(crop) != 2 or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in crop):
            raise ValueError(f"crop_size must be a positive int or (height, width), got {self.crop_size!r}")
        if not (isinstance(self.stride_rate, (int, float)) and 0 < self.stride_rate <= 1):
            raise ValueError(f"stride_rate must be in (0, 1], got {self.stride_rate!r} (the authors use 2/3)")
        scales = (self.scales,) if isinstance(self.scales, (int, float)) else tuple(self.scales)
        if not scales or not all(isinstance(s, (int, float)) and s > 0 for s in scales):
            raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {self.scales!r}; "
                             f"the paper's multi-scale set is {PAPER_SCALES}")
        if self.base_size is not None and not (isinstance(self.base_size, int) and self.base_size > 0):
            raise ValueError(f"base_size must be a positive int or None, got {self.base_size!r}")
        if self.resize not in RESIZES:
            raise ValueError(f"resize must be one of {RESIZES}, got {self.resize!r}")
        object.__setattr__(self, "crop_size", crop if crop[0] != crop[1] else crop[0])
        object.__setattr__(self, "scales", tuple(float(s) for s in scales))
        object.__setattr__(self, "flip", bool(self.flip))
        object.__setattr__(self, "align", bool(self.align))

    @property
    def crop_hw(self) -> tuple[int, int]:
        c = self.crop_size
        return (c, c) if isinstance(c, int) else c

    @property
    def stride_hw(self) -> tuple[int, int]:
        return tuple(int(math.ceil(c * self.stride_rate)) for c in self.crop_hw)

    @property
    def pads(self) -> bool:
        """Whether ``align`` can change anything: whole images, or windows that are not ``8k + 1`` (473 and 713 are)."""
        return self.align and (self.mode == "whole" or any((c - 1) % 8 for c in self.crop_hw))

    @property
    def views(self) -> list[tuple[float, bool]]:
        """The (scale, flipped) forward views whose probabilities are averaged."""
        return [(s, f) for s in self.scales for f in ((False, True) if self.flip else (False,))]

    def describe(self) -> str:
        """The protocol in words, e.g. ``"whole image at its own size, scales 1.0, no flip"``."""
        size = "at its own size" if self.base_size is None else f"{self.resize} side {self.base_size}"
        mode = "whole image" if self.mode == "whole" else f"sliding {self.crop_size} px windows"
        return (f"{mode} {size}, scales {', '.join(map(str, self.scales))}, {'with' if self.flip else 'no'} flip"
                + (", inputs padded to 8k+1" if self.pads else ""))

    @property
    def name(self) -> str:
        """A readable label, e.g. ``"ms(0.5-1.75)+flip | slide 473 stride 316 | long side 512"``."""
        if self.scales == (1.0,):
            scale = "ss"
        elif len(self.scales) == 1:
            scale = f"ss(x{self.scales[0]:g})"
        else:
            scale = f"ms({min(self.scales):g}-{max(self.scales):g})" if self.scales == tuple(
                sorted(self.scales)) else "ms(" + ",".join(f"{s:g}" for s in self.scales) + ")"
        parts = [scale + ("+flip" if self.flip else "")]
        if self.mode == "whole":
            parts.append("whole")
        else:
            (ch, cw), (sh, sw) = self.crop_hw, self.stride_hw
            parts.append(f"slide {ch} stride {sh}" if ch == cw else f"slide {ch}x{cw} stride {sh}x{sw}")
        if self.base_size is not None:
            parts.append(f"{self.resize} side {self.base_size}")
        elif self.resize == "short" and self.scales != (1.0,):
            parts.append("scaled by short side")
        if self.pads:
            parts.append("8k+1")
        return " | ".join(parts)


PROTOCOLS: dict[str, Protocol] = {
    "ss": Protocol(),
    "ss+flip": Protocol(flip=True),
    "ms": Protocol(scales=PAPER_SCALES),
    "ms+flip": Protocol(scales=PAPER_SCALES, flip=True),
}

_AUTHORS = {"ade20k": (473, 512), "voc": (473, 512), "cityscapes": (713, 2048)}


def aligned_for(train_crop: int, output_stride: int = 8) -> bool:
    """Whether a network trained on ``train_crop`` crops is scored with ``align=True``: when the crop is
    ``output_stride * k + 1`` (473, 713: the paper's), its training saw exact maps, and so must inference."""
    return (int(train_crop) - 1) % int(output_stride) == 0


def default_crop_size(dataset: str | None) -> int:
    """The window of a model whose training crop is not recorded (a plain weights file): the authors' crop for the
    data set (713 on Cityscapes, 473 on ADE20K and VOC; §5.1), 473 for anything else."""
    return _AUTHORS.get(dataset or "", (473, None))[0]


def authors_protocol(dataset: str = "ade20k", multi_scale: bool = False) -> Protocol:
    """The protocol of the authors' release (hszhao/semseg configs and ``tool/test.py``) for a data set.

    Long side resized to the base size (512 ADE20K / VOC, 2048 Cityscapes) times each scale, a sliding
    window of the training crop (473 / 713) with a 2/3 stride, flip always on. Their "single scale" is
    ``multi_scale=False``; "MS" in the paper's tables is ``multi_scale=True``.
    """
    if dataset not in _AUTHORS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(_AUTHORS)}")
    crop, base = _AUTHORS[dataset]
    return Protocol(mode="slide", crop_size=crop, stride_rate=2 / 3, flip=True, base_size=base,
                    resize="long", scales=PAPER_SCALES if multi_scale else (1.0,), align=True)


# ----------------------------------------------------------------------------------------------------------
# internals


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Put every submodule in eval mode, then restore each one's own flag (frozen BN stays frozen)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _check_images(images) -> None:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a float tensor (N,C,H,W), got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must be 4D (N,C,H,W), got shape {tuple(images.shape)}; "
                         "add a batch dimension with images.unsqueeze(0)")
    if not images.is_floating_point():
        raise ValueError(f"images must be float and normalised (ImageNet mean/std), got dtype {images.dtype}; "
                         "use the data set's EvalTransform")
    if images.shape[-1] == 0 or images.shape[-2] == 0:
        raise ValueError(f"images have an empty spatial size {tuple(images.shape[-2:])}")


def _scaled_size(h: int, w: int, scale: float, base_size: int | None, resize: str) -> tuple[int, int]:
    """Size after resizing the long (or short) side to round(scale * base), keeping the aspect ratio."""
    ref_is_h = (h >= w) if resize == "long" else (h <= w)
    ref = h if ref_is_h else w
    side = max(1, round(scale * (ref if base_size is None else base_size)))
    if ref_is_h:
        return side, max(1, round(side / h * w))
    return max(1, round(side / w * h)), side


def _window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Window starts along one axis, the last one flush with the border (hszhao/semseg scale_process)."""
    n = int(math.ceil(max(size - crop, 0) / stride)) + 1
    return sorted({min(i * stride, size - crop) for i in range(n)})


def crop_passes(protocol: Protocol, height: int, width: int) -> int:
    """The forward passes :func:`predict` makes for one ``height x width`` image under ``protocol``, without running
    anything: one per (scale, flip) view for whole images; for a sliding window, per view, the windows covering the
    image resized by the scale (:class:`Protocol`'s ``base_size`` and ``resize``) and padded to at least one crop.

    A sliding-window pass is one crop-sized input, so ``crop_passes * (FLOPs of one crop)`` is the scoring's cost;
    a whole-image pass is the resized image. Counted the way ``_slide`` places its windows (tested against a model
    that counts its calls)."""
    if height < 1 or width < 1:
        raise ValueError(f"the image size must be positive; got {height} x {width}")
    passes = 0
    for scale, _flip in protocol.views:
        h, w = _scaled_size(int(height), int(width), scale, protocol.base_size, protocol.resize)
        if protocol.mode == "whole":
            passes += 1
            continue
        (ch, cw), (sh, sw) = protocol.crop_hw, protocol.stride_hw
        passes += len(_window_starts(max(h, ch), ch, sh)) * len(_window_starts(max(w, cw), cw, sw))
    return passes


def grid_size(n: int, stride: int) -> int:
    """The smallest size ``>= n`` of the form ``stride * k + 1`` (the authors feed only such sizes: 473, 713)."""
    return stride * math.ceil((n - 1) / stride) + 1


def aligned_forward(model: nn.Module, x: torch.Tensor):
    """``model(x)``, with ``x`` padded at the bottom and right to ``8k + 1`` rows and columns (with 0, the mean after
    normalisation) and the output cropped back, when the model upsamples its stride-8 map with
    ``align_corners=True`` (the authors' PSPNet; ``model.config`` says so); any other model runs as it is.

    Why: a stride-8 map of an ``8k + 1`` input has ``k + 1`` cells centred on input pixels ``0, 8, ..., 8k``, and
    ``align_corners=True`` maps its corner cells onto the corner pixels, which is then exact. At any other size
    (512 or 1024, ADE20K's and Cityscapes' sides) the map is stretched: at 512 (64 cells) pixel ``y`` reads
    cell ``63 y / 511`` instead of ``y / 8``, 7 pixels off at the bottom and right edges. The authors' code only
    feeds ``8k + 1`` sizes (crops of 473 and 713, images padded to them). The padded pixels lie below and right of
    the image, so the image keeps its cells and its context; the pyramid's pooling now averages over the few
    padded rows as well, as the authors' padded windows do. Output strides 16 and 32 pad to ``16k + 1`` and
    ``32k + 1``.

    Measured (``benchmarks/alignment.py``, two scenes-lite models, 300 iterations of batch 16, seed 0, scored on
    200 ContextScenes val images of 128 px, whole image, one scale; CPU):

    * on 128 x 128 images the aligned whole-image logits equal those of a sliding 129 window exactly (max
      difference 0; unaligned: 9.2 and 11.7, probabilities 0.995 and 0.998); on 129 x 129 (``8k + 1``) nothing
      changes (0 before and after);
    * a network trained on 121 crops (``8k + 1``, as the paper's 473): mIoU 58.81 unaligned -> 71.88 aligned
      (pixel accuracy 89.59 -> 95.74);
    * a network trained on 128 crops (the book's): mIoU 75.77 unaligned -> 63.73 aligned (95.95 -> 90.71). It
      learned the stretched map of its crop, so it is scored as it trained: :class:`Protocol` pads only with
      ``align=True``, which :func:`aligned_for` sets from the training crop.
    """
    cfg = getattr(model, "config", None)
    if not getattr(cfg, "align_corners", False):
        return model(x)
    stride = int(getattr(cfg, "output_stride", 8))
    h, w = x.shape[-2:]
    hp, wp = grid_size(h, stride), grid_size(w, stride)
    if (hp, wp) == (h, w):
        return model(x)
    out = model(F.pad(x, (0, wp - w, 0, hp - h), value=0.0))  # (N, 3, 8k+1, 8l+1): bottom/right only
    if isinstance(out, (tuple, list)):
        return type(out)(o[..., :h, :w] if isinstance(o, torch.Tensor) else o for o in out)
    return out[..., :h, :w]  # (N, C, h, w)


def _run(model: nn.Module, x: torch.Tensor, flip: bool, num_classes: int | None, align: bool) -> torch.Tensor:
    """Softmax probabilities (B,C,h,w) of a batch, at the input size, optionally of the mirrored input."""
    inp = x.flip(3) if flip else x  # (B, 3, h, w); mirrored before the alignment padding, which goes right
    out = aligned_forward(model, inp) if align else model(inp)
    if isinstance(out, (tuple, list)):  # a model still returning (main, aux)
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[0] != x.shape[0]:
        raise ValueError(f"the model must return logits (N,C,H,W); got {getattr(out, 'shape', type(out))}")
    if num_classes is not None and out.shape[1] != num_classes:
        raise ValueError(f"the model returns {out.shape[1]} channels but num_classes={num_classes}; "
                         "pass the model's number of classes")
    if out.shape[-2:] != x.shape[-2:]:  # as the authors' net_process
        out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=True)
    prob = out.float().softmax(1)  # (B, C, h, w)
    return prob.flip(3) if flip else prob


def _batched(model, x, flip, num_classes, batch_size, align) -> torch.Tensor:
    step = batch_size or x.shape[0]
    return torch.cat([_run(model, x[i:i + step], flip, num_classes, align) for i in range(0, x.shape[0], step)])


def _slide(model, x, protocol: Protocol, flip, num_classes, batch_size) -> torch.Tensor:
    """Sliding-window probabilities (N,C,h,w): pad to at least one crop, average overlapping windows."""
    n, _, h, w = x.shape
    (ch, cw), (sh, sw) = protocol.crop_hw, protocol.stride_hw
    ph, pw = max(ch - h, 0), max(cw - w, 0)
    top, left = ph // 2, pw // 2
    x = F.pad(x, (left, pw - left, top, ph - top), value=0.0)  # (N, 3, H', W'); 0 = the normalised mean
    hp, wp = x.shape[-2:]
    boxes = [(y, z) for y in _window_starts(hp, ch, sh) for z in _window_starts(wp, cw, sw)]
    per_pass = max(1, (batch_size or n) // n)  # window positions per forward pass
    total = count = None
    for b in range(0, len(boxes), per_pass):
        chunk = boxes[b:b + per_pass]
        crops = torch.cat([x[:, :, y:y + ch, z:z + cw] for y, z in chunk])  # (len(chunk)*N, 3, ch, cw)
        probs = _batched(model, crops, flip, num_classes, batch_size, protocol.align)  # (len(chunk)*N, C, ch, cw)
        if total is None:
            total = probs.new_zeros(n, probs.shape[1], hp, wp)  # (N, C, H', W')
            count = probs.new_zeros(1, 1, hp, wp)
        for k, (y, z) in enumerate(chunk):
            total[:, :, y:y + ch, z:z + cw] += probs[k * n:(k + 1) * n]
            count[:, :, y:y + ch, z:z + cw] += 1
    return (total / count)[:, :, top:top + h, left:left + w]  # (N, C, h, w)


def _view_probs(model, images, protocol: Protocol, scale: float, flip: bool, num_classes, batch_size):
    """Probabilities (N,C,H,W) of one (scale, flip) view, resized back to the input size."""
    h, w = images.shape[-2:]
    size = _scaled_size(h, w, scale, protocol.base_size, protocol.resize)
    x = images if size == (h, w) else F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    if protocol.mode == "whole":
        prob = _batched(model, x, flip, num_classes, batch_size, protocol.align)  # (N, C, h', w')
    else:
        prob = _slide(model, x, protocol, flip, num_classes, batch_size)
    if prob.shape[-2:] != (h, w):
        prob = F.interpolate(prob, size=(h, w), mode="bilinear", align_corners=False)
    return prob  # (N, C, H, W)


def _view_key(p: Protocol, scale: float, flip: bool) -> tuple:
    geometry = (p.mode, p.crop_hw, p.stride_hw) if p.mode == "slide" else ("whole",)
    return geometry + (p.base_size, p.resize, scale, flip, p.align)


def _multi_protocol_probs(model, images, protocols: list[Protocol], num_classes, batch_size):
    """Averaged probabilities (N,C,H,W) for each protocol, computing each distinct view only once."""
    users: dict[tuple, list[int]] = {}
    first: dict[tuple, tuple[Protocol, float, bool]] = {}
    for i, p in enumerate(protocols):
        for scale, flip in p.views:
            key = _view_key(p, scale, flip)
            users.setdefault(key, []).append(i)
            first.setdefault(key, (p, scale, flip))
    sums: list[torch.Tensor | None] = [None] * len(protocols)
    for key, idx in users.items():
        prob = _view_probs(model, images, *first[key], num_classes, batch_size)  # (N, C, H, W)
        for j, i in enumerate(idx):
            if sums[i] is not None:
                sums[i].add_(prob)
            else:  # the last user may take the tensor itself; earlier ones need a copy to add into
                sums[i] = prob if j == len(idx) - 1 else prob.clone()
    return [s / len(p.views) for s, p in zip(sums, protocols)]


# ----------------------------------------------------------------------------------------------------------
# public API


def predict(model: nn.Module, images: torch.Tensor, num_classes: int | None = None,
            protocol: Protocol | str = Protocol(), return_probs: bool = False, batch_size: int | None = None):
    """Predict labels (N,H,W) for normalised images (N,3,H,W) of any size under a test ``protocol``.

    The model is run in eval mode under ``torch.inference_mode`` (each submodule's own train/eval flag is
    restored afterwards), on the device of ``images``. Softmax probabilities are averaged over sliding
    windows, flips and scales (section 5, "multi-scale testing"); with ``return_probs`` the averaged
    probabilities (N,C,H,W), which sum to 1 over C, are returned too. ``batch_size`` caps the number of
    images / windows per forward pass (default N: the batch's images, one window position at a time, so
    memory is that of a whole-batch forward at crop size). ``protocol`` may be a :class:`Protocol` or a
    key of :data:`PROTOCOLS`.
    """
    _check_images(images)
    protocol = _as_protocol(protocol)
    if batch_size is not None and not (isinstance(batch_size, int) and batch_size > 0):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    with _eval_mode(model), torch.inference_mode():
        probs = _multi_protocol_probs(model, images, [protocol], num_classes, batch_size)[0]  # (N, C, H, W)
    probs = probs.clone()  # a normal tensor: callers may edit it in place outside inference mode
    labels = probs.argmax(1)  # (N, H, W)
    return (labels, probs) if return_probs else labels


def _as_protocol(p) -> Protocol:
    if isinstance(p, Protocol):
        return p
    if isinstance(p, str) and p in PROTOCOLS:
        return PROTOCOLS[p]
    raise ValueError(f"protocol must be a Protocol or one of {sorted(PROTOCOLS)}, got {p!r}")


def _as_protocols(protocols) -> dict[str, Protocol]:
    if isinstance(protocols, (Protocol, str)):
        protocols = [protocols]
    if isinstance(protocols, dict):
        out = {str(k): _as_protocol(v) for k, v in protocols.items()}
    else:
        out = {}
        for p in protocols:
            out[p if isinstance(p, str) else _as_protocol(p).name] = _as_protocol(p)
    if not out:
        raise ValueError("protocols is empty; pass e.g. {'ss': Protocol()} or ['ss', 'ms+flip']")
    return out


def evaluate(model: nn.Module, loader, num_classes: int, protocols=None, device="cpu", progress: bool = True,
             batch_size: int | None = None, absent: str = "nan",
             metric: Callable[[], Any] | None = None) -> dict[str, SegmentationScores]:
    """Scores of ``model`` on ``loader`` under each protocol, from one pass over the data (section 5).

    ``protocols``: a dict name -> :class:`Protocol`, or a list of :data:`PROTOCOLS` keys / Protocols
    (default ``{"ss": Protocol()}``). Views shared by several protocols (e.g. the unflipped scale 1.0 of
    "ss", "ss+flip" and "ms") are computed once. ``loader`` yields ``(images, masks)`` with images (N,3,H,W)
    normalised and masks (N,H,W), 255 ignored. Confusion matrices are summed over torch.distributed ranks
    when a process group is initialised. Returns name -> scores, each with ``scores.protocol`` set to a
    readable label of the protocol. ``absent`` is passed to :meth:`ConfusionMatrix.compute`.

    ``metric`` builds the accumulator of one protocol (default: ``ConfusionMatrix(num_classes)``), e.g.
    :class:`~pspnet_lite.cityscapes_metrics.CityscapesMetrics` for the four Cityscapes scores; a loader that
    yields ``(images, masks, instances)`` passes the instance ids on to its ``update``.

    Masks may be larger or smaller than their images: ``EvalTransform(base_size=...)`` resizes the image only
    and keeps the labels at the original resolution, as the authors score (hszhao/semseg ``tool/test.py``
    resizes the image's long side to the base size and the prediction back to the label size; section 5).
    The averaged probabilities are then resized bilinearly (``align_corners=False``) to the mask size before
    the argmax, so scores are always computed at the labels' resolution.
    """
    protocols = _as_protocols({"ss": Protocol()} if protocols is None else protocols)
    names, plist = list(protocols), list(protocols.values())
    model.to(device)
    make = metric if metric is not None else (lambda: ConfusionMatrix(num_classes, device=device))
    matrices = {name: make() for name in names}
    for batch in tqdm(loader, desc="evaluate", disable=not progress, mininterval=1.0):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("the loader must yield (images, masks) pairs")
        images, masks = batch[0].to(device), batch[1].to(device)
        _check_images(images)
        with _eval_mode(model), torch.inference_mode():
            all_probs = _multi_protocol_probs(model, images, plist, num_classes, batch_size)
        if masks.dim() != 3 or masks.shape[0] != images.shape[0]:
            raise ValueError(f"masks must be (N,H,W) with N={images.shape[0]} as the images; got {tuple(masks.shape)}")
        for name, probs in zip(names, all_probs):
            if probs.shape[-2:] != masks.shape[-2:]:  # image resized by the transform, labels kept as they were
                probs = F.interpolate(probs, size=masks.shape[-2:], mode="bilinear", align_corners=False)
            matrices[name].update(probs.argmax(1), masks, *[b.to(device) for b in batch[2:3]])  # (N, H, W) labels
    results = {}
    for name, p in zip(names, plist):
        scores = matrices[name].all_reduce().compute(absent=absent)
        scores.protocol = name if name == p.name else f"{name}: {p.name}"
        scores.extra["views"] = len(p.views)
        results[name] = scores
    return results

"""Deep-supervision loss: cross-entropy on the main logits plus alpha x the auxiliary one (paper §4, Fig. 4).

"Apart from the main branch using softmax loss to train the final classifier, another classifier is
applied after the fourth stage ... We add weight to balance the auxiliary loss" (§4); alpha = 0.4
(§5.1, Table 2). Pixels labelled ``ignore_index`` (255) count in neither loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .labels import check_label_range


def check_labels(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255, values: bool = True) -> None:
    """Raise a ValueError unless ``target`` is an integer (N, H, W) label map for (N, C, H, W) ``logits``
    whose values lie in [0, C) or equal ``ignore_index`` (``values=False`` skips the value scan; the scan
    is :func:`pspnet_lite.labels.check_label_range`, shared with the metrics)."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be shaped (N, C, H, W); got {shape}.")
    if not isinstance(target, torch.Tensor) or target.is_floating_point() or target.is_complex() \
            or target.dtype == torch.bool:
        kind = target.dtype if isinstance(target, torch.Tensor) else type(target).__name__
        raise ValueError(f"labels must be an integer tensor (int64 class ids, {ignore_index} = ignore); got {kind}.")
    n, c, h, w = logits.shape
    if tuple(target.shape) != (n, h, w):
        raise ValueError(f"labels shaped {tuple(target.shape)} do not match logits {tuple(logits.shape)}; "
                         f"expected ({n}, {h}, {w}). Upsample the logits to the label size first.")
    if values:
        check_label_range(target, c, ignore_index, "target")


class DeepSupervisionLoss(nn.Module):
    """Main cross-entropy + ``alpha`` x auxiliary cross-entropy (paper §4; alpha = 0.4, Table 2).

    Args:
        alpha: weight of the auxiliary loss (0.4 in the paper).
        ignore_index: label value excluded from both losses (255).
        check_labels: scan labels for values outside [0, C) and raise a ValueError instead of a
            device-side assert (costs one host sync per call; turn off in tuned GPU loops).

    ``forward(outputs, target)``: ``outputs`` is ``(main, aux)``, ``(main, None)`` or a logits tensor,
    each (N, C, H, W); ``target`` (N, H, W) int64. Returns ``(total, {"main": ..., "aux": ... or None})``
    with detached parts for logging. Each loss is the mean over non-ignored pixels; a batch with no
    labelled pixel gives 0 (with a gradient graph) instead of PyTorch's NaN. Half-precision logits (AMP)
    are cast to float32 first, so the loss is float32.
    """

    def __init__(self, alpha: float = 0.4, ignore_index: int = 255, check_labels: bool = True):
        super().__init__()
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha >= 0:
            raise ValueError(f"alpha must be a non-negative number (0.4 in the paper); got {alpha!r}.")
        self.alpha, self.ignore_index, self.check_labels = float(alpha), int(ignore_index), bool(check_labels)

    def cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the labelled pixels (0 if there are none), computed in float32 at least.

        Under mixed precision the logits arrive in bf16 / fp16. A sum of about 3.6M per-pixel losses (16 crops
        of 473 x 473) in bf16, with its 8-bit mantissa, would lose most of its digits, so they are cast first
        (``autocast`` does the same for ``cross_entropy``, but the loss is computed outside autocast)."""
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        total = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="sum")
        count = (target != self.ignore_index).sum().clamp(min=1)
        return total / count

    def forward(self, outputs, target: torch.Tensor):
        if isinstance(outputs, (tuple, list)):
            if len(outputs) != 2:
                raise ValueError(f"outputs must be (main, aux), (main, None) or a tensor; got {len(outputs)} items.")
            main, aux = outputs
        else:
            main, aux = outputs, None
        check_labels(main, target, self.ignore_index, values=self.check_labels)
        target = target.long()
        loss_main = self.cross_entropy(main, target)
        if aux is None:
            return loss_main, {"main": loss_main.detach(), "aux": None}
        if not isinstance(aux, torch.Tensor) or aux.shape != main.shape:
            shape = tuple(aux.shape) if isinstance(aux, torch.Tensor) else type(aux).__name__
            raise ValueError(f"aux logits {shape} must have the main logits' shape {tuple(main.shape)}.")
        loss_aux = self.cross_entropy(aux, target)
        total = loss_main + self.alpha * loss_aux
        return total, {"main": loss_main.detach(), "aux": loss_aux.detach()}

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, ignore_index={self.ignore_index}"

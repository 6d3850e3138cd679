"""Segmentation losses shared by every term of the method (docs/method.md, sections 5 and 6)."""
from __future__ import annotations

from typing import Any, Mapping

import torch.nn.functional as F
from torch import Tensor
from torch.profiler import record_function

from udass.benchmarks import IGNORE_INDEX
from udass.models.hrda import crop_boxes


def upsample_logits(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear (align_corners=False) resize of logits [B, C, h, w] to size (H, W); a no-op when equal."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


@record_function("udass.losses")
def weighted_cross_entropy(logits: Tensor, labels: Tensor, weights: Tensor | None = None) -> Tensor:
    """Pixel-weighted cross-entropy `CE_w` of the paper.

    logits:  [B, C, h, w] float (any float dtype; computed in float32), upsampled bilinearly
             (align_corners=False) to the label size when it differs.
    labels:  [B, H, W] int64 train ids, 255 = ignore.
    weights: [B, H, W] float >= 0 (or anything broadcastable to it, e.g. [B, 1, 1]); None = 1.
    Returns a float32 scalar: sum over non-ignored pixels of weight x CE, divided by the NUMBER of
    non-ignored pixels (not by the sum of weights, so a DACS confidence weight of 0.4 scales the
    loss by 0.4). With no labelled pixel at all the result is an exact 0 that keeps the graph.
    """
    if labels.dim() != 3 or logits.dim() != 4 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"weighted_cross_entropy: expected logits [B, C, h, w] and labels [B, H, W], "
                         f"got {tuple(logits.shape)} and {tuple(labels.shape)}")
    logits = upsample_logits(logits.float(), tuple(labels.shape[-2:]))
    ce = F.cross_entropy(logits, labels.long(), reduction="none", ignore_index=IGNORE_INDEX)
    if weights is not None:
        ce = ce * weights.to(ce.dtype)
    labelled = (labels != IGNORE_INDEX).sum()
    return ce.sum() / labelled.clamp(min=1).to(ce.dtype)


def multi_resolution_loss(out: Mapping[str, Any], labels: Tensor, weights: Tensor | None = None,
                          detail_weight: float = 0.1) -> dict[str, Tensor]:
    """HRDA's loss on an `HRDAModel` training output (`udass.models.hrda`).

    out: the output dict, with logits (fused) [B, C, H/r, W/r], logits_detail [B, C, h_d/r, w_d/r]
    and detail_boxes [B, 4] (y1, y2, x1, x2) in input pixels; labels [B, H, W] int64 (255
    ignore) and weights [B, H, W] (or None) at the input resolution. The detail prediction is
    supervised by the labels (and weights) inside its window. Returns {"fused", "detail",
    "total"}: total = (1 - detail_weight) * fused + detail_weight * detail, as HRDA's head
    weighs them (hr_loss_weight 0.1; its fused term takes what is left).
    """
    boxes = out["detail_boxes"]
    fused = weighted_cross_entropy(out["logits"], labels, weights)
    detail = weighted_cross_entropy(out["logits_detail"], crop_boxes(labels, boxes),
                                    None if weights is None else crop_boxes(weights, boxes))
    return {"fused": fused, "detail": detail,
            "total": (1.0 - detail_weight) * fused + detail_weight * detail}

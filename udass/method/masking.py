"""Masked image consistency (MIC, Hoyer et al., CVPR 2023).

The strongly augmented target clip is shown to the student with random square blocks removed,
and trained against the teacher's pseudo-labels of the unmasked clip, weighted by their DACS
confidence quality: to predict the masked regions the network has to use the context around
them.

- `block_mask`: a grid of round(H / b) x round(W / b) blocks (b = 64 px), each removed
  independently with probability `ratio` (0.7), resized (nearest) to H x W. One draw per sample,
  from an explicit generator; every frame of a clip gets its sample's mask.
- `mask_frames`: removed pixels take the value that the network's input normalisation maps to 0
  (`neutral_fill`), which is what MIC's multiplication of the normalised image by the mask gives.
- `masked_consistency_loss`: weight x CE_w(student(masked), pseudo-labels, quality weights).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from udass.method.losses import weighted_cross_entropy


def block_mask(batch: int, size: tuple[int, int], block: int, ratio: float,
               generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
    """MIC's block mask: float [B, 1, H, W], 1 where the pixel is kept, 0 where it is removed.

    The H x W grid is split into round(H / block) x round(W / block) cells (resized to H x W by
    nearest neighbour, so cells are `block` pixels wide when block divides the size); each cell
    of each sample is removed when a uniform draw from `generator` is <= ratio (kept when >).
    """
    h, w = size
    cells = (max(1, round(h / block)), max(1, round(w / block)))
    keep = (torch.rand(batch, 1, *cells, generator=generator) > ratio).float()
    return F.interpolate(keep, size=(h, w), mode="nearest").to(device)


def neutral_fill(normalize: nn.Module) -> Tensor:
    """The RGB value in [0, 1] [3] that `normalize` (the network's `InputNormalize`) maps to 0:
    the mean colour of its convention, in RGB order (the Caffe convention stores it BGR)."""
    fill = torch.empty(3, dtype=normalize.mean.dtype, device=normalize.mean.device)
    fill[normalize.order] = normalize.mean.flatten()
    return fill


def mask_frames(frames: Tensor, mask: Tensor, fill: Tensor | float = 0.0) -> Tensor:
    """frames [B, K, 3, H, W] in [0, 1]; mask [B, 1, H, W] (1 keep, 0 remove), the same for
    every frame of a sample; fill: a float or an RGB value [3]. Returns the masked frames."""
    fill_t = torch.as_tensor(fill, dtype=frames.dtype, device=frames.device).reshape(-1, 1, 1)
    m = mask.to(frames.dtype).unsqueeze(1)  # [B, 1, 1, H, W]
    return frames * m + fill_t * (1 - m)


def masked_consistency_loss(logits: Tensor, pseudo_labels: Tensor, weights: Tensor,
                            weight: float = 1.0) -> Tensor:
    """MIC's loss: weight x CE_w(logits [B, C, h, w] of the masked clip, pseudo_labels [B, H, W]
    of the unmasked clip, weights [B, H, W] their DACS confidence quality). Weight 1 in MIC."""
    return weight * weighted_cross_entropy(logits, pseudo_labels, weights)


__all__ = ["block_mask", "mask_frames", "masked_consistency_loss", "neutral_fill"]

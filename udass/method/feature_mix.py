"""Feature-level QuadMix (docs/method.md, section 6).

The quad-mixed clips (c) X_tss and (d) X_stt show the same template pixels in different
contexts: S' content where M_s AND NOT M_t, T' content where M_t AND NOT M_s. On that shared
region the decoder features of the two samples are fused by a light 1x1 conv g and classified
with the mixed labels, which reduces the semantic drift caused by the different contexts.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from udass.method.losses import weighted_cross_entropy


def shared_region(mask_s: Tensor, mask_t: Tensor, *, ss: bool = True, tt: bool = True) -> Tensor:
    """Pixels where X_tss and X_stt show the same template content.

    mask_s: [B, H, W] bool, M_s of frame t; mask_t: [B, H, W] bool, M_t of frame t.
    Default (all four paths on): (M_s AND NOT M_t) OR (M_t AND NOT M_s). The keywords state
    which intra-domain paths exist: with (a) off X_tss shows the current source S, not S',
    outside M_t, so the S' part drops out; with (b) off the T' part drops out likewise.
    Returns [B, H, W] bool.
    """
    region = torch.zeros_like(mask_s, dtype=torch.bool)
    if ss:
        region |= mask_s & ~mask_t
    if tt:
        region |= mask_t & ~mask_s
    return region


def downsample_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest (torch 'nearest') resize of a bool mask [B, H, W] to size (h, w) -> [B, h, w] bool."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask.bool()
    return F.interpolate(mask[:, None].float(), size=size, mode="nearest")[:, 0] > 0.5


class FeatureFusion(nn.Module):
    """g: a bias-free 1x1 conv from 2D to D channels, identity on its own half at init.

    forward(phi_c, phi_d, shared): with M the shared region resized (nearest) to the feature grid,
        phi_c' = (1 - M) phi_c + M g([phi_c, phi_d]),   phi_d' = (1 - M) phi_d + M g([phi_d, phi_c]).
    At initialisation g([a, b]) = a, so the module is the identity.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.g = nn.Conv2d(2 * dim, dim, kernel_size=1, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            w = torch.zeros(self.dim, 2 * self.dim)
            w[:, :self.dim] = torch.eye(self.dim)
            self.g.weight.copy_(w.view(self.dim, 2 * self.dim, 1, 1))

    def forward(self, phi_c: Tensor, phi_d: Tensor, shared: Tensor) -> tuple[Tensor, Tensor]:
        """phi_c, phi_d: [B, D, h, w] decoder features of X_tss and X_stt; shared: [B, H, W] bool.
        Returns (phi_c', phi_d'), both [B, D, h, w]."""
        if phi_c.shape != phi_d.shape or phi_c.shape[1] != self.dim:
            raise ValueError(f"FeatureFusion({self.dim}): got features {tuple(phi_c.shape)} and "
                             f"{tuple(phi_d.shape)}")
        b = phi_c.shape[0]
        m = downsample_mask(shared, tuple(phi_c.shape[-2:])).unsqueeze(1)
        pairs = torch.cat([torch.cat([phi_c, phi_d], 1), torch.cat([phi_d, phi_c], 1)], 0)
        fused = self.g(pairs.to(self.g.weight.dtype)).to(phi_c.dtype)
        return torch.where(m, fused[:b], phi_c), torch.where(m, fused[b:], phi_d)


def feature_mix_loss(fused_logits: Tensor, labels_c: Tensor, weights_c: Tensor | None,
                     labels_d: Tensor, weights_d: Tensor | None) -> Tensor:
    """L_feat = 1/2 CE_w(h(phi_c'), Y_tss) + 1/2 CE_w(h(phi_d'), Y_stt).

    fused_logits: [2B, C, h, w], the classifier h (`model.classify`, no temporal fusion) on the
    fused features [phi_c'; phi_d'] (FeatureFusion output): X_tss's B maps, then X_stt's.
    labels_*: [B, H, W] int64 mixed labels of frame t (255 ignore); weights_*: [B, H, W] float
    or None. Returns a float32 scalar.
    """
    b = labels_c.shape[0]
    if fused_logits.shape[0] != 2 * b or labels_d.shape[0] != b:
        raise ValueError(f"feature_mix_loss: expected fused logits [2B, C, h, w] for labels of batch "
                         f"B = {b}, got {tuple(fused_logits.shape)} and {tuple(labels_d.shape)}")
    return 0.5 * (weighted_cross_entropy(fused_logits[:b], labels_c, weights_c)
                  + weighted_cross_entropy(fused_logits[b:], labels_d, weights_d))

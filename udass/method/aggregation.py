"""Flow-guided spatio-temporal aggregation (docs/method.md, section 7 b-d).

- class-aware spatial aggregation: class prototypes v_c = mean of the features of the pixels
  labelled c (source: ground truth; target: confident pseudo-labels), one vectorised pass;
- temporal aggregation: target prototypes of the current view and of the previous view (its
  features warped to t) fused with entropy weights w_i = softmax(-H_i) (certain views weigh more);
- alignment: multi-kernel Gaussian MMD between the source and the aggregated target prototype
  sets (default), or a pixel-to-prototype contrastive loss (option).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from udass.benchmarks import IGNORE_INDEX
from udass.config import AggregationConfig
from udass.method.feature_mix import downsample_mask


def downsample_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest (torch 'nearest') resize of int64 labels [B, H, W] to size (h, w) -> [B, h, w] int64."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels.long()
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


def class_prototypes(features: Tensor, labels: Tensor, num_classes: int,
                     min_pixels: int = 5) -> tuple[Tensor, Tensor]:
    """Class prototypes: the mean feature of the pixels of each class, in one scatter pass.

    features: [B, D, h, w] float; labels: [B, h, w] int64 on the same grid (255 / >= C ignored).
    Returns (protos [C, D] float32, differentiable w.r.t. features; valid [C] bool = at least
    `min_pixels` pixels). Rows of invalid classes are zero.
    """
    if features.dim() != 4 or labels.shape != (features.shape[0], *features.shape[-2:]):
        raise ValueError(f"class_prototypes: expected features [B, D, h, w] and labels [B, h, w] on "
                         f"the same grid, got {tuple(features.shape)} and {tuple(labels.shape)}")
    d = features.shape[1]
    feats = features.float().permute(0, 2, 3, 1).reshape(-1, d)
    idx = labels.reshape(-1).long()
    idx = torch.where((idx >= 0) & (idx < num_classes), idx, torch.full_like(idx, num_classes))
    sums = feats.new_zeros(num_classes + 1, d).index_add(0, idx, feats)[:num_classes]
    counts = torch.bincount(idx, minlength=num_classes + 1)[:num_classes]
    valid = counts >= max(min_pixels, 1)
    protos = sums / counts.clamp(min=1).unsqueeze(1).to(sums.dtype)
    return torch.where(valid.unsqueeze(1), protos, torch.zeros_like(protos)), valid


def mean_entropy(probs: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean normalised prediction entropy H = -sum_c p log p / log C over the (masked) pixels.

    probs: [B, C, h, w] probabilities; mask: [B, h, w] bool or None (all pixels). Returns a
    float32 scalar in [0, 1] (1 when the mask is empty: no evidence is maximal uncertainty).
    """
    p = probs.float().clamp_min(1e-12)
    ent = -(p * p.log()).sum(dim=1) / math.log(max(probs.shape[1], 2))
    if mask is None:
        return ent.mean()
    m = mask.to(ent.dtype)
    n = m.sum()
    return torch.where(n > 0, (ent * m).sum() / n.clamp(min=1), torch.ones_like(n))


def entropy_weights(entropies: Tensor) -> Tensor:
    """w_i = exp(-H_i) / sum_j exp(-H_j): [V] -> [V]; the more certain view weighs more."""
    return torch.softmax(-entropies.float(), dim=0)


def aggregate_temporal(protos: Tensor, valid: Tensor, entropies: Tensor,
                       weighting: bool = True) -> tuple[Tensor, Tensor]:
    """Fuse per-view prototypes [V, C, D] (valid [V, C], entropies [V]) into [C, D] (valid [C]).

    For each class the weights of the views where it is valid are renormalised: entropy weights
    (detached: they steer, they are not trained) or, with weighting off, a plain mean over the
    valid views. Classes valid in no view are invalid with zero rows.
    """
    v = protos.shape[0]
    w = entropy_weights(entropies.detach()) if weighting else protos.new_ones(v)
    wc = w.to(protos.dtype).unsqueeze(1) * valid.to(protos.dtype)  # [V, C]
    total = wc.sum(0)  # [C]
    fused = (wc.unsqueeze(2) * protos).sum(0) / total.clamp(min=1e-12).unsqueeze(1)
    ok = valid.any(0)
    return torch.where(ok.unsqueeze(1), fused, torch.zeros_like(fused)), ok


def mmd_loss(x: Tensor, y: Tensor, num_kernels: int = 5, kernel_mul: float = 2.0) -> Tensor:
    """Multi-kernel Gaussian MMD^2 (biased estimate) between sets x [n, D] and y [m, D].

    k(a, b) = sum_i exp(-|a - b|^2 / s_i), s_i = s0 * kernel_mul^(i - num_kernels // 2), where s0
    is the mean squared pairwise distance over the union (off-diagonal, detached): bandwidths
    x2 apart around the mean distance (the DAN / TPS estimator). Returns
    mean K_xx + mean K_yy - 2 mean K_xy, a float32 scalar >= 0 up to rounding.
    """
    n, m = x.shape[0], y.shape[0]
    if n == 0 or m == 0:
        return (x.sum() + y.sum()).float() * 0.0
    total = torch.cat([x, y], 0).float()
    d2 = (total.unsqueeze(0) - total.unsqueeze(1)).pow(2).sum(-1)  # exact zeros, safe gradients
    pairs = max((n + m) * (n + m - 1), 1)
    s0 = (d2.detach().sum() / pairs).clamp(min=1e-8)
    scales = s0 * kernel_mul ** (torch.arange(num_kernels, device=x.device, dtype=d2.dtype)
                                 - num_kernels // 2)
    k = torch.exp(-d2.unsqueeze(0) / scales.view(-1, 1, 1)).sum(0)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def prototype_contrastive_loss(features: Tensor, labels: Tensor, prototypes: Tensor, valid: Tensor,
                               temperature: float = 0.1) -> Tensor:
    """Pixel-to-prototype InfoNCE: each labelled pixel against all valid prototypes.

    features: [B, D, h, w]; labels: [B, h, w] int64 on the same grid (255 ignore); prototypes:
    [C, D]; valid: [C] bool. Cosine similarities / temperature, cross-entropy towards the pixel's
    own class among the valid prototypes; pixels with ignore or an invalid class are skipped.
    Returns the float32 mean over used pixels (an exact 0 with graph when there are none).
    """
    d = features.shape[1]
    c = prototypes.shape[0]
    f = features.float().permute(0, 2, 3, 1).reshape(-1, d)
    lab = labels.reshape(-1).long()
    in_range = (lab >= 0) & (lab < c)
    use = in_range & valid[lab.clamp(0, c - 1)]
    if not bool(use.any()):
        return (features.sum() + prototypes.sum()).float() * 0.0
    f = F.normalize(f[use], dim=1)
    p = F.normalize(prototypes.float(), dim=1)
    logits = f @ p.t() / temperature
    logits = logits.masked_fill(~valid.unsqueeze(0), float("-inf"))
    return F.cross_entropy(logits, lab[use])


def aggregation_loss(src_features: Tensor, src_labels: Tensor, tgt_features: Tensor,
                     tgt_features_prev_warped: Tensor, tgt_probs: Tensor,
                     tgt_probs_prev_warped: Tensor, tgt_labels: Tensor, tgt_confidence: Tensor,
                     cfg: AggregationConfig, num_classes: int,
                     tgt_valid_prev: Tensor | None = None) -> Tensor:
    """The spatio-temporal aggregation loss (UNWEIGHTED: the trainer multiplies by cfg.weight).

    src_features: [B, D, h, w] student decoder features of the source frame t; src_labels:
    [B, H, W] int64 ground truth at input resolution (255 ignore).
    tgt_features: [B, D, h, w] features of the target frame t (current view);
    tgt_features_prev_warped: [B, D, h, w] features of frame t-1 (previous view) warped to t.
    tgt_probs, tgt_probs_prev_warped: [B, C, h'', w''] softmax predictions of the two views (on
    t's grid) that set the entropy weights. tgt_labels: [B, H, W] int64 pseudo-labels of frame t;
    tgt_confidence: [B, H, W] their max probability; only pixels >= cfg.confidence are used.
    tgt_valid_prev: optional [B, H, W] bool, where the warp of the previous view is defined
    (None: everywhere); the previous view's prototypes and entropy use only those pixels.
    Labels and masks are resized (nearest) to each tensor's grid.

    cfg.loss "mmd": MMD between source and aggregated target prototypes of the classes valid in
    both. "contrastive": source and target pixels against the cross-domain class centres (mean
    of the valid source and aggregated target prototypes, detached), averaged over the two
    domains. Returns a float32 scalar; an exact 0 that keeps the graph when nothing is valid.
    """
    size = tuple(tgt_features.shape[-2:])
    src_lab = downsample_labels(src_labels, tuple(src_features.shape[-2:]))
    src_protos, src_valid = class_prototypes(src_features, src_lab, num_classes, cfg.min_pixels)

    confident = torch.where(tgt_confidence >= cfg.confidence, tgt_labels.long(),
                            torch.full_like(tgt_labels.long(), IGNORE_INDEX))
    tgt_lab = downsample_labels(confident, size)
    prev_lab = tgt_lab
    if tgt_valid_prev is not None:
        prev_lab = torch.where(downsample_mask(tgt_valid_prev, size), tgt_lab,
                               torch.full_like(tgt_lab, IGNORE_INDEX))
    cur = class_prototypes(tgt_features, tgt_lab, num_classes, cfg.min_pixels)
    prev = class_prototypes(tgt_features_prev_warped, prev_lab, num_classes, cfg.min_pixels)
    prob_size = tuple(tgt_probs_prev_warped.shape[-2:])
    prev_mask = None if tgt_valid_prev is None else downsample_mask(tgt_valid_prev, prob_size)
    entropies = torch.stack([mean_entropy(tgt_probs), mean_entropy(tgt_probs_prev_warped, prev_mask)])
    tgt_protos, tgt_valid = aggregate_temporal(torch.stack([cur[0], prev[0]]),
                                               torch.stack([cur[1], prev[1]]), entropies,
                                               weighting=cfg.temporal_weighting)
    zero = (src_features.sum() + tgt_features.sum() + tgt_features_prev_warped.sum()).float() * 0.0

    if cfg.loss == "mmd":
        both = src_valid & tgt_valid
        if not bool(both.any()):
            return zero
        return mmd_loss(src_protos[both], tgt_protos[both], num_kernels=cfg.mmd_kernels) + zero
    if cfg.loss == "contrastive":
        n_valid = src_valid.float() + tgt_valid.float()
        if not bool((n_valid > 0).any()):
            return zero
        centres = ((src_protos + tgt_protos) / n_valid.clamp(min=1).unsqueeze(1)).detach()
        ok = n_valid > 0
        return zero + 0.5 * (
            prototype_contrastive_loss(src_features, src_lab, centres, ok, cfg.temperature)
            + prototype_contrastive_loss(tgt_features, tgt_lab, centres, ok, cfg.temperature))
    raise ValueError(f"aggregation.loss must be 'mmd' or 'contrastive', got {cfg.loss!r}")

"""Decoders of the `vit` backbone: the DAFormer head and the SegFormer all-MLP head.

DAFormer (Hoyer et al., CVPR 2022), "context-aware feature fusion":
    each encoder level -> 1 x 1 embedding to `embed_dim` (a per-token linear layer)
    -> bilinear upsampling to the stride-4 level -> concatenation (4 x embed_dim)
    -> depthwise-separable ASPP (dilation 1: a 1 x 1 conv; 6, 12, 18: depthwise 3 x 3 dilated +
       pointwise, each conv followed by BN + ReLU) -> concatenation -> 3 x 3 bottleneck conv
       + BN + ReLU = the decoder FEATURES [B, embed_dim, H/4, W/4]
    -> dropout 0.1 -> 1 x 1 classifier (`classify`).
SegFormer (Xie et al., NeurIPS 2021): the same embeddings, then a 1 x 1 conv + BN + ReLU over the
concatenation (the features), dropout and the 1 x 1 classifier.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 1, dilation: int = 1,
                 groups: int = 1) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> BatchNorm -> ReLU."""
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=pad, dilation=dilation, groups=groups,
                  bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class SeparableConv(nn.Sequential):
    """Depthwise 3 x 3 (dilated) conv + BN + ReLU, then pointwise 1 x 1 conv + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__()
        self.depthwise = conv_bn_relu(in_channels, in_channels, 3, dilation, groups=in_channels)
        self.pointwise = conv_bn_relu(in_channels, out_channels, 1)


class SeparableASPP(nn.Module):
    """Depthwise-separable atrous spatial pyramid: parallel branches, concatenated, then a
    3 x 3 bottleneck conv. Dilation 1 is a plain 1 x 1 conv branch."""

    def __init__(self, in_channels: int, channels: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            conv_bn_relu(in_channels, channels, 1) if d == 1 else SeparableConv(in_channels, channels, d)
            for d in dilations)
        self.bottleneck = conv_bn_relu(len(dilations) * channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, in_channels, h, w] -> [B, channels, h, w]."""
        return self.bottleneck(torch.cat([branch(x) for branch in self.branches], dim=1))


class _MultiLevelHead(nn.Module):
    """Shared part: per-level 1 x 1 embeddings, upsampling to level 0, fusion, classifier."""

    stride = 4

    def __init__(self, in_channels: Sequence[int], embed_dim: int, num_classes: int,
                 dropout: float) -> None:
        super().__init__()
        self.feature_dim = int(embed_dim)
        self.embed = nn.ModuleList(nn.Conv2d(c, embed_dim, 1) for c in in_channels)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(embed_dim, num_classes, 1)
        self.fuse: nn.Module = nn.Identity()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.conv_seg.weight, 0.0, 0.01)

    def decode(self, feats: Sequence[Tensor]) -> Tensor:
        """Encoder maps [B, in_channels[i], h_i, w_i] -> features [B, embed_dim, h_0, w_0]."""
        size = feats[0].shape[-2:]
        embedded = []
        for layer, f in zip(self.embed, feats):
            e = layer(f)
            if e.shape[-2:] != size:
                e = F.interpolate(e, size=size, mode="bilinear", align_corners=False)
            embedded.append(e)
        return self.fuse(torch.cat(embedded, dim=1))

    def classify(self, features: Tensor) -> Tensor:
        """features [B, embed_dim, h, w] -> logits [B, num_classes, h, w] (dropout in training)."""
        return self.conv_seg(self.dropout(features))

    def auxiliary(self, feats: Sequence[Tensor]) -> None:
        """No auxiliary head for the transformer."""
        return None


class DAFormerHead(_MultiLevelHead):
    """DAFormer decoder with context-aware fusion (separable ASPP, dilations 1, 6, 12, 18)."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, embed_dim: int = 256,
                 dilations: Sequence[int] = (1, 6, 12, 18), dropout: float = 0.1) -> None:
        super().__init__(in_channels, embed_dim, num_classes, dropout)
        self.fuse = SeparableASPP(len(in_channels) * embed_dim, embed_dim, dilations)
        self._init_weights()


class SegFormerHead(_MultiLevelHead):
    """SegFormer all-MLP decoder: linear fusion (1 x 1 conv + BN + ReLU) of the embeddings."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, embed_dim: int = 256,
                 dropout: float = 0.1) -> None:
        super().__init__(in_channels, embed_dim, num_classes, dropout)
        self.fuse = conv_bn_relu(len(in_channels) * embed_dim, embed_dim, 1)
        self._init_weights()


__all__ = ["DAFormerHead", "SegFormerHead", "SeparableASPP"]

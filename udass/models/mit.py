"""Mix Transformer (MiT), the SegFormer encoder (docs/method.md, section 2, the `vit` backbone).

Four stages; stage i starts with an overlapping patch embedding (conv 7 x 7 stride 4, then
3 x 3 stride 2) + LayerNorm, then `depths[i]` blocks of
    x = x + DropPath(EfficientSelfAttention(LN(x)))    keys/values from a grid reduced by sr_ratio
    x = x + DropPath(MixFFN(LN(x)))                    fc1 -> 3 x 3 depthwise conv -> GELU -> fc2
and a final LayerNorm. Outputs at strides 4, 8, 16, 32.

Module and parameter names reproduce the SegFormer release (`patch_embed1.proj`,
`block1.0.attn.kv`, `block1.0.mlp.dwconv.dwconv`, `norm1`, ...), so the ImageNet `mit_b*.pth`
files load strictly; their `head.*` (ImageNet classifier) is the only key left over.
LayerNorm eps: 1e-6 inside blocks and after each stage, 1e-5 in patch embeddings and in the
spatial-reduction norm, as in the release.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability p (training only),
    scaling the kept ones by 1 / (1 - p)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, ...] -> same shape."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class OverlapPatchEmbed(nn.Module):
    """Conv k x k with stride s and padding k // 2, then LayerNorm over channels."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        """x: [B, C_in, H, W] -> tokens [B, h * w, embed_dim], h = ceil(H / s) (odd k), w."""
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention whose keys and values come from the token grid reduced by a
    strided sr_ratio x sr_ratio conv (+ LayerNorm): cost N * N / sr_ratio^2."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"MiT: embed dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        """x: tokens [B, h * w, dim] -> [B, h * w, dim]."""
        b, n, c = x.shape
        heads, d = self.num_heads, c // self.num_heads
        q = self.q(x).reshape(b, n, heads, d).transpose(1, 2)
        if self.sr_ratio > 1:
            grid = x.transpose(1, 2).reshape(b, c, h, w)
            x = self.norm(self.sr(grid).flatten(2).transpose(1, 2))
        k, v = self.kv(x).reshape(b, -1, 2, heads, d).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class DWConv(nn.Module):
    """3 x 3 depthwise conv over the token grid (the `dwconv.dwconv` of the release)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        """x: [B, h * w, dim] -> [B, h * w, dim]."""
        b, n, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    """fc1 (dim -> hidden) -> depthwise 3 x 3 conv -> GELU -> fc2 (hidden -> dim)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        """x: [B, h * w, dim] -> [B, h * w, dim]."""
        return self.fc2(self.act(self.dwconv(self.fc1(x), h, w)))


class Block(nn.Module):
    """Pre-norm transformer block: efficient self-attention and Mix-FFN, each with drop-path."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, sr_ratio: int,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        """x: [B, h * w, dim] -> [B, h * w, dim]."""
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class MixVisionTransformer(nn.Module):
    """MiT encoder. embed_dims / num_heads / depths / sr_ratios / mlp_ratios: one value per stage.

    drop_path: the rate of the last block; it grows linearly from 0 over all blocks.
    """

    def __init__(self, embed_dims: Sequence[int], num_heads: Sequence[int], depths: Sequence[int],
                 sr_ratios: Sequence[int] = (8, 4, 2, 1), mlp_ratios: Sequence[float] = (4, 4, 4, 4),
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.out_channels: list[int] = [int(d) for d in embed_dims]
        self.depths = [int(d) for d in depths]
        rates = _linear_rates(drop_path, sum(self.depths))
        first = 0
        in_chans = 3
        for i in range(4):
            patch, stride = (7, 4) if i == 0 else (3, 2)
            setattr(self, f"patch_embed{i + 1}", OverlapPatchEmbed(in_chans, embed_dims[i], patch, stride))
            setattr(self, f"block{i + 1}", nn.ModuleList(
                Block(embed_dims[i], num_heads[i], mlp_ratios[i], sr_ratios[i], rates[first + j])
                for j in range(self.depths[i])))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(embed_dims[i], eps=1e-6))
            first += self.depths[i]
            in_chans = embed_dims[i]
        self.apply(_init_weights)

    def set_drop_path(self, drop_path: float) -> None:
        """Reset the stochastic-depth rates (linear from 0 to `drop_path` over all blocks)."""
        rates = _linear_rates(drop_path, sum(self.depths))
        blocks = [blk for i in range(4) for blk in getattr(self, f"block{i + 1}")]
        for blk, p in zip(blocks, rates):
            blk.drop_path.p = float(p)

    def forward(self, x: Tensor) -> list[Tensor]:
        """x: [B, 3, H, W] normalised image -> four maps [B, embed_dims[i], h_i, w_i] with
        h_1 = ceil(H / 4), h_{i+1} = ceil(h_i / 2) (strides 4, 8, 16, 32)."""
        outs = []
        b = x.shape[0]
        for i in range(1, 5):
            x, h, w = getattr(self, f"patch_embed{i}")(x)
            for blk in getattr(self, f"block{i}"):
                x = blk(x, h, w)
            x = getattr(self, f"norm{i}")(x)
            x = x.transpose(1, 2).reshape(b, -1, h, w)
            outs.append(x)
        return outs


def _linear_rates(last: float, n: int) -> list[float]:
    """n rates growing linearly from 0 to `last` (stochastic-depth decay rule)."""
    return [last * i / (n - 1) for i in range(n)] if n > 1 else [0.0] * n


def _init_weights(m: nn.Module) -> None:
    """SegFormer's initialisation: truncated normal (std 0.02) for linear layers, fan-out normal
    for convs, unit LayerNorms, zero biases."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


__all__ = ["DropPath", "MixVisionTransformer"]

"""The released networks that `udass convert` reads, described from their public code for the
converter's tests: the same module and parameter names, the same shapes, the same forward pass
(frame t alone and the fusion with frame t-1 at zero flow). Written independently of udass's own
modules, so a converted checkpoint is checked against a second implementation.

- `AccelDeepLab`: `ResNetMulti` of TPS / DA-VSN (tps/model/accel_deeplabv2.py) and, with
  `authors_head`, of the authors' video CNN (accel_deeplabv2_dsp_cd_DFF_gaijin.py, `layer7`).
- `MiT`: the SegFormer / DAFormer `MixVisionTransformer` (mmseg/models/backbones/mix_transformer.py).
- `DAFormerHead`: mmseg `DAFormerHead` with MLP embeddings and the separable ASPP fusion
  (mmseg/models/decode_heads/daformer_head.py, mmcv ConvModule naming `conv` / `bn`), and with
  `sf_layer` as in the authors' `DAFormer_tps` (mix_transformer2_tps.py).
- `EncoderDecoder`, `DAFormerTPS`, `daformer_uda_state`: how the files nest them.
The paper-size defaults are those of the releases; the tests build small members of each.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
MMSEG_MEAN, MMSEG_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def caffe_input(frames: Tensor) -> Tensor:
    """[B, 3, H, W] RGB in [0, 1] -> the TPS data pipeline's input: BGR in [0, 255] minus the mean."""
    return frames[:, [2, 1, 0]] * 255.0 - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)


def mmseg_input(frames: Tensor) -> Tensor:
    """[B, 3, H, W] RGB in [0, 1] -> mmseg's Normalize (to_rgb, ImageNet mean / std in 0..255)."""
    mean, std = torch.tensor(MMSEG_MEAN).view(1, 3, 1, 1), torch.tensor(MMSEG_STD).view(1, 3, 1, 1)
    return (frames * 255.0 - mean) / std


def randomize(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """Every float parameter and buffer drawn at random (BN variances positive), eval mode."""
    with torch.no_grad():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            if not t.is_floating_point():
                continue
            r = torch.randn(t.shape, generator=gen) * 0.2
            t.copy_(r.abs() + 0.5 if name.endswith("running_var") else r)
    return module.eval()


# ----------------------------------------------------------------------- TPS / DA-VSN ResNetMulti
class Bottleneck(nn.Module):
    """Caffe bottleneck: stride in the first 1 x 1 conv, dilated 3 x 3, 1 x 1 expanding x 4."""

    def __init__(self, inplanes: int, planes: int, stride: int, dilation: int,
                 downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ClassifierModule(nn.Module):
    """Sum of dilated 3 x 3 convs with bias (`conv2d_list`)."""

    def __init__(self, inplanes: int, dilations: Sequence[int], out: int) -> None:
        super().__init__()
        self.conv2d_list = nn.ModuleList(nn.Conv2d(inplanes, out, 3, padding=d, dilation=d)
                                         for d in dilations)

    def forward(self, x: Tensor) -> Tensor:
        return sum(conv(x) for conv in self.conv2d_list)


class ClassifierModuleProda(nn.Module):
    """The authors' `layer7`: ASPP to `mid` channels, then `head` = (Dropout2d, bias-free 1 x 1)."""

    def __init__(self, inplanes: int, dilations: Sequence[int], num_classes: int, mid: int) -> None:
        super().__init__()
        self.conv2d_list = nn.ModuleList(nn.Conv2d(inplanes, mid, 3, padding=d, dilation=d)
                                         for d in dilations)
        self.head = nn.Sequential(nn.Dropout2d(0.1), nn.Conv2d(mid, num_classes, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(sum(conv(x) for conv in self.conv2d_list))


class AccelDeepLab(nn.Module):
    """`ResNetMulti` with `multi_level`: trunk, `layer5` (aux, stage 3), `layer6` (or the
    authors' `layer7`), `sf_layer`. Release: layers (3, 4, 23, 3), width 64, dilations
    (6, 12, 18, 24), mid 256."""

    def __init__(self, num_classes: int, layers: Sequence[int] = (3, 4, 23, 3), width: int = 64,
                 dilations: Sequence[int] = (6, 12, 18, 24), authors_head: bool = False,
                 mid: int = 256) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.layer1 = self._make_layer(width, layers[0], 1, 1)
        self.layer2 = self._make_layer(width * 2, layers[1], 2, 1)
        self.layer3 = self._make_layer(width * 4, layers[2], 1, 2)
        self.layer4 = self._make_layer(width * 8, layers[3], 1, 4)
        self.layer5 = ClassifierModule(width * 16, dilations, num_classes)
        if authors_head:
            self.layer7 = ClassifierModuleProda(width * 32, dilations, num_classes, mid)
        else:
            self.layer6 = ClassifierModule(width * 32, dilations, num_classes)
        self.sf_layer = nn.Conv2d(2 * num_classes, num_classes, 1, bias=False)

    def _make_layer(self, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4 or dilation in (2, 4):
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, dilation, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes, 1, dilation, None) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def frame(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Caffe-normalised [B, 3, H, W] -> (main logits, aux logits) at stride 8."""
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        aux = self.layer5(x)
        x = self.layer4(x)
        main = self.layer7(x) if hasattr(self, "layer7") else self.layer6(x)
        return main, aux

    def forward(self, cf: Tensor, kf: Tensor) -> Tensor:
        """The fused prediction `pred` at zero flow (the warp of kf is the identity)."""
        return self.sf_layer(torch.cat([self.frame(cf)[0], self.frame(kf)[0]], dim=1))


# ----------------------------------------------------------------------- MiT (SegFormer release)
class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, sr: int) -> None:
        super().__init__()
        self.heads, self.sr_ratio = heads, sr
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        if sr > 1:
            self.sr = nn.Conv2d(dim, dim, sr, sr)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        b, n, c = x.shape
        d = c // self.heads
        q = self.q(x).reshape(b, n, self.heads, d).permute(0, 2, 1, 3)
        if self.sr_ratio > 1:
            x = self.norm(self.sr(x.permute(0, 2, 1).reshape(b, c, h, w)).reshape(b, c, -1).permute(0, 2, 1))
        kv = self.kv(x).reshape(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        attn = ((q @ kv[0].transpose(-2, -1)) * d ** -0.5).softmax(dim=-1)
        return self.proj((attn @ kv[1]).transpose(1, 2).reshape(b, n, c))


class DWConv(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        b, n, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        return self.fc2(F.gelu(self.dwconv(self.fc1(x), h, w)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, sr: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, sr)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * 4)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x), h, w)


class OverlapPatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int, patch: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, stride, padding=patch // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        x = self.proj(x)
        _, _, h, w = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class MiT(nn.Module):
    """`mit_b5` by default: widths (64, 128, 320, 512), heads (1, 2, 5, 8), depths (3, 6, 40, 3)."""

    def __init__(self, dims: Sequence[int] = (64, 128, 320, 512), heads: Sequence[int] = (1, 2, 5, 8),
                 depths: Sequence[int] = (3, 6, 40, 3), srs: Sequence[int] = (8, 4, 2, 1)) -> None:
        super().__init__()
        in_chans = 3
        for i in range(4):
            patch, stride = (7, 4) if i == 0 else (3, 2)
            setattr(self, f"patch_embed{i + 1}", OverlapPatchEmbed(in_chans, dims[i], patch, stride))
            setattr(self, f"block{i + 1}", nn.ModuleList(Block(dims[i], heads[i], srs[i])
                                                         for _ in range(depths[i])))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dims[i], eps=1e-6))
            in_chans = dims[i]

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i in range(1, 5):
            x, h, w = getattr(self, f"patch_embed{i}")(x)
            for blk in getattr(self, f"block{i}"):
                x = blk(x, h, w)
            x = getattr(self, f"norm{i}")(x).reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
            outs.append(x)
        return outs


# ----------------------------------------------------------------------- mmseg DAFormer head
class ConvModule(nn.Module):
    """mmcv ConvModule with BN and ReLU: `conv` (no bias), `bn`."""

    def __init__(self, cin: int, cout: int, k: int, dilation: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class DepthwiseSeparableConvModule(nn.Module):
    def __init__(self, cin: int, cout: int, dilation: int) -> None:
        super().__init__()
        self.depthwise_conv = ConvModule(cin, cin, 3, dilation, groups=cin)
        self.pointwise_conv = ConvModule(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class MLP(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cin, cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x.flatten(2).transpose(1, 2))


class ASPPWrapper(nn.Module):
    """`fuse_layer` of `daformer_sepaspp` (pool False, no context layer)."""

    def __init__(self, cin: int, channels: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.aspp_modules = nn.ModuleList(
            ConvModule(cin, channels, 1) if d == 1 else DepthwiseSeparableConvModule(cin, channels, d)
            for d in dilations)
        self.bottleneck = ConvModule(len(dilations) * channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.bottleneck(torch.cat([m(x) for m in self.aspp_modules], dim=1))


class DAFormerHead(nn.Module):
    """Release: in (64, 128, 320, 512), embed 256, channels 256, dilations (1, 6, 12, 18)."""

    def __init__(self, num_classes: int, in_channels: Sequence[int] = (64, 128, 320, 512),
                 embed: int = 256, dilations: Sequence[int] = (1, 6, 12, 18),
                 fusion_layer: bool = False) -> None:
        super().__init__()
        self.embed_layers = nn.ModuleDict({str(i): MLP(c, embed) for i, c in enumerate(in_channels)})
        self.fuse_layer = ASPPWrapper(len(in_channels) * embed, embed, dilations)
        self.conv_seg = nn.Conv2d(embed, num_classes, 1)
        self.dropout = nn.Dropout2d(0.1)
        if fusion_layer:
            self.sf_layer = nn.Conv2d(2 * num_classes, num_classes, 1, bias=False)

    def forward(self, feats: list[Tensor]) -> Tensor:
        size = feats[0].shape[2:]
        embedded = []
        for i, f in enumerate(feats):
            e = self.embed_layers[str(i)](f).permute(0, 2, 1).reshape(f.shape[0], -1, *f.shape[2:])
            if e.shape[2:] != size:
                e = F.interpolate(e, size=size, mode="bilinear", align_corners=False)
            embedded.append(e)
        return self.conv_seg(self.dropout(self.fuse_layer(torch.cat(embedded, dim=1))))


class EncoderDecoder(nn.Module):
    """mmseg segmentor: `backbone`, `decode_head`."""

    def __init__(self, backbone: MiT, decode_head: DAFormerHead) -> None:
        super().__init__()
        self.backbone, self.decode_head = backbone, decode_head

    def forward(self, x: Tensor) -> Tensor:
        return self.decode_head(self.backbone(x))


class DAFormerTPS(nn.Module):
    """The authors' video ViT: `model` (MiT-B5), `decoder` (DAFormer head with `sf_layer`)."""

    def __init__(self, model: MiT, decoder: DAFormerHead) -> None:
        super().__init__()
        self.model, self.decoder = model, decoder

    def frame(self, x: Tensor) -> Tensor:
        return self.decoder(self.model(x))

    def forward(self, cf: Tensor, kf: Tensor) -> Tensor:
        """`pred` at zero flow (the warp of kf's logits is the identity)."""
        return self.decoder.sf_layer(torch.cat([self.frame(cf), self.frame(kf)], dim=1))


def daformer_uda_state(student: EncoderDecoder, ema: EncoderDecoder | None,
                       imnet: EncoderDecoder | None) -> dict[str, Tensor]:
    """The state dict of DAFormer's DACS module: `model.`, `ema_model.`, `imnet_model.`."""
    state = {f"model.{k}": v for k, v in student.state_dict().items()}
    for prefix, net in (("ema_model.", ema), ("imnet_model.", imnet)):
        if net is not None:
            state.update({prefix + k: v for k, v in net.state_dict().items()})
    return state

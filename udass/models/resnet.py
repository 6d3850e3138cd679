"""ResNet encoders in the Caffe-style DeepLab layout (docs/method.md, section 2, the `cnn` backbone).

The layout of DeepLabV2 as used by AdvEnt, DA-VSN and TPS:
- stem: 7 x 7 conv stride 2, batch norm, ReLU, 3 x 3 max-pool stride 2 in ceil mode;
- a bottleneck block carries its stride in the FIRST 1 x 1 conv (Caffe style; torchvision puts
  it in the 3 x 3 conv), a basic block (ResNet-18) in its first 3 x 3 conv;
- stages 3 and 4 keep stride 1 and dilate their 3 x 3 convs by 2 and 4: output stride 8.

Parameter and buffer names follow torchvision (`conv1`, `bn1`, `layer1.0.conv1`, ...,
`layer1.0.downsample.0`), which is also the layout of the DeepLab ImageNet ResNet-101 file once
its `Scale.` prefix is dropped, so both load strictly (`udass.models.load_pretrained`).
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """Batch norm that always normalises with its stored statistics and never trains its affine
    parameters (`weight`, `bias` have requires_grad False), whatever `train()` says.

    Same state-dict keys as `nn.BatchNorm2d`, so checkpoints move between the two.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__(num_features, eps=eps)
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenBatchNorm2d":
        return super().train(False)


BN_MODES = ("batch", "frozen")


def _norm(channels: int, bn: str) -> nn.BatchNorm2d:
    """A batch norm of the ResNet encoder, affine parameters frozen in both modes:
    "batch" normalises with the batch's statistics in training and updates its running
    statistics (used in eval), as ADVENT / TPS / the authors' code train DeepLabV2;
    "frozen" always normalises with its stored statistics (FrozenBatchNorm2d)."""
    if bn == "frozen":
        return FrozenBatchNorm2d(channels)
    norm = nn.BatchNorm2d(channels)
    norm.weight.requires_grad_(False)
    norm.bias.requires_grad_(False)
    return norm


class BasicBlock(nn.Module):
    """Two 3 x 3 convs (ResNet-18/34); the stride sits in the first, both are dilated."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, bn: str = "batch") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn1 = _norm(planes, bn)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = _norm(planes, bn)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, inplanes, H, W] -> [B, planes, H / stride, W / stride]."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1 x 1 (carries the stride, Caffe style) -> 3 x 3 dilated -> 1 x 1 expanding by 4."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, bn: str = "batch") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride, bias=False)
        self.bn1 = _norm(planes, bn)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = _norm(planes, bn)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = _norm(planes * 4, bn)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, inplanes, H, W] -> [B, 4 * planes, ceil(H / stride), ceil(W / stride)]."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """DeepLab ResNet trunk (no classifier): four stages at strides 4, 8, 8, 8.

    block: "basic" (ResNet-18 style) or "bottleneck" (ResNet-50/101); layers: blocks per stage;
    width: channels of the stem and of stage 1's convs (64 for the published networks);
    bn: "batch" (batch statistics in training, the paper's CNN recipe) or "frozen" (stored
        statistics always, `FrozenBatchNorm2d`); affine parameters are frozen in both.
    """

    def __init__(self, block: str, layers: Sequence[int], width: int = 64,
                 bn: str = "batch") -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"ResNet block must be one of {sorted(BLOCKS)}, got {block!r}")
        if bn not in BN_MODES:
            raise ValueError(f"ResNet bn must be one of {BN_MODES}, got {bn!r}")
        self.block = BLOCKS[block]
        self.bn_mode = bn
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, padding=3, bias=False)
        self.bn1 = _norm(width, bn)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.layer1 = self._make_stage(width, layers[0], stride=1, dilation=1)
        self.layer2 = self._make_stage(width * 2, layers[1], stride=2, dilation=1)
        self.layer3 = self._make_stage(width * 4, layers[2], stride=1, dilation=2)
        self.layer4 = self._make_stage(width * 8, layers[3], stride=1, dilation=4)
        e = self.block.expansion
        self.out_channels: list[int] = [width * e, width * 2 * e, width * 4 * e, width * 8 * e]
        self._init_weights()

    def _make_stage(self, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
        out = planes * self.block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, out, 1, stride, bias=False),
                                       _norm(out, self.bn_mode))
        stage = [self.block(self.inplanes, planes, stride, dilation, downsample, self.bn_mode)]
        self.inplanes = out
        stage += [self.block(out, planes, 1, dilation, None, self.bn_mode) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        """x: [B, 3, H, W] normalised image -> the four stage outputs
        [B, out_channels[i], h_i, w_i] with h_1 = ceil((ceil(H/2) - 1) / 2) + 1 (ceil-mode pool)
        and h_2 = h_3 = h_4 = ceil(h_1 / 2): about H / 4 and H / 8 (65 x 129 for 512 x 1024)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c1, c2, c3, c4]


__all__ = ["BN_MODES", "BasicBlock", "Bottleneck", "FrozenBatchNorm2d", "ResNet"]

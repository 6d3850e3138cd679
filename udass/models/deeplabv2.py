"""DeepLabV2 decoder: the ASPP classifier and its auxiliary twin (docs/method.md, section 2, `cnn`).

As in AdvEnt / DA-VSN / TPS ("DeepLabV2 multi-level"): the classifier on stage 4 sums four
3 x 3 convs with dilations 6, 12, 18, 24 that each map the features straight to class scores;
an identical classifier on stage 3 gives auxiliary logits (loss weight 0.1 in the trainer).
The decoder features of this network are the stage-4 features the classifier consumes.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn


class ASPPClassifier(nn.Module):
    """Sum of dilated 3 x 3 convs (bias on), each `in_channels -> num_classes`.

    Weights are drawn from N(0, 0.01) and biases start at zero, as in DeepLabV2.
    """

    def __init__(self, in_channels: int, num_classes: int,
                 dilations: Sequence[int] = (6, 12, 18, 24)) -> None:
        super().__init__()
        self.conv2d_list = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=d, dilation=d, bias=True)
            for d in dilations)
        for conv in self.conv2d_list:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, in_channels, h, w] -> logits [B, num_classes, h, w]."""
        out = self.conv2d_list[0](x)
        for conv in self.conv2d_list[1:]:
            out = out + conv(x)
        return out


class DeepLabV2Head(nn.Module):
    """Decoder of the `cnn` backbone over the ResNet stage outputs.

    in_channels: channels of the four stages; the classifier reads stage 4, the auxiliary
    classifier stage 3. `feature_dim` = stage-4 channels (2048 for ResNet-101).
    """

    stride = 8

    def __init__(self, in_channels: Sequence[int], num_classes: int,
                 dilations: Sequence[int] = (6, 12, 18, 24), aux: bool = True) -> None:
        super().__init__()
        self.feature_dim = int(in_channels[3])
        self.classifier = ASPPClassifier(in_channels[3], num_classes, dilations)
        self.aux_classifier = ASPPClassifier(in_channels[2], num_classes, dilations) if aux else None

    def decode(self, feats: Sequence[Tensor]) -> Tensor:
        """Stage outputs -> decoder features: stage 4 itself, [B, feature_dim, h, w] (stride 8)."""
        return feats[3]

    def classify(self, features: Tensor) -> Tensor:
        """features [B, feature_dim, h, w] -> logits [B, num_classes, h, w]."""
        return self.classifier(features)

    def auxiliary(self, feats: Sequence[Tensor]) -> Tensor | None:
        """Auxiliary logits of stage 3 [B, num_classes, h, w], or None without an aux head."""
        return None if self.aux_classifier is None else self.aux_classifier(feats[2])

"""The clip segmentation model: one network on both frames + flow-guided logit fusion
(docs/method.md, section 2; ACCEL-style, as in DA-VSN / TPS).

    Z_t     = f(I_t)                         (with gradient)
    Z_{t-1} = f(I_{t-1})                     (no gradient while training)
    Z       = W [Z_t, warp(Z_{t-1}, F_{t->t-1} resized to the logit grid, vectors scaled)]

W is a bias-free 1 x 1 conv (2C -> C) initialised to [I | 0], so training starts from
"current frame only". A one-frame clip (an image) is its frame twice with zero flow: the
network runs once and Z = W [Z_t, Z_t] (no warp needed; with W = [I | 0] that is Z_t).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from udass.data.clip import pair_view
from udass.data.flow import resize_flow, warp

# Input conventions: how frames in [0, 1] (RGB) become network inputs.
# "imagenet": RGB, (x - mean) / std (torchvision, SegFormer);
# "caffe": BGR in [0, 255] minus the Caffe mean, no std (the DeepLab ImageNet ResNet-101 file).
INPUT_STYLES: dict[str, tuple[tuple[int, int, int], tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0, 1, 2), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "caffe": ((2, 1, 0), (104.00698793 / 255, 116.66876762 / 255, 122.67891434 / 255),
              (1 / 255, 1 / 255, 1 / 255)),
}


class InputNormalize(nn.Module):
    """out = (x[:, order] - mean) / std for frames x in [0, 1].

    The convention is stored in persistent buffers (`order`, `mean`, `std`), so a saved model
    carries the convention its encoder weights expect (`set_style`).
    """

    def __init__(self, style: str = "imagenet") -> None:
        super().__init__()
        self.register_buffer("order", torch.zeros(3, dtype=torch.long))
        self.register_buffer("mean", torch.zeros(1, 3, 1, 1))
        self.register_buffer("std", torch.ones(1, 3, 1, 1))
        self.set_style(style)

    def set_style(self, style: str) -> None:
        """Switch to one of INPUT_STYLES ("imagenet" or "caffe")."""
        order, mean, std = INPUT_STYLES[style]
        with torch.no_grad():
            self.order.copy_(torch.tensor(order))
            self.mean.copy_(torch.tensor(mean).view(1, 3, 1, 1))
            self.std.copy_(torch.tensor(std).view(1, 3, 1, 1))

    @property
    def style(self) -> str:
        """The name of the current convention (or "custom")."""
        for name, (order, mean, _) in INPUT_STYLES.items():
            if self.order.tolist() == list(order) and torch.allclose(
                    self.mean.flatten().cpu(), torch.tensor(mean)):
                return name
        return "custom"

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, 3, H, W] in [0, 1] -> [B, 3, H, W] network input."""
        return (x.index_select(1, self.order) - self.mean) / self.std


class TemporalFusion(nn.Module):
    """Flow-guided fusion of the current and the warped previous logits (bias-free 1 x 1 conv,
    identity on the current half, zero on the previous half at initialisation)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * num_classes, num_classes, 1, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """W = [I | 0]: the fused logits equal the current frame's."""
        c = self.conv.out_channels
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, :c, 0, 0].copy_(torch.eye(c))

    def fuse(self, logits_t: Tensor, logits_prev_warped: Tensor) -> Tensor:
        """W [Z_t, Z'] for two logit maps [B, C, h, w] already on the same grid -> [B, C, h, w]."""
        return self.conv(torch.cat([logits_t, logits_prev_warped], dim=1))

    def forward(self, logits_t: Tensor, logits_prev: Tensor, flow: Tensor) -> Tensor:
        """logits_t, logits_prev: [B, C, h, w]; flow: [B, 2, H, W] backward flow t -> t-1 in
        pixels of the input frame. The flow is resized to (h, w) with its vectors scaled, the
        previous logits are warped to frame t, and both are fused -> [B, C, h, w]."""
        flow = resize_flow(flow.to(logits_prev.dtype), tuple(logits_t.shape[-2:]))
        return self.fuse(logits_t, warp(logits_prev, flow))


@dataclass
class FrameOutput:
    """One frame through the network: logits [B, C, h, w], decoder features [B, D, h', w'],
    auxiliary logits [B, C, h, w] or None, and the encoder's stage outputs (strides 4-32 for
    the ViT, 4-8 for the CNN; the last one is the bottleneck of the ImageNet feature distance)."""

    logits: Tensor
    features: Tensor
    aux: Tensor | None
    encoder: list[Tensor] | None = None


class SegModel(nn.Module):
    """Segmentation network over clips (docs/architecture.md, Contracts: Models). Build it with
    `udass.models.build_model`.

    Attributes: `num_classes`, `feature_dim` (D), `backbone_name` ("cnn" | "vit"), `variant`,
    `output_stride` (8 for the CNN, 4 for the ViT).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, num_classes: int, *,
                 backbone_name: str, variant: str, temporal_fusion: bool = True,
                 input_style: str = "imagenet") -> None:
        super().__init__()
        self.normalize = InputNormalize(input_style)
        self.encoder = encoder
        self.decoder = decoder
        self.temporal = TemporalFusion(num_classes) if temporal_fusion else None
        self.num_classes = int(num_classes)
        self.feature_dim = int(decoder.feature_dim)
        self.output_stride = int(decoder.stride)
        self.backbone_name = backbone_name
        self.variant = variant

    # ------------------------------------------------------------------ one frame
    def segment(self, image: Tensor, with_aux: bool = True) -> FrameOutput:
        """image: [B, 3, H, W] in [0, 1] -> FrameOutput of that frame alone."""
        feats = self.encoder(self.normalize(image))
        features = self.decoder.decode(feats)
        aux = self.decoder.auxiliary(feats) if with_aux else None
        return FrameOutput(self.decoder.classify(features), features, aux, list(feats))

    def classify(self, features: Tensor) -> Tensor:
        """Decoder features [B, D, h', w'] -> logits [B, C, h, w] (no temporal fusion)."""
        return self.decoder.classify(features)

    # ------------------------------------------------------------------ a clip
    def forward(self, frames: Tensor, flows: Tensor, with_aux: bool = True) -> dict[str, Any]:
        """frames: [B, K, 3, H, W] float in [0, 1], newest first (K >= 1; frames 0 and 1 are
        used); flows: [B, K-1, 2, H, W] backward flow t -> t-1 in pixels (flows[:, 0] is used);
        with_aux: compute the auxiliary head (False: `aux` is None; a pass whose loss does not use
        it must not compute it under DDP, whose reducer waits for gradients of what ran).

        Returns a dict:
          logits         [B, C, h, w]    temporally fused (= logits_t without temporal fusion)
          logits_t       [B, C, h, w]    frame t alone
          features       [B, D, h', w']  frame t's decoder features before the classifier
          aux            [B, C, h, w] or None   CNN auxiliary logits of frame t
          logits_prev    [B, C, h, w]    frame t-1 alone, on frame t-1's grid (not warped)
          features_prev  [B, D, h', w']  frame t-1's decoder features (not warped)
          bottleneck     [B, E, h'', w'']  frame t's last encoder stage (ImageNet feature distance)
        In training mode frame t-1 runs without gradient. For K = 1 the network runs once and
        logits_prev / features_prev are the very same tensors as logits_t / features.
        h, w = ceil-mode 1/8 (CNN: about H/8 + 1) or ceil(H/4) (ViT).
        """
        _check_clip(frames, flows)
        cur, prev, flow, static = pair_view(frames, flows)
        out_t = self.segment(cur, with_aux=with_aux)
        if static:
            out_p = out_t
        else:
            grad = contextlib.nullcontext() if not self.training else torch.no_grad()
            with grad:
                out_p = self.segment(prev, with_aux=False)
        return {
            "logits": self._fuse(out_t.logits, out_p.logits, flow, static),
            "logits_t": out_t.logits,
            "features": out_t.features,
            "aux": out_t.aux,
            "logits_prev": out_p.logits,
            "features_prev": out_p.features,
            "bottleneck": out_t.encoder[-1],
        }

    def fuse_static(self, logits_t: Tensor) -> Tensor:
        """The temporally fused logits [B, C, h, w] of a one-frame clip whose frame t gave
        `logits_t` [B, C, h, w]: its previous frame is itself with zero flow (identity without
        temporal fusion). The previous-frame half carries no gradient while training."""
        return self._fuse(logits_t, logits_t, logits_t, True)

    def _fuse(self, logits_t: Tensor, logits_prev: Tensor, flow: Tensor, static: bool) -> Tensor:
        if self.temporal is None:
            return logits_t
        if static:
            # the previous frame is frame t with zero flow: no warp; its half carries no gradient,
            # exactly as when frame t-1 is a separate (no-grad) pass
            prev = logits_t.detach() if self.training else logits_t
            return self.temporal.fuse(logits_t, prev)
        return self.temporal(logits_t, logits_prev, flow)

    # ------------------------------------------------------------------ optimisation
    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by optimiser role: {"backbone": encoder, "head": decoder
        (classifier and auxiliary head included), "fusion": the temporal fusion (empty without
        it)}. Frozen parameters (batch-norm affine parameters of the CNN) are left out."""
        def trainable(m: nn.Module | None) -> list[nn.Parameter]:
            return [] if m is None else [p for p in m.parameters() if p.requires_grad]

        return {"backbone": trainable(self.encoder), "head": trainable(self.decoder),
                "fusion": trainable(self.temporal)}

    def extra_repr(self) -> str:
        return (f"backbone={self.backbone_name}, variant={self.variant}, "
                f"num_classes={self.num_classes}, feature_dim={self.feature_dim}")


def _check_clip(frames: Tensor, flows: Tensor) -> None:
    if frames.dim() != 5 or frames.shape[2] != 3 or frames.shape[1] < 1:
        raise ValueError(f"model input frames must be [B, K, 3, H, W] with K >= 1, "
                         f"got {tuple(frames.shape)}")
    b, k, _, h, w = frames.shape
    if k > 1 and tuple(flows.shape) != (b, k - 1, 2, h, w):
        raise ValueError(f"model input flows must be [{b}, {k - 1}, 2, {h}, {w}] for frames "
                         f"{tuple(frames.shape)}, got {tuple(flows.shape)}")


__all__ = ["FrameOutput", "INPUT_STYLES", "InputNormalize", "SegModel", "TemporalFusion"]

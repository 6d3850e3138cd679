"""HRDA multi-resolution training and inference around a udass segmentation network (images).

HRDA (Hoyer et al., ECCV 2022), as its reference code and the authors' image configs use it
(scales 1 and 0.5, detail crop 512, class-wise attention, detail loss 0.1, slide inference):

    X        [B, 1, 3, H, W] the full-resolution training crop (paper: 1024 x 1024)
    context  X_c = resize(X, s)                      s = context_scale (0.5): 512 x 512
    detail   X_d = X[box], box an h_d x w_d window   (512 x 512) at full resolution, its corner on
             multiples of `divisible` = r / s (r = the network's output stride), so the window's
             edges fall on the context logit grid
    Z_c = f(X_c), Z_d = f(X_d)                       the network's (temporally fused) logits
    a   = sigmoid(attention(encoder features of X_c))    class-wise, [B, C, h_c, w_c], zero
                                                         outside the box in training
    fused = up(a) * insert(Z_d) + up((1 - a) * Z_c)   on the full crop's output grid H/r x W/r

`insert` puts Z_d into zeros at box / r; `up` resizes the context grid to the output grid
(bilinear, x 1/s for the ViT). The box mask is built on the output grid and resized (nearest)
to the context grid: exactly HRDA's mask for the ViT, whose grids are exact multiples; the CNN's
ceil-mode grid (H/8 + 1) is resampled bilinearly onto H/8 x W/8 (`docs/method.md`).

Inference (eval mode: teacher pseudo-labels and evaluation): the detail prediction comes from
overlapping windows (detail size, stride half of it) over the whole input, averaged where they
overlap; the attention is not masked. An input larger than `eval_window` is itself covered by
overlapping windows (`eval_stride`; paper: 1024 x 1024 windows, stride 512, over 2048 x 1024),
each predicted as above and averaged on the output grid (`slide_inference`).

The wrapper keeps the network's model contract (docs/architecture.md) for one-frame clips
and adds the detail prediction and its windows; crop and window sizes are parameters, so tests
run it at tiny sizes.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from udass.errors import UdassError
from udass.models.daformer_head import SegFormerHead
from udass.models.deeplabv2 import DeepLabV2Head
from udass.models.temporal import SegModel

Box = tuple[int, int, int, int]  # (y1, y2, x1, x2) in pixels of the full-resolution input


# ----------------------------------------------------------------------------------- windows
def slide_windows(size: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> list[Box]:
    """Overlapping windows over an image of size (H, W), as mmseg / HRDA slide inference:
    rows of `ceil((H - h) / s_h) + 1` windows (one when the window covers the image), each
    started at a multiple of the stride and shifted back to end inside the image. A window
    larger than the image is the whole image."""
    (h_img, w_img), (h, w), (sh, sw) = size, window, stride
    rows = max(h_img - h + sh - 1, 0) // sh + 1
    cols = max(w_img - w + sw - 1, 0) // sw + 1
    boxes = []
    for i in range(rows):
        for j in range(cols):
            y2, x2 = min(i * sh + h, h_img), min(j * sw + w, w_img)
            boxes.append((max(y2 - h, 0), y2, max(x2 - w, 0), x2))
    return boxes


def random_detail_boxes(batch: int, size: Sequence[int], detail: Sequence[int], divisible: int,
                        generator: torch.Generator | None = None) -> Tensor:
    """One detail window per sample: int64 [B, 4] rows (y1, y2, x1, x2) of an h_d x w_d window
    inside an H x W crop, corners drawn uniformly among the multiples of `divisible` that keep it
    inside (from `generator`, default torch's global one)."""
    (h_img, w_img), (h, w) = size, detail
    if h > h_img or w > w_img:
        raise UdassError(f"HRDA detail crop {h} x {w} is larger than the training crop {h_img} x "
                         f"{w_img}; use a smaller model.hrda_detail_size")
    ys = torch.randint(0, (h_img - h) // divisible + 1, (batch,), generator=generator) * divisible
    xs = torch.randint(0, (w_img - w) // divisible + 1, (batch,), generator=generator) * divisible
    return torch.stack([ys, ys + h, xs, xs + w], dim=1)


def _scaled(box: Sequence[int], scale: float) -> Box:
    y1, y2, x1, x2 = (v * scale for v in box)
    if any(abs(v - round(v)) > 1e-6 for v in (y1, y2, x1, x2)):
        raise ValueError(f"box {tuple(box)} x {scale} does not fall on the grid")
    return round(y1), round(y2), round(x1), round(x2)


def crop_boxes(x: Tensor, boxes: Tensor, scale: float = 1.0) -> Tensor:
    """Each sample's window: x [B, ..., H', W'] on a grid `scale` times the input's (1 for
    labels, weights and masks at input resolution; 1/r for logits) -> [B, ..., h, w].
    boxes: [B, 4] (y1, y2, x1, x2) in input pixels, all of one size."""
    rows = [_scaled(b, scale) for b in boxes.tolist()]
    if len(set(rows)) == 1:
        y1, y2, x1, x2 = rows[0]
        return x[..., y1:y2, x1:x2]
    return torch.stack([x[i, ..., y1:y2, x1:x2] for i, (y1, y2, x1, x2) in enumerate(rows)])


def insert_boxes(x: Tensor, boxes: Tensor, size: Sequence[int], scale: float) -> Tensor:
    """Place each sample's window x [B, C, h, w] into zeros [B, C, H', W'] (size) at its box
    scaled by `scale` (differentiable)."""
    out = []
    for i, b in enumerate(boxes.tolist()):
        y1, y2, x1, x2 = _scaled(b, scale)
        out.append(F.pad(x[i], (x1, size[1] - x2, y1, size[0] - y2)))
    return torch.stack(out)


def box_mask(boxes: Tensor, size: Sequence[int], scale: float) -> Tensor:
    """float [B, 1, H', W']: 1 inside each sample's box scaled by `scale`, 0 outside."""
    rows = torch.tensor([_scaled(b, scale) for b in boxes.tolist()])
    ys = torch.arange(size[0]).view(1, -1)
    xs = torch.arange(size[1]).view(1, -1)
    in_y = (ys >= rows[:, 0:1]) & (ys < rows[:, 1:2])
    in_x = (xs >= rows[:, 2:3]) & (xs < rows[:, 3:4])
    return (in_y[:, :, None] & in_x[:, None, :]).unsqueeze(1).float()


def _resize(x: Tensor, size: Sequence[int], mode: str = "bilinear") -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=tuple(size), mode="nearest")
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def context_images(images: Tensor, scale: float) -> Tensor:
    """HRDA's context input: images [B, 3, H, W] resized by `scale` (bilinear, as HRDA) ->
    [B, 3, H s, W s]. Also what the frozen ImageNet encoder of the feature distance sees."""
    return F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False)


def slide_inference(predict: Callable[[Tensor], Tensor], images: Tensor, window: Sequence[int],
                    stride: Sequence[int], out_stride: int) -> Tensor:
    """Average of `predict` over overlapping windows, on the output grid.

    predict: images [N, 3, h, w] -> logits [N, C, h', w'] (resized to h / r x w / r when the
    network's grid differs); images: [B, 3, H, W]; window, stride: (h, w) in pixels, multiples of
    out_stride r like H and W. All windows go through `predict` as one batch. Returns
    [B, C, H / r, W / r]: each output cell the mean of the windows covering it.
    """
    b, _, h_img, w_img = images.shape
    r = out_stride
    if h_img % r or w_img % r:
        raise UdassError(f"slide inference: the input {h_img} x {w_img} must be a multiple of the "
                         f"output stride {r}; resize or pad it")
    boxes = slide_windows((h_img, w_img), window, stride)
    crops = torch.cat([images[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in boxes])
    logits = predict(crops)
    size = (h_img // r, w_img // r)
    total = logits.new_zeros(b, logits.shape[1], *size)
    count = torch.zeros(1, 1, *size, dtype=logits.dtype, device=logits.device)
    for i, box in enumerate(boxes):
        y1, y2, x1, x2 = _scaled(box, 1 / r)
        part = _resize(logits[i * b:(i + 1) * b], (y2 - y1, x2 - x1))
        total = total + F.pad(part, (x1, size[1] - x2, y1, size[0] - y2))
        count[:, :, y1:y2, x1:x2] += 1
    return total / count


# ----------------------------------------------------------------------------------- model
def scale_attention_head(net: SegModel) -> nn.Module:
    """HRDA's learned scale attention: a second decoder of the network's family predicting one
    attention logit per class from the context encoder features. ViT: per-level 1 x 1 embeddings
    to the decoder width, a 1 x 1 conv + BN + ReLU fusion (HRDA replaces DAFormer's ASPP by it),
    dropout, 1 x 1 classifier. CNN: the DeepLabV2 ASPP classifier on the last stage."""
    if net.backbone_name == "vit":
        return SegFormerHead(net.encoder.out_channels, net.num_classes, net.feature_dim)
    dilations = [c.dilation[0] for c in net.decoder.classifier.conv2d_list]
    return DeepLabV2Head(net.encoder.out_channels, net.num_classes, dilations, aux=False)


class HRDAModel(nn.Module):
    """HRDA around a `SegModel` for one-frame clips (see the module docstring).

    net: the network (its weights are shared by both scales); context_scale: s; detail_size:
    (h_d, w_d) in input pixels; eval_window, eval_stride: windows of inference over inputs larger
    than eval_window. Attributes mirror SegModel (`num_classes`, `feature_dim`, `output_stride`,
    `backbone_name`, `variant`, `encoder`, `normalize`, `classify`) so the trainer and the
    teacher treat it like the network; `attention` is the scale-attention head (a head: lr x
    head_lr_mult).
    """

    def __init__(self, net: SegModel, context_scale: float = 0.5,
                 detail_size: Sequence[int] = (512, 512),
                 eval_window: Sequence[int] = (1024, 1024),
                 eval_stride: Sequence[int] = (512, 512)) -> None:
        super().__init__()
        if not 0 < context_scale < 1:
            raise UdassError(f"model.hrda_context_scale={context_scale}: expected a scale in (0, 1)")
        self.net = net
        self.attention = scale_attention_head(net)
        self.context_scale = float(context_scale)
        self.detail_size = tuple(int(v) for v in detail_size)
        self.eval_window = tuple(int(v) for v in eval_window)
        self.eval_stride = tuple(int(v) for v in eval_stride)
        r = net.output_stride
        # the detail window's corners lie on the context grid: multiples of r / s input pixels
        self.divisible = round(r / self.context_scale)
        for name, v in (("detail_size", self.detail_size), ("eval_window", self.eval_window),
                        ("eval_stride", self.eval_stride)):
            if any(x % self.divisible for x in v):
                raise UdassError(f"model.hrda_{name}={v}: expected multiples of {self.divisible} "
                                 f"(output stride {r} / context scale {self.context_scale})")
        self.detail_stride = tuple(max(r, (v // 2) // r * r) for v in self.detail_size)

    # ------------------------------------------------------------------ SegModel's attributes
    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    @property
    def feature_dim(self) -> int:
        return self.net.feature_dim

    @property
    def output_stride(self) -> int:
        return self.net.output_stride

    @property
    def backbone_name(self) -> str:
        return self.net.backbone_name

    @property
    def variant(self) -> str:
        return self.net.variant

    @property
    def encoder(self) -> nn.Module:
        return self.net.encoder

    @property
    def normalize(self) -> nn.Module:
        return self.net.normalize

    def classify(self, features: Tensor) -> Tensor:
        """Decoder features [B, D, h', w'] -> logits [B, C, h, w] (no temporal fusion)."""
        return self.net.classify(features)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """{"backbone": encoder, "head": decoder, temporal fusion and the scale attention}."""
        groups = self.net.param_groups()
        groups["head"] = groups["head"] + [p for p in self.attention.parameters() if p.requires_grad]
        return groups

    # ------------------------------------------------------------------ pieces
    def context(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] -> the context input [B, 3, H s, W s] (`context_images`)."""
        return context_images(images, self.context_scale)

    def _scale_pass(self, images: Tensor, with_attention: bool) -> dict[str, Tensor]:
        out = self.net.segment(images, with_aux=False)
        res = {"logits": self.net.fuse_static(out.logits), "features": out.features,
               "bottleneck": out.encoder[-1]}
        if with_attention:
            res["attention"] = torch.sigmoid(self.attention.classify(self.attention.decode(out.encoder)))
        return res

    def _fuse_scales(self, ctx: dict[str, Tensor], detail: Tensor, size: Sequence[int],
                     mask: Tensor | None) -> Tensor:
        """fused = up(a) * detail + up((1 - a) * Z_c) on the output grid `size`; detail
        [B, C, *size] already inserted; mask [B, 1, *size] (training) or None."""
        att = ctx["attention"]
        if mask is not None:
            att = att * _resize(mask, att.shape[-2:], mode="nearest")
        low = (1 - att) * ctx["logits"]
        return _resize(att, size) * detail + _resize(low, size)

    def _grid(self, images: Tensor) -> tuple[int, int]:
        h, w = images.shape[-2:]
        if h % self.divisible or w % self.divisible:
            raise UdassError(f"HRDA input {h} x {w}: expected multiples of {self.divisible} "
                             f"(output stride {self.output_stride} / context scale "
                             f"{self.context_scale}); change data.crop_size")
        return h // self.output_stride, w // self.output_stride

    # ------------------------------------------------------------------ training
    def forward_train(self, images: Tensor, boxes: Tensor | None = None,
                      generator: torch.Generator | None = None) -> dict[str, Any]:
        """HRDA training pass on full-resolution crops images [B, 3, H, W] in [0, 1].

        boxes: detail windows [B, 4] (y1, y2, x1, x2) in input pixels, or None to draw them
        (`random_detail_boxes` from `generator`, default torch's global generator). Returns
        logits (fused) [B, C, H/r, W/r], logits_detail [B, C, h_d/r, w_d/r], logits_context
        [B, C, h_c, w_c], attention [B, C, h_c, w_c] (unmasked, in [0, 1]), detail_boxes [B, 4],
        features / bottleneck of the context pass, features_detail of the detail pass.
        """
        size = self._grid(images)
        r = self.output_stride
        if boxes is None:
            boxes = random_detail_boxes(images.shape[0], images.shape[-2:], self.detail_size,
                                        self.divisible, generator)
        ctx = self._scale_pass(self.context(images), with_attention=True)
        det = self._scale_pass(crop_boxes(images, boxes), with_attention=False)
        h_d, w_d = self.detail_size
        logits_detail = _resize(det["logits"], (h_d // r, w_d // r))
        inserted = insert_boxes(logits_detail, boxes, size, 1 / r)
        fused = self._fuse_scales(ctx, inserted, size, box_mask(boxes, size, 1 / r).to(images))
        return {"logits": fused, "logits_detail": logits_detail, "logits_context": ctx["logits"],
                "attention": ctx["attention"], "detail_boxes": boxes, "features": ctx["features"],
                "bottleneck": ctx["bottleneck"], "features_detail": det["features"]}

    # ------------------------------------------------------------------ inference
    def encode_decode(self, images: Tensor) -> Tensor:
        """HRDA inference on images [B, 3, H, W] that fit one window: the context pass and the
        detail prediction from overlapping detail windows (stride half the window), fused with
        the unmasked attention -> [B, C, H/r, W/r]."""
        size = self._grid(images)
        ctx = self._scale_pass(self.context(images), with_attention=True)

        def detail(crops: Tensor) -> Tensor:
            return self._scale_pass(crops, with_attention=False)["logits"]

        hr = slide_inference(detail, images, self.detail_size, self.detail_stride, self.output_stride)
        return self._fuse_scales(ctx, hr, size, None)

    def inference(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] -> [B, C, H/r, W/r]: `encode_decode` when the input fits `eval_window`,
        else averaged over overlapping eval windows (`slide_inference`)."""
        h, w = images.shape[-2:]
        if h <= self.eval_window[0] and w <= self.eval_window[1]:
            return self.encode_decode(images)
        return slide_inference(self.encode_decode, images, self.eval_window, self.eval_stride,
                               self.output_stride)

    # ------------------------------------------------------------------ the model contract
    def forward(self, frames: Tensor, flows: Tensor, boxes: Tensor | None = None,
                with_aux: bool = True, generator: torch.Generator | None = None) -> dict[str, Any]:
        """frames [B, 1, 3, H, W] in [0, 1] (one-frame clips), flows [B, 0, 2, H, W].

        Training mode: `forward_train` (boxes and generator as there), plus the contract's keys:
        logits_t = logits_prev = logits (one-frame clip), features_prev = features, aux None
        (HRDA has no auxiliary head, so `with_aux` changes nothing). Eval mode: `inference`;
        logits = logits_t = logits_prev [B, C, H/r, W/r], features / features_prev / bottleneck
        None (a multi-window prediction has no single feature map), aux None.
        """
        if frames.dim() != 5 or frames.shape[1] != 1 or frames.shape[2] != 3:
            raise UdassError(f"HRDA takes one-frame clips [B, 1, 3, H, W] (image benchmarks), got "
                             f"frames {tuple(frames.shape)}; turn model.hrda off for video")
        images = frames[:, 0]
        if self.training:
            out = self.forward_train(images, boxes, generator)
        else:
            out = {"logits": self.inference(images), "features": None, "bottleneck": None}
        out.update(logits_t=out["logits"], logits_prev=out["logits"],
                   features_prev=out["features"], aux=None)
        return out

    def extra_repr(self) -> str:
        return (f"context_scale={self.context_scale}, detail_size={self.detail_size}, "
                f"eval_window={self.eval_window}, eval_stride={self.eval_stride}")


__all__ = ["Box", "HRDAModel", "box_mask", "context_images", "crop_boxes", "insert_boxes",
           "random_detail_boxes", "scale_attention_head", "slide_inference", "slide_windows"]

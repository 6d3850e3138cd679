"""Flow-aware transforms on clips.

Every geometric transform moves the flow with the frames: a resize scales the vectors, a crop
crops the field, a horizontal flip mirrors the field AND negates its x component. Labels follow
with nearest-neighbour sampling. Functions take batched tensors

    frames [B, K, 3, H, W] float in [0, 1], flows [B, K-1, 2, H, W], labels [B, K, H, W] int64 or None

(or unbatched clips [K, ...] where noted) and draw their randomness from an explicit
`torch.Generator`, one draw per sample, shared by all frames of that sample.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from udass.data.clip import ClipBatch
from udass.data.flow import resize_flow


def resize_clip(frames: Tensor, flows: Tensor, labels: Tensor | None, size: tuple[int, int]
                ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Resize an unbatched clip to size (H, W): frames [K, 3, H, W] bilinear (antialiased when
    shrinking), flows [K-1, 2, H, W] resized with vectors scaled, labels [K, H, W] nearest."""
    h, w = frames.shape[-2:]
    if (h, w) == tuple(size):
        return frames, flows, labels
    shrink = size[0] < h or size[1] < w
    frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False,
                           antialias=shrink).clamp_(0, 1)
    if flows.shape[0]:
        flows = resize_flow(flows, size)
    else:
        flows = flows.new_zeros(0, 2, *size)
    if labels is not None:
        labels = resize_labels(labels, size)
    return frames, flows, labels


def resize_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of integer label maps [..., H, W] to size (H, W)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    lead = labels.shape[:-2]
    flat = labels.reshape(-1, 1, *labels.shape[-2:]).float()
    out = F.interpolate(flat, size=size, mode="nearest")
    return out.reshape(*lead, *size).to(labels.dtype)


def hflip(frames: Tensor, flows: Tensor, labels: Tensor | None = None
          ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Mirror clips left-right: frames and labels flipped; flow flipped and its x negated."""
    frames = frames.flip(-1)
    flows = flows.flip(-1)
    flows = torch.cat([-flows[..., :1, :, :], flows[..., 1:, :, :]], dim=-3)
    return frames, flows, None if labels is None else labels.flip(-1)


def random_hflip(batch: ClipBatch, p: float, generator: torch.Generator) -> ClipBatch:
    """Flip each sample of the batch with probability p (one draw per clip)."""
    do = torch.rand(len(batch), generator=generator) < p
    if not bool(do.any()):
        return batch
    if bool(do.all()):
        ff, fl, lb = hflip(batch.frames, batch.flows, batch.labels)
        return ClipBatch(ff, fl, lb, batch.domain, batch.names, dict(batch.extras))
    # only the drawn samples are flipped (a flip is a copy and a negation: the same values as
    # flipping all and selecting, without the work on the others)
    idx = do.nonzero().squeeze(1).to(batch.frames.device)
    labels = None if batch.labels is None else batch.labels[idx]
    ff, fl, lb = hflip(batch.frames[idx], batch.flows[idx], labels)

    def put(a: Tensor, b: Tensor) -> Tensor:
        out = a.clone()
        out[idx] = b
        return out

    return ClipBatch(put(batch.frames, ff), put(batch.flows, fl),
                     None if lb is None else put(batch.labels, lb), batch.domain, batch.names,
                     dict(batch.extras))


def random_crop(batch: ClipBatch, size: tuple[int, int], generator: torch.Generator) -> ClipBatch:
    """Crop each sample to size (H, W) at its own random offset (labels must share the frames'
    size). Samples smaller than the crop are returned whole."""
    h, w = batch.frames.shape[-2:]
    ch, cw = min(size[0], h), min(size[1], w)
    if (ch, cw) == (h, w):
        return batch
    ys = torch.randint(0, h - ch + 1, (len(batch),), generator=generator).tolist()
    xs = torch.randint(0, w - cw + 1, (len(batch),), generator=generator).tolist()
    crop = lambda t: torch.stack([t[i, ..., y:y + ch, x:x + cw]  # noqa: E731
                                  for i, (y, x) in enumerate(zip(ys, xs))])
    return ClipBatch(crop(batch.frames), crop(batch.flows),
                     None if batch.labels is None else crop(batch.labels), batch.domain,
                     batch.names, {k: crop(v) for k, v in batch.extras.items()})


def photometric_jitter(frames: Tensor, generator: torch.Generator, brightness: float = 0.2,
                       contrast: float = 0.2, saturation: float = 0.2, p: float = 0.8) -> Tensor:
    """Brightness / contrast / saturation jitter, one draw per clip applied to all its frames.

    frames: [B, K, 3, H, W] in [0, 1]. Factors are uniform in [1 - s, 1 + s]; each clip is
    jittered with probability p. Returns a new tensor in [0, 1].
    """
    b = frames.shape[0]
    shape = (b, 1, 1, 1, 1)

    def draw(s: float) -> Tensor:
        return (1 + (torch.rand(b, generator=generator) * 2 - 1) * s).view(shape).to(frames)

    on = (torch.rand(b, generator=generator) < p).view(shape).to(frames)
    fb, fc, fs = draw(brightness), draw(contrast), draw(saturation)
    out = frames * fb
    mean = out.mean(dim=(-3, -2, -1), keepdim=True)
    out = (out - mean) * fc + mean
    gray = (0.299 * out[:, :, 0:1] + 0.587 * out[:, :, 1:2] + 0.114 * out[:, :, 2:3])
    out = (out - gray) * fs + gray
    return (on * out + (1 - on) * frames).clamp(0, 1)

"""Flow-aware transforms on clips.

Every geometric transform moves the flow with the frames: a resize scales the vectors, a crop
crops the field, a horizontal flip mirrors the field AND negates its x component. Labels follow
with nearest-neighbour sampling. Functions take batched tensors

    frames [B, K, 3, H, W] float in [0, 1], flows [B, K-1, 2, H, W], labels [B, K, H, W] int64 or None

(or unbatched clips [K, ...] where noted) and draw their randomness from an explicit
`torch.Generator`, one draw per sample, shared by all frames of that sample.
"""
from __future__ import annotations

from typing import Callable

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


def flip_flow(flows: Tensor) -> Tensor:
    """A flow field [..., 2, H, W] mirrored left-right: flipped, its x component negated."""
    flows = flows.flip(-1)
    return torch.cat([-flows[..., :1, :, :], flows[..., 1:, :, :]], dim=-3)


def hflip(frames: Tensor, flows: Tensor, labels: Tensor | None = None
          ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Mirror clips left-right: frames and labels flipped; flow flipped and its x negated."""
    return frames.flip(-1), flip_flow(flows), None if labels is None else labels.flip(-1)


def sample_index(on: Tensor) -> slice | Tensor:
    """The samples where `on` [B] (CPU bool) is True, as an index into dimension 0: a slice
    when they are one contiguous run (a view to read, a plain copy to write), else the index
    tensor (a gather and a scatter)."""
    idx = on.nonzero().squeeze(1)
    first, last = int(idx[0]), int(idx[-1])
    if last - first + 1 == len(idx):
        return slice(first, last + 1)
    return idx


def on_samples(on: Tensor, x: Tensor, fn: Callable[[slice | Tensor], Tensor]) -> Tensor:
    """x with its samples where `on` [B] (CPU bool) is True replaced by fn(index) (the new
    values of those samples, computed from x[index]), the others unchanged; index is
    `slice(None)` when all are on (no copy) and `sample_index(on)` otherwise.

    For a transform that works sample by sample this gives the same values as running it on
    all samples and selecting, without the work on the samples left alone."""
    if bool(on.all()):
        return fn(slice(None))
    if not bool(on.any()):
        return x
    idx = sample_index(on)
    if isinstance(idx, Tensor):
        idx = idx.to(x.device)
    out = x.clone()
    out[idx] = fn(idx)
    return out


def random_hflip(batch: ClipBatch, p: float, generator: torch.Generator) -> ClipBatch:
    """Flip each sample of the batch with probability p (one draw per clip); only the drawn
    samples are copied and flipped."""
    do = torch.rand(len(batch), generator=generator) < p
    if not bool(do.any()):
        return batch
    return ClipBatch(on_samples(do, batch.frames, lambda i: batch.frames[i].flip(-1)),
                     on_samples(do, batch.flows, lambda i: flip_flow(batch.flows[i])),
                     None if batch.labels is None else
                     on_samples(do, batch.labels, lambda i: batch.labels[i].flip(-1)),
                     batch.domain, batch.names, dict(batch.extras))


def random_crop(batch: ClipBatch, size: tuple[int, int], generator: torch.Generator) -> ClipBatch:
    """Crop each sample to size (H, W) at its own random offset (labels must share the frames'
    size). Samples smaller than the crop are returned whole."""
    h, w = batch.frames.shape[-2:]
    ch, cw = min(size[0], h), min(size[1], w)
    if (ch, cw) == (h, w):
        return batch
    ys = torch.randint(0, h - ch + 1, (len(batch),), generator=generator).tolist()
    xs = torch.randint(0, w - cw + 1, (len(batch),), generator=generator).tolist()
    return crop_at(batch, ys, xs, (ch, cw))


def crop_at(batch: ClipBatch, ys: list[int], xs: list[int], size: tuple[int, int]) -> ClipBatch:
    """Crop sample i of the batch to size (h, w) at top-left corner (ys[i], xs[i]): frames,
    flows, labels and extras alike (labels must share the frames' size)."""
    ch, cw = size
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


def match_histograms(frames: Tensor, reference: Tensor) -> Tensor:
    """Match the colour histogram of each clip to a reference image, per channel.

    frames: [B, K, 3, H, W] float (a batch of source clips, newest first); reference:
    [B, 3, H', W'] float (each clip's reference, e.g. the current target clip's frame t).
    The mapping of each (clip, channel) is skimage's `match_histograms` from frame t
    (frames[:, 0]) to the reference: a value's quantile among frame t's pixels (the share of
    pixels <= it) is mapped to the reference value at that quantile, linearly interpolated
    between the reference's distinct values at their cumulative shares (np.interp). The same
    mapping is applied to every frame of the clip, so a clip's frames stay consistent with each
    other (a value of frame t-1 takes its quantile among frame t's pixels). Frame t alone gives
    exactly skimage's result. Batched over clips and channels (sorts and binary searches; float64
    quantiles as skimage). Returns [B, K, 3, H, W] of frames' dtype.
    """
    if frames.dim() != 5 or reference.dim() != 4 or frames.shape[0] != reference.shape[0] \
            or frames.shape[2] != reference.shape[1]:
        raise ValueError(f"match_histograms: expected frames [B, K, C, H, W] and reference [B, C, H', W'] "
                         f"with the same B and C, got {tuple(frames.shape)} and {tuple(reference.shape)}")
    b, k, c, h, w = frames.shape
    src = frames[:, 0].reshape(b * c, h * w).double().sort(dim=1).values
    ref = reference.reshape(b * c, -1).double().sort(dim=1).values
    n, m = src.shape[1], ref.shape[1]
    ref_q = torch.searchsorted(ref, ref, right=True).double() / m   # cumulative share of each value
    x = frames.transpose(1, 2).reshape(b * c, k * h * w).double()
    q = torch.searchsorted(src, x, right=True).double() / n         # quantile of each pixel value
    j = torch.searchsorted(ref_q, q, right=True) - 1                # last reference share <= q
    j0, j1 = j.clamp(0, m - 1), (j + 1).clamp_(max=m - 1)
    x0, x1 = ref_q.gather(1, j0), ref_q.gather(1, j1)
    y0, y1 = ref.gather(1, j0), ref.gather(1, j1)
    slope = torch.where(x1 > x0, (y1 - y0) / (x1 - x0).clamp_min(1e-300), torch.zeros_like(q))
    out = torch.where(j < 0, ref[:, :1], slope * (q - x0) + y0)  # np.interp's formula and ends
    return out.reshape(b, c, k, h, w).transpose(1, 2).to(frames.dtype).contiguous()


def match_source_histograms(source: ClipBatch, target: ClipBatch) -> ClipBatch:
    """The source batch with each clip's colours matched to its paired target clip's frame t
    (`match_histograms`; the video recipe of TPS and of the QuadMix authors). Batches must have
    the same size (the mixing methods pair them)."""
    if len(source) != len(target):
        raise ValueError(f"match_source_histograms: {len(source)} source clips and {len(target)} "
                         f"target clips; histogram matching pairs them one to one")
    frames = match_histograms(source.frames, target.frames[:, 0])
    return ClipBatch(frames, source.flows, source.labels, source.domain, source.names,
                     dict(source.extras))

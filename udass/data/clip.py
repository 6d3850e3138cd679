"""The unified sample: a clip (docs/method.md, section 1, docs/architecture.md, Contracts: Clip).

An image is a one-frame clip. Every component treats a one-frame clip as a clip whose previous
frame is the frame itself with zero flow; `pair_view` gives that view without copying.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import torch
from torch import Tensor


@dataclass
class Clip:
    """One sample.

    frames: [K, 3, H, W] float32 in [0, 1], newest first (frames[0] is frame t).
    flows:  [K-1, 2, H, W] float32 pixels; flows[i] lives on frame i's grid and points into
            frame i+1: frames[i](p) ~ frames[i+1](p + flows[i](p)) (backward flow t -> t-1).
    labels: [K, H_l, W_l] int64 train ids, 255 ignore (all 255 for an unlabelled frame), or None.
    domain: "source" | "target".
    name:   identifies frame t (e.g. "aachen_000000_000019", "000123", "001_00010").
    """

    frames: Tensor
    flows: Tensor
    labels: Tensor | None
    domain: str
    name: str

    def __post_init__(self) -> None:
        k = self.frames.shape[0]
        if self.frames.dim() != 4 or self.frames.shape[1] != 3:
            raise ValueError(f"Clip.frames must be [K, 3, H, W], got {tuple(self.frames.shape)}")
        h, w = self.frames.shape[-2:]
        if tuple(self.flows.shape) != (k - 1, 2, h, w):
            raise ValueError(f"Clip.flows must be [{k - 1}, 2, {h}, {w}] for {k} frames of "
                             f"{h} x {w}, got {tuple(self.flows.shape)}")
        if self.labels is not None and (self.labels.dim() != 3 or self.labels.shape[0] != k):
            raise ValueError(f"Clip.labels must be [{k}, H_l, W_l], got {tuple(self.labels.shape)}")

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


@dataclass
class ClipBatch:
    """A batch of clips: frames [B, K, 3, H, W], flows [B, K-1, 2, H, W], labels [B, K, H_l, W_l]
    or None, one domain, a name per sample. `extras` carries per-batch tensors added on the way
    (pseudo-labels, weights)."""

    frames: Tensor
    flows: Tensor
    labels: Tensor | None
    domain: str
    names: list[str]
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[1])

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "ClipBatch":
        mv = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return replace(self, frames=mv(self.frames), flows=mv(self.flows), labels=mv(self.labels),
                       extras={k: mv(v) for k, v in self.extras.items()})


def collate_clips(clips: Sequence[Clip]) -> ClipBatch:
    """Stack clips of one domain and one length K into a ClipBatch."""
    if not clips:
        raise ValueError("collate_clips needs at least one clip")
    ks = {c.num_frames for c in clips}
    if len(ks) != 1:
        raise ValueError(f"cannot batch clips of different lengths {sorted(ks)}")
    has_labels = [c.labels is not None for c in clips]
    if any(has_labels) and not all(has_labels):
        raise ValueError("cannot batch labelled and unlabelled clips together")
    return ClipBatch(
        frames=torch.stack([c.frames for c in clips]),
        flows=torch.stack([c.flows for c in clips]),
        labels=torch.stack([c.labels for c in clips]) if all(has_labels) else None,
        domain=clips[0].domain,
        names=[c.name for c in clips],
    )


def pair_view(frames: Tensor, flows: Tensor) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Frame t, frame t-1 and the flow t -> t-1 of a batched clip.

    frames: [B, K, C, H, W]; flows: [B, K-1, 2, H, W]. For K = 1 (an image) the previous frame
    is frame t itself and the flow is zero; the returned flag `static` is True so callers can
    reuse frame t's computation instead of running it twice.
    Returns (current [B, C, H, W], previous [B, C, H, W], flow [B, 2, H, W], static).
    """
    cur = frames[:, 0]
    if frames.shape[1] == 1:
        return cur, cur, cur.new_zeros(cur.shape[0], 2, *cur.shape[-2:]), True
    return cur, frames[:, 1], flows[:, 0], False

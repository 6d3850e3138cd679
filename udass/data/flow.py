"""Optical flow: warping, the flow cache, file formats and DIS estimation.

Convention (docs/architecture.md, Contracts: Flow): backward flow t -> t-1 on frame t's grid, in pixels,
channel 0 = x (columns), channel 1 = y (rows): `frame_t(p) ~ frame_{t-1}(p + flow(p))`.
Cache files use the authors' format: `int16(round(flow * 10))`, H x W x 2 `.npy`, at the frame's
stored resolution, under `<flow root>/<dataset>/<frame path without extension>_int16_x10.npy`.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from udass.errors import UdassError
from udass.io import write_bytes

FLOW_SUFFIX = "_int16_x10.npy"
FLO_MAGIC = 202021.25


# ----------------------------------------------------------------------------------- warping
def _sample_grid(flow: Tensor) -> Tensor:
    """Normalised sampling grid [B, H, W, 2] for `p + flow(p)` (align_corners=True)."""
    b, _, h, w = flow.shape
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    x = gx + flow[:, 0]
    y = gy + flow[:, 1]
    nx = 2.0 * x / max(w - 1, 1) - 1.0
    ny = 2.0 * y / max(h - 1, 1) - 1.0
    return torch.stack((nx, ny), dim=-1)


def warp(x: Tensor, flow: Tensor, mode: str = "bilinear") -> Tensor:
    """Backward-warp `x` by `flow`: out(p) = x(p + flow(p)), border padding.

    x: [B, C, H, W] (any float dtype); flow: [B, 2, H, W] pixels on x's grid.
    mode: "bilinear" for images, features and probabilities; "nearest" for label maps
    (pass them as float).
    """
    if flow.shape[0] != x.shape[0] or flow.shape[-2:] != x.shape[-2:] or flow.shape[1] != 2:
        raise ValueError(f"warp: flow {tuple(flow.shape)} does not match x {tuple(x.shape)}")
    grid = _sample_grid(flow.to(torch.float32)).to(x.dtype)
    return F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=True)


def warp_valid_mask(flow: Tensor) -> Tensor:
    """Bool [B, H, W]: True where p + flow(p) lies inside the frame (the warp is defined)."""
    _, _, h, w = flow.shape
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def resize_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a flow field [B, 2, H, W] to size (H', W'), scaling the vectors by the same factors."""
    h, w = flow.shape[-2:]
    nh, nw = size
    if (h, w) == (nh, nw):
        return flow
    out = F.interpolate(flow, size=(nh, nw), mode="bilinear", align_corners=False)
    scale = torch.tensor([nw / w, nh / h], dtype=out.dtype, device=out.device).view(1, 2, 1, 1)
    return out * scale


def resize_flow_np(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """numpy twin of `resize_flow` for H x W x 2 arrays; size is (H', W')."""
    h, w = flow.shape[:2]
    nh, nw = size
    if (h, w) == (nh, nw):
        return flow.astype(np.float32, copy=False)
    out = cv2.resize(flow.astype(np.float32), (nw, nh), interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= nw / w
    out[..., 1] *= nh / h
    return out


# ----------------------------------------------------------------------------------- file formats
def flow_cache_path(flow_root: str | os.PathLike, dataset: str, frame_relpath: str | os.PathLike) -> Path:
    """Where the cached backward flow of a frame lives (docs/architecture.md, Contracts: Flow)."""
    rel = Path(frame_relpath)
    return Path(flow_root) / dataset / rel.parent / (rel.stem + FLOW_SUFFIX)


def encode_int16_x10(flow: np.ndarray) -> np.ndarray:
    """Float H x W x 2 -> int16(round(flow * 10)), clipped to the int16 range."""
    return np.clip(np.rint(flow * 10.0), -32768, 32767).astype(np.int16)


def write_flow(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Write a float H x W x 2 flow atomically in the authors' int16 x10 .npy format."""
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be H x W x 2, got {flow.shape}")
    buf = io.BytesIO()
    np.save(buf, encode_int16_x10(flow))
    write_bytes(path, buf.getvalue())


def read_flow(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an int16 x10 `.npy` (or Middlebury `.flo`) flow as float32 H x W x 2 pixels.

    size: (H, W) of the frame it belongs to. A flow at another resolution (the authors' reduced
    scale) is resized and its vectors rescaled; `None` returns it as stored.
    """
    path = Path(path)
    if not path.is_file():
        raise UdassError(f"missing flow file {path}; compute it with `udass flow --benchmark ... "
                         f"--data-root ...` (or pass --flow-root where your flows are)")
    try:
        arr = read_flo(path) if path.suffix == ".flo" else np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UdassError(f"unreadable flow file {path} ({e}); delete it and run `udass flow` again") from None
    if arr.ndim != 3 or arr.shape[2] != 2:
        raise UdassError(f"flow file {path} has shape {arr.shape}, expected H x W x 2; "
                         f"delete it and run `udass flow` again")
    flow = arr.astype(np.float32) / 10.0 if arr.dtype == np.int16 else arr.astype(np.float32)
    if size is not None and tuple(flow.shape[:2]) != tuple(size):
        ah, aw = flow.shape[:2]
        h, w = size
        if abs(aw / ah - w / h) > 0.02 * (w / h):
            raise UdassError(f"flow file {path} is {aw} x {ah}, which is not a scaled copy of its "
                             f"{w} x {h} frame; recompute it with `udass flow`")
        flow = resize_flow_np(flow, (h, w))
    return flow


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a Middlebury `.flo` file as float32 H x W x 2."""
    with open(path, "rb") as f:
        magic = np.frombuffer(f.read(4), np.float32)
        if magic.size != 1 or magic[0] != FLO_MAGIC:
            raise ValueError("not a Middlebury .flo file (bad magic number)")
        w, h = (int(v) for v in np.frombuffer(f.read(8), np.int32))
        data = np.frombuffer(f.read(), np.float32)
    if data.size != w * h * 2:
        raise ValueError(f".flo payload has {data.size} values, expected {w * h * 2}")
    return data.reshape(h, w, 2).copy()


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Write float H x W x 2 as a Middlebury `.flo` file (atomically)."""
    h, w = flow.shape[:2]
    payload = (np.array([FLO_MAGIC], np.float32).tobytes() + np.array([w, h], np.int32).tobytes()
               + flow.astype(np.float32).tobytes())
    write_bytes(path, payload)


# ----------------------------------------------------------------------------------- estimation
def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def estimate_flow_dis(frame_t: np.ndarray, frame_prev: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Backward flow t -> t-1 with OpenCV DIS (CPU, no weights).

    frame_t, frame_prev: uint8 RGB H x W x 3 (or gray H x W). Returns float32 H x W x 2 with
    frame_t(p) ~ frame_prev(p + flow(p)).
    """
    presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
               "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
    dis = cv2.DISOpticalFlow_create(presets[preset])
    return dis.calc(_gray(frame_t), _gray(frame_prev), None)


# ----------------------------------------------------------------------------------- display
def flow_to_color(flow: np.ndarray, max_norm: float | None = None) -> np.ndarray:
    """Colour-wheel rendering of H x W x 2 flow (hue = direction, saturation = magnitude): uint8 RGB."""
    fx, fy = flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32)
    mag, ang = cv2.cartToPolar(fx, fy, angleInDegrees=True)
    norm = max_norm if max_norm is not None else max(float(mag.max()), 1e-6)
    hsv = np.zeros((*flow.shape[:2], 3), np.uint8)
    hsv[..., 0] = (ang / 2).astype(np.uint8)
    hsv[..., 1] = np.clip(mag / norm * 255, 0, 255).astype(np.uint8)
    hsv[..., 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)

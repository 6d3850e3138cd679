"""`udass segment`: a trained checkpoint on a folder of frames or a video file.

    segment(input, checkpoint, out, network="teacher", device="auto") -> SegmentResult

Frames are read in order (a folder: sorted file names; a video: `cv2.VideoCapture`), resized to
the checkpoint's target input size (`data.target_size`), and each frame t runs as the clip
(t, t-1) with the backward flow t -> t-1 estimated on the fly by OpenCV DIS (`dis_flow`) at that
size; the first frame runs as a one-frame clip.
(A checkpoint of an image benchmark runs every frame as a one-frame clip, as it was trained.)
The logits are upsampled bilinearly to the frame's own resolution and arg-maxed. OUT receives one
colourised prediction PNG per frame (the benchmark protocol's palette) and `overlay.mp4`
(frame and prediction blended, `mp4v`). Every file is written atomically.

`predict_sequence` is the same loop over frames already in memory (the qualitative notebook's
temporal strip uses it).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from udass.benchmarks import get_benchmark
from udass.data.flow import estimate_flow_dis
from udass.data.transforms import resize_clip
from udass.errors import UdassError
from udass.evaluate import load_network
from udass.io import write_bytes
from udass.runtime import resolve_device

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
FOLDER_FPS = 10.0          # frame rate of the overlay video of a folder of frames
OVERLAY_ALPHA = 0.5        # weight of the prediction colours in the overlay
VIDEO_NAME = "overlay.mp4"


@dataclass
class SegmentResult:
    """What `segment` wrote: `pngs` (one per frame, in order) and the overlay `video`."""

    out: Path
    pngs: list[Path] = field(default_factory=list)
    video: Path | None = None

    @property
    def frames(self) -> int:
        return len(self.pngs)


# ----------------------------------------------------------------------------------- reading
def list_frames(folder: Path) -> list[Path]:
    """Image files of a folder (not recursive), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UdassError(f"unreadable frame {path} (not an image OpenCV can decode); remove it from "
                         f"the folder or convert it to PNG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_input(input: str | os.PathLike) -> tuple[Iterator[tuple[str, np.ndarray]], float]:
    """(iterator of (name, uint8 RGB H x W x 3), frames per second) of a folder or a video file.

    Errors (UdassError): a missing input, a folder without image files, a video OpenCV cannot
    open or read a first frame from.
    """
    path = Path(input)
    if not path.exists():
        raise UdassError(f"input {path} does not exist; pass a folder of frames "
                         f"({', '.join(IMAGE_EXTENSIONS)}) or a video file")
    if path.is_dir():
        files = list_frames(path)
        if not files:
            raise UdassError(f"folder {path} holds no frames (no {', '.join(IMAGE_EXTENSIONS)} files); "
                             f"pass a folder of frames or a video file")
        return ((p.stem, _read_image(p)) for p in files), FOLDER_FPS
    cap = cv2.VideoCapture(str(path))
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok or first is None:
        cap.release()
        raise UdassError(f"cannot read video {path} with OpenCV (not a video, or a codec OpenCV lacks); "
                         f"convert it to mp4 or extract its frames into a folder")
    fps = cap.get(cv2.CAP_PROP_FPS) or FOLDER_FPS

    def frames() -> Iterator[tuple[str, np.ndarray]]:
        i, frame = 0, first
        try:
            while frame is not None:
                yield f"frame_{i:06d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                i += 1
                ok, frame = cap.read()
                if not ok:
                    frame = None
        finally:
            cap.release()

    return frames(), float(fps if 0 < fps < 1000 else FOLDER_FPS)


# ----------------------------------------------------------------------------------- prediction
def _to_model_input(rgb: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 H x W x 3 -> float [3, h, w] in [0, 1] at size (h, w), resized as the datasets do."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)[None]
    empty = t.new_zeros(0, 2, *t.shape[-2:])
    return resize_clip(t, empty, None, size)[0][0].contiguous()


def _uint8(frame: torch.Tensor) -> np.ndarray:
    return (frame.permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().numpy())


def dis_flow(frame_t: np.ndarray, frame_prev: np.ndarray, preset: str = "medium") -> np.ndarray:
    """`udass.data.flow.estimate_flow_dis` with OpenCV's thread pool off for the call.

    Once DIS has run on OpenCV's worker threads, a later `fork` of this process (e.g. a process
    pool generating synthetic data in the same Python session) can deadlock in the child; at the
    model's input size the single-threaded DIS costs little. The thread count is restored after.
    """
    threads = cv2.getNumThreads()
    cv2.setNumThreads(0)
    try:
        return estimate_flow_dis(frame_t, frame_prev, preset=preset)
    finally:
        cv2.setNumThreads(threads)


class SequencePredictor:
    """Predicts consecutive frames one at a time, keeping the previous frame for the flow.

    model: a udass segmentation network (eval mode); size: (h, w) model input size. Call it
    with uint8 RGB H x W x 3 frames in temporal order: frame t runs as the clip (t, t-1) with
    the DIS flow t -> t-1 computed at (h, w); the first frame as a one-frame clip. Returns int64
    H x W train ids at the frame's resolution (`out_size="frame"`) or at (h, w) (`"input"`).
    temporal=False runs every frame as a one-frame clip (a model of an image benchmark, which
    was trained and evaluated that way).
    """

    def __init__(self, model: nn.Module, size: tuple[int, int], device: torch.device | str = "cpu",
                 flow_preset: str = "medium", temporal: bool = True) -> None:
        self.model, self.size, self.temporal = model, tuple(size), temporal
        self.device = torch.device(device)
        self.flow_preset = flow_preset
        self.prev: torch.Tensor | None = None
        self.prev_u8: np.ndarray | None = None

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray, out_size: str = "frame") -> np.ndarray:
        cur = _to_model_input(rgb, self.size)
        cur_u8 = _uint8(cur)
        if self.prev is None or not self.temporal:
            clip = cur[None, None]
            flows = cur.new_zeros(1, 0, 2, *self.size)
        else:
            flow = dis_flow(cur_u8, self.prev_u8, preset=self.flow_preset)
            clip = torch.stack([cur, self.prev])[None]
            flows = torch.from_numpy(flow).permute(2, 0, 1)[None, None].float()
        logits = self.model(clip.to(self.device), flows.to(self.device))["logits"].float()
        target = tuple(rgb.shape[:2]) if out_size == "frame" else self.size
        logits = F.interpolate(logits, size=target, mode="bilinear", align_corners=False)
        self.prev, self.prev_u8 = cur, cur_u8
        return logits.argmax(1)[0].cpu().numpy()


def predict_sequence(model: nn.Module, frames: Iterable[np.ndarray], size: tuple[int, int],
                     device: torch.device | str = "cpu", out_size: str = "frame",
                     temporal: bool = True) -> list[np.ndarray]:
    """`SequencePredictor` over consecutive uint8 RGB frames (oldest first): one map per frame."""
    predict = SequencePredictor(model, size, device, temporal=temporal)
    return [predict(rgb, out_size) for rgb in frames]


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Train-id map H x W (255 ignore) -> uint8 RGB H x W x 3 with a [256, 3] palette."""
    return palette[np.clip(labels, 0, 255).astype(np.uint8)]


def overlay(rgb: np.ndarray, colours: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Blend a frame and its colourised prediction (uint8 RGB, same size)."""
    return (rgb.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).round().astype(np.uint8)


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
        raise UdassError("could not encode a PNG")
    return buf.tobytes()


class _VideoOut:
    """An mp4v writer into a temporary file beside `path`, renamed into place by `close`."""

    def __init__(self, path: Path, fps: float, size_wh: tuple[int, int]) -> None:
        self.path = path
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.mp4", dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.size = size_wh
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size_wh)
        if not self.writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise UdassError(f"OpenCV cannot write an mp4v video to {path}; the PNG predictions are "
                             f"written regardless")

    def write(self, rgb: np.ndarray) -> None:
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self, keep: bool = True) -> None:
        self.writer.release()
        if keep:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------- entry point
def segment(input: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike,
            network: str = "teacher", device: str = "auto") -> SegmentResult:
    """Segment a folder of frames (sorted by name) or a video file with a udass checkpoint.

    Writes `<out>/<frame name>.png` (colourised prediction at the frame's resolution; a video's
    frames are named frame_000000, ...) and `<out>/overlay.mp4`. network: "teacher" (the EMA
    teacher, default) or "student". Returns the written paths.
    """
    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise UdassError(f"checkpoint {ckpt} does not exist; pass a file written by `udass train` "
                         f"(OUT/checkpoints/step_*.pt)")
    frames, fps = read_input(input)
    out = Path(out)
    if Path(input).is_dir() and out.resolve() == Path(input).resolve():
        raise UdassError(f"-o {out} is the input folder; pass another folder for the predictions")
    dev = resolve_device(device)
    model, cfg, _ = load_network(ckpt, network, dev)
    bench = get_benchmark(cfg.data.benchmark)
    palette = bench.protocol.palette()
    size = tuple(cfg.data.target_size)
    out.mkdir(parents=True, exist_ok=True)
    result = SegmentResult(out)
    predict = SequencePredictor(model, size, dev, temporal=bench.is_video)
    video: _VideoOut | None = None
    ok = False
    try:
        for name, rgb in frames:
            colours = colorize(predict(rgb), palette)
            png = out / f"{name}.png"
            write_bytes(png, _png(colours))
            result.pngs.append(png)
            if video is None:
                video = _VideoOut(out / VIDEO_NAME, fps, (rgb.shape[1], rgb.shape[0]))
            video.write(overlay(rgb, colours))
        ok = True
    finally:
        if video is not None:
            video.close(keep=ok)
    result.video = out / VIDEO_NAME
    print(f"segmented {result.frames} frames with the {network} of {ckpt.name} "
          f"({cfg.data.benchmark}, {cfg.model.backbone}): {out}/*.png and {result.video}")
    return result


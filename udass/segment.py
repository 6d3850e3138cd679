"""`udass segment`: a trained checkpoint on a folder of frames or a video file.

    segment(input, checkpoint, out, network="teacher", device="auto") -> SegmentResult

Frames are read in order (a folder: sorted file names; a video: `cv2.VideoCapture`), resized to
the checkpoint's target input size (`data.target_size`), and each frame t runs as the clip
(t, t-1) with the backward flow t -> t-1 estimated on the fly by OpenCV DIS (`dis_flow`) at that
size; the first frame runs as a one-frame clip.
(A checkpoint of an image benchmark runs every frame as a one-frame clip, as it was trained.)
A folder whose frames change size is split into sequences where the size changes (said in one
line): the first frame of each sequence runs as a one-frame clip, since a flow between frames of
different sizes means nothing.
The logits are upsampled bilinearly to the frame's own resolution and arg-maxed. OUT receives one
colourised prediction PNG per frame (the benchmark protocol's palette), `legend.png` (each
class's colour and name) and `overlay.mp4` (frame and prediction blended, a legend strip below;
H.264 when the OpenCV build can write it, else MPEG-4 Part 2 `mp4v`; frames of another size than
the first are letterboxed into it). Every file is written atomically, each PNG as soon as its
frame is predicted; progress (frames, frames/s, time left) as in `udass.progress`.

`predict_sequence` is the same loop over frames already in memory (the qualitative notebook's
temporal strip uses it).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import time
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
from udass.data.imageio import image_size
from udass.data.transforms import resize_clip
from udass.errors import Interrupted, UdassError
from udass.evaluate import load_network
from udass.io import set_default_permissions, write_bytes
from udass.progress import Progress, rate_text
from udass.runtime import resolve_device

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
FOLDER_FPS = 10.0          # frame rate of the overlay video of a folder of frames
OVERLAY_ALPHA = 0.5        # weight of the prediction colours in the overlay
VIDEO_NAME = "overlay.mp4"
LEGEND_NAME = "legend.png"
# (fourcc, what the output line calls it), in order of preference: H.264 plays everywhere (when
# the OpenCV build has an H.264 encoder; the PyPI wheels have none), mp4v in VLC, mpv, ffplay
VIDEO_CODECS = (("avc1", "H.264"), ("mp4v", "MPEG-4 Part 2 (mp4v)"))


@dataclass
class SegmentResult:
    """What `segment` wrote: `pngs` (one per frame, in order), the overlay `video` (its codec
    named by `codec`), the `legend` image, how many `sequences` the frames formed and the
    `seconds` spent."""

    out: Path
    pngs: list[Path] = field(default_factory=list)
    video: Path | None = None
    codec: str = ""
    legend: Path | None = None
    sequences: int = 1
    seconds: float = 0.0

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


@dataclass
class FrameSource:
    """Frames to segment: `frames` yields (name, uint8 RGB H x W x 3) in order; `fps` of the
    overlay video; `count` the number of frames (None when a video does not say); `breaks` the
    indices where a folder's frame size changes (a new sequence starts); `sizes` the distinct
    (W, H) of a folder's frames, in order of appearance."""

    frames: Iterator[tuple[str, np.ndarray]]
    fps: float
    count: int | None
    breaks: list[int] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def split_note(self, folder: Path) -> str | None:
        """One line saying where a folder of frames of several sizes was split, or None."""
        if not self.breaks:
            return None
        i = self.breaks[0]
        shown = ", ".join(f"{w} x {h}" for w, h in self.sizes[:4]) + (" ..." if len(self.sizes) > 4 else "")
        return (f"{folder}: frames of {len(self.sizes)} sizes ({shown}); split into "
                f"{len(self.breaks) + 1} sequences where the size changes (first at {self.names[i]}); "
                f"each starts as a one-frame clip, and the overlay letterboxes them into the first "
                f"frame's size")


def read_frames(input: str | os.PathLike) -> FrameSource:
    """The frames of a folder (sorted file names; sizes read from the headers) or a video file.

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
        hw = [image_size(p) for p in files]
        sizes = list(dict.fromkeys((w, h) for h, w in hw))
        breaks = [i for i in range(1, len(hw)) if hw[i] != hw[i - 1]]
        return FrameSource(((p.stem, _read_image(p)) for p in files), FOLDER_FPS, len(files),
                           breaks, sizes, [p.name for p in files])
    cap = cv2.VideoCapture(str(path))
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok or first is None:
        cap.release()
        raise UdassError(f"cannot read video {path} with OpenCV (not a video, or a codec OpenCV lacks); "
                         f"convert it to mp4 or extract its frames into a folder")
    fps = cap.get(cv2.CAP_PROP_FPS) or FOLDER_FPS
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

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

    return FrameSource(frames(), float(fps if 0 < fps < 1000 else FOLDER_FPS), count if count > 0 else None)


def read_input(input: str | os.PathLike) -> tuple[Iterator[tuple[str, np.ndarray]], float]:
    """(iterator of (name, uint8 RGB H x W x 3), frames per second) of a folder or a video file
    (`read_frames` without the counts)."""
    src = read_frames(input)
    return src.frames, src.fps


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
    the DIS flow t -> t-1 computed at (h, w); the first frame, and a frame whose size differs
    from the previous one (a new sequence), as a one-frame clip. Returns int64
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
        self.prev_shape: tuple[int, ...] | None = None

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray, out_size: str = "frame") -> np.ndarray:
        cur = _to_model_input(rgb, self.size)
        cur_u8 = _uint8(cur)
        if self.prev is None or not self.temporal or rgb.shape != self.prev_shape:
            clip = cur[None, None]
            flows = cur.new_zeros(1, 0, 2, *self.size)
        else:
            flow = dis_flow(cur_u8, self.prev_u8, preset=self.flow_preset)
            clip = torch.stack([cur, self.prev])[None]
            flows = torch.from_numpy(flow).permute(2, 0, 1)[None, None].float()
        logits = self.model(clip.to(self.device), flows.to(self.device))["logits"].float()
        target = tuple(rgb.shape[:2]) if out_size == "frame" else self.size
        logits = F.interpolate(logits, size=target, mode="bilinear", align_corners=False)
        self.prev, self.prev_u8, self.prev_shape = cur, cur_u8, rgb.shape
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


# ----------------------------------------------------------------------------------- legend
LEGEND_BACKGROUND = (32, 32, 32)
LEGEND_TEXT = (255, 255, 255)


def _legend_items(names: Iterable[str], palette: np.ndarray, scale: float) -> list[tuple[np.ndarray, str, int]]:
    """(colour, name, item width in pixels) of each class at font `scale`."""
    items = []
    for i, name in enumerate(names):
        (tw, _), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        items.append((palette[i], name, int(round(28 * scale / 0.5)) + tw + int(round(14 * scale / 0.5))))
    return items


def _draw_item(img: np.ndarray, x: int, y: int, colour: np.ndarray, name: str, scale: float,
               row_h: int) -> None:
    sw = int(round(20 * scale / 0.5))
    pad = max(2, row_h // 6)
    cv2.rectangle(img, (x, y + pad), (x + sw, y + row_h - pad), tuple(int(c) for c in colour), -1)
    cv2.putText(img, name, (x + sw + max(3, sw // 4), y + row_h - pad - max(1, row_h // 8)),
                cv2.FONT_HERSHEY_SIMPLEX, scale, LEGEND_TEXT, 1, cv2.LINE_AA)


def legend_strip(names: Iterable[str], palette: np.ndarray, width: int) -> np.ndarray:
    """uint8 RGB [h, width, 3]: each class's colour swatch and name, left to right, wrapping into
    as many rows as `width` needs (the strip under each overlay frame). Text scales with the
    width (0.5 at 1000 pixels); the height is even (video encoders want even frame sizes)."""
    scale = float(np.clip(0.5 * width / 1000, 0.4, 1.2))
    row_h = int(round(22 * scale / 0.45))
    items = _legend_items(names, palette, scale)
    rows: list[list[tuple[np.ndarray, str, int]]] = [[]]
    used = 0
    for item in items:
        if rows[-1] and used + item[2] > width - 8:
            rows.append([])
            used = 0
        rows[-1].append(item)
        used += item[2]
    height = row_h * len(rows) + 6
    img = np.empty((height + height % 2, width, 3), np.uint8)
    img[:] = LEGEND_BACKGROUND
    for r, row in enumerate(rows):
        x = 6
        for colour, name, w in row:
            _draw_item(img, x, 3 + r * row_h, colour, name, scale, row_h)
            x += w
    return img


def legend_image(names: Iterable[str], palette: np.ndarray) -> np.ndarray:
    """uint8 RGB [h, w, 3]: one row per class (train id order), its colour swatch and its name."""
    scale, row_h = 0.6, 30
    items = _legend_items(names, palette, scale)
    width = max(w for _, _, w in items) + 20
    img = np.empty((row_h * len(items) + 12, width, 3), np.uint8)
    img[:] = LEGEND_BACKGROUND
    for r, (colour, name, _) in enumerate(items):
        _draw_item(img, 10, 6 + r * row_h, colour, name, scale, row_h)
    return img


def letterbox(rgb: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """`rgb` scaled to fit (W, H) with its aspect ratio kept, centred on black."""
    w, h = size_wh
    if (rgb.shape[1], rgb.shape[0]) == (w, h):
        return rgb
    f = min(w / rgb.shape[1], h / rgb.shape[0])
    nw, nh = max(1, round(rgb.shape[1] * f)), max(1, round(rgb.shape[0] * f))
    out = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    out[y:y + nh, x:x + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


# ----------------------------------------------------------------------------------- video
@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence what native code writes to file descriptor 2 (FFmpeg's and OpenCV's messages while
    an encoder is probed), restoring it after."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def open_video_writer(path: Path, fps: float, size_wh: tuple[int, int],
                      codecs: Iterable[tuple[str, str]] = VIDEO_CODECS) -> tuple[object, str]:
    """The first of `codecs` OpenCV can write to `path` at (W, H): (cv2.VideoWriter, its name).
    The failed attempts' messages are silenced; no codec at all is a UdassError."""
    tried = []
    for fourcc, name in codecs:
        with _quiet_stderr():
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size_wh)
        if writer.isOpened():
            return writer, name
        writer.release()
        tried.append(fourcc)
    raise UdassError(f"OpenCV cannot write an mp4 video here (tried {', '.join(tried)}); the PNG "
                     f"predictions are written regardless")


class _VideoOut:
    """A video writer into a temporary file beside `path`, renamed into place by `close`; frames
    of another size than the first are letterboxed into it, and `footer` (a legend strip of the
    first frame's width) goes below each."""

    def __init__(self, path: Path, fps: float, size_wh: tuple[int, int],
                 footer: np.ndarray | None = None) -> None:
        self.path = path
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.mp4", dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.size = size_wh
        self.footer = footer
        extra = 0 if footer is None else footer.shape[0]
        try:
            self.writer, self.codec = open_video_writer(self.tmp, fps, (size_wh[0], size_wh[1] + extra))
        except UdassError:
            self.tmp.unlink(missing_ok=True)
            raise

    def write(self, rgb: np.ndarray) -> None:
        rgb = letterbox(rgb, self.size)
        if self.footer is not None:
            rgb = np.concatenate([rgb, self.footer], axis=0)
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self, keep: bool = True) -> None:
        self.writer.release()
        if keep:
            set_default_permissions(self.tmp)
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------- entry point
def segment(input: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike,
            network: str = "teacher", device: str = "auto", progress: bool = True) -> SegmentResult:
    """Segment a folder of frames (sorted by name) or a video file with a udass checkpoint.

    Writes `<out>/<frame name>.png` (colourised prediction at the frame's resolution; a video's
    frames are named frame_000000, ...) as each frame is predicted, `<out>/legend.png` and
    `<out>/overlay.mp4`. network: "teacher" (the EMA teacher, default) or "student". progress:
    frames done, frames/s and time left (`udass.progress`), and a line when the first frame's
    PNG is written. Ctrl-C stops after the frame in progress, keeping the PNGs written and the
    overlay of their frames (`Interrupted`). Returns the written paths.
    """
    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise UdassError(f"checkpoint {ckpt} does not exist; pass a file written by `udass train` "
                         f"(OUT/checkpoints/step_*.pt)")
    source = read_frames(input)
    out = Path(out)
    if Path(input).is_dir() and out.resolve() == Path(input).resolve():
        raise UdassError(f"-o {out} is the input folder; pass another folder for the predictions")
    if out.exists() and not out.is_dir():
        raise UdassError(f"-o {out} is a file, expected a folder for the predictions; pass a folder path")
    started = time.perf_counter()
    dev = resolve_device(device)
    model, cfg, _ = load_network(ckpt, network, dev)
    bench = get_benchmark(cfg.data.benchmark)
    palette, names = bench.protocol.palette(), bench.protocol.classes
    size = tuple(cfg.data.target_size)
    out.mkdir(parents=True, exist_ok=True)
    result = SegmentResult(out, sequences=len(source.breaks) + 1)
    taken = {Path(n).stem for n in source.names}   # a frame of the folder may be named "legend"
    result.legend = out / (LEGEND_NAME if Path(LEGEND_NAME).stem not in taken else "legend_udass.png")
    write_bytes(result.legend, _png(legend_image(names, palette)))
    predict = SequencePredictor(model, size, dev, temporal=bench.is_video)
    video: _VideoOut | None = None
    bar = Progress(source.count, f"segment {Path(input).name}", unit="frame", enabled=progress)
    note = source.split_note(Path(input))
    if note:
        bar.write(note, always=True)
    finished = interrupted = False
    try:
        for name, rgb in source.frames:
            colours = colorize(predict(rgb), palette)
            png = out / f"{name}.png"
            write_bytes(png, _png(colours))
            result.pngs.append(png)
            if video is None:
                footer = legend_strip(names, palette, rgb.shape[1])
                video = _VideoOut(out / VIDEO_NAME, source.fps, (rgb.shape[1], rgb.shape[0]), footer)
                bar.write(f"first frame: {png} ({time.perf_counter() - started:.1f} s after the start)")
            video.write(overlay(rgb, colours))
            bar.update(1)
        finished = True
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close(done=finished)
        if video is not None:
            video.close(keep=finished or interrupted)
    if interrupted:
        kept = f"{out / VIDEO_NAME} of them" if video is not None else "no video"
        raise Interrupted(f"interrupted after {result.frames} frames; their PNGs and {kept} are "
                          f"kept; rerun to segment every frame", signal.SIGINT)
    result.video = out / VIDEO_NAME
    result.codec = video.codec if video is not None else ""
    result.seconds = time.perf_counter() - started
    print(f"segmented {result.frames} frames in {result.seconds:.1f} s "
          f"({rate_text(result.frames, result.seconds, 'frame')}) with the {network} of {ckpt.name} "
          f"({cfg.data.benchmark}, {cfg.model.backbone}): {out}/*.png, {result.legend.name} and "
          f"{result.video.name} ({result.codec})")
    return result

"""`udass segment`: a folder of frames or a video in, colourised PNGs and an overlay video out;
clear one-line errors for inputs that cannot work."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from udass.cli import main
from udass.config import build_config
from udass.data.protocols import get_benchmark
from udass.errors import UdassError
from udass.segment import (VIDEO_CODECS, SequencePredictor, colorize, legend_image, legend_strip,
                           list_frames, open_video_writer, predict_sequence, segment)

PNG = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step quadmix checkpoint on the tiny synthetic-video benchmark (test profile)."""
    from udass.checkpoint import last_checkpoint
    from udass.train import train

    out = tmp_path_factory.mktemp("segment-run")
    train(build_config("synthetic-video", "vit", "quadmix", "test", {"train.steps": 2}), out,
          progress=False)
    return last_checkpoint(out)


@pytest.fixture
def frames_dir(tmp_path: Path, tiny_video_root: Path) -> Path:
    """Three consecutive target frames of the tiny synthetic snippet, in a folder of their own."""
    src = sorted((tiny_video_root / "cityscapes" / "leftImg8bit_sequence" / "val").glob("*/*.png"))[:3]
    d = tmp_path / "frames"
    d.mkdir()
    for p in src:
        shutil.copy(p, d / p.name)
    return d


def _read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def test_folder_of_frames_gives_one_png_per_frame_and_a_video(checkpoint, frames_dir, tmp_path):
    out = tmp_path / "out"
    res = segment(frames_dir, checkpoint, out, network="teacher", device="cpu")
    inputs = list_frames(frames_dir)
    assert res.frames == 3 and [p.stem for p in res.pngs] == [p.stem for p in inputs]
    palette = get_benchmark("synthetic-video").protocol.palette()
    allowed = {tuple(c) for c in palette[:12]}
    for png, frame in zip(res.pngs, inputs):
        assert png.read_bytes()[:8] == PNG
        pred = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
        assert pred.shape == cv2.imread(str(frame)).shape        # at the frame's resolution
        assert {tuple(c) for c in pred.reshape(-1, 3)} <= allowed  # protocol colours only
    video = _read_video(res.video)
    assert res.video == out / "overlay.mp4" and len(video) == 3
    frame = cv2.imread(str(inputs[0]))
    names = get_benchmark("synthetic-video").protocol.classes
    strip = legend_strip(names, palette, frame.shape[1])
    assert video[0].shape == (frame.shape[0] + strip.shape[0], *frame.shape[1:])  # legend below
    assert res.codec in [name for _, name in VIDEO_CODECS]
    assert res.legend == out / "legend.png" and res.legend.read_bytes()[:8] == PNG
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_legend_shows_every_class_colour_and_the_strip_fits_the_width():
    protocol = get_benchmark("synthetic-video").protocol
    palette = protocol.palette()
    image = legend_image(protocol.classes, palette)
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    assert all(tuple(palette[i]) in colours for i in range(protocol.num_classes))
    for width in (320, 768, 2048):
        strip = legend_strip(protocol.classes, palette, width)
        assert strip.shape[1] == width and strip.shape[0] % 2 == 0
        found = {tuple(c) for c in strip.reshape(-1, 3)}
        assert all(tuple(palette[i]) in found for i in range(protocol.num_classes)), width
    # a narrow frame wraps the strip into more rows than a wide one
    assert legend_strip(protocol.classes, palette, 320).shape[0] > legend_strip(
        protocol.classes, palette, 2048).shape[0]


def test_video_codec_is_the_first_the_build_can_write_and_is_named(tmp_path, capfd):
    writer, name = open_video_writer(tmp_path / "a.mp4", 10, (64, 48),
                                     codecs=(("zzzz", "no such codec"), ("mp4v", "MPEG-4")))
    writer.release()
    assert name == "MPEG-4"
    assert capfd.readouterr().err == ""  # the failed probe's native messages are silenced
    with pytest.raises(UdassError, match="cannot write an mp4 video here .tried zzzz"):
        open_video_writer(tmp_path / "b.mp4", 10, (64, 48), codecs=(("zzzz", "none"),))


def test_frames_of_different_sizes_are_split_into_sequences_with_a_message(checkpoint, frames_dir,
                                                                         tmp_path, capsys):
    from udass.evaluate import load_network

    files = list_frames(frames_dir)
    big = cv2.resize(cv2.imread(str(files[1])), (96, 48))
    cv2.imwrite(str(files[1]), big)    # frames 0 | 1 | 2: three sizes, three sequences
    res = segment(frames_dir, checkpoint, tmp_path / "out", device="cpu")
    err = capsys.readouterr().err
    assert "frames of 2 sizes (64 x 32, 96 x 48); split into 3 sequences where the size changes " \
           f"(first at {files[1].name})" in err
    assert res.sequences == 3
    model, cfg, _ = load_network(checkpoint, "teacher", "cpu")
    palette = get_benchmark("synthetic-video").protocol.palette()
    for png, frame in zip(res.pngs, files):   # each frame starts its sequence: a one-frame clip
        rgb = cv2.cvtColor(cv2.imread(str(frame)), cv2.COLOR_BGR2RGB)
        alone = colorize(SequencePredictor(model, tuple(cfg.data.target_size))(rgb), palette)
        assert np.array_equal(cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB), alone)
    video = _read_video(res.video)
    assert len(video) == 3 and len({v.shape for v in video}) == 1   # letterboxed into one size


def test_video_file_input(checkpoint, frames_dir, tmp_path):
    first = cv2.imread(str(list_frames(frames_dir)[0]))
    video = tmp_path / "clip.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (first.shape[1], first.shape[0]))
    for p in list_frames(frames_dir):
        w.write(cv2.imread(str(p)))
    w.release()
    res = segment(video, checkpoint, tmp_path / "out", network="student", device="cpu")
    assert [p.name for p in res.pngs] == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    assert len(_read_video(res.video)) == 3


def test_first_frame_is_a_one_frame_clip_and_later_frames_use_the_previous_one(checkpoint, frames_dir):
    from udass.evaluate import load_network

    model, cfg, _ = load_network(checkpoint, "teacher", "cpu")
    frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in list_frames(frames_dir)]
    size = tuple(cfg.data.target_size)
    seq = predict_sequence(model, frames, size, out_size="input")
    alone = [SequencePredictor(model, size)(f, out_size="input") for f in frames]
    assert all(p.shape == size for p in seq)
    assert np.array_equal(seq[0], alone[0])           # frame 0: nothing before it
    static = predict_sequence(model, frames, size, out_size="input", temporal=False)
    assert all(np.array_equal(a, b) for a, b in zip(static, alone))  # image models: one-frame clips


def test_colorize_maps_ignore_to_black():
    pal = get_benchmark("synthetic-video").protocol.palette()
    out = colorize(np.array([[0, 255]]), pal)
    assert tuple(out[0, 0]) == tuple(pal[0]) and tuple(out[0, 1]) == (0, 0, 0)


@pytest.mark.parametrize("case", ["missing_input", "empty_folder", "bad_video", "missing_checkpoint",
                                  "out_is_input"])
def test_errors_are_one_line(case, checkpoint, frames_dir, tmp_path, capsys):
    ckpt, inp, out = checkpoint, frames_dir, tmp_path / "out"
    expect = {"missing_input": "does not exist", "empty_folder": "holds no frames",
              "bad_video": "cannot read video", "missing_checkpoint": "checkpoint",
              "out_is_input": "is the input folder"}[case]
    if case == "missing_input":
        inp = tmp_path / "nothing"
    elif case == "empty_folder":
        inp = tmp_path / "empty"
        inp.mkdir()
        (inp / "notes.txt").write_text("not a frame")
    elif case == "bad_video":
        inp = tmp_path / "broken.mp4"
        inp.write_bytes(b"not a video at all")
    elif case == "missing_checkpoint":
        ckpt = tmp_path / "none.pt"
    else:
        out = frames_dir
    with pytest.raises(UdassError, match=expect) as e:
        segment(inp, ckpt, out, device="cpu")
    assert "\n" not in str(e.value)
    rc = main(["segment", str(inp), "--checkpoint", str(ckpt), "-o", str(out), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and expect in err[0]
    if case == "out_is_input":
        assert len(list_frames(frames_dir)) == 3 and not (frames_dir / "overlay.mp4").exists()


FORK_CHECK = """
import multiprocessing as mp, sys
import numpy as np

def child():
    import cv2
    from udass.data.flow import estimate_flow_dis
    cv2.setNumThreads(1)
    img = np.zeros((32, 64, 3), np.uint8)
    estimate_flow_dis(img, img)

if __name__ == "__main__":
    from udass.segment import segment
    segment(sys.argv[1], sys.argv[2], sys.argv[3], device="cpu")
    p = mp.get_context("fork").Process(target=child)
    p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        sys.exit("the forked child hung")
    sys.exit(p.exitcode)
"""


def test_segment_leaves_the_process_safe_to_fork(checkpoint, frames_dir, tmp_path):
    """A forked child using OpenCV after `segment` must not deadlock (e.g. a process pool that
    generates synthetic data later in the same session; OpenCV's thread pool, once DIS ran on
    it, is not fork-safe). Checked in a fresh interpreter, so other tests' OpenCV use does not
    interfere."""
    import multiprocessing as mp
    import subprocess
    import sys

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    script = tmp_path / "fork_check.py"
    script.write_text(FORK_CHECK)
    run = subprocess.run([sys.executable, str(script), str(frames_dir), str(checkpoint),
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]


def test_segment_reports_the_first_frame_and_its_speed_and_ctrl_c_keeps_the_frames_done(
        checkpoint, frames_dir, tmp_path, capsys, monkeypatch):
    from udass.errors import Interrupted

    monkeypatch.setenv("UDASS_PROGRESS", "lines")
    segment(frames_dir, checkpoint, tmp_path / "a", device="cpu")
    io = capsys.readouterr()
    first = tmp_path / "a" / f"{list_frames(frames_dir)[0].stem}.png"
    assert f"first frame: {first} (" in io.err
    assert io.err.rstrip().endswith("done") and "frame 3/3 (100%)" in io.err
    assert io.out.startswith("segmented 3 frames in ") and ("frame/s)" in io.out or "s/frame)" in io.out)
    assert io.out.rstrip().endswith("legend.png and overlay.mp4 (MPEG-4 Part 2 (mp4v))") or "H.264" in io.out

    real = SequencePredictor.__call__
    calls = []

    def stop_at_the_second(self, rgb, out_size="frame"):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, rgb, out_size)

    monkeypatch.setattr(SequencePredictor, "__call__", stop_at_the_second)
    out = tmp_path / "b"
    with pytest.raises(Interrupted, match=r"interrupted after 1 frames; their PNGs and .*overlay.mp4 "
                                          r"of them are kept") as e:
        segment(frames_dir, checkpoint, out, device="cpu")
    assert e.value.exit_status == 130
    assert sorted(p.name for p in out.iterdir()) == [first.name, "legend.png", "overlay.mp4"]
    assert len(_read_video(out / "overlay.mp4")) == 1

    monkeypatch.setattr(SequencePredictor, "__call__", real)
    (frames_dir / list_frames(frames_dir)[0].name).rename(frames_dir / "legend.png")
    res = segment(frames_dir, checkpoint, tmp_path / "c", device="cpu")
    assert res.legend.name == "legend_udass.png" and (tmp_path / "c" / "legend.png") in res.pngs

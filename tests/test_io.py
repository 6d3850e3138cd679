"""Atomic writes keep the permissions a plain write would have: 0666 (0777 for a folder) less
the umask, not mkstemp's private 0600, for every file udass writes through them (checkpoints,
results, the overlay video)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from udass.checkpoint import save_checkpoint
from udass.io import current_umask, set_default_permissions, write_bytes, write_json


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o002, 0o077, 0o000])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_atomic_writes_have_the_mode_of_a_plain_write(tmp_path, umask):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert current_umask() == umask
    write_bytes(tmp_path / "a.bin", b"x")
    write_json(tmp_path / "sub" / "m.json", {"miou": 1.0}, durable=False)
    save_checkpoint(tmp_path / "step_0000001.pt", {"step": 1})
    for name in ("a.bin", "sub/m.json", "step_0000001.pt"):
        assert _mode(tmp_path / name) == _mode(plain) == 0o666 & ~umask, name
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    set_default_permissions(d, directory=True)
    plain_dir = tmp_path / "plain_dir"
    plain_dir.mkdir()
    assert _mode(d) == _mode(plain_dir) == 0o777 & ~umask


def test_overlay_video_and_predictions_of_segment_are_not_private(tmp_path, umask, monkeypatch):
    """The overlay video is written by OpenCV into a mkstemp file and renamed: the same mode."""
    import cv2
    import numpy as np

    from udass.segment import _VideoOut

    video = _VideoOut(tmp_path / "overlay.mp4", 10, (64, 48))
    video.write(np.zeros((48, 64, 3), np.uint8))
    video.close()
    assert _mode(tmp_path / "overlay.mp4") == 0o666 & ~umask
    assert cv2.VideoCapture(str(tmp_path / "overlay.mp4")).read()[0]

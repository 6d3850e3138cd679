"""Reading frames and label maps as the datasets ship them .

Every reader returns a numpy array and raises a one-line `UdassError` naming the file when it is
missing or cannot be decoded, never a library traceback. Label readers return RAW ids in the
dataset's own encoding; `udass.data.protocols.map_label` maps them to train ids (ids outside the
encoding to ignore, counted and warned about).

Encodings:
- index PNGs (Cityscapes `*_gtFine_labelIds.png` grayscale, GTAV and VIPER palette PNGs): the pixel
  value / palette INDEX is the id. Read with PIL without any colour conversion (OpenCV would turn
  a palette PNG into colours, and several GTAV ids share one colour).
- SYNTHIA (RAND-CITYSCAPES and Seq) `GT/LABELS`: 16-bit, 3-channel PNG whose first RGB channel is
  the class id. Read with OpenCV `IMREAD_UNCHANGED` (PIL truncates 16-bit RGB to 8 bits); OpenCV
  orders channels BGR, so the class id is index 2.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from udass.errors import UdassError

_INDEX_MODES = ("P", "L", "I;16", "I;16B", "I;16L", "I")


def _require_file(path: Path, what: str, hint: str) -> None:
    if not path.is_file():
        raise UdassError(f"missing {what} {path}{_tail(hint)}")


def _tail(hint: str) -> str:
    return f"; {hint}" if hint else ""


def read_rgb(path: str | os.PathLike, hint: str = "") -> np.ndarray:
    """Read an image file (PNG / JPEG, any bit depth) as uint8 H x W x 3 RGB.

    hint: appended to error messages (e.g. the command that checks or makes the file).
    """
    path = Path(path)
    _require_file(path, "image", hint)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UdassError(f"unreadable image {path} (not a PNG/JPEG OpenCV can decode){_tail(hint)}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def image_size(path: str | os.PathLike, hint: str = "") -> tuple[int, int]:
    """(H, W) of an image file, from its header only (fast)."""
    path = Path(path)
    _require_file(path, "image", hint)
    try:
        with Image.open(path) as img:
            w, h = img.size
    except (OSError, SyntaxError, ValueError) as e:
        raise UdassError(f"unreadable image {path} ({e}){_tail(hint)}") from None
    return h, w


def read_label_index(path: str | os.PathLike, hint: str = "") -> np.ndarray:
    """Read an index label PNG (grayscale or palette) as H x W integer raw ids.

    The palette INDEX is returned, never the colour. A colour (RGB) PNG is an error: it holds
    colours, not ids (e.g. a Cityscapes `_color.png` given instead of `_labelIds.png`).
    """
    path = Path(path)
    _require_file(path, "label", hint)
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode not in _INDEX_MODES:
                raise UdassError(f"label {path} is a {mode} image, expected class indices (a grayscale "
                                 f"or palette PNG, read unconverted){_tail(hint)}")
            arr = np.array(img)
    except UdassError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise UdassError(f"unreadable label {path} ({e}){_tail(hint)}") from None
    return arr


def read_label_synthia(path: str | os.PathLike, hint: str = "") -> np.ndarray:
    """Read a SYNTHIA `GT/LABELS` PNG as H x W uint16 raw class ids (first RGB channel).

    The files are 16-bit 3-channel PNGs (class id in R, instance id in G/B); a single-channel
    file is taken as the ids themselves.
    """
    path = Path(path)
    _require_file(path, "label", hint)
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise UdassError(f"unreadable label {path} (not a PNG OpenCV can decode){_tail(hint)}")
    if arr.ndim == 3:
        if arr.shape[2] < 3:
            raise UdassError(f"label {path} has {arr.shape[2]} channels, expected 3 (SYNTHIA GT/LABELS)"
                             f"{_tail(hint)}")
        arr = arr[..., 2]  # OpenCV is BGR: index 2 is the first RGB channel
    return np.ascontiguousarray(arr)

"""The writers: a rendered frame (internal labels are Cityscapes labelIds) as each dataset ships
it, at that dataset's paths, in its label encoding (docs/datasets.md, "Layout under the data root").

- SYNTHIA-Seq and SYNTHIA-RAND-CITYSCAPES: 8-bit RGB PNG; labels a 16-bit 3-channel PNG with the
  SYNTHIA class id in the first RGB channel and the instance id in the second.
- GTAV: 8-bit RGB PNG; labels a palette PNG whose index is the Cityscapes labelId.
- VIPER: JPEG frames (as the public release); labels a palette PNG of VIPER class indices, the
  ego vehicle's hood labelled car as VIPER labels it (the loader's ego-vehicle rule removes it).
- Cityscapes(-Seq): 8-bit RGB PNG; `gtFine_labelIds` an 8-bit PNG of labelIds.
- Flows: the authors' format (`int16(round(flow * 10))` .npy) at the flow-cache paths.

Every file goes through `udass.io.write_bytes` without the per-file fsync: a generated root is a
regenerable cache whose completeness its marker records, and the fsync costs ten times the write.
"""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from udass.benchmarks import PROTOCOLS
from udass.data.flow import encode_int16_x10, flow_cache_path
from udass.data.protocols import CITYSCAPES_LABELS
from udass.data.synthetic.spec import EGO, SYNTHIA_SEQ_DIR, Snippet
from udass.io import write_bytes

VIPER_CAR = 24          # VIPER class id of "car" (its ego vehicle is labelled car)
JPEG_QUALITY = 95


def _raw_lut(protocol: str, encoding: str) -> np.ndarray:
    """uint16 [256]: Cityscapes labelId -> raw id of `encoding` through the protocol's train ids
    (0, the encoding's void / unlabeled, for labelIds outside the protocol; where several raw ids
    share a train id, the last in the protocol's table)."""
    proto = PROTOCOLS[protocol]
    raw_of_train = {t: r for r, t in proto.id_maps[encoding].items()}
    lut = np.zeros(256, np.uint16)
    for label_id, train in proto.id_maps["cityscapes"].items():
        lut[label_id] = raw_of_train[train]
    return lut


SYNTHIA_SEQ_RAW = _raw_lut("synthia-seq12", "synthia-seq")
SYNTHIA_RAW = _raw_lut("cityscapes19", "synthia")
VIPER_RAW = _raw_lut("viper15", "viper")
VIPER_RAW[EGO] = VIPER_CAR


def write_file(path: Path, data: bytes) -> None:
    """Write-then-rename (complete or absent), no fsync: see the module docstring."""
    write_bytes(path, data, durable=False)


def png(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def rgb_png(rgb: np.ndarray) -> bytes:
    return png(np.ascontiguousarray(rgb[..., ::-1]))


def rgb_jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def synthia_label_png(labels: np.ndarray, inst: np.ndarray, lut: np.ndarray = SYNTHIA_SEQ_RAW
                      ) -> bytes:
    """SYNTHIA GT/LABELS: 16-bit 3-channel PNG, class id (lut[labelId]) in the first RGB channel
    (R), instance id in the second (G). labels: uint8 [H, W] labelIds; inst: uint16 [H, W]."""
    bgr = np.zeros((*labels.shape, 3), np.uint16)
    bgr[..., 2] = lut[labels]
    bgr[..., 1] = inst
    return png(bgr)


def cityscapes_palette() -> bytes:
    """768-byte palette: the Cityscapes colour of each labelId (black beyond 33)."""
    pal = np.zeros((256, 3), np.uint8)
    for lid, _, rgb in CITYSCAPES_LABELS:
        pal[lid] = rgb
    return pal.tobytes()


def _viper_palette() -> bytes:
    """768-byte palette: each VIPER class id in the colour of its protocol class (black else)."""
    proto = PROTOCOLS["viper15"]
    pal = proto.palette()
    out = np.zeros((256, 3), np.uint8)
    for raw, train in proto.id_maps["viper"].items():
        out[raw] = pal[train]
    return out.tobytes()


def _palette_png(index: np.ndarray, palette: bytes) -> bytes:
    img = Image.fromarray(np.ascontiguousarray(index, np.uint8))
    img.putpalette(palette)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def gta_label_png(labels: np.ndarray) -> bytes:
    """GTAV labels: a palette PNG whose index is the Cityscapes labelId."""
    return _palette_png(labels, cityscapes_palette())


def viper_label_png(labels: np.ndarray) -> bytes:
    """VIPER cls: a palette PNG whose index is the VIPER class id (labelIds [H, W] mapped)."""
    return _palette_png(VIPER_RAW[labels].astype(np.uint8), _viper_palette())


def seq_rel(i: int, kind: str) -> str:
    """SYNTHIA-Seq frame i's RGB ("rgb") or label file, relative to `synthia-seq/`."""
    sub = "RGB" if kind == "rgb" else "GT/LABELS"
    return f"{SYNTHIA_SEQ_DIR}/{sub}/Stereo_Left/Omni_F/{i:06d}.png"


def city_rel(folder: str, sn: Snippet, frame: int, suffix: str) -> str:
    """A Cityscapes file relative to `cityscapes/` (folder leftImg8bit, gtFine, ...)."""
    return f"{folder}/{sn.split}/{sn.city}/{sn.stem(frame)}_{suffix}.png"


def viper_rel(kind: str, seq: int, frame: int) -> str:
    """A VIPER train frame ("img", JPEG) or label ("cls") relative to `viper/`."""
    ext = "jpg" if kind == "img" else "png"
    return f"train/{kind}/{seq:03d}/{seq:03d}_{frame:05d}.{ext}"


def write_flow(root: Path, dataset: str, rel: str, flow: np.ndarray) -> None:
    """The authors' format, as `flow.write_flow` writes it: int16(round(flow * 10)) .npy, at the
    flow-cache path of frame `rel` of `dataset` under `root/udass_flow`."""
    buf = io.BytesIO()
    np.save(buf, encode_int16_x10(flow))
    write_file(flow_cache_path(root / "udass_flow", dataset, rel), buf.getvalue())

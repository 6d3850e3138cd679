"""Builders of miniature dataset trees in the real layouts and id encodings (docs/datasets.md), used by
test_datasets.py and test_flowcache.py, plus checks that the files they write really have the
shipped encodings (a builder that wrote the wrong encoding would make the loader tests vacuous).

Frames are constant colours whose red value identifies the frame number (`frame_value`), so a test
can tell which frame a clip carries; labels hold known raw ids in known blocks.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from udass.config import DataConfig, build_config
from udass.data.datasets import build_dataset
from udass.data.flow import flow_cache_path, write_flow

H, W = 24, 48          # stored frame size of every fixture dataset (SYNTHIA-Seq: + CROP rows)
CROP = 4               # SYNTHIA-Seq bottom rows dropped by the fixture config
OUT = (12, 24)         # clip size of the fixture config: exactly half the stored size
FLOW = (2.0, -1.0)     # cached flow of frame t at stored resolution; frame t-k adds k to x
BLOCK_A = (slice(2, 8), slice(2, 10))      # label block of the "A" class of each dataset
BLOCK_B = (slice(10, 16), slice(20, 30))   # label block of the "B" class

CS_TRAIN = ("aachen_000000_000019", "aachen_000001_000294")
CS_VAL = ("frankfurt_000000_000294",)


def frame_value(number: int) -> int:
    """Red value of the fixture frame with this frame number (7 apart: JPEG may shift it by 1-2)."""
    return 20 + 7 * (number % 30)


def write_frame(path: Path, number: int, h: int = H, w: int = W, bottom: int = 0,
                ext_png: bool = True) -> None:
    """Constant frame (R = frame_value(number), G = 100, B = 50); `bottom` rows of R = 255."""
    img = np.zeros((h + bottom, w, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = frame_value(number), 100, 50
    img[h:, :, 0] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, **({} if ext_png else {"quality": 100}))


def ids_map(background: int, a: int, b: int, h: int = H, w: int = W) -> np.ndarray:
    """H x W raw ids: background, block A = a, block B = b, top-right pixel 0."""
    lab = np.full((h, w), background, np.int64)
    lab[BLOCK_A], lab[BLOCK_B] = a, b
    lab[0, -1] = 0
    return lab


def write_index_png(path: Path, ids: np.ndarray, palette: bool = False) -> None:
    """Grayscale ('L') or palette ('P', every colour black) index PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(ids.astype(np.uint8))
    img = Image.frombytes("P" if palette else "L", (data.shape[1], data.shape[0]), data.tobytes())
    if palette:
        img.putpalette([0, 0, 0] * 256)
    img.save(path)


def write_synthia_label(path: Path, ids: np.ndarray) -> None:
    """16-bit 3-channel PNG: class id in R (BGR index 2), 1000 + id in G, 3 ("road") in B."""
    bgr = np.zeros((*ids.shape, 3), np.uint16)
    bgr[..., 2], bgr[..., 1], bgr[..., 0] = ids, 1000 + ids, 3
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), bgr)


# ----------------------------------------------------------------------------------- trees
def make_cityscapes(root: Path, seq: bool = True, images: bool = True) -> None:
    """cityscapes/: gtFine (+ _color, _instanceIds, _polygons.json), leftImg8bit, and snippets
    of frames t-2..t+1 in leftImg8bit_sequence. Labels: road (7), A = 25 (rider), B = 26 (car)."""
    cs = root / "cityscapes"
    for split, names in (("train", CS_TRAIN), ("val", CS_VAL)):
        for name in names:
            city, sid, frame = name.split("_")
            gt = cs / "gtFine" / split / city
            write_index_png(gt / f"{name}_gtFine_labelIds.png", ids_map(7, 25, 26))
            write_index_png(gt / f"{name}_gtFine_instanceIds.png", ids_map(7, 40, 41))
            Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(gt / f"{name}_gtFine_color.png")
            (gt / f"{name}_gtFine_polygons.json").write_text(json.dumps({"objects": []}))
            if images:
                write_frame(cs / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", int(frame))
            for n in range(int(frame) - 2, int(frame) + 2) if seq else ():
                write_frame(cs / "leftImg8bit_sequence" / split / city
                            / f"{city}_{sid}_{n:06d}_leftImg8bit.png", n)


def make_synthia_seq(root: Path, n: int = 4) -> None:
    """synthia-seq/SYNTHIA-SEQS-04-DAWN, frames 0..n-1 (+ a Stereo_Right camera to skip).
    Frames are H + CROP rows (bottom CROP rows red); labels: road (3), A = 8 (car), B = 10
    (person), bottom CROP rows 1 (sky)."""
    seq = root / "synthia-seq" / "SYNTHIA-SEQS-04-DAWN"
    for i in range(n):
        for cam in ("Stereo_Left", "Stereo_Right"):
            write_frame(seq / "RGB" / cam / "Omni_F" / f"{i:06d}.png", i, bottom=CROP)
            ids = np.ones((H + CROP, W), np.int64)
            ids[:H] = ids_map(3, 8, 10)
            write_synthia_label(seq / "GT" / "LABELS" / cam / "Omni_F" / f"{i:06d}.png", ids)


def viper_ids() -> np.ndarray:
    """VIPER ids: road (3), A = 7 and B = 8 (both vegetation), a car (24) touching the bottom
    centre (the ego vehicle) and another car (24) in the top-right corner."""
    ids = ids_map(3, 7, 8)
    ids[H - 5:, W // 2 - 6: W // 2 + 6] = 24
    ids[1:4, W - 8: W - 3] = 24
    return ids


def make_viper(root: Path) -> None:
    """viper/train: seq 001 (jpg) labels 00010, 00020 (+ 00000, 00009, 00019: labelled frames that
    are no clips, frame 0 having no previous frame and 9 / 19 no previous image), seq 002 (png)
    label 00010 without a label for 00009; viper/val: seq 003 label 00010."""
    vp = root / "viper"
    plan = (("train", "001", ".jpg", (0, 9, 10, 19, 20), (0, 9, 10, 19, 20)),
            ("train", "002", ".png", (9, 10), (10,)),
            ("val", "003", ".jpg", (9, 10), (9, 10)))
    for split, seq, ext, images, labels in plan:
        for f in images:
            write_frame(vp / split / "img" / seq / f"{seq}_{f:05d}{ext}", f, ext_png=ext == ".png")
        for f in labels:
            write_index_png(vp / split / "cls" / seq / f"{seq}_{f:05d}.png", viper_ids(), palette=True)


def make_gta(root: Path, n: int = 2) -> None:
    """gta/images, gta/labels: palette PNGs (all colours black); road (7), A = 24 (person), B = 26 (car)."""
    for i in range(1, n + 1):
        write_frame(root / "gta" / "images" / f"{i:05d}.png", i)
        write_index_png(root / "gta" / "labels" / f"{i:05d}.png", ids_map(7, 24, 26), palette=True)


def make_synthia(root: Path, n: int = 2) -> None:
    """synthia/RGB, synthia/GT/LABELS (+ GT/COLOR to skip); road (3), A = 8 (car), B = 10 (person)."""
    for i in range(n):
        write_frame(root / "synthia" / "RGB" / f"{i:07d}.png", i)
        write_synthia_label(root / "synthia" / "GT" / "LABELS" / f"{i:07d}.png", ids_map(3, 8, 10))
        write_frame(root / "synthia" / "GT" / "COLOR" / f"{i:07d}.png", i)


def make_root(root: Path) -> Path:
    """A data root holding every fixture dataset."""
    make_cityscapes(root)
    make_synthia_seq(root)
    make_viper(root)
    make_gta(root)
    make_synthia(root)
    return root


def fixture_sizes(benchmark: str) -> dict[str, int]:
    """Clips per role of `make_root`'s trees (check_data's `expected`: the real sizes are far larger)."""
    source = {"synthia-seq": 3, "viper": 3, "gta": 2, "synthia": 2}[get_source(benchmark)]
    return {"source/train": source, "target/train": len(CS_TRAIN), "target/val": len(CS_VAL)}


def fixture_cfg(benchmark: str, **kw) -> DataConfig:
    """The test profile's DataConfig with sizes halving the fixture frames and CROP for SYNTHIA-Seq."""
    cfg = build_config(benchmark, profile="test").data
    crop = CROP if get_source(benchmark) == "synthia-seq" else 0
    return replace(cfg, source_size=OUT, target_size=OUT, source_crop_bottom=crop,
                   flow_source="dis", **kw)


def preset_data(benchmark: str, profile: str = "demo") -> DataConfig:
    """The DataConfig of the benchmark's preset: what `udass check-data` and `udass flow` read
    clips with (the demo profile), or another profile's."""
    return build_config(benchmark, profile=profile).data


def get_source(benchmark: str) -> str:
    from udass.data.protocols import get_benchmark

    return get_benchmark(benchmark).source


def write_cache_flows(root: Path, benchmark: str, skip: int = 0) -> list[Path]:
    """Write the constant cache flow of every flow a benchmark reads (frame t-k: FLOW + (k, 0)),
    at each frame's stored resolution; the first `skip` are left out. Returns every flow path."""
    paths: dict[Path, int] = {}
    for domain, split in (("source", "train"), ("target", "train"), ("target", "val")):
        ds = build_dataset(benchmark, split, root, domain, data_cfg=fixture_cfg(benchmark))
        for i in range(len(ds)):
            for k, p in enumerate(ds.raw_paths(i).flows):
                paths.setdefault(p, k)
    for j, (p, k) in enumerate(paths.items()):
        if j >= skip:
            h = H + CROP if "synthia-seq" in str(p) else H
            flow = np.zeros((h, W, 2), np.float32)
            flow[..., 0], flow[..., 1] = FLOW[0] + k, FLOW[1]
            write_flow(p, flow)
    return list(paths)


def cache_path(root: Path, folder: str, rel: str) -> Path:
    return flow_cache_path(root / "udass_flow", folder, rel)


# ----------------------------------------------------------------------------------- self-checks
def test_builders_write_the_shipped_encodings(tmp_path):
    make_root(tmp_path)
    lab = tmp_path / "synthia-seq/SYNTHIA-SEQS-04-DAWN/GT/LABELS/Stereo_Left/Omni_F/000001.png"
    raw = cv2.imread(str(lab), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.shape == (H + CROP, W, 3)
    assert raw[BLOCK_A][..., 2].max() == 8 and raw[BLOCK_A][..., 0].max() == 3
    with Image.open(tmp_path / "gta/labels/00001.png") as img:
        assert img.mode == "P" and np.array(img.convert("RGB")).max() == 0  # colours carry nothing
    with Image.open(tmp_path / "viper/train/cls/001/001_00010.png") as img:
        assert img.mode == "P"
    with Image.open(tmp_path / "cityscapes/gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png") as img:
        assert img.mode == "L"

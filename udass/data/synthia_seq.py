"""SYNTHIA-Seq (SYNTHIA-SEQS-04-DAWN), as shipped; only the front left camera is read.

    synthia-seq/SYNTHIA-SEQS-04-DAWN/RGB/Stereo_Left/Omni_F/{000000}.png
    synthia-seq/SYNTHIA-SEQS-04-DAWN/GT/LABELS/Stereo_Left/Omni_F/{000000}.png

Labels use the SYNTHIA encoding (16-bit 3-channel PNG, class id in the first RGB channel) and
every frame is labelled. The other cameras (Stereo_Right, Omni_B/L/R) and folders (Depth,
GT/COLOR, CameraParams) are skipped. The train split is frames 1..N-1 of the one continuous
sequence (DA-VSN / TPS: 000001..000849 of 850 frames), N-1 being the last frame found among the
RGB and label files: a frame missing inside the sequence stays in the split and is reported by
path, never skipped. There is no val split.

A key is the frame stem (`000123`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from udass.data.imageio import read_label_synthia
from udass.errors import UdassError

SEQUENCE = "SYNTHIA-SEQS-04-DAWN"
CAMERA = "Stereo_Left/Omni_F"
DOWNLOAD = ("download SYNTHIA-SEQS-04-DAWN.rar from http://synthia-dataset.net/downloads/ "
            "(http://synthia-dataset.cvc.uab.cat/SYNTHIA_SEQS/SYNTHIA-SEQS-04-DAWN.rar) "
            "and unpack it into synthia-seq/")
# The authors' released SYNTHIA-Seq flows (QuadMix / TPS READMEs): computed on the frames with
# their bottom 120 rows removed, at 0.533 scale, one flat folder of `{frame:06d}_int16_x10.npy`.
AUTHORS_FLOW_DIRS = ("estimated_optical_flow_synthiaseq_train", "Estimated_optical_flow_SynthiaSeq_train")


def shift_frame(stem: str, offset: int) -> str:
    """`000123`, 1 -> `000122`."""
    return f"{int(stem) - offset:0{len(stem)}d}"


def _png_stems(d: Path) -> set[str]:
    """Numeric stems of the PNG files in folder d."""
    if not d.is_dir():
        return set()
    return {e.name[:-4] for e in os.scandir(d) if e.name.endswith(".png") and e.name[:-4].isdigit()}


class SynthiaSeqLayout:
    """SYNTHIA-Seq DAWN, front left camera (1280 x 760, 850 frames on the real data)."""

    dataset = "synthia-seq"
    folder = "synthia-seq"
    encoding = "synthia-seq"
    is_video = True
    prev_labels_optional = False
    authors_crop_bottom = 120
    download = DOWNLOAD

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def rgb_dir(self) -> Path:
        return self.root / SEQUENCE / "RGB" / CAMERA

    def split_keys(self, split: str) -> list[str]:
        """Frames 1..last (train), `last` the highest frame number of an RGB or label file;
        SYNTHIA-Seq has no val split."""
        if split != "train":
            raise UdassError(f"SYNTHIA-Seq has no {split} split (a source-only dataset: train); "
                             f"evaluate on the target (Cityscapes-Seq val)")
        d = self.rgb_dir
        stems = _png_stems(d) | _png_stems(self.root / SEQUENCE / "GT" / "LABELS" / CAMERA)
        if not stems or max(int(s) for s in stems) < 1:
            raise UdassError(f"no consecutive SYNTHIA-Seq frames in {d} (expected {d}/000000.png, "
                             f"000001.png ...); {DOWNLOAD}")
        width = len(max(stems, key=int))
        return [f"{n:0{width}d}" for n in range(1, max(int(s) for s in stems) + 1)]

    def name(self, key: str) -> str:
        return key

    def frame_rel(self, key: str, offset: int = 0) -> str:
        return f"{SEQUENCE}/RGB/{CAMERA}/{shift_frame(key, offset)}.png"

    def label_rel(self, key: str, offset: int = 0) -> str | None:
        return f"{SEQUENCE}/GT/LABELS/{CAMERA}/{shift_frame(key, offset)}.png"

    def read_label(self, path: Path, hint: str = "") -> np.ndarray:
        """Raw SYNTHIA class ids (first RGB channel of the 16-bit PNG), H x W uint16."""
        return read_label_synthia(path, hint)

    def authors_flow(self, split: str, key: str, offset: int) -> tuple[tuple[str, ...], str]:
        """(candidate folders, file name) of the authors' flow of frame t-offset -> t-offset-1."""
        return AUTHORS_FLOW_DIRS, f"{shift_frame(key, offset)}_int16_x10.npy"

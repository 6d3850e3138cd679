"""The datasets' raw label encodings and their mapping to train ids.

Raw ids are the datasets' own label encodings (Cityscapes labelIds, GTAV palette indices,
SYNTHIA / VIPER class ids); `map_label` turns them into train ids of a protocol of
`udass.benchmarks` (255 = ignore), counting the files that hold ids outside their encoding.
The benchmark registry itself (classes, protocols, benchmarks, split sizes) lives in
`udass.benchmarks`; its names are re-exported here for code written against this module.
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from types import MappingProxyType
from typing import Mapping

import numpy as np

# the benchmark registry, defined in udass.benchmarks (below the configuration) and re-exported
# for code that imports it from here
from udass.benchmarks import (BENCHMARKS, CITYSCAPES_19, CLASS_COLORS, IGNORE_INDEX, PROTOCOLS,
                              ROLES, SPLIT_SIZES, SYNTHIA_SEQ_12, VIPER_15, Benchmark, Protocol,
                              get_benchmark)

__all__ = ["CITYSCAPES_LABELS", "RAW_ID_MAX", "LabelIdWarning", "id_lut", "outside_encoding",
           "map_label", "unexpected_label_ids", "reset_unexpected_label_ids",
           # re-exported from udass.benchmarks
           "BENCHMARKS", "CITYSCAPES_19", "CLASS_COLORS", "IGNORE_INDEX", "PROTOCOLS", "ROLES",
           "SPLIT_SIZES", "SYNTHIA_SEQ_12", "VIPER_15", "Benchmark", "Protocol", "get_benchmark"]

# Cityscapes labelIds: (id, name, colour). `cityscapesscripts.helpers.labels` defines the same table;
# GTAV labels are palette PNGs whose index is this id (and whose palette is these colours).
CITYSCAPES_LABELS: tuple[tuple[int, str, tuple[int, int, int]], ...] = (
    (0, "unlabeled", (0, 0, 0)), (1, "ego vehicle", (0, 0, 0)),
    (2, "rectification border", (0, 0, 0)), (3, "out of roi", (0, 0, 0)),
    (4, "static", (0, 0, 0)), (5, "dynamic", (111, 74, 0)), (6, "ground", (81, 0, 81)),
    (7, "road", (128, 64, 128)), (8, "sidewalk", (244, 35, 232)), (9, "parking", (250, 170, 160)),
    (10, "rail track", (230, 150, 140)), (11, "building", (70, 70, 70)), (12, "wall", (102, 102, 156)),
    (13, "fence", (190, 153, 153)), (14, "guard rail", (180, 165, 180)), (15, "bridge", (150, 100, 100)),
    (16, "tunnel", (150, 120, 90)), (17, "pole", (153, 153, 153)), (18, "polegroup", (153, 153, 153)),
    (19, "traffic light", (250, 170, 30)), (20, "traffic sign", (220, 220, 0)),
    (21, "vegetation", (107, 142, 35)), (22, "terrain", (152, 251, 152)), (23, "sky", (70, 130, 180)),
    (24, "person", (220, 20, 60)), (25, "rider", (255, 0, 0)), (26, "car", (0, 0, 142)),
    (27, "truck", (0, 0, 70)), (28, "bus", (0, 60, 100)), (29, "caravan", (0, 0, 90)),
    (30, "trailer", (0, 0, 110)), (31, "train", (0, 80, 100)), (32, "motorcycle", (0, 0, 230)),
    (33, "bicycle", (119, 11, 32)),
)

# Raw label encodings: the largest id each dataset defines. An id above it is "outside the encoding"
# (a corrupt file or the wrong dataset): it is mapped to ignore (255), as the reference converters
# do, and counted (`map_label` warns; `udass check-data --full` lists every such file).
RAW_ID_MAX: Mapping[str, int] = MappingProxyType({
    "cityscapes": 33,   # gtFine *_labelIds.png
    "gta": 34,          # palette index = Cityscapes labelId (a few GTAV files use 34)
    "synthia": 22,      # SYNTHIA-RAND-CITYSCAPES GT/LABELS, first channel of a 16-bit PNG
    "synthia-seq": 22,  # SYNTHIA-Seq GT/LABELS, same encoding
    "viper": 31,        # VIPER cls/*.png class index
})


@lru_cache(maxsize=None)
def id_lut(protocol: str, encoding: str) -> np.ndarray:
    """uint8 [65536] lookup table raw id -> train id (255 for ids the protocol does not train on)."""
    lut = np.full(65536, IGNORE_INDEX, np.uint8)
    for raw, train in PROTOCOLS[protocol].id_maps[encoding].items():
        lut[raw] = train
    lut.setflags(write=False)
    return lut


class LabelIdWarning(UserWarning):
    """Label ids outside a dataset's encoding were mapped to ignore (255)."""


# encoding -> {label file: (first ids outside the encoding, pixels)}, in this process (each
# DataLoader worker keeps its own; `udass check-data --full` is the authoritative count).
_UNEXPECTED: dict[str, dict[str, tuple[tuple[int, ...], int]]] = {}
SHOW_FILES = 3


def outside_encoding(raw: np.ndarray, encoding: str) -> tuple[tuple[int, ...], int]:
    """(up to 8 distinct ids outside `encoding`'s range 0..RAW_ID_MAX, number of such pixels).

    raw: integer array of any shape. ((), 0) for a clean label; the min / max test keeps the
    common case at two reductions.
    """
    raw = np.asarray(raw)
    top = RAW_ID_MAX[encoding]
    if not raw.size or (int(raw.max()) <= top and int(raw.min()) >= 0):
        return (), 0
    bad = (raw > top) | (raw < 0)
    return tuple(np.unique(raw[bad])[:8].tolist()), int(bad.sum())


def map_label(raw: np.ndarray, protocol: str, encoding: str, source: str = "label") -> np.ndarray:
    """Map a raw label array (any integer dtype) to train ids (uint8, 255 ignore).

    Ids outside the encoding's range map to 255, like ids the protocol does not train on; each
    file `source` holding some is counted per encoding (`unexpected_label_ids`) and a
    `LabelIdWarning` names it with the count so far when that count reaches 1, 10, 100, ...
    (so a corrupt dataset warns a few times, not once per item).
    """
    raw = np.asarray(raw)
    ids, pixels = outside_encoding(raw, encoding)
    if not pixels:
        return id_lut(protocol, encoding)[raw.astype(np.int64, copy=False)]
    _note_unexpected(encoding, source, ids, pixels)
    bad = (raw > RAW_ID_MAX[encoding]) | (raw < 0)
    out = id_lut(protocol, encoding)[np.where(bad, IGNORE_INDEX, raw).astype(np.int64, copy=False)]
    out[bad] = IGNORE_INDEX
    return out


def _note_unexpected(encoding: str, source: str, ids: tuple[int, ...], pixels: int) -> None:
    files = _UNEXPECTED.setdefault(encoding, {})
    if source in files:
        return
    files[source] = (ids, pixels)
    n = len(files)
    if n == 10 ** (len(str(n)) - 1):   # 1, 10, 100, ...
        first = ", ".join(list(files)[:SHOW_FILES])
        warnings.warn(
            f"{source}: label ids {list(ids)} outside the {encoding} encoding (0..{RAW_ID_MAX[encoding]}) on "
            f"{pixels} pixels were mapped to ignore (255); {n} {encoding} label file(s) with such ids so "
            f"far in this process, the first: {first}; `udass check-data --full` lists every one",
            LabelIdWarning, stacklevel=3)


def unexpected_label_ids() -> dict[str, dict[str, tuple[tuple[int, ...], int]]]:
    """Per encoding, the label files `map_label` found ids outside the encoding in, in this
    process: {encoding: {file: (ids, pixels)}} (a copy)."""
    return {enc: dict(files) for enc, files in _UNEXPECTED.items()}


def reset_unexpected_label_ids() -> None:
    """Forget the files counted by `map_label` (e.g. between two checks in one process)."""
    _UNEXPECTED.clear()

"""The embedded synthetic benchmarks `synthetic-video` and `synthetic-image` (PROTOCOLS.md).

A deterministic procedural generator of street scenes seen from a moving camera, with moving
pedestrians, riders and vehicles. It writes miniature datasets in the REAL on-disk layouts and
label encodings, so that the loaders of the real datasets serve the demo unchanged:

- `synthetic-video`: source = SYNTHIA-Seq (`synthia-seq/SYNTHIA-SEQS-04-DAWN/...`, 16-bit
  3-channel labels, class id in the first RGB channel), target = Cityscapes-Seq
  (`cityscapes/leftImg8bit_sequence`, `gtFine/*_labelIds.png` for the 20th frame of each snippet,
  `leftImg8bit` copies of the annotated frames), plus the EXACT backward flow t -> t-1 of every
  written frame whose previous frame is written, in the flow cache (`udass_flow/`).
- `synthetic-image`: source = GTAV (`gta/images`, palette-PNG `gta/labels` whose index is the
  Cityscapes labelId), target = Cityscapes (`leftImg8bit`, `gtFine`).

Every pixel is rendered from a 3-D point found by ray casting (a ground plane, boxes, spheres and
planar cut-outs; sky at infinity), so the flow of a pixel is where the same point (moved back by
its object's motion) projects in the previous camera. The source style is flat and clean; the
target style is textured (texture fixed to surfaces, so it moves with the flow), lit differently,
hazy, blurred and noisy, with a shifted class layout: a real domain gap.

Internally a pixel's class is its Cityscapes labelId; the writers convert it to each dataset's
encoding. Randomness comes from numpy Generators seeded by (seed, benchmark, domain, item);
every file is written atomically and `udass_synthetic.json` is written last.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from udass.data.flow import encode_int16_x10, flow_cache_path, flow_to_color
from udass.data.protocols import CITYSCAPES_LABELS, IGNORE, PROTOCOLS, map_label
from udass.errors import UdassError, unknown_name

GENERATOR_VERSION = "4"   # bump whenever the output changes: cached roots then regenerate
MARKER = "udass_synthetic.json"
OWNER_STAMP = ".udass_synthetic"   # written first and kept: this folder is a generated root
DATASET_DIRS = ("cityscapes", "gta", "synthia-seq", "udass_flow")
SYNTHIA_SEQ_DIR = "SYNTHIA-SEQS-04-DAWN"
SNIPPET_LENGTH = 30          # frames per Cityscapes-Seq snippet
ANNOTATED_INDEX = 19         # the annotated frame is the 20th of its snippet
FRAMES_WRITTEN = {"train": 3, "val": 6}   # sequence frames written per snippet, ending at t
NEAR, FAR = 0.5, 160.0       # metres: nearest hit accepted, farthest object drawn
AA_PERIOD = 2.0              # texture detail finer than this many pixels per period fades out

# Cityscapes labelIds (CITYSCAPES_LABELS): the internal class of a pixel.
UNLABELED, EGO, STATIC = 0, 1, 4
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE = 7, 8, 11, 12, 13, 17
LIGHT, SIGN, VEGETATION, TERRAIN, SKY = 19, 20, 21, 22, 23
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = 24, 25, 26, 27, 28, 31, 32, 33

BENCHMARK_SPECS: dict[str, dict[str, Any]] = {
    "synthetic-video": {"code": 1, "protocol": "synthia-seq12", "source": "synthia-seq",
                        "video": True},
    "synthetic-image": {"code": 2, "protocol": "cityscapes19", "source": "gta", "video": False},
}


# ============================================================================ sizes and names
@dataclass(frozen=True)
class SizeSpec:
    """How much a benchmark size holds. Frames are width x height pixels."""

    width: int
    height: int
    source_frames: int                          # SYNTHIA-Seq frames 000000.. (video)
    source_images: int                          # GTAV images 00001.. (image)
    train_cities: tuple[tuple[str, int], ...]   # (city, snippets)
    val_cities: tuple[tuple[str, int], ...]
    supersample: int = 1                        # colour rays per pixel side (anti-aliasing)


SIZES: dict[str, SizeSpec] = {
    # tiny frames average 3 x 3 colour rays per pixel: point sampling aliases badly at 64 x 32
    "tiny": SizeSpec(64, 32, 8, 6, (("aachen", 2), ("bochum", 2)), (("frankfurt", 2),), 3),
    "demo": SizeSpec(256, 128, 360, 400,
                     (("aachen", 25), ("bochum", 25), ("bremen", 25), ("cologne", 25),
                      ("darmstadt", 25), ("dusseldorf", 25)),
                     (("frankfurt", 20), ("lindau", 15), ("munster", 15))),
}
# Cities whose snippets share sequence 000000 with annotated frames 000294, 000594, ...
# (as frankfurt_000000_000294 in the real data): the snippet start is not frame 0.
LONG_SEQUENCE_CITIES = ("bochum", "frankfurt")


@dataclass(frozen=True)
class Snippet:
    """A Cityscapes(-Seq) snippet: 30 frames start..start+29, annotated frame start+19."""

    split: str
    city: str
    seq: int
    annotated: int
    index: int      # position within its split (seeds its scene)

    @property
    def start(self) -> int:
        return self.annotated - ANNOTATED_INDEX

    def stem(self, frame: int) -> str:
        return f"{self.city}_{self.seq:06d}_{frame:06d}"


def snippets(size: str) -> list[Snippet]:
    """All target snippets of a size, train then val, in a fixed order."""
    spec = _size_spec(size)
    out: list[Snippet] = []
    for split, cities in (("train", spec.train_cities), ("val", spec.val_cities)):
        index = 0
        for city, n in cities:
            for i in range(n):
                long_seq = city in LONG_SEQUENCE_CITIES
                seq, ann = (0, 294 + 300 * i) if long_seq else (i, ANNOTATED_INDEX)
                out.append(Snippet(split, city, seq, ann, index))
                index += 1
    return out


def _size_spec(size: str) -> SizeSpec:
    if size not in SIZES:
        raise unknown_name("synthetic size", size, SIZES)
    return SIZES[size]


def _bench_spec(benchmark: str) -> dict[str, Any]:
    if benchmark not in BENCHMARK_SPECS:
        raise unknown_name("synthetic benchmark", benchmark, BENCHMARK_SPECS)
    return BENCHMARK_SPECS[benchmark]


# ============================================================================ styles and layouts
def _lut(colors: dict[int, tuple[int, int, int]], default: tuple[int, int, int]) -> np.ndarray:
    """float32 [256, 3] colour lookup by labelId."""
    lut = np.tile(np.asarray(default, np.float32), (256, 1))
    for k, v in colors.items():
        if k >= 0:
            lut[k] = v
    return lut


def _scalar_lut(values: dict[int, float], default: float = 0.0) -> np.ndarray:
    lut = np.full(256, default, np.float32)
    for k, v in values.items():
        lut[k] = v
    return lut


@dataclass(frozen=True)
class Style:
    """How a domain looks: camera, palette, lighting, texture and sensor effects."""

    name: str
    focal: float                  # focal length in units of the frame width
    horizon: float                # principal-point row in units of the frame height
    cam_height: float             # metres
    colors: dict[int, tuple[tuple[int, int, int], ...]]   # labelId -> instance colour choices
    jitter: float                 # per-instance brightness jitter (+-)
    light: tuple[float, float, float]
    ambient: float
    diffuse: float
    skies: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...]  # clear, overcast
    textured: bool
    tex_amp: dict[int, float] = field(default_factory=dict)
    tex_freq: dict[int, float] = field(default_factory=dict)
    clouds: float = 0.0
    fog: float = 0.0              # haze distance in metres (0: none)
    fog_color: tuple[int, int, int] = (200, 200, 200)
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gamma: float = 1.0
    vignette: float = 0.0
    blur: float = 0.0             # Gaussian sigma in pixels at 256 px width
    noise: float = 0.0            # sensor noise sigma (8-bit units)
    hood: bool = False            # ego-vehicle hood in the bottom rows (Cityscapes: labelId 1)
    marking: tuple[int, int, int] = (235, 235, 225)

    def color_lut(self) -> np.ndarray:
        return _lut({k: v[0] for k, v in self.colors.items()}, (0, 0, 0))


_SOURCE_STYLE = Style(
    name="source", focal=0.8, horizon=0.45, cam_height=1.7,
    colors={ROAD: ((92, 88, 100),), SIDEWALK: ((178, 166, 150),), BUILDING: ((165, 122, 96),),
            WALL: ((188, 178, 140),), FENCE: ((130, 98, 60),), POLE: ((82, 82, 96),),
            LIGHT: ((212, 172, 30),), SIGN: ((228, 208, 45),), VEGETATION: ((64, 152, 54),),
            TERRAIN: ((152, 184, 86),), PERSON: ((204, 72, 66), (176, 58, 120)),
            RIDER: ((218, 122, 44),), CAR: ((44, 72, 184), (30, 130, 190), (70, 50, 170)),
            TRUCK: ((122, 62, 152),), BUS: ((40, 142, 142),), TRAIN: ((172, 62, 102),),
            MOTORCYCLE: ((64, 42, 124),), BICYCLE: ((152, 42, 42),), STATIC: ((112, 112, 118),),
            -1: ((40, 46, 64),)},   # -1: vehicle glass
    jitter=0.08, light=(-0.45, 0.8, -0.4), ambient=0.72, diffuse=0.34,
    skies=(((186, 214, 246), (104, 156, 232)), ((178, 184, 190), (150, 156, 164))),
    textured=False,
)

_TARGET_STYLE = Style(
    # Generator v4: target colours are the source's shifted by a few tens of levels, with extra
    # real-world variety for vehicles, people and signs (v3 re-assigned every class a new colour,
    # which inverted a from-scratch network's colour cues: see docs/synthetic.md, "Revision").
    name="target", focal=0.9, horizon=0.48, cam_height=1.4,
    colors={ROAD: ((104, 100, 104),), SIDEWALK: ((168, 158, 148),),
            BUILDING: ((165, 122, 96), (150, 112, 92), (176, 138, 108), (140, 120, 110)),
            WALL: ((178, 168, 138),), FENCE: ((124, 100, 70),), POLE: ((90, 90, 100),),
            LIGHT: ((200, 165, 40),), SIGN: ((215, 200, 60), (200, 60, 50)),
            VEGETATION: ((70, 140, 60), (60, 120, 50)), TERRAIN: ((140, 170, 90),),
            PERSON: ((190, 70, 70), (160, 60, 110), (60, 70, 110)),
            RIDER: ((200, 120, 50), (60, 70, 110)),
            CAR: ((44, 72, 184), (30, 130, 190), (160, 160, 170), (40, 40, 50)),
            TRUCK: ((122, 62, 152), (200, 200, 190)), BUS: ((40, 142, 142), (200, 180, 40)),
            TRAIN: ((172, 62, 102), (220, 220, 216)), MOTORCYCLE: ((64, 42, 124), (40, 40, 46)),
            BICYCLE: ((152, 42, 42), (52, 52, 58)),
            STATIC: ((100, 100, 104),), EGO: ((34, 34, 40),), -1: ((34, 40, 48),)},
    jitter=0.12, light=(0.6, 0.55, -0.55), ambient=0.52, diffuse=0.62,
    skies=(((214, 220, 224), (168, 186, 204)), ((222, 222, 220), (196, 198, 200))),
    textured=True,
    tex_amp={ROAD: 0.4, SIDEWALK: 0.4, BUILDING: 0.35, WALL: 0.4, FENCE: 0.3, POLE: 0.3,
             LIGHT: 0.1, SIGN: 0.1, VEGETATION: 0.8, TERRAIN: 0.6, PERSON: 0.35, RIDER: 0.35,
             CAR: 0.2, TRUCK: 0.25, BUS: 0.2, TRAIN: 0.2, MOTORCYCLE: 0.25, BICYCLE: 0.25,
             STATIC: 0.3},
    tex_freq={ROAD: 1.0, SIDEWALK: 1.5, BUILDING: 0.8, WALL: 1.2, FENCE: 2.0, POLE: 2.0,
              LIGHT: 2.0, SIGN: 2.0, VEGETATION: 1.6, TERRAIN: 2.0, PERSON: 3.0, RIDER: 3.0,
              CAR: 1.2, TRUCK: 1.0, BUS: 1.0, TRAIN: 1.0, MOTORCYCLE: 2.0, BICYCLE: 2.0,
              STATIC: 2.0},
    clouds=0.5, fog=250.0, fog_color=(206, 208, 206), tint=(1.05, 1.0, 0.9), gamma=0.9,
    vignette=0.28, blur=0.8, noise=3.0, hood=True, marking=(196, 196, 186),
)


@dataclass(frozen=True)
class Layout:
    """What a domain's streets hold: sizes in metres, probabilities per slot."""

    road_half: tuple[float, float]
    sidewalk: tuple[float, float]
    terrain: tuple[float, float]          # grass strip width (image benchmark only)
    terrain_p: float
    building_height: tuple[float, float]
    building_gap_p: float
    tree_p: float                          # per 8 m slot and side
    tree_radius: tuple[float, float]
    hedge_p: float                         # per block side
    pole_p: float                          # per 14 m slot and side
    pole_width: float
    fence_p: float                         # per block side
    parked_p: float                        # per 6 m parking slot
    traffic: float                         # moving vehicles per 100 m and lane
    person_p: float                        # per 4 m slot and side
    person_size: tuple[float, float]       # width, mean height
    riders: float                          # mean riders along the street per block side
    car_scale: float
    wall_p: float = 0.0                    # image benchmark extras from here on
    big_vehicle_p: float = 0.0             # fraction of vehicles that are trucks or buses
    tram_p: float = 0.0                    # per block
    two_wheeler_p: float = 0.0             # parked bicycles / motorcycles per block side


_SOURCE_LAYOUT = Layout(
    road_half=(4.0, 6.5), sidewalk=(2.0, 3.4), terrain=(0.8, 2.0), terrain_p=0.25,
    building_height=(8.0, 20.0), building_gap_p=0.25, tree_p=0.22, tree_radius=(1.4, 2.2),
    hedge_p=0.1, pole_p=0.7, pole_width=0.36, fence_p=0.5, parked_p=0.65, traffic=3.0,
    person_p=0.22, person_size=(0.72, 1.85), riders=1.2, car_scale=1.08,
    wall_p=0.35, big_vehicle_p=0.08, tram_p=0.06, two_wheeler_p=0.35,
)
_TARGET_LAYOUT = Layout(
    road_half=(3.6, 5.5), sidewalk=(3.0, 5.0), terrain=(1.0, 3.0), terrain_p=0.5,
    building_height=(10.0, 26.0), building_gap_p=0.35, tree_p=0.5, tree_radius=(1.8, 3.2),
    hedge_p=0.35, pole_p=0.75, pole_width=0.28, fence_p=0.4, parked_p=0.5, traffic=2.0,
    person_p=0.35, person_size=(0.64, 1.72), riders=1.2, car_scale=0.95,
    wall_p=0.3, big_vehicle_p=0.06, tram_p=0.08, two_wheeler_p=0.45,
)
STYLES = {"source": _SOURCE_STYLE, "target": _TARGET_STYLE}
LAYOUTS = {"source": _SOURCE_LAYOUT, "target": _TARGET_LAYOUT}


# ============================================================================ camera
@dataclass(frozen=True)
class Camera:
    """Pinhole camera. World: x right, y up, z forward; yaw turns about +y.

    Pixel centres sit at integer (col, row), as `flow.warp` assumes.
    """

    width: int
    height: int
    focal: float
    cx: float
    cy: float
    position: tuple[float, float, float]
    yaw: float

    @classmethod
    def for_style(cls, style: Style, width: int, height: int,
                  position: tuple[float, float, float], yaw: float) -> Camera:
        return cls(width, height, style.focal * width, (width - 1) / 2, style.horizon * height,
                   position, yaw)

    def supersampled(self, n: int) -> Camera:
        """The same view on an n-times finer grid: n x n fine pixels average to one pixel."""
        return Camera(self.width * n, self.height * n, self.focal * n, (self.cx + 0.5) * n - 0.5,
                      (self.cy + 0.5) * n - 0.5, self.position, self.yaw)

    def axes(self) -> np.ndarray:
        """float64 [3, 3]: rows right, up, forward in world coordinates."""
        s, c = math.sin(self.yaw), math.cos(self.yaw)
        return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])

    def rays(self) -> np.ndarray:
        """float64 [3, H, W]: world ray directions with unit forward component (t = depth)."""
        xc = (np.arange(self.width) - self.cx) / self.focal
        yc = (self.cy - np.arange(self.height)) / self.focal
        r, u, f = self.axes()
        d = (r[:, None, None] * xc[None, None, :] + u[:, None, None] * yc[None, :, None]
             + f[:, None, None])
        d[d == 0.0] = 1e-12   # no exact zeros: the slab test divides by d
        return d

    def project(self, pts: np.ndarray, directions: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Image coordinates (col, row) of world points [..., 3] (or directions, at infinity)."""
        q = pts if directions else pts - np.asarray(self.position)
        cam = q @ self.axes().T
        z = np.maximum(cam[..., 2], 1e-6)
        return self.cx + self.focal * cam[..., 0] / z, self.cy - self.focal * cam[..., 1] / z


@dataclass(frozen=True)
class Trajectory:
    """Ego motion: forward speed with a slow oscillation, lateral sway and yaw wobble.

    Positions are closed-form in the frame index k (metres per frame), so any frame is exact.
    """

    speed: float
    speed_amp: float
    period: float
    phase: float
    lane_x: float
    sway: float
    yaw_amp: float
    yaw_period: float
    yaw_phase: float

    def pose(self, k: float) -> tuple[tuple[float, float, float], float]:
        w = 2 * math.pi / self.period
        z = self.speed * k + self.speed_amp / w * (math.sin(w * k + self.phase) - math.sin(self.phase))
        x = self.lane_x + self.sway * math.sin(0.7 * w * k + self.yaw_phase)
        yaw = self.yaw_amp * math.sin(2 * math.pi * k / self.yaw_period + self.yaw_phase)
        return (x, 0.0, z), yaw

    def camera(self, style: Style, width: int, height: int, k: float) -> Camera:
        (x, _, z), yaw = self.pose(k)
        return Camera.for_style(style, width, height, (x, style.cam_height, z), yaw)


def _trajectory(rng: np.random.Generator, long: bool) -> Trajectory:
    """A random ego motion; `long` for the SYNTHIA-Seq-like drive (never stops)."""
    if long:
        speed = 0.55
        amp = 0.25
    else:
        speed = 0.0 if rng.random() < 0.1 else float(rng.uniform(0.25, 0.9))
        amp = float(rng.uniform(0.0, 0.3)) * speed
    sway = float(rng.uniform(0.0, 0.25)) if speed > 0 else 0.0
    return Trajectory(speed, amp, float(rng.uniform(60, 140)), float(rng.uniform(0, 2 * math.pi)),
                      1.75, sway, float(rng.uniform(0.0, 0.03)), float(rng.uniform(50, 110)),
                      float(rng.uniform(0, 2 * math.pi)))


# ============================================================================ world
BOX, SPHERE, ZBOARD, XBOARD = 0, 1, 2, 3      # primitive kinds (boards: planar cut-outs)
(FULL, SHAPE_PERSON, SHAPE_RIDER_BACK, SHAPE_MOTO_BACK, SHAPE_RIDER_SIDE, SHAPE_MOTO_SIDE,
 SHAPE_BIKE, SHAPE_MOTO, SHAPE_DISC, SHAPE_FENCE) = range(10)
GROUND, SKY_ID, EGO_ID = -2, -1, -3           # pseudo primitive ids in the g-buffer


@dataclass
class World:
    """A static street with moving objects. Object arrays are indexed by primitive.

    Blocks: ground strips along z (edges [B+1]); road half-width, sidewalk and grass widths
    [B, 2] (left, right). Primitives: kind, lo/hi [N, 3] bounds at frame 0, vel [N, 3] metres per
    frame, labels [N, 2] (part 1, part 2) labelIds, shape, aux (person stride / cut-out flip),
    colors [N, 2, 3] 0..255, inst (instance id), tex (texture seed). sky: how overcast, 0..1
    (sky_period > 0: it drifts between clear and overcast with that period in frames).
    """

    block_edges: np.ndarray
    road_half: np.ndarray
    walk: np.ndarray
    grass: np.ndarray
    beyond: int
    kind: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    vel: np.ndarray
    labels: np.ndarray
    shape: np.ndarray
    aux: np.ndarray
    colors: np.ndarray
    inst: np.ndarray
    tex: np.ndarray
    sky: float
    ground_seed: int
    sky_period: float = 0.0

    def overcast(self, k: float) -> float:
        if self.sky_period > 0:
            return 0.5 - 0.5 * math.cos(2 * math.pi * k / self.sky_period)
        return self.sky


class _WorldBuilder:
    """Collects primitives; `build` turns them into a `World`."""

    def __init__(self, rng: np.random.Generator, style: Style) -> None:
        self.rng, self.style = rng, style
        self.rows: list[tuple] = []
        self.instances = 0

    def instance(self) -> int:
        """A new instance id (1, 2, ...) for the primitives of one object."""
        self.instances += 1
        return self.instances

    def color(self, label: int) -> tuple[float, float, float]:
        choices = self.style.colors[label]
        base = np.asarray(choices[int(self.rng.integers(len(choices)))], np.float64)
        scale = 1.0 + self.style.jitter * float(self.rng.uniform(-1, 1))
        return tuple(np.clip(base * scale, 0, 255))

    def add(self, kind: int, lo: tuple, hi: tuple, label: int, *, label2: int | None = None,
            vel: tuple = (0.0, 0.0, 0.0), shape: int = FULL, aux: float = 0.0,
            color: tuple | None = None, color2: tuple | None = None, inst: int = 0) -> None:
        lo_, hi_ = np.minimum(lo, hi), np.maximum(lo, hi)
        label2 = label if label2 is None else label2
        c1 = self.color(label) if color is None else color
        c2 = self.color(label2) if color2 is None else color2
        tex = int(self.rng.integers(1, 2**31))
        self.rows.append((kind, lo_, hi_, vel, (label, label2), shape, aux, (c1, c2), inst, tex))

    def build(self, blocks: dict[str, np.ndarray], beyond: int) -> World:
        n = len(self.rows)
        col = lambda i, dt, shape: np.asarray([r[i] for r in self.rows], dt).reshape(shape)  # noqa: E731
        inst_ids = np.minimum(np.asarray([r[8] for r in self.rows], np.int64), 65535).astype(np.uint16)
        return World(blocks["edges"], blocks["road_half"], blocks["walk"], blocks["grass"], beyond,
                     col(0, np.int8, (n,)), col(1, np.float64, (n, 3)), col(2, np.float64, (n, 3)),
                     col(3, np.float64, (n, 3)), col(4, np.uint8, (n, 2)), col(5, np.int8, (n,)),
                     col(6, np.float64, (n,)), col(7, np.float32, (n, 2, 3)), inst_ids,
                     col(9, np.uint32, (n,)), float(self.rng.random()),
                     int(self.rng.integers(1, 2**31)))


@dataclass(frozen=True)
class _Street:
    """One block side: where the street's strips lie (x grows away from the road centre)."""

    side: int          # -1 left, +1 right
    z0: float
    z1: float
    road_half: float
    walk: float
    grass: float

    @property
    def curb(self) -> float:
        return self.road_half

    @property
    def walk_out(self) -> float:
        return self.road_half + self.walk

    @property
    def front(self) -> float:
        return self.road_half + self.walk + self.grass

    def x(self, d: float) -> float:
        """World x of a point d metres from the road centre on this side."""
        return self.side * d


def _blocks(rng: np.random.Generator, layout: Layout, image: bool, z0: float, z1: float
            ) -> dict[str, np.ndarray]:
    """Ground strips along z: block edges and per-block widths."""
    edges = [z0]
    while edges[-1] < z1:
        edges.append(edges[-1] + float(rng.uniform(25, 45)))
    b = len(edges) - 1
    grass_on = (rng.random((b, 2)) < layout.terrain_p) if image else np.zeros((b, 2), bool)
    return {"edges": np.asarray(edges), "road_half": rng.uniform(*layout.road_half, b),
            "walk": rng.uniform(*layout.sidewalk, (b, 2)),
            "grass": np.where(grass_on, rng.uniform(*layout.terrain, (b, 2)), 0.0)}


def build_world(rng: np.random.Generator, domain: str, image: bool, z0: float, z1: float,
                frames: float) -> World:
    """Generate a street from z0 to z1 (metres) for a domain ("source" | "target").

    image: the image benchmark's vocabulary (adds wall, terrain, truck, bus, train, motorcycle,
    bicycle). frames: how long the drive lasts (oncoming traffic is spread so that some of it
    stays in view). The camera starts at z = 0.
    """
    style, layout = STYLES[domain], LAYOUTS[domain]
    blocks = _blocks(rng, layout, image, z0, z1)
    wb = _WorldBuilder(rng, style)
    for i in range(len(blocks["road_half"])):
        for j, side in enumerate((-1, 1)):
            st = _Street(side, float(blocks["edges"][i]), float(blocks["edges"][i + 1]),
                         float(blocks["road_half"][i]), float(blocks["walk"][i, j]),
                         float(blocks["grass"][i, j]))
            _add_buildings(wb, layout, st, image)
            _add_vegetation(wb, layout, st)
            _add_poles(wb, layout, st)
            _add_fence_or_wall(wb, layout, st, image)
            _add_parked(wb, layout, st, image)
            _add_pedestrians(wb, layout, st)
            _add_riders(wb, layout, st, image, domain)
        if image and blocks["edges"][i] > 10.0 and rng.random() < layout.tram_p:
            _add_tram(wb, float(blocks["edges"][i]))
    _add_traffic(wb, layout, image, z0, z1, frames)
    return wb.build(blocks, TERRAIN if image else SIDEWALK)


def _add_buildings(wb: _WorldBuilder, layout: Layout, st: _Street, image: bool) -> None:
    rng = wb.rng
    z = st.z0
    while z < st.z1 - 1.0:
        width = min(float(rng.uniform(8, 22)), st.z1 - z)
        setback = float(rng.uniform(0.0, 1.5))
        x0, x1 = st.x(st.front + setback), st.x(st.front + setback + 12.0)
        height = float(rng.uniform(*layout.building_height))
        wb.add(BOX, (x0, 0.0, z), (x1, height, z + width), BUILDING)
        z += width
        if rng.random() < layout.building_gap_p:
            gap = float(rng.uniform(3, 7))
            if image and rng.random() < 0.5:
                wb.add(BOX, (st.x(st.front + 0.5), 0.0, z), (st.x(st.front + 0.8),
                       float(rng.uniform(1.5, 3.0)), min(z + gap, st.z1)), WALL)
            z += gap


def _add_vegetation(wb: _WorldBuilder, layout: Layout, st: _Street) -> None:
    rng = wb.rng
    for z in np.arange(st.z0 + 4.0, st.z1 - 2.0, 8.0):
        if rng.random() >= layout.tree_p:
            continue
        d = st.walk_out - 0.7 if st.grass < 1.5 else st.walk_out + st.grass / 2
        trunk_h, r = float(rng.uniform(2.2, 3.4)), float(rng.uniform(*layout.tree_radius))
        zc = float(z + rng.uniform(-1.5, 1.5))
        wb.add(BOX, (st.x(d) - 0.18, 0.0, zc - 0.18), (st.x(d) + 0.18, trunk_h + r * 0.3, zc + 0.18),
               VEGETATION)
        cy = trunk_h + 0.7 * r
        wb.add(SPHERE, (st.x(d) - r, cy - r, zc - r), (st.x(d) + r, cy + r, zc + r), VEGETATION)
    if rng.random() < layout.hedge_p:
        z0 = float(rng.uniform(st.z0, st.z1 - 6))
        wb.add(BOX, (st.x(st.walk_out - 0.8), 0.0, z0),
               (st.x(st.walk_out), float(rng.uniform(0.8, 1.4)), min(z0 + rng.uniform(6, 18), st.z1)),
               VEGETATION)


def _add_poles(wb: _WorldBuilder, layout: Layout, st: _Street) -> None:
    rng = wb.rng
    w = layout.pole_width / 2
    for z in np.arange(st.z0 + float(rng.uniform(2, 10)), st.z1, 14.0):
        if rng.random() >= layout.pole_p:
            continue
        x, h = st.x(st.curb + 0.35), float(rng.uniform(4.0, 7.0))
        wb.add(BOX, (x - w, 0.0, z - w), (x + w, h, z + w), POLE)
        u = rng.random()
        if u < 0.4:      # a sign facing the oncoming camera
            y = float(rng.uniform(2.0, 2.8))
            if rng.random() < 0.5:
                wb.add(ZBOARD, (x - 0.4, y, z - w - 0.05), (x + 0.4, y + 0.8, z - w - 0.05), SIGN,
                       shape=SHAPE_DISC)
            else:
                wb.add(BOX, (x - 0.4, y, z - w - 0.08), (x + 0.4, y + 0.7, z - w - 0.02), SIGN)
        elif u < 0.75:   # a traffic light, on the pole top or on an arm over the road
            if rng.random() < 0.5:
                wb.add(BOX, (x - 0.22, h - 1.1, z - w - 0.35), (x + 0.22, h - 0.1, z - w), LIGHT)
            else:
                xa = st.x(st.curb - 2.6)
                wb.add(BOX, (min(x, xa), h - 0.3, z - 0.1), (max(x, xa), h - 0.12, z + 0.1), POLE)
                wb.add(BOX, (xa - 0.22, h - 1.3, z - 0.3), (xa + 0.22, h - 0.3, z + 0.05), LIGHT)


def _add_fence_or_wall(wb: _WorldBuilder, layout: Layout, st: _Street, image: bool) -> None:
    rng = wb.rng
    length = float(rng.uniform(10, 30))
    z0 = float(rng.uniform(st.z0, max(st.z0 + 0.1, st.z1 - length)))
    if rng.random() < layout.fence_p:
        x, h = st.x(st.walk_out - 0.1), float(rng.uniform(1.0, 1.7))
        wb.add(XBOARD, (x, 0.0, z0), (x, h, z0 + length), FENCE, shape=SHAPE_FENCE)
    elif image and rng.random() < layout.wall_p:
        x, h = st.x(st.walk_out + 0.05), float(rng.uniform(1.2, 2.4))
        wb.add(BOX, (x, 0.0, z0), (x + st.side * 0.3, h, z0 + length), WALL)
    if rng.random() < 0.3:   # a bin or a box: "static" (ignored by every protocol)
        x, z = st.x(st.walk_out - 0.5), float(rng.uniform(st.z0, st.z1))
        wb.add(BOX, (x - 0.3, 0.0, z - 0.3), (x + 0.3, 1.0, z + 0.3), STATIC)


def _vehicle(wb: _WorldBuilder, label: int, x: float, z: float, scale: float,
             vel: tuple = (0.0, 0.0, 0.0)) -> None:
    """A car / truck / bus as a body box and a glass cabin box (both carry the label)."""
    rng = wb.rng
    dims = {CAR: (1.8, 1.5, 4.3), TRUCK: (2.4, 3.3, 7.5), BUS: (2.5, 3.1, 11.5)}[label]
    w, h, ln = (v * scale * float(rng.uniform(0.92, 1.08)) for v in dims)
    body_top = 0.6 * h if label == CAR else 0.75 * h
    glass, inst = wb.color(-1), wb.instance()
    wb.add(BOX, (x - w / 2, 0.12, z - ln / 2), (x + w / 2, body_top, z + ln / 2), label, vel=vel,
           inst=inst)
    if label == CAR:
        wb.add(BOX, (x - 0.42 * w, body_top, z - 0.3 * ln), (x + 0.42 * w, h, z + 0.2 * ln), label,
               vel=vel, color=glass, inst=inst)
    elif label == TRUCK:   # body_top is the cab roof; the cargo box behind it is taller
        wb.add(BOX, (x - w / 2, 0.3, z - ln / 2 + 2.2), (x + w / 2, h, z + ln / 2), label,
               vel=vel, inst=inst)
    else:
        wb.add(BOX, (x - w / 2, body_top, z - ln / 2), (x + w / 2, h, z + ln / 2), label, vel=vel,
               color=glass, inst=inst)


def _vehicle_label(rng: np.random.Generator, layout: Layout, image: bool) -> int:
    if image and rng.random() < layout.big_vehicle_p:
        return TRUCK if rng.random() < 0.5 else BUS
    return CAR


def _add_parked(wb: _WorldBuilder, layout: Layout, st: _Street, image: bool) -> None:
    rng = wb.rng
    if st.road_half >= 4.5:
        for z in np.arange(st.z0 + 3.5, st.z1 - 3.5, 6.5):
            if rng.random() < layout.parked_p:
                label = _vehicle_label(rng, layout, image)
                z = float(z) + (2.0 if label == TRUCK else 4.0 if label == BUS else 0.0)
                _vehicle(wb, label, st.x(st.curb - 1.15), z, layout.car_scale)
    if image and rng.random() < layout.two_wheeler_p:
        z0 = float(rng.uniform(st.z0, st.z1 - 4))
        moto = rng.random() < 0.4
        for k in range(int(rng.integers(1, 4))):
            x, z = st.x(st.walk_out - 0.6), z0 + 1.0 + 1.9 * k
            lab, shape, h = (MOTORCYCLE, SHAPE_MOTO, 1.2) if moto else (BICYCLE, SHAPE_BIKE, 1.05)
            wb.add(XBOARD, (x, 0.0, z - 0.9), (x, h, z + 0.9), lab, shape=shape)


def _person(wb: _WorldBuilder, layout: Layout, x: float, z: float, vel: tuple) -> None:
    """A pedestrian cut-out: facing the camera (z-plane) whatever its walking direction."""
    rng = wb.rng
    w = layout.person_size[0] * float(rng.uniform(0.9, 1.1))
    h = layout.person_size[1] * float(rng.uniform(0.9, 1.08))
    stride = 0.0 if vel == (0.0, 0.0, 0.0) else float(rng.uniform(0.2, 0.45))
    wb.add(ZBOARD, (x - w / 2, 0.0, z), (x + w / 2, h, z), PERSON, vel=vel, shape=SHAPE_PERSON,
           aux=stride, inst=wb.instance())


def _add_pedestrians(wb: _WorldBuilder, layout: Layout, st: _Street) -> None:
    rng = wb.rng
    for z in np.arange(st.z0 + 2.0, st.z1, 4.0):
        if rng.random() >= layout.person_p:
            continue
        d = st.curb + float(rng.uniform(0.5, max(0.6, st.walk - 0.3)))
        vz = 0.0 if rng.random() < 0.3 else float(rng.choice([-1, 1]) * rng.uniform(0.04, 0.09))
        _person(wb, layout, st.x(d), float(z + rng.uniform(-1, 1)), (0.0, 0.0, vz))
    if st.side < 0 and rng.random() < layout.person_p:   # crossing, away from the ego lane
        x = -float(rng.uniform(0.5, st.road_half))
        _person(wb, layout, x, float(rng.uniform(st.z0, st.z1)),
                (-float(rng.uniform(0.04, 0.08)), 0.0, 0.0))


def _two_wheeler_labels(image: bool, domain: str, moto: bool) -> int:
    """The vehicle part of a rider: SYNTHIA-Seq labels rider and bicycle alike (raw 11)."""
    if not image and domain == "source":
        return RIDER
    return MOTORCYCLE if moto else BICYCLE


def _add_riders(wb: _WorldBuilder, layout: Layout, st: _Street, image: bool, domain: str
                ) -> None:
    rng = wb.rng
    for _ in range(rng.poisson(layout.riders)):   # along the street, on the inner sidewalk lane
        moto = image and rng.random() < 0.4
        x, z = st.x(st.curb + 1.0), float(rng.uniform(st.z0, st.z1))
        vz = float(rng.choice([-1, 1]) * rng.uniform(0.15, 0.35))
        w, h = (0.8, 1.7) if moto else (0.7, 1.75)
        wb.add(ZBOARD, (x - w / 2, 0.0, z), (x + w / 2, h, z), RIDER,
               label2=_two_wheeler_labels(image, domain, moto), vel=(0.0, 0.0, vz),
               shape=SHAPE_MOTO_BACK if moto else SHAPE_RIDER_BACK, inst=wb.instance())
    if st.side < 0 and rng.random() < layout.riders / 3:   # crossing, side view
        moto = image and rng.random() < 0.4
        x, z = -float(rng.uniform(0.0, st.road_half)), float(rng.uniform(st.z0, st.z1))
        wb.add(ZBOARD, (x - 0.95, 0.0, z), (x + 0.95, 1.8, z), RIDER,
               label2=_two_wheeler_labels(image, domain, moto),
               vel=(-float(rng.uniform(0.1, 0.25)), 0.0, 0.0),
               shape=SHAPE_MOTO_SIDE if moto else SHAPE_RIDER_SIDE, aux=-1.0, inst=wb.instance())


def _add_tram(wb: _WorldBuilder, z: float) -> None:
    """A tram (Cityscapes 'train') in the oncoming lane, coming slowly."""
    vel = (0.0, 0.0, -float(wb.rng.uniform(0.0, 0.3)))
    zc = z + 15.0
    inst = wb.instance()
    wb.add(BOX, (-3.0, 0.2, zc - 13), (-0.5, 2.4, zc + 13), TRAIN, vel=vel, inst=inst)
    wb.add(BOX, (-3.0, 2.4, zc - 13), (-0.5, 3.4, zc + 13), TRAIN, vel=vel, color=wb.color(-1),
           inst=inst)


def _add_traffic(wb: _WorldBuilder, layout: Layout, image: bool, z0: float, z1: float,
                 frames: float) -> None:
    """Oncoming vehicles (and motorcycles), spread over where they will be during the drive,
    and faster lead vehicles in the ego lane."""
    rng = wb.rng
    for _ in range(rng.poisson(layout.traffic * (z1 - z0 + 0.6 * frames) / 100.0)):
        v = float(rng.uniform(0.3, 1.0))
        z = float(rng.uniform(z0 + 10.0, z1 + v * frames))
        if image and rng.random() < layout.two_wheeler_p / 3:
            wb.add(ZBOARD, (-2.15, 0.0, z), (-1.35, 1.7, z), RIDER, label2=MOTORCYCLE,
                   vel=(0.0, 0.0, -v), shape=SHAPE_MOTO_BACK, inst=wb.instance())
        else:
            _vehicle(wb, _vehicle_label(rng, layout, image), -1.75, z, layout.car_scale,
                     (0.0, 0.0, -v))
    for _ in range(rng.poisson(layout.traffic * 0.3 * (z1 - z0) / 100.0)):
        v = float(rng.uniform(1.05, 1.4))   # ahead of the camera (at z = 0) and faster than it
        _vehicle(wb, _vehicle_label(rng, layout, image), 1.75, float(rng.uniform(20.0, z1)),
                 layout.car_scale, (0.0, 0.0, v))


# ============================================================================ ray casting
@dataclass
class GBuffer:
    """What every pixel sees: depth (ray parameter = camera depth, inf for sky) [H, W] float64,
    prim [H, W] int32 (primitive index, GROUND, SKY_ID or EGO_ID), part [H, W] uint8 (1 or 2 for
    a primitive's first or second part), face [H, W] int8 (0 / 1 / 2: a plane facing the camera
    along x / y / z, SPHERE_FACE: a sphere, -1: sky or hood)."""

    depth: np.ndarray
    prim: np.ndarray
    part: np.ndarray
    face: np.ndarray


_CORNER_BITS = np.array([[(i >> a) & 1 for a in range(3)] for i in range(8)], bool)
_EDGES = np.array([(i, i | (1 << a)) for i in range(8) for a in range(3) if not (i >> a) & 1])


def _screen_rects(world: World, cam: Camera, k: float) -> tuple[np.ndarray, np.ndarray]:
    """Visible primitives at frame time k and their pixel rectangles [n, 4] (r0, r1, c0, c1).

    Each primitive's bounding box is clipped by the near plane (corners in front plus edge
    crossings) and projected; the rectangle bounds every pixel whose ray can hit it.
    """
    lo, hi = world.lo + world.vel * k, world.hi + world.vel * k
    corners = np.where(_CORNER_BITS[None], hi[:, None], lo[:, None])               # [N, 8, 3]
    cam_pts = (corners - np.asarray(cam.position)) @ cam.axes().T
    a, b = cam_pts[:, _EDGES[:, 0]], cam_pts[:, _EDGES[:, 1]]                      # [N, 12, 3]
    dz = b[..., 2] - a[..., 2]
    s = np.divide(NEAR - a[..., 2], dz, out=np.full(dz.shape, -1.0), where=dz != 0)
    cross = a + np.clip(s, 0, 1)[..., None] * (b - a)
    pts = np.concatenate([cam_pts, cross], axis=1)
    ok = np.concatenate([cam_pts[..., 2] >= NEAR, (s > 0) & (s < 1)], axis=1)
    z = np.where(ok, pts[..., 2], 1.0)
    u = cam.cx + cam.focal * pts[..., 0] / z
    v = cam.cy - cam.focal * pts[..., 1] / z
    inf = np.inf
    c0 = np.floor(np.where(ok, u, inf).min(1)) - 1
    c1 = np.ceil(np.where(ok, u, -inf).max(1)) + 2
    r0 = np.floor(np.where(ok, v, inf).min(1)) - 1
    r1 = np.ceil(np.where(ok, v, -inf).max(1)) + 2
    near_z = np.where(ok, pts[..., 2], inf).min(1)
    keep = ok.any(1) & (near_z < FAR)
    rects = np.stack([np.clip(r0, 0, cam.height), np.clip(r1, 0, cam.height),
                      np.clip(c0, 0, cam.width), np.clip(c1, 0, cam.width)], 1)
    rects = np.where(np.isfinite(rects), rects, 0).astype(np.int64)
    keep &= (rects[:, 1] > rects[:, 0]) & (rects[:, 3] > rects[:, 2])
    return np.flatnonzero(keep), rects[keep]


SPHERE_FACE = 3
_Hit = tuple[np.ndarray, "np.ndarray | int", np.ndarray]   # t [h, w] (inf: miss), face, part


def _hit_box(o: np.ndarray, d: np.ndarray, inv: np.ndarray, lo: np.ndarray, hi: np.ndarray
             ) -> _Hit:
    """Slab test of an axis-aligned box; d, inv = 1 / d: [3, h, w]. Face: the entered slab."""
    t1 = (lo - o)[:, None, None] * inv
    t2 = (hi - o)[:, None, None] * inv
    tmin = np.minimum(t1, t2)
    tn, tf = tmin.max(0), np.maximum(t1, t2).min(0)
    hit = (tn <= tf) & (tn > NEAR)
    return np.where(hit, tn, np.inf), tmin.argmax(0).astype(np.int8), hit.view(np.uint8)


def _hit_sphere(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> _Hit:
    c, r = (lo + hi) / 2, (hi[0] - lo[0]) / 2
    oc = o - c
    a = (d * d).sum(0)
    b = np.tensordot(oc, d, 1)
    disc = b * b - a * (oc @ oc - r * r)
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    hit = (disc >= 0) & (t > NEAR)
    return np.where(hit, t, np.inf), SPHERE_FACE, hit.view(np.uint8)


def _hit_board(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray, axis: int,
               shape: int, aux: float) -> _Hit:
    """A planar cut-out at constant z (axis 2) or x (axis 0); its shape gives parts 1 / 2."""
    t = (lo[axis] - o[axis]) / d[axis]
    along = 0 if axis == 2 else 2
    pu = o[along] + t * d[along]
    py = o[1] + t * d[1]
    w, h = hi[along] - lo[along], hi[1] - lo[1]
    un = (pu - (lo[along] + hi[along]) / 2) / w
    vn = (py - lo[1]) / h
    inside = (t > NEAR) & (np.abs(un) <= 0.5) & (vn >= 0) & (vn <= 1)
    part = np.where(inside, _shape_parts(shape, un, vn, w, h, aux), 0).astype(np.uint8)
    return np.where(part > 0, t, np.inf), axis, part


def _ellipse(un: np.ndarray, vn: np.ndarray, cu: float, cv: float, ru: float, rv: float
             ) -> np.ndarray:
    return ((un - cu) / ru) ** 2 + ((vn - cv) / rv) ** 2 <= 1.0


def _box2(un: np.ndarray, vn: np.ndarray, u0: float, u1: float, v0: float, v1: float
          ) -> np.ndarray:
    return (un >= u0) & (un <= u1) & (vn >= v0) & (vn <= v1)


def _shape_person(un: np.ndarray, vn: np.ndarray, stride: float) -> np.ndarray:
    au = np.abs(un)
    off = 0.13 + stride * np.maximum(0.48 - vn, 0)
    legs = (vn < 0.5) & ((np.abs(un + off) <= 0.11) | (np.abs(un - off) <= 0.11))
    return (_ellipse(un, vn, 0, 0.925, 0.17, 0.07) | _box2(au, vn, 0, 0.07, 0.83, 0.88)
            | _box2(au, vn, 0, 0.3, 0.48, 0.82) | _ellipse(un, vn, 0, 0.8, 0.33, 0.055)
            | _box2(au, vn, 0.3, 0.45, 0.46, 0.81) | legs)


def _shape_rider_back(un: np.ndarray, vn: np.ndarray, moto: bool) -> np.ndarray:
    """Parts: 1 rider (person sitting), 2 vehicle (back view)."""
    au = np.abs(un)
    person = (_ellipse(un, vn, 0, 0.93, 0.16, 0.065) | _box2(au, vn, 0, 0.26, 0.58, 0.87)
              | _box2(au, vn, 0.26, 0.4, 0.62, 0.84) | _box2(au, vn, 0.08, 0.2, 0.3, 0.6))
    if moto:
        vehicle = _box2(au, vn, 0, 0.26, 0.12, 0.5) | _box2(au, vn, 0, 0.1, 0, 0.12)
    else:
        vehicle = _box2(au, vn, 0, 0.05, 0, 0.4) | _box2(au, vn, 0, 0.42, 0.6, 0.64)
    return np.where(person, 1, np.where(vehicle, 2, 0))


def _shape_side(un: np.ndarray, vn: np.ndarray, moto: bool, rider: bool, ring: bool) -> np.ndarray:
    """A bicycle / motorcycle seen from the side (square board); parts 1 rider, 2 vehicle."""
    r = 0.2 if moto else 0.19
    wheels = _ellipse(un, vn, -0.3, r, r, r) | _ellipse(un, vn, 0.3, r, r, r)
    if ring:
        wheels &= ~(_ellipse(un, vn, -0.3, r, 0.6 * r, 0.6 * r) | _ellipse(un, vn, 0.3, r, 0.6 * r, 0.6 * r))
    if moto:
        frame = _ellipse(un, vn, 0.0, 0.42, 0.3, 0.13) | _box2(un, vn, 0.22, 0.27, 0.2, 0.62)
    else:
        frame = (_box2(un, vn, -0.3, 0.3, 0.34, 0.38) | _box2(un, vn, -0.11, -0.05, 0.19, 0.5)
                 | _box2(un, vn, 0.23, 0.27, 0.19, 0.62))
    vehicle = wheels | frame
    if not rider:
        return np.where(vehicle, 2, 0)
    person = (_ellipse(un, vn, 0.1, 0.93, 0.07, 0.07) | _ellipse(un, vn, 0.02, 0.72, 0.1, 0.16)
              | _box2(un, vn, -0.08, 0.14, 0.48, 0.57) | _box2(un, vn, 0.06, 0.14, 0.2, 0.52)
              | _box2(un, vn, 0.03, 0.25, 0.63, 0.69))
    return np.where(person, 1, np.where(vehicle, 2, 0))


def _shape_parts(shape: int, un: np.ndarray, vn: np.ndarray, w: float, h: float, aux: float
                 ) -> np.ndarray:
    """Part of a cut-out hit at normalised (un in [-0.5, 0.5], vn in [0, 1] upwards): 0 miss."""
    if aux < 0:   # mirrored (a crossing rider faces its direction of motion)
        un = -un
    if shape == FULL:
        return np.ones(un.shape, np.uint8)
    if shape == SHAPE_PERSON:
        return _shape_person(un, vn, aux)
    if shape in (SHAPE_RIDER_BACK, SHAPE_MOTO_BACK):
        return _shape_rider_back(un, vn, shape == SHAPE_MOTO_BACK)
    if shape in (SHAPE_RIDER_SIDE, SHAPE_MOTO_SIDE, SHAPE_BIKE, SHAPE_MOTO):
        return _shape_side(un, vn, shape in (SHAPE_MOTO_SIDE, SHAPE_MOTO),
                           shape in (SHAPE_RIDER_SIDE, SHAPE_MOTO_SIDE), shape == SHAPE_BIKE)
    if shape == SHAPE_DISC:
        return _ellipse(un, vn, 0, 0.5, 0.5, 0.5).astype(np.uint8)
    if shape == SHAPE_FENCE:
        um, vm = (un + 0.5) * w, vn * h
        return ((np.mod(um, 0.3) < 0.1) | (vm > h - 0.12) | (np.abs(vm - 0.2) < 0.06)).astype(np.uint8)
    raise ValueError(f"unknown shape {shape}")


def _intersect(world: World, i: int, o: np.ndarray, d: np.ndarray, inv: np.ndarray, k: float
               ) -> _Hit:
    lo, hi = world.lo[i] + world.vel[i] * k, world.hi[i] + world.vel[i] * k
    kind = int(world.kind[i])
    if kind == BOX:
        return _hit_box(o, d, inv, lo, hi)
    if kind == SPHERE:
        return _hit_sphere(o, d, lo, hi)
    return _hit_board(o, d, lo, hi, 2 if kind == ZBOARD else 0, int(world.shape[i]),
                      float(world.aux[i]))


def _hood_mask(cam: Camera) -> np.ndarray:
    """bool [H, W]: the ego-vehicle hood, a curved band over the bottom rows."""
    cols = (np.arange(cam.width) - cam.cx) / (cam.width / 2)
    top = cam.height * (0.9 + 0.06 * cols**2)
    return np.arange(cam.height)[:, None] >= top[None, :]


def render_gbuffer(world: World, cam: Camera, k: float, hood: bool) -> tuple[GBuffer, np.ndarray]:
    """Ray-cast the world at frame time k. Returns the g-buffer and the rays [3, H, W]."""
    d = cam.rays()
    o = np.asarray(cam.position, np.float64)
    tg = np.where(d[1] < 0, -o[1] / np.minimum(d[1], -1e-12), np.inf)
    ground = np.isfinite(tg) & (tg > NEAR)
    depth = np.where(ground, tg, np.inf)
    prim = np.where(ground, GROUND, SKY_ID).astype(np.int32)
    part = np.zeros(depth.shape, np.uint8)
    face = np.where(ground, 1, -1).astype(np.int8)
    inv = 1.0 / d
    for i, (r0, r1, c0, c1) in zip(*_screen_rects(world, cam, k)):
        win = (slice(r0, r1), slice(c0, c1))
        t, f, p = _intersect(world, int(i), o, d[:, win[0], win[1]], inv[:, win[0], win[1]], k)
        upd = t < depth[win]
        np.copyto(depth[win], t, where=upd)
        np.copyto(prim[win], int(i), where=upd)
        np.copyto(part[win], p, where=upd)
        np.copyto(face[win], f, where=upd)
    if hood:
        m = _hood_mask(cam)
        prim[m], part[m], depth[m], face[m] = EGO_ID, 0, np.inf, -1
    return GBuffer(depth, prim, part, face), d


def surface_normals(world: World, gb: GBuffer, d: np.ndarray, pts: np.ndarray, k: float
                    ) -> np.ndarray:
    """float32 [H, W, 3]: unit world normals facing the camera (0 for sky and hood)."""
    n = np.zeros((*gb.face.shape, 3), np.float32)
    for axis in range(3):
        n[..., axis] = np.where(gb.face == axis, -np.sign(d[axis]), 0.0)
    sphere = gb.face == SPHERE_FACE
    if sphere.any():
        i = gb.prim[sphere]
        centre = (world.lo[i] + world.hi[i]) / 2 + world.vel[i] * k
        radius = (world.hi[i, 0] - world.lo[i, 0]) / 2
        n[sphere] = (pts[sphere] - centre) / radius[:, None]
    return n


# ============================================================================ labels and flow
def _ground_strips(world: World, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """labelIds of ground points and the road half-width at each point."""
    b = np.clip(np.searchsorted(world.block_edges, z, side="right") - 1, 0, len(world.road_half) - 1)
    right = (x >= 0).astype(np.intp)
    rw = world.road_half[b]
    walk = world.walk[b, right]
    grass = world.grass[b, right]
    ax = np.abs(x)
    lab = np.where(ax < rw, ROAD, np.where(ax < rw + walk, SIDEWALK,
                   np.where(ax < rw + walk + grass, TERRAIN, world.beyond)))
    return lab.astype(np.uint8), rw


def _points(gb: GBuffer, cam: Camera, d: np.ndarray) -> np.ndarray:
    """float64 [H, W, 3]: the world point of each pixel (0 for sky and hood)."""
    t = np.where(np.isfinite(gb.depth), gb.depth, 0.0)
    return np.asarray(cam.position) + np.moveaxis(d * t, 0, -1)


def pixel_labels(world: World, gb: GBuffer, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """labelIds [H, W] uint8 and the road half-width under each ground pixel [H, W]."""
    idx = np.maximum(gb.prim, 0)
    part = np.maximum(gb.part.astype(np.intp) - 1, 0)
    ground_lab, rw = _ground_strips(world, pts[..., 0], pts[..., 2])
    lab = np.where(gb.prim >= 0, world.labels[idx, part] if len(world.labels) else 0, ground_lab)
    lab = np.where(gb.prim == SKY_ID, SKY, np.where(gb.prim == EGO_ID, EGO, lab))
    return lab.astype(np.uint8), rw


def exact_flow(world: World, gb: GBuffer, pts: np.ndarray, d: np.ndarray, cam_prev: Camera
               ) -> np.ndarray:
    """Backward flow t -> t-1, float32 [H, W, 2] (x, y pixels): where each pixel's 3-D point
    (moved back by its object's motion over one frame) projects in the previous camera.
    Sky is at infinity (rotation only); the hood moves with the camera (zero flow)."""
    h, w = gb.prim.shape
    obj = gb.prim >= 0
    prev = pts - np.where(obj[..., None], world.vel[np.maximum(gb.prim, 0)] if len(world.vel) else 0, 0)
    u, v = cam_prev.project(prev)
    sky = gb.prim == SKY_ID
    u[sky], v[sky] = cam_prev.project(d[:, sky].T, directions=True)
    flow = np.stack([u - np.arange(w)[None, :], v - np.arange(h)[:, None]], -1)
    flow[gb.prim == EGO_ID] = 0.0
    return np.clip(flow, -1000, 1000).astype(np.float32)


# ============================================================================ shading
def _hash01(ix: np.ndarray, iy: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """float32 in [0, 1): an integer hash of lattice points (wrapping uint32 arithmetic)."""
    h = ix.astype(np.uint32) * np.uint32(0x8DA6B343)
    h ^= iy.astype(np.uint32) * np.uint32(0xD8163841)
    h ^= seed
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(12)
    h *= np.uint32(0x297A2D39)
    h ^= h >> np.uint32(15)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216)


def _value_noise(x: np.ndarray, y: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Smooth value noise in [0, 1] on the unit lattice."""
    xi, yi = np.floor(x), np.floor(y)
    fx, fy = (x - xi).astype(np.float32), (y - yi).astype(np.float32)
    xi, yi = xi.astype(np.int64), yi.astype(np.int64)
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    a = _hash01(xi, yi, seed) * (1 - sx) + _hash01(xi + 1, yi, seed) * sx
    b = _hash01(xi, yi + 1, seed) * (1 - sx) + _hash01(xi + 1, yi + 1, seed) * sx
    return a * (1 - sy) + b * sy


def fbm(x: np.ndarray, y: np.ndarray, seed: np.ndarray, footprint: np.ndarray, octaves: int = 3
        ) -> np.ndarray:
    """Fractal noise in about [-1, 1], anti-aliased: an octave fades out as its period nears
    AA_PERIOD pixels (footprint = texture units per pixel), so that point sampling does not
    alias and a frame warped by the exact flow reproduces the next one."""
    total = np.zeros(np.shape(x), np.float32)
    amp, freq = 0.5, 1.0
    for o in range(octaves):
        weight = np.clip(1.0 - AA_PERIOD * footprint * freq, 0.0, 1.0).astype(np.float32)
        n = _value_noise(x * freq, y * freq, seed + np.uint32(977 * o))
        total += amp * weight * (2 * n - 1)
        amp, freq = amp * 0.5, freq * 2.0
    return total


def _surface_coords(local: np.ndarray, normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D texture coordinates on a surface: the two axes across its dominant normal axis."""
    axis = np.abs(normal).argmax(-1)
    a = np.where(axis == 0, local[..., 2], local[..., 0])
    b = np.where(axis == 1, local[..., 2], local[..., 1])
    return a, b


def _windows(a: np.ndarray, b: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Brightness factor of a window grid on facades (fades to its mean when too fine)."""
    win = (np.mod(a, 2.4) > 0.7) & (np.mod(a, 2.4) < 1.8) & (np.mod(b, 3.2) > 1.0) & \
          (np.mod(b, 3.2) < 2.5) & (b > 3.5)
    sharp = np.clip(1.0 - fp / 0.5, 0, 1)
    return sharp * np.where(win, 0.5, 1.0) + (1 - sharp) * 0.9


def _sky_colors(style: Style, world: World, dirs: np.ndarray, focal: float, k: float
                ) -> np.ndarray:
    """float32 [n, 3]: sky colour of unit ray directions [n, 3] (gradient + clouds)."""
    (h0, z0), (h1, z1) = (np.asarray(sky, np.float32) for sky in style.skies)
    m = world.overcast(k)
    horizon, zenith = h0 * (1 - m) + h1 * m, z0 * (1 - m) + z1 * m
    el = np.clip(dirs[:, 1], 0, 1).astype(np.float32)
    t = np.clip(el * 2.5, 0, 1)[:, None]
    col = horizon * (1 - t) + zenith * t
    if style.clouds > 0:
        az = np.arctan2(dirs[:, 0], dirs[:, 2])
        c = fbm(az * 6.0, el * 16.0, np.uint32(world.ground_seed), np.full(len(dirs), 16.0 / focal))
        cover = np.clip(c * 1.6 + 0.2, 0, 1)[:, None] * style.clouds
        col = col * (1 - cover) + np.float32(238) * cover
    return col


def _texture(style: Style, world: World, cam: Camera, gb: GBuffer, pts: np.ndarray,
             normal: np.ndarray, labels: np.ndarray, d: np.ndarray, k: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicative texture [H, W] fixed to each surface, and the pixel footprint [H, W]."""
    obj = gb.prim >= 0
    idx = np.maximum(gb.prim, 0)
    origin = (world.lo[idx] + world.vel[idx] * k) if len(world.lo) else 0.0
    local = np.where(obj[..., None], pts - origin, pts)
    dn = np.moveaxis(d / np.linalg.norm(d, axis=0), 0, -1)
    cos = np.abs((normal * dn).sum(-1))
    fp = (np.where(np.isfinite(gb.depth), gb.depth, 0.0) / cam.focal
          / np.sqrt(np.maximum(cos, 0.02))).astype(np.float32)
    if not style.textured:
        return np.ones(labels.shape, np.float32), fp
    a, b = _surface_coords(local, normal)
    seed = np.where(obj, world.tex[idx] if len(world.tex) else 0, world.ground_seed).astype(np.uint32)
    freq = _scalar_lut(style.tex_freq, 2.0)[labels]
    amp = _scalar_lut(style.tex_amp, 0.0)[labels]
    fine = fbm(a * freq, b * freq, seed, fp * freq)
    coarse = fbm(a * 0.25, b * 0.25, seed + np.uint32(7), fp * 0.25, 2)
    tex = 1.0 + amp * fine + 0.15 * coarse
    facade = (labels == BUILDING) & (np.abs(normal[..., 1]) < 0.5)
    tex = np.where(facade, tex * _windows(a, b, fp), tex)
    tiles = (labels == SIDEWALK) & (np.minimum(np.mod(a, 0.8), np.mod(b, 0.8)) < 0.06)
    tex = np.where(tiles & (fp < 0.06), tex * 0.82, tex)
    lamp = (labels == LIGHT) & (normal[..., 2] < -0.5) & (np.abs(np.mod(b, 0.33) - 0.17) < 0.1) & \
           (np.abs(np.mod(a, 0.44) - 0.22) < 0.1)
    tex = np.where(lamp, 3.0, tex)
    return tex.astype(np.float32), fp


def _lane_marks(labels: np.ndarray, gb: GBuffer, pts: np.ndarray, rw: np.ndarray,
                fp: np.ndarray) -> np.ndarray:
    """Coverage [H, W] in [0, 1] of the white road markings (dashed centre line, edge lines)."""
    x, z = pts[..., 0], pts[..., 2]
    centre = (np.abs(x) < 0.08) & (np.mod(z, 9.0) < 4.0)
    edge = np.abs(np.abs(x) - (rw - 0.3)) < 0.08
    on = (centre | edge) & (gb.prim == GROUND) & (labels == ROAD)
    return (on * np.clip(0.16 / np.maximum(fp, 1e-6), 0, 1)).astype(np.float32)


def shade(style: Style, world: World, cam: Camera, gb: GBuffer, d: np.ndarray, pts: np.ndarray,
          normal: np.ndarray, labels: np.ndarray, rw: np.ndarray, k: float) -> np.ndarray:
    """The scene's colour before the camera's sensor: float32 [H, W, 3] in about 0..255."""
    obj = gb.prim >= 0
    idx = np.maximum(gb.prim, 0)
    part = np.maximum(gb.part.astype(np.intp) - 1, 0)
    col = style.color_lut()[labels]
    if len(world.colors):
        col = np.where(obj[..., None], world.colors[idx, part], col)
    light = np.asarray(style.light, np.float32) / np.linalg.norm(style.light)
    lambert = style.ambient + style.diffuse * np.clip(normal @ light, 0, 1)
    tex, fp = _texture(style, world, cam, gb, pts, normal, labels, d, k)
    col = col * (lambert * tex)[..., None]
    cover = _lane_marks(labels, gb, pts, rw, fp)[..., None]
    col = col * (1 - cover) + np.asarray(style.marking, np.float32) * cover
    if style.fog > 0:
        haze = (1 - np.exp(-np.where(np.isfinite(gb.depth), gb.depth, 0) / style.fog))[..., None]
        col = col * (1 - haze) + np.asarray(style.fog_color, np.float32) * haze
    sky = gb.prim == SKY_ID
    dn = np.moveaxis(d / np.linalg.norm(d, axis=0), 0, -1)
    col[sky] = _sky_colors(style, world, dn[sky], cam.focal, k)
    if style.hood:
        rows = np.linspace(0.7, 1.0, cam.height, dtype=np.float32)[:, None, None]
        col = np.where((gb.prim == EGO_ID)[..., None], style.color_lut()[EGO] * rows, col)
    return col.astype(np.float32)


def _sensor(style: Style, col: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tone, vignetting, blur and noise of the domain's camera; float [H, W, 3] -> uint8."""
    h, w = col.shape[:2]
    col = col * np.asarray(style.tint, np.float32)
    if style.gamma != 1.0:
        col = 255.0 * (np.clip(col, 0, 255) / 255.0) ** style.gamma
    if style.vignette:
        yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
        col = col * (1 - style.vignette * 0.5 * (xx**2 + yy**2)).astype(np.float32)[..., None]
    if style.blur:
        col = cv2.GaussianBlur(col, (0, 0), style.blur * w / 256)
    if style.noise:
        col = col + rng.normal(0.0, style.noise, col.shape).astype(np.float32)
    return np.clip(np.rint(col), 0, 255).astype(np.uint8)


@dataclass
class RenderedFrame:
    """One frame: rgb uint8 [H, W, 3], labels uint8 [H, W] labelIds, inst uint16 [H, W]
    (instance ids of things, 0 elsewhere), flow float32 [H, W, 2] t -> t-1 or None."""

    rgb: np.ndarray
    labels: np.ndarray
    inst: np.ndarray
    flow: np.ndarray | None


def _colour(world: World, style: Style, cam: Camera, k: float) -> np.ndarray:
    """Ray-cast and shade: float32 [H, W, 3] scene colour seen by `cam` at frame time k."""
    gb, d = render_gbuffer(world, cam, k, style.hood)
    pts = _points(gb, cam, d)
    labels, rw = pixel_labels(world, gb, pts)
    return shade(style, world, cam, gb, d, pts, surface_normals(world, gb, d, pts, k), labels, rw, k)


def render_frame(world: World, domain: str, traj: Trajectory, width: int, height: int, k: int,
                 noise_rng: np.random.Generator, with_flow: bool, supersample: int = 1
                 ) -> RenderedFrame:
    """Render frame k of a drive through `world` in a domain's style (with its exact flow).

    Labels, instances and flow come from the ray through each pixel centre; the colour averages
    supersample x supersample rays per pixel (area anti-aliasing) when supersample > 1.
    """
    style = STYLES[domain]
    cam = traj.camera(style, width, height, k)
    gb, d = render_gbuffer(world, cam, k, style.hood)
    pts = _points(gb, cam, d)
    labels, rw = pixel_labels(world, gb, pts)
    if supersample > 1:
        fine = _colour(world, style, cam.supersampled(supersample), k)
        col = cv2.resize(fine, (width, height), interpolation=cv2.INTER_AREA)
    else:
        col = shade(style, world, cam, gb, d, pts, surface_normals(world, gb, d, pts, k), labels, rw, k)
    rgb = _sensor(style, col, noise_rng)
    inst = np.where(gb.prim >= 0, world.inst[np.maximum(gb.prim, 0)] if len(world.inst) else 0, 0)
    flow = exact_flow(world, gb, pts, d, traj.camera(style, width, height, k - 1)) if with_flow else None
    return RenderedFrame(rgb, labels, inst.astype(np.uint16), flow)


# ============================================================================ writers
def _synthia_seq_lut() -> np.ndarray:
    """uint16 [256]: Cityscapes labelId -> raw SYNTHIA-Seq class id through the protocol's train
    ids (0 = void for labelIds outside the 12 classes)."""
    proto = PROTOCOLS["synthia-seq12"]
    raw_of_train = {t: r for r, t in proto.id_maps["synthia-seq"].items()}
    lut = np.zeros(256, np.uint16)
    for label_id, train in proto.id_maps["cityscapes"].items():
        lut[label_id] = raw_of_train[train]
    return lut


_SYNTHIA_RAW = _synthia_seq_lut()


def _png(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _rgb_png(rgb: np.ndarray) -> bytes:
    return _png(np.ascontiguousarray(rgb[..., ::-1]))


def _synthia_label_png(labels: np.ndarray, inst: np.ndarray) -> bytes:
    """SYNTHIA GT/LABELS: 16-bit 3-channel PNG, class id in the first RGB channel (R),
    instance id in the second (G)."""
    bgr = np.zeros((*labels.shape, 3), np.uint16)
    bgr[..., 2] = _SYNTHIA_RAW[labels]
    bgr[..., 1] = inst
    return _png(bgr)


def cityscapes_palette() -> bytes:
    """768-byte palette: the Cityscapes colour of each labelId (black beyond 33)."""
    pal = np.zeros((256, 3), np.uint8)
    for lid, _, rgb in CITYSCAPES_LABELS:
        pal[lid] = rgb
    return pal.tobytes()


def _gta_label_png(labels: np.ndarray) -> bytes:
    """GTAV labels: a palette PNG whose index is the Cityscapes labelId."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(labels, np.uint8))
    img.putpalette(cityscapes_palette())
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _seq_rel(i: int, kind: str) -> str:
    sub = "RGB" if kind == "rgb" else "GT/LABELS"
    return f"{SYNTHIA_SEQ_DIR}/{sub}/Stereo_Left/Omni_F/{i:06d}.png"


def _city_rel(folder: str, sn: Snippet, frame: int, suffix: str) -> str:
    return f"{folder}/{sn.split}/{sn.city}/{sn.stem(frame)}_{suffix}.png"


def write_bytes(path: Path, data: bytes) -> None:
    """Write-then-rename: a file is complete or absent, never half-written.

    Unlike `udass.io.write_bytes` it neither fsyncs each file (3.7 ms per file here, 10x the
    write; a generated root is a regenerable cache whose completeness the marker records) nor
    makes it private (mkstemp's mode 0600): the cache is shared, files follow the umask.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def _write_flow(root: Path, dataset: str, rel: str, flow: np.ndarray) -> None:
    """The authors' format, as `flow.write_flow` writes it: int16(round(flow * 10)) .npy."""
    buf = io.BytesIO()
    np.save(buf, encode_int16_x10(flow))
    write_bytes(flow_cache_path(root / "udass_flow", dataset, rel), buf.getvalue())


# ============================================================================ jobs
_DOMAIN_CODES = {"source": 1, "train": 2, "val": 3}


def _rng(seed: int, benchmark: str, domain: str, item: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng([seed, BENCHMARK_SPECS[benchmark]["code"], _DOMAIN_CODES[domain],
                                  item, *extra])


@dataclass(frozen=True)
class _Job:
    """One unit of work: a range of source frames, one snippet or one source image."""

    kind: str          # "source-video" | "snippet" | "source-image"
    benchmark: str
    seed: int
    size: str
    start: int = 0
    stop: int = 0
    snippet: Snippet | None = None


def _source_video_drive(seed: int, size: str) -> tuple[World, Trajectory]:
    spec = _size_spec(size)
    rng = _rng(seed, "synthetic-video", "source", 0)
    traj = _trajectory(rng, long=True)
    travel = traj.pose(spec.source_frames)[0][2]
    world = build_world(rng, "source", False, -20.0, travel + FAR, spec.source_frames)
    world.sky_period = 240.0
    return world, traj


def _run_source_video(root: Path, job: _Job) -> dict[str, int]:
    spec = _size_spec(job.size)
    world, traj = _source_video_drive(job.seed, job.size)
    flows = 0
    for i in range(job.start, job.stop):
        fr = render_frame(world, "source", traj, spec.width, spec.height, i,
                          _rng(job.seed, job.benchmark, "source", 0, i), i > 0, spec.supersample)
        write_bytes(root / "synthia-seq" / _seq_rel(i, "rgb"), _rgb_png(fr.rgb))
        write_bytes(root / "synthia-seq" / _seq_rel(i, "label"), _synthia_label_png(fr.labels, fr.inst))
        if fr.flow is not None:
            _write_flow(root, "synthia-seq", _seq_rel(i, "rgb"), fr.flow)
            flows += 1
    return {"source_frames": job.stop - job.start, "flows": flows}


def _scene(seed: int, benchmark: str, domain_code: str, item: int, domain: str, image: bool,
           frames: int) -> tuple[World, Trajectory]:
    rng = _rng(seed, benchmark, domain_code, item)
    traj = _trajectory(rng, long=False)
    travel = traj.pose(frames)[0][2]
    return build_world(rng, domain, image, -20.0, travel + FAR, frames), traj


def _run_snippet(root: Path, job: _Job) -> dict[str, int]:
    spec, sn = _size_spec(job.size), job.snippet
    assert sn is not None
    video = BENCHMARK_SPECS[job.benchmark]["video"]
    world, traj = _scene(job.seed, job.benchmark, sn.split, sn.index, "target", not video,
                         SNIPPET_LENGTH)
    ks = range(ANNOTATED_INDEX - FRAMES_WRITTEN[sn.split] + 1, ANNOTATED_INDEX + 1) if video \
        else range(ANNOTATED_INDEX, ANNOTATED_INDEX + 1)
    frames = flows = 0
    for k in ks:
        frame = sn.start + k
        fr = render_frame(world, "target", traj, spec.width, spec.height, k,
                          _rng(job.seed, job.benchmark, sn.split, sn.index, k),
                          video and k > ks[0], spec.supersample)
        png = _rgb_png(fr.rgb)
        if video:
            rel = _city_rel("leftImg8bit_sequence", sn, frame, "leftImg8bit")
            write_bytes(root / "cityscapes" / rel, png)
            frames += 1
            if fr.flow is not None:
                _write_flow(root, "cityscapes", rel, fr.flow)
                flows += 1
        if k == ANNOTATED_INDEX:
            write_bytes(root / "cityscapes" / _city_rel("leftImg8bit", sn, frame, "leftImg8bit"), png)
            write_bytes(root / "cityscapes" / _city_rel("gtFine", sn, frame, "gtFine_labelIds"),
                        _png(fr.labels))
    counts = {f"target_{sn.split}_snippets": 1}
    return {**counts, "target_sequence_frames": frames, "flows": flows} if video else counts


def _run_source_image(root: Path, job: _Job) -> dict[str, int]:
    spec = _size_spec(job.size)
    for i in range(job.start, job.stop):
        world, traj = _scene(job.seed, job.benchmark, "source", i, "source", True, 1)
        fr = render_frame(world, "source", traj, spec.width, spec.height, 0,
                          _rng(job.seed, job.benchmark, "source", i, 0), False, spec.supersample)
        write_bytes(root / "gta" / "images" / f"{i + 1:05d}.png", _rgb_png(fr.rgb))
        write_bytes(root / "gta" / "labels" / f"{i + 1:05d}.png", _gta_label_png(fr.labels))
    return {"source_images": job.stop - job.start}


_RUNNERS: dict[str, Callable[[Path, _Job], dict[str, int]]] = {
    "source-video": _run_source_video, "snippet": _run_snippet, "source-image": _run_source_image}


def _jobs(benchmark: str, seed: int, size: str) -> list[_Job]:
    spec = _size_spec(size)
    video = BENCHMARK_SPECS[benchmark]["video"]
    n, kind, chunk = ((spec.source_frames, "source-video", 30) if video
                      else (spec.source_images, "source-image", 20))
    jobs = [_Job(kind, benchmark, seed, size, a, min(a + chunk, n)) for a in range(0, n, chunk)]
    jobs += [_Job("snippet", benchmark, seed, size, snippet=sn) for sn in snippets(size)]
    return jobs


def _run_job(args: tuple[str, _Job]) -> dict[str, int]:
    root, job = args
    return _RUNNERS[job.kind](Path(root), job)


def _worker_init() -> None:
    """Pool workers (our own short-lived processes): one OpenCV thread each, and glibc keeps
    freed buffers in the heap instead of unmapping them: every frame allocates ~1 MB numpy
    temporaries, whose page faults otherwise cost a fifth of the generation time."""
    cv2.setNumThreads(1)
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 20)    # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)   # M_TRIM_THRESHOLD
    except (OSError, AttributeError):   # not glibc: only slower
        pass


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _run_all(root: Path, jobs: list[_Job], workers: int) -> dict[str, int]:
    """Run jobs serially or on a process pool; every file comes from exactly one job, so the
    output does not depend on the number of workers."""
    import multiprocessing as mp

    args = [(str(root), j) for j in jobs]
    if workers <= 1 or mp.current_process().daemon:   # daemons (loader workers) cannot fork pools
        results = [_run_job(a) for a in args]
    else:
        # spawn, not fork: a forked child inherits the parent's OpenCV / OpenMP thread pools in
        # whatever state they were (e.g. after DIS ran in this process) and can deadlock.
        with mp.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
            results = pool.map(_run_job, args, chunksize=1)
    counts: dict[str, int] = {}
    for r in results:
        for key, v in r.items():
            counts[key] = counts.get(key, 0) + v
    return dict(sorted(counts.items()))


# ============================================================================ public API
def _marker_content(benchmark: str, size: str, seed: int) -> dict[str, Any]:
    spec = _size_spec(size)
    return {"benchmark": benchmark, "size": size, "seed": seed, "version": GENERATOR_VERSION,
            "width": spec.width, "height": spec.height}


def read_marker(root: str | os.PathLike) -> dict[str, Any] | None:
    """The completion marker of a generated root, or None when absent or unreadable."""
    try:
        return json.loads((Path(root) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _marker_matches(root: Path, benchmark: str, size: str, seed: int) -> bool:
    marker = read_marker(root)
    want = _marker_content(benchmark, size, seed)
    return marker is not None and all(marker.get(k) == v for k, v in want.items())


def _is_ours(root: Path) -> bool:
    """Whether `udass synth` wrote this folder (complete or not), so it may be replaced."""
    return (root / MARKER).is_file() or (root / OWNER_STAMP).is_file()


def _prepare_out(out: Path) -> None:
    """Make `out` ready: create it, or clear what an earlier generation wrote there."""
    if out.exists() and not out.is_dir():
        raise UdassError(f"--out {out} is a file, expected a folder; pass a folder path")
    out.mkdir(parents=True, exist_ok=True)
    present = [n for n in DATASET_DIRS if (out / n).exists()]
    if present and not _is_ours(out):
        raise UdassError(f"{out} already holds {', '.join(present)} not written by `udass synth`; "
                         f"pass an empty or new folder as --out")
    (out / MARKER).unlink(missing_ok=True)
    for name in present:
        shutil.rmtree(out / name)


def generate(benchmark: str, out: str | os.PathLike, seed: int = 0, size: str = "demo", *,
             workers: int | None = None) -> Path:
    """Write the data root `out` of a synthetic benchmark and return it.

    benchmark: "synthetic-video" | "synthetic-image"; size: "tiny" (tests) | "demo".
    The same (benchmark, seed, size) gives byte-identical files whatever `workers` is (default:
    serial for tiny, up to 4 processes otherwise). `udass_synthetic.json` is written last: a
    root without it is incomplete.
    """
    _bench_spec(benchmark)
    spec = _size_spec(size)
    out = Path(out)
    _prepare_out(out)
    write_json(out / OWNER_STAMP, {"written_by": "udass synth", **_marker_content(benchmark, size, seed)})
    if workers is None:
        workers = 1 if spec.width * spec.height < 10000 else min(4, _usable_cpus())
    counts = _run_all(out, _jobs(benchmark, seed, size), workers)
    write_json(out / MARKER, {**_marker_content(benchmark, size, seed), "counts": counts,
                              "content_sha256": content_hash(out)})
    return out


def content_hash(root: str | os.PathLike) -> str:
    """SHA-256 over the relative path and bytes of every file a generation wrote under `root`
    (the marker files excluded), in sorted path order. Recorded in the marker, and from there in
    each run's run.json, so that two machines can tell whether they trained on the same bytes
    (numpy and OpenCV pick SIMD code paths by CPU)."""
    root = Path(root)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in (MARKER, OWNER_STAMP)):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def default_root(benchmark: str, size: str = "demo", seed: int = 0) -> Path:
    """Where a synthetic benchmark is cached: `$UDASS_DATA/<benchmark>` when UDASS_DATA is set,
    else `<repo>/data/<benchmark>`; `-<size>-s<seed>` is appended unless demo / 0."""
    _bench_spec(benchmark)
    _size_spec(size)
    base = Path(os.environ["UDASS_DATA"]) if os.environ.get("UDASS_DATA") else \
        Path(__file__).resolve().parents[2] / "data"
    name = benchmark if (size, seed) == ("demo", 0) else f"{benchmark}-{size}-s{seed}"
    return base / name


def ensure_synthetic_root(benchmark: str, size: str = "demo", seed: int = 0,
                          root: str | os.PathLike | None = None) -> Path:
    """A complete synthetic root, generated if its marker is missing or does not match.

    Safe under concurrent callers: each generates into a temporary sibling folder and renames it
    into place; a caller that loses the race uses the winner's root.
    """
    root = Path(root) if root is not None else default_root(benchmark, size, seed)
    if _marker_matches(root, benchmark, size, seed):
        return root
    if root.is_dir() and any(root.iterdir()) and not _is_ours(root):
        raise UdassError(f"{root} exists and was not written by `udass synth`; move it away or "
                         f"pass another data root")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        generate(benchmark, tmp, seed=seed, size=size)
        os.chmod(tmp, 0o755)   # mkdtemp makes it private; the cache is shared
        _install(tmp, root, benchmark, size, seed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _install(tmp: Path, root: Path, benchmark: str, size: str, seed: int) -> None:
    """Rename a freshly generated `tmp` to `root`, replacing a stale root that is ours."""
    for _ in range(5):
        try:
            os.rename(tmp, root)
            return
        except OSError:
            if _marker_matches(root, benchmark, size, seed):
                return       # another caller won the race
        if root.exists():
            if any(root.iterdir()) and not _is_ours(root):
                raise UdassError(f"{root} exists and was not written by `udass synth`; move it "
                                 f"away or pass another data root")
            stale = Path(tempfile.mkdtemp(prefix=f".{root.name}.stale-", dir=root.parent))
            try:
                os.rename(root, stale / "old")
            except OSError:
                pass         # someone else moved or replaced it: try again
            shutil.rmtree(stale, ignore_errors=True)
    raise UdassError(f"could not install the generated data at {root}; remove it and run "
                     f"`udass synth --benchmark {benchmark} --out {root}`")


# ============================================================================ statistics, figure
def _require_root(root: Path, benchmark: str) -> None:
    """A complete generated root of `benchmark`, or a UdassError saying how to make one."""
    _bench_spec(benchmark)
    marker = read_marker(root)
    if marker is None or marker.get("benchmark") != benchmark:
        found = "no udass_synthetic.json" if marker is None else f"a {marker.get('benchmark')} root"
        raise UdassError(f"{root} is not a complete {benchmark} root ({found}); make one with "
                         f"`udass synth --benchmark {benchmark} --out {root}`")


def _read_labels(path: Path, encoding: str) -> np.ndarray:
    """Raw label ids of a written label file in its dataset's encoding."""
    if encoding == "gta":
        from PIL import Image

        with Image.open(path) as img:
            return np.asarray(img)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise UdassError(f"unreadable label file {path}; regenerate the root with `udass synth`")
    return raw[..., 2] if encoding == "synthia-seq" else raw


def _domain_files(root: Path, benchmark: str) -> dict[str, tuple[str, list[Path], int]]:
    """Per domain: label encoding, label files, frame count."""
    video = _bench_spec(benchmark)["video"]
    cs = root / "cityscapes"
    out: dict[str, tuple[str, list[Path], int]] = {}
    if video:
        seq = root / "synthia-seq" / SYNTHIA_SEQ_DIR
        out["source"] = ("synthia-seq", sorted((seq / "GT/LABELS/Stereo_Left/Omni_F").glob("*.png")),
                         len(list((seq / "RGB/Stereo_Left/Omni_F").glob("*.png"))))
    else:
        out["source"] = ("gta", sorted((root / "gta/labels").glob("*.png")),
                         len(list((root / "gta/images").glob("*.png"))))
    frames_dir = "leftImg8bit_sequence" if video else "leftImg8bit"
    for split in ("train", "val"):
        out[f"target_{split}"] = ("cityscapes", sorted((cs / "gtFine" / split).glob("*/*_labelIds.png")),
                                  len(list((cs / frames_dir / split).glob("*/*.png"))))
    return out


def layout_statistics(root: str | os.PathLike, benchmark: str) -> dict[str, Any]:
    """Class pixel shares per domain, decoded from the written label files.

    Returns {"benchmark", "protocol", "classes", "domains": {"source" | "target_train" |
    "target_val": {"dataset", "frames", "labelled_frames", "class_share": {class: fraction},
    "ignore_share"}}}; shares are fractions of all labelled pixels of the domain (train ids of
    the benchmark's protocol via `protocols.map_label`; ignore = 255).
    """
    root = Path(root)
    _require_root(root, benchmark)
    proto = PROTOCOLS[_bench_spec(benchmark)["protocol"]]
    domains: dict[str, Any] = {}
    for name, (encoding, files, frames) in _domain_files(root, benchmark).items():
        hist = np.zeros(256, np.int64)
        for f in files:
            train = map_label(_read_labels(f, encoding), proto.name, encoding, source=str(f))
            hist += np.bincount(train.ravel(), minlength=256)
        total = max(int(hist.sum()), 1)
        domains[name] = {
            "dataset": "cityscapes-seq" if encoding == "cityscapes" and _bench_spec(benchmark)["video"]
            else encoding,
            "frames": frames, "labelled_frames": len(files),
            "class_share": {c: float(hist[i]) / total for i, c in enumerate(proto.classes)},
            "ignore_share": float(hist[IGNORE]) / total}
    return {"benchmark": benchmark, "protocol": proto.name, "classes": list(proto.classes),
            "domains": domains}


def format_statistics(stats: dict[str, Any]) -> str:
    """A Markdown table of `layout_statistics`: class shares in percent per domain."""
    doms = list(stats["domains"])
    lines = ["| class | " + " | ".join(doms) + " |", "|---|" + "---:|" * len(doms)]
    for c in stats["classes"]:
        lines.append(f"| {c} | " + " | ".join(f"{100 * stats['domains'][d]['class_share'][c]:.2f}"
                                              for d in doms) + " |")
    lines.append("| (ignored) | " + " | ".join(f"{100 * stats['domains'][d]['ignore_share']:.2f}"
                                               for d in doms) + " |")
    lines.append("| frames (labelled) | " + " | ".join(
        f"{stats['domains'][d]['frames']} ({stats['domains'][d]['labelled_frames']})" for d in doms)
        + " |")
    return "\n".join(lines) + "\n"


def _example_paths(root: Path, benchmark: str) -> dict[str, Any]:
    """Frame, label file and flow (or None) of a middle source frame and the first val frame."""
    video = _bench_spec(benchmark)["video"]
    doms = _domain_files(root, benchmark)
    enc, files, _ = doms["source"]
    src_label = files[len(files) // 2]
    if video:
        src_img = Path(str(src_label).replace("GT/LABELS", "RGB"))
        src_flow = flow_cache_path(root / "udass_flow", "synthia-seq",
                                   src_img.relative_to(root / "synthia-seq"))
    else:
        src_img, src_flow = root / "gta/images" / src_label.name, None
    tgt_label = doms["target_val"][1][0]
    tgt_img = Path(str(tgt_label).replace("gtFine", "leftImg8bit", 1).replace("_gtFine_labelIds",
                                                                               "_leftImg8bit"))
    tgt_flow = None
    if video:
        rel = tgt_img.relative_to(root / "cityscapes")
        rel = Path("leftImg8bit_sequence", *rel.parts[1:])
        tgt_flow = flow_cache_path(root / "udass_flow", "cityscapes", rel)
    return {"source": (src_img, src_label, enc, src_flow),
            "target": (tgt_img, tgt_label, "cityscapes", tgt_flow)}


def _flow_wheel(n: int = 101) -> np.ndarray:
    """uint8 [n, n, 3]: the colour wheel of `flow_to_color` (direction = hue)."""
    y, x = np.mgrid[-1:1:n * 1j, -1:1:n * 1j].astype(np.float32)
    wheel = flow_to_color(np.stack([x, y], -1), max_norm=1.0)
    wheel[x**2 + y**2 > 1] = 255
    return wheel


def style_figure(root: str | os.PathLike, benchmark: str, out_png: str | os.PathLike) -> Path:
    """Side-by-side figure of the two styles: frame, label (train-id colours) and, for video,
    the exact flow t -> t-1 with its colour wheel, for a source frame and a target val frame."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    root, out_png = Path(root), Path(out_png)
    _require_root(root, benchmark)
    proto = PROTOCOLS[_bench_spec(benchmark)["protocol"]]
    examples = _example_paths(root, benchmark)
    video = _bench_spec(benchmark)["video"]
    cols = 4 if video else 3
    fig = Figure(figsize=(3.2 * cols, 4.4), dpi=120)
    axes = fig.subplots(2, cols, gridspec_kw={"width_ratios": [2] * (cols - 1) + [1]})
    for r, (dom, (img, lab, enc, flow)) in enumerate(examples.items()):
        rgb = cv2.imread(str(img), cv2.IMREAD_COLOR)[..., ::-1]
        train = map_label(_read_labels(lab, enc), proto.name, enc)
        axes[r, 0].imshow(rgb)
        axes[r, 0].set_title(f"{dom}: {img.name}", fontsize=8)
        axes[r, 1].imshow(proto.palette()[train])
        axes[r, 1].set_title("label (train ids; black = ignore)", fontsize=8)
        if video:
            fl = np.load(flow).astype(np.float32) / 10.0
            scale = max(float(np.percentile(np.linalg.norm(fl, axis=-1), 95)), 0.5)
            axes[r, 2].imshow(flow_to_color(fl, max_norm=scale))
            axes[r, 2].set_title(f"exact flow t->t-1 (full colour at {scale:.1f} px)", fontsize=8)
    if video:
        axes[0, -1].imshow(_flow_wheel())
        axes[0, -1].set_title("flow colour wheel", fontsize=8)
    handles = [Patch(color=np.asarray(proto.palette()[i]) / 255, label=c)
               for i, c in enumerate(proto.classes)]
    axes[1, -1].legend(handles=handles, loc="center", fontsize=6, ncol=1 if video else 2,
                       frameon=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(f"{benchmark}: source style (top) vs target style (bottom)", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    write_bytes(out_png, buf.getvalue())
    return out_png

"""The world model: a street of blocks along z with buildings, vegetation, poles, signs, lights,
fences, walls, parked and moving vehicles, pedestrians and riders, as primitives (boxes, spheres
and planar cut-outs) with per-frame velocities.

A street is drawn from a numpy Generator for a domain ("source", "target", "source-ego"): the
domain's `Layout` says what the blocks hold, its `Style` the colours of the objects.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from udass.data.synthetic.spec import (BICYCLE, BUILDING, BUS, CAR, FENCE, LIGHT, MOTORCYCLE,
                                       PERSON, POLE, RIDER, SIDEWALK, SIGN, STATIC, TERRAIN, TRAIN,
                                       TRUCK, VEGETATION, WALL)
from udass.data.synthetic.style import LAYOUTS, STYLES, Layout, Style


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


def _blocks(rng: np.random.Generator, layout: Layout, rich: bool, z0: float, z1: float
            ) -> dict[str, np.ndarray]:
    """Ground strips along z: block edges and per-block widths."""
    edges = [z0]
    while edges[-1] < z1:
        edges.append(edges[-1] + float(rng.uniform(25, 45)))
    b = len(edges) - 1
    grass_on = (rng.random((b, 2)) < layout.terrain_p) if rich else np.zeros((b, 2), bool)
    return {"edges": np.asarray(edges), "road_half": rng.uniform(*layout.road_half, b),
            "walk": rng.uniform(*layout.sidewalk, (b, 2)),
            "grass": np.where(grass_on, rng.uniform(*layout.terrain, (b, 2)), 0.0)}


def build_world(rng: np.random.Generator, domain: str, rich: bool, z0: float, z1: float,
                frames: float) -> World:
    """Generate a street from z0 to z1 (metres) for a domain ("source" | "target" | "source-ego").

    rich: the image benchmarks' vocabulary (adds wall, terrain, truck, bus, train, motorcycle,
    bicycle). frames: how long the drive lasts (oncoming traffic is spread so that some of it
    stays in view). The camera starts at z = 0.
    """
    style, layout = STYLES[domain], LAYOUTS[domain]
    blocks = _blocks(rng, layout, rich, z0, z1)
    wb = _WorldBuilder(rng, style)
    for i in range(len(blocks["road_half"])):
        for j, side in enumerate((-1, 1)):
            st = _Street(side, float(blocks["edges"][i]), float(blocks["edges"][i + 1]),
                         float(blocks["road_half"][i]), float(blocks["walk"][i, j]),
                         float(blocks["grass"][i, j]))
            _add_buildings(wb, layout, st, rich)
            _add_vegetation(wb, layout, st)
            _add_poles(wb, layout, st)
            _add_fence_or_wall(wb, layout, st, rich)
            _add_parked(wb, layout, st, rich)
            _add_pedestrians(wb, layout, st)
            _add_riders(wb, layout, st, rich, domain)
        if rich and blocks["edges"][i] > 10.0 and rng.random() < layout.tram_p:
            _add_tram(wb, float(blocks["edges"][i]))
    _add_traffic(wb, layout, rich, z0, z1, frames)
    return wb.build(blocks, TERRAIN if rich else SIDEWALK)


def _add_buildings(wb: _WorldBuilder, layout: Layout, st: _Street, rich: bool) -> None:
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
            if rich and rng.random() < 0.5:
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


def _add_fence_or_wall(wb: _WorldBuilder, layout: Layout, st: _Street, rich: bool) -> None:
    rng = wb.rng
    length = float(rng.uniform(10, 30))
    z0 = float(rng.uniform(st.z0, max(st.z0 + 0.1, st.z1 - length)))
    if rng.random() < layout.fence_p:
        x, h = st.x(st.walk_out - 0.1), float(rng.uniform(1.0, 1.7))
        wb.add(XBOARD, (x, 0.0, z0), (x, h, z0 + length), FENCE, shape=SHAPE_FENCE)
    elif rich and rng.random() < layout.wall_p:
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


def _vehicle_label(rng: np.random.Generator, layout: Layout, rich: bool) -> int:
    if rich and rng.random() < layout.big_vehicle_p:
        return TRUCK if rng.random() < 0.5 else BUS
    return CAR


def _add_parked(wb: _WorldBuilder, layout: Layout, st: _Street, rich: bool) -> None:
    rng = wb.rng
    if st.road_half >= 4.5:
        for z in np.arange(st.z0 + 3.5, st.z1 - 3.5, 6.5):
            if rng.random() < layout.parked_p:
                label = _vehicle_label(rng, layout, rich)
                z = float(z) + (2.0 if label == TRUCK else 4.0 if label == BUS else 0.0)
                _vehicle(wb, label, st.x(st.curb - 1.15), z, layout.car_scale)
    if rich and rng.random() < layout.two_wheeler_p:
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


def _two_wheeler_labels(rich: bool, domain: str, moto: bool) -> int:
    """The vehicle part of a rider: SYNTHIA-Seq labels rider and bicycle alike (raw 11)."""
    if not rich and domain == "source":
        return RIDER
    return MOTORCYCLE if moto else BICYCLE


def _add_riders(wb: _WorldBuilder, layout: Layout, st: _Street, rich: bool, domain: str
                ) -> None:
    rng = wb.rng
    for _ in range(rng.poisson(layout.riders)):   # along the street, on the inner sidewalk lane
        moto = rich and rng.random() < 0.4
        x, z = st.x(st.curb + 1.0), float(rng.uniform(st.z0, st.z1))
        vz = float(rng.choice([-1, 1]) * rng.uniform(0.15, 0.35))
        w, h = (0.8, 1.7) if moto else (0.7, 1.75)
        wb.add(ZBOARD, (x - w / 2, 0.0, z), (x + w / 2, h, z), RIDER,
               label2=_two_wheeler_labels(rich, domain, moto), vel=(0.0, 0.0, vz),
               shape=SHAPE_MOTO_BACK if moto else SHAPE_RIDER_BACK, inst=wb.instance())
    if st.side < 0 and rng.random() < layout.riders / 3:   # crossing, side view
        moto = rich and rng.random() < 0.4
        x, z = -float(rng.uniform(0.0, st.road_half)), float(rng.uniform(st.z0, st.z1))
        wb.add(ZBOARD, (x - 0.95, 0.0, z), (x + 0.95, 1.8, z), RIDER,
               label2=_two_wheeler_labels(rich, domain, moto),
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


def _add_traffic(wb: _WorldBuilder, layout: Layout, rich: bool, z0: float, z1: float,
                 frames: float) -> None:
    """Oncoming vehicles (and motorcycles), spread over where they will be during the drive,
    and faster lead vehicles in the ego lane."""
    rng = wb.rng
    for _ in range(rng.poisson(layout.traffic * (z1 - z0 + 0.6 * frames) / 100.0)):
        v = float(rng.uniform(0.3, 1.0))
        z = float(rng.uniform(z0 + 10.0, z1 + v * frames))
        if rich and rng.random() < layout.two_wheeler_p / 3:
            wb.add(ZBOARD, (-2.15, 0.0, z), (-1.35, 1.7, z), RIDER, label2=MOTORCYCLE,
                   vel=(0.0, 0.0, -v), shape=SHAPE_MOTO_BACK, inst=wb.instance())
        else:
            _vehicle(wb, _vehicle_label(rng, layout, rich), -1.75, z, layout.car_scale,
                     (0.0, 0.0, -v))
    for _ in range(rng.poisson(layout.traffic * 0.3 * (z1 - z0) / 100.0)):
        v = float(rng.uniform(1.05, 1.4))   # ahead of the camera (at z = 0) and faster than it
        _vehicle(wb, _vehicle_label(rng, layout, rich), 1.75, float(rng.uniform(20.0, z1)),
                 layout.car_scale, (0.0, 0.0, v))

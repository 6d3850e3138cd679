"""The renderer: ray casting of a `World` into a g-buffer, per-pixel labels and instance ids,
the exact backward flow, and shading (texture fixed to surfaces, lighting, sky, road markings).

Every pixel is rendered from a 3-D point found by ray casting (a ground plane, boxes, spheres and
planar cut-outs; sky at infinity), so the flow of a pixel is where the same point (moved back by
its object's motion) projects in the previous camera. Textures fade out before they become
finer than AA_PERIOD pixels, so that a frame warped by the exact flow reproduces the next one.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from udass.data.synthetic.camera import Camera, Trajectory
from udass.data.synthetic.spec import BUILDING, EGO, LIGHT, ROAD, SIDEWALK, SKY, TERRAIN
from udass.data.synthetic.style import STYLES, Style, scalar_lut, sensor
from udass.data.synthetic.world import (BOX, EGO_ID, FULL, GROUND, SHAPE_BIKE, SHAPE_DISC,
                                        SHAPE_FENCE, SHAPE_MOTO, SHAPE_MOTO_BACK, SHAPE_MOTO_SIDE,
                                        SHAPE_PERSON, SHAPE_RIDER_BACK, SHAPE_RIDER_SIDE, SKY_ID,
                                        SPHERE, ZBOARD, World)

NEAR, FAR = 0.5, 160.0       # metres: nearest hit accepted, farthest object drawn
AA_PERIOD = 2.0              # texture detail finer than this many pixels per period fades out


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


# ------------------------------------------------------------------------------ labels and flow
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


# ------------------------------------------------------------------------------ shading
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
    freq = scalar_lut(style.tex_freq, 2.0)[labels]
    amp = scalar_lut(style.tex_amp, 0.0)[labels]
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
    rgb = sensor(style, col, noise_rng)
    inst = np.where(gb.prim >= 0, world.inst[np.maximum(gb.prim, 0)] if len(world.inst) else 0, 0)
    flow = exact_flow(world, gb, pts, d, traj.camera(style, width, height, k - 1)) if with_flow else None
    return RenderedFrame(rgb, labels, inst.astype(np.uint16), flow)

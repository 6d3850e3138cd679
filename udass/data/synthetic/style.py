"""How a domain looks and what its streets hold: colour palettes, lighting, texture, camera and
sensor effects (`Style`), object sizes and frequencies (`Layout`), and the sensor model that turns
a rendered scene colour into 8-bit pixels.

The source style is flat and clean; the target style is textured, lit differently, hazy,
blurred and noisy, with a shifted class layout (docs/synthetic.md, "The domain gap").
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from udass.data.synthetic.spec import (BICYCLE, BUILDING, BUS, CAR, EGO, FENCE, LIGHT, MOTORCYCLE,
                                       PERSON, POLE, RIDER, ROAD, SIDEWALK, SIGN, STATIC, TERRAIN,
                                       TRAIN, TRUCK, VEGETATION, WALL)


def _lut(colors: dict[int, tuple[int, int, int]], default: tuple[int, int, int]) -> np.ndarray:
    """float32 [256, 3] colour lookup by labelId."""
    lut = np.tile(np.asarray(default, np.float32), (256, 1))
    for k, v in colors.items():
        if k >= 0:
            lut[k] = v
    return lut


def scalar_lut(values: dict[int, float], default: float = 0.0) -> np.ndarray:
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
    # Target colours are the source's shifted by a few tens of levels, with extra real-world
    # variety for vehicles, people and signs; a new colour per class inverts a from-scratch
    # network's colour cues (docs/synthetic.md, "Why the target colours stay near the source's").
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


# VIPER's frames show the ego car's hood (labelled car, which the VIPER loader removes): the
# source style with a hood of its own colour.
_SOURCE_EGO_STYLE = replace(_SOURCE_STYLE, name="source-ego", hood=True,
                            colors={**_SOURCE_STYLE.colors, EGO: ((46, 50, 60),)})
STYLES = {"source": _SOURCE_STYLE, "target": _TARGET_STYLE, "source-ego": _SOURCE_EGO_STYLE}
LAYOUTS = {"source": _SOURCE_LAYOUT, "target": _TARGET_LAYOUT, "source-ego": _SOURCE_LAYOUT}


def sensor(style: Style, col: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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


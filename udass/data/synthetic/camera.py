"""The moving camera: a pinhole `Camera` and the ego motion (`Trajectory`) that places it at
any frame index in closed form, so that frame t and frame t-1 are exact."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from udass.data.synthetic.style import Style


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


def random_trajectory(rng: np.random.Generator, long: bool) -> Trajectory:
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


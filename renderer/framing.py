"""Orthographic cameras, viewed from the character's front (+z looking towards -z).

A camera is a square window in the character's x/y plane plus the z range it keeps.
Framing in DESIGN.md: the head top and chin land on rows 64 and 192 of a 256-pixel
image, i.e. the head spans the middle half of the height, whatever the image size.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from renderer.humanoid import head_bone
from renderer.model import Model

HEAD_FRACTION = 0.5  # head top to chin = half of the image height (128 of 256 rows)
BODY_MARGIN = 1.05  # full-body framing leaves 5% around the model


@dataclass(frozen=True)
class Camera:
    """Square orthographic window: centre, half of its height, and visible z range."""

    center_x: float
    center_y: float
    half_height: float
    z_near: float = 1000.0  # largest z kept (closest to the viewer)
    z_far: float = -1000.0  # smallest z kept

    @property
    def view(self) -> np.ndarray:
        """Character space -> eye space: the eye sits at the window centre, looking down -z."""
        matrix = np.eye(4, dtype=np.float32)
        matrix[:2, 3] = -self.center_x, -self.center_y
        return matrix

    @property
    def projection(self) -> np.ndarray:
        """Eye space -> clip space (glOrtho with near = -z_near, far = -z_far)."""
        half, near, far = self.half_height, -self.z_near, -self.z_far
        matrix = np.eye(4, dtype=np.float32)
        matrix[0, 0] = matrix[1, 1] = 1.0 / half
        matrix[2, 2] = -2.0 / (far - near)
        matrix[2, 3] = -(far + near) / (far - near)
        return matrix

    @property
    def matrix(self) -> np.ndarray:
        """Projection @ view, for column vectors."""
        return self.projection @ self.view

    def with_depth(self, z_min: float, z_max: float) -> Camera:
        """The same window keeping z in [z_min, z_max]."""
        return replace(self, z_near=float(z_max), z_far=float(z_min))

    def pixel_size(self, size: int) -> float:
        """Width of one pixel in model units for a ``size``-pixel image."""
        return 2.0 * self.half_height / size


def head_camera(top_y: float, chin_y: float, center_x: float = 0.0, head_height: float = HEAD_FRACTION,
                head_centre: float = 0.5) -> Camera:
    """Head framing: top to chin spans ``head_height`` of the image height, the head's middle at
    ``head_centre`` of it from the top (DESIGN.md's: the middle half, (0.5, 0.5); THA3's: (0.25, 0.25))."""
    height = float(top_y) - float(chin_y)
    if not np.isfinite(height):  # inf, nan or bounds so far apart that nothing would be drawn
        raise ValueError(f"head bounds ({top_y}, {chin_y}) must be finite model-space y")
    if not height > 0:
        raise ValueError(f"head top ({top_y}) must be above the chin ({chin_y})")
    half = height / (2 * head_height)
    return Camera(float(center_x), (float(top_y) + float(chin_y)) / 2 - half * (1.0 - 2.0 * head_centre), half)


def jittered(camera: Camera, dx: float, dy: float, scale: float) -> Camera:
    """The same view shifted by (dx, dy) of the image side (x to the image right, y down) and scaled
    by ``scale`` (> 1 shows the model larger), about the image centre."""
    half = camera.half_height / scale
    return replace(camera, center_x=camera.center_x - dx * 2 * half, center_y=camera.center_y + dy * 2 * half,
                   half_height=half)


def full_body_camera(model: Model) -> Camera:
    """The whole model at rest, centred, with a small margin (the annotator's overview)."""
    low, high = model_bounds(model)
    center = (low + high) / 2
    half = max(high[0] - low[0], high[1] - low[1]) / 2 * BODY_MARGIN
    return fit_depth(Camera(float(center[0]), float(center[1]), float(max(half, 1e-3))), model)


def region_camera(center: tuple[float, float] | np.ndarray, half_height: float) -> Camera:
    """A close-up window around ``center`` (x, y; a z component is ignored)."""
    return Camera(float(center[0]), float(center[1]), float(half_height))


def model_bounds(model: Model) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounds (low, high) of the rest-pose vertices."""
    positions = model.vertices.positions
    return positions.min(axis=0), positions.max(axis=0)


def fit_depth(camera: Camera, model: Model) -> Camera:
    """Keep the model's z range with a margin as large as the model, so posed parts stay in."""
    low, high = model_bounds(model)
    margin = float(np.max(high - low)) + 1.0
    return camera.with_depth(float(low[2]) - margin, float(high[2]) + margin)


def head_center_x(model: Model) -> float:
    """x of the head bone (DESIGN.md centres the framing on it), or the model's middle without one."""
    index = head_bone(model)
    if index >= 0:
        return float(model.bones.positions[index, 0])
    low, high = model_bounds(model)
    return float(low[0] + high[0]) / 2

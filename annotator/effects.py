"""What a morph (or a pose channel) visibly does to the face, measured on renders.

A close-up of the face is rendered at rest and with the morph at weight 1. Per eye,
``hidden`` is the share of the eye's visible pixels (those that differ from the
skin) that turn into skin: a closed lid or a squashed eye hides them, an eyebrow or
a sweat drop does not. ``opened`` is the mouth-box area that turns from skin into
something else (the inside of an open mouth), and ``outside`` the changed area away
from both eyes and the mouth, in eye areas. These three numbers are what the
channel check and the role suggestions judge by.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from annotator.face import Face
from renderer.framing import Camera, region_camera
from renderer.model import Model

SIZE = 160  # close-up side in pixels: an eye spans ~25 px, enough to see a lid close
VIEW_HALF = 0.62  # the close-up shows this many head heights above and below its centre
SKIN_CHROMA = 0.03  # chromaticity distance (r, g, b shares of the sum) beyond which a pixel is not skin
SKIN_BRIGHTNESS = (0.6, 1.4)  # ...and brightness range, relative to the skin's (eye whites are grey, lashes dark)
CHANGED = 24.0  # RGB (or alpha) distance that counts as a changed pixel
MARGIN = 2.0  # landmark boxes grow by this factor before "outside" is counted (lashes, lids and cheeks move too)
DARK_FACE = 40.0  # mean RGB of the face close-up below which nothing on it can be judged
MIN_BLOB = 20  # pixels: a smaller non-skin blob at an eye centre is no eye (the box is kept)
LINE_SPAN = 0.5  # a closed eye's line must cross this share of the eye's width to show its shape
BLOB_PAD = 0.15  # the eye's blob box grows by this fraction of its size on each side


@dataclass(frozen=True)
class Effect:
    """Visible effect of one morph or pose at weight 1 (see the module docstring)."""

    hidden: tuple[float, float]  # left eye, right eye: share of the eye's pixels hidden
    changed: tuple[float, float]  # left eye, right eye: share of the eye box that changed
    opened: float  # mouth area opened, in eye-box areas
    mouth_changed: float  # changed mouth-box area, in eye-box areas
    outside: float  # changed area elsewhere, in eye-box areas
    arch: tuple[float, float] = (0.0, 0.0)  # left, right: rise of the closed eye's line mid over ends / width (^ > 0)

    def to_dict(self) -> dict[str, float]:
        return {"hidden_left": round(self.hidden[0], 3), "hidden_right": round(self.hidden[1], 3),
                "changed_left": round(self.changed[0], 3), "changed_right": round(self.changed[1], 3),
                "opened": round(self.opened, 3), "mouth_changed": round(self.mouth_changed, 3),
                "outside": round(self.outside, 3), "arch_left": round(self.arch[0], 3),
                "arch_right": round(self.arch[1], 3)}


class FaceProbe:
    """Renders face close-ups of one model and measures effects against its rest image.

    ``renderer`` is any :class:`renderer.Renderer` of the model (its own morph binding
    is used by :meth:`pose_effect`); the probe only adds a camera and the arithmetic.
    """

    def __init__(self, renderer, face: Face):
        self.renderer, self.face = renderer, face
        centre_y = face.chin + 0.5 * face.height
        self.camera = region_camera((face.centre_x, centre_y), VIEW_HALF * face.height)
        self._materials = materials_in_view(renderer.model, self.camera)
        self._scale = renderer.size / (2 * self.camera.half_height)
        self.rest = self.render(None)
        self._skin = _skin_colour(self.rest, self._pixel(face.centre_x, 0.5 * (face.eyes[:, 1].mean() + face.mouth[1])),
                                  max(2, int(0.04 * face.height * self._scale)))
        self._rest_skin = self._is_skin(self.rest)
        self._eye_masks = [self._eye_mask(face.eye_box(side)) for side in (0, 1)]
        self._mouth_mask = self._box_mask(face.mouth_box())
        grown = [self._box_mask(_grow(face.eye_box(side))) for side in (0, 1)]
        grown += [self._box_mask(_grow(face.mouth_box()))]
        self._outside_mask = ~np.logical_or.reduce(grown) & (self.rest[..., 3] > 0)
        self._eye_area = max(1.0, float(np.mean([mask.sum() for mask in self._eye_masks])))

    def render(self, pose, extra: Mapping[str, float] | None = None) -> np.ndarray:
        """A close-up of ``pose`` (None: all zeros) plus ``extra`` morphs by name."""
        return self.renderer.render(pose, extra_morphs=extra, camera=self.camera, materials=self._materials)

    def visibility_problem(self) -> str | None:
        """Why nothing can be judged on this face's renders (too dark to see features), or None."""
        covered = self.rest[..., 3] > 0
        if not covered.any():
            return "the face renders empty: no geometry in front of the camera"
        brightness = float(self.rest[covered][:, :3].mean())
        if brightness < DARK_FACE:
            return (f"the face renders nearly black (mean brightness {brightness:.0f} of 255; dark or missing "
                    f"textures?): its morphs cannot be judged from renders")
        return None

    def eye_mask(self, side: int) -> np.ndarray:
        """(size, size) bool: the pixels of eye ``side`` (0 left, 1 right) in the close-ups."""
        return self._eye_masks[side]

    def pose_effect(self, pose) -> Effect:
        """The effect of a pose through the renderer's own morph binding."""
        return self.measure(self.render(pose))

    def changed_area(self, image: np.ndarray) -> float:
        """Everything that changed from rest, in eye areas: an eyebrow's motion, which no landmark box holds."""
        return float(_changed(self.rest, image).sum()) / self._eye_area

    def measure(self, image: np.ndarray) -> Effect:
        changed = _changed(self.rest, image)
        skin = self._is_skin(image)
        eye_pixels = [mask & ~self._rest_skin for mask in self._eye_masks]
        hidden = tuple(float((eye & skin).sum() / max(1, eye.sum())) for eye in eye_pixels)
        box_changed = tuple(float((changed & mask).sum() / max(1, mask.sum())) for mask in self._eye_masks)
        opened = float((self._mouth_mask & self._rest_skin & ~skin & changed).sum()) / self._eye_area
        line = ~skin & changed & (image[..., 3] > 0)
        arch = tuple(_arch(line & mask, mask) for mask in self._eye_masks)
        return Effect(hidden, box_changed, opened,
                      float((self._mouth_mask & changed).sum()) / self._eye_area,
                      float((self._outside_mask & changed).sum()) / self._eye_area, arch)

    def _is_skin(self, image: np.ndarray) -> np.ndarray:
        """Skin-coloured covered pixels: the skin's hue (shading scales it) at a similar brightness."""
        rgb = image[..., :3].astype(np.float32)
        total = rgb.sum(-1)
        chroma = rgb / np.maximum(total, 1.0)[..., None]
        skin_total = float(self._skin.sum())
        distance = np.linalg.norm(chroma - self._skin / max(skin_total, 1.0), axis=-1)
        low, high = SKIN_BRIGHTNESS
        return ((distance <= SKIN_CHROMA) & (total >= low * skin_total) & (total <= high * skin_total)
                & (image[..., 3] > 0))

    def _pixel(self, x: float, y: float) -> tuple[int, int]:
        """(row, column) of model-space (x, y) in the close-up."""
        cam = self.camera
        column = (x - (cam.center_x - cam.half_height)) * self._scale
        row = (cam.center_y + cam.half_height - y) * self._scale
        return int(row), int(column)

    def _eye_mask(self, box: tuple[float, float, float, float]) -> np.ndarray:
        """The eye's own pixels: the bounding box of the non-skin blob around the box's centre, inside ``box``.

        Landmark boxes come from vertices and may take in brows or hair; the blob on the
        rest render is the eye itself (iris, whites, lashes), so hair in the box is not
        mistaken for the eye. Falls back to ``box`` when no blob is found.
        """
        region = self._box_mask(box)
        eye = region & ~self._rest_skin
        x0, x1, y0, y1 = box
        core = self._box_mask(((3 * x0 + x1) / 4, (x0 + 3 * x1) / 4, (3 * y0 + y1) / 4, (y0 + 3 * y1) / 4))
        blob = _grow_within(core & eye, eye)
        if blob.sum() < MIN_BLOB:
            return region
        rows, columns = np.flatnonzero(blob.any(1)), np.flatnonzero(blob.any(0))
        pad_r, pad_c = int(BLOB_PAD * (np.ptp(rows) + 1)), int(BLOB_PAD * (np.ptp(columns) + 1))
        mask = np.zeros_like(region)
        mask[max(0, rows[0] - pad_r):rows[-1] + pad_r + 1, max(0, columns[0] - pad_c):columns[-1] + pad_c + 1] = True
        return mask & region

    def _box_mask(self, box: tuple[float, float, float, float]) -> np.ndarray:
        x0, x1, y0, y1 = box
        r0, c0 = self._pixel(x0, y1)
        r1, c1 = self._pixel(x1, y0)
        size = self.renderer.size
        mask = np.zeros((size, size), bool)
        mask[max(0, r0):max(0, r1 + 1), max(0, c0):max(0, c1 + 1)] = True
        return mask


def materials_in_view(model: Model, camera: Camera, margin: float = 0.25) -> list[int]:
    """Materials with a vertex inside the camera's window (grown by ``margin``): the only ones that
    can draw a pixel of an unrotated close-up, so the rest of the body is never drawn."""
    positions = model.vertices.positions
    half = camera.half_height * (1 + margin)
    inside = ((np.abs(positions[:, 0] - camera.center_x) <= half)
              & (np.abs(positions[:, 1] - camera.center_y) <= half))
    starts, counts = model.materials.index_start // 3, model.materials.index_count // 3
    faces = inside[model.indices].any(axis=1)
    hit = np.add.reduceat(faces, starts[counts > 0]) > 0 if len(faces) else np.zeros(0, bool)
    return [int(m) for m, h in zip(np.flatnonzero(counts > 0), hit) if h]


def _grow_within(seeds: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The connected part of ``allowed`` reached from ``seeds`` (4-neighbour flood fill by dilation)."""
    region = seeds & allowed
    while True:
        grown = region.copy()
        grown[1:] |= region[:-1]
        grown[:-1] |= region[1:]
        grown[:, 1:] |= region[:, :-1]
        grown[:, :-1] |= region[:, 1:]
        grown &= allowed
        if (grown == region).all():
            return region
        region = grown


def _arch(line: np.ndarray, box: np.ndarray) -> float:
    """How much the middle of a drawn line rises over its ends, over its width (^ > 0, U < 0).

    The line is taken per column as the mean row of its pixels; a parabola through
    those gives the rise. A closed smile (^) arches up, a closed lid lies flat or sags.
    """
    columns = np.flatnonzero(line.any(axis=0))
    if len(columns) < max(5, LINE_SPAN * np.flatnonzero(box.any(axis=0)).size):
        return 0.0  # no line across the eye: nothing to judge the shape by
    rows = np.array([np.flatnonzero(line[:, c]).mean() for c in columns])
    x = columns - columns.mean()
    width = float(np.ptp(columns))
    return float(-np.polyfit(x, rows, 2)[0] * (width / 2) ** 2 / width)


def _grow(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x0, x1, y0, y1 = box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 * MARGIN, (y1 - y0) / 2 * MARGIN
    return cx - hw, cx + hw, cy - hh, cy + hh


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    diff = np.abs(before.astype(np.int16) - after.astype(np.int16))
    return (np.linalg.norm(diff[..., :3], axis=-1) > CHANGED) | (diff[..., 3] > CHANGED)


def _skin_colour(image: np.ndarray, centre: tuple[int, int], radius: int) -> np.ndarray:
    """Median colour of the covered pixels around ``centre`` (between the eyes and the mouth)."""
    row, column = centre
    patch = image[max(0, row - radius):row + radius + 1, max(0, column - radius):column + radius + 1]
    covered = patch[patch[..., 3] > 0][:, :3]
    if len(covered) == 0:
        return np.array([255.0, 220.0, 200.0], np.float32)
    return np.median(covered, axis=0).astype(np.float32)

"""Layer stacks: each semantic layer rendered alone, composited back, and checked against the full render.

A stack holds one full-canvas straight-alpha RGBA image per layer (``NAMES``, draw order
back to front, from :mod:`annotator.layers`), rendered with only that layer's materials
at the same framing as the full image, so pixels that other layers hide are still there
(the back hair behind the head is whole). A layer without materials is all zeros.

Compositing the stack with straight-alpha "over" in draw order gives back the full
render wherever the layer order agrees with depth; where parts interpenetrate, a later
layer lies behind an earlier one (a strand of back hair in front of the shoulder) or one
material spans two depths (eyelids in the face material close over the eye layers; a
hair material holding both the bangs and the back hair) it differs. :func:`composite_error`
measures that per image: the error of a pixel is the largest channel difference of
premultiplied RGBA, in 0-255 units, over the pixels either image covers; per image its
mean, 99th percentile and maximum. Those measure how well draw order stands in for
depth, and are reported, not judged. What must hold whatever the order is consistency:
every pixel the render covers shows the frontmost surface there, which its own layer,
rendered alone, shows identically; and "over" covers the same pixels in any order. The
consistency error of a pixel is the larger of the alpha difference and the distance
from the render to the nearest of the layers and their composite; ``mmdsynth verify`` fails an image whose mean
consistency error exceeds ``CONSISTENCY_TOLERANCE`` (a missing, damaged, shifted or
foreign layer). Only blends the draw order gets wrong make it non-zero in sound data.
"""
from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from annotator.layers import DEFAULT, LayerConfig, assign_layers, layer_groups

NAMES = DEFAULT.names
PAIRS = (("rest", "layers/rest"), ("expression", "layers/expression"), ("posed", "layers/posed"))
BLOCK = 16  # images (stacks) read at a time by the composite check


# Measured over 10 poses (mean, p99 of the composite error; the mean consistency error):
# demo (0.15, 0) with its eyelids in their own material above the eyes, consistency 0;
# Appearance Miku (8.5, 78), 0.42; miku_v2 (24.8, 160), 0 (one hair material holds bangs
# and back hair); mokou (4.7, 89), 0.79 (alpha-textured hair). Damaging the demo's stacks:
# without the face layer consistency becomes 18-21, without the body 18, without the front
# hair 5.1, shifted by one pixel 11, the stack of another pose 30-91.
CONSISTENCY_TOLERANCE = 3.0

_groups_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def material_groups(renderer: Any, model: Any, overrides: Mapping[str, str] | None,
                    config: LayerConfig | None = None) -> list[list[int]]:
    """Material indices per layer of ``config.names`` (default: ``NAMES``) for this renderer's model
    (cached per renderer)."""
    config = config or DEFAULT
    key = (tuple(sorted((overrides or {}).items())), config)
    cached = _groups_cache.get(renderer)
    if cached is None or cached[0] != key:
        assignments = assign_layers(model, overrides, config, head_bounds=renderer.head_bounds)
        cached = _groups_cache[renderer] = (key, layer_groups(assignments, config.names))
    return cached[1]


def render_layers(renderer: Any, model: Any, overrides: Mapping[str, str] | None,
                  poses: np.ndarray, config: LayerConfig | None = None) -> np.ndarray:
    """(N, L, H, W, 4) uint8: every layer (of ``config``, default ``NAMES``) of every pose, each rendered alone.

    Poses are the outer loop so that each pose is posed once (the renderer reuses its
    skinning while only the material selection changes).
    """
    poses = np.asarray(poses, np.float64).reshape(-1, 6)
    groups = material_groups(renderer, model, overrides, config)
    out = np.zeros((len(poses), len(groups), renderer.size, renderer.size, 4), np.uint8)
    for i, pose in enumerate(poses):
        for layer, materials in enumerate(groups):
            if materials:
                renderer.render_batch(pose[None], out=out[i, layer:layer + 1], materials=materials)
    return out


def premultiply(images: np.ndarray) -> np.ndarray:
    """uint8 straight-alpha RGBA -> float32 RGBA in [0, 1] with colour times alpha."""
    rgba = np.asarray(images).astype(np.float32) / 255.0
    rgba[..., :3] *= rgba[..., 3:]
    return rgba


def unpremultiply(rgba: np.ndarray) -> np.ndarray:
    """float RGBA in [0, 1] with premultiplied colour -> uint8 straight alpha, uncovered pixels exactly zero."""
    rgba = np.clip(rgba, 0.0, 1.0)
    alpha = rgba[..., 3:]
    colour = np.divide(rgba[..., :3], alpha, out=np.zeros_like(rgba[..., :3]), where=alpha > 0)
    out = np.clip(np.rint(np.concatenate([colour, alpha], axis=-1) * 255.0), 0, 255).astype(np.uint8)
    out[out[..., 3] == 0] = 0
    return out


def composite(stacks: np.ndarray) -> np.ndarray:
    """(..., L, H, W, 4) uint8 straight-alpha layers -> (..., H, W, 4) uint8: "over" in draw order.

    Accumulates premultiplied colour one layer at a time (memory: one image per stack).
    """
    stacks = np.asarray(stacks)
    total = np.zeros((*stacks.shape[:-4], *stacks.shape[-3:]), np.float32)
    for layer in range(stacks.shape[-4]):
        source = premultiply(stacks[..., layer, :, :, :])
        total = source + total * (1.0 - source[..., 3:])
    return unpremultiply(total)


def composite_error(stacks: np.ndarray, full: np.ndarray) -> np.ndarray:
    """(N, 4) float: per image the mean, 99th percentile and max pixel error of the composite and
    the mean consistency error, all over covered pixels (see the module docstring)."""
    if not len(full):
        return np.zeros((0, 4))
    composed, full = composite(stacks), np.asarray(full)
    target = premultiply(full)
    difference = np.abs(premultiply(composed) - target) * 255.0
    unexplained = difference.max(axis=-1)  # a blend is explained when the composite matches
    for layer in range(np.asarray(stacks).shape[-4]):
        distance = np.abs(premultiply(stacks[..., layer, :, :, :]) - target).max(axis=-1) * 255.0
        unexplained = np.minimum(unexplained, distance)
    consistency = np.maximum(difference[..., 3], np.where(full[..., 3] > 0, unexplained, 0.0))
    rows = (len(full), int(np.prod(full.shape[1:3])))
    covered = ((composed[..., 3] > 0) | (full[..., 3] > 0)).reshape(rows)
    error = np.where(covered, difference.max(axis=-1).reshape(rows), np.nan)
    consistency = np.where(covered, consistency.reshape(rows), np.nan)
    empty = ~covered.any(axis=1)
    error[empty] = consistency[empty] = 0.0
    return np.stack([np.nanmean(error, axis=1), np.nanpercentile(error, 99, axis=1),
                     np.nanmax(error, axis=1), np.nanmean(consistency, axis=1)], axis=1)


@dataclass
class CompositeFigures:
    """The composite check of one image field of one shard: worst and average figures."""

    path: str
    field: str
    images: int
    mean: float  # average of the per-image means
    worst_mean: float
    worst_p99: float
    worst_max: float
    worst_consistency: float
    failing: int  # images whose consistency error exceeds CONSISTENCY_TOLERANCE
    first_failing: int  # row of the first, -1 when none

    def line(self) -> str:
        return (f"{self.path}: {self.field}: composite of layers vs render over {self.images} images: "
                f"mean {self.mean:.2f}, worst mean {self.worst_mean:.2f}, worst p99 {self.worst_p99:.1f}, "
                f"worst max {self.worst_max:.0f}, worst consistency {self.worst_consistency:.2f}")


def check_shard(f: Any, path: str) -> list[CompositeFigures]:
    """The composite check of every (full, layers) pair a shard holds, read ``BLOCK`` images at a time."""
    figures = []
    for field, layers in PAIRS:
        if layers not in f or field not in f or len(f[field]) == 0:
            continue
        rows = [composite_error(f[layers][lo:lo + BLOCK], f[field][lo:lo + BLOCK])
                for lo in range(0, len(f[field]), BLOCK)]
        errors = np.concatenate(rows)
        failing = np.flatnonzero(errors[:, 3] > CONSISTENCY_TOLERANCE)
        figures.append(CompositeFigures(path, field, len(errors), float(errors[:, 0].mean()),
                                        float(errors[:, 0].max()), float(errors[:, 1].max()),
                                        float(errors[:, 2].max()), float(errors[:, 3].max()), len(failing),
                                        int(failing[0]) if len(failing) else -1))
    return figures


def composite_defects(figures: list[CompositeFigures]) -> list[str]:
    """One defect line per field with stacks above CONSISTENCY_TOLERANCE (layers that do not make the image)."""
    return [f"{fig.path}: {fig.field}: {fig.failing} of {fig.images} layer stacks do not composite to their "
            f"image (consistency error above {CONSISTENCY_TOLERANCE}; first at row {fig.first_failing}; "
            f"worst {fig.worst_consistency:.2f})"
            for fig in figures if fig.failing]

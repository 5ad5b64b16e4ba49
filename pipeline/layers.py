"""Layer stacks: each class rendered alone, made to composite exactly to the full render, and checked.

A stack holds one full-canvas straight-alpha RGBA image per layer (the config's names,
draw order back to front; default See-through's 23 classes, :mod:`annotator.layers`),
each rendered with only the faces of its parts (:mod:`annotator.parts`) at the same
framing, shading and pose as the full image, so pixels that other layers hide are still
there (the back hair behind the head is whole). A layer without faces is all zeros.

Compositing the stack with straight-alpha "over" in draw order gives back the full render
wherever the class order agrees with depth. Where it does not (a strand of back hair in
front of the shoulder, an eyebrow drawn through the bangs, transparent faces blended in
file order), :func:`exact_stacks` settles each such pixel against the full render, which
is the truth: the frontmost layer that shows the render's pixel alone is kept and the
layers drawn over it there, which are behind it in 3D, are cleared (hidden content of a
later class cannot sit under an earlier one); where no layer shows it (a blend of two
classes), the top covering layer takes the colour that makes "over" exact. Only those
pixels change (:data:`REPAIR_THRESHOLD`), and how many did is returned: the measure of
how well parts and class order stand in for depth.

:func:`composite_error` is the check ``mmdsynth verify`` applies to every stored stack:
per image the mean RGB error over covered pixels (largest channel difference of
premultiplied colour, 0-255) and the largest alpha difference; a stack over
``MEAN_TOLERANCE`` or ``ALPHA_TOLERANCE`` does not add up, and the dataset fails.
"""
from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from annotator.layers import DEFAULT, LayerConfig

NAMES = DEFAULT.names
PAIRS = (("rest", "layers/rest"), ("expression", "layers/expression"), ("posed", "layers/posed"))
BLOCK = 16  # images (stacks) read at a time by the composite check
MEAN_TOLERANCE = 2.0  # mean RGB error over covered pixels, 0-255
ALPHA_TOLERANCE = 2.0  # largest alpha difference, 0-255
REPAIR_THRESHOLD = 2.0  # a pixel whose composite is further than this from the render is settled

_runs_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def layer_runs(renderer: Any, model: Any, overrides: Mapping[str, str] | None,
               config: LayerConfig | None = None) -> list[np.ndarray]:
    """Per layer of ``config`` (default ``NAMES``), the triangle runs of its parts (cached per renderer)."""
    from annotator.parts import face_layers
    from renderer.renderer import face_runs

    config = config or DEFAULT
    key = (tuple(sorted((overrides or {}).items())), config)
    cached = _runs_cache.get(renderer)
    if cached is None or cached[0] != key:
        layers = face_layers(model, overrides, config, head_bounds=renderer.head_bounds)
        cached = _runs_cache[renderer] = (key, [face_runs(layers == k) for k in range(len(config.names))])
    return cached[1]


def render_layers(renderer: Any, model: Any, overrides: Mapping[str, str] | None,
                  poses: np.ndarray, config: LayerConfig | None = None, full: np.ndarray | None = None,
                  camera: Any = None) -> np.ndarray:
    """(N, L, H, W, 4) uint8: every layer of every pose (:func:`render_alone`), made exact against ``full``
    (the (N, H, W, 4) full renders at ``camera``; rendered here when None) by :func:`exact_stacks`."""
    out = render_alone(renderer, model, overrides, poses, config, camera)
    if full is None:
        full = renderer.render_batch(np.asarray(poses, np.float64).reshape(-1, 6), camera=camera)
    exact_stacks(out, full)
    return out


def render_alone(renderer: Any, model: Any, overrides: Mapping[str, str] | None, poses: np.ndarray,
                 config: LayerConfig | None = None, camera: Any = None) -> np.ndarray:
    """(N, L, H, W, 4) uint8: every layer of every pose, each rendered alone (nothing settled).

    Poses are the outer loop so that each pose is posed once (the renderer reuses its
    skinning while only the face selection changes).
    """
    poses = np.atleast_2d(np.asarray(poses, np.float64))
    runs = layer_runs(renderer, model, overrides, config)
    out = np.zeros((len(poses), len(runs), renderer.size, renderer.size, 4), np.uint8)
    for i, pose in enumerate(poses):
        for layer, faces in enumerate(runs):
            if len(faces):
                renderer.render_batch(pose[None], out=out[i, layer:layer + 1], faces=faces, camera=camera)
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

    Accumulates premultiplied colour one layer at a time, within the box each layer covers
    (a class covers a small part of the canvas, most classes none).
    """
    stacks = np.asarray(stacks)
    total = np.zeros((*stacks.shape[:-4], *stacks.shape[-3:]), np.float32)
    for layer in range(stacks.shape[-4]):
        image = stacks[..., layer, :, :, :]
        rows = np.flatnonzero(image[..., 3].reshape(-1, *image.shape[-3:-1]).any(axis=(0, 2)))
        if not len(rows):
            continue
        cols = np.flatnonzero(image[..., rows[0]:rows[-1] + 1, :, 3].reshape(-1, image.shape[-2]).any(axis=0))
        box = (..., slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1), slice(None))
        source = premultiply(image[box])
        total[box] = source + total[box] * (1.0 - source[..., 3:])
    return unpremultiply(total)


def exact_stacks(stacks: np.ndarray, full: np.ndarray) -> np.ndarray:
    """Settle, in place, every pixel where "over" of ``stacks`` (N, L, H, W, 4) misses ``full`` (N, H, W, 4);
    (N,) the share of covered pixels settled (see the module docstring)."""
    full = np.asarray(full)
    target = premultiply(full)
    error = np.abs(premultiply(composite(stacks)) - target).max(axis=-1) * 255.0
    n, y, x = np.nonzero(error > REPAIR_THRESHOLD)
    covered = (full[..., 3] > 0).reshape(len(full), -1).sum(axis=1)
    if not len(n):
        return np.zeros(len(full))
    layers = stacks[n, :, y, x]  # (B, L, 4)
    wanted = target[n, y, x]  # (B, 4)
    shows = (np.abs(premultiply(layers) - wanted[:, None]).max(axis=-1) * 255.0 <= REPAIR_THRESHOLD)
    shows &= layers[..., 3] > 0
    order = np.arange(layers.shape[1])
    front = np.where(shows.any(axis=1), np.where(shows, order, -1).max(axis=1), -1)
    layers[(order[None] > front[:, None]) & (front[:, None] >= 0)] = 0  # later classes behind the shown one
    _solve_top(layers, wanted)
    stacks[n, :, y, x] = layers
    return np.bincount(n, minlength=len(full)) / np.maximum(covered, 1)


def _solve_top(layers: np.ndarray, wanted: np.ndarray) -> None:
    """Where "over" of ``layers`` (B, L, 4) still misses ``wanted`` (B, 4, premultiplied), give the top
    covering layer the colour that makes it exact (clearing those below when no such colour exists)."""
    total = np.zeros_like(wanted)
    below = np.zeros_like(wanted)
    covered = layers[..., 3] > 0
    top = np.where(covered.any(axis=1), np.where(covered, np.arange(layers.shape[1]), -1).max(axis=1),
                   layers.shape[1] - 1)
    for k in range(layers.shape[1]):
        source = premultiply(layers[:, k])
        total = source + total * (1.0 - source[:, 3:])
        below = np.where((k < top)[:, None], total, below)
    wrong = np.abs(total - wanted).max(axis=-1) * 255.0 > REPAIR_THRESHOLD
    if not wrong.any():
        return
    rows = np.flatnonzero(wrong)
    under, goal = below[rows], wanted[rows]
    opaque_under = under[:, 3] >= 1.0 - 1e-6
    alpha = np.where(goal[:, 3] >= 1.0, 1.0, np.where(
        opaque_under, -1.0, (goal[:, 3] - under[:, 3]) / np.maximum(1.0 - under[:, 3], 1e-6)))
    colour = goal[:, :3] - under[:, :3] * (1.0 - alpha[:, None])
    feasible = ((alpha >= 0) & (alpha <= 1.0) & (colour >= -1e-4).all(axis=1)
                & (colour <= alpha[:, None] + 1e-4).all(axis=1))
    alpha = np.where(feasible, alpha, goal[:, 3])
    colour = np.where(feasible[:, None], colour, goal[:, :3])
    clear = rows[~feasible]
    layers[clear] = np.where(np.arange(layers.shape[1])[None, :, None] < top[clear, None, None], 0, layers[clear])
    layers[rows, top[rows]] = unpremultiply(np.concatenate([colour, alpha[:, None]], axis=1))


def composite_error(stacks: np.ndarray, full: np.ndarray) -> np.ndarray:
    """(N, 2) float: per image the mean RGB error over covered pixels and the largest alpha difference,
    0-255 (see the module docstring)."""
    full = np.asarray(full)
    if not len(full):
        return np.zeros((0, 2))
    composed = composite(stacks)
    difference = np.abs(premultiply(composed) - premultiply(full)) * 255.0
    rows = (len(full), -1)
    covered = ((composed[..., 3] > 0) | (full[..., 3] > 0)).reshape(rows)
    rgb = difference[..., :3].max(axis=-1).reshape(rows)
    mean = np.where(covered, rgb, 0.0).sum(axis=1) / np.maximum(covered.sum(axis=1), 1)
    alpha = np.abs(composed[..., 3].astype(np.int16) - full[..., 3]).reshape(rows).max(axis=1)
    return np.stack([mean, alpha.astype(np.float64)], axis=1)


@dataclass
class CompositeFigures:
    """The composite check of one image field of one shard: average and worst figures, worst models."""

    path: str
    field: str
    images: int
    mean: float  # average of the per-image mean RGB errors
    worst_mean: float
    worst_alpha: float
    failing: int  # images over MEAN_TOLERANCE or ALPHA_TOLERANCE
    first_failing: int  # row of the first, -1 when none
    worst_models: list[tuple[str, float, float]]  # (model, worst mean, worst alpha), worst first

    def line(self) -> str:
        return (f"{self.path}: {self.field}: composite of layers vs render over {self.images} images: "
                f"mean {self.mean:.2f}, worst mean {self.worst_mean:.2f}, worst alpha {self.worst_alpha:.0f}")


def check_shard(f: Any, path: str) -> list[CompositeFigures]:
    """The composite check of every (full, layers) pair a shard holds, read ``BLOCK`` images at a time."""
    figures = []
    names = list(f["models/name"].asstr()[:])
    for field, layers in PAIRS:
        if layers not in f or field not in f or len(f[field]) == 0:
            continue
        errors = np.concatenate([composite_error(f[layers][lo:lo + BLOCK], f[field][lo:lo + BLOCK])
                                 for lo in range(0, len(f[field]), BLOCK)])
        model = np.arange(len(errors)) if field == "rest" else f["model_index"][:]
        failing = np.flatnonzero((errors[:, 0] > MEAN_TOLERANCE) | (errors[:, 1] > ALPHA_TOLERANCE))
        worst = sorted(((names[m], float(errors[model == m, 0].max()), float(errors[model == m, 1].max()))
                        for m in np.unique(model)), key=lambda entry: (-entry[1], -entry[2]))
        figures.append(CompositeFigures(path, field, len(errors), float(errors[:, 0].mean()),
                                        float(errors[:, 0].max()), float(errors[:, 1].max()), len(failing),
                                        int(failing[0]) if len(failing) else -1, worst[:5]))
    return figures


def composite_defects(figures: list[CompositeFigures]) -> list[str]:
    """One defect line per field with stacks over the tolerance (layers that do not make the image),
    naming the worst models."""
    return [f"{fig.path}: {fig.field}: {fig.failing} of {fig.images} layer stacks do not composite to their "
            f"image (mean RGB error over {MEAN_TOLERANCE} or alpha over {ALPHA_TOLERANCE}; first at row "
            f"{fig.first_failing}; worst models: "
            + ", ".join(f"{name} (mean {mean:.2f}, alpha {alpha:.0f})" for name, mean, alpha in fig.worst_models) + ")"
            for fig in figures if fig.failing]

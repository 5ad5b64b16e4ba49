"""Renderer benchmark: the full render path against a bare draw-and-read loop, same mesh.

Full path: for each of ``count`` sampled poses, morph evaluation, posing (forward
kinematics), uploads, skinning and shading on the GPU, and read-back into numpy.
Bare loop: the same renderer drawing the same mesh with the same shaders and the
bones of its last pose, then reading back, with no posing work (``Renderer.redraw``).
The meshes are the demo character and the largest shared PMX when it is present.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from pipeline.bench import SHARED_MODELS

TARGET = 0.8
# First present morph per channel (one-eye winks, else the both-eyes blink).
CHANNEL_MORPHS = (("ウィンク２", "まばたき"), ("ｳｨﾝｸ２右", "まばたき"), ("あ",))


def run(size: int = 256, count: int = 100, msaa: int = 0) -> dict[str, Any]:
    """Measure each mesh and print images/s of both loops and their ratio."""
    figures: dict[str, Any] = {"size": size, "count": count, "msaa": msaa, "target_ratio": TARGET,
                               "bare_loop": "same renderer and shaders, last pose's bones, no posing"}
    for name, model in _meshes():
        full, bare = measure(model, size=size, count=count, msaa=msaa)
        figures[name] = {"vertices": len(model.vertices), "full_images_per_second": full,
                         "bare_images_per_second": bare, "ratio": full / bare}
        print(f"{name} ({len(model.vertices):,} vertices, {size}px): full path {full:.1f} images/s, "
              f"bare draw-and-read {bare:.1f} images/s, ratio {full / bare:.2f} (target >= {TARGET})")
    return figures


def measure(model, size: int = 256, count: int = 200, msaa: int = 0, rounds: int = 3) -> tuple[float, float]:
    """(full path, bare loop) images/s for ``count`` sampled poses of ``model``: the loops
    alternate for ``rounds`` rounds and each keeps its best, so load from other processes
    on a shared machine penalises neither side more."""
    from renderer.renderer import Renderer

    poses = sample_poses(count)
    with Renderer(model, drivers=channel_binding(model), size=size, msaa=msaa) as renderer:
        out = np.empty((count, size, size, 4), np.uint8)
        renderer.render_batch(poses[:5])  # warm-up: shader compilation, first uploads
        full = bare = 0.0
        for _ in range(rounds):
            start = time.perf_counter()
            renderer.render_batch(poses, out=out)
            full = max(full, count / (time.perf_counter() - start))
            start = time.perf_counter()
            for image in out:
                renderer.redraw(image)
            bare = max(bare, count / (time.perf_counter() - start))
    return full, bare


def bare_images_per_second(model, size: int = 256, frames: int = 50) -> float:
    """Images/s of the bare draw-and-read loop alone (the build benchmark's reference)."""
    from renderer.renderer import Renderer

    with Renderer(model, size=size) as renderer:
        out = np.empty((size, size, 4), np.uint8)
        renderer.redraw(out)
        start = time.perf_counter()
        for _ in range(frames):
            renderer.redraw(out)
        return frames / (time.perf_counter() - start)


def sample_poses(count: int, seed: int = 0) -> np.ndarray:
    """Poses with every channel moving: eyes and mouth on [0, 1], rotations on [-1, 1]."""
    rng = np.random.default_rng(seed)
    return np.hstack([rng.uniform(0, 1, (count, 3)), rng.uniform(-1, 1, (count, 3))])


def channel_binding(model):
    """tha1 drivers of the first standard morph name the model has for each channel."""
    from annotator.binding import bind_roles

    names = [next((n for n in options if model.find_morph(n) >= 0), None) for options in CHANNEL_MORPHS]
    roles = dict(zip(("wink_left", "wink_right", "mouth_open"), names))
    return bind_roles(roles, model=model, strict=False).drivers


def _meshes():
    from renderer.demo import demo_model
    from renderer.loader import load_model

    yield "demo", demo_model()
    shared = sorted(SHARED_MODELS.glob("**/*.pmx"), key=lambda p: p.stat().st_size) if SHARED_MODELS.is_dir() else []
    if shared:
        yield shared[-1].name, load_model(shared[-1])

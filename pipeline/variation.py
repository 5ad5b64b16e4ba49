"""Per-sample variation for layer data: framing jitter and art style, drawn from the sample's own stream.

A network that decomposes images into layers memorises where parts sit when every image
is framed alike, and one shading style is one art style; the seed article's fixes are a
random shift and scale per sample (``--jitter``) and a random style per sample
(``--styles phong,toon,toon+edges``). Both are drawn from the sample's own random stream
(seed, model, index: :mod:`pipeline.sampling`), on sub-streams of their own so that the
poses stay what they are without them, and both apply to the expression image, the
posed image and every layer of the sample alike: all are rendered with one camera and
one shading. The rest image (one per model) keeps the plain framing and the first style.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.sampling import model_key, substream_uniforms
from renderer.framing import Camera, jittered

STYLES = {"phong": ("phong", False), "toon": ("toon", False), "toon+edges": ("toon", True)}  # shading, edges
SHIFT = 0.1  # the largest shift, as a fraction of the image side
SCALE = (0.85, 1.15)  # the scale range (> 1 shows the character larger)
JITTER_STREAM, STYLE_STREAM = 1, 2  # sub-stream tags


class VariationError(ValueError):
    """Bad --styles (an unknown or repeated style)."""


@dataclass(frozen=True)
class Variation:
    """What a build varies per sample: jitter on or off, and the styles to draw from (one: no drawing)."""

    jitter: bool = False
    styles: tuple[str, ...] = ("phong",)

    def __post_init__(self) -> None:
        unknown = [style for style in self.styles if style not in STYLES]
        if unknown or not self.styles or len(set(self.styles)) != len(self.styles):
            raise VariationError(f"--styles takes distinct styles from {', '.join(STYLES)}, got "
                                 f"{','.join(self.styles) or 'none'}")

    @property
    def varied(self) -> bool:
        return self.jitter or len(self.styles) > 1


def draw_jitter(seed: int, sha256: str, indices: np.ndarray) -> np.ndarray:
    """(N, 3) float32 (dx, dy, scale) per sample: shifts in [-SHIFT, SHIFT] of the image side (x to the
    image right, y down), scale in SCALE."""
    u = substream_uniforms(model_key(seed, sha256), JITTER_STREAM, indices, 3)
    shift = (2.0 * u[:, :2] - 1.0) * SHIFT
    scale = SCALE[0] + u[:, 2:] * (SCALE[1] - SCALE[0])
    return np.concatenate([shift, scale], axis=1).astype(np.float32)


def draw_styles(seed: int, sha256: str, indices: np.ndarray, styles: tuple[str, ...]) -> np.ndarray:
    """(N,) int: per sample the index of its style in ``styles``."""
    u = substream_uniforms(model_key(seed, sha256), STYLE_STREAM, indices, 1)[:, 0]
    return np.minimum((u * len(styles)).astype(np.int64), len(styles) - 1)


def sample_camera(camera: Camera, jitter: np.ndarray) -> Camera:
    """The camera of one sample: the plain framing shifted and scaled by its (dx, dy, scale)."""
    dx, dy, scale = (float(v) for v in jitter)
    return jittered(camera, dx, dy, scale)


class StyleRenderers:
    """One model's renderers, one per style in use (made when first asked for), released together."""

    def __init__(self, model: Any, options: dict[str, Any], first: str, camera: Camera | None = None) -> None:
        self.model, self.options = model, options  # Renderer keyword arguments besides shading and edges
        self.camera = camera  # replaces the head framing (full-body builds)
        self.made: dict[str, Any] = {}
        self.first = self.get(first)

    def get(self, style: str) -> Any:
        from renderer import Renderer

        if style not in self.made:
            shading, edges = STYLES[style]
            renderer = self.made[style] = Renderer(self.model, shading=shading, edges=edges, **self.options)
            if self.camera is not None:
                renderer.camera = self.camera
        return self.made[style]

    def __enter__(self) -> StyleRenderers:
        return self

    def __exit__(self, *exc: Any) -> None:
        for renderer in self.made.values():
            renderer.release()


def render_varied(renderers: StyleRenderers, variation: Variation, seed: int, key: str, indices: np.ndarray,
                  expression: np.ndarray, posed: np.ndarray, stack: Callable | None
                  ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None,
                             np.ndarray, np.ndarray]:
    """(expression, posed) images, their stacks (``stack(renderer, poses, full, camera)``; None without),
    the jitter and the style indices of samples ``indices``: each sample with its own camera and style."""
    jitter = (draw_jitter(seed, key, indices) if variation.jitter
              else np.tile(np.float32([0.0, 0.0, 1.0]), (len(indices), 1)))
    style = draw_styles(seed, key, indices, variation.styles)
    size = renderers.first.size
    images = np.zeros((2, len(indices), size, size, 4), np.uint8)
    stacks: list[list[np.ndarray]] = [[], []]
    for i, (offset, choice) in enumerate(zip(jitter, style)):
        renderer = renderers.get(variation.styles[choice])
        camera = sample_camera(renderer.camera, offset) if variation.jitter else None
        for k, pose in enumerate((expression[i], posed[i])):
            images[k, i] = renderer.render(pose, camera=camera)
            if stack:
                stacks[k].append(stack(renderer, pose[None], images[k, i:i + 1], camera)[0])
    layers = (np.stack(stacks[0]), np.stack(stacks[1])) if stack else None
    return (images[0], images[1]), layers, jitter, style

"""Materials on the GPU: the packed parameter table the shaders index, and the textures.

Material parameters (after material morphs) live in one storage buffer indexed by the
material number, so a draw call sets a single integer uniform. Textures are uploaded
once per file per renderer; MMD's v axis points down, which is also the row order of
decoded images, so texture rows are uploaded as they are and sampled with (u, v).
"""
from __future__ import annotations

from dataclasses import dataclass

import moderngl
import numpy as np

# MorphState.materials columns: diffuse 4, specular 3, shininess 1, ambient 3, edge colour 4,
# edge size 1, then texture, sphere and toon tints (multiply) 4 each -> shader struct Material:
# diffuse, specular + shininess, ambient + edge size, edge colour.
_TABLE_COLUMNS = np.r_[0:4, 4:8, 8:11, 15, 11:15]
MMD_LIGHT = 154.0 / 255.0  # MMD's default light colour (grey 154); the shaders get it as a define
_TINTS = 16  # first tint column; each tint is a (multiply, add) pair of vec4 in the shader
TABLE_WIDTH = 44  # 11 vec4 per material (std430)


def mmd_colour(diffuse: np.ndarray, ambient: np.ndarray) -> np.ndarray:
    """A material's colour as MMD shows it before texture, sphere and toon: diffuse under MMD's
    light plus ambient, clamped. Both shadings reflect light with it (shaders/lighting.glsl)."""
    return np.clip(np.asarray(diffuse)[..., :3] * MMD_LIGHT + np.asarray(ambient), 0.0, 1.0)


@dataclass(frozen=True)
class MaterialMaps:
    """Which maps each material uses, for the shader's ``maps`` vec4."""

    has_texture: np.ndarray  # (M,) bool
    sphere_mode: np.ndarray  # (M,) 0 none, 1 multiply, 2 add
    has_toon: np.ndarray  # (M,) bool

    def columns(self) -> np.ndarray:
        count = len(self.has_texture)
        return np.stack([self.has_texture, self.sphere_mode, self.has_toon, np.zeros(count)], 1)


def material_table(params: np.ndarray, tint_add: np.ndarray, maps: MaterialMaps) -> np.ndarray:
    """MorphState's (M, 28) parameters and (M, 12) additive tints + maps -> (M, 44) float32
    rows of the shader's Material struct."""
    count = len(params)
    table = np.empty((count, TABLE_WIDTH), np.float32)
    table[:, :16] = params[:, _TABLE_COLUMNS]
    tints = np.stack([params[:, _TINTS:].reshape(count, 3, 4), tint_add.reshape(count, 3, 4)], axis=2)
    table[:, 16:40] = tints.reshape(count, 24)
    table[:, 40:] = maps.columns()
    return table


class TextureCache:
    """GPU textures of one renderer, one per image file; released together."""

    def __init__(self, ctx: moderngl.Context):
        self._ctx = ctx
        self._textures: dict[tuple[str, bool], moderngl.Texture] = {}
        self.white = self._upload(np.full((1, 1, 4), 255, np.uint8))

    def get(self, key: str, load, repeat: bool = True) -> moderngl.Texture:
        """The texture for ``key``, decoding it with ``load()`` the first time. Toon ramps
        clamp (``repeat=False``): their top and bottom rows must not bleed into each other."""
        texture = self._textures.get((key, repeat))
        if texture is None:
            texture = self._textures[key, repeat] = self._upload(load(), repeat)
        return texture

    def _upload(self, pixels: np.ndarray, repeat: bool = True) -> moderngl.Texture:
        height, width = pixels.shape[:2]
        texture = self._ctx.texture((width, height), 4, np.ascontiguousarray(pixels, np.uint8))
        texture.build_mipmaps()
        texture.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        texture.repeat_x = texture.repeat_y = repeat
        return texture

    def release(self) -> None:
        for texture in [*self._textures.values(), self.white]:
            texture.release()
        self._textures.clear()

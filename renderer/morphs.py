"""Morph evaluation on the CPU: morph weights -> vertex, UV, bone and material changes.

Built once per model (:class:`MorphEvaluator`), evaluated once per image; evaluation
touches only the rows of morphs with a non-zero weight. Semantics follow MMD:

- GROUP: each member gets ``group weight * member ratio``, added to whatever else it
  receives; nesting multiplies. A group that reaches itself again is cut there with a
  warning instead of recursing forever.
- FLIP (PMX 2.1): a weight w > 0 selects one member, k = min(floor(w * count), count - 1)
  (w = 1 selects the last), which is applied with its own ratio, not scaled by w.
- VERTEX, UV, UV1..UV4: ``weight * offset`` summed over morphs.
- BONE: translation ``weight * t``; rotation ``slerp(identity, q, weight)``;
  :meth:`MorphState.combine` merges them with a pose (morph first, then the pose).
- MATERIAL: ``value = base * product(multiply factors) + sum(add terms)`` with factor
  ``1 + (v - 1) * w`` and term ``v * w``; material index -1 means every material.
  Texture, sphere and toon tints start at multiply 1 / add 0; the multiply part lands
  in ``materials`` and the add part in ``tint_add``: tinted = colour * mul + add.
- IMPULSE: needs physics, which is not simulated; ignored without error.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from renderer.errors import ModelError
from renderer.model import Materials, Model, Morph, MorphKind
from renderer.rotations import IDENTITY, quat_multiply, quat_slerp

MATERIAL_WIDTH = 28
TINTS = slice(16, 28)  # texture, sphere and toon tint RGBA in the material layout
_UV_KINDS = {MorphKind.UV1: 0, MorphKind.UV2: 1, MorphKind.UV3: 2, MorphKind.UV4: 3}


@dataclass
class MorphState:
    """What a set of morph weights does to one model."""

    vertex_offsets: np.ndarray  # (N, 3) float32, added to positions before skinning
    uv_offsets: np.ndarray  # (N, 4) float32, added to (u, v) in the first two columns
    extra_uv_offsets: np.ndarray | None  # (N, K, 4) float32; None when no UV1..4 morph is active
    materials: np.ndarray  # (M, 28) float32, effective parameters (Morph's MATERIAL layout)
    tint_add: np.ndarray  # (M, 12) float32, additive texture, sphere and toon tints
    material_visible: np.ndarray  # (M,) bool, diffuse alpha after morphs > 0
    bone_translations: dict[int, np.ndarray] = field(default_factory=dict)
    bone_rotations: dict[int, np.ndarray] = field(default_factory=dict)

    def combine(self, rotations: Mapping[int, np.ndarray],
                translations: Mapping[int, np.ndarray] | None = None,
                ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        """Pose rotations and translations with this state's bone morphs folded in.

        A bone's rotation becomes ``pose * morph`` (the morph acts in the bone's frame
        first); translations add. The result feeds :meth:`Skeleton.pose`.
        """
        merged_r = {bone: np.asarray(q, dtype=np.float64) for bone, q in rotations.items()}
        for bone, q in self.bone_rotations.items():
            merged_r[bone] = quat_multiply(merged_r.get(bone, IDENTITY), q)
        merged_t = {bone: np.asarray(t, dtype=np.float64) for bone, t in (translations or {}).items()}
        for bone, t in self.bone_translations.items():
            merged_t[bone] = merged_t.get(bone, np.zeros(3)) + t
        return merged_r, merged_t


@dataclass
class _MaterialRows:
    """One material morph with "all materials" rows expanded, split by operation."""

    multiply_rows: np.ndarray  # (K,) material indices
    multiply: np.ndarray  # (K, 28) float64 target factors
    add_rows: np.ndarray
    add: np.ndarray  # (K, 28) float64 terms

    @classmethod
    def of(cls, morph: Morph, count: int) -> _MaterialRows:
        every = morph.index < 0  # -1: the row applies to every material
        rows = np.concatenate([morph.index[~every], np.repeat(np.arange(count), every.sum())])
        data = morph.data.astype(np.float64)
        values = np.concatenate([data[~every], np.tile(data[every], (count, 1))])
        is_add = np.concatenate([morph.op[~every], np.tile(morph.op[every], count)]) == 1
        return cls(rows[~is_add], values[~is_add], rows[is_add], values[is_add])


@dataclass
class _Offsets:
    """One offset morph's rows, ready to scatter into a per-vertex array."""

    rows: np.ndarray  # (K,) vertex indices
    data: np.ndarray  # (K, D) float32
    unique: bool  # rows have no repeats, so plain fancy-index addition is exact


class MorphEvaluator:
    """Evaluates morph weights for one model; build once, call :meth:`evaluate` often."""

    def __init__(self, model: Model):
        self.model = model
        self._vertex_count = len(model.vertices)
        self._extra_channels = model.vertices.extra_uv.shape[1]
        self._base = base_materials(model.materials)
        self._offsets = {i: _offsets(m) for i, m in enumerate(model.morphs)
                         if m.kind in (MorphKind.VERTEX, MorphKind.UV) or m.kind in _UV_KINDS}
        self._material_rows = {i: _MaterialRows.of(m, len(self._base)) for i, m in enumerate(model.morphs)
                               if m.kind == MorphKind.MATERIAL}

    def evaluate(self, weights: Mapping[int, float]) -> MorphState:
        """Morph weights by morph index -> the state to render."""
        leaves = self._resolve(weights)
        n = self._vertex_count
        state = MorphState(
            vertex_offsets=np.zeros((n, 3), np.float32), uv_offsets=np.zeros((n, 4), np.float32),
            extra_uv_offsets=None, materials=self._base.copy(),
            tint_add=np.zeros((len(self._base), 12), np.float32),
            material_visible=self._base[:, 3] > 0,
        )
        material_morphs = []
        for index, weight in leaves.items():
            morph = self.model.morphs[index]
            if morph.kind == MorphKind.VERTEX:
                _scatter(state.vertex_offsets, self._offsets[index], weight)
            elif morph.kind == MorphKind.UV:
                _scatter(state.uv_offsets, self._offsets[index], weight)
            elif morph.kind in _UV_KINDS and _UV_KINDS[morph.kind] < self._extra_channels:
                if state.extra_uv_offsets is None:
                    state.extra_uv_offsets = np.zeros((n, self._extra_channels, 4), np.float32)
                channel = state.extra_uv_offsets[:, _UV_KINDS[morph.kind]]
                _scatter(channel, self._offsets[index], weight)
            elif morph.kind == MorphKind.BONE:
                _add_bone_morph(state, morph, weight)
            elif morph.kind == MorphKind.MATERIAL:
                material_morphs.append((index, weight))
        if material_morphs:
            self._apply_materials(state, material_morphs)
        return state

    def _resolve(self, weights: Mapping[int, float]) -> dict[int, float]:
        """Expand groups and flips into the weights of the morphs that do something."""
        leaves: dict[int, float] = {}
        for index, weight in weights.items():
            if not 0 <= index < len(self.model.morphs):
                raise IndexError(f"morph index {index} out of range 0..{len(self.model.morphs) - 1}")
            self._expand(int(index), float(weight), (), leaves)
        return {index: weight for index, weight in leaves.items() if weight != 0}

    def _expand(self, index: int, weight: float, path: tuple[int, ...],
                leaves: dict[int, float]) -> None:
        if weight == 0:
            return
        morph = self.model.morphs[index]
        if index in path:
            names = " -> ".join(self.model.morphs[i].name for i in (*path, index))
            warnings.warn(f"{self.model.path}: group morph cycle {names} cut", stacklevel=4)
            return
        if morph.kind == MorphKind.GROUP:
            for member, ratio in zip(morph.index, morph.data[:, 0]):
                self._expand(int(member), weight * float(ratio), (*path, index), leaves)
        elif morph.kind == MorphKind.FLIP:
            if weight > 0 and len(morph.index):
                k = min(int(weight * len(morph.index)), len(morph.index) - 1)
                self._expand(int(morph.index[k]), float(morph.data[k, 0]), (*path, index), leaves)
        else:
            leaves[index] = leaves.get(index, 0.0) + weight

    def _apply_materials(self, state: MorphState, morphs: list[tuple[int, float]]) -> None:
        count = len(self._base)
        multiply = np.ones((count, MATERIAL_WIDTH))
        add = np.zeros((count, MATERIAL_WIDTH))
        for index, weight in morphs:
            rows = self._material_rows[index]
            np.multiply.at(multiply, rows.multiply_rows, 1 + (rows.multiply - 1) * weight)
            np.add.at(add, rows.add_rows, rows.add * weight)
        result = self._base * multiply
        result[:, :TINTS.start] += add[:, :TINTS.start]
        state.materials = result.astype(np.float32)
        state.tint_add = add[:, TINTS].astype(np.float32)
        state.material_visible = state.materials[:, 3] > 0


def base_materials(materials: Materials) -> np.ndarray:
    """(M, 28) float32 material parameters in the MATERIAL-morph layout, tints at 1."""
    columns = [materials.diffuse, materials.specular, materials.shininess[:, None],
               materials.ambient, materials.edge_color, materials.edge_size[:, None],
               np.ones((len(materials), 12))]
    return np.hstack(columns).astype(np.float32)


def _offsets(morph: Morph) -> _Offsets:
    rows = np.asarray(morph.index, dtype=np.intp)
    data = np.asarray(morph.data, dtype=np.float32)
    return _Offsets(rows=rows, data=data, unique=len(np.unique(rows)) == len(rows))


def _scatter(target: np.ndarray, offsets: _Offsets, weight: float) -> None:
    """target[rows] += weight * data, only the columns the morph has."""
    width = min(target.shape[1], offsets.data.shape[1])
    scaled = np.float32(weight) * offsets.data[:, :width]
    if offsets.unique:
        target[offsets.rows, :width] += scaled
    else:
        np.add.at(target, (offsets.rows, slice(0, width)), scaled)


def _add_bone_morph(state: MorphState, morph: Morph, weight: float) -> None:
    """Accumulate one bone morph: translations add, rotations compose."""
    data = morph.data.astype(np.float64)
    rotations = quat_slerp(IDENTITY, data[:, 3:7], np.full(len(data), weight))
    for bone, translation, rotation in zip(morph.index.tolist(), weight * data[:, :3], rotations):
        state.bone_translations[bone] = state.bone_translations.get(bone, np.zeros(3)) + translation
        state.bone_rotations[bone] = quat_multiply(state.bone_rotations.get(bone, IDENTITY), rotation)


def morph_index(model: Model, name: str) -> int:
    """Index of the first morph with exactly this name; a missing one is a ModelError."""
    index = model.find_morph(name)
    if index < 0:
        raise ModelError(model.path, f"no morph named {name!r}")
    return index


def name_weights(model: Model, weights_by_name: Mapping[str, float]) -> dict[int, float]:
    """Morph names -> morph indices (first morph with the exact name), weights summed."""
    weights: dict[int, float] = {}
    for name, weight in weights_by_name.items():
        index = morph_index(model, name)
        weights[index] = weights.get(index, 0.0) + float(weight)
    return weights

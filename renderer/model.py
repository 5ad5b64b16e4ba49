"""Render-ready MMD model: numpy arrays end to end, in the project's coordinates.

Every reader (PMX, PMD) produces a :class:`Model`; the writer, the renderer, the
suggester and the pipeline consume one. Nothing here knows about files.

Coordinates: MMD files are left-handed with the model facing -z. Readers convert
once, on load, to the character frame used everywhere else: y up, x to the
character's left, z to the character's front (right-handed, OpenGL-style). The
conversion negates z of positions, normals, SDEF points, bone positions, local and
fixed axes, vertex/bone morph offsets; negates x and y of bone-morph quaternions;
and reverses triangle winding so that front faces are counter-clockwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class Deform(IntEnum):
    """Vertex deform (skinning) types, numbered as in the PMX file."""

    BDEF1 = 0
    BDEF2 = 1
    BDEF4 = 2
    SDEF = 3
    QDEF = 4


class MaterialFlag(IntEnum):
    """Bits of :attr:`Materials.flags` (PMX draw flags; PMD is mapped onto them)."""

    DOUBLE_SIDED = 1
    GROUND_SHADOW = 2
    SELF_SHADOW_MAP = 4
    SELF_SHADOW = 8
    EDGE = 16
    VERTEX_COLOR = 32  # PMX 2.1
    POINT = 64  # PMX 2.1
    LINE = 128  # PMX 2.1


class BoneFlag(IntEnum):
    """Bits of :attr:`Bones.flags`, as in PMX."""

    TAIL_IS_BONE = 0x0001
    ROTATABLE = 0x0002
    TRANSLATABLE = 0x0004
    VISIBLE = 0x0008
    ENABLED = 0x0010
    IK = 0x0020
    APPEND_LOCAL = 0x0080
    APPEND_ROTATE = 0x0100
    APPEND_TRANSLATE = 0x0200
    FIXED_AXIS = 0x0400
    LOCAL_AXIS = 0x0800
    AFTER_PHYSICS = 0x1000
    EXTERNAL_PARENT = 0x2000


class MorphKind(IntEnum):
    """Morph types, numbered as in the PMX file."""

    GROUP = 0
    VERTEX = 1
    BONE = 2
    UV = 3
    UV1 = 4
    UV2 = 5
    UV3 = 6
    UV4 = 7
    MATERIAL = 8
    FLIP = 9  # PMX 2.1
    IMPULSE = 10  # PMX 2.1


@dataclass
class Vertices:
    """Per-vertex arrays, all of length N."""

    positions: np.ndarray  # (N, 3) float32
    normals: np.ndarray  # (N, 3) float32
    uv: np.ndarray  # (N, 2) float32, MMD convention (v down; flip when sampling)
    extra_uv: np.ndarray  # (N, K, 4) float32, K = 0..4 additional UV channels
    deform: np.ndarray  # (N,) uint8, Deform values
    bone_indices: np.ndarray  # (N, 4) int32, unused slots -1
    bone_weights: np.ndarray  # (N, 4) float32, unused slots 0; BDEF2 = (w, 1 - w, 0, 0)
    sdef_c: np.ndarray  # (N, 3) float32, zero unless SDEF
    sdef_r0: np.ndarray  # (N, 3) float32
    sdef_r1: np.ndarray  # (N, 3) float32
    edge_scale: np.ndarray  # (N,) float32

    def __len__(self) -> int:
        return len(self.positions)


@dataclass
class Materials:
    """Per-material arrays, all of length M, in file (= draw) order."""

    names: list[str]
    names_en: list[str]
    diffuse: np.ndarray  # (M, 4) float32 RGBA
    specular: np.ndarray  # (M, 3) float32
    shininess: np.ndarray  # (M,) float32
    ambient: np.ndarray  # (M, 3) float32
    flags: np.ndarray  # (M,) uint8, MaterialFlag bits
    edge_color: np.ndarray  # (M, 4) float32
    edge_size: np.ndarray  # (M,) float32
    texture: list[str | None]  # texture reference as written in the file
    sphere: list[str | None]
    sphere_mode: np.ndarray  # (M,) uint8: 0 none, 1 multiply, 2 add, 3 sub-texture
    toon: list[str | None]  # file name; shared toons as "toon01.bmp" .. "toon10.bmp"
    toon_shared: np.ndarray  # (M,) bool, True when toon refers to MMD's shared toons
    index_start: np.ndarray  # (M,) int64, first index into Model.indices (flattened)
    index_count: np.ndarray  # (M,) int64, number of indices (3 per triangle)
    memo: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class IKLink:
    bone: int
    limit_min: np.ndarray | None = None  # (3,) radians, None when unlimited
    limit_max: np.ndarray | None = None


@dataclass
class IKChain:
    target: int
    loops: int
    limit_angle: float
    links: list[IKLink]


@dataclass
class Bones:
    """Per-bone arrays, all of length B, in file order (parents may follow children)."""

    names: list[str]
    names_en: list[str]
    positions: np.ndarray  # (B, 3) float32, model space at rest
    parent: np.ndarray  # (B,) int32, -1 for roots
    transform_level: np.ndarray  # (B,) int32
    flags: np.ndarray  # (B,) uint16, BoneFlag bits
    tail_index: np.ndarray  # (B,) int32, -1 unless TAIL_IS_BONE
    tail_offset: np.ndarray  # (B, 3) float32, zero when TAIL_IS_BONE
    append_parent: np.ndarray  # (B,) int32, -1 when none
    append_ratio: np.ndarray  # (B,) float32
    fixed_axis: np.ndarray  # (B, 3) float32, zero unless FIXED_AXIS
    local_x: np.ndarray  # (B, 3) float32, zero unless LOCAL_AXIS
    local_z: np.ndarray  # (B, 3) float32
    external_key: np.ndarray  # (B,) int32
    ik: dict[int, IKChain] = field(default_factory=dict)  # bone index -> chain

    def __len__(self) -> int:
        return len(self.names)

    def find(self, name: str) -> int:
        """Index of the bone with exactly this name, or -1."""
        try:
            return self.names.index(name)
        except ValueError:
            return -1


@dataclass
class Morph:
    """One morph. ``index`` and ``data`` are parallel; their meaning depends on kind.

    - VERTEX: index = vertex, data (K, 3) position offset.
    - UV, UV1..UV4: index = vertex, data (K, 4) offset.
    - BONE: index = bone, data (K, 7) translation xyz + rotation quaternion xyzw.
    - MATERIAL: index = material (-1 = all), data (K, 28) = diffuse 4, specular 3,
      shininess 1, ambient 3, edge colour 4, edge size 1, texture tint 4, sphere
      tint 4, toon tint 4; ``op`` (K,) uint8: 0 multiply, 1 add.
    - GROUP, FLIP: index = morph, data (K, 1) weight.
    - IMPULSE: index = rigid body, data (K, 7) = local flag, velocity 3, torque 3.
    """

    name: str
    name_en: str
    panel: int  # 0 system, 1 eyebrow, 2 eye, 3 mouth, 4 other
    kind: MorphKind
    index: np.ndarray  # (K,) int32
    data: np.ndarray  # (K, D) float32
    op: np.ndarray | None = None  # (K,) uint8, MATERIAL only


@dataclass
class Model:
    """A loaded model. ``path`` and ``warnings`` describe where it came from."""

    name: str
    name_en: str
    comment: str
    format: str  # "pmx" or "pmd"
    version: float  # 2.0 / 2.1 for PMX, 1.0 for PMD
    vertices: Vertices
    indices: np.ndarray  # (F, 3) uint32, counter-clockwise front faces
    materials: Materials
    bones: Bones
    morphs: list[Morph]
    textures: list[str] = field(default_factory=list)  # PMX texture table, raw names
    rigid_body_count: int = 0
    joint_count: int = 0
    path: str | None = None
    sha256: str | None = None
    # resolved texture files for every referenced name (None = missing); filled by load_model
    texture_paths: dict[str, str | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def find_morph(self, name: str) -> int:
        """Index of the first morph with exactly this name, or -1 (names may repeat)."""
        for i, morph in enumerate(self.morphs):
            if morph.name == name:
                return i
        return -1

    @property
    def textures_missing(self) -> list[str]:
        return sorted(name for name, path in self.texture_paths.items() if path is None)

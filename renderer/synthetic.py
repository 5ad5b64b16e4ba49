"""Models generated in code, covering every format feature the real test models lack.

Nothing generated is committed as a binary: tests and benchmarks call these functions
(or :func:`write_feature_files`) and get fresh files. The shapes are simple boxes and
cylinders bound to an MMD-style skeleton, in the project frame of
:mod:`renderer.model` (y up, x to the character's left, z to the front).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from renderer.model import (
    BoneFlag,
    Bones,
    Deform,
    IKChain,
    IKLink,
    MaterialFlag,
    Materials,
    Model,
    Morph,
    MorphKind,
    Vertices,
)
from renderer.pmx_writer import write_pmx

F32 = np.float32
_BASIC = BoneFlag.ROTATABLE | BoneFlag.VISIBLE | BoneFlag.ENABLED
_MOVABLE = _BASIC | BoneFlag.TRANSLATABLE
_SHADOWS = MaterialFlag.GROUND_SHADOW | MaterialFlag.SELF_SHADOW_MAP | MaterialFlag.SELF_SHADOW
# multiply-material-morph factors that leave a material unchanged, and a hiding variant
_MATERIAL_IDENTITY = np.ones(28, F32)
_MATERIAL_HIDE = _MATERIAL_IDENTITY.copy()
_MATERIAL_HIDE[[3, 14]] = 0  # diffuse alpha, edge alpha


# ---------------------------------------------------------------- geometry

@dataclass
class Mesh:
    """A triangle mesh; faces are counter-clockwise seen from the side the normals face."""

    positions: np.ndarray  # (N, 3)
    normals: np.ndarray  # (N, 3)
    uv: np.ndarray  # (N, 2)
    faces: np.ndarray  # (F, 3) local vertex indices

    def __len__(self) -> int:
        return len(self.positions)


# per box face: normal, then tangents u, v with u x v = normal
_BOX_AXES = np.array([
    [[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[-1, 0, 0], [0, 0, 1], [0, 1, 0]],
    [[0, 1, 0], [0, 0, 1], [1, 0, 0]], [[0, -1, 0], [1, 0, 0], [0, 0, 1]],
    [[0, 0, 1], [1, 0, 0], [0, 1, 0]], [[0, 0, -1], [0, 1, 0], [1, 0, 0]],
], F32)
_QUAD = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], F32)  # counter-clockwise in (u, v)


def box(center, size) -> Mesh:
    """An axis-aligned box with flat normals, 4 vertices per face."""
    n, u, v = _BOX_AXES[:, 0, None], _BOX_AXES[:, 1, None], _BOX_AXES[:, 2, None]
    corners = n + _QUAD[None, :, :1] * u + _QUAD[None, :, 1:] * v  # (6, 4, 3)
    positions = np.asarray(center, F32) + corners.reshape(-1, 3) * np.asarray(size, F32) / 2
    normals = np.repeat(_BOX_AXES[:, 0], 4, axis=0)
    uv = np.tile((_QUAD + 1) / 2, (6, 1)) * [1, -1] + [0, 1]
    faces = (4 * np.arange(6)[:, None, None] + np.array([[0, 1, 2], [0, 2, 3]])).reshape(-1, 3)
    return Mesh(positions, normals, uv.astype(F32), faces)


def cylinder(center, radius: float, length: float, *, axis: str = "y", segments: int = 12,
             rings: int = 1) -> Mesh:
    """A capped cylinder along ``axis``: smooth sides (``rings`` bands), flat caps."""
    theta = np.linspace(0, 2 * np.pi, segments + 1, dtype=F32)
    height = np.linspace(-length / 2, length / 2, rings + 1, dtype=F32)
    t, h = np.meshgrid(theta, height)  # (rings + 1, segments + 1)
    radial = np.stack([np.sin(t), np.zeros_like(t), np.cos(t)], axis=-1).reshape(-1, 3)
    side = Mesh(radial * radius + np.stack([0 * h, h, 0 * h], axis=-1).reshape(-1, 3), radial,
                np.stack([t / (2 * np.pi), 1 - (h / length + 0.5)], axis=-1).reshape(-1, 2),
                _grid_faces(rings, segments))
    parts = [side] + [_cap(radial[: segments + 1] * radius, sign * length / 2, sign) for sign in (1, -1)]
    mesh = _concat(parts)
    rotation = _AXIS_ROTATION[axis]
    return Mesh(mesh.positions @ rotation.T + np.asarray(center, F32), mesh.normals @ rotation.T,
                mesh.uv.astype(F32), mesh.faces)


# proper rotations taking the y axis to each axis (orientation, hence winding, is kept)
_AXIS_ROTATION = {
    "y": np.eye(3, dtype=F32),
    "x": np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], F32),
    "z": np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], F32),
}


def _grid_faces(rows: int, cols: int) -> np.ndarray:
    """Two triangles per cell of a (rows + 1) x (cols + 1) vertex grid, column index fastest."""
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    a = (r * (cols + 1) + c).ravel()
    b, d = a + 1, a + cols + 1
    return np.concatenate([np.stack([a, b, d + 1], 1), np.stack([a, d + 1, d], 1)])


def _cap(ring: np.ndarray, y: float, sign: int) -> Mesh:
    """A fan closing a cylinder end; ``sign`` is the direction of its normal along y."""
    positions = np.vstack([[0, 0, 0], ring]).astype(F32) + [0, y, 0]
    normals = np.tile(np.array([0, sign, 0], F32), (len(positions), 1))
    uv = 0.5 + 0.5 * positions[:, [0, 2]] / max(float(np.abs(ring).max()), 1e-6)
    i = np.arange(1, len(ring))
    order = [i, i + 1] if sign > 0 else [i + 1, i]
    return Mesh(positions.astype(F32), normals, uv.astype(F32), np.stack([0 * i, *order], 1))


def _concat(meshes: list[Mesh]) -> Mesh:
    offsets = np.cumsum([0] + [len(m) for m in meshes[:-1]])
    return Mesh(np.vstack([m.positions for m in meshes]).astype(F32),
                np.vstack([m.normals for m in meshes]).astype(F32),
                np.vstack([m.uv for m in meshes]).astype(F32),
                np.vstack([m.faces + o for m, o in zip(meshes, offsets)]))


# ---------------------------------------------------------------- skinning

@dataclass
class Skin:
    """Per-vertex deform of one mesh, in the canonical form the PMX reader produces."""

    deform: np.ndarray  # (N,) uint8
    indices: np.ndarray  # (N, 4) int32, unused -1
    weights: np.ndarray  # (N, 4) float32, unused 0
    sdef: np.ndarray  # (N, 3, 3) float32: C, R0, R1

    @classmethod
    def empty(cls, n: int, deform: Deform) -> Skin:
        return cls(np.full(n, deform, np.uint8), np.full((n, 4), -1, np.int32),
                   np.zeros((n, 4), F32), np.zeros((n, 3, 3), F32))


def rigid(n: int, bone: int) -> Skin:
    """BDEF1: every vertex follows one bone."""
    skin = Skin.empty(n, Deform.BDEF1)
    skin.indices[:, 0], skin.weights[:, 0] = bone, 1
    return skin


def blend(positions: np.ndarray, bones: tuple[int, int], heads: np.ndarray, *,
          deform: Deform = Deform.BDEF2) -> Skin:
    """BDEF2 or SDEF between two bones, weighted by the position along heads[0] -> heads[1]."""
    a, b = np.asarray(heads, F32)
    t = np.clip((positions - a) @ (b - a) / float((b - a) @ (b - a)), 0, 1).astype(F32)
    skin = Skin.empty(len(positions), deform)
    skin.indices[:, :2] = bones
    skin.weights[:, 0] = 1 - t
    skin.weights[:, 1] = 1 - skin.weights[:, 0]
    if deform == Deform.SDEF:
        skin.sdef[:] = np.stack([b, (a + b) / 2, b + (b - a) / 2])
    return skin


def four_bones(positions: np.ndarray, bones, bone_positions: np.ndarray, *,
               deform: Deform = Deform.BDEF4) -> Skin:
    """BDEF4 or QDEF over four bones, by normalised inverse squared distance."""
    d2 = ((positions[:, None, :] - np.asarray(bone_positions, F32)[None]) ** 2).sum(-1)
    w = 1 / (d2 + 1e-3)
    skin = Skin.empty(len(positions), deform)
    skin.indices[:] = bones
    skin.weights[:] = w / w.sum(1, keepdims=True)
    return skin


# ---------------------------------------------------------------- bones

@dataclass
class BoneSpec:
    """One bone; the optional parts set their flag bits themselves."""

    name: str
    name_en: str
    position: tuple
    parent: int = -1
    flags: int = _BASIC
    tail: int | tuple = (0, 1, 0)  # a bone index, or an offset
    append: tuple[int, float] | None = None  # parent, ratio; flags say rotate/translate/local
    fixed_axis: tuple | None = None
    local_axes: tuple | None = None  # (x, z)
    level: int = 0
    external_key: int | None = None
    ik: IKChain | None = None


def make_bones(specs: list[BoneSpec]) -> Bones:
    return Bones(
        names=[s.name for s in specs], names_en=[s.name_en for s in specs],
        positions=np.array([s.position for s in specs], F32),
        parent=np.array([s.parent for s in specs], np.int32),
        transform_level=np.array([s.level for s in specs], np.int32),
        flags=np.array([_spec_flags(s) for s in specs], np.uint16),
        tail_index=np.array([s.tail if isinstance(s.tail, int) else -1 for s in specs], np.int32),
        tail_offset=np.array([(0, 0, 0) if isinstance(s.tail, int) else s.tail for s in specs], F32),
        append_parent=np.array([s.append[0] if s.append else -1 for s in specs], np.int32),
        append_ratio=np.array([s.append[1] if s.append else 0 for s in specs], F32),
        fixed_axis=np.array([s.fixed_axis or (0, 0, 0) for s in specs], F32),
        local_x=np.array([s.local_axes[0] if s.local_axes else (0, 0, 0) for s in specs], F32),
        local_z=np.array([s.local_axes[1] if s.local_axes else (0, 0, 0) for s in specs], F32),
        external_key=np.array([s.external_key or 0 for s in specs], np.int32),
        ik={i: s.ik for i, s in enumerate(specs) if s.ik is not None},
    )


def _spec_flags(s: BoneSpec) -> int:
    optional = [(isinstance(s.tail, int), BoneFlag.TAIL_IS_BONE), (s.fixed_axis, BoneFlag.FIXED_AXIS),
                (s.local_axes, BoneFlag.LOCAL_AXIS), (s.external_key is not None, BoneFlag.EXTERNAL_PARENT),
                (s.ik, BoneFlag.IK)]
    return s.flags | sum(bit for present, bit in optional if present)


# ---------------------------------------------------------------- assembly

@dataclass
class MaterialSpec:
    name: str
    name_en: str
    diffuse: tuple = (0.8, 0.8, 0.8, 1.0)
    flags: int = _SHADOWS | MaterialFlag.EDGE
    texture: str | None = None
    sphere: str | None = None
    sphere_mode: int = 0
    toon: str | None = None
    toon_shared: bool = False
    specular: tuple = (0.1, 0.1, 0.1)
    shininess: float = 5.0
    ambient: tuple = (0.4, 0.4, 0.4)
    edge_color: tuple = (0.0, 0.0, 0.0, 1.0)
    edge_size: float = 1.0
    memo: str = ""


@dataclass
class Assembly:
    """Collects (mesh, skin) parts material by material, in draw order, into a Model."""

    bones: Bones
    extra_uv: int = 0
    parts: list[tuple[Mesh, Skin]] = field(default_factory=list)
    materials: list[tuple[MaterialSpec, int]] = field(default_factory=list)  # spec, face count

    def add(self, spec: MaterialSpec, *parts: tuple[Mesh, Skin]) -> list[np.ndarray]:
        """Append a material drawn from ``parts``; returns each part's model vertex indices."""
        start = sum(len(mesh) for mesh, _ in self.parts)
        ranges = []
        for mesh, _ in parts:
            ranges.append(np.arange(start, start + len(mesh), dtype=np.int32))
            start += len(mesh)
        self.parts.extend(parts)
        self.materials.append((spec, sum(len(mesh.faces) for mesh, _ in parts)))
        return ranges

    def model(self, name: str, name_en: str, morphs: list[Morph], *, version: float,
              rigid_bodies: int = 0, joints: int = 0) -> Model:
        mesh = _concat([m for m, _ in self.parts])
        skins = [s for _, s in self.parts]
        vertices = Vertices(
            positions=mesh.positions, normals=mesh.normals, uv=mesh.uv,
            extra_uv=_extra_uv(mesh, self.extra_uv),
            deform=np.concatenate([s.deform for s in skins]),
            bone_indices=np.vstack([s.indices for s in skins]),
            bone_weights=np.vstack([s.weights for s in skins]),
            sdef_c=np.vstack([s.sdef[:, 0] for s in skins]),
            sdef_r0=np.vstack([s.sdef[:, 1] for s in skins]),
            sdef_r1=np.vstack([s.sdef[:, 2] for s in skins]),
            edge_scale=np.ones(len(mesh), F32))
        return Model(name=name, name_en=name_en, comment=f"{name_en}: generated by renderer.synthetic",
                     format="pmx", version=version, vertices=vertices,
                     indices=mesh.faces.astype(np.uint32), materials=self._materials(),
                     bones=self.bones, morphs=morphs, rigid_body_count=rigid_bodies, joint_count=joints)

    def _materials(self) -> Materials:
        specs = [s for s, _ in self.materials]
        counts = np.array([3 * f for _, f in self.materials], np.int64)

        def column(attr: str, dtype) -> np.ndarray:
            return np.array([getattr(s, attr) for s in specs], dtype)

        return Materials(
            names=[s.name for s in specs], names_en=[s.name_en for s in specs],
            diffuse=column("diffuse", F32), specular=column("specular", F32),
            shininess=column("shininess", F32), ambient=column("ambient", F32),
            flags=column("flags", np.uint8), edge_color=column("edge_color", F32),
            edge_size=column("edge_size", F32), texture=[s.texture for s in specs],
            sphere=[s.sphere for s in specs], sphere_mode=column("sphere_mode", np.uint8),
            toon=[s.toon for s in specs], toon_shared=column("toon_shared", bool),
            index_start=np.cumsum(counts) - counts, index_count=counts, memo=[s.memo for s in specs])


def _extra_uv(mesh: Mesh, channels: int) -> np.ndarray:
    """Channel 0 doubles as the PMX 2.1 vertex colour; the rest are UV-derived, all in [0, 1]."""
    colour = np.hstack([mesh.normals * 0.5 + 0.5, np.ones((len(mesh), 1), F32)])
    uv_pair = np.hstack([mesh.uv, 1 - mesh.uv])
    stack = [colour] + [uv_pair] * max(channels - 1, 0)
    return np.stack(stack[:channels], axis=1).astype(F32) if channels else np.zeros((len(mesh), 0, 4), F32)


def _morph(name: str, name_en: str, panel: int, kind: MorphKind, index, data, op=None) -> Morph:
    data = np.asarray(data, F32)
    return Morph(name, name_en, panel, kind, np.asarray(index, np.int32),
                 data.reshape(len(data), -1), None if op is None else np.asarray(op, np.uint8))


def _vertex_morph(name: str, name_en: str, panel: int, vertices: np.ndarray, offsets: np.ndarray) -> Morph:
    """Only the vertices that actually move are listed, as MMD editors do."""
    moving = np.any(offsets != 0, axis=1)
    return _morph(name, name_en, panel, MorphKind.VERTEX, vertices[moving], offsets[moving])


# ---------------------------------------------------------------- the models

HUMAN_BONES = ["全ての親", "センター", "上半身", "下半身", "首", "頭", "両目", "左目", "右目"]


def _character_bones() -> Bones:
    """An MMD-style skeleton exercising every bone feature (tails, append, axes, IK, levels)."""
    def arm(side: str, sign: int, first: int) -> list[BoneSpec]:
        return [
            BoneSpec(f"{side}腕", f"arm_{side}", (1.5 * sign, 13, 0), 2, tail=first + 1,
                     local_axes=((sign, 0, 0), (0, 0, 1))),
            BoneSpec(f"{side}ひじ", f"elbow_{side}", (4 * sign, 13, 0), first, tail=first + 2),
            BoneSpec(f"{side}手首", f"wrist_{side}", (6.5 * sign, 13, 0), first + 1, tail=(sign, 0, 0)),
            BoneSpec(f"{side}手捩", f"twist_{side}", (5.25 * sign, 13, 0), first + 1,
                     flags=BoneFlag.ROTATABLE | BoneFlag.ENABLED, tail=(0, 0, 0), fixed_axis=(sign, 0, 0)),
        ]

    def leg(side: str, sign: int, first: int) -> list[BoneSpec]:
        knee = IKLink(first + 1, np.array([0.0087, 0, 0], F32), np.array([np.pi, 0, 0], F32))
        return [
            BoneSpec(f"{side}足", f"leg_{side}", (sign, 9.5, 0), 3, tail=first + 1),
            BoneSpec(f"{side}ひざ", f"knee_{side}", (sign, 5, 0.2), first, tail=first + 2),
            BoneSpec(f"{side}足首", f"ankle_{side}", (sign, 1, 0), first + 1, tail=(0, -0.5, 1)),
            BoneSpec(f"{side}足ＩＫ", f"leg IK_{side}", (sign, 1, 0), 0, flags=_MOVABLE, tail=(0, 0, 1),
                     level=1, ik=IKChain(first + 2, 40, float(np.pi / 4), [knee, IKLink(first)])),
        ]

    left, right = "左", "右"
    specs = [
        BoneSpec("全ての親", "master", (0, 0, 0), flags=_MOVABLE),
        BoneSpec("センター", "center", (0, 8, 0), 0, flags=_MOVABLE, tail=(0, -1, 0)),
        BoneSpec("上半身", "upper body", (0, 10, 0), 1, tail=4),
        BoneSpec("下半身", "lower body", (0, 10, 0), 1, tail=(0, -2, 0)),
        BoneSpec("首", "neck", (0, 14, 0), 2, tail=5),
        BoneSpec("頭", "head", (0, 15, 0), 4, tail=(0, 3, 0)),
        BoneSpec("両目", "eyes", (0, 19, 0), 5, tail=(0, 0, 1), level=2),
        BoneSpec("左目", "eye_L", (0.8, 16.5, 1.5), 5, tail=(0, 0, 0.5), level=2,
                 flags=_BASIC | BoneFlag.APPEND_ROTATE, append=(6, 1.0)),
        BoneSpec("右目", "eye_R", (-0.8, 16.5, 1.5), 5, tail=(0, 0, 0.5), level=2,
                 flags=_BASIC | BoneFlag.APPEND_ROTATE, append=(6, 1.0)),
        *arm(left, 1, 9), *arm(right, -1, 13), *leg(left, 1, 17), *leg(right, -1, 21),
        BoneSpec("髪", "hair", (0, 18, -1), 5, tail=(0, -3, 0), flags=_BASIC | BoneFlag.AFTER_PHYSICS),
        BoneSpec("センター追従", "center follow", (0, 8, 0), 0, level=1, tail=(0, 0, 0),
                 flags=_MOVABLE | BoneFlag.APPEND_ROTATE | BoneFlag.APPEND_TRANSLATE | BoneFlag.APPEND_LOCAL,
                 append=(1, 0.5)),
        BoneSpec("外部親", "external parent", (0, 0, 0), 0, flags=_MOVABLE & ~BoneFlag.VISIBLE,
                 external_key=7),
    ]
    return make_bones(specs)


def feature_model(version: float = 2.1, extra_uv: int = 4) -> Model:
    """One small character using every PMX feature of ``version`` (2.0 drops the 2.1 ones).

    ``extra_uv`` < 4 drops the additional-UV morphs of the missing channels (pymeshio,
    the test oracle, reads no additional UVs at all).
    """
    pmx21 = version >= 2.1
    bones = _character_bones()
    at = bones.positions
    bone = {name: i for i, name in enumerate(bones.names)}
    head_bone = bone["頭"]
    build = Assembly(bones, extra_uv)

    torso, hips = box((0, 12, 0), (3, 4, 1.6)), box((0, 8.5, 0), (2.6, 2, 1.4))
    build.add(MaterialSpec("体", "body", texture="body.png", sphere="sphere.spa", sphere_mode=2,
                           toon="toon01.bmp", toon_shared=True),
              (torso, blend(torso.positions, (bone["上半身"], bone["下半身"]), at[[bone["首"], bone["センター"]]])),
              (hips, rigid(len(hips), bone["下半身"])))
    head = box((0, 16.8, 0), (3, 3.6, 3))
    (face,) = build.add(MaterialSpec("顔", "face", (1, 0.9, 0.8, 1), texture="face.bmp", toon="toon_face.bmp"),
                        (head, rigid(len(head), head_bone)))
    mouth = box((0, 15.6, 1.55), (1, 0.3, 0.1))
    (lips,) = build.add(MaterialSpec("口", "mouth", (0.7, 0.2, 0.2, 1), texture="face.bmp",
                                     sphere="body.png", sphere_mode=3), (mouth, rigid(len(mouth), head_bone)))
    eyes = [cylinder((0.8 * s, 16.5, 1.55), 0.4, 0.05, axis="z") for s in (1, -1)]
    eye_left, eye_right = build.add(MaterialSpec("目", "eyes", (1, 1, 1, 1), texture="eye.tga"),
                                    *((eye, rigid(len(eye), bone[name])) for eye, name in zip(eyes, ("左目", "右目"))))
    hair = box((0, 17.5, -1), (3.4, 3, 1.6))
    hair_bones = [bone[name] for name in ("頭", "髪", "首", "上半身")]
    vertex_colour = MaterialFlag.VERTEX_COLOR if pmx21 else 0
    (hair_ix,) = build.add(
        MaterialSpec("髪", "hair", (0.3, 0.5, 0.9, 1), flags=_SHADOWS | MaterialFlag.DOUBLE_SIDED | vertex_colour,
                     texture="hair.png", toon="toon02.bmp", toon_shared=True),
        (hair, four_bones(hair.positions, hair_bones, at[hair_bones])))
    arms = [cylinder((4 * s, 13, 0), 0.4, 5, axis="x", rings=4) for s in (1, -1)]
    right_arm_bones = [bone[name] for name in ("右腕", "右ひじ", "右手首", "上半身")]
    left_arm = [bone[name] for name in ("左腕", "左ひじ", "左手首")]
    build.add(MaterialSpec("腕", "arms", (1, 0.9, 0.8, 1), texture="テクスチャ\\肌.png"),
              (arms[0], blend(arms[0].positions, left_arm[:2], at[left_arm[::2]], deform=Deform.SDEF)),
              (arms[1], four_bones(arms[1].positions, right_arm_bones, at[right_arm_bones],
                                   deform=Deform.QDEF if pmx21 else Deform.BDEF4)))
    legs = [box((s, 5, 0), (1, 8, 1)) for s in (1, -1)]
    build.add(MaterialSpec("脚", "legs", (0.2, 0.2, 0.3, 1), sphere="sphere.sph", sphere_mode=1,
                           toon="toon03.bmp", toon_shared=True),
              *((leg, blend(leg.positions, (k, k + 1), at[[k, k + 2]]))  # hip -> knee, weighted to the ankle
                for leg, k in zip(legs, (bone["左足"], bone["右足"]))))
    glasses = box((0, 16.5, 1.7), (2.6, 0.2, 0.05))
    build.add(MaterialSpec("眼鏡", "glasses", (0.1, 0.1, 0.1, 0.6), flags=_SHADOWS | MaterialFlag.DOUBLE_SIDED),
              (glasses, rigid(len(glasses), head_bone)))

    positions = np.vstack([m.positions for m, _ in build.parts])
    glasses_material = len(build.materials) - 1
    morphs = _feature_morphs(positions, bone, [face, lips, eye_left, eye_right, hair_ix], glasses_material,
                             extra_uv, pmx21)
    return build.model("特徴モデル", "feature model", morphs, version=2.1 if pmx21 else 2.0,
                       rigid_bodies=2, joints=1)


def _feature_morphs(positions: np.ndarray, bone: dict[str, int], parts: list[np.ndarray], hidden: int,
                    extra_uv: int, pmx21: bool) -> list[Morph]:
    """Every morph kind; ``parts`` are the vertex indices of face, lips, left eye, right eye, hair;
    ``hidden`` is the material a material morph hides."""
    face, lips, eye_left, eye_right, hair = parts

    def close(eye: np.ndarray, amount: float) -> np.ndarray:
        centre_y = positions[eye, 1].mean()
        offsets = np.zeros((len(eye), 3), F32)
        offsets[:, 1] = (centre_y - positions[eye, 1]) * amount
        return offsets

    both = np.concatenate([eye_left, eye_right])
    lower_lip = (positions[lips, 1] < positions[lips, 1].mean())[:, None] * np.array([0, -0.4, 0], F32)
    rotate_z = [0, 0, np.sin(np.radians(5)), np.cos(np.radians(5))]
    morphs = [
        _vertex_morph("あ", "a", 3, lips, lower_lip),
        _vertex_morph("まばたき", "blink", 2, both, close(both, 0.9)),
        _vertex_morph("ウィンク", "wink", 2, eye_left, close(eye_left, 0.9)),
        _vertex_morph("ウィンク右", "wink_R", 2, eye_right, close(eye_right, 0.9)),
        _vertex_morph("ｳｨﾝｸ２右", "wink2_R", 2, eye_right, close(eye_right, 0.5)),
        _morph("UV移動", "uv scroll", 4, MorphKind.UV, face, np.tile([0.1, 0, 0, 0], (len(face), 1))),
        *(_morph(f"追加UV{k}", f"extra uv {k}", 4, MorphKind.UV + k, hair, np.tile([0, 0.1, 0, 0], (len(hair), 1)))
          for k in range(1, extra_uv + 1)),
        _morph("頭傾げ", "head tilt", 4, MorphKind.BONE, [bone["頭"], bone["センター"]],
               [[0, 0, 0, *rotate_z], [0, -0.5, 0, 0, 0, 0, 1]]),
        _morph("眼鏡非表示", "hide glasses", 4, MorphKind.MATERIAL, [hidden], [_MATERIAL_HIDE], [0]),
        _morph("全体明るく", "brighten all", 4, MorphKind.MATERIAL, [-1],
               [[0.2, 0.2, 0.2, 0] + [0] * 4 + [0.1] * 3 + [0] * 17], [1]),
    ]
    named = {m.name: i for i, m in enumerate(morphs)}
    n = len(morphs)
    morphs += [
        _morph("笑顔", "smile", 4, MorphKind.GROUP, [named["まばたき"], named["あ"]], [1.0, 0.5]),
        _morph("満面", "beaming", 4, MorphKind.GROUP, [n, named["頭傾げ"]], [1.0, 0.5]),  # nested
        _morph("循環A", "cycle A", 4, MorphKind.GROUP, [n + 3], [1.0]),  # A -> B -> A
        _morph("循環B", "cycle B", 4, MorphKind.GROUP, [n + 2], [1.0]),
    ]
    if pmx21:
        morphs += [
            _morph("フリップ", "flip", 4, MorphKind.FLIP, [named["ウィンク"], named["ウィンク右"]], [1.0, 1.0]),
            _morph("インパルス", "impulse", 4, MorphKind.IMPULSE, [0, 1],
                   [[0, 0, 0, 1, 0, 0, 0], [1, 0, 0, 0, 0, 1, 0]]),
        ]
    return morphs


def large_model(vertices: int = 45_000, bones: int = 160, version: float = 2.0, extra_uv: int = 1) -> Model:
    """Four stacked tubes of about ``vertices`` vertices in all on a bone chain: the loader benchmark.

    Deform types are mixed vertex by vertex; ``bones`` > 127 makes bone indices 2 bytes wide.
    """
    segments, bands = 180, 4
    rings = max(round(vertices / bands / (segments + 1)) - 3, 1)
    chain = make_bones([BoneSpec("全ての親", "master", (0, 0, 0), flags=_MOVABLE)] + [
        BoneSpec(f"骨{k}", f"bone{k}", (0, 20 * (k - 1) / (bones - 2), 0), k - 1) for k in range(1, bones)])
    four = Deform.QDEF if version >= 2.1 else Deform.BDEF4
    build = Assembly(chain, extra_uv)
    tubes = [cylinder((0, 2.5 + 5 * i, 0), 3, 5, segments=segments, rings=rings) for i in range(bands)]
    ranges = [build.add(MaterialSpec(f"布{i}", f"cloth{i}", texture="body.png"),
                        (tube, _chain_skin(tube.positions, chain, four)))[0] for i, tube in enumerate(tubes)]
    upper = np.concatenate(ranges[2:])
    normals = np.vstack([t.normals for t in tubes[2:]])
    morphs = [
        _vertex_morph("膨らむ", "bulge", 4, upper, normals * 0.3),
        _morph("UV移動", "uv scroll", 4, MorphKind.UV, ranges[0], np.tile([0.05, 0, 0, 0], (len(ranges[0]), 1))),
        _morph("曲げ", "bend", 4, MorphKind.BONE, [bones // 2], [[0, 0, 0, np.sin(0.2), 0, 0, np.cos(0.2)]]),
        _morph("全部", "all", 4, MorphKind.GROUP, [0, 1, 2], [1.0, 1.0, 0.5]),
    ]
    return build.model("大きいモデル", "large model", morphs, version=2.1 if version >= 2.1 else 2.0)


def _chain_skin(positions: np.ndarray, chain: Bones, four: Deform) -> Skin:
    """Deform types cycle vertex by vertex; each blends the chain bones around its height."""
    top = len(chain) - 1
    s = np.clip(positions[:, 1] / chain.positions[top, 1] * (top - 1) + 1, 1, top)
    k = np.minimum(np.floor(s).astype(np.int32), top - 1)
    t = (s - k).astype(F32)
    kinds = np.array([Deform.BDEF1, Deform.BDEF2, four, Deform.SDEF], np.uint8)[np.arange(len(s)) % 4]
    skin = Skin.empty(len(s), Deform.BDEF2)
    skin.deform[:] = kinds
    skin.indices[:, :2] = np.stack([k, k + 1], 1)
    skin.weights[:, 0] = 1 - t
    skin.weights[:, 1] = 1 - skin.weights[:, 0]
    one = kinds == Deform.BDEF1
    skin.indices[one] = np.stack([np.rint(s[one]), *[np.full(one.sum(), -1)] * 3], 1)
    skin.weights[one] = [1, 0, 0, 0]
    many = kinds == four
    skin.indices[many] = np.clip(k[many, None] + np.arange(-1, 3), 1, top)
    skin.weights[many] = np.stack([0.2 * (1 - t), 0.8 * (1 - t), 0.8 * t, 0.2 * t], 1)[many]
    sdef = kinds == Deform.SDEF
    c = chain.positions[k[sdef] + 1]
    skin.sdef[sdef] = np.stack([c, (c + chain.positions[k[sdef]]) / 2, c], 1)
    return skin


def prop_model(texture: str = "wood.png") -> Model:
    """A chair: a valid model that is not a character (no 頭, no morphs)."""
    bones = make_bones([BoneSpec("全ての親", "master", (0, 0, 0), flags=_MOVABLE),
                        BoneSpec("センター", "center", (0, 4, 0), 0, flags=_MOVABLE)])
    legs = [box((x, 2, z), (0.4, 4, 0.4)) for x in (-1.7, 1.7) for z in (-1.7, 1.7)]
    chair = _concat([box((0, 4.25, 0), (4, 0.5, 4)), box((0, 7.25, -1.8), (4, 5.5, 0.4)), *legs])
    build = Assembly(bones)
    build.add(MaterialSpec("木", "wood", (0.6, 0.4, 0.2, 1), texture=texture), (chair, rigid(len(chair), 1)))
    return build.model("椅子", "chair", [], version=2.0)


# role -> (MMD name, English name, parent role, position, a mesh skinned to it or None)
_HUMANOID = {
    "root": ("センター", "center", None, (0, 8, 0), None),
    "lower_body": ("下半身", "lower body", "root", (0, 9.5, 0), box((0, 5, 0), (2.4, 9, 1.2))),
    "upper_body": ("上半身", "upper body", "root", (0, 10, 0), box((0, 11, 0), (3, 2, 1.6))),
    "upper_body2": ("上半身2", "upper body2", "upper_body", (0, 12, 0), box((0, 13, 0), (3, 2, 1.6))),
    "neck": ("首", "neck", "upper_body2", (0, 14, 0), cylinder((0, 14.5, 0), 0.45, 1.0)),
    "head": ("頭", "head", "neck", (0, 15, 0), cylinder((0, 16.8, 0), 1.6, 3.6, segments=16, rings=6)),
    "eyes": ("両目", "eyes", "head", (0, 19, 0), None),
    "eye_left": ("左目", "eye_L", "head", (0.7, 16.9, 1.5), cylinder((0.7, 16.9, 1.6), 0.35, 0.05, axis="z")),
    "eye_right": ("右目", "eye_R", "head", (-0.7, 16.9, 1.5), cylinder((-0.7, 16.9, 1.6), 0.35, 0.05, axis="z")),
    "back_hair": ("後髪", "back hair", "head", (0, 18, -1.4), box((0, 14.5, -1.9), (3.4, 7, 0.5))),
    "ahoge": ("アホ毛", "ahoge", "head", (0, 18.6, 0), box((0, 19.4, 0), (0.15, 1.6, 0.15))),
}
HUMANOID_ROLES = tuple(_HUMANOID)


def humanoid_model(names: dict[str, str] | None = None, names_en: dict[str, str] | None = None,
                   unskinned: dict[str, str] | None = None) -> Model:
    """A small figure whose bones are named by role (``HUMANOID_ROLES``): MMD's names unless
    ``names`` / ``names_en`` say otherwise, plus ``unskinned`` {name: role} bones at a
    role's place carrying no vertices (Rigify's ORG- copies, say). For bone-finding tests."""
    english = names_en if names_en is not None else names
    names = {**{role: v[0] for role, v in _HUMANOID.items()}, **(names or {})}
    names_en = {**{role: v[1] for role, v in _HUMANOID.items()}, **(english or {})}
    index = {role: i for i, role in enumerate(_HUMANOID)}
    specs = [BoneSpec(names[role], names_en[role], position, index[parent] if parent else -1, tail=(0, 0, 0))
             for role, (_, _, parent, position, _) in _HUMANOID.items()]
    specs += [BoneSpec(name, name, _HUMANOID[role][3], index[_HUMANOID[role][2]], tail=(0, 0, 0))
              for name, role in (unskinned or {}).items()]
    build = Assembly(make_bones(specs))
    build.add(MaterialSpec("体", "body", (0.9, 0.8, 0.7, 1)),
              *((mesh, rigid(len(mesh), index[role])) for role, (*_, mesh) in _HUMANOID.items() if mesh))
    return build.model("人型", "humanoid", [], version=2.0)


# ---------------------------------------------------------------- files

def _texture_images() -> dict[str, tuple[np.ndarray, str]]:
    """Every texture the generated models refer to: name -> (pixels, Pillow format)."""
    y, x = np.mgrid[0:64, 0:64].astype(F32) / 63
    ramp = np.stack([x, y, 1 - x], -1)
    radius = np.hypot(x - 0.5, y - 0.5)
    sphere = np.repeat(np.clip(1 - 2 * radius, 0, 1)[..., None], 3, -1)
    iris = np.where((radius < 0.35)[..., None], [0.2, 0.4, 0.9], [1, 1, 1]) * (radius > 0.12)[..., None]
    hair = np.concatenate([ramp * [0.3, 0.5, 1.0], (y < 0.75)[..., None]], -1)  # transparent bottom band
    toon = np.repeat(np.where(y[::2, ::2, None] < 0.5, 1.0, 0.8), 3, -1)  # MMD toons: lit top, shaded bottom
    wood = np.stack([0.6 + 0.1 * np.sin(40 * x), 0.4 + 0 * x, 0.2 + 0 * x], -1)
    skin = np.broadcast_to(np.array([1.0, 0.85, 0.75]), ramp.shape) * (0.9 + 0.1 * ramp)
    return {
        "body.png": (ramp, "PNG"), "face.bmp": (skin, "BMP"), "hair.png": (hair, "PNG"),
        "eye.tga": (iris, "TGA"), "sphere.spa": (sphere, "BMP"), "sphere.sph": (sphere * 0.5 + 0.5, "BMP"),
        "toon_face.bmp": (toon, "BMP"), "テクスチャ/肌.png": (skin, "PNG"), "wood.png": (wood, "PNG"),
    }


def write_textures(directory: str | Path) -> list[Path]:
    """Write the textures of the generated models into ``directory`` (RGBA PNG, BMP, TGA, .spa/.sph, toon)."""
    directory = Path(directory)
    written = []
    for name, (pixels, fmt) in _texture_images().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_image(path, pixels, fmt)
        written.append(path)
    return written


def _save_image(path: str | Path | bytes, pixels: np.ndarray, fmt: str) -> None:
    with open(path, "wb") as out:
        Image.fromarray(np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(out, format=fmt)


def write_feature_files(directory: str | Path, *, large_vertices: int = 45_000) -> dict[str, Path]:
    """Write every generated model, its textures and the broken files into ``directory``.

    Keys: feature (PMX 2.1), feature_20, large, prop (UTF-8 text), missing_texture,
    sjis_texture (texture stored under a Shift-JIS encoded file name, as unzipped
    archives leave them), empty (0 bytes), truncated, bad_magic.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_textures(directory)
    files = {
        "feature": directory / "特徴モデル.pmx", "feature_20": directory / "feature_20.pmx",
        "large": directory / "large.pmx", "prop": directory / "chair.pmx",
        "missing_texture": directory / "missing_texture.pmx", "sjis_texture": directory / "sjis" / "sjis_texture.pmx",
        "empty": directory / "empty.pmx", "truncated": directory / "truncated.pmx",
        "bad_magic": directory / "bad_magic.pmx",
    }
    feature = feature_model(2.1)
    write_pmx(feature, files["feature"])
    write_pmx(feature_model(2.0), files["feature_20"])
    write_pmx(large_model(large_vertices), files["large"])
    write_pmx(prop_model(), files["prop"], encoding="utf-8")
    feature.materials.texture[1] = "存在しない/ない.png"  # now the missing_texture variant
    write_pmx(feature, files["missing_texture"])
    _write_sjis_texture_model(files["sjis_texture"].parent)
    files["empty"].write_bytes(b"")
    data = files["feature"].read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["bad_magic"].write_bytes(b"\x89PNG" + data[4:])  # a renamed image, say
    return files


def _write_sjis_texture_model(directory: Path) -> None:
    """A chair whose texture file name on disk is Shift-JIS bytes while the model names it in Unicode."""
    directory.mkdir(parents=True, exist_ok=True)
    name = "木目.png"
    write_pmx(prop_model(name), directory / "sjis_texture.pmx")
    _save_image(os.path.join(os.fsencode(directory), name.encode("cp932")), *_texture_images()["wood.png"])

"""PMX 2.0 / 2.1 writer: the exact inverse of the PMX reader.

The project writes its own test models and the demo character instead of committing
binaries, so every format feature the reader handles must be writable here. Arrays
are converted back from the character frame to MMD's left-handed one (see
:mod:`renderer.model`), so ``write_pmx(load_model(p))`` round-trips.

Vertex and morph records are built as numpy structured arrays; nothing loops over
vertices in Python.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from renderer.errors import ModelError
from renderer.model import BoneFlag, Bones, Deform, MaterialFlag, Materials, Model, Morph, MorphKind, Vertices
from renderer.pmx import DEFORM_LAYOUT, FLIP_Z, MORPH_MIRROR, WINDING, index_dtype, mirror_euler_limits, vertex_dtype

# The mirror between MMD's frame and ours is its own inverse, so the reader's tables
# (FLIP_Z, MORPH_MIRROR, mirror_euler_limits) and its triangle reversal serve both ways.
ENCODINGS = {"utf-16-le": 0, "utf-8": 1}
_PMX21_FLAGS = MaterialFlag.VERTEX_COLOR | MaterialFlag.POINT | MaterialFlag.LINE
_SHARED_TOON = re.compile(r"toon(\d\d)\.bmp", re.IGNORECASE)


@dataclass(frozen=True)
class IndexSizes:
    """Byte widths of the six index kinds, chosen from the counts (header order)."""

    vertex: int
    texture: int
    material: int
    bone: int
    morph: int
    rigid: int

    @classmethod
    def for_counts(cls, vertices: int, textures: int, materials: int, bones: int,
                   morphs: int, rigids: int) -> IndexSizes:
        return cls(index_size(vertices, signed=False), index_size(textures), index_size(materials),
                   index_size(bones), index_size(morphs), index_size(rigids))

    def dtype(self, kind: str) -> np.dtype:
        return index_dtype(kind, getattr(self, kind))

    def pack(self, kind: str, value: int) -> bytes:
        return np.array(value, self.dtype(kind)).tobytes()


def index_size(count: int, signed: bool = True) -> int:
    """Smallest of 1, 2, 4 bytes that holds every index below ``count`` (and -1 when signed)."""
    small, medium = (127, 32767) if signed else (255, 65535)
    return 1 if count <= small else 2 if count <= medium else 4


def required_version(model: Model) -> float:
    """2.1 when the model uses a PMX 2.1 feature (QDEF, flip/impulse morphs, 2.1 draw flags)."""
    uses_21 = (
        bool(np.any(model.vertices.deform == Deform.QDEF))
        or any(m.kind in (MorphKind.FLIP, MorphKind.IMPULSE) for m in model.morphs)
        or bool(np.any(model.materials.flags & _PMX21_FLAGS))
    )
    return 2.1 if uses_21 else 2.0


def texture_table(model: Model) -> list[str]:
    """The model's table, extended by every name its materials refer to (first use order)."""
    names = list(model.textures)
    m = model.materials
    for tex, sphere, toon, shared in zip(m.texture, m.sphere, m.toon, m.toon_shared):
        for name in (tex, sphere, None if shared else toon):
            if name is not None and name not in names:
                names.append(name)
    return names


def write_pmx(model: Model, path: str | Path, *, version: float | None = None,
              encoding: str = "utf-16-le") -> float:
    """Write ``model`` as a PMX file and return the version written.

    Raises :class:`ModelError` (naming ``path``) when the model cannot be written as
    asked: a 2.1 feature in a 2.0 file, inconsistent arrays or an out-of-range index.
    """
    path = Path(path)
    needed = required_version(model)
    version = needed if version is None else version
    if version not in (2.0, 2.1):
        raise ModelError(str(path), f"cannot write PMX version {version}; 2.0 and 2.1 are supported")
    if needed > version:
        raise ModelError(str(path), "model uses PMX 2.1 features (QDEF, flip/impulse morphs "
                                    "or 2.1 material flags); write it as version 2.1")
    if encoding not in ENCODINGS:
        raise ModelError(str(path), f"unknown text encoding {encoding!r}; use one of {list(ENCODINGS)}")
    try:
        data = _PmxEncoder(model, version, encoding).encode()
    except (ValueError, IndexError) as error:
        raise ModelError(str(path), f"cannot write model: {error}") from None
    path.write_bytes(data)
    return version


class _PmxEncoder:
    """Serialises one model; holds the index sizes and text encoding every section shares."""

    def __init__(self, model: Model, version: float, encoding: str):
        self.model = model
        self.version = version
        self.encoding = encoding
        self.textures = texture_table(model)
        self.rigid_count = max([model.rigid_body_count] + [
            int(m.index.max()) + 1 for m in model.morphs if m.kind == MorphKind.IMPULSE and len(m.index)])
        self.sizes = IndexSizes.for_counts(len(model.vertices), len(self.textures),
                                           len(model.materials), len(model.bones),
                                           len(model.morphs), self.rigid_count)

    def encode(self) -> bytes:
        m = self.model
        parts = [
            self._header(),
            self.text(m.name), self.text(m.name_en), self.text(m.comment), self.text(""),
            self._vertices(m.vertices),
            self._faces(m.indices, len(m.vertices)),
            _count(self.textures), *(self.text(name) for name in self.textures),
            self._materials(m.materials, len(m.indices) * 3),
            _count(m.bones), *(self._bone(m.bones, i) for i in range(len(m.bones))),
            _count(m.morphs), *(self._morph(morph) for morph in m.morphs),
            _int(0),  # display frames
            _int(self.rigid_count), *(self._rigid_body(i) for i in range(self.rigid_count)),
            _int(m.joint_count), *(self._joint(i) for i in range(m.joint_count)),
        ]
        if self.version >= 2.1:
            parts.append(_int(0))  # soft bodies
        return b"".join(parts)

    def text(self, value: str) -> bytes:
        data = value.encode(self.encoding)
        return _count(data) + data

    def _header(self) -> bytes:
        s = self.sizes
        extra_uv = self.model.vertices.extra_uv.shape[1]
        if extra_uv > 4:
            raise ValueError(f"{extra_uv} additional UV channels (PMX allows 4)")
        return b"PMX " + struct.pack("<fB8B", self.version, 8, ENCODINGS[self.encoding], extra_uv,
                                     s.vertex, s.texture, s.material, s.bone, s.morph, s.rigid)

    def _vertices(self, v: Vertices) -> bytes:
        """Records differ in size by deform type: build each type's block, then scatter into file order."""
        _check_range("vertex bone index", v.bone_indices, len(self.model.bones), allow_none=True)
        unknown = set(np.unique(v.deform).tolist()) - set(DEFORM_LAYOUT)
        if unknown:
            raise ValueError(f"unknown vertex deform types {sorted(unknown)}")
        extra = v.extra_uv.shape[1]
        records = {d: self._vertex_records(v, d, extra) for d in DEFORM_LAYOUT}
        record_size = np.array([records[d].dtype.itemsize for d in DEFORM_LAYOUT], np.int64)
        sizes = record_size[v.deform]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        out = np.empty(int(sizes.sum()), np.uint8)
        for d, rec in records.items():
            rows = np.flatnonzero(v.deform == d)
            width = rec.dtype.itemsize
            out[starts[rows, None] + np.arange(width)] = rec.view(np.uint8).reshape(len(rows), width)
        return _count(v.positions) + out.tobytes()

    def _vertex_records(self, v: Vertices, deform: Deform, extra: int) -> np.ndarray:
        slots, weights, sdef = DEFORM_LAYOUT[deform]
        rows = np.flatnonzero(v.deform == deform)
        rec = np.empty(len(rows), vertex_dtype(deform, extra, self.sizes.dtype("bone")))
        rec["pos"] = v.positions[rows] * FLIP_Z
        rec["normal"] = v.normals[rows] * FLIP_Z
        rec["uv"] = v.uv[rows]
        if extra:
            rec["extra"] = v.extra_uv[rows]
        rec["deform"] = deform
        rec["bones"] = v.bone_indices[rows, :slots]
        if weights:
            rec["weights"] = v.bone_weights[rows, :weights]
        if sdef:
            rec["sdef"] = np.stack([v.sdef_c[rows], v.sdef_r0[rows], v.sdef_r1[rows]], axis=1) * FLIP_Z
        rec["edge"] = v.edge_scale[rows]
        return rec

    def _faces(self, indices: np.ndarray, vertex_count: int) -> bytes:
        _check_range("face vertex index", indices, vertex_count)
        flat = np.asarray(indices)[:, WINDING].astype(self.sizes.dtype("vertex")).ravel()
        return _count(flat) + flat.tobytes()

    def _materials(self, m: Materials, index_total: int) -> bytes:
        """PMX stores only per-material index counts, so the ranges must tile the index list."""
        counts = np.asarray(m.index_count, np.int64)
        if counts.sum() != index_total or np.any(np.asarray(m.index_start) != np.cumsum(counts) - counts):
            raise ValueError("material index ranges do not cover the faces contiguously in order")
        if np.any(counts % 3):
            raise ValueError("a material index count is not a multiple of 3")
        return _count(m) + b"".join(self._material(m, i) for i in range(len(m)))

    def _material(self, m: Materials, i: int) -> bytes:
        floats = np.concatenate([m.diffuse[i], m.specular[i], [m.shininess[i]], m.ambient[i]])
        head = self.text(m.names[i]) + self.text(m.names_en[i]) + floats.astype("<f4").tobytes()
        edge = struct.pack("<B4ff", int(m.flags[i]), *m.edge_color[i], m.edge_size[i])
        maps = self._texture_index(m.texture[i]) + self._texture_index(m.sphere[i])
        maps += struct.pack("<BB", int(m.sphere_mode[i]), bool(m.toon_shared[i]))
        toon = struct.pack("<B", _shared_toon_number(m.toon[i])) if m.toon_shared[i] else \
            self._texture_index(m.toon[i])
        memo = m.memo[i] if i < len(m.memo) else ""
        return head + edge + maps + toon + self.text(memo) + struct.pack("<i", int(m.index_count[i]))

    def _texture_index(self, name: str | None) -> bytes:
        return self.sizes.pack("texture", -1 if name is None else self.textures.index(name))

    def _bone_index(self, value: int) -> bytes:
        if not -1 <= value < len(self.model.bones):
            raise ValueError(f"bone index {value} out of range (0..{len(self.model.bones) - 1})")
        return self.sizes.pack("bone", value)

    def _bone(self, b: Bones, i: int) -> bytes:
        flags = int(b.flags[i])
        out = [self.text(b.names[i]), self.text(b.names_en[i]), _vec(b.positions[i] * FLIP_Z),
               self._bone_index(int(b.parent[i])), struct.pack("<iH", int(b.transform_level[i]), flags)]
        if flags & BoneFlag.TAIL_IS_BONE:
            out.append(self._bone_index(int(b.tail_index[i])))
        else:
            out.append(_vec(b.tail_offset[i] * FLIP_Z))
        if flags & (BoneFlag.APPEND_ROTATE | BoneFlag.APPEND_TRANSLATE):
            out += [self._bone_index(int(b.append_parent[i])), struct.pack("<f", b.append_ratio[i])]
        if flags & BoneFlag.FIXED_AXIS:
            out.append(_vec(b.fixed_axis[i] * FLIP_Z))
        if flags & BoneFlag.LOCAL_AXIS:
            out += [_vec(b.local_x[i] * FLIP_Z), _vec(b.local_z[i] * FLIP_Z)]
        if flags & BoneFlag.EXTERNAL_PARENT:
            out.append(struct.pack("<i", int(b.external_key[i])))
        if flags & BoneFlag.IK:
            out.append(self._ik(b, i))
        return b"".join(out)

    def _ik(self, b: Bones, i: int) -> bytes:
        if i not in b.ik:
            raise ValueError(f"bone {b.names[i]!r} has the IK flag but no IK chain")
        chain = b.ik[i]
        out = [self._bone_index(chain.target), struct.pack("<ifi", chain.loops, chain.limit_angle, len(chain.links))]
        for link in chain.links:
            out.append(self._bone_index(link.bone))
            if link.limit_min is None:
                out.append(b"\x00")
            else:
                low, high = mirror_euler_limits(link.limit_min, link.limit_max)
                out += [b"\x01", _vec(low), _vec(high)]
        return b"".join(out)

    def _morph(self, morph: Morph) -> bytes:
        index_kind, target_count = self._morph_target(morph.kind)
        _check_range(f"morph {morph.name!r} index", morph.index, target_count,
                     allow_none=morph.kind == MorphKind.MATERIAL)
        data = np.asarray(morph.data, np.float32) * MORPH_MIRROR.get(morph.kind, np.float32(1))
        fields = [("index", self.sizes.dtype(index_kind))]
        if morph.kind == MorphKind.MATERIAL:
            fields.append(("op", "u1"))
        if morph.kind == MorphKind.IMPULSE:
            fields.append(("local", "u1"))
            data = data[:, 1:]
        fields.append(("data", "<f4", data.shape[1]))
        rec = np.empty(len(morph.index), np.dtype(fields))
        rec["index"] = morph.index
        rec["data"] = data
        if morph.kind == MorphKind.MATERIAL:
            rec["op"] = morph.op
        if morph.kind == MorphKind.IMPULSE:
            rec["local"] = morph.data[:, 0]
        head = self.text(morph.name) + self.text(morph.name_en)
        return head + struct.pack("<BBi", morph.panel, int(morph.kind), len(rec)) + rec.tobytes()

    def _morph_target(self, kind: MorphKind) -> tuple[str, int]:
        m = self.model
        if kind in (MorphKind.GROUP, MorphKind.FLIP):
            return "morph", len(m.morphs)
        if kind == MorphKind.BONE:
            return "bone", len(m.bones)
        if kind == MorphKind.MATERIAL:
            return "material", len(m.materials)
        if kind == MorphKind.IMPULSE:
            return "rigid", self.rigid_count
        return "vertex", len(m.vertices)

    def _rigid_body(self, i: int) -> bytes:
        """A placeholder sphere on the first bone, so impulse morph indices are valid."""
        bone = 0 if len(self.model.bones) else -1
        return (self.text(f"剛体{i}") + self.text(f"rigid{i}") + self._bone_index(bone)
                + struct.pack("<BHB", 0, 0xFFFF, 0) + _vec([1, 1, 1]) + _vec([0, 0, 0]) + _vec([0, 0, 0])
                + struct.pack("<5fB", 1.0, 0.5, 0.5, 0.0, 0.5, 0))

    def _joint(self, i: int) -> bytes:
        """A placeholder spring joint between the first two rigid bodies (or none)."""
        a, b = (0, min(1, self.rigid_count - 1)) if self.rigid_count else (-1, -1)
        return (self.text(f"ジョイント{i}") + self.text(f"joint{i}") + b"\x00"
                + self.sizes.pack("rigid", a) + self.sizes.pack("rigid", b) + _vec(np.zeros(24)))


def _shared_toon_number(name: str | None) -> int:
    match = _SHARED_TOON.fullmatch(name or "")
    if not match or not 1 <= int(match.group(1)) <= 10:
        raise ValueError(f"shared toon {name!r} is not one of toon01.bmp .. toon10.bmp")
    return int(match.group(1)) - 1


def _check_range(what: str, values: np.ndarray, count: int, *, allow_none: bool = False) -> None:
    values = np.asarray(values)
    if values.size and (values.min() < (-1 if allow_none else 0) or values.max() >= count):
        raise ValueError(f"{what} out of range: {values.min()}..{values.max()} with {count} targets")


def _count(items) -> bytes:
    return _int(len(items))


def _int(value: int) -> bytes:
    return struct.pack("<i", value)


def _vec(values) -> bytes:
    return np.asarray(values, "<f4").tobytes()

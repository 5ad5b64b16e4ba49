"""PMX 2.0 / 2.1 reader: file bytes -> :class:`Model` in the character frame.

Vertex records differ in size by deform type, so one tight loop scans only the deform
byte to find where each record starts; every field is then gathered with numpy fancy
indexing, one structured dtype per deform type. Morph offsets, faces and the other
fixed-size runs are read with ``np.frombuffer``. Every index is range-checked.
"""
from __future__ import annotations

import numpy as np

from renderer.binary import Cursor, check_range, file_boundary
from renderer.model import BoneFlag, Bones, Deform, IKChain, IKLink, Materials, Model, Morph, MorphKind, Vertices

MAGIC = b"PMX "
F32 = np.float32

# MMD's left-handed frame -> the character frame (see renderer.model): z of points and
# offsets flips; a rotation keeps its angle about z and reverses it about x and y.
FLIP_Z = np.array([1, 1, -1], F32)
MORPH_MIRROR = {
    MorphKind.VERTEX: FLIP_Z,
    MorphKind.BONE: np.array([1, 1, -1, -1, -1, 1, 1], F32),
    MorphKind.IMPULSE: np.array([1, 1, 1, -1, -1, -1, 1], F32),
}
WINDING = [0, 2, 1]

_ENCODINGS = {0: "utf-16-le", 1: "utf-8"}
_INDEX_KINDS = ("vertex", "texture", "material", "bone", "morph", "rigid")
_SIGNED_CHAR = {1: "b", 2: "h", 4: "i"}
# deform -> (bone slots, weights stored, has SDEF points)
DEFORM_LAYOUT = {
    Deform.BDEF1: (1, 0, False),
    Deform.BDEF2: (2, 1, False),
    Deform.BDEF4: (4, 4, False),
    Deform.SDEF: (2, 1, True),
    Deform.QDEF: (4, 4, False),
}
# morph kind -> (index kind, float count, has a leading flag byte)
_MORPH_LAYOUT = {
    MorphKind.GROUP: ("morph", 1, False), MorphKind.VERTEX: ("vertex", 3, False),
    MorphKind.BONE: ("bone", 7, False), MorphKind.UV: ("vertex", 4, False),
    MorphKind.UV1: ("vertex", 4, False), MorphKind.UV2: ("vertex", 4, False),
    MorphKind.UV3: ("vertex", 4, False), MorphKind.UV4: ("vertex", 4, False),
    MorphKind.MATERIAL: ("material", 28, True), MorphKind.FLIP: ("morph", 1, False),
    MorphKind.IMPULSE: ("rigid", 6, True),
}
_SOFT_BODY_FIXED = 1 + 2 + 1 + 4 * 5 + 4 * (12 + 6 + 4 + 3)  # after the material index


def mirror_euler_limits(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IK angle limits across the z mirror: x and y limits negate and swap."""
    sign = np.array([-1, -1, 1], F32)
    low, high = np.asarray(low, F32), np.asarray(high, F32)
    return np.where(sign < 0, -high, low), np.where(sign < 0, -low, high)


def index_dtype(kind: str, size: int) -> np.dtype:
    """Vertex indices are unsigned below 4 bytes; all others are signed (-1 = none)."""
    return np.dtype(f"<{'u' if kind == 'vertex' and size < 4 else 'i'}{size}")


def vertex_dtype(deform: Deform, extra_uv: int, bone_index: np.dtype) -> np.dtype:
    """One vertex record of ``deform`` type, as stored in the file (reader and writer share it)."""
    slots, weights, sdef = DEFORM_LAYOUT[deform]
    fields = [("pos", "<f4", 3), ("normal", "<f4", 3), ("uv", "<f4", 2)]
    fields += [("extra", "<f4", (extra_uv, 4))] if extra_uv else []
    fields += [("deform", "u1"), ("bones", bone_index, slots)]
    fields += [("weights", "<f4", weights)] if weights else []
    fields += [("sdef", "<f4", (3, 3))] if sdef else []
    return np.dtype(fields + [("edge", "<f4")])


def read_pmx(data: bytes, path: str | None = None) -> Model:
    """Parse a whole PMX file; raises ModelError naming ``path`` for anything malformed."""
    with file_boundary(path):
        return _PmxReader(Cursor(data, path)).read()


class _PmxReader:
    """One parse: the header's encoding and index sizes are shared by every section."""

    def __init__(self, cursor: Cursor):
        self.cur = cursor
        self.version = 0.0
        self.encoding = ""
        self.extra_uv = 0
        self.sizes: dict[str, int] = {}

    def read(self) -> Model:
        self._header()
        name, name_en, comment, _ = (self.text(what) for what in ("name", "English name", "comment",
                                                                  "English comment"))
        vertices = self._vertices()
        indices = self._faces(len(vertices))
        textures = [self.text("texture name") for _ in range(self.cur.count("texture", 4))]
        materials = self._materials(textures, len(indices) * 3)
        bones = self._bones()
        check_range(self.cur, "vertex bone index", vertices.bone_indices, len(bones), allow_none=True)
        morphs = [self._morph() for _ in range(self.cur.count("morph", 10))]
        self._display_frames(len(bones), len(morphs))
        rigid_count = self._rigid_bodies(len(bones))
        joint_count = self._joints(rigid_count)
        if self.version >= 2.1:
            self._soft_bodies(len(materials), rigid_count, len(vertices))
        self._check_morph_targets(morphs, len(vertices), len(bones), len(materials), rigid_count)
        return Model(name=name, name_en=name_en, comment=comment, format="pmx", version=self.version,
                     vertices=vertices, indices=indices, materials=materials, bones=bones, morphs=morphs,
                     textures=textures, rigid_body_count=rigid_count, joint_count=joint_count,
                     warnings=self.cur.warnings)

    # ------------------------------------------------------------ header and helpers

    def _header(self) -> None:
        cur = self.cur
        if cur.take(4, "magic") != MAGIC:
            raise cur.error("not a PMX file (bad magic)")
        version = round(float(cur.unpack("f", "version")[0]), 3)
        if version not in (2.0, 2.1):
            raise cur.error(f"unsupported PMX version {version} (2.0 and 2.1 are supported)")
        self.version = version
        count = cur.u8("header size")
        if count < 8:
            raise cur.error(f"PMX header lists {count} globals, 8 are required")
        encoding, extra_uv, *sizes = cur.take(count, "header globals")[:8]
        if encoding not in _ENCODINGS:
            raise cur.error(f"unknown PMX text encoding {encoding}")
        if extra_uv > 4:
            raise cur.error(f"{extra_uv} additional UV channels (PMX allows 0..4)")
        for kind, size in zip(_INDEX_KINDS, sizes):
            if size not in (1, 2, 4):
                raise cur.error(f"bad {kind} index size {size} (must be 1, 2 or 4)")
        self.encoding, self.extra_uv = _ENCODINGS[encoding], extra_uv
        self.sizes = dict(zip(_INDEX_KINDS, sizes))

    def text(self, what: str) -> str:
        return self.cur.text(self.encoding, what)

    def dtype(self, kind: str) -> np.dtype:
        return index_dtype(kind, self.sizes[kind])

    def _names(self, what: str) -> tuple[str, str]:
        return self.text(f"{what} name"), self.text(f"{what} English name")

    def fmt(self, kind: str) -> str:
        return _SIGNED_CHAR[self.sizes[kind]]

    def index(self, kind: str, what: str) -> int:
        return self.cur.unpack(self.fmt(kind), what)[0]

    # ------------------------------------------------------------ vertices and faces

    def _vertices(self) -> Vertices:
        cur = self.cur
        dtypes = {d: vertex_dtype(d, self.extra_uv, self.dtype("bone")) for d in DEFORM_LAYOUT}
        count = cur.count("vertex", min(dt.itemsize for dt in dtypes.values()))
        record_size = np.zeros(256, np.int64)
        for d, dt in dtypes.items():
            record_size[d] = dt.itemsize
        deform, starts = self._scan_vertices(count, record_size, dtypes[Deform.BDEF1].fields["deform"][1])
        buffer = np.frombuffer(cur.data, np.uint8)
        out = _empty_vertices(count, self.extra_uv)
        for d, dt in dtypes.items():
            rows = np.flatnonzero(deform == d)
            if len(rows):
                # every byte offset as the start of a record-sized window; pick the rows' windows
                windows = np.lib.stride_tricks.sliding_window_view(buffer, dt.itemsize)
                _scatter_vertices(out, rows, windows[starts[rows]].view(dt).reshape(-1), d)
        return out

    def _scan_vertices(self, count: int, record_size: np.ndarray, deform_at: int) -> tuple[np.ndarray, np.ndarray]:
        """The one sequential pass the format forces: read each deform byte, step over the record."""
        cur, data = self.cur, self.cur.data
        sizes = [int(s) if s else len(data) + 1 for s in record_size]  # unknown type -> past the end
        types = bytearray(count)
        pos = start = cur.pos
        i = 0
        try:
            for i in range(count):
                t = data[pos + deform_at]
                types[i] = t
                pos += sizes[t]
        except IndexError:
            pos = len(data) + 1
        deform = np.frombuffer(bytes(types), np.uint8)
        unknown = np.flatnonzero(record_size[deform[: i + 1]] == 0)
        if len(unknown):
            raise cur.error(f"vertex {int(unknown[0])}: unknown deform type {int(deform[unknown[0]])}")
        if pos > len(data):
            raise cur.error(f"truncated file: {count} vertices do not fit (vertex data from offset {start})")
        starts = start + np.cumsum(record_size[deform]) - record_size[deform]
        cur.pos = pos
        return deform, starts

    def _faces(self, vertex_count: int) -> np.ndarray:
        cur = self.cur
        count = cur.count("face index", self.sizes["vertex"])
        if count % 3:
            raise cur.error(f"face index count {count} is not a multiple of 3")
        flat = cur.array(self.dtype("vertex"), count, "faces")
        check_range(cur, "face vertex index", flat, vertex_count)
        return flat.reshape(-1, 3)[:, WINDING].astype(np.uint32)

    # ------------------------------------------------------------ materials

    def _materials(self, textures: list[str], index_total: int) -> Materials:
        cur = self.cur
        count = cur.count("material", 60)
        names, names_en, memo, tex_ref, shared, toon_ref = [], [], [], [], [], []
        floats, flags, counts = [], [], []
        t = self.fmt("texture")
        for i in range(count):
            names.append(self.text("material name"))
            names_en.append(self.text("material English name"))
            *colours, flag, er, eg, eb, ea, edge = cur.unpack("4f3ff3fB4ff", f"material {i}")
            floats.append([*colours, er, eg, eb, ea, edge])
            flags.append(flag)
            texture, sphere, sphere_mode, is_shared = cur.unpack(f"{t}{t}BB", f"material {i} maps")
            toon = cur.u8(f"material {i} toon") if is_shared else self.index("texture", f"material {i} toon")
            tex_ref.append((texture, sphere, sphere_mode))
            shared.append(bool(is_shared))
            toon_ref.append(toon)
            memo.append(self.text("material memo"))
            counts.append(cur.i32(f"material {i} index count"))
        refs = np.array([r[:2] for r in tex_ref] + [[-1, -1]], np.int64)[:count]
        check_range(cur, "material texture index", refs, len(textures), allow_none=True)
        own_toons = np.array([r for r, s in zip(toon_ref, shared) if not s], np.int64)
        check_range(cur, "material toon texture index", own_toons, len(textures), allow_none=True)
        shared_toons = np.array([r for r, s in zip(toon_ref, shared) if s], np.int64)
        check_range(cur, "material shared toon number", shared_toons, 10)
        index_count = np.array(counts, np.int64)
        _check_index_ranges(cur, index_count, index_total)
        table = np.array(floats, F32).reshape(count, 16)

        def name(index: int) -> str | None:
            return textures[index] if index >= 0 else None

        return Materials(
            names=names, names_en=names_en, diffuse=table[:, 0:4], specular=table[:, 4:7],
            shininess=table[:, 7], ambient=table[:, 8:11], flags=np.array(flags, np.uint8),
            edge_color=table[:, 11:15], edge_size=table[:, 15],
            texture=[name(r[0]) for r in tex_ref], sphere=[name(r[1]) for r in tex_ref],
            sphere_mode=np.array([r[2] for r in tex_ref], np.uint8),
            toon=[f"toon{r + 1:02d}.bmp" if s else name(r) for r, s in zip(toon_ref, shared)],
            toon_shared=np.array(shared, bool), index_start=np.cumsum(index_count) - index_count,
            index_count=index_count, memo=memo)

    # ------------------------------------------------------------ bones

    def _bones(self) -> Bones:
        cur = self.cur
        count = cur.count("bone", 20)
        b = self.fmt("bone")
        names, names_en, ik = [], [], {}
        head = np.zeros((count, 3), F32)
        level = np.zeros(count, np.int32)
        flags = np.zeros(count, np.uint16)
        tail_offset, fixed_axis, local_x, local_z = (np.zeros((count, 3), F32) for _ in range(4))
        tail_index, append_parent = np.full(count, -1, np.int32), np.full(count, -1, np.int32)
        append_ratio, external = np.zeros(count, F32), np.zeros(count, np.int32)
        parent = np.full(count, -1, np.int32)
        for i in range(count):
            names.append(self.text("bone name"))
            names_en.append(self.text("bone English name"))
            x, y, z, parent[i], level[i], flag = cur.unpack(f"3f{b}iH", f"bone {i}")
            head[i], flags[i] = (x, y, z), flag
            if flag & BoneFlag.TAIL_IS_BONE:
                tail_index[i] = self.index("bone", f"bone {i} tail")
            else:
                tail_offset[i] = cur.unpack("3f", f"bone {i} tail")
            if flag & (BoneFlag.APPEND_ROTATE | BoneFlag.APPEND_TRANSLATE):
                append_parent[i], append_ratio[i] = cur.unpack(f"{b}f", f"bone {i} append")
            if flag & BoneFlag.FIXED_AXIS:
                fixed_axis[i] = cur.unpack("3f", f"bone {i} fixed axis")
            if flag & BoneFlag.LOCAL_AXIS:
                local_x[i], local_z[i] = np.reshape(cur.unpack("6f", f"bone {i} local axes"), (2, 3))
            if flag & BoneFlag.EXTERNAL_PARENT:
                external[i] = cur.i32(f"bone {i} external parent")
            if flag & BoneFlag.IK:
                ik[i] = self._ik_chain(i)
        for what, values in (("parent bone index", parent), ("tail bone index", tail_index),
                             ("append parent bone index", append_parent)):
            check_range(cur, what, values, count, allow_none=True)
        self._drop_empty_ik(names, ik)
        refs = [bone for chain in ik.values() for bone in (chain.target, *(link.bone for link in chain.links))]
        check_range(cur, "IK bone index", np.array(refs, np.int64), count)
        return Bones(names=names, names_en=names_en, positions=head * FLIP_Z, parent=parent,
                     transform_level=level, flags=flags, tail_index=tail_index,
                     tail_offset=tail_offset * FLIP_Z, append_parent=append_parent, append_ratio=append_ratio,
                     fixed_axis=fixed_axis * FLIP_Z, local_x=local_x * FLIP_Z, local_z=local_z * FLIP_Z,
                     external_key=external, ik=ik)

    def _drop_empty_ik(self, names: list[str], ik: dict[int, IKChain]) -> None:
        """An IK chain with no target (index -1) moves nothing; MMD ignores it, so do we, with a warning."""
        for bone in [bone for bone, chain in ik.items() if chain.target == -1]:
            del ik[bone]
            self.cur.warnings.append(f"IK bone {names[bone]!r} has no target bone; its IK is ignored")

    def _ik_chain(self, bone: int) -> IKChain:
        cur, b = self.cur, self.fmt("bone")
        target, loops, limit_angle, count = cur.unpack(f"{b}ifi", f"bone {bone} IK")
        if count < 0 or count * 2 > cur.remaining:
            raise cur.error(f"bone {bone}: bad IK link count {count}")
        links = []
        for _ in range(count):
            link, limited = cur.unpack(f"{b}B", f"bone {bone} IK link")
            if limited:
                limits = np.reshape(cur.unpack("6f", f"bone {bone} IK limits"), (2, 3))
                links.append(IKLink(link, *mirror_euler_limits(*limits)))
            else:
                links.append(IKLink(link))
        return IKChain(target=target, loops=loops, limit_angle=float(F32(limit_angle)), links=links)

    # ------------------------------------------------------------ morphs

    def _morph(self) -> Morph:
        cur = self.cur
        name, name_en = self.text("morph name"), self.text("morph English name")
        panel, kind = cur.unpack("BB", f"morph {name!r}")
        if kind not in _MORPH_LAYOUT:
            raise cur.error(f"morph {name!r}: unknown morph type {kind}")
        kind = MorphKind(kind)
        target, floats, flag = _MORPH_LAYOUT[kind]
        fields = [("index", self.dtype(target))] + ([("flag", "u1")] if flag else [])
        dtype = np.dtype(fields + [("data", "<f4", floats)])
        rec = cur.array(dtype, cur.count(f"morph {name!r} offset", dtype.itemsize), f"morph {name!r}")
        data = rec["data"].reshape(len(rec), floats).astype(F32)
        op = None
        if kind == MorphKind.MATERIAL:
            op = rec["flag"].copy()
        elif kind == MorphKind.IMPULSE:
            data = np.concatenate([rec["flag"][:, None].astype(F32), data], axis=1)
        if kind in MORPH_MIRROR:
            data *= MORPH_MIRROR[kind]
        return Morph(name=name, name_en=name_en, panel=panel, kind=kind,
                     index=rec["index"].astype(np.int32), data=data, op=op)

    def _check_morph_targets(self, morphs: list[Morph], vertices: int, bones: int, materials: int,
                             rigids: int) -> None:
        counts = {"vertex": vertices, "bone": bones, "material": materials, "morph": len(morphs),
                  "rigid": rigids}
        for morph in morphs:
            target = _MORPH_LAYOUT[morph.kind][0]
            if morph.kind == MorphKind.MATERIAL:
                self._drop_missing_materials(morph, materials)
            check_range(self.cur, f"morph {morph.name!r} {target} index", morph.index, counts[target],
                        allow_none=morph.kind == MorphKind.MATERIAL)

    def _drop_missing_materials(self, morph: Morph, materials: int) -> None:
        """Rows naming a material the model lacks are skipped by MMD; skip them too, with a warning."""
        bad = (morph.index < -1) | (morph.index >= materials)
        if bad.any():
            self.cur.warnings.append(f"material morph {morph.name!r}: {int(bad.sum())} row(s) for material "
                                     f"{int(morph.index[bad][0])}, which the model lacks (it has {materials}); "
                                     f"ignored")
            morph.index, morph.data, morph.op = morph.index[~bad], morph.data[~bad], morph.op[~bad]

    # ------------------------------------------------------------ sections parsed only to validate

    def _display_frames(self, bones: int, morphs: int) -> None:
        cur = self.cur
        for i in range(cur.count("display frame", 10)):
            self._names("display frame")
            cur.u8("display frame flag")
            for _ in range(cur.count(f"display frame {i} element", 2)):
                is_morph = cur.u8(f"display frame {i} element type")
                if is_morph > 1:
                    raise cur.error(f"display frame {i}: unknown element type {is_morph}")
                kind, count = ("morph", morphs) if is_morph else ("bone", bones)
                check_range(cur, f"display frame {i} {kind} index",
                            np.array([self.index(kind, "display frame element")]), count)

    def _rigid_bodies(self, bones: int) -> int:
        cur = self.cur
        count = cur.count("rigid body", 10)
        body = np.dtype([("bone", self.dtype("bone")), ("rest", "u1", 61)])
        attached = np.empty(count, np.int64)
        for i in range(count):
            self._names("rigid body")
            attached[i] = cur.array(body, 1, f"rigid body {i}")["bone"][0]
        check_range(cur, "rigid body bone index", attached, bones, allow_none=True)
        return count

    def _joints(self, rigids: int) -> int:
        cur = self.cur
        count = cur.count("joint", 10)
        joint = np.dtype([("type", "u1"), ("bodies", self.dtype("rigid"), 2), ("rest", "u1", 96)])
        bodies = np.empty((count, 2), np.int64)
        for i in range(count):
            self._names("joint")
            bodies[i] = cur.array(joint, 1, f"joint {i}")["bodies"][0]
        check_range(cur, "joint rigid body index", bodies, rigids, allow_none=True)
        return count

    def _soft_bodies(self, materials: int, rigids: int, vertices: int) -> None:
        cur = self.cur
        anchor = np.dtype([("rigid", self.dtype("rigid")), ("vertex", self.dtype("vertex")), ("near", "u1")])
        for i in range(cur.count("soft body", 10)):
            self._names("soft body")
            cur.u8("soft body shape")
            check_range(cur, f"soft body {i} material index",
                        np.array([self.index("material", "soft body material")]), materials, allow_none=True)
            cur.skip(_SOFT_BODY_FIXED, f"soft body {i}")
            anchors = cur.array(anchor, cur.count(f"soft body {i} anchor", anchor.itemsize), "soft body anchors")
            check_range(cur, f"soft body {i} anchor rigid body index", anchors["rigid"], rigids)
            check_range(cur, f"soft body {i} anchor vertex index", anchors["vertex"], vertices)
            pins = cur.array(self.dtype("vertex"), cur.count(f"soft body {i} pin", self.sizes["vertex"]),
                             "soft body pins")
            check_range(cur, f"soft body {i} pin vertex index", pins, vertices)


def _check_index_ranges(cur: Cursor, index_count: np.ndarray, index_total: int) -> None:
    """Materials draw consecutive runs of the index list; together they may not run past it."""
    if np.any(index_count < 0) or np.any(index_count % 3):
        raise cur.error("a material index count is negative or not a multiple of 3")
    if index_count.sum() > index_total:
        raise cur.error(f"material index ranges ({int(index_count.sum())} indices) exceed the "
                        f"{index_total} face indices")


def _empty_vertices(count: int, extra_uv: int) -> Vertices:
    zeros = np.zeros((count, 3), F32)
    return Vertices(positions=zeros, normals=zeros.copy(), uv=np.zeros((count, 2), F32),
                    extra_uv=np.zeros((count, extra_uv, 4), F32), deform=np.zeros(count, np.uint8),
                    bone_indices=np.full((count, 4), -1, np.int32), bone_weights=np.zeros((count, 4), F32),
                    sdef_c=zeros.copy(), sdef_r0=zeros.copy(), sdef_r1=zeros.copy(),
                    edge_scale=np.zeros(count, F32))


def _scatter_vertices(out: Vertices, rows: np.ndarray, rec: np.ndarray, deform: Deform) -> None:
    """One deform type's records into the per-vertex arrays, converted to the character frame."""
    slots, weights, sdef = DEFORM_LAYOUT[deform]
    out.positions[rows] = rec["pos"] * FLIP_Z
    out.normals[rows] = rec["normal"] * FLIP_Z
    out.uv[rows] = rec["uv"]
    if out.extra_uv.shape[1]:
        out.extra_uv[rows] = rec["extra"]
    out.deform[rows] = deform
    out.bone_indices[rows, :slots] = rec["bones"].reshape(len(rows), slots)
    if weights == 1:
        w = rec["weights"].reshape(len(rows))
        out.bone_weights[rows, 0], out.bone_weights[rows, 1] = w, 1 - w
    elif weights:
        out.bone_weights[rows] = rec["weights"]
    else:
        out.bone_weights[rows, 0] = 1
    if sdef:
        points = rec["sdef"] * FLIP_Z
        out.sdef_c[rows], out.sdef_r0[rows], out.sdef_r1[rows] = points[:, 0], points[:, 1], points[:, 2]
    out.edge_scale[rows] = rec["edge"]

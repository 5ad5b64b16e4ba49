"""PMD reader -> :class:`renderer.model.Model`, mapped onto PMX's concepts.

PMD records are all fixed-size, so each section is one ``np.frombuffer``. Names are
Shift-JIS (cp932) in fixed-width fields padded with NUL or 0xFD. The optional tail
sections (English names, toon list, physics) are read when present; a section cut
short is an error, a file ending exactly between sections is a valid older PMD.
"""
from __future__ import annotations

import re

import numpy as np

from renderer.binary import Cursor, check_range, file_boundary
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
from renderer.pmx import FLIP_Z, WINDING, mirror_euler_limits

MAGIC = b"Pmd"
NONE16 = 0xFFFF
DEFAULT_TOONS = [f"toon{i:02d}.bmp" for i in range(1, 11)]
SHARED_TOON = re.compile(r"toon(0[1-9]|10)\.bmp", re.IGNORECASE)
SPHERE_MODES = {".sph": 1, ".spa": 2}
KNEE_LIMITS = (np.array([-np.pi, 0, 0], np.float32), np.array([-0.5 * np.pi / 180, 0, 0], np.float32))

VERTEX = np.dtype([("pos", "<f4", 3), ("normal", "<f4", 3), ("uv", "<f4", 2), ("bones", "<u2", 2),
                   ("weight", "u1"), ("no_edge", "u1")])
MATERIAL = np.dtype([("diffuse", "<f4", 4), ("shininess", "<f4"), ("specular", "<f4", 3), ("ambient", "<f4", 3),
                     ("toon", "u1"), ("edge", "u1"), ("count", "<u4"), ("texture", "S20")])
BONE = np.dtype([("name", "S20"), ("parent", "<u2"), ("tail", "<u2"), ("type", "u1"), ("ik", "<u2"),
                 ("pos", "<f4", 3)])
SKIN_OFFSET = np.dtype([("index", "<u4"), ("offset", "<f4", 3)])
RIGID_BODY_SIZE = 83
JOINT_SIZE = 124


def read_pmd(data: bytes, path: str | None = None) -> Model:
    """Parse a whole PMD file; raises ModelError naming ``path`` for anything malformed."""
    with file_boundary(path):
        return _PmdParser(Cursor(data, path)).parse()


def split_texture_field(field: str) -> tuple[str | None, str | None, int]:
    """PMD packs texture and sphere into one field: "tex.bmp*sphere.sph" -> (texture, sphere, mode)."""
    texture, sphere = None, None
    for part in (p for p in field.split("*") if p):
        suffix = part[part.rfind("."):].lower() if "." in part else ""
        if suffix in SPHERE_MODES:
            sphere = part
        else:
            texture = part
    return texture, sphere, SPHERE_MODES[sphere[sphere.rfind("."):].lower()] if sphere else 0


class _PmdParser:
    def __init__(self, cursor: Cursor):
        self.c = cursor

    def parse(self) -> Model:
        c = self.c
        if c.take(3, "magic") != MAGIC:
            raise c.error("not a PMD file (bad magic)")
        (version,) = c.unpack("f", "version")
        name, comment = self.c.fixed_text(20, "model name"), self.c.fixed_text(256, "comment")
        raw_vertices = c.array(VERTEX, self.count("vertex", VERTEX.itemsize), "vertices")
        if not len(raw_vertices):
            raise c.error("no vertices: not a character model")
        flat = c.array("<u2", self.count("face index", 2), "face indices")
        if len(flat) % 3:
            raise c.error(f"face index count {len(flat)} is not a multiple of 3")
        check_range(c, "face vertex index", flat, len(raw_vertices))
        raw_materials = c.array(MATERIAL, self.count("material", MATERIAL.itemsize), "materials")
        raw_bones = c.array(BONE, self.count("bone", BONE.itemsize, "H"), "bones")
        bones = self._bones(raw_bones)
        check_range(c, "vertex bone index", raw_vertices["bones"], len(bones))
        ik = self._ik_chains(bones)
        morphs = self._skins(len(raw_vertices))
        frames = self._display_lists(len(morphs), len(bones))
        toons = list(DEFAULT_TOONS)
        model_en = ("", "")
        if c.remaining and c.u8("English names flag"):
            model_en = self._english(bones, morphs, frames)
        if c.remaining:
            toons = [self.c.fixed_text(100, "toon name") for _ in range(10)]
        rigid_count = joint_count = 0
        if c.remaining:
            rigid_count = self._skip_records("rigid body", RIGID_BODY_SIZE)
            joint_count = self._skip_records("joint", JOINT_SIZE)
        bones.ik = ik
        return Model(name=name, name_en=model_en[0], comment=comment,
                     format="pmd", version=round(float(version), 3), vertices=_vertices(raw_vertices),
                     indices=flat.reshape(-1, 3)[:, WINDING].astype(np.uint32),
                     materials=self._materials(raw_materials, toons, len(flat)), bones=bones, morphs=morphs,
                     textures=[], rigid_body_count=rigid_count, joint_count=joint_count, warnings=c.warnings)

    def count(self, what: str, record_size: int, fmt: str = "I") -> int:
        return self.fits(self.c.unpack(fmt, f"{what} count")[0], record_size, what)

    def fits(self, value: int, record_size: int, what: str) -> int:
        """A record count, rejected before allocating when the rest of the file cannot hold it."""
        if value * record_size > self.c.remaining:
            raise self.c.error(f"truncated file: {value} {what} records do not fit in the "
                               f"{self.c.remaining} bytes left")
        return value

    def _skip_records(self, what: str, size: int) -> int:
        count = self.count(what, size)
        self.c.skip(count * size, what)
        return count

    # ---------------------------------------------------------------- materials

    def _materials(self, raw: np.ndarray, toons: list[str], index_total: int) -> Materials:
        c = self.c
        counts = raw["count"].astype(np.int64)
        if counts.sum() > index_total or np.any(counts % 3):
            raise c.error(f"material index counts (total {int(counts.sum())}) exceed the {index_total} "
                          f"face indices or are not multiples of 3")
        fields = [split_texture_field(self.c.fixed_field(t, "texture name")) for t in raw["texture"]]
        toon = [None if t >= len(toons) or not toons[t] else toons[t] for t in raw["toon"].tolist()]
        diffuse = raw["diffuse"].astype(np.float32)
        shadow = np.where(np.isclose(diffuse[:, 3], 0.98), 0,
                          MaterialFlag.GROUND_SHADOW | MaterialFlag.SELF_SHADOW_MAP | MaterialFlag.SELF_SHADOW)
        flags = (np.where(diffuse[:, 3] < 1, MaterialFlag.DOUBLE_SIDED, 0) | shadow
                 | np.where(raw["edge"] > 0, MaterialFlag.EDGE, 0)).astype(np.uint8)
        n = len(raw)
        return Materials(
            names=[f"材質{i + 1}" for i in range(n)], names_en=[f"material{i + 1}" for i in range(n)],
            diffuse=diffuse, specular=raw["specular"].astype(np.float32),
            shininess=raw["shininess"].astype(np.float32), ambient=raw["ambient"].astype(np.float32),
            flags=flags, edge_color=np.tile(np.array([0, 0, 0, 1], np.float32), (n, 1)),
            edge_size=np.ones(n, np.float32), texture=[f[0] for f in fields], sphere=[f[1] for f in fields],
            sphere_mode=np.array([f[2] for f in fields], np.uint8), toon=toon,
            toon_shared=np.array([bool(t and SHARED_TOON.fullmatch(t)) for t in toon], bool),
            index_start=np.cumsum(counts) - counts, index_count=counts, memo=[""] * n)

    # ---------------------------------------------------------------- bones and IK

    def _bones(self, raw: np.ndarray) -> Bones:
        c = self.c
        n = len(raw)
        kind = raw["type"].astype(np.int64)
        parent, tail, ik_field = (raw[k].astype(np.int64) for k in ("parent", "tail", "ik"))
        parent[parent == NONE16] = -1
        tail[(tail == NONE16) | (tail == 0)] = -1
        check_range(c, "parent bone index", parent, n, allow_none=True)
        check_range(c, "tail bone index", tail, n, allow_none=True)
        flags = np.full(n, BoneFlag.TAIL_IS_BONE | BoneFlag.ROTATABLE | BoneFlag.VISIBLE | BoneFlag.ENABLED)
        flags |= np.where(np.isin(kind, (1, 2)), BoneFlag.TRANSLATABLE, 0)
        flags |= np.where(kind == 2, BoneFlag.IK, 0)
        flags &= np.where(kind == 7, ~BoneFlag.VISIBLE, -1)
        # 5: rotation follows the bone in the IK field; 9: follows the tail bone by IK-field percent
        append_parent = np.where(kind == 5, ik_field, np.where(kind == 9, tail, -1))
        append_ratio = np.where(kind == 5, 1.0, np.where(kind == 9, ik_field / 100.0, 0.0))
        append_parent[append_parent == NONE16] = -1
        check_range(c, "append parent bone index", append_parent, n, allow_none=True)
        flags |= np.where(append_parent >= 0, BoneFlag.APPEND_ROTATE, 0)
        tail = np.where(kind == 9, -1, tail)
        positions = raw["pos"].astype(np.float32) * FLIP_Z
        twist = (kind == 8) & (tail >= 0)
        axis = positions[np.maximum(tail, 0)] - positions
        length = np.linalg.norm(axis, axis=1, keepdims=True)
        fixed_axis = np.where(twist[:, None] & (length > 0), axis / np.where(length > 0, length, 1), 0)
        flags |= np.where(twist, BoneFlag.FIXED_AXIS, 0)
        zeros = np.zeros((n, 3), np.float32)
        return Bones(names=[self.c.fixed_field(r, "bone name") for r in raw["name"]], names_en=[""] * n,
                     positions=positions, parent=parent.astype(np.int32), transform_level=np.zeros(n, np.int32),
                     flags=flags.astype(np.uint16), tail_index=tail.astype(np.int32), tail_offset=zeros,
                     append_parent=append_parent.astype(np.int32), append_ratio=append_ratio.astype(np.float32),
                     fixed_axis=fixed_axis.astype(np.float32), local_x=zeros.copy(), local_z=zeros.copy(),
                     external_key=np.zeros(n, np.int32))

    def _ik_chains(self, bones: Bones) -> dict[int, IKChain]:
        c = self.c
        chains = {}
        for _ in range(self.count("IK chain", 11, "H")):
            bone, target, length, loops, weight = c.unpack("HHBHf", "IK chain")
            links = c.array("<u2", length, "IK links").astype(np.int64)
            check_range(c, "IK bone index", np.array([bone, target, *links]), len(bones))
            chain = IKChain(target=target, loops=loops, limit_angle=float(weight) * 4, links=[])
            for link in links.tolist():
                limits = mirror_euler_limits(*KNEE_LIMITS) if "ひざ" in bones.names[link] else (None, None)
                chain.links.append(IKLink(link, *limits))
            chains[bone] = chain
            bones.flags[bone] |= BoneFlag.IK
        return chains

    # ---------------------------------------------------------------- skins (morphs) and display lists

    def _skins(self, vertex_count: int) -> list[Morph]:
        c = self.c
        morphs: list[Morph] = []
        base = np.zeros(0, np.int64)
        for i in range(self.count("skin", 25, "H")):
            name = self.c.fixed_text(20, "skin name")
            count, panel = c.unpack("IB", "skin header")
            fitting = self.fits(count, SKIN_OFFSET.itemsize, f"skin {name!r} offset")
            raw = c.array(SKIN_OFFSET, fitting, f"skin {name!r}")
            index = raw["index"].astype(np.int64)
            if i == 0 and panel == 0:
                check_range(c, f"base skin {name!r} vertex index", index, vertex_count)
                base = index
                data = np.zeros((len(raw), 3), np.float32)
            else:
                check_range(c, f"skin {name!r} base index", index, len(base))
                index = base[index]
                data = raw["offset"].astype(np.float32) * FLIP_Z
            morphs.append(Morph(name=name, name_en="", panel=min(int(panel), 4), kind=MorphKind.VERTEX,
                                index=index.astype(np.int32), data=data))
        return morphs

    def _display_lists(self, morph_count: int, bone_count: int) -> int:
        """Walk the display lists; returns the number of bone display frames (the English section needs it)."""
        c = self.c
        skins = c.array("<u2", c.u8("skin display count"), "skin display list")
        check_range(c, "skin display index", skins, morph_count)
        frames = c.u8("bone display frame count")
        c.skip(50 * frames, "bone display frame names")
        shown = c.array([("bone", "<u2"), ("frame", "u1")], self.count("bone display", 3), "bone display list")
        check_range(c, "bone display index", shown["bone"], bone_count)
        return frames

    def _english(self, bones: Bones, morphs: list[Morph], frames: int) -> tuple[str, str]:
        name_en, comment_en = self.c.fixed_text(20, "English model name"), self.c.fixed_text(256, "English comment")
        bones.names_en = [self.c.fixed_text(20, "English bone name") for _ in bones.names]
        for morph in morphs[1:]:
            morph.name_en = self.c.fixed_text(20, "English skin name")
        self.c.skip(50 * frames, "English display frame names")
        return name_en, comment_en


def _vertices(raw: np.ndarray) -> Vertices:
    n = len(raw)
    weights = np.zeros((n, 4), np.float32)
    weights[:, 0] = np.minimum(raw["weight"], 100) / np.float32(100)
    weights[:, 1] = 1 - weights[:, 0]
    bones = np.full((n, 4), -1, np.int32)
    bones[:, :2] = raw["bones"]
    zeros = np.zeros((n, 3), np.float32)
    return Vertices(positions=raw["pos"] * FLIP_Z, normals=raw["normal"] * FLIP_Z, uv=raw["uv"].astype(np.float32),
                    extra_uv=np.zeros((n, 0, 4), np.float32), deform=np.full(n, Deform.BDEF2, np.uint8),
                    bone_indices=bones, bone_weights=weights, sdef_c=zeros, sdef_r0=zeros.copy(),
                    sdef_r1=zeros.copy(), edge_scale=np.where(raw["no_edge"] > 0, 0, 1).astype(np.float32))

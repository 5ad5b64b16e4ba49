"""The PMX writer: header choices, round trips through our loader and through pymeshio."""
from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

from renderer import loader
from renderer.errors import ModelError
from renderer.model import Bones, Deform, IKChain, IKLink, Materials, Model, Morph, MorphKind, Vertices
from renderer.pmx import read_pmx
from renderer.pmx_writer import index_size, required_version, texture_table, write_pmx
from renderer.synthetic import feature_model, large_model, prop_model

pymeshio_reader = pytest.importorskip("pymeshio.pmx.reader", reason="pymeshio 3.0.1 is the test oracle")

FLIP_Z = np.array([1, 1, -1], np.float32)


# ---------------------------------------------------------------- comparison

def assert_models_equal(expected: Model, actual: Model, *, same_format: bool = True) -> None:
    """Every field a reader fills from the file; path, hashes and texture resolution are not in it."""
    for name in ("name", "name_en", "comment", "rigid_body_count", "joint_count"):
        assert getattr(actual, name) == getattr(expected, name), name
    if same_format:
        assert (actual.format, round(actual.version, 3)) == (expected.format, expected.version)
    assert actual.textures == texture_table(expected)
    _assert_fields_equal("vertices", expected.vertices, actual.vertices)
    np.testing.assert_array_equal(actual.indices, expected.indices, err_msg="indices")
    _assert_fields_equal("materials", expected.materials, actual.materials)
    _assert_fields_equal("bones", expected.bones, actual.bones, skip=("ik",))
    assert actual.bones.ik.keys() == expected.bones.ik.keys()
    for bone, chain in expected.bones.ik.items():
        _assert_ik_equal(chain, actual.bones.ik[bone])
    assert len(actual.morphs) == len(expected.morphs)
    for want, got in zip(expected.morphs, actual.morphs):
        assert (got.name, got.name_en, got.panel, got.kind) == (want.name, want.name_en, want.panel, want.kind)
        np.testing.assert_array_equal(got.index, want.index, err_msg=want.name)
        np.testing.assert_allclose(got.data, want.data, atol=1e-6, err_msg=want.name)
        if want.kind == MorphKind.MATERIAL:
            np.testing.assert_array_equal(got.op, want.op, err_msg=want.name)


def _assert_fields_equal(what: str, expected, actual, skip: tuple[str, ...] = ()) -> None:
    for f in dataclasses.fields(expected):
        if f.name in skip:
            continue
        want, got = getattr(expected, f.name), getattr(actual, f.name)
        if isinstance(want, np.ndarray):
            assert got.shape == want.shape, f"{what}.{f.name}: shape {got.shape} != {want.shape}"
            if np.issubdtype(want.dtype, np.floating):
                np.testing.assert_allclose(got, want, atol=1e-6, err_msg=f"{what}.{f.name}")
            else:
                np.testing.assert_array_equal(got, want, err_msg=f"{what}.{f.name}")
        elif not (f.name == "memo" and not any(want) and not any(got)):
            assert list(got) == list(want), f"{what}.{f.name}"


def _assert_ik_equal(want: IKChain, got: IKChain) -> None:
    assert (got.target, got.loops) == (want.target, want.loops)
    assert got.limit_angle == pytest.approx(want.limit_angle)
    assert [link.bone for link in got.links] == [link.bone for link in want.links]
    for a, b in zip(want.links, got.links):
        assert (a.limit_min is None) == (b.limit_min is None)
        if a.limit_min is not None:
            np.testing.assert_allclose(b.limit_min, a.limit_min, atol=1e-6)
            np.testing.assert_allclose(b.limit_max, a.limit_max, atol=1e-6)


# ---------------------------------------------------------------- pymeshio as an independent reader

def read_with_pymeshio(path: Path) -> Model:
    """pymeshio's parse, converted to the project frame as model.py describes (PMX 2.0, no extra UV)."""
    pmx = pymeshio_reader.read_from_file(str(path))
    table = pmx.textures

    def name(index: int) -> str | None:
        return None if index < 0 else table[index]

    counts = np.array([m.vertex_count for m in pmx.materials], np.int64)
    materials = Materials(
        names=[m.name for m in pmx.materials], names_en=[m.english_name for m in pmx.materials],
        diffuse=np.array([[*_rgb(m.diffuse_color), m.alpha] for m in pmx.materials], np.float32),
        specular=np.array([_rgb(m.specular_color) for m in pmx.materials], np.float32),
        shininess=np.array([m.specular_factor for m in pmx.materials], np.float32),
        ambient=np.array([_rgb(m.ambient_color) for m in pmx.materials], np.float32),
        flags=np.array([m.flag for m in pmx.materials], np.uint8),
        edge_color=np.array([_rgba(m.edge_color) for m in pmx.materials], np.float32),
        edge_size=np.array([m.edge_size for m in pmx.materials], np.float32),
        texture=[name(m.texture_index) for m in pmx.materials],
        sphere=[name(m.sphere_texture_index) for m in pmx.materials],
        sphere_mode=np.array([m.sphere_mode for m in pmx.materials], np.uint8),
        toon=[f"toon{m.toon_texture_index + 1:02d}.bmp" if m.toon_sharing_flag else name(m.toon_texture_index)
              for m in pmx.materials],
        toon_shared=np.array([m.toon_sharing_flag == 1 for m in pmx.materials]),
        index_start=np.cumsum(counts) - counts, index_count=counts, memo=[m.comment for m in pmx.materials])
    return Model(name=pmx.name, name_en=pmx.english_name, comment=pmx.comment, format="pmx",
                 version=pmx.version, vertices=_pymeshio_vertices(pmx.vertices),
                 indices=np.array(pmx.indices, np.uint32).reshape(-1, 3)[:, [0, 2, 1]],
                 materials=materials, bones=_pymeshio_bones(pmx.bones),
                 morphs=[_pymeshio_morph(m) for m in pmx.morphs], textures=list(table),
                 rigid_body_count=len(pmx.rigidbodies), joint_count=len(pmx.joints))


def _rgb(colour) -> tuple[float, float, float]:
    return colour.r, colour.g, colour.b


def _rgba(colour) -> tuple[float, float, float, float]:
    return colour.r, colour.g, colour.b, colour.a


def _pymeshio_vertices(vertices) -> Vertices:
    n = len(vertices)
    kinds = {"Bdef1": Deform.BDEF1, "Bdef2": Deform.BDEF2, "Bdef4": Deform.BDEF4, "Sdef": Deform.SDEF}
    deform = np.array([kinds[type(v.deform).__name__] for v in vertices], np.uint8)
    indices, weights = np.full((n, 4), -1, np.int32), np.zeros((n, 4), np.float32)
    sdef = np.zeros((n, 3, 3), np.float32)
    for i, v in enumerate(vertices):
        d = v.deform
        slots = [d.index0] + [getattr(d, f"index{k}") for k in (1, 2, 3) if hasattr(d, f"index{k}")]
        indices[i, :len(slots)] = slots
        if deform[i] == Deform.BDEF1:
            weights[i, 0] = 1
        elif deform[i] == Deform.BDEF4:
            weights[i] = [d.weight0, d.weight1, d.weight2, d.weight3]
        else:
            weights[i, :2] = [d.weight0, np.float32(1) - np.float32(d.weight0)]
        if deform[i] == Deform.SDEF:
            sdef[i] = [list(d.sdef_c), list(d.sdef_r0), list(d.sdef_r1)]
    sdef *= FLIP_Z
    return Vertices(
        positions=np.array([list(v.position) for v in vertices], np.float32) * FLIP_Z,
        normals=np.array([list(v.normal) for v in vertices], np.float32) * FLIP_Z,
        uv=np.array([list(v.uv) for v in vertices], np.float32), extra_uv=np.zeros((n, 0, 4), np.float32),
        deform=deform, bone_indices=indices, bone_weights=weights,
        sdef_c=sdef[:, 0], sdef_r0=sdef[:, 1], sdef_r1=sdef[:, 2],
        edge_scale=np.array([v.edge_factor for v in vertices], np.float32))


def _pymeshio_bones(bones) -> Bones:
    def vec(values) -> np.ndarray:
        return np.array([list(v) for v in values], np.float32)

    tail_is_bone = np.array([b.getConnectionFlag() for b in bones], bool)
    appends = np.array([b.getExternalRotationFlag() or b.getExternalTranslationFlag() for b in bones], bool)
    return Bones(
        names=[b.name for b in bones], names_en=[b.english_name for b in bones],
        positions=vec(b.position for b in bones) * FLIP_Z,
        parent=np.array([b.parent_index for b in bones], np.int32),
        transform_level=np.array([b.layer for b in bones], np.int32),
        flags=np.array([b.flag for b in bones], np.uint16),
        tail_index=np.where(tail_is_bone, [b.tail_index for b in bones], -1).astype(np.int32),
        tail_offset=vec(b.tail_position for b in bones) * FLIP_Z * ~tail_is_bone[:, None],
        append_parent=np.where(appends, [b.effect_index for b in bones], -1).astype(np.int32),
        append_ratio=np.where(appends, [b.effect_factor for b in bones], 0).astype(np.float32),
        fixed_axis=vec(b.fixed_axis for b in bones) * FLIP_Z,
        local_x=vec(b.local_x_vector for b in bones) * FLIP_Z,
        local_z=vec(b.local_z_vector for b in bones) * FLIP_Z,
        external_key=np.array([b.external_key if b.getExternalParentDeformFlag() else 0 for b in bones], np.int32),
        ik={i: _pymeshio_ik(b.ik) for i, b in enumerate(bones) if b.getIkFlag()})


def _pymeshio_ik(ik) -> IKChain:
    """Mirroring z reverses rotations about x and y, so those limits negate and swap."""
    sign = np.array([-1, -1, 1], np.float32)

    def link(item) -> IKLink:
        if not item.limit_angle:
            return IKLink(item.bone_index)
        low, high = np.array(list(item.limit_min), np.float32), np.array(list(item.limit_max), np.float32)
        return IKLink(item.bone_index, np.where(sign < 0, -high, low), np.where(sign < 0, -low, high))

    return IKChain(ik.target_index, ik.loop, ik.limit_radian, [link(item) for item in ik.link])


def _pymeshio_morph(m) -> Morph:
    kind = MorphKind(m.morph_type)
    if kind == MorphKind.MATERIAL:
        rows = [[*_rgba(d.diffuse), *_rgb(d.specular), d.specular_factor, *_rgb(d.ambient), *_rgba(d.edge_color),
                 d.edge_size, *_rgba(d.texture_factor), *_rgba(d.sphere_texture_factor), *_rgba(d.toon_texture_factor)]
                for d in m.data]
        return Morph(m.name, m.english_name, m.panel, kind, np.array([d.material_index for d in m.data], np.int32),
                     np.array(rows, np.float32).reshape(-1, 28), np.array([d.calc_mode for d in m.data], np.uint8))
    if kind == MorphKind.GROUP:
        index, data = [o.morph_index for o in m.offsets], [[o.value] for o in m.offsets]
    elif kind == MorphKind.VERTEX:
        index, data = [o.vertex_index for o in m.offsets], [list(o.position_offset) * FLIP_Z for o in m.offsets]
    elif kind == MorphKind.BONE:
        index = [o.bone_index for o in m.offsets]
        data = [[*(list(o.position) * FLIP_Z), -o.rotation.x, -o.rotation.y, o.rotation.z, o.rotation.w]
                for o in m.offsets]
    else:
        index, data = [o.vertex_index for o in m.offsets], [o.uv.to_tuple() for o in m.offsets]
    return Morph(m.name, m.english_name, m.panel, kind, np.array(index, np.int32),
                 np.array(data, np.float32).reshape(len(index), -1))


# ---------------------------------------------------------------- tests

def _header(path: Path) -> tuple[bytes, float, tuple[int, ...]]:
    data = path.read_bytes()
    magic, version, count = struct.unpack_from("<4sfB", data)
    return magic, version, struct.unpack_from(f"<{count}B", data, 9)


@pytest.mark.parametrize("make, version", [
    (lambda: feature_model(2.0, extra_uv=0), 2.0),
    (prop_model, 2.0),
    (lambda: large_model(3_000, extra_uv=0), 2.0),
])
def test_pymeshio_reads_what_we_write(tmp_path, make, version):
    model = make()
    path = tmp_path / "model.pmx"
    assert write_pmx(model, path) == version
    assert_models_equal(model, read_with_pymeshio(path))


def test_utf8_text_reads_back(tmp_path):
    model = feature_model(2.0, extra_uv=0)
    write_pmx(model, tmp_path / "utf8.pmx", encoding="utf-8")
    assert _header(tmp_path / "utf8.pmx")[2][0] == 1
    assert_models_equal(model, read_with_pymeshio(tmp_path / "utf8.pmx"))


@pytest.mark.parametrize("make, expected", [
    (prop_model, dict(extra_uv=0, vertex=1, texture=1, material=1, bone=1, morph=1, rigid=1)),
    (lambda: feature_model(2.1), dict(extra_uv=4, vertex=2, bone=1, morph=1, rigid=1)),
    (lambda: large_model(70_000, bones=200), dict(extra_uv=1, vertex=4, bone=2)),
])
def test_header_chooses_index_sizes_from_counts(tmp_path, make, expected):
    write_pmx(make(), tmp_path / "m.pmx")
    magic, _, flags = _header(tmp_path / "m.pmx")
    header = dict(zip(["encoding", "extra_uv", "vertex", "texture", "material", "bone", "morph", "rigid"], flags))
    assert magic == b"PMX " and len(flags) == 8
    assert {k: header[k] for k in expected} == expected


def test_index_size_limits():
    assert [index_size(n) for n in (0, 127, 128, 32767, 32768)] == [1, 1, 2, 2, 4]
    assert [index_size(n, signed=False) for n in (255, 256, 65535, 65536)] == [1, 2, 2, 4]


def test_version_follows_the_features_used(tmp_path):
    assert required_version(feature_model(2.1)) == 2.1
    assert required_version(feature_model(2.0)) == 2.0
    assert write_pmx(feature_model(2.1), tmp_path / "a.pmx") == 2.1
    assert _header(tmp_path / "a.pmx")[1] == pytest.approx(2.1)
    assert write_pmx(prop_model(), tmp_path / "b.pmx", version=2.1) == 2.1
    with pytest.raises(ModelError, match=r"a\.pmx: .*PMX 2\.1 features"):
        write_pmx(feature_model(2.1), tmp_path / "a.pmx", version=2.0)


def test_2_1_file_ends_with_an_empty_soft_body_section(tmp_path):
    write_pmx(prop_model(), tmp_path / "20.pmx")
    write_pmx(prop_model(), tmp_path / "21.pmx", version=2.1)
    assert (tmp_path / "21.pmx").read_bytes()[-4:] == b"\0\0\0\0"
    assert (tmp_path / "21.pmx").stat().st_size == (tmp_path / "20.pmx").stat().st_size + 4


def test_texture_table_keeps_the_model_table_and_adds_material_references():
    model = feature_model(2.1)
    model.textures = ["unused.png", "face.bmp"]
    table = texture_table(model)
    assert table[:2] == ["unused.png", "face.bmp"]
    assert len(table) == len(set(table))
    referenced = {*model.materials.texture, *model.materials.sphere} - {None}
    referenced |= {t for t, shared in zip(model.materials.toon, model.materials.toon_shared) if t and not shared}
    assert referenced <= set(table)
    assert not any(name.startswith("toon0") for name in table)  # shared toons are numbers, not table entries


@pytest.mark.parametrize("break_model, message", [
    (lambda m: setattr(m, "indices", m.indices + np.uint32(10_000)), "face vertex index out of range"),
    (lambda m: m.materials.index_count.__setitem__(0, 3), "material index ranges"),
    (lambda m: m.vertices.bone_indices.__setitem__((0, 0), 99), "vertex bone index out of range"),
    (lambda m: m.materials.toon.__setitem__(0, "mytoon.bmp"), "shared toon 'mytoon.bmp'"),
    (lambda m: m.morphs[0].index.__setitem__(0, 10_000), "morph 'あ' index out of range"),
    (lambda m: m.vertices.deform.__setitem__(0, 7), "unknown vertex deform types"),
])
def test_bad_models_raise_model_error_naming_the_file(tmp_path, break_model, message):
    model = feature_model(2.1)
    break_model(model)
    with pytest.raises(ModelError, match=message) as error:
        write_pmx(model, tmp_path / "broken.pmx")
    assert str(error.value).startswith(str(tmp_path / "broken.pmx"))
    assert not (tmp_path / "broken.pmx").exists()


def test_unknown_encoding_and_version_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="unknown text encoding 'shift-jis'"):
        write_pmx(prop_model(), tmp_path / "x.pmx", encoding="shift-jis")
    with pytest.raises(ModelError, match="cannot write PMX version 1.0"):
        write_pmx(prop_model(), tmp_path / "x.pmx", version=1.0)


def test_impulse_morphs_get_enough_rigid_bodies(tmp_path):
    model = feature_model(2.1)
    model.rigid_body_count = 0
    write_pmx(model, tmp_path / "impulse.pmx")
    data = (tmp_path / "impulse.pmx").read_bytes()
    # rigid body section: written by count; the impulse morph refers to bodies 0 and 1
    assert model.morphs[-1].kind == MorphKind.IMPULSE
    assert data.count("剛体1".encode("utf-16-le")) == 1 and data.count("剛体2".encode("utf-16-le")) == 0


# ---------------------------------------------------------------- round trip through the project's reader

@pytest.mark.parametrize("make", [
    lambda: feature_model(2.1), lambda: feature_model(2.0), prop_model, lambda: large_model(5_000, version=2.1),
    lambda: large_model(70_000, bones=200),
], ids=["feature-2.1", "feature-2.0", "prop", "large-2.1", "large-4-byte-indices"])
def test_round_trip_through_the_reader(tmp_path, make):
    model = make()
    write_pmx(model, tmp_path / "model.pmx")
    loaded = read_pmx((tmp_path / "model.pmx").read_bytes(), str(tmp_path / "model.pmx"))
    assert_models_equal(model, loaded)
    write_pmx(loaded, tmp_path / "again.pmx")
    assert (tmp_path / "again.pmx").read_bytes() == (tmp_path / "model.pmx").read_bytes()


@pytest.mark.real_models
@pytest.mark.parametrize("key", ["appearance_miku", "miku_v2"])
def test_real_models_survive_a_rewrite(shared_models, tmp_path, key):
    """write_pmx(load_model(p)) keeps everything the reader read, for PMX and PMD sources."""
    original = loader.load_model(shared_models / SHARED[key])
    write_pmx(original, tmp_path / "rewritten.pmx")
    assert_models_equal(original, loader.load_model(tmp_path / "rewritten.pmx"), same_format=key != "miku_v2")

"""Generated test models: every format feature present, geometry sane, files as promised."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from renderer import loader
from renderer.model import BoneFlag, Deform, MaterialFlag, Model, MorphKind
from renderer.pmx_writer import required_version
from renderer.synthetic import (
    HUMAN_BONES,
    box,
    cylinder,
    feature_model,
    large_model,
    prop_model,
    write_feature_files,
    write_textures,
)

MODELS = {
    "feature-2.1": lambda: feature_model(2.1),
    "feature-2.0": lambda: feature_model(2.0),
    "large": lambda: large_model(4_000, version=2.1),
    "prop": prop_model,
}


@pytest.fixture(scope="module")
def feature() -> Model:
    return feature_model(2.1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_feature_files(tmp_path_factory.mktemp("features"), large_vertices=2_000)


def test_feature_model_has_every_deform_type_and_morph_kind(feature):
    assert set(np.unique(feature.vertices.deform)) == set(Deform)
    assert {m.kind for m in feature.morphs} == set(MorphKind)
    assert feature.vertices.extra_uv.shape[1] == 4
    assert required_version(feature) == feature.version == 2.1


def test_version_2_0_drops_only_the_2_1_features():
    model = feature_model(2.0)
    assert required_version(model) == model.version == 2.0
    assert set(np.unique(model.vertices.deform)) == set(Deform) - {Deform.QDEF}
    assert {m.kind for m in model.morphs} == set(MorphKind) - {MorphKind.FLIP, MorphKind.IMPULSE}


def test_feature_model_has_every_bone_feature(feature):
    b = feature.bones
    for flag in BoneFlag:
        assert np.any(b.flags & flag), flag.name
    assert set(HUMAN_BONES) <= set(b.names)
    rotating = np.flatnonzero(b.flags & BoneFlag.APPEND_ROTATE)
    assert np.all(b.append_parent[rotating] >= 0)
    chains = list(b.ik.values())
    assert chains and all(any(link.limit_min is not None for link in c.links) for c in chains)
    assert any(link.limit_min is None for c in chains for link in c.links)
    local = np.flatnonzero(b.flags & BoneFlag.LOCAL_AXIS)
    np.testing.assert_allclose(np.einsum("ij,ij->i", b.local_x[local], b.local_z[local]), 0, atol=1e-6)
    tails = np.flatnonzero(b.flags & BoneFlag.TAIL_IS_BONE)
    assert np.all(b.tail_index[tails] >= 0) and np.all(b.tail_offset[tails] == 0)


def test_feature_model_morphs_cover_the_wild_cases(feature):
    by_name = {m.name: m for m in feature.morphs}
    assert {"あ", "まばたき", "ウィンク", "ウィンク右", "ｳｨﾝｸ２右"} <= by_name.keys()  # half-width Shift-JIS name
    hide = [m for m in feature.morphs if m.kind == MorphKind.MATERIAL and np.any(m.data[:, 3] == 0)]
    assert hide and hide[0].op[0] == 0, "a multiply material morph that hides a part"
    assert any(m.kind == MorphKind.MATERIAL and -1 in m.index for m in feature.morphs), "an all-materials morph"
    groups = {i: set(m.index.tolist()) for i, m in enumerate(feature.morphs) if m.kind == MorphKind.GROUP}
    assert any(groups[i] & groups.keys() for i in groups), "a nested group"
    assert any(i in groups.get(j, ()) for i in groups for j in groups[i]), "a group cycle"
    impulse = next(m for m in feature.morphs if m.kind == MorphKind.IMPULSE)
    assert impulse.index.max() < feature.rigid_body_count


def test_feature_model_materials_cover_the_wild_cases(feature):
    m = feature.materials
    assert np.any(m.flags & MaterialFlag.DOUBLE_SIDED)
    assert np.any(m.flags & MaterialFlag.VERTEX_COLOR)
    assert set(m.sphere_mode.tolist()) == {0, 1, 2, 3}
    assert m.toon_shared.any() and (~m.toon_shared & np.array([t is not None for t in m.toon])).any()
    assert "hair.png" in m.texture and any("\\" in t for t in m.texture if t)


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_geometry_is_sane(make):
    model = make()
    v = model.vertices
    n = len(v)
    np.testing.assert_allclose(np.linalg.norm(v.normals, axis=1), 1, atol=1e-5)
    assert np.all((v.uv >= 0) & (v.uv <= 1)) and np.all((v.extra_uv >= 0) & (v.extra_uv <= 1))
    np.testing.assert_allclose(v.bone_weights.sum(1), 1, atol=1e-6)
    assert np.all((v.bone_indices >= -1) & (v.bone_indices < len(model.bones)))
    assert np.all(v.bone_weights[v.bone_indices < 0] == 0)
    assert np.all(v.bone_indices[np.arange(n), 0] >= 0)
    not_sdef = v.deform != Deform.SDEF
    assert not np.any(v.sdef_c[not_sdef]) and not np.any(v.sdef_r0[not_sdef])
    assert model.indices.dtype == np.uint32 and model.indices.max() < n
    m = model.materials
    assert m.index_count.sum() == model.indices.size
    np.testing.assert_array_equal(m.index_start, np.cumsum(m.index_count) - m.index_count)
    for morph in model.morphs:
        assert len(morph.index) == len(morph.data) > 0


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_faces_are_counter_clockwise_in_the_project_frame(make):
    model = make()
    p = model.vertices.positions[model.indices.astype(np.int64)]
    face_normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    vertex_normal = model.vertices.normals[model.indices.astype(np.int64)].sum(1)
    assert np.all(np.einsum("ij,ij->i", face_normal, vertex_normal) > 0)


def test_shapes_face_outwards():
    for mesh in (box((1, 2, 3), (2, 4, 6)), cylinder((0, 5, 0), 1, 3, axis="x", rings=3),
                 cylinder((0, 0, 0), 2, 1, axis="z")):
        centre = mesh.positions.mean(0)
        assert np.all(np.einsum("ij,ij->i", mesh.positions - centre, mesh.normals) > 0)
    b = box((1, 2, 3), (2, 4, 6))
    np.testing.assert_allclose(b.positions.min(0), [0, 0, 0])
    np.testing.assert_allclose(b.positions.max(0), [2, 4, 6])


def test_prop_is_not_a_character():
    model = prop_model()
    assert "頭" not in model.bones.names and not model.morphs and len(model.vertices) > 0


def test_large_model_size_and_mixed_deforms():
    model = large_model()
    assert abs(len(model.vertices) - 45_000) < 0.02 * 45_000
    assert set(np.unique(model.vertices.deform)) == {Deform.BDEF1, Deform.BDEF2, Deform.BDEF4, Deform.SDEF}
    assert len(model.materials) == 4 and model.morphs
    assert Deform.QDEF in large_model(2_000, version=2.1).vertices.deform


def test_textures_are_real_images(tmp_path):
    written = write_textures(tmp_path)
    referenced = {name.replace("\\", "/") for model in (feature_model(), prop_model())
                  for name in [*model.materials.texture, *model.materials.sphere,
                               *(t for t, s in zip(model.materials.toon, model.materials.toon_shared) if not s)]
                  if name}
    assert referenced <= {p.relative_to(tmp_path).as_posix() for p in written}
    hair = np.asarray(Image.open(tmp_path / "hair.png"))
    assert hair.shape[2] == 4 and (hair[..., 3] == 0).any() and (hair[..., 3] == 255).any()
    assert Image.open(tmp_path / "sphere.spa").format == "BMP"
    assert Image.open(tmp_path / "eye.tga").format == "TGA"
    toon = np.asarray(Image.open(tmp_path / "toon_face.bmp").convert("L"))
    assert toon[0].mean() > toon[-1].mean(), "toon ramps are lit at the top"


def test_feature_files(files):
    assert {"feature", "feature_20", "large", "prop", "missing_texture", "sjis_texture", "empty", "truncated",
            "bad_magic"} <= files.keys()
    assert all(path.is_file() for path in files.values())
    assert files["feature"].read_bytes()[:4] == b"PMX " and files["bad_magic"].read_bytes()[:4] != b"PMX "
    assert files["empty"].stat().st_size == 0
    assert 0 < files["truncated"].stat().st_size < files["feature"].stat().st_size
    missing = files["missing_texture"].read_bytes()
    assert "存在しない/ない.png".encode("utf-16-le") in missing
    assert "木目.png".encode("cp932") in os.listdir(os.fsencode(files["sjis_texture"].parent))
    assert "木目.png".encode("utf-16-le") in files["sjis_texture"].read_bytes()


def test_feature_files_load(files):
    from renderer.errors import ModelError

    for key in ("feature", "feature_20", "large", "prop", "missing_texture", "sjis_texture"):
        assert len(loader.load_model(files[key]).vertices) > 0
    assert "存在しない/ない.png" in " ".join(loader.load_model(files["missing_texture"]).textures_missing)
    for key in ("empty", "truncated", "bad_magic"):
        with pytest.raises(ModelError, match=files[key].name):
            loader.load_model(files[key])

"""The loader on the real third-party models, with pymeshio 3.0.1 as the independent oracle.

pymeshio reads the same files in MMD's left-handed frame; we undo our z flip and
winding reversal on our side and demand exact equality of every array it exposes.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import CHARACTERS, SHARED

from renderer.errors import ModelError
from renderer.loader import load_model
from renderer.model import Deform, Model, MorphKind

pytestmark = pytest.mark.real_models
pymeshio_pmx = pytest.importorskip("pymeshio.pmx.reader", reason="pymeshio 3.0.1 is the test oracle")
pymeshio_pmd = pytest.importorskip("pymeshio.pmd.reader", reason="pymeshio 3.0.1 is the test oracle")

UNFLIP = np.array([1, 1, -1], np.float32)
PMX_MODELS = ["appearance_miku", "appearance_miku_bdef"]
PMD_MODELS = ["miku_v2", "mokou", "gumi"]
EXPECTED_COUNTS = {  # vertices, triangles, materials, bones, morphs (../shared/models/README.md)
    "appearance_miku": (22511, 37459, 15, 130, 45), "miku_v2": (12354, 22961, 17, 140, 31),
    "mokou": (14699, 16530, 21, 194, 22), "gumi": (1438, 1695, 2, 59, 13),
}


def vec(items) -> np.ndarray:
    return np.array([[c.x, c.y, c.z] for c in items], np.float32)


def assert_mesh_equal(ours: Model, ref, position: str) -> None:
    """Our mesh arrays, taken back to the file's frame, against pymeshio's (PMX or PMD)."""
    v = ours.vertices
    np.testing.assert_array_equal(v.positions * UNFLIP, vec(getattr(r, position) for r in ref.vertices))
    np.testing.assert_array_equal(v.normals * UNFLIP, vec(r.normal for r in ref.vertices))
    np.testing.assert_array_equal(v.uv, np.array([[r.uv.x, r.uv.y] for r in ref.vertices], np.float32))
    np.testing.assert_array_equal(ours.indices[:, [0, 2, 1]].ravel(), ref.indices)
    np.testing.assert_array_equal(ours.materials.index_count, [m.vertex_count for m in ref.materials])


@pytest.fixture(scope="module")
def loaded(shared_models) -> dict[str, Model]:
    return {key: load_model(shared_models / SHARED[key], cache=False) for key in CHARACTERS}


@pytest.mark.parametrize("key", CHARACTERS)
def test_every_character_loads_with_its_documented_counts(loaded, key):
    model = loaded[key]
    counts = (len(model.vertices), len(model.indices), len(model.materials), len(model.bones), len(model.morphs))
    assert counts == EXPECTED_COUNTS.get(key, counts)
    assert model.sha256 and len(model.sha256) == 64
    assert model.materials.index_count.sum() == model.indices.size
    assert model.rigid_body_count > 0 and model.joint_count > 0


def test_dummy_pmd_is_rejected(shared_models):
    with pytest.raises(ModelError, match=r"dummy\.pmd: no vertices"):
        load_model(shared_models / SHARED["dummy"], cache=False)


@pytest.mark.parametrize("key", PMX_MODELS)
def test_pmx_arrays_equal_pymeshio(shared_models, loaded, key):
    ours = loaded[key]
    ref = pymeshio_pmx.read_from_file(str(shared_models / SHARED[key]))
    v = ours.vertices
    assert_mesh_equal(ours, ref, "position")
    np.testing.assert_array_equal(v.edge_scale, np.array([r.edge_factor for r in ref.vertices], np.float32))
    kinds = {"Bdef1": Deform.BDEF1, "Bdef2": Deform.BDEF2, "Bdef4": Deform.BDEF4, "Sdef": Deform.SDEF}
    np.testing.assert_array_equal(v.deform, [kinds[type(r.deform).__name__] for r in ref.vertices])
    first = np.array([[r.deform.index0, getattr(r.deform, "index1", -1)] for r in ref.vertices])
    np.testing.assert_array_equal(v.bone_indices[:, :2], first)
    two = (v.deform == Deform.BDEF2) | (v.deform == Deform.SDEF)
    w0 = np.array([getattr(r.deform, "weight0", 1.0) for r in ref.vertices], np.float32)
    np.testing.assert_array_equal(v.bone_weights[two, 0], w0[two])
    np.testing.assert_array_equal(v.bone_weights[two, 1], 1 - w0[two])
    sdef = [i for i, r in enumerate(ref.vertices) if type(r.deform).__name__ == "Sdef"]
    np.testing.assert_array_equal(v.sdef_c[sdef] * UNFLIP, vec(ref.vertices[i].deform.sdef_c for i in sdef))
    np.testing.assert_array_equal(v.sdef_r1[sdef] * UNFLIP, vec(ref.vertices[i].deform.sdef_r1 for i in sdef))
    assert ours.materials.names == [m.name for m in ref.materials]
    assert ours.textures == list(ref.textures)
    np.testing.assert_array_equal(ours.bones.positions * UNFLIP, vec(b.position for b in ref.bones))
    np.testing.assert_array_equal(ours.bones.parent, [b.parent_index for b in ref.bones])
    assert ours.bones.names == [b.name for b in ref.bones]
    assert [m.name for m in ours.morphs] == [m.name for m in ref.morphs]
    for morph, want in zip(ours.morphs, ref.morphs):
        assert morph.kind == want.morph_type
        if morph.kind == MorphKind.VERTEX:
            np.testing.assert_array_equal(morph.index, [o.vertex_index for o in want.offsets])
            np.testing.assert_array_equal(morph.data * UNFLIP, vec(o.position_offset for o in want.offsets))
    assert (ours.rigid_body_count, ours.joint_count) == (len(ref.rigidbodies), len(ref.joints))


@pytest.mark.parametrize("key", PMD_MODELS)
def test_pmd_arrays_equal_pymeshio(shared_models, loaded, key):
    ours = loaded[key]
    ref = pymeshio_pmd.read_from_file(str(shared_models / SHARED[key]))
    v = ours.vertices
    assert_mesh_equal(ours, ref, "pos")
    np.testing.assert_array_equal(v.bone_indices[:, :2], [[r.bone0, r.bone1] for r in ref.vertices])
    percent = np.array([r.weight0 for r in ref.vertices], np.float32)
    np.testing.assert_array_equal(v.bone_weights[:, 0], percent / np.float32(100))
    np.testing.assert_allclose(v.bone_weights.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_array_equal(ours.bones.positions * UNFLIP, vec(b.pos for b in ref.bones))
    np.testing.assert_array_equal(ours.bones.parent, [-1 if b.parent_index == 0xFFFF else b.parent_index
                                                      for b in ref.bones])
    assert ours.bones.names == [b.name.decode("cp932") for b in ref.bones]
    base = np.array(ref.morphs[0].indices)
    assert len(ours.morphs) == len(ref.morphs)
    for morph, want in zip(ours.morphs, ref.morphs):
        assert morph.name == want.name.decode("cp932")
        if want.type == 0:  # the base skin: absolute indices, no motion of its own
            np.testing.assert_array_equal(morph.index, base)
            assert not morph.data.any()
        else:
            np.testing.assert_array_equal(morph.index, base[want.indices])
            np.testing.assert_array_equal(morph.data * UNFLIP, vec(want.pos_list))
    assert (ours.rigid_body_count, ours.joint_count) == (len(ref.rigidbodies), len(ref.joints))


def test_appearance_miku_textures_resolve_despite_case(loaded):
    model = loaded["appearance_miku"]
    assert model.textures_missing == []
    lower = {name.lower(): path for name, path in model.texture_paths.items()}
    assert lower["a1.bmp"].endswith("A1.bmp")
    assert any(path.endswith("toonB_1.bmp") for name, path in lower.items() if name.endswith("toonb_1.bmp"))


@pytest.mark.parametrize("key", PMD_MODELS)
def test_pmd_toons_and_spheres(loaded, key):
    """Shared toons need no file; texture fields holding "tex*sphere" are split by extension."""
    m = loaded[key].materials
    for toon, shared in zip(m.toon, m.toon_shared):
        assert toon is None or not shared or toon.lower().startswith("toon")
    for sphere, mode in zip(m.sphere, m.sphere_mode):
        assert (sphere is None) == (mode == 0)
        if sphere:
            assert mode == {".sph": 1, ".spa": 2}[sphere[-4:].lower()]
    for texture in m.texture:
        assert texture is None or "*" not in texture
    assert loaded[key].textures_missing == []

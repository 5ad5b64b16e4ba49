"""The PMX / PMD readers and load_model on small files: features, conversions and every error.

Corrupt files are built byte by byte here (the writer refuses to write them); valid
feature-complete ones come from renderer.synthetic through renderer.pmx_writer.
"""
from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from renderer import loader, model_cache
from renderer.errors import ModelError
from renderer.loader import inspect_model, load_model, parse_model
from renderer.model import BoneFlag, Deform, IKChain, Morph, MorphKind
from renderer.morphs import MorphEvaluator
from renderer.pmx_writer import write_pmx
from renderer.synthetic import feature_model, prop_model, write_feature_files

TRIANGLE = [(0.0, 0.0, 1.0), (1.0, 0.0, 2.0), (0.0, 1.0, 3.0)]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test its own disk cache and an empty in-process one."""
    monkeypatch.setenv("MMDSYNTH_CACHE", str(tmp_path / "cache"))
    loader.clear_memory_cache()


# ---------------------------------------------------------------- hand-made PMX bytes

def text(value: str) -> bytes:
    raw = value.encode("utf-16-le")
    return struct.pack("<i", len(raw)) + raw


def pmx_vertex(position, deform: int = 0, bone: int = 0) -> bytes:
    x, y, z = position
    head = struct.pack("<8f", x, y, z, 0, 0, -1, x, y) + struct.pack("<B", deform)
    payload = {0: struct.pack("<b", bone), 1: struct.pack("<bbf", bone, 0, 0.25),
               3: struct.pack("<bbf9f", bone, 0, 0.25, 1, 2, 3, 4, 5, 6, 7, 8, 9)}
    return head + payload.get(deform, b"") + struct.pack("<f", 1.0)


def pmx_morph(kind: int, records: bytes, count: int, name: str = "モーフ") -> bytes:
    return text(name) + text("morph") + struct.pack("<BBi", 4, kind, count) + records


def tiny_pmx(*, magic: bytes = b"PMX ", version: float = 2.0, vertices: bytes | None = None,
             faces=(0, 1, 2), texture: int = 0, index_count: int = 3, parent: int = 0,
             morphs: tuple[bytes, ...] = (), rigid_bodies: int = 0, soft_bodies: bytes = b"",
             name: bytes | None = None) -> bytes:
    """A one-triangle, one-material, two-bone PMX with 1-byte indices."""
    out = [magic, struct.pack("<fB8B", version, 8, 0, 0, 1, 1, 1, 1, 1, 1)]
    out += [name if name is not None else text("小さい"), text("tiny"), text("コメント"), text("")]
    vertices = vertices if vertices is not None else b"".join(pmx_vertex(p, bone=1) for p in TRIANGLE)
    out += [struct.pack("<i", len(TRIANGLE)), vertices]
    out += [struct.pack("<i", len(faces)), bytes(faces)]
    out += [struct.pack("<i", 1), text("Tex\\Skin.PNG")]
    out += [struct.pack("<i", 1), text("材質"), text("material"),
            struct.pack("<4f3ff3fB4ff", 1, 1, 1, 1, 0, 0, 0, 5, .5, .5, .5, 0x11, 0, 0, 0, 1, 1)]
    out += [struct.pack("<bbBBB", texture, -1, 0, 1, 2), text(""), struct.pack("<i", index_count)]
    bone_flags = BoneFlag.ROTATABLE | BoneFlag.VISIBLE | BoneFlag.ENABLED
    out += [struct.pack("<i", 2)]
    out += [text("センター"), text("center"), struct.pack("<3fbiH3f", 0, 0, 1, -1, 0, bone_flags, 0, 1, 0)]
    out += [text("頭"), text("head"), struct.pack("<3fbiH3f", 0, 1, 2, parent, 0, bone_flags, 0, 1, 1)]
    out += [struct.pack("<i", len(morphs)), *morphs]
    out += [struct.pack("<ii", 0, rigid_bodies)]  # no display frames
    out += [text(f"剛体{i}") + text("rigid") + struct.pack("<b", 0) + bytes(61) for i in range(rigid_bodies)]
    out += [struct.pack("<i", 0)]  # joints
    if version >= 2.1:
        out.append(soft_bodies or struct.pack("<i", 0))
    return b"".join(out)


def soft_body(material: int = 0, anchor_vertex: int = 0) -> bytes:
    return (struct.pack("<i", 1) + text("布") + text("cloth") + struct.pack("<Bb", 0, material)
            + bytes(124) + struct.pack("<i", 1) + struct.pack("<bBB", 0, anchor_vertex, 0)
            + struct.pack("<i", 1) + struct.pack("<B", 2))


# ---------------------------------------------------------------- hand-made PMD bytes

def sjis(value: str, size: int, pad: bytes = b"\0") -> bytes:
    raw = value.encode("cp932") + b"\0"
    return (raw + pad * size)[:size]


def tiny_pmd(*, vertices: int = 3, texture: str = "tex.bmp*sphere.sph", toon: int = 0,
             english: bool = True, toons: bool = True) -> bytes:
    out = [b"Pmd", struct.pack("<f", 1.0), sjis("小さい", 20, b"\xfd"), sjis("コメント", 256, b"\xfd")]
    out += [struct.pack("<I", vertices)]
    out += [struct.pack("<8f2HBB", x, y, z, 0, 0, -1, x, y, 0, 1, 70, 0) for x, y, z in TRIANGLE[:vertices]]
    faces = [0, 1, 2] if vertices else []
    out += [struct.pack("<I", len(faces)), struct.pack(f"<{len(faces)}H", *faces)]
    out += [struct.pack("<I", 1), struct.pack("<4ff3f3fBBI", 1, 1, 1, 0.5, 5, 0, 0, 0, .5, .5, .5, toon, 1,
                                              len(faces)), sjis(texture, 20)]
    out += [struct.pack("<H", 2), sjis("センター", 20), struct.pack("<HHBH3f", 0xFFFF, 1, 1, 0, 0, 0, 1),
            sjis("頭", 20), struct.pack("<HHBH3f", 0, 0, 0, 0, 0, 1, 2)]
    out += [struct.pack("<H", 0)]  # IK chains
    out += [struct.pack("<H", 2), sjis("base", 20), struct.pack("<IB", 2, 0),
            struct.pack("<I3f", 1, 0, 0, 1) + struct.pack("<I3f", 2, 0, 1, 3),
            sjis("あ", 20), struct.pack("<IB", 1, 3), struct.pack("<I3f", 1, 0.5, 0, 0.25)]
    out += [struct.pack("<B", 1), struct.pack("<H", 1), struct.pack("<B", 0), struct.pack("<I", 0)]
    if english:
        out += [struct.pack("<B", 1), sjis("tiny", 20), sjis("comment", 256), sjis("center", 20),
                sjis("head", 20), sjis("a", 20)]
    if toons:
        out += [sjis(f"toon{i:02d}.bmp" if i != 3 else "own_toon.bmp", 100) for i in range(1, 11)]
        out += [struct.pack("<I", 0), struct.pack("<I", 0)]
    return b"".join(out)


# ---------------------------------------------------------------- PMX features

def test_tiny_pmx_converts_to_the_character_frame():
    model = parse_model(tiny_pmx(), "tiny.pmx")
    assert (model.format, model.version, model.name, model.name_en, model.comment) == \
        ("pmx", 2.0, "小さい", "tiny", "コメント")
    np.testing.assert_array_equal(model.vertices.positions[:, 2], [-1, -2, -3])
    np.testing.assert_array_equal(model.vertices.normals[0], [0, 0, 1])
    np.testing.assert_array_equal(model.indices, [[0, 2, 1]])
    np.testing.assert_array_equal(model.vertices.bone_indices[0], [1, -1, -1, -1])
    np.testing.assert_array_equal(model.vertices.bone_weights[0], [1, 0, 0, 0])
    np.testing.assert_array_equal(model.bones.positions[:, 2], [-1, -2])
    np.testing.assert_array_equal(model.bones.tail_offset[1], [0, 1, -1])
    m = model.materials
    assert (m.texture, m.sphere, m.toon, m.toon_shared.tolist()) == (["Tex\\Skin.PNG"], [None], ["toon03.bmp"], [True])
    assert m.flags[0] == 0x11 and m.index_start.tolist() == [0] and m.index_count.tolist() == [3]


def test_bdef2_and_sdef_weights_and_points():
    verts = b"".join(pmx_vertex(p, deform=d, bone=1) for p, d in zip(TRIANGLE, (0, 1, 3)))
    v = parse_model(tiny_pmx(vertices=verts), "mixed.pmx").vertices
    np.testing.assert_array_equal(v.deform, [Deform.BDEF1, Deform.BDEF2, Deform.SDEF])
    np.testing.assert_array_equal(v.bone_weights[1:], [[0.25, 0.75, 0, 0]] * 2)
    np.testing.assert_array_equal(v.bone_indices[2], [1, 0, -1, -1])
    np.testing.assert_array_equal([v.sdef_c[2], v.sdef_r0[2], v.sdef_r1[2]], [[1, 2, -3], [4, 5, -6], [7, 8, -9]])
    assert not v.sdef_c[:2].any()


def test_soft_bodies_are_parsed_in_pmx21():
    model = parse_model(tiny_pmx(version=2.1, rigid_bodies=1, soft_bodies=soft_body()), "soft.pmx")
    assert (model.version, model.rigid_body_count) == (2.1, 1)
    with pytest.raises(ModelError, match=r"soft\.pmx: .*soft body 0 anchor vertex index out of range: 7"):
        parse_model(tiny_pmx(version=2.1, rigid_bodies=1, soft_bodies=soft_body(anchor_vertex=7)), "soft.pmx")
    with pytest.raises(ModelError, match=r"soft\.pmx: truncated"):
        parse_model(tiny_pmx(version=2.1, rigid_bodies=1, soft_bodies=soft_body()[:-1]), "soft.pmx")


def test_generated_feature_model_round_trips_every_field(tmp_path):
    """Generated PMX 2.1 (QDEF, 4 extra UVs, every morph kind) and UTF-8 text survive write + load."""
    want = feature_model(2.1)
    write_pmx(want, tmp_path / "feature.pmx")
    got = load_model(tmp_path / "feature.pmx", cache=False)
    assert got.version == 2.1 and got.vertices.extra_uv.shape == want.vertices.extra_uv.shape
    assert {MorphKind(k) for k in range(11)} <= {m.kind for m in got.morphs} | {MorphKind.UV4}
    assert Deform.QDEF in got.vertices.deform
    for field in ("positions", "normals", "uv", "extra_uv", "deform", "bone_indices", "bone_weights", "sdef_c"):
        np.testing.assert_allclose(getattr(got.vertices, field), getattr(want.vertices, field), atol=1e-6)
    for a, b in zip(want.morphs, got.morphs):
        assert (a.name, a.kind) == (b.name, b.kind)
        np.testing.assert_array_equal(a.index, b.index)
        np.testing.assert_allclose(a.data, b.data, atol=1e-6)
    write_pmx(prop_model(), tmp_path / "chair.pmx", encoding="utf-8")
    assert load_model(tmp_path / "chair.pmx").name == prop_model().name


def test_material_morph_for_all_materials_keeps_minus_one():
    record = struct.pack("<bB28f", -1, 1, *range(28))
    morph = parse_model(tiny_pmx(morphs=(pmx_morph(8, record, 1),)), "m.pmx").morphs[0]
    assert morph.kind == MorphKind.MATERIAL and morph.index.tolist() == [-1] and morph.op.tolist() == [1]
    np.testing.assert_array_equal(morph.data[0], np.arange(28))


def test_material_morph_rows_naming_a_missing_material_are_ignored_with_a_warning(tmp_path):
    """MMD skips such rows and plays the rest of the morph; a model is not rejected for them."""
    model = feature_model(2.0)
    marker = np.full(28, 0.3125, np.float32)  # a row no other morph has, to find it in the file
    data = np.vstack([np.full(28, 0.5, np.float32), marker])
    model.morphs.append(Morph("壊れた材質", "broken", 4, MorphKind.MATERIAL, np.array([1, 0], np.int32), data,
                              np.zeros(2, np.uint8)))
    write_pmx(model, tmp_path / "m.pmx")
    raw = bytearray((tmp_path / "m.pmx").read_bytes())
    at = raw.find(marker.astype("<f4").tobytes()) - 2  # the row is: index (1 byte), operation, data
    assert raw[at] == 0
    raw[at] = 100  # the model has 8 materials
    loaded = parse_model(bytes(raw), "m.pmx")
    broken = loaded.morphs[loaded.find_morph("壊れた材質")]
    assert broken.index.tolist() == [1] and broken.op.tolist() == [0]
    np.testing.assert_array_equal(broken.data, data[:1])
    assert loaded.warnings == ["material morph '壊れた材質': 1 row(s) for material 100, which the model lacks "
                               "(it has 8); ignored"]
    diffuse = MorphEvaluator(loaded).evaluate({loaded.find_morph("壊れた材質"): 1.0}).materials[:, :4]
    np.testing.assert_allclose(diffuse[1], loaded.materials.diffuse[1] * 0.5, rtol=1e-6)
    np.testing.assert_allclose(diffuse[0], loaded.materials.diffuse[0])


def test_an_ik_bone_without_a_target_is_ignored_with_a_warning(tmp_path):
    """Some exporters leave an empty IK (target -1, no links); MMD ignores it."""
    model = feature_model(2.0)
    hair = model.bones.find("髪")
    model.bones.flags[hair] |= BoneFlag.IK
    model.bones.ik[hair] = IKChain(target=-1, loops=0, limit_angle=0.0, links=[])
    write_pmx(model, tmp_path / "m.pmx")
    loaded = parse_model((tmp_path / "m.pmx").read_bytes(), "m.pmx")
    assert hair not in loaded.bones.ik and len(loaded.bones.ik) == len(model.bones.ik) - 1
    assert loaded.warnings == ["IK bone '髪' has no target bone; its IK is ignored"]


def test_bone_morph_quaternion_is_mirrored():
    record = struct.pack("<b7f", 1, 1, 2, 3, 0.1, 0.2, 0.3, 0.9)
    morph = parse_model(tiny_pmx(morphs=(pmx_morph(2, record, 1),)), "b.pmx").morphs[0]
    np.testing.assert_allclose(morph.data[0], [1, 2, -3, -0.1, -0.2, 0.3, 0.9], rtol=1e-6)


def test_undecodable_name_is_a_warning_not_a_failure():
    broken = struct.pack("<i", 3) + b"\x00\xd8\x41"  # odd length, lone surrogate
    model = parse_model(tiny_pmx(name=broken), "names.pmx")
    assert "\ufffd" in model.name
    assert any("undecodable" in w for w in model.warnings)


# ---------------------------------------------------------------- PMD features

def test_tiny_pmd_maps_onto_pmx_concepts():
    model = parse_model(tiny_pmd(), "tiny.pmd")
    assert (model.format, model.name, model.name_en, model.comment) == ("pmd", "小さい", "tiny", "コメント")
    v = model.vertices
    np.testing.assert_array_equal(v.deform, [Deform.BDEF2] * 3)
    np.testing.assert_allclose(v.bone_weights[0], [0.7, 0.3, 0, 0], rtol=1e-6)
    np.testing.assert_array_equal(model.indices, [[0, 2, 1]])
    m = model.materials
    assert (m.texture, m.sphere, m.sphere_mode.tolist()) == (["tex.bmp"], ["sphere.sph"], [1])
    assert (m.toon, m.toon_shared.tolist()) == (["toon01.bmp"], [True])
    assert model.bones.names == ["センター", "頭"] and model.bones.names_en == ["center", "head"]
    assert model.bones.parent.tolist() == [-1, 0]
    base, a = model.morphs
    assert (base.name, a.name, a.name_en, a.panel) == ("base", "あ", "a", 3)
    assert base.index.tolist() == [1, 2] and not base.data.any()
    np.testing.assert_allclose(a.data, [[0.5, 0, -0.25]])


def test_pmd_skin_indices_become_absolute():
    model = parse_model(tiny_pmd(), "tiny.pmd")
    base = model.morphs[0].index
    assert model.morphs[1].index.tolist() == [base[1]] == [2]


@pytest.mark.parametrize(("toon", "texture", "expected"), [
    (255, "face.bmp", (None, False, "face.bmp", None, 0)),
    (2, "a.spa", ("own_toon.bmp", False, None, "a.spa", 2)),
    (9, "b.png*c.SPH", ("toon10.bmp", True, "b.png", "c.SPH", 1)),
])
def test_pmd_toon_list_and_sphere_fields(toon, texture, expected):
    m = parse_model(tiny_pmd(toon=toon, texture=texture), "t.pmd").materials
    assert (m.toon[0], bool(m.toon_shared[0]), m.texture[0], m.sphere[0], int(m.sphere_mode[0])) == expected


def test_older_pmd_without_extensions_loads():
    model = parse_model(tiny_pmd(english=False, toons=False), "old.pmd")
    assert model.name_en == "" and model.materials.toon == ["toon01.bmp"] and model.rigid_body_count == 0


# ---------------------------------------------------------------- errors: one ModelError naming the file

@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "not a PMX or PMD model"),
    (tiny_pmx()[:-30], "truncated"),
    (tiny_pmx()[:60], "truncated"),
    (tiny_pmd()[:300], "truncated"),
    (tiny_pmx(version=3.0), "unsupported PMX version 3.0"),
    (tiny_pmx(faces=(0, 1, 9)), "face vertex index out of range: 9"),
    (tiny_pmx(vertices=b"".join(pmx_vertex(p, bone=5) for p in TRIANGLE)), "vertex bone index out of range: 5"),
    (tiny_pmx(parent=4), "parent bone index out of range: 4"),
    (tiny_pmx(texture=3), "material texture index out of range: 3"),
    (tiny_pmx(index_count=6), "material index ranges .* exceed"),
    (tiny_pmx(vertices=pmx_vertex(TRIANGLE[0], deform=7) + bytes(200)), "vertex 0: unknown deform type 7"),
    (tiny_pmx(morphs=(pmx_morph(12, b"", 0),)), "unknown morph type 12"),
    (tiny_pmx(morphs=(pmx_morph(2, struct.pack("<b7f", 2, *range(7)), 1),)), "bone index out of range: 2"),
    (tiny_pmx(morphs=(pmx_morph(0, struct.pack("<bf", 3, 1.0), 1),)), "morph index out of range: 3"),
    (tiny_pmx(morphs=(pmx_morph(1, struct.pack("<B3f", 3, 1, 2, 3), 1),)), "vertex index out of range: 3"),
    (tiny_pmd(vertices=0), "no vertices: not a character model"),
], ids=["empty", "magic", "truncated-tail", "truncated-vertices", "truncated-pmd", "version", "face-index",
        "vertex-bone", "parent", "texture", "index-ranges", "deform", "morph-type", "morph-bone", "group-morph",
        "vertex-morph", "no-vertices"])
def test_bad_files_raise_one_model_error_naming_the_file(tmp_path, data, message):
    path = tmp_path / "bad model.pmx"
    path.write_bytes(data)
    with pytest.raises(ModelError, match=rf"bad model\.pmx: .*{message}"):
        load_model(path, cache=False)


def test_missing_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="nowhere.pmx: cannot read file"):
        load_model(tmp_path / "nowhere.pmx")


def test_format_comes_from_magic_not_extension(tmp_path):
    (tmp_path / "really_pmd.pmx").write_bytes(tiny_pmd())
    assert load_model(tmp_path / "really_pmd.pmx", cache=False).format == "pmd"


# ---------------------------------------------------------------- load_model: textures, cache, info

def test_generated_files_resolve_textures_or_report_them(tmp_path):
    files = write_feature_files(tmp_path, large_vertices=2_000)
    feature = load_model(files["feature"])
    assert feature.textures_missing == [] and feature.texture_paths
    assert all(p is not None for p in feature.texture_paths.values())
    missing = load_model(files["missing_texture"])
    assert missing.textures_missing == ["存在しない/ない.png"]
    assert any("存在しない/ない.png" in w for w in missing.warnings)
    sjis_model = load_model(files["sjis_texture"])
    assert sjis_model.textures_missing == []


def test_a_texture_re_encoded_under_another_extension_is_found(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    write_pmx(prop_model("Tex\\Fuku1.tga"), folder / "chair.pmx")
    (folder / "tex").mkdir()
    Image.new("RGB", (2, 2), (9, 200, 9)).save(folder / "tex" / "fuku1.png")
    model = load_model(folder / "chair.pmx")
    assert model.textures_missing == [] and not model.warnings
    assert model.texture_paths["Tex\\Fuku1.tga"] == str(folder / "tex" / "fuku1.png")


def test_a_texture_outside_the_model_folder_is_missing_with_a_warning(tmp_path):
    Image.new("RGB", (2, 2)).save(tmp_path / "secret.png")
    (tmp_path / "a" / "b").mkdir(parents=True)
    write_pmx(prop_model("..\\..\\secret.png"), tmp_path / "a" / "b" / "chair.pmx")
    model = load_model(tmp_path / "a" / "b" / "chair.pmx")
    assert model.textures_missing == ["..\\..\\secret.png"]
    assert model.warnings == [f"texture '..\\\\..\\\\secret.png' leads outside the folder of "
                              f"{tmp_path / 'a' / 'b' / 'chair.pmx'}; treated as missing"]


def test_disk_cache_is_keyed_by_content_and_versioned(tmp_path):
    write_pmx(prop_model(), tmp_path / "chair.pmx")
    first = load_model(tmp_path / "chair.pmx")
    entry = tmp_path / "cache" / f"{first.sha256}.npz"
    assert entry.is_file() and not list((tmp_path / "cache").glob("*.tmp"))
    cached = model_cache.load(entry, loader.CACHE_VERSION)
    cached.name = "from the disk cache"
    entry.write_bytes(model_cache.dump(cached, loader.CACHE_VERSION))
    loader.clear_memory_cache()
    assert load_model(tmp_path / "chair.pmx").name == "from the disk cache"
    entry.write_bytes(model_cache.dump(cached, "another loader"))
    loader.clear_memory_cache()
    assert load_model(tmp_path / "chair.pmx").name == prop_model().name
    entry.write_bytes(b"garbage")
    loader.clear_memory_cache()
    assert load_model(tmp_path / "chair.pmx").name == prop_model().name
    assert load_model(tmp_path / "chair.pmx", cache=False).name == prop_model().name


def test_disk_cache_round_trips_every_feature(tmp_path):
    files = write_feature_files(tmp_path, large_vertices=2_000)
    parsed = load_model(files["feature"], cache=False)
    loader.clear_memory_cache()
    load_model(files["feature"])  # writes the cache entry
    loader.clear_memory_cache()
    cached = load_model(files["feature"])
    assert repr(cached) == repr(parsed)  # every field, arrays included (numpy reprs them in full below 1000)
    for name in ("positions", "bone_indices", "sdef_c", "extra_uv"):
        assert np.array_equal(getattr(cached.vertices, name), getattr(parsed.vertices, name))
    assert [(m.kind, m.index.tolist(), m.data.tolist()) for m in cached.morphs] == \
        [(m.kind, m.index.tolist(), m.data.tolist()) for m in parsed.morphs]
    assert cached.bones.ik.keys() == parsed.bones.ik.keys()


class Planted:
    """A pickle that, when loaded, creates a file: what an attacker would plant in the cache."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_planted_cache_file_cannot_run_code(tmp_path):
    write_pmx(prop_model(), tmp_path / "chair.pmx")
    sha256 = load_model(tmp_path / "chair.pmx", cache=False).sha256
    marker = tmp_path / "code-ran"
    (tmp_path / "cache").mkdir()
    for name in (f"{sha256}.pkl", f"{sha256}.npz"):  # the old cache name and the new one
        (tmp_path / "cache" / name).write_bytes(pickle.dumps((loader.CACHE_VERSION, Planted(marker))))
    assert load_model(tmp_path / "chair.pmx").name == prop_model().name
    assert not marker.exists()
    objects = tmp_path / "objects.npz"  # an .npz whose arrays are pickled objects
    np.savez(objects, **{model_cache.DESCRIPTION: np.array([Planted(marker)], dtype=object)})
    (tmp_path / "cache" / f"{sha256}.npz").write_bytes(objects.read_bytes())
    loader.clear_memory_cache()
    assert load_model(tmp_path / "chair.pmx").name == prop_model().name
    assert not marker.exists()


def test_memory_cache_hands_out_independent_copies(tmp_path):
    write_pmx(prop_model(), tmp_path / "chair.pmx")
    a = load_model(tmp_path / "chair.pmx")
    a.vertices.positions[:] = 0
    a.name = "changed"
    b = load_model(tmp_path / "chair.pmx")
    assert b.name == prop_model().name and b.vertices.positions.any()
    copy = tmp_path / "elsewhere" / "chair.pmx"
    copy.parent.mkdir()
    copy.write_bytes((tmp_path / "chair.pmx").read_bytes())
    c = load_model(copy)
    assert c.path == str(copy) and c.sha256 == b.sha256 and c.textures_missing == ["wood.png"]


def test_inspect_model_times_the_parse(tmp_path):
    write_pmx(feature_model(2.1), tmp_path / "feature.pmx")
    info = inspect_model(tmp_path / "feature.pmx")
    assert (info.vertices, info.faces) == (len(feature_model().vertices), len(feature_model().indices))
    assert 0 < info.load_seconds < 5


def test_info_command_reports_each_model_and_fails_for_bad_ones(tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import cli

    write_pmx(feature_model(2.1), tmp_path / "feature.pmx")
    (tmp_path / "dummy.pmd").write_bytes(tiny_pmd(vertices=0))
    (tmp_path / "model.pmd").write_bytes(tiny_pmd())
    paths = [str(tmp_path / name) for name in ("feature.pmx", "dummy.pmd", "model.pmd")]
    result = CliRunner().invoke(cli, ["info", "--json", *paths])
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["model"] for line in lines] == [paths[0], paths[2]]
    assert all(set(line) == {"model", "vertices", "faces", "materials", "bones", "morphs", "textures_missing",
                             "load_seconds"} for line in lines)
    assert lines[1]["vertices"] == 3 and lines[1]["textures_missing"] == ["sphere.sph", "tex.bmp"]
    assert result.stderr.strip().splitlines() == [f"error: {paths[1]}: no vertices: not a character model"]
    plain = CliRunner().invoke(cli, ["info", paths[0]])
    assert plain.exit_code == 0 and "vertices" in plain.output


def test_files_that_are_not_models_fail_at_once_in_one_line(tmp_path, monkeypatch):
    """A FIFO (would block), a device (endless), a folder, a file over the size cap (would
    exhaust memory) and a name with a newline: one ModelError line each, from `info` too,
    with no progress bar between the lines of a non-terminal stderr."""
    import os
    import subprocess
    import sys

    os.mkfifo(tmp_path / "pipe.pmx")
    (tmp_path / "folder.pmx").mkdir()
    with open(tmp_path / "huge.pmx", "wb") as file:
        file.truncate(loader.MAX_MODEL_BYTES + 1)  # sparse: no disk used
    (tmp_path / "two\nlines.pmx").write_bytes(b"")
    bad = [tmp_path / "pipe.pmx", "/dev/zero", tmp_path / "folder.pmx", tmp_path / "huge.pmx"]
    files = [bad[0], bad[1], bad[3], tmp_path / "two\nlines.pmx"]  # click itself refuses a folder
    paths = [str(path) for path in files * 2]  # 8 files: the bar would show
    result = subprocess.run([sys.executable, "-c", "from pipeline.cli import main; main()", "info", *paths],
                            capture_output=True, text=True, timeout=30)  # before the fix: blocked on the FIFO
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == len(paths) and all(line.startswith("error: ") for line in lines), lines
    assert "two\\nlines.pmx: empty file" in lines[3]
    for path, reason in zip(bad, ["not a regular file"] * 3 + ["more than a model file can be"]):
        with pytest.raises(ModelError, match=reason):
            load_model(path)


def test_memory_cache_stays_bounded_when_models_come_from_the_disk_cache(tmp_path):
    """The annotator loads every model of a collection: disk-cache hits must not pile up in memory."""
    import dataclasses

    count = loader.MEMORY_CACHE_SIZE + 3
    for i in range(count):
        write_pmx(dataclasses.replace(prop_model(), name=f"prop {i}"), tmp_path / f"p{i}.pmx")
        load_model(tmp_path / f"p{i}.pmx")  # parsed: onto the disk cache
    loader.clear_memory_cache()
    for i in range(count):
        assert load_model(tmp_path / f"p{i}.pmx").name == f"prop {i}"  # disk-cache hits
    assert len(loader._memory) == loader.MEMORY_CACHE_SIZE

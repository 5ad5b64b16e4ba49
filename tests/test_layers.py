"""Semantic layers: material assignment (names, geometry, overrides, config; the coarse preset's names),
parts, and rendered layer stacks (See-through's classes, the default)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from annotator.layers import (
    CLASSES,
    LAYERS,
    PRESETS,
    LayerConfigError,
    assign_layers,
    layer_groups,
    load_config,
    normalise,
)
from renderer.demo import DEMO_HEAD, demo_model

DEMO_LAYERS = {"後髪": "back_hair", "体": "body", "首": "neck", "顔": "face", "白目": "eye_white", "瞳": "iris",
               "口": "mouth", "眉": "eyelash_brow", "まつげ": "eyelash_brow", "まぶた": "eyelash_brow",
               "前髪": "front_hair"}
DEMO_CLASSES = {"後髪": "back hair", "体": "topwear", "首": "neck", "顔": "face", "白目": "eyewhite", "瞳": "irides",
                "口": "mouth", "眉": "eyebrow", "まつげ": "eyelash", "まぶた": "eyelash", "前髪": "front hair"}
COARSE = PRESETS["coarse"]


def demo_drivers(model):
    from annotator.binding import bind_roles
    from pipeline.demo import DEMO_MORPHS

    return bind_roles(DEMO_MORPHS, model=model).drivers


def renamed(names: list[str], names_en: list[str] | None = None):
    """The demo character with other material names (and no English ones unless given); its
    texture ("iris.png") renamed to say nothing too, since a texture's file name names a material."""
    model = demo_model()
    textures = [name and f"{i}.png" for i, name in enumerate(model.materials.texture)]
    model.texture_paths = {new: model.texture_paths[old] for old, new in zip(model.materials.texture, textures) if old}
    model.materials = dataclasses.replace(model.materials, names=list(names), texture=textures,
                                          names_en=names_en or [""] * len(names))
    return model


@pytest.fixture(scope="module")
def demo():
    return demo_model()


def test_demo_materials_by_name(demo):
    assert {a.name: a.layer for a in assign_layers(demo)} == DEMO_CLASSES
    assignments = assign_layers(demo, config=COARSE)
    assert {a.name: a.layer for a in assignments} == DEMO_LAYERS
    assert {a.decided for a in assignments} == {"name"}
    assert "後髪" in assignments[0].reason


def test_geometry_where_names_say_nothing():
    model = renamed([f"材質{i}" for i in range(len(DEMO_LAYERS))])
    by_index = {a.material: a for a in assign_layers(model, config=COARSE)}
    assert all(a.decided == "geometry" for a in by_index.values())
    expected = {0: "back_hair", 1: "clothes", 2: "neck", 3: "face", 9: "face", 10: "front_hair"}  # 9: the lids
    assert {i: by_index[i].layer for i in expected} == expected
    assert {by_index[i].layer for i in range(4, 9)} == {"accessory"}  # small decals say nothing
    assert "behind" in by_index[0].reason and "front" in by_index[10].reason


def test_bare_hair_takes_its_side_from_geometry():
    names = list(DEMO_LAYERS)
    names[0], names[10] = "髪", "Hair"
    by_name = {a.name: a for a in assign_layers(renamed(names), config=COARSE)}
    assert (by_name["髪"].layer, by_name["Hair"].layer) == ("back_hair", "front_hair")
    assert by_name["髪"].decided == "geometry" and "contains '髪'; centroid behind" in by_name["髪"].reason


def test_overrides_win_and_unknown_layers_are_refused(demo):
    by_name = {a.name: a for a in assign_layers(demo, {"体": "clothes", "no such material": "face"}, COARSE)}
    assert (by_name["体"].layer, by_name["体"].decided) == ("clothes", "override")
    with pytest.raises(LayerConfigError, match="unknown layer.*'hat'"):
        assign_layers(demo, {"体": "hat"}, COARSE)


@pytest.mark.parametrize("name, layer", [
    ("ﾏﾂｹﾞ", "eyelash_brow"), ("Hair_Front", "front_hair"), ("後ろ髪", "back_hair"), ("白目L", "eye_white"),
    ("Ｅｙｅ", "iris"), ("hitomi", "iris"), ("髪リボン", "accessory"), ("体操服", "clothes"), ("手袋", "clothes"),
    ("歯", "mouth"), ("Tongue", "mouth"), ("肌", "face"), ("頬", "face"), ("necklace", "clothes"),
    ("ネクタイ", "clothes"),
    ("首", "neck"), ("body", "body"), ("髪飾り", "accessory"), ("eyebrow", "eyelash_brow"),
    ("まぶた", "eyelash_brow"), ("瞼L", "eyelash_brow"), ("EyeLid_R", "eyelash_brow"), ("hat_01", "accessory"),
    ("hatune_hitomi", "iris"), ("warm", "accessory")])
def test_dictionary(name, layer):
    names = list(DEMO_LAYERS)
    names[5] = name  # the iris material, a small decal: geometry alone would say accessory
    assert assign_layers(renamed(names), config=COARSE)[5].layer == layer


def test_english_name_and_texture_name_are_read_too():
    names = [f"材質{i}" for i in range(len(DEMO_LAYERS))]
    model = renamed(names, ["", "", "", "", "", "mouth", "", "", "", "", ""])
    model.materials.texture[6] = "tex\\Moko_face_01.bmp*sphere.spa"
    assignments = assign_layers(model, config=COARSE)
    assert (assignments[5].layer, assignments[6].layer) == ("mouth", "face")
    assert "English name" in assignments[5].reason and "texture" in assignments[6].reason


def test_normalise():
    assert normalise(" Ｈａｉｒ_Front-1.ｂｍｐ ") == "hairfront1bmp"


def test_layer_groups_follow_draw_order(demo):
    groups = layer_groups(assign_layers(demo, config=COARSE), LAYERS)
    assert groups[LAYERS.index("eyelash_brow")] == [7, 8, 9]
    assert groups[LAYERS.index("clothes")] == [] and groups[LAYERS.index("accessory")] == []


def test_config_file_renames_adds_and_maps(tmp_path):
    path = tmp_path / "layers.yaml"
    path.write_text("preset: coarse\nlayers: [back_hair, body, clothes, neck, face, eye_white, iris, eyelash_brow,"
                    " mouth,\n"
                    "         front_hair, tail, accessory]\n"
                    "rename: {eyelash_brow: brows}\n"
                    "keywords: {前髪: tail, 口: null}\n"
                    "parts: {'^PartTail': tail}\n")
    config = load_config(path)
    assert config.names[7] == "brows" and "tail" in config.names
    by_name = {a.name: a.layer for a in assign_layers(renamed(list(DEMO_LAYERS)), config=config)}
    assert (by_name["眉"], by_name["前髪"], by_name["口"]) == ("brows", "tail", "accessory")
    assert config.part_layer("PartTail01") == "tail" and config.part_layer("PartBrowL") == "brows"


@pytest.mark.parametrize("text, message", [
    ("layers: [a, b]\nfallback: c\n", "fallback 'c'"), ("preset: fine\n", "unknown preset"),
    ("colours: {}\n", "unknown key"),
    ("keywords: {髪: wig}\n", "unknown layer"),
    ("parts: {'(': face}\n", "not a regex"),
    ("layers: [a, a]\n", "distinct"),
    ("layers: [a\n", "not valid YAML"),
    ("- 1\n", "must be a mapping")])
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(LayerConfigError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("part, layer", [("PartHairBack", "back_hair"), ("PartHairFront", "front_hair"),
                                         ("PartHairSide", "front_hair"), ("PartEye", "iris"),
                                         ("PartEyeWhite", "eye_white"), ("PartBrow", "eyelash_brow"),
                                         ("PartEyeLidL", "eyelash_brow"),
                                         ("PartMouth", "mouth"), ("PartFace", "face"), ("PartArmA", "body"),
                                         ("PartCloth", "clothes"), ("PartSketch", "accessory")])
def test_default_part_table(part, layer):
    assert COARSE.part_layer(part) == layer


# ---- rendered stacks ----------------------------------------------------------------------

OPEN, CLOSED, WINK = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0], [1.0, 0.6, 0.3, -0.5, 0.6, -0.8], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def rendered(demo):
    """(poses, stacks, full renders, stack with 体 overridden to neckwear, raw stacks before settling) at 128 px."""
    from pipeline.layers import render_layers
    from renderer import Renderer

    poses = np.array([OPEN, CLOSED, [0.1, 0.0, 0.5, 0.9, -0.7, 0.6], WINK])
    with Renderer(demo, head_bounds=DEMO_HEAD, drivers=demo_drivers(demo), size=128) as r:
        stacks = render_layers(r, demo, {}, poses)
        overridden = render_layers(r, demo, {"体": "neckwear"}, poses[:1])
        raw = raw_layers(r, demo, CLASSES, poses)
        return poses, stacks, r.render_batch(poses), overridden, raw


def raw_layers(renderer, model, names, poses) -> np.ndarray:
    """Each class of ``names`` (in that draw order) rendered alone, before exact_stacks settles anything."""
    from annotator.layers import make_config
    from pipeline.layers import render_alone

    return render_alone(renderer, model, {}, poses, make_config({"layers": list(names)}))


def test_every_class_with_faces_is_drawn(rendered):
    _poses, stacks, _full, _overridden, _raw = rendered
    assert stacks.shape == (4, len(CLASSES), 128, 128, 4) and stacks.dtype == np.uint8
    covered = stacks[..., 3].reshape(4, len(CLASSES), -1).any(axis=2)
    with_faces = [layer in DEMO_CLASSES.values() for layer in CLASSES]
    assert (covered == np.array(with_faces)[None]).all()
    assert not stacks[:, [not f for f in with_faces]].any()  # empty classes: all zeros
    assert not stacks[..., :3][stacks[..., 3] == 0].any()


def test_hidden_pixels_stay_in_their_layer(rendered):
    """Where the full render shows the face, the back hair behind the head is still there."""
    _poses, stacks, full, _overridden, _raw = rendered
    face = stacks[0, CLASSES.index("face")]
    shows_face = (face[..., 3] == 255) & (np.abs(full[0].astype(int) - face).max(-1) <= 2)
    assert shows_face.sum() > 1000
    assert (stacks[0, CLASSES.index("back hair")][..., 3][shows_face] > 0).mean() > 0.8


def test_stacks_composite_exactly_and_class_order_matters(rendered):
    """The stored stacks add up; the demo's raw layers already do in the default class order
    (measured mean 0.0-0.1, so settling changes almost nothing) and do not in the reversed one."""
    from pipeline.layers import ALPHA_TOLERANCE, MEAN_TOLERANCE, composite_error, exact_stacks

    poses, stacks, full, _overridden, raw = rendered
    errors = composite_error(stacks, full)
    assert (errors[:, 0] <= MEAN_TOLERANCE).all() and (errors[:, 1] <= ALPHA_TOLERANCE).all(), errors
    raw_errors = composite_error(raw, full)
    print("raw mean / alpha per pose:", raw_errors.round(2).tolist())
    assert (raw_errors[:, 0] <= MEAN_TOLERANCE).all(), raw_errors
    assert (exact_stacks(raw.copy(), full) < 0.02).all()
    from renderer import Renderer

    with Renderer(demo_model(), head_bounds=DEMO_HEAD, drivers=demo_drivers(demo_model()), size=128) as r:
        reversed_raw = raw_layers(r, r.model, CLASSES[::-1], poses)
    assert (composite_error(reversed_raw, full)[:, 0] > MEAN_TOLERANCE).all()


def test_exact_stacks_settles_what_does_not_add_up(rendered):
    """Damage a stack (face cleared, back hair drawn over it): settling makes it exact again."""
    from pipeline.layers import composite_error, exact_stacks

    _poses, stacks, full, _overridden, _raw = rendered
    broken = stacks[:1].copy()
    broken[0, CLASSES.index("face")] = 0
    broken[0, CLASSES.index("front hair")] = stacks[0, CLASSES.index("back hair")]
    assert composite_error(broken, full[:1])[0, 0] > 5
    share = exact_stacks(broken, full[:1])
    assert share[0] > 0.1 and composite_error(broken, full[:1])[0, 0] <= 0.5


def test_closed_lids_are_over_the_irides(rendered):
    """The wink's left eye (image right) is covered by lid skin in eyelash, drawn over the irides."""
    _poses, stacks, full, _overridden, _raw = rendered
    iris, lids = stacks[3, CLASSES.index("irides")], stacks[3, CLASSES.index("eyelash")]
    half = full.shape[2] // 2
    left_iris = iris[:, half:, 3] > 0
    assert left_iris.sum() > 20 and (lids[:, half:, 3][left_iris] == 255).all()
    np.testing.assert_array_equal(full[3, :, half:][left_iris], lids[:, half:][left_iris])
    right_iris = iris[:, :half, 3] > 0  # the open eye shows its iris, not lids
    assert right_iris.sum() > 20 and not lids[:, :half, 3][right_iris].any()


def test_overrides_move_materials(rendered):
    _poses, stacks, _full, overridden, _raw = rendered
    body, neckwear = CLASSES.index("topwear"), CLASSES.index("neckwear")
    assert not overridden[0, body].any() and overridden[0, neckwear][..., 3].any()


def test_contact_sheet(rendered, artifacts):
    from PIL import Image

    from pipeline.sheets import layer_sheet

    _poses, stacks, full, _overridden, _raw = rendered
    sheet = layer_sheet(stacks, list(CLASSES), full)
    assert sheet.shape == (24 + 4 * 132, (len(CLASSES) + 2) * 132, 3)
    Image.fromarray(sheet).save(artifacts / "layers_demo.png")


# ---- built datasets ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from pipeline.build import build
    from pipeline.demo import write_demo_manifest

    root = tmp_path_factory.mktemp("layered")
    _model, manifest = write_demo_manifest(root)
    build(manifest, root / "ds", 6, size=64, layers=True, progress=False)
    return root / "ds"


def test_build_with_layers_writes_stacks_the_reader_serves(built):
    from pipeline.reader import Dataset

    ds = Dataset(built, fields=("posed", "layers/rest", "layers/expression", "layers/posed"))
    sample = ds[3]
    assert sample["layers/posed"].shape == (len(CLASSES), 64, 64, 4)
    assert sample["layers/rest"][CLASSES.index("face")][..., 3].any()
    assert (built / "layers.png").is_file()


def test_verify_reports_composites_and_catches_a_broken_stack(built, tmp_path):
    import shutil

    import h5py

    from pipeline.shards import row_checksums
    from pipeline.verify import verify

    figures: list = []
    assert verify(built, composites=figures) == []
    assert {fig.field for fig in figures} == {"rest", "expression", "posed"}
    assert all(fig.images and fig.worst_mean <= 0.5 and fig.worst_alpha <= 2 and fig.failing == 0 for fig in figures)
    broken = tmp_path / "broken"
    shutil.copytree(built, broken)
    with h5py.File(next((broken / "shards").glob("*.h5")), "r+") as f:
        f["layers/posed"][2, CLASSES.index("face")] = 0  # the back hair behind shows through
        f["crc32/layers/posed"][2] = row_checksums(f["layers/posed"][2:3])[0]  # a bad stack, not disk damage
    defects = verify(broken)
    assert len(defects) == 1 and "posed: 1 of 6 layer stacks do not composite" in defects[0], defects
    assert "first at row 2" in defects[0] and "worst models: models/demo/demo.pmx (mean" in defects[0]


# ---- the shared third-party models -----------------------------------------------------------

@pytest.mark.real_models
@pytest.mark.parametrize("name", ["appearance_miku", "miku_v2", "mokou", "gumi"])
def test_real_model_stacks(shared_models, name):
    """Real characters: the stacks add up at rest, with morphs and posed; the classes a person sees
    are there; the parts already agree with the render on all but a few percent of the pixels."""
    from conftest import SHARED

    from annotator.binding import schema_drivers
    from annotator.suggest import suggest
    from pipeline.layers import ALPHA_TOLERANCE, MEAN_TOLERANCE, composite_error, exact_stacks, render_layers
    from renderer import Renderer
    from renderer.loader import load_model

    path = shared_models / SHARED[name]
    model, record = load_model(path), suggest(path, shared_models)
    poses = np.array([OPEN, [0.0, 0.0, 0.0, 0.8, -0.6, 0.7], CLOSED])
    drivers = schema_drivers(model, record.morphs)
    with Renderer(model, head_bounds=record.head_bounds, size=128, drivers=drivers) as r:
        full = r.render_batch(poses)
        stacks = render_layers(r, model, {}, poses, full=full)
        raw = raw_layers(r, model, CLASSES, poses)
    errors = composite_error(stacks, full)
    assert (errors[:, 0] <= MEAN_TOLERANCE).all() and (errors[:, 1] <= ALPHA_TOLERANCE).all(), errors
    settled = exact_stacks(raw.copy(), full)
    print(name, "raw composite mean / alpha:", composite_error(raw, full).round(2).tolist(), "settled:", settled)
    assert (settled < 0.12).all(), settled
    drawn = {CLASSES[k] for k in np.flatnonzero(stacks[0, ..., 3].reshape(len(CLASSES), -1).any(axis=1))}
    assert {"face", "front hair", "topwear"} <= drawn, drawn


# ---- parts of materials ----------------------------------------------------------------------

def merged(model, keep: int, into: int):
    """``model`` with material ``keep``'s faces moved into material ``into`` (``keep`` left with none):
    one material spanning what were two parts."""
    mats = model.materials
    triangles = np.asarray(model.indices).reshape(-1, 3)
    spans = [np.arange(s // 3, (s + c) // 3) for s, c in zip(mats.index_start, mats.index_count)]
    spans[into], spans[keep] = np.concatenate([spans[into], spans[keep]]), spans[keep][:0]
    counts = np.array([3 * len(span) for span in spans], np.int64)
    model.indices = triangles[np.concatenate(spans)]
    model.materials = dataclasses.replace(mats, index_count=counts, index_start=np.cumsum(counts) - counts)
    return model


def test_one_hair_material_splits_into_front_and_back_hair():
    """The bangs and the back hair in one material 髪: the bangs' faces are front hair, the hair behind the
    head back hair, and the split composites where the whole material in either class would not."""
    from annotator.parts import face_layers
    from pipeline.layers import composite_error
    from renderer import Renderer

    plain, model = demo_model(), merged(demo_model(), 10, 0)  # 前髪 into 後髪, named 髪
    model.materials.names[0] = "髪"
    before, after = face_layers(plain), face_layers(model)
    front, back = CLASSES.index("front hair"), CLASSES.index("back hair")
    bangs = slice(plain.materials.index_count[0] // 3, model.materials.index_count[0] // 3)  # moved to 髪's end
    assert (after[bangs] == front).mean() > 0.9 and (after == back).sum() > 0.5 * (before == back).sum()
    poses = np.array([OPEN, CLOSED])
    with Renderer(model, head_bounds=DEMO_HEAD, drivers=demo_drivers(model), size=128) as r:
        full = r.render_batch(poses)
        split = composite_error(raw_layers(r, model, CLASSES, poses), full)[:, 0]
        whole = [composite_error(render_alone_as(r, model, layer, poses), full)[:, 0]
                 for layer in ("front hair", "back hair")]
    print("mean composite error, parts / all front / all back:", split, *whole)
    assert (split <= 1.0).all() and all((errors > 3 * split.max() + 1).all() for errors in whole)


def render_alone_as(renderer, model, layer, poses):
    from pipeline.layers import render_alone

    return render_alone(renderer, model, {"髪": layer}, poses)


def test_lids_inside_the_face_material_go_with_the_lashes_by_the_morph_that_closes_them():
    """Lids merged into the face material are found by the wink morphs moving them: drawn over the irides,
    the wink's closed eye composites as it did with the lids their own material."""
    from annotator.parts import face_layers
    from pipeline.layers import composite_error
    from renderer import Renderer

    model = merged(demo_model(), 9, 3)  # まぶた into 顔
    layers = face_layers(model)
    plain = face_layers(demo_model())
    lash = CLASSES.index("eyelash")
    assert (layers == lash).sum() >= 0.7 * (plain == lash).sum() and (layers == CLASSES.index("face")).any()
    with Renderer(model, head_bounds=DEMO_HEAD, drivers=demo_drivers(model), size=128) as r:
        raw, full = raw_layers(r, model, CLASSES, np.array([WINK])), r.render_batch(np.array([WINK]))
    print("wink composite mean", composite_error(raw, full)[0, 0])
    assert composite_error(raw, full)[0, 0] < 1.0


def test_coarse_preset_by_name(tmp_path):
    """--layer-config coarse: the earlier 11 layers, named so in the shard, and the stacks still add up."""
    from pipeline import shards
    from pipeline.build import build
    from pipeline.demo import write_demo_manifest
    from pipeline.verify import verify

    assert load_config("coarse") is COARSE and load_config("see-through") is PRESETS["see-through"]
    _model, manifest = write_demo_manifest(tmp_path)
    build(manifest, tmp_path / "ds", 2, size=48, layers=True, layer_config="coarse", progress=False, sheets=False)
    with shards.open_shard(next((tmp_path / "ds" / "shards").glob("*.h5"))) as f:
        assert list(f["layers/names"].asstr()[:]) == list(LAYERS) and f["layers/names"].attrs["taxonomy"] == "coarse"
    assert verify(tmp_path / "ds") == []

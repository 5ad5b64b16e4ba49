"""The built-in demo character: names the project relies on, sane geometry, working morphs."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from renderer import renderer
from renderer.demo import DEMO_HEAD, IRIS_TEXTURE, demo_model, iris_texture, write_demo
from renderer.model import Deform, MaterialFlag, Model

MATERIALS = [("後髪", "back_hair"), ("体", "body"), ("首", "neck"), ("顔", "face"), ("白目", "eye_white"),
             ("瞳", "iris"), ("口", "mouth"), ("眉", "eyebrow"), ("まつげ", "eyelash"), ("まぶた", "eyelid"),
             ("前髪", "front_hair")]
BONES = ["全ての親", "センター", "上半身", "首", "頭", "左目", "右目"]
# morph -> (sides it closes: +1 = character's left = +x, smile-shaped lid)
EYE_MORPHS = {"まばたき": ((1, -1), False), "笑い": ((1, -1), True), "ウィンク": ((1,), True),
              "ウィンク右": ((-1,), True), "ウィンク２": ((1,), False), "ｳｨﾝｸ２右": ((-1,), False)}


@pytest.fixture(scope="module")
def model() -> Model:
    return demo_model()


def material_vertices(model: Model, name: str) -> np.ndarray:
    m = model.materials
    i = m.names.index(name)
    flat = model.indices.reshape(-1)
    return np.unique(flat[m.index_start[i]:m.index_start[i] + m.index_count[i]])


def morphed(model: Model, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(positions after the morph at weight 1, indices of the vertices it moves)."""
    morph = model.morphs[model.find_morph(name)]
    positions = model.vertices.positions.copy()
    positions[morph.index] += morph.data
    return positions, morph.index


def covered(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """For each point (x, y, z): inside some triangle's xy projection, in front of the point."""
    a, b, c = (triangles[:, k, None, :] for k in range(3))  # (T, 1, 3)
    p = points[None, :, :]
    det = (b[..., 1] - c[..., 1]) * (a[..., 0] - c[..., 0]) + (c[..., 0] - b[..., 0]) * (a[..., 1] - c[..., 1])
    det = np.where(np.abs(det) < 1e-12, np.nan, det)
    l1 = ((b[..., 1] - c[..., 1]) * (p[..., 0] - c[..., 0]) + (c[..., 0] - b[..., 0]) * (p[..., 1] - c[..., 1])) / det
    l2 = ((c[..., 1] - a[..., 1]) * (p[..., 0] - c[..., 0]) + (a[..., 0] - c[..., 0]) * (p[..., 1] - c[..., 1])) / det
    l3 = 1 - l1 - l2
    inside = (l1 >= -1e-6) & (l2 >= -1e-6) & (l3 >= -1e-6)
    z = l1 * a[..., 2] + l2 * b[..., 2] + l3 * c[..., 2]
    return np.any(inside & (z > p[..., 2]), axis=0)


def test_names_the_project_relies_on(model):
    assert (model.name, model.name_en) == ("デモキャラ", "mmd-synth demo")
    assert list(zip(model.materials.names, model.materials.names_en)) == MATERIALS
    assert all(model.bones.find(name) >= 0 for name in BONES)
    assert {m.name: m.panel for m in model.morphs} == {**{name: 2 for name in EYE_MORPHS}, "あ": 3}
    bones = model.bones
    assert bones.parent[bones.find("頭")] == bones.find("首")
    assert bones.parent[bones.find("左目")] == bones.find("頭")
    assert bones.positions[bones.find("左目"), 0] > 0 > bones.positions[bones.find("右目"), 0]


def test_geometry_is_well_formed(model):
    v = model.vertices
    assert 5_000 <= len(v) <= 20_000
    assert np.allclose(np.linalg.norm(v.normals, axis=1), 1.0, atol=1e-5)
    assert model.indices.min() >= 0 and model.indices.max() < len(v)
    m = model.materials
    assert m.index_start[0] == 0 and np.all(m.index_start[1:] == np.cumsum(m.index_count)[:-1])
    assert m.index_count.sum() == model.indices.size and np.all(m.index_count > 0)
    for name in ("後髪", "前髪", "顔"):
        assert m.flags[m.names.index(name)] & MaterialFlag.DOUBLE_SIDED
    assert len({tuple(c) for c in seen_colours(model).round(3)}) == len(m)  # distinct colours


def seen_colours(model: Model) -> np.ndarray:
    """(M, 3) diffuse RGB times the mean texel under each material's vertices."""
    colours = model.materials.diffuse[:, :3].astype(np.float64)
    for i, name in enumerate(model.materials.names):
        texture = model.materials.texture[i]
        if texture is not None:
            pixels = np.asarray(Image.open(model.texture_paths[texture]).convert("RGB"))
            uv = model.vertices.uv[material_vertices(model, name)]
            rows, columns = (np.clip(uv[:, k] * pixels.shape[k ^ 1], 0, pixels.shape[k ^ 1] - 1).astype(int)
                             for k in (1, 0))
            colours[i] *= pixels[rows, columns].mean(0) / 255
    return colours


def test_only_the_iris_is_textured_and_its_uvs_stay_on_the_texture(model):
    m = model.materials
    assert m.texture == [IRIS_TEXTURE if name == "瞳" else None for name in m.names]
    assert model.textures == [IRIS_TEXTURE] and model.textures_missing == []
    assert np.array_equal(np.asarray(Image.open(model.texture_paths[IRIS_TEXTURE])), iris_texture())
    uv = model.vertices.uv[material_vertices(model, "瞳")]
    assert uv.min() >= 0 and uv.max() <= 1 and np.ptp(uv, 0).min() > 0.8  # the iris spans its texture


def test_front_faces_are_counter_clockwise_and_match_normals(model):
    p = model.vertices.positions[model.indices]
    face = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    vertex = model.vertices.normals[model.indices].mean(1)
    agree = np.einsum("ij,ij->i", face, vertex) > 0
    assert agree.mean() > 0.99
    # the face seen from the front: its frontmost triangles wind counter-clockwise in xy
    face_tris = material_vertices(model, "顔")
    front = face_tris[np.argmax(model.vertices.positions[face_tris, 2])]
    assert model.vertices.normals[front, 2] > 0.9


def test_skinning(model):
    v, bones = model.vertices, model.bones
    used = v.bone_indices >= 0
    assert np.allclose(v.bone_weights.sum(1), 1.0, atol=1e-6)
    assert np.all(v.bone_weights[~used] == 0) and v.bone_indices.max() < len(bones)
    assert {Deform.BDEF1, Deform.BDEF2, Deform.SDEF} <= set(np.unique(v.deform).tolist())
    first = v.bone_indices[:, 0]
    rigid = {"後髪": "頭", "前髪": "頭", "顔": "頭", "眉": "頭", "口": "頭", "まぶた": "頭", "体": "上半身"}
    for material, bone in rigid.items():
        assert np.all(first[material_vertices(model, material)] == bones.find(bone)), material
    iris = material_vertices(model, "瞳")
    x = v.positions[iris, 0]
    assert np.all(first[iris] == np.where(x > 0, bones.find("左目"), bones.find("右目")))
    neck = material_vertices(model, "首")
    def bones_of(vertices: np.ndarray) -> set[str]:
        return {bones.names[i] for i in v.bone_indices[vertices][v.bone_weights[vertices] > 0]}

    assert bones_of(neck) == {"首", "上半身", "頭"}
    assert bones_of(neck[v.deform[neck] == Deform.BDEF2]) == {"首", "上半身"}  # the neck base
    assert bones_of(neck[v.deform[neck] == Deform.SDEF]) == {"首", "頭"}  # the neck top


def test_head_bounds_match_the_geometry(model):
    top, chin = DEMO_HEAD
    pos = model.vertices.positions
    hair = pos[material_vertices(model, "後髪")]
    assert np.max(hair[np.abs(hair[:, 0]) < 0.5, 1]) == pytest.approx(top, abs=0.01)
    face = pos[material_vertices(model, "顔")]
    assert face[:, 1].min() == pytest.approx(chin, abs=1e-4)
    assert abs(face[np.argmin(face[:, 1]), 0]) < 1e-3  # the chin tip is on the midline
    assert 2.0 <= top - chin <= 3.0 and 19.5 <= top <= 21.0


@pytest.mark.parametrize("name", list(EYE_MORPHS))
def test_eye_morph_closes_the_right_eyes(model, name):
    sides, _smile = EYE_MORPHS[name]
    positions, moved = morphed(model, name)
    rest = model.vertices.positions
    assert set(np.sign(rest[moved, 0]).astype(int).tolist()) == set(sides)
    assert np.all(np.abs(rest[moved, 1] - 18.75) < 0.6)  # eye region only
    eye = np.concatenate([material_vertices(model, "白目"), material_vertices(model, "瞳")])
    lid = np.isin(model.indices, moved).any(1)  # the lid's fixed edge stays put
    for side in (1, -1):
        own = eye[np.sign(rest[eye, 0]) == side]
        hidden = covered(positions[own], positions[model.indices[lid]])
        assert hidden.all() == (side in sides), (side, hidden.mean())


def test_smile_and_plain_lids_curve_opposite_ways(model):
    lash = material_vertices(model, "まつげ")
    curvature = {}
    for name in EYE_MORPHS:
        positions, moved = morphed(model, name)
        line = positions[np.intersect1d(lash, moved)]
        for side in EYE_MORPHS[name][0]:
            half = line[np.sign(line[:, 0]) == side]
            curvature[name, side] = np.polyfit(half[:, 0], half[:, 1], 2)[0]
    for (name, side), a in curvature.items():
        smile = EYE_MORPHS[name][1]
        assert (a < -0.3) if smile else (a > 0.3), (name, side, a)


def test_a_opens_the_mouth(model):
    positions, moved = morphed(model, "あ")
    mouth = material_vertices(model, "口")
    assert set(moved.tolist()) <= set(mouth.tolist())
    rest = model.vertices.positions
    drop = positions[moved, 1] - rest[moved, 1]
    assert drop.max() < 0.01 and drop.min() < -0.2

    def dark_area(p: np.ndarray) -> float:
        m = model.materials
        i = m.names.index("口")
        tris = p[model.indices.reshape(-1)[m.index_start[i]:m.index_start[i] + m.index_count[i]].reshape(-1, 3)]
        u, v = tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
        return 0.5 * np.abs(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]).sum()

    assert dark_area(positions) > 4 * dark_area(rest)


def test_deterministic():
    a, b = demo_model(), demo_model()
    for field in ("positions", "normals", "uv", "deform", "bone_indices", "bone_weights", "sdef_c"):
        assert np.array_equal(getattr(a.vertices, field), getattr(b.vertices, field)), field
    assert np.array_equal(a.indices, b.indices)
    for ma, mb in zip(a.morphs, b.morphs):
        assert np.array_equal(ma.index, mb.index) and np.array_equal(ma.data, mb.data)


def test_written_pmx_loads_back_equal(tmp_path, model):
    from renderer.loader import load_model

    path = write_demo(tmp_path / "demo")
    assert path == tmp_path / "demo" / "demo.pmx" and path.is_file()
    assert np.array_equal(np.asarray(Image.open(path.parent / IRIS_TEXTURE)), iris_texture())
    loaded = load_model(path)
    assert (loaded.name, loaded.name_en, loaded.format) == (model.name, model.name_en, "pmx")
    assert loaded.textures_missing == [] and loaded.materials.texture == model.materials.texture
    for field in ("positions", "normals", "uv", "deform", "bone_indices", "bone_weights", "sdef_c"):
        assert np.allclose(getattr(loaded.vertices, field), getattr(model.vertices, field), atol=1e-6), field
    assert np.array_equal(loaded.indices, model.indices)
    assert loaded.materials.names == model.materials.names
    assert np.array_equal(loaded.materials.index_count, model.materials.index_count)
    assert loaded.bones.names == model.bones.names
    assert np.allclose(loaded.bones.positions, model.bones.positions)
    assert [m.name for m in loaded.morphs] == [m.name for m in model.morphs]
    for ml, mm in zip(loaded.morphs, model.morphs):
        assert np.array_equal(ml.index, mm.index) and np.allclose(ml.data, mm.data, atol=1e-6)


def test_rendered_front_view_blinks_winks_and_opens_the_mouth(model):
    from annotator.binding import bind_roles
    drivers = bind_roles({"wink_left": "ウィンク２", "wink_right": "ｳｨﾝｸ２右", "mouth_open": "あ"}, model=model).drivers
    from renderer.context import ContextError, get_context

    try:
        get_context()
    except ContextError as error:
        pytest.skip(f"no OpenGL context: {error}")
    with renderer.Renderer(model, head_bounds=DEMO_HEAD, drivers=drivers, size=256) as r:
        rest, blink, wink_left, mouth_open = r.render_batch(
            [[0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]])

    def eye_white(image: np.ndarray) -> np.ndarray:  # white lit by the DESIGN.md light, per side
        rgb = image[..., :3].astype(int)
        white = (rgb.min(-1) > 225) & (np.ptp(rgb, -1) < 16)  # brighter and more neutral than lit skin or clothes
        return np.array([white[:, :128].sum(), white[:, 128:].sum()])  # viewer's left = character's right

    def mouth_dark(image: np.ndarray) -> int:
        r_, g, b = (image[..., k].astype(int) for k in range(3))
        return int(((r_ > 60) & (g < 50) & (b < 60)).sum())

    right, left = eye_white(rest)
    assert right > 80 and left > 80
    assert eye_white(blink).sum() == 0
    assert eye_white(wink_left)[1] == 0 and eye_white(wink_left)[0] == right
    assert mouth_dark(mouth_open) > 4 * max(mouth_dark(rest), 1)


def test_each_eye_layer_holds_one_part_of_the_eye(model):
    """白目 only whites; 瞳 the teal iris with its dark pupil at the centre and highlights up
    and to the image left in both eyes; まつげ nothing over the iris."""
    from renderer.context import ContextError, get_context

    try:
        get_context()
    except ContextError as error:
        pytest.skip(f"no OpenGL context: {error}")
    names = model.materials.names
    with renderer.Renderer(model, head_bounds=DEMO_HEAD, size=256) as r:
        white, iris, lash = (r.render(None, materials=[names.index(name)]).astype(int)
                             for name in ("白目", "瞳", "まつげ"))
    shown = white[..., 3] > 0
    assert shown.sum() > 300 and (white[shown, :3].min(-1) > 180).all()
    assert (np.ptp(white[shown, :3], -1) < 8).all()  # grey-white: no iris, pupil or lash in it
    rgb, on_iris = iris[..., :3], iris[..., 3] > 0
    dark = on_iris & (rgb.max(-1) < 60)
    teal = on_iris & (rgb[..., 1] > rgb[..., 0] + 60) & (rgb[..., 2] > rgb[..., 0] + 60)
    bright = on_iris & (rgb.min(-1) > 180)
    for half in (np.s_[:, :128], np.s_[:, 128:]):
        rows, columns = np.nonzero(on_iris[half])
        centre = np.array([columns.mean(), rows.mean()])
        assert dark[half].sum() > 20 and teal[half].sum() > 40 and bright[half].sum() > 3
        pupil_rows, pupil_columns = np.nonzero(dark[half])
        # centred across; a little low, as the texture draws it (PUPIL) and the lids clip the top
        offset = np.array([pupil_columns.mean(), pupil_rows.mean()]) - centre
        assert abs(offset[0]) < 2 and 0 < offset[1] < 0.2 * np.ptp(rows)
        spot_rows, spot_columns = np.nonzero(bright[half])
        assert spot_columns.min() < centre[0] and spot_rows.min() < centre[1]
        assert (lash[half][rows, columns, 3] == 0).all()

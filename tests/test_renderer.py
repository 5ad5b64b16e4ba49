"""The GPU renderer on generated models and the demo character (real OpenGL via EGL)."""
from __future__ import annotations

import dataclasses
import gc
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.binding import make_drivers, schema_drivers
from manifests.schema import load_schema
from renderer.model import Bones, Deform, MaterialFlag, Materials, Model, Morph, MorphKind, Vertices

# -- generated models ------------------------------------------------------------------


def make_bones(names: list[str], positions, parents) -> Bones:
    """Plain rotatable bones (no append, IK or axes)."""
    count = len(names)
    zeros3 = np.zeros((count, 3), np.float32)
    return Bones(names=list(names), names_en=list(names), positions=np.asarray(positions, np.float32),
                 parent=np.asarray(parents, np.int32), transform_level=np.zeros(count, np.int32),
                 flags=np.full(count, 0x1A, np.uint16), tail_index=np.full(count, -1, np.int32),
                 tail_offset=zeros3, append_parent=np.full(count, -1, np.int32),
                 append_ratio=np.zeros(count, np.float32), fixed_axis=zeros3, local_x=zeros3,
                 local_z=zeros3, external_key=np.zeros(count, np.int32))


def make_model(positions, faces, material_faces, *, diffuse=None, flags=None, normals=None,
               bones: Bones | None = None, bone_indices=None, bone_weights=None, deform=None,
               sdef=None, morphs=(), edge_size=0.0, uv=None) -> Model:
    """A Model from arrays; ``material_faces`` = triangles per material, in order."""
    positions = np.asarray(positions, np.float32)
    count, materials = len(positions), len(material_faces)
    if normals is None:
        normals = np.tile(np.float32([0, 0, 1]), (count, 1))
    if bones is None:
        bones = make_bones(["root"], [[0, 0, 0]], [-1])
    if bone_indices is None:
        bone_indices = np.tile(np.int32([0, -1, -1, -1]), (count, 1))
        bone_weights = np.tile(np.float32([1, 0, 0, 0]), (count, 1))
    sdef_c, sdef_r0, sdef_r1 = sdef if sdef is not None else (np.zeros((count, 3), np.float32),) * 3
    vertices = Vertices(positions=positions, normals=np.asarray(normals, np.float32),
                        uv=np.zeros((count, 2), np.float32) if uv is None else np.asarray(uv, np.float32),
                        extra_uv=np.zeros((count, 0, 4), np.float32),
                        deform=np.asarray(deform if deform is not None else np.zeros(count), np.uint8),
                        bone_indices=np.asarray(bone_indices, np.int32),
                        bone_weights=np.asarray(bone_weights, np.float32),
                        sdef_c=np.asarray(sdef_c, np.float32), sdef_r0=np.asarray(sdef_r0, np.float32),
                        sdef_r1=np.asarray(sdef_r1, np.float32), edge_scale=np.ones(count, np.float32))
    counts = np.asarray(material_faces, np.int64) * 3
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    names = [f"material{i}" for i in range(materials)]
    diffuse = np.asarray(diffuse if diffuse is not None else [[0.8, 0.6, 0.4, 1.0]] * materials, np.float32)
    mats = Materials(names=names, names_en=names, diffuse=diffuse,
                     specular=np.zeros((materials, 3), np.float32), shininess=np.zeros(materials, np.float32),
                     ambient=diffuse[:, :3] * 0.5, flags=np.asarray(flags or [0] * materials, np.uint8),
                     edge_color=np.tile(np.float32([0, 0, 0, 1]), (materials, 1)),
                     edge_size=np.full(materials, edge_size, np.float32), texture=[None] * materials,
                     sphere=[None] * materials, sphere_mode=np.zeros(materials, np.uint8),
                     toon=[None] * materials, toon_shared=np.zeros(materials, bool),
                     index_start=starts, index_count=counts)
    return Model(name="test", name_en="test", comment="", format="pmx", version=2.0, vertices=vertices,
                 indices=np.asarray(faces, np.uint32).reshape(-1, 3), materials=mats, bones=bones,
                 morphs=list(morphs))


def quad(x0, y0, x1, y1, z=0.0, facing=1.0) -> tuple[np.ndarray, np.ndarray]:
    """Corners and two triangles of an axis-aligned rectangle; counter-clockwise seen from +z
    when ``facing`` is +1, from -z when -1."""
    corners = np.float32([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]])
    faces = np.array([[0, 1, 2], [0, 2, 3]]) if facing > 0 else np.array([[0, 2, 1], [0, 3, 2]])
    return corners, faces


def quads_model(rects, **options) -> Model:
    """One material per rectangle (x0, y0, x1, y1, z[, facing])."""
    positions, faces = [], []
    for i, rect in enumerate(rects):
        corners, tris = quad(*rect)
        positions.append(corners)
        faces.append(tris + 4 * i)
    return make_model(np.concatenate(positions), np.concatenate(faces), [2] * len(rects), **options)


def tube_model(bones: Bones, lower: int, upper: int, deform: Deform, *, blend=(0.8, 1.2), joint=1.0,
               radius=0.25, rings=41, segments=24) -> Model:
    """A capped-off tube along y from 0 to 2 whose vertices blend from bone ``lower`` to
    ``upper`` across ``blend``; SDEF centres at the joint on the axis."""
    y = np.linspace(0.0, 2.0, rings, dtype=np.float32)
    angle = np.linspace(0, 2 * np.pi, segments, endpoint=False, dtype=np.float32)
    ring = np.stack([np.cos(angle), np.zeros_like(angle), np.sin(angle)], 1)
    positions = (ring[None] * radius + y[:, None, None] * np.float32([0, 1, 0])).reshape(-1, 3)
    normals = np.tile(ring, (rings, 1))
    a = np.arange(rings - 1)[:, None] * segments + np.arange(segments)[None]
    b = (np.arange(rings - 1)[:, None] * segments + (np.arange(segments)[None] + 1) % segments)
    faces = np.stack([np.stack([a, a + segments, b], -1), np.stack([b, a + segments, b + segments], -1)], 2)
    faces = faces.reshape(-1, 3)
    upper_weight = np.clip((positions[:, 1] - blend[0]) / (blend[1] - blend[0]), 0, 1)
    if deform == Deform.BDEF1:
        upper_weight = np.round(upper_weight)
    count = len(positions)
    indices = np.tile(np.int32([lower, upper, -1, -1]), (count, 1))
    weights = np.stack([1 - upper_weight, upper_weight, 0 * upper_weight, 0 * upper_weight], 1)
    centre = np.tile(np.float32([0, joint, 0]), (count, 1))
    return make_model(positions, faces, [len(faces)], normals=normals, bones=bones, bone_indices=indices,
                      bone_weights=weights, deform=np.full(count, deform), sdef=(centre, centre, centre))


def covered(image: np.ndarray) -> np.ndarray:
    return image[..., 3] > 0


REST = None  # no drivers: nothing posed


@pytest.fixture(scope="module")
def overlap_image() -> np.ndarray:
    """Two alpha-0.5 quads overlapping in the middle, one in front of the other."""
    from renderer.renderer import Renderer
    model = quads_model([(-1, 0, 0.5, 1, 0.0), (-0.5, -0.5, 1, 0.5, 0.1)],
                        diffuse=[[1, 0, 0, 0.5], [0, 0, 1, 0.5]])
    with Renderer(model, head_bounds=(1.0, -1.0), size=64) as renderer:
        return renderer.render(REST)


def test_background_is_exactly_zero(overlap_image):
    # 16 pixels per unit, origin at pixel (32, 32): the quads cover rows 16..39, columns 16..47.
    inside = np.zeros((64, 64), bool)
    inside[16:32, 16:40] = True
    inside[24:40, 24:48] = True
    assert (overlap_image[~inside] == 0).all()
    assert (overlap_image[inside][:, 3] > 0).all()


def test_semi_transparent_overlap_is_straight_alpha(overlap_image):
    red_only, blue_only, both = (overlap_image[p].astype(int) for p in ((20, 20), (36, 44), (28, 30)))
    assert red_only[3] == blue_only[3] == 128
    assert both[3] == pytest.approx(191, abs=1)  # 1 - 0.5 * 0.5
    assert red_only[0] > 150 and red_only[2] == 0
    # blue drawn second, over red: straight colour = (red * 0.25 + blue * 0.5) / 0.75
    assert both[2] == pytest.approx(blue_only[2] * 2 / 3, abs=2)
    assert both[0] == pytest.approx(red_only[0] / 3, abs=2)


@pytest.mark.parametrize("size", [128, 256])
def test_head_top_and_chin_land_on_the_middle_half(size):
    from renderer.renderer import Renderer
    top, chin = 21.5, 17.5
    with Renderer(quads_model([(-1, chin, 1, top, 0.0)]), head_bounds=(top, chin), size=size) as renderer:
        rows = np.flatnonzero(covered(renderer.render(REST)).any(axis=1))
    assert abs(rows[0] - size // 4) <= 1 and abs(rows[-1] + 1 - 3 * size // 4) <= 1


def test_head_is_centred_horizontally_on_the_head_bone():
    from renderer.renderer import Renderer
    bones = make_bones(["root", "頭"], [[0, 0, 0], [3.0, 1.0, 0]], [-1, 0])
    with Renderer(quads_model([(2.5, 0, 3.5, 2, 0.0)], bones=bones), head_bounds=(2.0, 0.0), size=128) as r:
        columns = np.flatnonzero(covered(r.render(REST)).any(axis=0))
    assert abs((columns[0] + columns[-1] + 1) / 2 - 64) <= 1


def test_back_faces_are_culled_unless_double_sided():
    from renderer.renderer import Renderer
    rects = [(-1, 0, 0, 1, 0.0, -1.0), (0, 0, 1, 1, 0.0, -1.0)]
    model = quads_model(rects, flags=[0, MaterialFlag.DOUBLE_SIDED])
    with Renderer(model, head_bounds=(1.0, -1.0), size=64) as renderer:
        image = covered(renderer.render(REST))
    assert not image[:, :32].any()
    assert image[16:32, 32:48].all()


def _render_tube(bones: Bones, lower: int, upper: int, deform: Deform, pose, **options) -> np.ndarray:
    from renderer.renderer import Renderer
    model = tube_model(bones, lower, upper, deform, **options)
    # 32 pixels per unit, y = 1 on row 64, x = 0 between columns 63 and 64
    neck, head = model.bones.find("首"), model.bones.find("頭")
    drivers = make_drivers(load_schema("tha1"), {}, {"neck_z": [neck], "head_x": [head], "head_y": [head]})
    drivers = dataclasses.replace(drivers, bone_radians=tuple(6 * r for r in drivers.bone_radians))  # 90 degrees at 1
    with Renderer(model, head_bounds=(2.0, 0.0), size=128, drivers=drivers) as renderer:
        return covered(renderer.render(pose))


def _reach(mask: np.ndarray, direction: tuple[float, float]) -> float:
    """How far (model units) the silhouette extends from the joint (0, 1) along ``direction``."""
    steps = np.arange(0, 64) / 32
    columns = np.floor(64 + 32 * steps * direction[0]).astype(int)
    rows = np.floor(64 - 32 * steps * direction[1]).astype(int)
    inside = mask[rows.clip(0, 127), columns.clip(0, 127)]
    return float(steps[np.flatnonzero(inside)[-1]]) if inside.any() else 0.0


def test_sdef_keeps_the_elbow_round_where_linear_blend_collapses():
    # The upper half (bone 首, pivot at the joint) bends 90 degrees towards image left.
    bones = make_bones(["root", "首", "頭"], [[0, 0, 0], [0, 1, 0], [0, 2, 0]], [-1, -1, 1])
    bend = [0, 0, 0, 1, 0, 0]
    outer = (1 / np.sqrt(2), 1 / np.sqrt(2))
    linear = _reach(_render_tube(bones, 0, 1, Deform.BDEF2, bend), outer)
    sdef = _reach(_render_tube(bones, 0, 1, Deform.SDEF, bend), outer)
    # Each SDEF ring turns rigidly about the joint, keeping the tube's radius (0.25).
    assert sdef >= 0.95 * 0.25 > 0.8 * 0.25 >= linear


def test_qdef_keeps_the_volume_of_a_twisted_tube():
    # The upper half (bone 頭, pivot at the joint) twists 90 degrees about the tube's axis.
    bones = make_bones(["root", "首", "頭"], [[0, 0, 0], [0, 1, 0], [0, 1, 0]], [-1, 0, -1])
    twist = [0, 0, 0, 0, 0, 1]
    width = {deform: _render_tube(bones, 0, 2, deform, twist, blend=(0.6, 1.4))[64].sum()
             for deform in (Deform.BDEF2, Deform.QDEF)}
    assert width[Deform.QDEF] >= 15  # the tube is 16 pixels wide
    assert width[Deform.BDEF2] <= 0.8 * 16


# -- lighting: DESIGN.md's Phong and MMD's colours --------------------------------------


def _centre_colour(model, shading: str = "phong") -> np.ndarray:
    """RGB at the image centre of a unit-quad model seen by the head framing."""
    from renderer.renderer import Renderer
    with Renderer(model, head_bounds=(1.0, -1.0), size=32, shading=shading) as renderer:
        return renderer.render(REST)[16, 16, :3].astype(int)


@pytest.mark.parametrize("diffuse", [(1.0, 1.0, 1.0), (0.4, 0.2, 0.6), (0.9, 0.1, 0.1)])
def test_phong_shows_a_surface_facing_the_light_in_its_full_mmd_colour(diffuse):
    """Ambient 0.5 + directional 0.5 reflected by MMD's colour (diffuse x 154/255 + ambient):
    lit white is white, not 75% grey; edge-on the surface keeps the ambient half."""
    from renderer.shading import mmd_colour
    model = quads_model([(-1, -1, 1, 1, 0.0)], diffuse=[[*diffuse, 1.0]])
    expected = np.rint(mmd_colour(model.materials.diffuse[0], model.materials.ambient[0]) * 255)
    np.testing.assert_allclose(_centre_colour(model), expected, atol=1)
    np.testing.assert_allclose(_centre_colour(model, "toon"), expected, atol=1)  # toon without a ramp: the same
    model.vertices.normals[:] = [1, 0, 0]
    np.testing.assert_allclose(_centre_colour(model), np.rint(expected / 2), atol=1)


@pytest.mark.parametrize("shading", ["phong", "toon"])
@pytest.mark.parametrize("mode, sphere, expected", [
    (1, (0.2, 0.6, 0.7), lambda colour, sphere: colour * sphere),  # .sph: multiply
    (2, (0.25, 0.25, 0.25), lambda colour, sphere: np.minimum(colour + sphere, 1)),  # .spa: add
])
def test_sphere_maps_multiply_or_add_in_both_shadings(tmp_path, shading, mode, sphere, expected):
    """miku_m's hair colour lives in its multiply sphere map; Phong used to drop it (silver hair)."""
    from renderer.shading import mmd_colour
    Image.new("RGB", (8, 8), tuple(round(255 * c) for c in sphere)).save(tmp_path / "sphere.bmp")
    model = quads_model([(-1, -1, 1, 1, 0.0)], diffuse=[[0.6, 0.6, 0.6, 1.0]])
    model.materials.sphere[0], model.materials.sphere_mode[0] = "sphere.sph", mode
    model.texture_paths["sphere.sph"] = str(tmp_path / "sphere.bmp")
    colour = mmd_colour(model.materials.diffuse[0], model.materials.ambient[0])
    np.testing.assert_allclose(_centre_colour(model, shading), np.rint(expected(colour, np.array(sphere)) * 255),
                               atol=2)


# -- the demo character ----------------------------------------------------------------

GOLDEN = Path(__file__).parent / "golden"
DEMO_POSES = {
    "rest": [0, 0, 0, 0, 0, 0],
    "wink_left": [1, 0, 0, 0, 0, 0],
    "wink_right": [0, 1, 0, 0, 0, 0],
    "mouth_open": [0, 0, 1, 0, 0, 0],
    **{f"{axis}_{sign}": [0, 0, 0, *[(1 if sign == "plus" else -1) * (k == i) for k in range(3)]]
       for i, axis in enumerate(("neck_z", "head_x", "head_y")) for sign in ("plus", "minus")},
}


@pytest.fixture(scope="module")
def demo():
    from renderer.demo import DEMO_HEAD, demo_model
    from renderer.renderer import Renderer
    model = demo_model()
    roles = {"wink_left": "ウィンク２", "wink_right": "ｳｨﾝｸ２右", "mouth_open": "あ"}
    with Renderer(model, head_bounds=DEMO_HEAD, drivers=schema_drivers(model, roles), size=128) as renderer:
        yield renderer


@pytest.fixture(scope="module")
def demo_images(demo) -> dict[str, np.ndarray]:
    return dict(zip(DEMO_POSES, demo.render_batch(list(DEMO_POSES.values()))))


def _material(renderer, name: str) -> int:
    return renderer.model.materials.names.index(name)


def _centroid(mask: np.ndarray) -> np.ndarray:
    """(column, row) mean of the covered pixels."""
    rows, columns = np.nonzero(mask)
    return np.array([columns.mean(), rows.mean()])


def _eyes(demo, pose) -> np.ndarray:
    return _centroid(covered(demo.render(pose, materials=[_material(demo, "瞳")])))


def test_head_y_turns_the_face_to_the_characters_left_which_is_image_right(demo):
    assert _eyes(demo, [0, 0, 0, 0, 0, 1])[0] > _eyes(demo, REST)[0] + 3
    assert _eyes(demo, [0, 0, 0, 0, 0, -1])[0] < _eyes(demo, REST)[0] - 3


def test_head_x_looks_up_so_the_chin_rises(demo):
    face = _material(demo, "顔")

    def chin_row(pose) -> int:
        return int(np.flatnonzero(covered(demo.render(pose, materials=[face])).any(axis=1))[-1])

    assert chin_row([0, 0, 0, 0, 1, 0]) < chin_row(REST) - 1
    assert chin_row([0, 0, 0, 0, -1, 0]) > chin_row(REST) + 1


def test_neck_z_tilts_the_head_towards_the_characters_right_which_is_image_left(demo):
    assert _eyes(demo, [0, 0, 0, 1, 0, 0])[0] < _eyes(demo, REST)[0] - 3


def _eye_white(image: np.ndarray) -> np.ndarray:
    rgb = image[..., :3].astype(int)
    return covered(image) & (rgb.min(axis=-1) > 190) & (np.ptp(rgb, axis=-1) < 12)


def test_eye_morphs_close_the_named_eye(demo_images):
    rest = _eye_white(demo_images["rest"])
    half = rest.shape[1] // 2  # the character's left eye is on the image's right
    for name, closed, open_ in (("wink_left", np.s_[:, half:], np.s_[:, :half]),
                                ("wink_right", np.s_[:, :half], np.s_[:, half:])):
        white = _eye_white(demo_images[name])
        assert white[closed].sum() < 0.3 * rest[closed].sum()
        assert white[open_].sum() == pytest.approx(rest[open_].sum(), rel=0.1)


def test_mouth_morph_opens_a_dark_mouth(demo_images):
    def dark_red(image):
        rgb = image[..., :3].astype(int)
        return (covered(image) & (rgb[..., 0] > 2 * rgb[..., 1]) & (rgb[..., 0] < 160)).sum()

    assert dark_red(demo_images["mouth_open"]) > dark_red(demo_images["rest"]) + 20


def test_demo_matches_golden_images(demo_images):
    """Golden PNGs in tests/golden; regenerate with MMDSYNTH_REGEN_GOLDEN=1 after a deliberate change."""
    if os.environ.get("MMDSYNTH_REGEN_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        for name, image in demo_images.items():
            Image.fromarray(image).save(GOLDEN / f"demo_{name}.png", optimize=True)
    for name, image in demo_images.items():
        golden = np.asarray(Image.open(GOLDEN / f"demo_{name}.png"))
        difference = np.abs(image.astype(int) - golden.astype(int))
        assert difference.mean() < 2 and np.percentile(difference, 99) < 40, name


def test_material_morph_with_zero_alpha_hides_the_material():
    from renderer.renderer import Renderer
    tint = np.ones((1, 28), np.float32)
    tint[0, 3] = 0.0  # diffuse alpha multiplied by 0
    hide = Morph(name="hide", name_en="hide", panel=4, kind=MorphKind.MATERIAL, index=np.int32([1]),
                 data=tint, op=np.uint8([0]))
    model = quads_model([(-1, 0, 0, 1, 0.0), (0, 0, 1, 1, 0.0)], morphs=[hide])
    with Renderer(model, head_bounds=(1.0, -1.0), size=64) as renderer:
        shown, hidden = renderer.render(REST), renderer.render(REST, extra_morphs={"hide": 1.0})
    assert covered(shown)[16:32, 32:48].all()
    assert not covered(hidden)[:, 32:].any()
    assert (hidden[:, :32] == shown[:, :32]).all()


def _live_gpu_objects() -> int:
    import moderngl
    kinds = (moderngl.Buffer, moderngl.Texture, moderngl.Framebuffer, moderngl.Renderbuffer,
             moderngl.VertexArray, moderngl.Program)
    return sum(1 for obj in gc.get_objects()
               if isinstance(obj, kinds) and type(obj.mglo).__name__ != "InvalidObject")


def test_gpu_objects_are_made_once_and_released():
    from renderer.renderer import Renderer
    gc.collect()
    before = _live_gpu_objects()
    renderer = Renderer(quads_model([(-1, 0, 0, 1, 0.0)]), head_bounds=(1.0, -1.0), size=32, msaa=4)
    renderer.render(REST)
    made = _live_gpu_objects()
    renderer.render_batch(np.zeros((3, 0)))
    assert _live_gpu_objects() == made > before
    renderer.release()
    assert _live_gpu_objects() == before


def test_msaa_smooths_edges_and_keeps_the_background_exactly_zero():
    from renderer.renderer import Renderer
    model = make_model(np.float32([[-1, -1, 0], [1, -0.8, 0], [0, 1, 0]]), [[0, 1, 2]], [1])
    with Renderer(model, head_bounds=(1.0, -1.0), size=64, msaa=4) as renderer:
        image = renderer.render(REST)
    alpha = image[..., 3]
    assert ((alpha > 0) & (alpha < 255)).sum() > 20  # partially covered edge pixels
    assert (image[alpha == 0] == 0).all()
    assert (image[alpha > 0, :3] > 0).any(axis=-1).all()


def test_toon_edges_outline_the_silhouette():
    from renderer.renderer import Renderer
    bones = make_bones(["root"], [[0, 0, 0]], [-1])
    model = tube_model(bones, 0, 0, Deform.BDEF1)
    model.materials.flags[:] = MaterialFlag.EDGE
    model.materials.edge_size[:] = 2.0
    widths = {}
    for edges in (False, True):
        with Renderer(model, head_bounds=(2.0, 0.0), size=128, shading="toon", edges=edges) as renderer:
            image = renderer.render(REST)
        widths[edges] = covered(image)[64].sum()
        assert (image[~covered(image)] == 0).all()
    assert widths[True] >= widths[False] + 3  # about two pixels on each side


def test_one_morph_for_both_eyes_takes_the_larger_weight():
    from renderer.demo import DEMO_HEAD, demo_model
    from renderer.renderer import Renderer
    roles = {"wink_left": "まばたき", "wink_right": "まばたき", "mouth_open": "あ"}
    drivers = schema_drivers(demo_model(), roles)
    with Renderer(demo_model(), head_bounds=DEMO_HEAD, drivers=drivers, size=64) as renderer:
        left, right, both, half = renderer.render_batch([[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0],
                                                         [1, 1, 0, 0, 0, 0], [1, 0.5, 0, 0, 0, 0]])
        rest = renderer.render(REST)
    assert (left == right).all() and (left == both).all() and (left == half).all()
    assert (left != rest).any()


def test_bad_pose_and_unknown_morph_are_clear_errors():
    from renderer.errors import ModelError
    from renderer.posing import Drivers
    from renderer.renderer import Renderer
    model = quads_model([(-1, 0, 0, 1, 0.0)])
    with pytest.raises(ModelError, match="no morph named 'あ'"):
        Renderer(model, drivers=Drivers(size=1, morphs=("あ",), morph_param=(0,)))
    with Renderer(model, size=16, drivers=Drivers(size=6)) as renderer:
        with pytest.raises(ValueError, match="6 finite numbers"):
            renderer.render([0, 0, 1])
        with pytest.raises(ValueError, match="out of range"):
            renderer.render(REST, materials=[5])


def test_textures_are_sampled_with_mmd_v_pointing_down(tmp_path):
    from renderer.renderer import Renderer
    pixels = np.zeros((8, 8, 4), np.uint8)
    pixels[:4] = (255, 0, 0, 255)  # top half of the image red
    pixels[4:] = (0, 0, 255, 255)
    Image.fromarray(pixels).save(tmp_path / "two.png")
    corners, faces = quad(-1, -1, 1, 1)
    uv = [[0, 1], [1, 1], [1, 0], [0, 0]]  # the quad's top edge at v = 0, the image's first row
    model = make_model(corners, faces, [2], uv=uv, diffuse=[[1, 1, 1, 1]])
    model.materials.texture[0] = "two.png"
    model.texture_paths = {"two.png": str(tmp_path / "two.png")}
    with Renderer(model, head_bounds=(1.0, -1.0), size=64) as renderer:
        image = renderer.render(REST).astype(int)
    top, bottom = image[20, 32], image[44, 32]
    assert top[0] > 150 and top[2] == 0
    assert bottom[2] > 150 and bottom[0] == 0


# -- mmdsynth preview ------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory) -> tuple[Path, Path]:
    from pipeline.demo import write_demo_manifest
    return write_demo_manifest(tmp_path_factory.mktemp("demo"))


def _preview(*args: str):
    from click.testing import CliRunner

    from pipeline.cli import cli
    return CliRunner().invoke(cli, ["preview", *args])


def test_preview_with_a_manifest_frames_the_annotated_head(demo_files, tmp_path):
    model, manifest = demo_files
    out = tmp_path / "preview.png"
    result = _preview(str(model), "--out", str(out), "--size", "64", "--manifest", str(manifest),
                      "--pose", "1,0,1,0,0,0")
    assert result.exit_code == 0, result.output
    assert f"from {manifest}" in result.output
    rows = np.flatnonzero(np.asarray(Image.open(out))[..., 3].any(axis=1))
    assert abs(rows[0] - 16) <= 2  # DEMO_HEAD's top on row 64 of 256


def test_preview_without_a_manifest_says_what_it_used(demo_files, tmp_path):
    result = _preview(str(demo_files[0]), "--out", str(tmp_path / "p.png"), "--size", "32")
    assert result.exit_code == 0, result.output
    assert "head bounds" in result.output and (tmp_path / "p.png").is_file()


@pytest.mark.parametrize("pose", ["1,2,3", "a,0,0,0,0,0", "0,0,2,0,0,0"])
def test_preview_rejects_a_bad_pose_in_one_line(demo_files, tmp_path, pose):
    result = _preview(str(demo_files[0]), "--out", str(tmp_path / "p.png"), "--pose", pose)
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: --pose") and "\n" not in result.output.strip()


def test_full_body_and_region_cameras():
    from renderer.framing import full_body_camera, region_camera
    from renderer.renderer import Renderer
    model = quads_model([(-1, 0, 1, 8, 0.0)])
    with Renderer(model, size=64) as renderer:
        body = covered(renderer.render(REST, camera=full_body_camera(model)))
        close = covered(renderer.render(REST, camera=region_camera((1.0, 8.0, 0.0), 1.0)))
    rows, columns = np.flatnonzero(body.any(axis=1)), np.flatnonzero(body.any(axis=0))
    assert rows[0] <= 2 and rows[-1] >= 61  # 8 units tall in a window 8.4 tall
    assert abs((columns[0] + columns[-1] + 1) / 2 - 32) <= 1
    assert close[32:, :32].all() and not close[:32].any() and not close[:, 32:].any()


def _context_in_child(results) -> None:
    from renderer.context import ContextError, get_context
    try:
        get_context()
        results.put("made a context")
    except ContextError as error:
        results.put(str(error))


def test_context_is_one_per_process_and_a_forked_child_gets_a_clear_error():
    import multiprocessing

    from renderer.context import get_context
    assert get_context() is get_context()
    fork = multiprocessing.get_context("fork")
    results = fork.Queue()
    child = fork.Process(target=_context_in_child, args=(results,))
    child.start()
    message = results.get(timeout=60)
    child.join(timeout=60)
    assert "forked" in message and "spawn" in message


def test_a_renderer_dropped_without_release_frees_its_gpu_objects():
    import moderngl

    from renderer.renderer import Renderer

    kinds = (moderngl.Buffer, moderngl.Texture, moderngl.Framebuffer, moderngl.Renderbuffer,
             moderngl.VertexArray, moderngl.Program)

    def live() -> set[int]:
        return {id(obj) for obj in kept if type(obj.mglo).__name__ != "InvalidObject"}

    gc.collect()
    renderer = Renderer(quads_model([(-1, 0, 0, 1, 0.0)]), head_bounds=(1.0, -1.0), size=32)
    renderer.render(REST)
    kept = [obj for obj in gc.get_objects() if isinstance(obj, kinds)]  # alive: only a release() invalidates them
    before = live()
    del renderer
    gc.collect()
    freed = before - live()
    assert len(freed) >= 5, f"{len(freed)} of {len(before)} GPU objects freed"

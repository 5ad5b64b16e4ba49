"""The renderer on the shared third-party models: framing, failure on non-characters, and a
contact sheet in tests/artifacts for a person to look at (textures, v flip, winding)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import CHARACTERS, SHARED
from PIL import Image

from renderer.errors import ModelError

pytestmark = pytest.mark.real_models

SIZE = 128
# Labelled head bounds (top, chin) and pose morphs (eye_left, eye_right, mouth), as in
# tests/labels, with the blink's one-eye halves where a model has no winks.
HEADS = {
    "appearance_miku": ((19.35, 16.12), ("まばたき[left]", "まばたき[right]", "あ")),
    "appearance_miku_bdef": ((19.35, 16.12), ("まばたき[left]", "まばたき[right]", "あ")),
    "miku_v2": ((20.18, 16.7), ("ｳｨﾝｸ２右", "ウィンク２", "あ")),
    "mokou": ((19.33, 16.48), ("まばたき[left]", "まばたき[right]", "あ")),
    "gumi": ((20.05, 11.21), (None, None, None)),
}
POSED = [1.0, 0.0, 1.0, 0.6, 0.5, 0.8]


@pytest.fixture(scope="module")
def renders(shared_models) -> dict[str, dict[str, np.ndarray]]:
    from annotator.binding import schema_drivers
    from renderer.loader import load_model
    from renderer.renderer import Renderer

    images = {}
    for name in CHARACTERS:
        model = load_model(shared_models / SHARED[name])
        head, morphs = HEADS[name]
        images[name] = {}
        drivers = schema_drivers(model, dict(zip(("wink_left", "wink_right", "mouth_open"), morphs)))
        for shading in ("phong", "toon"):
            with Renderer(model, head_bounds=head, drivers=drivers, size=SIZE, shading=shading,
                          edges=shading == "toon") as renderer:
                rest, posed = renderer.render_batch([[0, 0, 0, 0, 0, 0], POSED])
            images[name][f"{shading} rest"], images[name][f"{shading} posed"] = rest, posed
    return images


@pytest.mark.parametrize("name", CHARACTERS)
def test_shared_model_renders_framed_on_its_head(renders, name):
    image = renders[name]["phong rest"]
    alpha = image[..., 3]
    rows = np.flatnonzero((alpha > 0).any(axis=1))
    # The head spans rows 32..96 and the model continues below the chin; only ornaments
    # (ribbons, ahoge) rise above the annotated top, so the top row is at most reached.
    assert rows[0] <= SIZE // 4 + 2
    assert (alpha[SIZE // 4 + 2, SIZE // 2 - 16:SIZE // 2 + 16] > 0).any()
    assert rows[-1] == SIZE - 1
    face_band = alpha[SIZE // 4 + 4:3 * SIZE // 4 - 4, SIZE // 2 - 8:SIZE // 2 + 8]
    assert (face_band > 0).mean() > 0.95
    assert (image[alpha == 0] == 0).all()
    assert (renders[name]["phong posed"] != image).any()


def test_model_with_no_vertices_is_rejected(shared_models):
    from renderer.loader import load_model
    from renderer.renderer import Renderer

    with pytest.raises(ModelError, match="dummy.pmd"):
        Renderer(load_model(shared_models / SHARED["dummy"]), size=SIZE)


def test_contact_sheet_of_shared_models(renders, artifacts):
    """One row per model: phong rest and posed, toon (with edges) rest and posed."""
    rows = [np.concatenate(list(images.values()), axis=1) for images in renders.values()]
    sheet = np.concatenate(rows, axis=0)
    background = np.full(sheet.shape[:2] + (3,), 96, np.float32)  # grey shows the alpha edges
    alpha = sheet[..., 3:] / 255.0
    composite = (sheet[..., :3] * alpha + background * (1 - alpha)).astype(np.uint8)
    path = artifacts / "renderer_shared_models.png"
    Image.fromarray(composite).save(path)
    assert path.stat().st_size > 0


def _eye_centroid(renderer, rotation: list[float]) -> np.ndarray:
    """(column, row) centre of the pixels the model's blink changes: where its eyes are."""
    open_, closed = renderer.render_batch([[0, 0, 0, *rotation], [1, 1, 0, *rotation]])
    rows, columns = np.nonzero(np.abs(open_.astype(int) - closed.astype(int)).sum(axis=-1) > 30)
    assert len(rows) > 20, "the blink changed no pixels"
    return np.array([columns.mean(), rows.mean()])


@pytest.mark.parametrize("name", ["miku_v2", "appearance_miku"])
def test_pose_signs_on_a_real_model(shared_models, name):
    """DESIGN.md's signs, seen in the image (the character's left is the image's right)."""
    from annotator.binding import schema_drivers
    from renderer.loader import load_model
    from renderer.renderer import Renderer

    model = load_model(shared_models / SHARED[name])
    roles = {"wink_left": "まばたき[left]", "wink_right": "まばたき[right]", "mouth_open": "あ"}
    with Renderer(model, head_bounds=HEADS[name][0], drivers=schema_drivers(model, roles), size=SIZE) as renderer:
        rest = _eye_centroid(renderer, [0, 0, 0])
        turned_left = _eye_centroid(renderer, [0, 0, 1])  # head_y > 0
        looking_up = _eye_centroid(renderer, [0, 1, 0])  # head_x > 0
        tilted = _eye_centroid(renderer, [1, 0, 0])  # neck_z > 0
    assert turned_left[0] > rest[0] + 2, "head_y > 0 must turn the face to the character's left"
    assert looking_up[1] < rest[1] - 2, "head_x > 0 must lift the face"
    assert tilted[0] < rest[0] - 2, "neck_z > 0 must tilt the head to the character's right shoulder"


LIGHTING_MODELS = {"miku_m": "mmd_default/miku_m.pmd", "appearance_miku": SHARED["appearance_miku"],
                   "meiko": "mmd_default/MEIKO.pmd", "chanco_miku": "chanco_chibi/CHANxCO_style_MIKU.pmx"}


def test_phong_keeps_mmd_colours_and_sphere_maps_beside_toon(shared_models, artifacts):
    """Phong beside toon (full body) in tests/artifacts/lighting_phong_toon.png. miku_m's hair
    takes its teal from the multiply sphere map mikuhair.sph: it must not render silver."""
    from renderer.framing import full_body_camera
    from renderer.loader import load_model
    from renderer.renderer import Renderer

    rows = []
    for name, path in LIGHTING_MODELS.items():
        model = load_model(shared_models / path)
        row = []
        for shading in ("phong", "toon"):
            with Renderer(model, size=192, shading=shading, edges=shading == "toon") as renderer:
                camera = full_body_camera(model)
                row.append(renderer.render(None, camera=camera))
                if name == "miku_m":
                    hair = renderer.render(None, camera=camera, materials=[1])  # 材質2, sphere mikuhair.sph
                    rgb = hair[hair[..., 3] > 0, :3].astype(float).mean(0)
                    assert rgb[1] > rgb[0] + 60 and rgb[2] > rgb[0] + 60, (shading, rgb)
        rows.append(np.concatenate(row, axis=1))
    sheet = np.concatenate(rows, axis=0)
    alpha = sheet[..., 3:] / 255.0
    Image.fromarray((sheet[..., :3] * alpha + 96 * (1 - alpha)).astype(np.uint8)).save(
        artifacts / "lighting_phong_toon.png")

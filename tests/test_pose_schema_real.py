"""THA3's parameters on the real characters: roles found by name and kept by their measured effect
agree with the careful labels of tests/labels, a tha3 build over the shared characters, and a
contact sheet per parameter category (tests/artifacts/tha3_{category}.png) for a person to look at."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from annotator.quality import read_labels, true_roles
from manifests.record import Record
from manifests.schema import load_schema

pytestmark = pytest.mark.real_models
LABELS = read_labels("tuning", "holdout")
# THA3 role -> the labels' category for the same look
CATEGORY = {"eyebrow_troubled": "brow_troubled", "eyebrow_angry": "brow_angry", "eyebrow_lowered": "brow_lowered",
            "eyebrow_raised": "brow_raised", "eyebrow_happy": "brow_happy", "eyebrow_serious": "brow_serious",
            "eye_surprised": "eye_surprised", "eye_relaxed": "eye_relaxed", "eye_unimpressed": "eye_unimpressed",
            "eye_raised_lower_eyelid": "eye_raised_lower_eyelid", "iris_small": "iris_small",
            "mouth_iii": "mouth_i", "mouth_uuu": "mouth_u", "mouth_eee": "mouth_e", "mouth_ooo": "mouth_o",
            "mouth_delta": "mouth_delta", "mouth_lowered_corner": "mouth_corner_down",
            "mouth_raised_corner": "mouth_corner_up", "mouth_smirk": "mouth_smirk"}
MODELS = ["mmd_default/miku_v2.pmd", "appearance_miku/Appearance Miku.pmx", "mokou/mokou_A.pmd",
          "mmd_default/MEIKO.pmd", "touhou/HakureiReimu_v1.0/HakureiReimu.pmx", "chanco_chibi/CHANxCO_style_MIKU.pmx",
          "low_poly/gumi.pmd"]
FLOOR = {"mmd_default/miku_v2.pmd": 39, "appearance_miku/Appearance Miku.pmx": 40, "mokou/mokou_A.pmd": 28,
         "mmd_default/MEIKO.pmd": 39, "touhou/HakureiReimu_v1.0/HakureiReimu.pmx": 42,
         "chanco_chibi/CHANxCO_style_MIKU.pmx": 13}  # measured when the drivers were written


def labelled_roles(name: str) -> dict[str, str | None]:
    return {role: (sorted(names)[0] if names else None) for role, names in true_roles(LABELS[name]).items()}


def head(name: str) -> tuple[float, float]:
    return LABELS[name]["head"]["top"], LABELS[name]["head"]["chin"]


@pytest.fixture(scope="module")
def bound(shared_models):
    """{model: Binding (checked) or the refusal's reason} for MODELS under tha3."""
    from annotator.binding import RoleError
    from pipeline.build import ChannelCheckError, checked
    from renderer.loader import load_model

    schema, result = load_schema("tha3"), {}
    for name in MODELS:
        try:
            result[name] = checked(labelled_roles(name), load_model(shared_models / name), head(name), schema)
        except (RoleError, ChannelCheckError) as error:
            result[name] = str(error)
    return result


def test_roles_found_by_name_and_effect_are_the_labelled_ones(bound, artifacts):
    schema, right, wrong, lines = load_schema("tha3"), 0, [], []
    for name, binding in bound.items():
        if isinstance(binding, str):
            lines.append(f"{name}: refused ({binding})")
            continue
        looks = {}
        for entry in (LABELS[name].get("morphs") or {}).values():
            looks.setdefault(str(entry[0]).strip(), set()).add(entry[1])
        for role, morph in binding.found.items():
            if CATEGORY[role] in looks.get(morph.strip(), set()):
                right += 1
            else:
                wrong.append((name, role, morph, looks.get(morph.strip())))
        lines.append(f"{name}: {schema.size - len(binding.masked)} of 45")
        assert schema.size - len(binding.masked) >= FLOOR[name], name
    (artifacts / "tha3_expressible.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert right >= 60 and len(wrong) <= 0.05 * (right + len(wrong)), wrong
    assert "gumi" in next(line for line in lines if "refused" in line)  # no eye or mouth morph: refused


def test_tha3_build_over_the_shared_characters(shared_models, tmp_path):
    from pipeline import shards
    from pipeline.build import build
    from pipeline.verify import verify

    records = [Record(model=name, group=name.split("/")[0] + str(i), split="train", status="ok",
                      head={"top": head(name)[0], "bottom": head(name)[1]}, morphs=labelled_roles(name),
                      source="annotated") for i, name in enumerate(MODELS)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(r.to_json() + "\n" for r in records), encoding="utf-8")
    report = build(manifest, tmp_path / "ds", poses_per_model=2, size=64, models_root=shared_models,
                   pose_schema="tha3", progress=False, sheets=False, jobs=1, shard_size=4)
    assert [entry["model"] for entry in report.failed] == ["low_poly/gumi.pmd"]
    for path in sorted((tmp_path / "ds" / "shards").glob("*.h5")):
        with shards.open_shard(path) as f:
            assert f["pose"].shape[1] == 45 and f["pose_mask"].shape == f["pose"].shape
    assert verify(tmp_path / "ds") == []


def test_contact_sheets_per_category(bound, shared_models, artifacts):
    """Per category a sheet: a row per model, the rest close-up then each parameter at its far end
    (masked ones grey). Look at them: each column must move the feature its name says, on its side."""
    from annotator.face import locate_face
    from renderer import Renderer
    from renderer.framing import region_camera
    from renderer.loader import load_model

    schema, size = load_schema("tha3"), 96
    categories = dict.fromkeys(p.category for p in schema.parameters)
    sheets: dict[str, list[np.ndarray]] = {category: [] for category in categories}
    for name, binding in bound.items():
        if isinstance(binding, str):
            continue
        model = load_model(shared_models / name)
        top, chin = head(name)
        face = locate_face(model, top, chin)
        with Renderer(model, head_bounds=(top, chin), drivers=binding.drivers, size=size) as renderer:
            close = region_camera((face.centre_x, chin + 0.55 * (top - chin)), 0.6 * (top - chin))
            wide = region_camera((face.centre_x, chin), 1.6 * (top - chin))
            for category in categories:
                camera = wide if category in ("face_rotation", "body_rotation", "breathing") else close
                row = [renderer.render(None, camera=camera)]
                for index, parameter in enumerate(schema.parameters):
                    if parameter.category != category:
                        continue
                    pose = np.zeros(schema.size)
                    pose[index] = parameter.range[1]
                    image = renderer.render(pose, camera=camera)
                    row.append(image if parameter.name not in binding.masked else image // 3)
                sheets[category].append(np.concatenate(row, axis=1))
    for category, rows in sheets.items():
        width = max(row.shape[1] for row in rows)
        padded = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows]
        sheet = np.concatenate(padded, axis=0)
        backdrop = np.where(sheet[..., 3:] > 0, sheet[..., :3], 96).astype(np.uint8)
        Image.fromarray(backdrop).save(artifacts / f"tha3_{category}.png")
        assert sheet[..., 3].any()

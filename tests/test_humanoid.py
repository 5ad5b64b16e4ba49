"""Head, neck, eye and upper-body bones under every naming convention, and by geometry."""
from __future__ import annotations

import numpy as np
import pytest

from annotator.binding import bind_roles, schema_drivers
from renderer.framing import head_center_x
from renderer.humanoid import eye_bones, head_bone, neck_bone, upper_body_bones
from renderer.loader import load_model
from renderer.pmx_writer import write_pmx
from renderer.renderer import Renderer
from renderer.synthetic import HUMANOID_ROLES, humanoid_model

ROLE = {role: i for i, role in enumerate(HUMANOID_ROLES)}
EVERY = ("head", "neck", "eyes", "eye_left", "eye_right", "upper_body", "upper_body2")

CONVENTIONS = {
    "mmd": {"root": "センター", "upper_body": "上半身", "upper_body2": "上半身2", "neck": "首", "head": "頭",
            "eyes": "両目", "eye_left": "左目", "eye_right": "右目"},
    "english": {"root": "center", "upper_body": "upper body", "upper_body2": "upper body2", "neck": "neck",
                "head": "head", "eyes": "eyes", "eye_left": "eye_L", "eye_right": "eye_R"},
    "english_capitalised": {"upper_body": "UpperBody", "upper_body2": "Upper_Body2", "neck": "Neck",
                            "head": "Head", "eyes": "Eyes", "eye_left": "Eye.L", "eye_right": "Eye.R"},
    "rigify": {"root": "DEF-spine", "upper_body": "DEF-spine.001", "upper_body2": "DEF-spine.002",
               "neck": "DEF-spine.004", "head": "DEF-spine.006", "eyes": "eyes", "eye_left": "DEF-eye.L",
               "eye_right": "DEF-eye.R"},
    "vroid": {"root": "J_Bip_C_Hips", "upper_body": "J_Bip_C_Spine", "upper_body2": "J_Bip_C_Chest",
              "neck": "J_Bip_C_Neck", "head": "J_Bip_C_Head", "eyes": "J_Adj_C_FaceEyes",
              "eye_left": "J_Adj_L_FaceEye", "eye_right": "J_Adj_R_FaceEye"},
    "unity_mixamo": {"root": "mixamorig:Hips", "upper_body": "mixamorig:Spine", "upper_body2": "mixamorig:Chest",
                     "neck": "mixamorig:Neck", "head": "mixamorig:Head", "eyes": "mixamorig:Eyes",
                     "eye_left": "mixamorig:LeftEye", "eye_right": "mixamorig:RightEye"},
}
ANONYMOUS = {role: f"bone{i}" for i, role in enumerate(HUMANOID_ROLES)}


def written(tmp_path, model):
    write_pmx(model, tmp_path / "humanoid.pmx")
    return load_model(tmp_path / "humanoid.pmx", cache=False)


def found(model) -> dict[str, int]:
    eyes, (upper, upper2) = eye_bones(model), upper_body_bones(model)
    return {"head": head_bone(model), "neck": neck_bone(model), "eyes": eyes.both, "eye_left": eyes.left,
            "eye_right": eyes.right, "upper_body": upper, "upper_body2": upper2}


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_every_role_is_found_under_each_naming_convention(tmp_path, convention):
    model = written(tmp_path, humanoid_model({**ANONYMOUS, **CONVENTIONS[convention]}))
    expected = {role: ROLE[role] for role in EVERY}
    if convention == "vroid":
        expected["eyes"] = -1  # VRoid has no both-eyes bone
    assert found(model) == expected


def test_english_names_are_read_when_the_names_say_nothing(tmp_path):
    english = {role: CONVENTIONS["english"].get(role, role) for role in HUMANOID_ROLES}
    model = written(tmp_path, humanoid_model(ANONYMOUS, names_en=english))
    assert found(model) == {role: ROLE[role] for role in EVERY}


def test_rigify_org_copies_lose_to_the_deforming_bones(tmp_path):
    names = {**ANONYMOUS, **CONVENTIONS["rigify"]}
    model = written(tmp_path, humanoid_model(names, unskinned={"ORG-spine.006": "head", "ORG-spine.004": "neck"}))
    assert model.bones.names[-2:] == ["ORG-spine.006", "ORG-spine.004"]
    assert (head_bone(model), neck_bone(model)) == (ROLE["head"], ROLE["neck"])


def test_without_telling_names_the_head_is_found_by_geometry(tmp_path):
    """The head owns the most vertices in the top quarter; the ahoge above it and the long
    back hair are other bones; the neck is the head's parent. Eyes need names."""
    model = written(tmp_path, humanoid_model(ANONYMOUS))
    assert found(model) == {"head": ROLE["head"], "neck": ROLE["neck"], "eyes": -1, "eye_left": -1,
                            "eye_right": -1, "upper_body": -1, "upper_body2": -1}
    assert head_center_x(model) == pytest.approx(0.0)


def test_a_model_skinned_to_one_bone_has_no_head(tmp_path):
    model = humanoid_model(ANONYMOUS)
    model.vertices.bone_indices[:, 0] = ROLE["root"]
    assert head_bone(model) == -1 and neck_bone(model) == -1


def test_names_are_exact_wrists_and_head_tips_are_not_heads(tmp_path):
    names = {**ANONYMOUS, "neck": "手首", "head": "頭先", "eye_left": "eye_L_end"}
    model = humanoid_model(names)
    assert (neck_bone(model), head_bone(model)) == (ROLE["neck"], ROLE["head"])  # by geometry, not by name
    assert eye_bones(model).left == -1


def test_without_a_neck_the_head_parent_is_not_taken_when_it_is_the_upper_body(tmp_path):
    model = humanoid_model()
    model.bones.parent[ROLE["head"]] = ROLE["upper_body2"]
    model.bones.names[ROLE["neck"]] = model.bones.names_en[ROLE["neck"]] = "chain"
    assert neck_bone(model) == -1


@pytest.mark.parametrize("convention", ["rigify", "vroid"])
def test_the_renderer_turns_the_head_found_under_any_convention(tmp_path, convention):
    model = written(tmp_path, humanoid_model({**ANONYMOUS, **CONVENTIONS[convention]}))
    with Renderer(model, head_bounds=(18.6, 15.0), size=64, drivers=schema_drivers(model)) as renderer:
        rest = renderer.render([0] * 6)
        turned = renderer.render([0, 0, 0, 0, 0, 1])
        tilted = renderer.render([0, 0, 0, 1, 0, 0])
    assert rest[..., 3].any()
    assert np.abs(turned.astype(int) - rest).sum() > 1000 and np.abs(tilted.astype(int) - rest).sum() > 1000


def test_a_model_without_a_neck_tilts_at_the_head_and_one_without_a_head_refuses_to_turn(tmp_path):
    model = humanoid_model()
    model.bones.parent[ROLE["head"]] = ROLE["upper_body2"]
    model.bones.names[ROLE["neck"]] = model.bones.names_en[ROLE["neck"]] = "chain"
    with Renderer(model, head_bounds=(18.6, 15.0), size=64, drivers=schema_drivers(model)) as renderer:
        assert np.abs(renderer.render([0, 0, 0, 1, 0, 0]).astype(int) - renderer.render([0] * 6)).sum() > 1000
    model.vertices.bone_indices[:, 0] = ROLE["root"]
    model.bones.names[ROLE["head"]] = model.bones.names_en[ROLE["head"]] = "bone"
    with Renderer(model, head_bounds=(18.6, 15.0), size=64, drivers=schema_drivers(model)) as renderer:
        assert renderer.render([0] * 6)[..., 3].any()
        assert (renderer.render([0, 0, 0, 0, 0, 1]) == renderer.render([0] * 6)).all()  # nothing drives a turn
    assert {"neck_z", "head_x", "head_y"} <= set(bind_roles({}, model=model, strict=False).masked)


def test_geometry_alone_finds_the_named_head_of_every_shared_character(shared_models):
    """A check of the fallback on real models: with every bone renamed, it picks the bone named 頭."""
    paths = [p for p in sorted(shared_models.rglob("*.pm[dx]")) if "feature_tests" not in p.parts
             and p.name != "dummy.pmd"]
    assert len(paths) >= 30
    for path in paths:
        model = load_model(path)
        named = model.bones.names.index("頭")
        model.bones.names = model.bones.names_en = [f"bone{i}" for i in range(len(model.bones))]
        assert head_bone(model) == named, path.name

"""Suggestions on generated models: the demo character (known truth) and a prop."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from annotator.head import NotACharacter, suggest_head_bounds
from annotator.roles import normalise
from annotator.suggest import suggest_roles
from manifests.record import ROLES
from renderer import demo, synthetic
from renderer.model import Morph, MorphKind


def demo_truth() -> dict[str, str | None]:
    """Roles of the demo's eye morphs from how it builds them (sides closed, smile lid)."""
    truth = dict.fromkeys(ROLES)
    truth["mouth_open"] = demo.MOUTH_MORPH[0]
    for name, (_english, sides, smile) in demo.EYE_MORPHS.items():
        role = "blink" if len(sides) == 2 else "wink_left" if sides == (1,) else "wink_right"
        truth[("smile_" + role) if smile else role] = name
    return truth


@pytest.fixture(scope="module")
def character():
    return demo.demo_model()


def test_demo_head_bounds_within_5_percent(character):
    top, chin, confidence = suggest_head_bounds(character)
    true_top, true_chin = demo.DEMO_HEAD
    height = true_top - true_chin
    assert abs(top - true_top) < 0.05 * height and abs(chin - true_chin) < 0.05 * height
    assert confidence > 0.9


def test_demo_roles(character):
    top, chin, _ = suggest_head_bounds(character)
    suggestion = suggest_roles(character, (top, chin))
    assert suggestion.roles == demo_truth()
    assert all(0 <= value <= 1 for value in suggestion.confidence.values())
    assert suggestion.review == []


def test_geometry_beats_lying_names(character):
    """Swap the names of the left and right normal winks: the roles follow the geometry."""
    truth = demo_truth()
    left, right = truth["wink_left"], truth["wink_right"]
    renamed = {left: right, right: left}
    morphs = [dataclasses.replace(m, name=renamed.get(m.name, m.name)) for m in character.morphs]
    roles = suggest_roles(dataclasses.replace(character, morphs=morphs), demo.DEMO_HEAD).roles
    assert (roles["wink_left"], roles["wink_right"]) == (right, left)


def test_an_eyebrow_named_as_the_blink_is_not_the_blink(character):
    """A brow morph called まばたき (names lie) is no closure; the real blink, whatever its name, is."""
    truth = demo_truth()
    top, chin = demo.DEMO_HEAD
    blink = character.morphs[character.find_morph(truth["blink"])]
    eye_top = character.vertices.positions[blink.index, 1].max()
    y, x = character.vertices.positions[:, 1], np.abs(character.vertices.positions[:, 0])
    above = np.flatnonzero((y > eye_top + 0.05 * (top - chin)) & (y < eye_top + 0.2 * (top - chin))
                           & (x < np.abs(character.vertices.positions[blink.index, 0]).max()))
    drop = np.tile(np.float32([0, -0.12 * (top - chin), 0]), (len(above), 1))
    brow = Morph("まばたき", "", 1, MorphKind.VERTEX, above.astype(np.int32), drop)
    morphs = [dataclasses.replace(m, name="m_shut") if m.name == truth["blink"] else m for m in character.morphs]
    suggestion = suggest_roles(dataclasses.replace(character, morphs=[*morphs, brow]), demo.DEMO_HEAD)
    assert suggestion.roles["blink"] == "m_shut"
    assert suggestion.confidence["blink"] < 1.0  # the name did not vouch for it


def test_one_eye_roles_are_derived_from_the_blink_when_the_model_has_no_winks(character):
    truth = demo_truth()
    winks = {truth[r] for r in ("wink_left", "wink_right", "smile_wink_left", "smile_wink_right")}
    model = dataclasses.replace(character, morphs=[m for m in character.morphs if m.name not in winks])
    roles = suggest_roles(model, demo.DEMO_HEAD).roles
    assert (roles["wink_left"], roles["wink_right"]) == (f"{truth['blink']}[left]", f"{truth['blink']}[right]")


def test_group_morph_acts_through_members(character):
    blink = character.find_morph(demo_truth()["blink"])
    group = Morph("目閉じ", "eyes shut", 2, MorphKind.GROUP, np.array([blink], np.int32), np.array([[1.0]], np.float32))
    morphs = [dataclasses.replace(m, name=f"x{i}") if i == blink else m for i, m in enumerate(character.morphs)]
    model = dataclasses.replace(character, morphs=morphs + [group])
    assert suggest_roles(model, demo.DEMO_HEAD).roles["blink"] in ("目閉じ", f"x{blink}")


def test_names_are_normalised():
    assert normalise("ｳｨﾝｸ２右") == "ウィンク2右"
    assert normalise(" Blink ") == "blink"


def test_prop_is_not_a_character():
    with pytest.raises(NotACharacter, match="no head bone"):
        suggest_head_bounds(synthetic.prop_model())


def test_roles_with_given_head_bounds_still_need_a_head_bone():
    """Head bounds from a manifest do not make a prop a character: no bone stands in for 頭."""
    from renderer.synthetic import prop_model
    with pytest.raises(NotACharacter, match="no head bone"):
        suggest_roles(prop_model(), head=(1.0, 0.0))


def test_empty_model_is_not_a_character(character):
    empty = dataclasses.replace(character, vertices=dataclasses.replace(
        character.vertices, **{f.name: getattr(character.vertices, f.name)[:0]
                               for f in dataclasses.fields(character.vertices)}))
    with pytest.raises(NotACharacter, match="no vertices"):
        suggest_head_bounds(empty)


def test_suggest_file_and_cli(character, tmp_path):
    """Through a real file: the loader, the record, the CLI (stdout and manifest)."""
    from click.testing import CliRunner

    from pipeline.cli import cli
    from renderer.pmx_writer import write_pmx

    (tmp_path / "chars").mkdir()
    path = tmp_path / "chars" / "demo.pmx"
    write_pmx(character, path)
    runner = CliRunner()
    held = json.loads(runner.invoke(cli, ["suggest", str(path), "--models-root", str(tmp_path), "-q"]).output)
    assert held["status"] == "review" and held["review"] == ["texture file missing: iris.png"]
    for name, source in character.texture_paths.items():
        shutil.copy(source, tmp_path / "chars" / name)
    (tmp_path / "chars" / "broken.pmx").write_bytes(b"PMX \x00")
    result = runner.invoke(cli, ["suggest", str(path), "--models-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)  # the progress bar and summary go to stderr
    assert record["model"] == "chars/demo.pmx" and record["group"] == "chars" and record["status"] == "ok"
    assert record["morphs"] == demo_truth() and record["source"] == "suggested"
    manifest = tmp_path / "m.jsonl"
    broken = tmp_path / "chars" / "broken.pmx"
    result = runner.invoke(cli, ["suggest", str(path), str(broken), "--manifest", str(manifest)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in manifest.read_text("utf-8").splitlines()]
    assert [line["status"] for line in lines] == ["ok", "rejected"]
    assert lines[1]["reject_reason"] and lines[1]["head"] is None


BLENDER_BONES = {"全ての親": "root", "センター": "torso", "上半身": "spine.001", "首": "DEF-spine.004",
                 "頭": "DEF-spine.006", "左目": "DEF-eye.L", "右目": "DEF-eye.R"}
ENGLISH_MORPHS = {"まばたき": "eyesClosed", "笑い": "eyesSmile", "ウィンク": "eyeSmileWink_1",
                  "ウィンク右": "eyeSmileWink_2", "ウィンク２": "eyesWink_1", "ｳｨﾝｸ２右": "eyesWink_2",
                  "あ": "mouthOpen"}


def test_a_blender_rig_with_english_morph_names_is_a_character_with_named_roles(character):
    """Rigify bone names (head = spine.006) and English morph names: same roles, names still vouch for them."""
    bones = dataclasses.replace(character.bones, names=[BLENDER_BONES[n] for n in character.bones.names],
                                names_en=[BLENDER_BONES[n] for n in character.bones.names])
    morphs = [dataclasses.replace(m, name=ENGLISH_MORPHS[m.name], name_en="") for m in character.morphs]
    model = dataclasses.replace(character, bones=bones, morphs=morphs)
    top, chin, _ = suggest_head_bounds(model)
    true_top, true_chin = demo.DEMO_HEAD
    assert abs(top - true_top) < 0.05 * (true_top - true_chin) and abs(chin - true_chin) < 0.05 * (true_top - true_chin)
    suggestion = suggest_roles(model, (top, chin))
    assert suggestion.roles == {role: ENGLISH_MORPHS[name] if name else None for role, name in demo_truth().items()}
    for role in ("mouth_open", "blink", "wink_left", "wink_right", "smile_blink"):
        assert suggestion.confidence[role] == 1.0, role  # the English name fits the role it was measured to fill


def test_a_face_that_renders_black_is_held_and_says_so(character):
    """Black textures (or lighting) hide every feature: the reason says so, not just 'no mouth'."""
    materials = dataclasses.replace(character.materials, diffuse=character.materials.diffuse * [0.02, 0.02, 0.02, 1],
                                    ambient=character.materials.ambient * 0.02)
    suggestion = suggest_roles(dataclasses.replace(character, materials=materials), demo.DEMO_HEAD)
    assert any("renders nearly black" in reason for reason in suggestion.review)
    assert not any("renders nearly black" in reason for reason in suggest_roles(character, demo.DEMO_HEAD).review)


def test_suggest_on_two_processes_gives_the_same_records_in_order(tmp_path):
    """--jobs 2 (spawned workers, each with its own GL context) = --jobs 1, file order kept, a bad file reported."""
    from click.testing import CliRunner

    from pipeline.cli import cli
    from renderer.demo import write_demo

    write_demo(tmp_path / "models" / "a")
    write_demo(tmp_path / "models" / "b")
    (tmp_path / "models" / "c.pmx").write_bytes(b"PMX \x00")
    runner = CliRunner()
    outputs = [runner.invoke(cli, ["suggest", str(tmp_path / "models"), "--models-root", str(tmp_path),
                                   "-q", "--jobs", jobs]) for jobs in ("1", "2")]
    assert [result.exit_code for result in outputs] == [0, 0], [result.output for result in outputs]
    records = [[json.loads(line) for line in result.output.splitlines()] for result in outputs]
    assert records[0] == records[1]
    assert [(r["model"], r["status"]) for r in records[0]] == [
        ("models/a/demo.pmx", "ok"), ("models/b/demo.pmx", "ok"), ("models/c.pmx", "rejected")]

"""Pose schemas (issue 14): THA3's 45 parameters pinned, drivers that move the right feature on the
demo character, masks, a tha3 build the reader and verify understand, and old 6-number shards."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from annotator.binding import bind_roles, schema_drivers
from annotator.channels import check_model
from manifests.schema import SchemaError, load_schema
from pipeline.demo import DEMO_MORPHS, write_demo_manifest
from pipeline.sampling import expression_poses, rest_pose, sample_poses
from renderer.demo import DEMO_HEAD, demo_model
from renderer.model import Morph, MorphKind

CLI = [sys.executable, "-c", "from pipeline.cli import main; main()"]
# pkhungurn/talking-head-anime-3-demo, tha3/poser/modes/pose_parameters.py: groups in order, arity 2 as
# {group}_left, {group}_right (tha3/poser/poser.py, PoseParameterGroup)
THA3 = [*(f"{group}_{side}" for group in ("eyebrow_troubled", "eyebrow_angry", "eyebrow_lowered", "eyebrow_raised",
                                          "eyebrow_happy", "eyebrow_serious", "eye_wink", "eye_happy_wink",
                                          "eye_surprised", "eye_relaxed", "eye_unimpressed", "eye_raised_lower_eyelid",
                                          "iris_small") for side in ("left", "right")),
        "mouth_aaa", "mouth_iii", "mouth_uuu", "mouth_eee", "mouth_ooo", "mouth_delta",
        "mouth_lowered_corner_left", "mouth_lowered_corner_right", "mouth_raised_corner_left",
        "mouth_raised_corner_right", "mouth_smirk", "iris_rotation_x", "iris_rotation_y", "head_x", "head_y",
        "neck_z", "body_y", "body_z", "breathing"]


@pytest.fixture(scope="module")
def tha3():
    return load_schema("tha3")


def test_tha3_is_thas_list_in_its_order_with_its_ranges_and_defaults(tha3):
    assert list(tha3.names) == THA3 and tha3.size == 45
    assert tha3.parameters[tha3.index("mouth_aaa")].default == 1.0  # THA3 declares default_value=1.0
    assert sum(p.default != 0 for p in tha3.parameters) == 1
    signed = {"iris_rotation_x", "iris_rotation_y", "head_x", "head_y", "neck_z", "body_y", "body_z"}
    assert all(p.range == ((-1.0, 1.0) if p.name in signed else (0.0, 1.0)) for p in tha3.parameters)
    assert {p.category for p in tha3.parameters} == {"eyebrow", "eye", "iris_morph", "mouth", "iris_rotation",
                                                    "face_rotation", "body_rotation", "breathing"}
    assert list(load_schema("tha1").names) == ["eye_left", "eye_right", "mouth", "neck_z", "head_x", "head_y"]


def test_left_means_the_characters_left_in_every_pair(tha3):
    """A {group}_left parameter drives the left half (or the left wink) of its role, never the right."""
    for parameter in tha3.parameters:
        side = parameter.name.rsplit("_", 1)[-1]
        if side in ("left", "right"):
            other = "right" if side == "left" else "left"
            assert all(side in role and other not in role for role in parameter.driver.roles), parameter


def test_a_schema_file_is_data_and_bad_ones_are_one_line_errors(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text("name: two\nframing: {size: 64, head_height: 0.5, head_centre: 0.5}\nparameters:\n"
                    "  - {name: mouth, driver: {morph: [mouth_open]}}\n"
                    "  - {name: nod, kind: rotation, range: [-1, 1], driver: {bone: [head], axis: x, degrees: -20}}\n",
                    encoding="utf-8")
    schema = load_schema(str(path))
    assert schema.names == ("mouth", "nod") and schema.framing.size == 64
    bad = tmp_path / "bad.yaml"
    bad.write_text("parameters:\n  - {name: x, range: [1, 0]}\nframing: {size: 8, head_height: 1, head_centre: 1}\n")
    with pytest.raises(SchemaError, match="low < high"):
        load_schema(str(bad))
    model = write_demo_manifest(tmp_path)[0]
    run = subprocess.run([*CLI, "preview", str(model), "--out", str(tmp_path / "p.png"), "--pose-schema", str(bad)],
                         capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.startswith("error:") and "low < high" in run.stderr
    assert "Traceback" not in run.stderr


def test_tha3_sampling_keeps_masked_parameters_at_their_default(tha3):
    mask = np.ones(45, bool)
    mask[[tha3.index("eyebrow_angry_left"), tha3.index("mouth_aaa"), tha3.index("breathing")]] = False
    poses = sample_poses(3, "ab" * 32, 2000, tha3, mask)
    assert poses.shape == (2000, 45) and poses.dtype == np.float32
    assert (poses[:, ~mask] == tha3.vector("default")[~mask]).all()
    assert ((poses >= tha3.vector("low")) & (poses <= tha3.vector("high"))).all()
    eyebrow = poses[:, tha3.index("eyebrow_troubled_left")]
    assert 0.2 < (eyebrow != 0).mean() < 0.3  # active a quarter of the time
    assert np.array_equal(sample_poses(3, "ab" * 32, [7, 1999], tha3, mask), poses[[7, 1999]])
    expression = expression_poses(poses, tha3)
    assert not expression[:, tha3.of_kind("rotation")].any()
    assert rest_pose(tha3)[tha3.index("mouth_aaa")] == 1 and rest_pose(tha3).sum() == 1


def test_the_demo_binds_its_winks_mouth_and_bones_and_masks_the_rest(tha3):
    model = demo_model()
    binding = bind_roles(DEMO_MORPHS, schema=tha3, model=model)
    assert binding.morphs == {"eye_wink_left": "ウィンク２", "eye_wink_right": "ｳｨﾝｸ２右",
                              "eye_happy_wink_left": "ウィンク", "eye_happy_wink_right": "ウィンク右",
                              "mouth_aaa": "あ"}
    assert binding.bones["iris_rotation_x"] == ["左目", "右目"] and binding.bones["body_y"] == ["上半身"]
    assert "breathing" in binding.masked and "eyebrow_troubled_left" in binding.masked  # no 上半身2, no brows
    assert binding.mask(tha3).sum() == 45 - len(binding.masked) == 12


def test_swapped_winks_fail_the_tha3_check_and_the_right_ones_pass(tha3):
    model = demo_model()
    report = check_model(model, DEMO_HEAD, bind_roles(DEMO_MORPHS, schema=tha3, model=model), tha3)
    effects = {r.channel: r.effect for r in report.results}
    assert report.ok, report.reasons
    assert effects["eye_wink_left"].hidden[0] > 0.5 > 0.05 > effects["eye_wink_left"].hidden[1]
    swapped = {**DEMO_MORPHS, "wink_left": DEMO_MORPHS["wink_right"], "wink_right": DEMO_MORPHS["wink_left"]}
    report = check_model(model, DEMO_HEAD, bind_roles(swapped, schema=tha3, model=model), tha3)
    assert not report.ok and any(r.startswith("eye_wink_left: does not close the left eye") for r in report.reasons)


def _with_morphs(model, *morphs):
    return dataclasses.replace(model, morphs=[*model.morphs, *morphs])


def _brow(model, name: str) -> Morph:
    """Vertices just above the eyes dropped a little: an eyebrow morph, whatever its name."""
    top, chin = DEMO_HEAD
    blink = model.morphs[model.find_morph("まばたき")]
    positions = model.vertices.positions
    eye_top = positions[blink.index, 1].max()
    above = np.flatnonzero((positions[:, 1] > eye_top + 0.05 * (top - chin))
                           & (positions[:, 1] < eye_top + 0.2 * (top - chin))
                           & (np.abs(positions[:, 0]) < np.abs(positions[blink.index, 0]).max()))
    drop = np.tile(np.float32([0, -0.12 * (top - chin), 0]), (len(above), 1))
    return Morph(name, "", 1, MorphKind.VERTEX, above.astype(np.int32), drop)


def _one(schema, name: str, value: float = 1.0) -> np.ndarray:
    pose = np.zeros(schema.size)
    pose[schema.index(name)] = value
    return pose


def _changed_columns(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    changed = np.abs(before.astype(int) - after.astype(int)).sum(-1) > 30
    return np.flatnonzero(changed.any(0))


def test_each_parameter_moves_its_own_feature_on_its_own_side(tha3):
    """困る (a brow) drives eyebrow_troubled_*; the left one moves only the image's right half; winks close
    only their eye; the mouth and the iris, head and body rotations move what they name."""
    model = _with_morphs(demo_model(), _brow(demo_model(), "困る"))
    binding = bind_roles(DEMO_MORPHS, schema=tha3, model=model)
    assert binding.found == {"eyebrow_troubled": "困る"}
    assert binding.morphs["eyebrow_troubled_left"] == "困る[left]"
    from renderer import Renderer
    from renderer.framing import full_body_camera

    with Renderer(model, head_bounds=DEMO_HEAD, drivers=binding.drivers, size=128, framing=(0.5, 0.5)) as r:
        def moved(**values) -> np.ndarray:
            pose = np.zeros(45)
            for name, value in values.items():
                pose[tha3.index(name)] = value
            return r.render(pose)

        rest = moved()
        half = r.size // 2
        for side, columns in (("left", lambda c: c.min() >= half), ("right", lambda c: c.max() < half)):
            for group in ("eyebrow_troubled", "eye_wink"):
                changed = _changed_columns(rest, moved(**{f"{group}_{side}": 1.0}))
                assert len(changed) and columns(changed), (group, side)  # the character's left = image right
        mouth_rows = np.flatnonzero((np.abs(rest.astype(int) - moved(mouth_aaa=1.0).astype(int)).sum(-1) > 30).any(1))
        brow_rows = np.flatnonzero((np.abs(rest.astype(int) - moved(eyebrow_troubled_left=1.0).astype(int))
                                    .sum(-1) > 30).any(1))
        assert len(mouth_rows) and len(brow_rows) and brow_rows.max() < mouth_rows.min()  # brows above the mouth
        iris = np.abs(rest.astype(int) - moved(iris_rotation_y=1.0).astype(int)).sum(-1) > 30
        head = np.abs(rest.astype(int) - moved(head_y=1.0).astype(int)).sum(-1) > 30
        assert 0 < iris.sum() < 0.2 * head.sum()  # the eyes turn, not the head
        assert iris[mouth_rows.min():].sum() == 0
        whole = full_body_camera(r.model)
        still = r.render(None, camera=whole)
        lowest = {name: np.flatnonzero((np.abs(still.astype(int) - r.render(_one(tha3, name), camera=whole)
                                                .astype(int)).sum(-1) > 30).any(1)).max()
                  for name in ("head_y", "body_y")}
        assert lowest["body_y"] > lowest["head_y"] + 5  # the body turns under the head: the torso moves too


def test_a_role_found_by_name_that_does_the_wrong_thing_is_masked_not_driven(tha3):
    """A morph named 困る that closes the left eye is no eyebrow: its parameters stay at their default."""
    demo = demo_model()
    wink = demo.morphs[demo.find_morph("ｳｨﾝｸ２右")]
    model = _with_morphs(demo, dataclasses.replace(wink, name="困る"))
    from pipeline.build import checked

    binding = checked(DEMO_MORPHS, model, DEMO_HEAD, tha3)
    assert binding.check["roles"]["eyebrow_troubled"].startswith("closes an eye")
    assert {"eyebrow_troubled_left", "eyebrow_troubled_right"} <= set(binding.masked)
    assert "eyebrow_troubled_left" not in binding.morphs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from pipeline.build import build

    root = tmp_path_factory.mktemp("tha3")
    _, manifest = write_demo_manifest(root)
    build(manifest, root / "ds", 6, jobs=1, seed=1, size=64, progress=False, pose_schema="tha3", sheets=False)
    return root / "ds"


def test_a_tha3_build_writes_named_45_number_poses_and_masks(built, tha3):
    from pipeline import shards
    from pipeline.reader import Dataset
    from pipeline.verify import verify

    (path,) = sorted((built / "shards").glob("*.h5"))
    with shards.open_shard(path) as f:
        pose, mask = f["pose"][:], f["pose_mask"][:]
        assert f["pose"].attrs["schema"] == "tha3" and list(f["pose"].attrs["names"]) == THA3
        morphs = json.loads(f["models/morphs"][0])
    assert pose.shape == (6, 45) and mask.shape == (6, 45) and mask.sum(1).tolist() == [12] * 6
    assert (pose[~mask] == np.broadcast_to(tha3.vector("default"), pose.shape)[~mask]).all()
    assert morphs["schema"] == "tha3" and "breathing" in morphs["masked"]
    data = Dataset(built, fields=("pose", "pose_mask"))
    assert data.pose_names == tuple(THA3)
    assert data.named_pose(data[0]["pose"])["mouth_aaa"] == pose[0, tha3.index("mouth_aaa")]
    assert (data[2]["pose_mask"] == mask[2]).all()
    assert verify(built) == []


def test_verify_fails_a_masked_parameter_written_with_a_value(built, tmp_path):
    import shutil

    from pipeline.verify import verify

    copy = tmp_path / "ds"
    shutil.copytree(built, copy)
    (path,) = sorted((copy / "shards").glob("*.h5"))
    with h5py.File(path, "r+") as f:
        row = f["pose"][0]
        row[~f["pose_mask"][0]] = 0.5
        f["pose"][0] = row
    assert any("masked parameter" in defect for defect in verify(copy))


def test_a_dataset_from_before_schemas_reads_as_tha1(tmp_path):
    """Shards without pose attributes or pose_mask: 6 numbers named as tha1, every parameter shown."""
    from pipeline.build import build
    from pipeline.reader import Dataset
    from pipeline.verify import verify

    _, manifest = write_demo_manifest(tmp_path)
    build(manifest, tmp_path / "ds", 2, jobs=1, size=32, progress=False, sheets=False)
    for path in (tmp_path / "ds" / "shards").glob("*.h5"):
        with h5py.File(path, "r+") as f:
            del f["pose_mask"]
            for key in ("schema", "names", "definition"):
                del f["pose"].attrs[key]
    data = Dataset(tmp_path / "ds", fields=("pose", "pose_mask"))
    assert data.pose_names == ("eye_left", "eye_right", "mouth", "neck_z", "head_x", "head_y")
    assert data[0]["pose"].shape == (6,) and data[0]["pose_mask"].all()
    assert data.get_batch([0, 1])["pose_mask"].shape == (2, 6)
    assert verify(tmp_path / "ds") == []


def test_preview_takes_a_schema_and_named_values(tmp_path):
    model = write_demo_manifest(tmp_path)[0]
    out = tmp_path / "p.png"
    run = subprocess.run([*CLI, "preview", str(model), "--out", str(out), "--pose-schema", "tha3", "--size", "64",
                          "--pose", "eye_wink_left=1,eyebrow_angry_left=1"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "eyebrow_angry_left: no driver on this model, not shown" in run.stdout and out.is_file()
    run = subprocess.run([*CLI, "preview", str(model), "--out", str(out), "--pose-schema", "tha3",
                          "--pose", "head_z=1"], capture_output=True, text=True)
    assert run.returncode == 2 and "tha3 has no parameter 'head_z'" in run.stderr


def test_renderer_drivers_are_plain_and_checked():
    from renderer.posing import Drivers

    with pytest.raises(ValueError, match="pose entries"):
        Drivers(size=2, morphs=("あ",), morph_param=(2,))
    drivers = schema_drivers(demo_model(), DEMO_MORPHS, load_schema("tha3"))
    assert drivers.size == 45 and len(drivers.morphs) == 5

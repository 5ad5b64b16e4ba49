"""Forward kinematics, append bones, fixed axes and the pose -> bone mapping."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from annotator.binding import make_drivers
from manifests.schema import BoneDriver, load_schema
from renderer.errors import ModelError
from renderer.loader import load_model
from renderer.model import BoneFlag, Bones, IKChain, IKLink
from renderer.pmx_writer import write_pmx
from renderer.posing import rotations
from renderer.renderer import Renderer
from renderer.rotations import (
    IDENTITY,
    matrices_to_dual_quaternions,
    matrix_to_quat,
    quat_conjugate,
    quat_from_axis_angle,
    quat_multiply,
    quat_slerp,
    quat_to_matrix,
)
from renderer.skeleton import Skeleton
from renderer.synthetic import Assembly, BoneSpec, MaterialSpec, cylinder, rigid
from renderer.synthetic import make_bones as synthetic_bones

BASE_FLAGS = BoneFlag.ROTATABLE | BoneFlag.VISIBLE | BoneFlag.ENABLED
X, Y, Z = np.eye(3)


def make_bones(names: list[str], positions: list, parents: list[int], **columns: Any) -> Bones:
    """Bones with defaults for every column; ``columns`` maps a column to {bone: value}."""
    n = len(names)
    arrays = {
        "transform_level": np.zeros(n, np.int32), "flags": np.full(n, BASE_FLAGS, np.uint16),
        "tail_index": np.full(n, -1, np.int32), "tail_offset": np.zeros((n, 3), np.float32),
        "append_parent": np.full(n, -1, np.int32), "append_ratio": np.zeros(n, np.float32),
        "fixed_axis": np.zeros((n, 3), np.float32), "local_x": np.zeros((n, 3), np.float32),
        "local_z": np.zeros((n, 3), np.float32), "external_key": np.zeros(n, np.int32),
    }
    for column, values in columns.items():
        for bone, value in values.items():
            arrays[column][bone] = value | BASE_FLAGS if column == "flags" else value
    return Bones(names=names, names_en=names, positions=np.asarray(positions, np.float32),
                 parent=np.asarray(parents, np.int32), **arrays)


def rot(axis: np.ndarray, degrees: float) -> np.ndarray:
    return quat_from_axis_angle(axis, np.radians(degrees))


def transform(matrix: np.ndarray, point: np.ndarray) -> np.ndarray:
    return matrix[:3, :3] @ point + matrix[:3, 3]


def angle_about(q: np.ndarray, axis: np.ndarray) -> float:
    """Signed angle in degrees of a rotation that must be about ``axis``."""
    rotvec = Rotation.from_quat(q).as_rotvec()
    assert np.allclose(np.cross(rotvec, axis), 0, atol=1e-5), rotvec
    return float(np.degrees(rotvec @ axis))


def head_bones(**columns: Any) -> Bones:
    """A synthetic upper body: センター, 首 at y = 10, 頭 at y = 11, hair and an eye."""
    return make_bones(["センター", "首", "頭", "髪", "左目"],
                      [[0, 0, 0], [0, 10, 0], [0, 11, 0], [0, 13, -1], [0.5, 11.5, 0.8]],
                      [-1, 0, 1, 2, 2], **columns)


def test_rotation_helpers_match_scipy() -> None:
    a, b = Rotation.random(20, random_state=1), Rotation.random(20, random_state=2)
    qa, qb = a.as_quat(), b.as_quat()
    assert np.allclose(quat_to_matrix(quat_multiply(qa, qb)), (a * b).as_matrix())
    assert np.allclose(Rotation.from_quat(matrix_to_quat(a.as_matrix())).as_matrix(), a.as_matrix())
    assert np.allclose(quat_to_matrix(quat_conjugate(qa)), a.inv().as_matrix())
    half = Rotation.from_rotvec(0.5 * a.as_rotvec()).as_matrix()
    assert np.allclose(quat_to_matrix(quat_slerp(IDENTITY, qa, 0.5)), half)
    assert np.allclose(quat_to_matrix(quat_slerp(IDENTITY, qa, -1.0)), a.inv().as_matrix())


def test_dual_quaternions_encode_the_skinning_transform() -> None:
    skeleton = Skeleton(head_bones())
    pose = skeleton.pose({1: rot(Z, 30), 2: rot(X, -20)})
    dq = pose.dual_quaternions
    assert np.allclose(dq, matrices_to_dual_quaternions(pose.matrices), atol=1e-6)
    translation = 2 * quat_multiply(dq[:, 4:], quat_conjugate(dq[:, :4]))[:, :3]
    assert np.allclose(translation, pose.matrices[:, :3, 3], atol=1e-5)


def test_rotating_the_neck_carries_head_hair_and_eye() -> None:
    bones = head_bones()
    pose = Skeleton(bones).pose({1: rot(Z, 90)})
    neck = bones.positions[1]
    expected = (quat_to_matrix(rot(Z, 90)) @ (bones.positions - neck).T).T + neck
    expected[0] = bones.positions[0]
    assert np.allclose(pose.world[:, :3, 3], expected, atol=1e-5)
    for bone in range(len(bones)):  # skinning matrices move rest points with their bone
        assert np.allclose(transform(pose.matrices[bone], bones.positions[bone]),
                           expected[bone], atol=1e-5)
    assert angle_about(pose.rotations[4], Z) == pytest.approx(90, abs=1e-3)
    assert np.allclose(pose.matrices[0], np.eye(4))
    assert pose.matrices.dtype == np.float32 and pose.matrices.shape == (5, 4, 4)


def test_rest_pose_is_identity() -> None:
    pose = Skeleton(head_bones()).pose({})
    assert np.allclose(pose.matrices, np.eye(4), atol=1e-6)
    assert np.allclose(pose.rotations, IDENTITY)


def test_append_rotation_shares_ratio_and_chains() -> None:
    rotate = BoneFlag.APPEND_ROTATE
    bones = make_bones(["src", "half", "inverse", "chained"], [[0, 1, 0], [1, 1, 0], [2, 1, 0], [3, 1, 0]],
                       [-1, -1, -1, -1], flags={1: rotate, 2: rotate, 3: rotate},
                       append_parent={1: 0, 2: 0, 3: 1}, append_ratio={1: 0.5, 2: -1.0, 3: 1.0})
    pose = Skeleton(bones).pose({0: rot(Y, 60), 3: rot(Y, 5)})
    angles = [angle_about(q, Y) for q in pose.rotations]
    assert angles == pytest.approx([60, 30, -60, 35], abs=1e-3)


def test_append_translation() -> None:
    bones = make_bones(["src", "follower"], [[0, 0, 0], [1, 0, 0]], [-1, -1],
                       flags={1: BoneFlag.APPEND_TRANSLATE}, append_parent={1: 0},
                       append_ratio={1: 0.5})
    pose = Skeleton(bones).pose({}, {0: [0, 2, 0]})
    assert np.allclose(pose.world[:, :3, 3], [[0, 2, 0], [1, 1, 0]])


def test_append_local_takes_the_source_motion_in_model_space() -> None:
    local = BoneFlag.APPEND_ROTATE | BoneFlag.APPEND_LOCAL
    bones = make_bones(["arm", "forearm", "local", "plain"], [[0, 0, 0], [1, 0, 0], [5, 0, 0], [6, 0, 0]],
                       [-1, 0, -1, -1], flags={2: local, 3: BoneFlag.APPEND_ROTATE},
                       append_parent={2: 1, 3: 1}, append_ratio={2: 1.0, 3: 1.0})
    pose = Skeleton(bones).pose({0: rot(X, 40), 1: rot(X, 10)})
    assert angle_about(pose.rotations[2], X) == pytest.approx(50, abs=1e-3)
    assert angle_about(pose.rotations[3], X) == pytest.approx(10, abs=1e-3)


def test_fixed_axis_keeps_only_the_twist() -> None:
    bones = make_bones(["twist"], [[0, 0, 0]], [-1], flags={0: BoneFlag.FIXED_AXIS},
                       fixed_axis={0: [2, 0, 0]})
    skeleton = Skeleton(bones)
    twisted = skeleton.pose({0: quat_multiply(rot(X, 30), rot(Y, 50))}).rotations[0]
    assert angle_about(twisted, X) > 10
    assert angle_about(skeleton.pose({0: rot(X, 30)}).rotations[0], X) == pytest.approx(30, abs=1e-3)
    assert np.allclose(skeleton.pose({0: rot(Y, 50)}).rotations[0], IDENTITY, atol=1e-6)


def test_child_listed_before_parent_and_transform_levels() -> None:
    bones = make_bones(["tip", "root", "late", "early"], [[0, 2, 0], [0, 1, 0], [3, 0, 0], [4, 0, 0]],
                       [1, -1, -1, -1], transform_level={2: 1, 1: 0})
    skeleton = Skeleton(bones)
    assert list(skeleton.order) == [1, 0, 3, 2]
    pose = skeleton.pose({1: rot(Z, 90)})
    assert np.allclose(pose.world[0, :3, 3], [-1, 1, 0], atol=1e-6)


def test_parent_ranks_before_lower_level_child() -> None:
    bones = make_bones(["child", "parent"], [[0, 2, 0], [0, 1, 0]], [1, -1],
                       transform_level={0: 0, 1: 2})
    assert list(Skeleton(bones).order) == [1, 0]


def test_a_parent_cycle_is_a_model_error() -> None:
    bones = make_bones(["甲", "乙"], [[0, 0, 0], [0, 1, 0]], [1, 0])
    with pytest.raises(ModelError, match="cyclic.pmx.*parent cycle.*甲"):
        Skeleton(bones, path="cyclic.pmx")


@pytest.mark.parametrize("levels, order, angles", [
    ({}, [0, 1], [40, 80]),  # 甲 first reads 乙's own 40 degrees: 20 + 20; 乙 reads 甲's 40: 40 + 40
    ({0: 1}, [1, 0], [50, 60]),  # a higher transform level puts 甲 last: 乙 = 40 + 20, 甲 = 20 + 30
])
def test_an_append_cycle_follows_mmds_order_each_bone_reading_what_its_source_holds(
        levels: dict, order: list[int], angles: list[float]) -> None:
    rotate = BoneFlag.APPEND_ROTATE
    bones = make_bones(["甲", "乙"], [[0, 0, 0], [1, 0, 0]], [-1, -1], flags={0: rotate, 1: rotate},
                       append_parent={0: 1, 1: 0}, append_ratio={0: 0.5, 1: 1.0}, transform_level=levels)
    skeleton = Skeleton(bones)
    assert list(skeleton.order) == order
    pose = skeleton.pose({0: rot(Y, 20), 1: rot(Y, 40)})
    assert [angle_about(q, Y) for q in pose.rotations] == pytest.approx(angles, abs=1e-3)


def test_a_cycle_through_a_parent_and_an_append_link_is_cut_at_the_append_link() -> None:
    """乙 is 甲's parent and takes 甲's motion: 乙 goes first, reading 甲 before it moves."""
    local = BoneFlag.APPEND_ROTATE | BoneFlag.APPEND_TRANSLATE | BoneFlag.APPEND_LOCAL
    for flags in (BoneFlag.APPEND_ROTATE | BoneFlag.APPEND_TRANSLATE, local):
        bones = make_bones(["甲", "乙"], [[0, 1, 0], [0, 0, 0]], [1, -1], flags={1: flags},
                           append_parent={1: 0}, append_ratio={1: 1.0})
        skeleton = Skeleton(bones)
        assert list(skeleton.order) == [1, 0]
        pose = skeleton.pose({0: rot(X, 30), 1: rot(X, 10)}, {0: [0, 0, 1]})
        in_model_space = bool(flags & BoneFlag.APPEND_LOCAL)  # rest before it moves; else its own motion
        assert angle_about(pose.rotations[1], X) == pytest.approx(10 if in_model_space else 40, abs=1e-3)
        assert np.allclose(pose.world[1, :3, 3], [0, 0, 0] if in_model_space else [0, 0, 1], atol=1e-6)
        assert angle_about(pose.rotations[0], X) == pytest.approx(30 + (10 if in_model_space else 40), abs=1e-3)


def test_twist_bones_naming_each_other_as_append_parents_load_pose_and_render(tmp_path) -> None:
    """A generated arm whose 左手捩1..3 take from each other in a ring, as some real models do."""
    twist = BoneFlag.ROTATABLE | BoneFlag.VISIBLE | BoneFlag.ENABLED | BoneFlag.APPEND_ROTATE
    specs = [BoneSpec("センター", "center", (0, 8, 0)), BoneSpec("左腕", "arm_L", (1, 13, 0), 0)]
    specs += [BoneSpec(f"左手捩{k}", f"twist{k}_L", (1 + 2 * k, 13, 0), k, flags=twist,
                       append=(2 + k % 3, 0.5)) for k in (1, 2, 3)]  # 1 <- 2 <- 3 <- 1
    build = Assembly(synthetic_bones(specs))
    build.add(MaterialSpec("腕", "arm"), *((m, rigid(len(m), b)) for b in range(1, 5)
                                           for m in [cylinder((2 * b, 13, 0), 0.5, 2, axis="x")]))
    write_pmx(build.model("捩れ", "twist ring", [], version=2.0), tmp_path / "twist.pmx")
    model = load_model(tmp_path / "twist.pmx")
    pose = Skeleton(model.bones, model.path).pose({2: rot(X, 10), 3: rot(X, 20), 4: rot(X, 40)})
    # MMD's order 1, 2, 3: 捩1 = 10 + 20/2 and 捩2 = 20 + 40/2 read their sources before they are
    # evaluated; 捩3 = 40 + 20/2 reads 捩1's result. World rotations add up along the chain.
    assert [angle_about(q, X) for q in pose.rotations[2:]] == pytest.approx([20, 60, 110], abs=1e-3)
    with Renderer(model, size=32) as renderer:
        assert renderer.render(None)[..., 3].any()


def test_out_of_range_parent_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="bad.pmx.*parent index 7"):
        Skeleton(make_bones(["a"], [[0, 0, 0]], [7]), path="bad.pmx")


def test_ik_bones_pose_like_any_bone() -> None:
    bones = make_bones(["leg", "knee", "ankle", "leg IK"], [[0, 5, 0], [0, 3, 0], [0, 0, 0], [0, 0, 0]],
                       [-1, 0, 1, -1], flags={3: BoneFlag.IK | BoneFlag.TRANSLATABLE})
    bones.ik = {3: IKChain(target=2, loops=40, limit_angle=0.5, links=[IKLink(1), IKLink(0)])}
    pose = Skeleton(bones).pose({0: rot(X, 10)}, {3: [0, 1, 1]})
    assert np.isfinite(pose.matrices).all()
    assert np.allclose(pose.world[3, :3, 3], [0, 1, 1])


# Geometric checks of DESIGN.md's pose signs on the synthetic head (frame: y up,
# x = character's left, z = front). The chin sits in front of and below 頭.
CHIN, NOSE, TOP = np.array([0, 10.5, 0.8]), np.array([0, 11.3, 1.0]), np.array([0, 13.0, 0])


def head_pose_rotations(neck: int, head: int, pose6, max_degrees: float = 15.0) -> dict[int, np.ndarray]:
    """tha1's bone drivers (manifests/schemas/tha1.yaml) on these bone indices, angles scaled to ``max_degrees``."""
    schema = load_schema("tha1")
    scaled = dataclasses.replace(schema, parameters=tuple(
        dataclasses.replace(p, driver=dataclasses.replace(p.driver, degrees=p.driver.degrees * max_degrees / 15))
        if isinstance(p.driver, BoneDriver) else p for p in schema.parameters))
    bones = {"neck_z": [neck if neck >= 0 else head], "head_x": [head], "head_y": [head]}
    return rotations(make_drivers(scaled, {}, bones), pose6)


def posed_point(pose6: list[float], point: np.ndarray, bone: str = "頭") -> np.ndarray:
    bones = head_bones()
    pose = Skeleton(bones).pose(head_pose_rotations(bones.find("首"), bones.find("頭"), pose6))
    return transform(pose.matrices[bones.find(bone)], point)


def test_head_x_looks_up() -> None:
    chin = posed_point([0, 0, 0, 0, 1, 0], CHIN)
    assert chin[2] > CHIN[2] + 0.05 and chin[1] > CHIN[1] + 0.05
    chin = posed_point([0, 0, 0, 0, -1, 0], CHIN)
    assert chin[2] < CHIN[2] - 0.05 and chin[1] < CHIN[1]


def test_head_y_turns_the_face_to_the_characters_left() -> None:
    assert posed_point([0, 0, 0, 0, 0, 1], NOSE)[0] > 0.1
    assert posed_point([0, 0, 0, 0, 0, -1], NOSE)[0] < -0.1


def test_neck_z_tilts_towards_the_right_shoulder() -> None:
    assert posed_point([0, 0, 0, 1, 0, 0], TOP)[0] < -0.1
    assert posed_point([0, 0, 0, -1, 0, 0], TOP)[0] > 0.1


def test_pose_angles_scale_to_max_degrees() -> None:
    rotations = head_pose_rotations(1, 2, [1, 1, 1, 0.5, 0, -1], max_degrees=20)
    assert angle_about(rotations[1], Z) == pytest.approx(10)
    assert angle_about(rotations[2], Y) == pytest.approx(-20)
    assert set(rotations) == {1, 2}


def test_without_a_neck_the_head_bone_also_tilts() -> None:
    pose6 = [0, 0, 0, 0.5, 1, -1]
    with_neck = Skeleton(head_bones()).pose(head_pose_rotations(1, 2, pose6))
    (only,) = head_pose_rotations(-1, 2, pose6).items()
    assert only[0] == 2
    assert np.allclose(quat_to_matrix(only[1]), with_neck.world[2, :3, :3], atol=1e-6)

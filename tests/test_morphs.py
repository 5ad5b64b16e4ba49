"""Morph evaluation on the generated feature model: every morph kind, groups, flips, cycles."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from renderer.errors import ModelError
from renderer.model import Model, Morph, MorphKind
from renderer.morphs import MorphEvaluator, base_materials, name_weights
from renderer.skeleton import Skeleton
from renderer.synthetic import feature_model


@pytest.fixture(scope="module")
def model() -> Model:
    return dataclasses.replace(feature_model(), path="feature.pmx")


@pytest.fixture(scope="module")
def evaluator(model: Model) -> MorphEvaluator:
    return MorphEvaluator(model)


def by_name(model: Model, **weights: float) -> dict[int, float]:
    return name_weights(model, weights)


def with_morphs(model: Model, *morphs: Morph) -> tuple[Model, list[int]]:
    """The model with extra morphs appended, and their indices."""
    first = len(model.morphs)
    return dataclasses.replace(model, morphs=[*model.morphs, *morphs]), list(range(first, first + len(morphs)))


def material_morph(targets: list[int], values: list[list[float]], ops: list[int]) -> Morph:
    return Morph("材質", "material", 4, MorphKind.MATERIAL, np.array(targets, np.int32),
                 np.array(values, np.float32), np.array(ops, np.uint8))


def test_rest_state_is_the_model(model: Model, evaluator: MorphEvaluator) -> None:
    state = evaluator.evaluate({})
    assert state.vertex_offsets.shape == (len(model.vertices), 3) and not state.vertex_offsets.any()
    assert state.uv_offsets.shape == (len(model.vertices), 4) and not state.uv_offsets.any()
    assert state.extra_uv_offsets is None
    assert np.array_equal(state.materials, base_materials(model.materials))
    assert np.array_equal(state.materials[:, :4], model.materials.diffuse)
    assert (state.materials[:, 16:] == 1).all() and not state.tint_add.any()
    assert state.material_visible.all() and state.bone_rotations == {}


def test_vertex_morph_scales_offsets(model: Model, evaluator: MorphEvaluator) -> None:
    mouth = model.morphs[model.find_morph("あ")]
    state = evaluator.evaluate(by_name(model, あ=0.5))
    expected = np.zeros_like(state.vertex_offsets)
    expected[mouth.index] = 0.5 * mouth.data
    assert np.allclose(state.vertex_offsets, expected) and state.vertex_offsets.dtype == np.float32
    assert np.abs(state.vertex_offsets).max() > 0.1


def test_overlapping_morphs_and_repeated_rows_add_up(model: Model) -> None:
    repeat = Morph("重複", "repeat", 4, MorphKind.VERTEX, np.array([3, 3, 4], np.int32),
                   np.array([[1, 0, 0], [2, 0, 0], [0, 1, 0]], np.float32))
    extended, (index,) = with_morphs(model, repeat)
    state = MorphEvaluator(extended).evaluate({index: 0.5, **by_name(model, まばたき=1.0, ウィンク=1.0)})
    assert np.allclose(state.vertex_offsets[3], [1.5, 0, 0]) and np.allclose(state.vertex_offsets[4], [0, 0.5, 0])
    blink, wink = (model.morphs[model.find_morph(n)] for n in ("まばたき", "ウィンク"))
    both = np.zeros_like(state.vertex_offsets)
    np.add.at(both, blink.index, blink.data)
    np.add.at(both, wink.index, wink.data)
    assert np.allclose(state.vertex_offsets[blink.index], both[blink.index])


def test_group_weights_multiply_and_nest(model: Model, evaluator: MorphEvaluator) -> None:
    group = evaluator.evaluate(by_name(model, 笑顔=0.8))
    direct = evaluator.evaluate(by_name(model, まばたき=0.8, あ=0.4))
    assert np.allclose(group.vertex_offsets, direct.vertex_offsets)
    nested = evaluator.evaluate(by_name(model, 満面=1.0))  # 笑顔 x 1.0 + 頭傾げ x 0.5
    assert np.allclose(nested.vertex_offsets, evaluator.evaluate(by_name(model, 笑顔=1.0)).vertex_offsets)
    tilt = Rotation.from_quat(nested.bone_rotations[model.bones.find("頭")]).as_rotvec()
    assert np.allclose(np.degrees(tilt), [0, 0, 5], atol=1e-4)  # half of 頭傾げ's 10 degrees


def test_group_cycle_is_cut_with_a_warning(model: Model, evaluator: MorphEvaluator) -> None:
    with pytest.warns(UserWarning, match="feature.pmx.*cycle 循環A -> 循環B -> 循環A"):
        state = evaluator.evaluate(by_name(model, 循環A=1.0))
    assert not state.vertex_offsets.any()


@pytest.mark.parametrize("weight, chosen", [(0.0, None), (0.25, "ウィンク"), (0.5, "ウィンク右"),
                                            (1.0, "ウィンク右")])
def test_flip_applies_the_selected_member_fully(model: Model, evaluator: MorphEvaluator,
                                                weight: float, chosen: str | None) -> None:
    state = evaluator.evaluate(by_name(model, フリップ=weight))
    expected = evaluator.evaluate(by_name(model, **({chosen: 1.0} if chosen else {})))
    assert np.array_equal(state.vertex_offsets, expected.vertex_offsets)


def test_impulse_morph_is_ignored(model: Model, evaluator: MorphEvaluator) -> None:
    state = evaluator.evaluate(by_name(model, インパルス=1.0))
    assert not state.vertex_offsets.any() and state.bone_rotations == {}


def test_uv_and_extra_uv_morphs(model: Model, evaluator: MorphEvaluator) -> None:
    scroll = model.morphs[model.find_morph("UV移動")]
    state = evaluator.evaluate(by_name(model, UV移動=0.5))
    assert np.allclose(state.uv_offsets[scroll.index], [0.05, 0, 0, 0])
    assert np.count_nonzero(state.uv_offsets.any(axis=1)) == len(scroll.index)
    assert state.extra_uv_offsets is None
    extra = model.morphs[model.find_morph("追加UV3")]
    state = evaluator.evaluate(by_name(model, 追加UV3=1.0))
    assert state.extra_uv_offsets.shape == (len(model.vertices), 4, 4)
    assert np.allclose(state.extra_uv_offsets[extra.index, 2], [0, 0.1, 0, 0])
    assert not np.delete(state.extra_uv_offsets, 2, axis=1).any()


def test_bone_morph_rotates_and_moves_bones(model: Model, evaluator: MorphEvaluator) -> None:
    head, center = model.bones.find("頭"), model.bones.find("センター")
    state = evaluator.evaluate(by_name(model, 頭傾げ=1.0))
    rotations, translations = state.combine({})
    pose = Skeleton(model.bones).pose(rotations, translations)
    assert np.degrees(Rotation.from_quat(pose.rotations[head]).as_rotvec()) == pytest.approx([0, 0, 10], abs=1e-3)
    assert np.allclose(pose.world[center, :3, 3], model.bones.positions[center] + [0, -0.5, 0])
    nod = Rotation.from_rotvec([0.3, 0, 0]).as_quat()
    combined, _ = state.combine({head: nod})
    expected = Rotation.from_quat(nod) * Rotation.from_rotvec(np.radians([0, 0, 10]))
    assert np.allclose(Rotation.from_quat(combined[head]).as_matrix(), expected.as_matrix())


def test_material_morph_hides_a_material(model: Model, evaluator: MorphEvaluator) -> None:
    glasses = model.materials.names.index("眼鏡")
    state = evaluator.evaluate(by_name(model, 眼鏡非表示=1.0))
    assert not state.material_visible[glasses]
    assert np.delete(state.material_visible, glasses).all()
    half = evaluator.evaluate(by_name(model, 眼鏡非表示=0.5))
    assert half.material_visible[glasses]
    assert half.materials[glasses, 3] == pytest.approx(0.5 * model.materials.diffuse[glasses, 3])


def test_add_morph_on_all_materials(model: Model, evaluator: MorphEvaluator) -> None:
    state = evaluator.evaluate(by_name(model, 全体明るく=0.5))
    base = base_materials(model.materials)
    assert np.allclose(state.materials[:, :3], base[:, :3] + 0.1)
    assert np.allclose(state.materials[:, 8:11], base[:, 8:11] + 0.05)
    assert np.allclose(state.materials[:, 3:8], base[:, 3:8])


def test_multiply_then_add_with_tints(model: Model) -> None:
    factors = np.ones(28)
    factors[[0, 16]] = [0.5, 0.2]  # diffuse red, texture tint red
    adds = np.zeros(28)
    adds[[1, 20]] = [0.3, 0.4]  # diffuse green, sphere tint red
    extended, (index,) = with_morphs(model, material_morph([-1, 2], [factors, adds], [0, 1]))
    state = MorphEvaluator(extended).evaluate({index: 0.5})
    diffuse = model.materials.diffuse
    assert np.allclose(state.materials[:, 0], diffuse[:, 0] * 0.75)
    assert np.allclose(state.materials[:, 16], 0.6)
    assert np.allclose(state.materials[[0, 1, 3], 1], diffuse[[0, 1, 3], 1])
    assert state.materials[2, 1] == pytest.approx(diffuse[2, 1] + 0.15)
    assert state.tint_add[2, 4] == pytest.approx(0.2) and np.count_nonzero(state.tint_add) == 1


def test_name_weights(model: Model) -> None:
    assert name_weights(model, {"あ": 1.0, "まばたき": 0.5}) == {0: 1.0, 1: 0.5}
    with pytest.raises(ModelError, match="feature.pmx.*no morph named 'ない'"):
        name_weights(model, {"ない": 1.0})

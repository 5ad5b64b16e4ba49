"""A pose vector -> the renderer's state (morph weights by index, local bone rotations), in numpy.

What each number of a pose means is the caller's business (a pose schema, resolved against
one model by ``annotator.binding``); here it arrives as plain arrays, :class:`Drivers`:
per morph driver the morph's name and the pose entry it follows, per bone driver the bone,
the pose entry, the axis and the angle at value 1. The GL :class:`renderer.Renderer` only
draws the state this module computes.

Rules (DESIGN.md's for the 6-number pose, kept bit for bit): a morph driven by several
entries takes the largest of them; a bone's rotations compose about x first, then y, then
z (q = q_z q_y q_x: the head nods, then turns, then tilts), in the character frame (y up,
x to the character's left, z to the front); when any bone entry is non-zero every bone
driver is applied.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from renderer.model import Model
from renderer.morphs import morph_index, name_weights
from renderer.rotations import quat_from_axis_angle, quat_multiply

AXES = np.eye(3)


@dataclass(frozen=True)
class Drivers:
    """How the ``size`` numbers of a pose move one model (names of morphs, indices of bones)."""

    size: int
    morphs: tuple[str, ...] = ()  # morph name per morph driver (``base[side]`` for one side's half)
    morph_param: tuple[int, ...] = ()  # the pose entry each morph driver follows
    bones: tuple[int, ...] = ()  # bone index per bone driver
    bone_param: tuple[int, ...] = ()
    bone_axis: tuple[int, ...] = ()  # 0, 1, 2 = x, y, z of the character frame
    bone_radians: tuple[float, ...] = ()  # rotation at pose value 1
    names: tuple[str, ...] = field(default=(), compare=False)  # the pose entries' names, for messages

    def __post_init__(self) -> None:
        if len(self.morphs) != len(self.morph_param) or not (
                len(self.bones) == len(self.bone_param) == len(self.bone_axis) == len(self.bone_radians)):
            raise ValueError("Drivers: every morph and bone driver needs all its fields")
        used = [*self.morph_param, *self.bone_param]
        if any(not 0 <= p < self.size for p in used):
            raise ValueError(f"Drivers: pose entries must lie in [0, {self.size})")


@dataclass(frozen=True)
class PoseState:
    """What the renderer applies: morph weights by morph index, local rotations by bone index."""

    weights: dict[int, float]
    rotations: dict[int, np.ndarray]


class Poser:
    """One model's drivers with morph names resolved to indices (the model must hold them,
    derived one-side halves included: :func:`renderer.sided.with_sided_morphs`)."""

    def __init__(self, model: Model, drivers: Drivers):
        self.model, self.drivers = model, drivers
        self._morphs: dict[int, list[int]] = {}
        for name, param in zip(drivers.morphs, drivers.morph_param):
            self._morphs.setdefault(morph_index(model, name), []).append(param)
        self._rotation_params = np.array(drivers.bone_param, np.int64)

    def check(self, pose: Sequence[float] | np.ndarray | None) -> np.ndarray:
        """The pose as float64, zeros for None; ValueError unless ``size`` finite numbers."""
        size = self.drivers.size
        if pose is None:
            return np.zeros(size)
        pose = np.asarray(pose, np.float64).reshape(-1)
        if pose.shape != (size,) or not np.all(np.isfinite(pose)):
            names = f" ({', '.join(self.drivers.names)})" if self.drivers.names and size <= 8 else ""
            raise ValueError(f"a pose is {size} finite numbers{names}, got {pose.tolist()}")
        return pose

    def weights(self, pose: np.ndarray, extra: Mapping[str, float] | None = None) -> dict[int, float]:
        """Morph weights: ``extra`` ({name: weight}) plus the largest entry driving each morph."""
        weights = name_weights(self.model, extra) if extra else {}
        for index, params in self._morphs.items():
            weights[index] = weights.get(index, 0.0) + float(max(pose[p] for p in params))
        return {index: w for index, w in weights.items() if w != 0.0}

    def rotation_key(self, pose: np.ndarray) -> tuple:
        """What the rotations depend on (the renderer skips re-posing when it is unchanged)."""
        return tuple(pose[self._rotation_params])

    def rotations(self, pose: np.ndarray) -> dict[int, np.ndarray]:
        return rotations(self.drivers, pose)

    def state(self, pose: Sequence[float] | np.ndarray | None,
              extra: Mapping[str, float] | None = None) -> PoseState:
        pose = self.check(pose)
        return PoseState(self.weights(pose, extra), self.rotations(pose))


def rotations(drivers: Drivers, pose: Sequence[float] | np.ndarray) -> dict[int, np.ndarray]:
    """Local bone rotations (quaternions x, y, z, w); none when every bone entry is zero."""
    if not any(float(pose[p]) for p in drivers.bone_param):
        return {}
    by_bone: dict[int, dict[int, list[np.ndarray]]] = {}
    for bone, param, axis, radians in zip(drivers.bones, drivers.bone_param, drivers.bone_axis,
                                          drivers.bone_radians):
        q = quat_from_axis_angle(AXES[axis], radians * float(pose[param]))
        by_bone.setdefault(bone, {}).setdefault(axis, []).append(q)
    return {bone: _compose([q for axis in (0, 1, 2) for q in axes.get(axis, [])])
            for bone, axes in by_bone.items()}


def _compose(quaternions: list[np.ndarray]) -> np.ndarray:
    """q_n ... q_2 q_1: the first rotation acts first."""
    result = quaternions[0]
    for q in quaternions[1:]:
        result = quat_multiply(q, result)
    return result

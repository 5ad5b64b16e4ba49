"""Forward kinematics of an MMD skeleton: bone rotations -> skinning matrices.

MMD bones carry no rest orientation: at rest every bone frame is the model frame,
translated to the bone's position. A bone's local transform is therefore
``T(rest offset from parent + translation) @ R(rotation)`` and its world transform is
the parent's world transform times that. Matrices use the column-vector convention
(``v' = M @ v``, translation in ``M[:3, 3]``); GLSL wants them transposed (row-major
bytes of ``M.T``) or uploaded with ``transpose=True``.

Append (付与) bones add a share of another bone's motion, as MMD does:
- without APPEND_LOCAL the source is the append parent's local motion (its user
  rotation times its own appended rotation; its local translation), so chains of
  append bones compose;
- with APPEND_LOCAL the source is the append parent's motion in model space (its
  world rotation, its world displacement from rest), which includes what its
  ancestors did.
The rotation share is ``slerp(identity, source, ratio)`` (a ratio of -1 inverts it);
the translation share is ``ratio * source``. A bone's local rotation is
``user * appended``. Fixed-axis bones keep only the twist of the user rotation about
their axis. IK chains are not solved: IK bones pose like any other bone.

Order: MMD evaluates bones by transform level, then file index. Here a bone never
comes before its parent or append parent, except where append links form a cycle
(twist bones 左手捩1..3 naming each other, say): MMD plays those, each bone reading
whatever its append parent holds at that moment, so the cycle is cut at its first bone
in MMD's order, which reads its append parent as it is before that is evaluated (its
user motion; rest for a model-space source). Only a cycle of parent links is an error.
"""
from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from renderer.errors import ModelError
from renderer.humanoid import HEAD, NECK  # noqa: F401  (annotator.head imports them from here for now)
from renderer.model import BoneFlag, Bones
from renderer.rotations import (
    IDENTITY,
    dual_quaternions,
    matrix_to_quat,
    quat_multiply,
    quat_normalize,
    quat_slerp,
    quat_to_matrix,
)

_APPEND = BoneFlag.APPEND_ROTATE | BoneFlag.APPEND_TRANSLATE


@dataclass
class BonePose:
    """One posed skeleton. Arrays have one row per bone, in file order."""

    world: np.ndarray  # (B, 4, 4) float32, bone frame -> model space
    matrices: np.ndarray  # (B, 4, 4) float32, world @ inverse bind: rest -> posed model space
    rotations: np.ndarray  # (B, 4) float32, world rotation quaternions (x, y, z, w)

    @cached_property
    def dual_quaternions(self) -> np.ndarray:
        """(B, 8) float32 skinning transforms as dual quaternions, for QDEF."""
        return dual_quaternions(self.rotations, self.matrices[:, :3, 3]).astype(np.float32)


@dataclass
class _Stage:
    """Bones whose parents (and append sources) are all posed by earlier stages."""

    bones: np.ndarray  # (n,) bone indices
    parents: np.ndarray  # (n,) parent indices, the sentinel B for roots
    late: _Append | None  # append bones that need posed sources, resolved first


@dataclass
class _Append:
    """Append bones resolved together: their sources are final when this runs."""

    members: np.ndarray  # bone indices (rotate and translate together)
    rotate: np.ndarray  # bone indices with APPEND_ROTATE
    rotate_source: np.ndarray  # their append parents
    rotate_ratio: np.ndarray
    rotate_world: np.ndarray  # bool: APPEND_LOCAL (source = world rotation)
    rotate_early: np.ndarray  # bool: the source is read before it is evaluated (a cut cycle)
    translate: np.ndarray  # bone indices with APPEND_TRANSLATE
    translate_source: np.ndarray
    translate_ratio: np.ndarray
    translate_world: np.ndarray  # bool: APPEND_LOCAL (source = world displacement)
    translate_early: np.ndarray  # bool: as rotate_early


class Skeleton:
    """Posing of one model's bones; build once per model, then call :meth:`pose`.

    ``order`` is MMD's evaluation order. Posing runs in stages (bones whose parents
    and late append sources are done), each one batched matrix product, so its cost
    grows with the hierarchy's depth rather than its bone count.
    """

    def __init__(self, bones: Bones, path: str | None = None):
        self.count = len(bones)
        self.path = path
        self._rest = np.asarray(bones.positions, dtype=np.float64)
        parent, source = self._links(bones)
        flags = np.asarray(bones.flags, dtype=np.int64)
        self.order, early = _evaluation_order(bones, parent, source, path)
        live = np.where(early, -1, source)  # append sources read after they are evaluated
        late = _late_appends(self.order, flags, source, live)
        fixed = np.flatnonzero((flags & BoneFlag.FIXED_AXIS) != 0)
        norms = np.linalg.norm(bones.fixed_axis[fixed], axis=1)
        self._fixed = fixed[norms > 1e-9]
        self._fixed_axis = bones.fixed_axis[self._fixed] / norms[norms > 1e-9, None]
        ratio = np.asarray(bones.append_ratio, dtype=np.float64)
        self._early = _early_append_passes(self.order, flags, source, live, late, ratio)
        self._stages = self._build_stages(parent, source, live, flags, late, ratio)
        rest = np.vstack([self._rest, np.zeros((1, 3))])  # the sentinel at the origin
        self._offsets = rest - rest[np.append(np.where(parent >= 0, parent, self.count), -1)]

    def _links(self, bones: Bones) -> tuple[np.ndarray, np.ndarray]:
        """Parent and append-source indices, validated; -1 where absent."""
        parent = np.asarray(bones.parent, dtype=np.int64)
        flags = np.asarray(bones.flags, dtype=np.int64)
        source = np.where((flags & _APPEND) != 0, np.asarray(bones.append_parent, np.int64), -1)
        for name, links in (("parent", parent), ("append parent", source)):
            bad = np.flatnonzero((links < -1) | (links >= self.count))
            if len(bad):
                raise ModelError(self.path, f"bone {bones.names[bad[0]]!r} has {name} index "
                                 f"{links[bad[0]]} out of range (0..{self.count - 1})")
        return parent, source

    def _build_stages(self, parent: np.ndarray, source: np.ndarray, live: np.ndarray,
                      flags: np.ndarray, late: np.ndarray, ratio: np.ndarray) -> list[_Stage]:
        """Group bones into stages: stage = 1 + latest stage among parent and late live source."""
        stage = np.zeros(self.count, dtype=np.int64)
        for bone in self.order:
            deps = [parent[bone]] + ([live[bone]] if late[bone] else [])
            stage[bone] = 1 + max((stage[d] for d in deps if d >= 0), default=-1)
        stages = []
        sentinel_parent = np.where(parent >= 0, parent, self.count)
        for level in range(int(stage.max(initial=-1)) + 1):
            members = np.flatnonzero(stage == level)
            late_members = members[late[members]]
            stages.append(_Stage(
                bones=members, parents=sentinel_parent[members],
                late=_append_pass(late_members, flags, source, live, ratio) if len(late_members) else None,
            ))
        return stages

    def pose(self, rotations: Mapping[int, Sequence[float]],
             translations: Mapping[int, Sequence[float]] | None = None) -> BonePose:
        """Pose the skeleton: ``rotations`` (local quaternions) and ``translations`` by bone.

        Bones not mentioned stay at rest (apart from what append bones inherit).
        """
        user_q = _table(rotations, self.count, IDENTITY)
        user_q[:-1] = self._project_fixed_axes(quat_normalize(user_q[:-1]))
        user_t = _table(translations or {}, self.count, np.zeros(3))
        local_q, local_t = user_q.copy(), user_t.copy()
        world = np.tile(np.eye(4), (self.count + 1, 1, 1))  # last row: the sentinel
        for step in self._early:
            self._apply_append(step, user_q, user_t, local_q, local_t, world)
        local = self._local_matrices(slice(None), local_q, local_t)
        for stage in self._stages:
            if stage.late is not None:
                self._apply_append(stage.late, user_q, user_t, local_q, local_t, world)
                local[stage.late.members] = self._local_matrices(stage.late.members, local_q, local_t)
            world[stage.bones] = world[stage.parents] @ local[stage.bones]
        return self._bone_pose(world[:-1])

    def _local_matrices(self, bones: np.ndarray | slice, local_q: np.ndarray,
                        local_t: np.ndarray) -> np.ndarray:
        """T(rest offset from the parent + translation) @ R(rotation), as (n, 4, 4)."""
        q = local_q[bones]
        local = np.zeros((len(q), 4, 4))
        local[:, :3, :3] = quat_to_matrix(q)
        local[:, :3, 3] = self._offsets[bones] + local_t[bones]
        local[:, 3, 3] = 1
        return local

    def _project_fixed_axes(self, q: np.ndarray) -> np.ndarray:
        """Keep only the twist about each fixed axis (swing-twist decomposition)."""
        if len(self._fixed):
            axis = self._fixed_axis
            along = np.sum(q[self._fixed, :3] * axis, axis=1, keepdims=True) * axis
            q[self._fixed] = quat_normalize(np.hstack([along, q[self._fixed, 3:]]))
        return q

    def _apply_append(self, step: _Append, user_q: np.ndarray, user_t: np.ndarray,
                      local_q: np.ndarray, local_t: np.ndarray, world: np.ndarray) -> None:
        """Local motion of append bones = user motion + ratio share of the source's motion.

        A source read before it is evaluated (a cut cycle) holds its user motion, and in
        model space its rest state."""
        if len(step.rotate):
            src = step.rotate_source
            source_q = np.where(step.rotate_early[:, None], user_q[src], local_q[src])
            world_now = step.rotate_world & ~step.rotate_early
            if world_now.any():
                source_q[world_now] = matrix_to_quat(world[src[world_now], :3, :3])
            source_q[step.rotate_world & step.rotate_early] = IDENTITY
            share = quat_slerp(IDENTITY, source_q, step.rotate_ratio)
            local_q[step.rotate] = quat_multiply(user_q[step.rotate], share)
        if len(step.translate):
            src = step.translate_source
            early = step.translate_early[:, None]
            moved = np.where(step.translate_world[:, None],
                             np.where(early, 0.0, world[src, :3, 3] - self._rest[src]),
                             np.where(early, user_t[src], local_t[src]))
            local_t[step.translate] = user_t[step.translate] + step.translate_ratio[:, None] * moved

    def _bone_pose(self, world: np.ndarray) -> BonePose:
        skin = world.copy()
        skin[:, :3, 3] -= (world[:, :3, :3] @ self._rest[:, :, None])[:, :, 0]
        return BonePose(world=world.astype(np.float32), matrices=skin.astype(np.float32),
                        rotations=matrix_to_quat(world[:, :3, :3]).astype(np.float32))


def _table(values: Mapping[int, Sequence[float]], count: int, default: np.ndarray) -> np.ndarray:
    """Dense (count + 1, D) float64 array: ``default`` rows, ``values`` filled in; the
    extra last row is the sentinel that roots and append-less bones read."""
    table = np.tile(default, (count + 1, 1))
    if values:
        keys = np.fromiter(values.keys(), dtype=np.int64, count=len(values))
        if keys.min() < 0 or keys.max() >= count:
            raise IndexError(f"bone index out of range 0..{count - 1}: {sorted(values)}")
        table[keys] = np.asarray(list(values.values()), dtype=np.float64)
    return table


def _evaluation_order(bones: Bones, parent: np.ndarray, source: np.ndarray,
                      path: str | None) -> tuple[np.ndarray, np.ndarray]:
    """MMD's order (transform level, after-physics flag, file index), but never a bone
    before its parent or append parent, and which bones read their append parent
    before it is evaluated: where append links close a cycle, the first bone of the
    cycle in MMD's order does. A cycle of parent links alone is a ModelError."""
    after_physics = (np.asarray(bones.flags, dtype=np.int64) & BoneFlag.AFTER_PHYSICS) != 0
    keys = [(int(level), bool(late), i)
            for i, (level, late) in enumerate(zip(bones.transform_level, after_physics))]
    children: list[list[int]] = [[] for _ in keys]
    waiting = np.zeros(len(keys), dtype=np.int64)
    for bone, deps in enumerate(zip(parent, source)):
        for dep in set(int(d) for d in deps if d >= 0):
            children[dep].append(bone)
            waiting[bone] += 1
    ready = [keys[i] for i in np.flatnonzero(waiting == 0)]
    heapq.heapify(ready)
    done = np.zeros(len(keys), dtype=bool)
    early = np.zeros(len(keys), dtype=bool)
    order = []
    while len(order) < len(keys):
        if not ready:
            cut = _cycle_cut(keys, parent, source, done, path, bones.names)
            early[cut] = True
            waiting[cut] -= 1
            children[source[cut]].remove(cut)
            if waiting[cut] == 0:
                heapq.heappush(ready, keys[cut])
            continue
        bone = heapq.heappop(ready)[2]
        order.append(bone)
        done[bone] = True
        for child in children[bone]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, keys[child])
    return np.array(order, dtype=np.int64), early


def _cycle_cut(keys: list[tuple], parent: np.ndarray, source: np.ndarray, done: np.ndarray,
               path: str | None, names: list[str]) -> int:
    """The first bone in MMD's order that waits only for its append parent (a cycle's cut)."""
    waiting = ~done
    parent_done = (parent < 0) | done[np.maximum(parent, 0)]
    candidates = np.flatnonzero(waiting & parent_done & (source >= 0) & (source != parent))
    if not len(candidates):
        stuck = [names[i] for i in np.flatnonzero(waiting)[:5]]
        raise ModelError(path, f"bone parent cycle involving {', '.join(stuck)}")
    return int(min(candidates, key=lambda i: keys[i]))


def _late_appends(order: np.ndarray, flags: np.ndarray, source: np.ndarray, live: np.ndarray) -> np.ndarray:
    """Append bones whose source is only known after forward kinematics has reached it:
    APPEND_LOCAL bones, and append bones that take from such a bone after it is evaluated."""
    late = np.zeros(len(flags), dtype=bool)
    for bone in order:
        if source[bone] >= 0:
            late[bone] = bool(flags[bone] & BoneFlag.APPEND_LOCAL) or (live[bone] >= 0 and late[live[bone]])
    return late


def _early_append_passes(order: np.ndarray, flags: np.ndarray, source: np.ndarray, live: np.ndarray,
                         late: np.ndarray, ratio: np.ndarray) -> list[_Append]:
    """Append bones that depend only on local motion, batched by append-chain depth
    (a bone reading its source before that is evaluated goes in the first pass)."""
    depth = np.zeros(len(flags), dtype=np.int64)
    for bone in order:
        if source[bone] >= 0 and not late[bone]:
            depth[bone] = (depth[live[bone]] if live[bone] >= 0 else 0) + 1
    return [_append_pass(np.flatnonzero(depth == d), flags, source, live, ratio)
            for d in range(1, int(depth.max(initial=0)) + 1)]


def _append_pass(members: np.ndarray, flags: np.ndarray, source: np.ndarray, live: np.ndarray,
                 ratio: np.ndarray) -> _Append:
    rotate = members[(flags[members] & BoneFlag.APPEND_ROTATE) != 0]
    translate = members[(flags[members] & BoneFlag.APPEND_TRANSLATE) != 0]
    return _Append(
        members=members, rotate=rotate, rotate_source=source[rotate], rotate_ratio=ratio[rotate],
        rotate_world=(flags[rotate] & BoneFlag.APPEND_LOCAL) != 0, rotate_early=live[rotate] < 0,
        translate=translate, translate_source=source[translate], translate_ratio=ratio[translate],
        translate_world=(flags[translate] & BoneFlag.APPEND_LOCAL) != 0, translate_early=live[translate] < 0,
    )


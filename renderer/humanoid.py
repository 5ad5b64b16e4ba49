"""Humanoid bones (head, neck, eyes, upper body) under the names real models use.

Conventions, tried in this order of priority for each role: MMD's Japanese names
(頭, 首, 両目/左目/右目, 上半身/上半身2), English names (head, neck, eye_L ...), VRoid and
Unity humanoid names (J_Bip_C_Head, J_Adj_L_FaceEye, mixamorig:Head ...) and Blender
Rigify exports (spine.006 is the head, spine.004 the neck; DEF-/ORG- prefixes). A
bone's name is matched first, its English name after. Where several bones match one
name (DEF-spine.006 and ORG-spine.006), the one carrying the most skinning weight wins.

Where names say nothing, the head is found by geometry: the bone owning the most
vertices in the top quarter of the model, provided those form a compact cluster (not
a single bone skinning the whole model); the neck is then the head's parent. Every
function returns -1 for a bone the model lacks. "Left" is the character's left.
"""
from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

from renderer.model import Model

HEAD = "頭"  # MMD's names, exact: 手首 and 足首 are wrists and ankles
NECK = "首"

# role -> normalised names (see _normalise), highest priority first
_NAMES = {
    "head": (HEAD, "head", "jbipchead", "spine006"),
    "neck": (NECK, "neck", "jbipcneck", "spine004"),
    "eyes": ("両目", "eyes", "botheyes"),
    "eye_left": ("左目", "eyel", "lefteye", "eyeleft", "leye", "jadjlfaceeye"),
    "eye_right": ("右目", "eyer", "righteye", "eyeright", "reye", "jadjrfaceeye"),
    "upper_body": ("上半身", "upperbody", "jbipcspine", "spine001", "spine"),
    "upper_body2": ("上半身2", "upperbody2", "jbipcchest", "spine002", "chest"),
}
_PREFIX = re.compile(r"^(?:(?:def|org)[-_.]|mixamorig\d*:|bip0*1[ _])", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s_.\-]+")
DOMINANT = 0.5  # a vertex belongs to the bone carrying at least this share of its weight
TOP_SHARE = 0.25  # the head is looked for in this top fraction of the model's height
MIN_CLUSTER = 8  # vertices a head must own there
MAX_HEAD_HEIGHT = 0.6  # a head's own vertices span at most this fraction of the model's height


class EyeBones(NamedTuple):
    both: int  # 両目: drives both eyes
    left: int
    right: int


def head_bone(model: Model) -> int:
    """The head bone (頭 and its equivalents), else the head found by geometry; -1 when none."""
    named = _named(model, "head")
    return named if named >= 0 else _head_by_geometry(model)


def neck_bone(model: Model) -> int:
    """The neck bone (首 ...); without a named one, the head's parent unless that is the
    upper body or a root (rotating those would move the torso); -1 when none."""
    named = _named(model, "neck")
    if named >= 0:
        return named
    head = head_bone(model)
    parent = int(model.bones.parent[head]) if head >= 0 else -1
    if parent < 0 or model.bones.parent[parent] < 0 or parent in upper_body_bones(model):
        return -1
    return parent


def eye_bones(model: Model) -> EyeBones:
    """(両目, 左目, 右目) and their equivalents, by name only; -1 for each one missing."""
    return EyeBones(_named(model, "eyes"), _named(model, "eye_left"), _named(model, "eye_right"))


def upper_body_bones(model: Model) -> tuple[int, int]:
    """(上半身, 上半身2) and their equivalents, by name only; -1 for each one missing."""
    return _named(model, "upper_body"), _named(model, "upper_body2")


def _normalise(name: str) -> str:
    """Case, separators and rig prefixes dropped: 'DEF-spine.006' -> 'spine006', 'eye_L' -> 'eyel'."""
    return _SEPARATORS.sub("", _PREFIX.sub("", name.strip())).casefold()


def _named(model: Model, role: str) -> int:
    """The bone named for ``role``: best name first, Japanese names before English ones."""
    bones = model.bones
    for names in (bones.names, bones.names_en):
        plain = [_normalise(name) for name in names]
        for wanted in _NAMES[role]:
            matches = [i for i, name in enumerate(plain) if name == wanted]
            if matches:
                return _heaviest(model, matches)
    return -1


def _heaviest(model: Model, bones: list[int]) -> int:
    if len(bones) == 1:
        return bones[0]
    weight = _weight_per_bone(model)
    return max(bones, key=lambda bone: (weight[bone], -bone))


def _weight_per_bone(model: Model) -> np.ndarray:
    """Total skinning weight each bone carries over all vertices."""
    index, weight = model.vertices.bone_indices, model.vertices.bone_weights
    valid = index >= 0
    return np.bincount(index[valid], weight[valid], minlength=len(model.bones))


def _dominant_bone(model: Model) -> np.ndarray:
    """Per vertex, the bone carrying at least DOMINANT of its weight, else -1."""
    index, weight = model.vertices.bone_indices, model.vertices.bone_weights
    slot = np.argmax(np.where(index >= 0, weight, -1), axis=1)
    rows = np.arange(len(index))
    return np.where(weight[rows, slot] >= DOMINANT, index[rows, slot], -1)


def _head_by_geometry(model: Model) -> int:
    """The bone owning the most vertices in the model's top quarter, when they are a compact cluster."""
    positions = model.vertices.positions
    if len(positions) == 0 or len(model.bones) == 0:
        return -1
    y = positions[:, 1]
    height = float(y.max() - y.min())
    owner = _dominant_bone(model)
    top = (y >= y.max() - TOP_SHARE * height) & (owner >= 0)
    if not top.any():
        return -1
    counts = np.bincount(owner[top], minlength=len(model.bones))
    best = int(np.argmax(counts))
    own_y = y[owner == best]
    if counts[best] < MIN_CLUSTER or np.ptp(own_y) > MAX_HEAD_HEIGHT * height:
        return -1
    return best

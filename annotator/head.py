"""Head bounds (skull top, chin tip) from a model's own bones and geometry.

The skull is the set of vertices skinned mainly to the head bone 頭 itself: hair that
lies on the skull moves with it, while twin tails, ribbons and most ahoge hang on bones
of their own. The top is the highest level at which that set is still wide (a thin
spike is not a skull); the chin is the lowest point of its centre line in front of the
neck, which excludes the neck, headset microphones and hair hanging at the sides.
"""
from __future__ import annotations

import numpy as np

from annotator.mesh import vertex_components
from annotator.motion import MOUTH_PANEL, moved_by_panel
from renderer.errors import UserError
from renderer.framing import head_center_x
from renderer.humanoid import eye_bones, head_bone, neck_bone
from renderer.model import Model

MIN_WEIGHT = 0.5  # a vertex belongs to the head when the head bones carry this much of it
TOP_WIDTH = 0.15  # the skull top is where the cross-section reaches this fraction of the head width
CENTRE = 0.04  # half-width of the chin's centre line, as a fraction of the head width
FACE_SPAN = 0.3  # a mesh piece carrying the mouth is the face when it spans this fraction of the head height
WORN_AT_MOST = 0.5  # share of the skull's vertices that may be worn things before that verdict is doubted
FRONT = 0.02  # margin in front of the neck, as a fraction of the head depth


class NotACharacter(UserError, ValueError):
    """The model has no head to frame; the message is the manifest's reject reason."""


def bone_mask(model: Model, bone: int) -> np.ndarray:
    """Boolean mask over bones selecting ``bone`` alone."""
    mask = np.zeros(len(model.bones), bool)
    mask[bone] = True
    return mask


def descendants(model: Model, bone: int) -> np.ndarray:
    """Boolean mask over bones: ``bone`` and everything parented below it."""
    parent = model.bones.parent
    mask = bone_mask(model, bone)
    for _ in range(len(parent)):
        grown = mask | ((parent >= 0) & mask[np.maximum(parent, 0)])
        if (grown == mask).all():
            break
        mask = grown
    return mask


def bone_weight(model: Model, bones: np.ndarray) -> np.ndarray:
    """Per vertex, the total skinning weight on the bones in the boolean mask ``bones``."""
    index = model.vertices.bone_indices
    valid = index >= 0
    return np.where(valid & bones[np.where(valid, index, 0)], model.vertices.bone_weights, 0).sum(1)


def head_vertices(model: Model) -> np.ndarray:
    """(N,) bool: the skull's vertices (skinned to the head bone itself, else to its subtree)."""
    if len(model.vertices) == 0:
        raise NotACharacter("no vertices")
    head = head_bone(model)
    if head < 0:
        raise NotACharacter("no head bone (頭, head, J_Bip_C_Head, ...) and no head-like geometry: not a character")
    for bones in (bone_mask(model, head), descendants(model, head)):
        selected = bone_weight(model, bones) >= MIN_WEIGHT
        if selected.sum() >= 8:
            return selected
    raise NotACharacter(f"no geometry skinned to the head bone {model.bones.names[head]!r}")


def skull_top(points: np.ndarray, centre_x: float) -> float:
    """Highest y whose points (with all above) span TOP_WIDTH of the head width around the centre."""
    width = np.ptp(points[:, 0])
    order = np.argsort(-points[:, 1])
    x = points[order, 0] - centre_x
    span = np.maximum.accumulate(x) - np.minimum.accumulate(x)
    return float(points[order[np.argmax(span >= TOP_WIDTH * width)], 1])


def top_without(model: Model, worn: np.ndarray, top: float, chin: float) -> float:
    """The skull top once the vertices of ``worn`` faces (hats, ribbons, ornaments) are left out.

    ``worn`` is a (F,) bool over the model's faces, from the part classification of
    :mod:`annotator.parts`, which itself needs head bounds: so the top is found once with
    everything, then again without what the head wears. A classification that calls most
    of the skull worn is not trusted: ``top`` stays.
    """
    keep = np.zeros(len(model.vertices), bool)
    keep[model.indices[~worn].reshape(-1)] = True
    head = head_vertices(model)
    skull = head & keep
    if skull.sum() < max(8, WORN_AT_MOST * head.sum()):
        return top
    bare = skull_top(model.vertices.positions[skull], head_centre_x(model))
    return bare if bare > chin else top


def chin_tip(model: Model, points: np.ndarray, centre_x: float) -> float:
    """Lowest point of the head's centre line that lies in front of the neck (``points``: the face's)."""
    width = np.ptp(points[:, 0])
    line = points[np.abs(points[:, 0] - centre_x) <= CENTRE * width]
    front = line[line[:, 2] > _neck_front(model, centre_x, width) + FRONT * np.ptp(points[:, 2])]
    if len(front) == 0:
        raise NotACharacter("no face geometry in front of the neck on the head's centre line")
    return float(front[:, 1].min())


def face_surface(model: Model, skull: np.ndarray, height: float) -> np.ndarray | None:
    """Skull vertices on the mesh pieces that carry the mouth and span a face (FACE_SPAN of ``height``).

    The chin is on the face's own surface: a ribbon, collar or hair strand skinned to the
    head but modelled as a piece of its own must not pass for it. Without mouth morphs,
    or when the mouth is a decal of its own (chibis), None: the whole skull decides.
    """
    mouth = moved_by_panel(model, MOUTH_PANEL)
    if not mouth.any():
        return None
    labels = vertex_components(model.vertices.positions, model.indices)
    y = model.vertices.positions[:, 1]
    pieces = [piece for piece in np.unique(labels[mouth]) if np.ptp(y[labels == piece]) >= FACE_SPAN * height]
    face = skull & np.isin(labels, pieces)
    return face if face.sum() >= 8 else None


def _neck_front(model: Model, centre_x: float, width: float) -> float:
    """z of the neck's front on the centre line (the head bone's z when nothing is skinned to 首)."""
    neck = neck_bone(model)
    bone = neck if neck >= 0 else head_bone(model)
    positions = model.vertices.positions
    on_neck = ((bone_weight(model, bone_mask(model, bone)) >= MIN_WEIGHT)
               & (np.abs(positions[:, 0] - centre_x) <= CENTRE * width))
    return float(positions[on_neck, 2].max()) if on_neck.any() else float(model.bones.positions[bone, 2])


def head_centre_x(model: Model) -> float:
    """x of the head bone: the face's vertical centre line. NotACharacter without one."""
    if head_bone(model) < 0:
        raise NotACharacter("no head bone (頭, head, J_Bip_C_Head, ...) and no head-like geometry: not a character")
    return head_center_x(model)


def suggest_head_bounds(model: Model) -> tuple[float, float, float]:
    """(top_y, chin_y, confidence in [0, 1]); raises NotACharacter when there is no head."""
    skull = head_vertices(model)
    points = model.vertices.positions[skull]
    centre_x = head_centre_x(model)
    top = skull_top(points, centre_x)
    chin = chin_tip(model, points, centre_x)
    face = face_surface(model, skull, top - chin)
    if face is not None:
        chin = chin_tip(model, model.vertices.positions[face], centre_x)
    if not top > chin:
        raise NotACharacter("no face: the head geometry has no height")
    return top, chin, _confidence(model, top, chin)


def _confidence(model: Model, top: float, chin: float) -> float:
    """High when the eyes sit between chin and top, as on every face; lower without eye bones."""
    eyes = list(eye_bones(model)[1:])
    if min(eyes) < 0:
        return 0.7
    eye_y = model.bones.positions[eyes, 1].mean()
    level = (eye_y - chin) / (top - chin)
    return 0.95 if 0.2 <= level <= 0.7 else 0.4

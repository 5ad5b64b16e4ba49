"""Where a model's eyes and mouth are, in model space, from its own bones, materials and morphs.

Every later judgement (which eye a morph closes, whether it opens the mouth or only
moves an eyebrow) is made relative to these landmarks, so they come from the most
direct evidence a model offers, in order: the irises skinned to the eye bones, the
materials named as eyes, the vertices the model's own eye-panel morphs move, and
last the proportions of an anime face. ``source`` says which one was used.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

from annotator.head import bone_weight, head_centre_x
from annotator.motion import EYE_PANEL, MOUTH_PANEL, moved_by_panel
from renderer.humanoid import eye_bones
from renderer.model import Model

EYE_MATERIAL_WORDS = ("瞳", "目", "眼", "eye", "iris", "hitomi", "pupil")
NOT_EYE_WORDS = ("眉", "まつ", "睫", "brow", "lash", "影", "shadow", "hl", "ハイライト", "highlight")
MIN_POINTS = 8  # fewer vertices than this on one side are no eye
BOX_SCALE = 1.25  # an eye box is the iris extent grown by this factor
EYE_BOX_LIMITS = (0.05, 0.22)  # eye box half sizes, as fractions of the head height
DEFAULT_EYE = (0.45, 0.2, 0.13, 0.1)  # proportions: eye height over chin, |x| off centre, half w, half h
MOUTH_DEPTH = 0.5  # without mouth morphs, the mouth sits this far from the eyes to the chin


@dataclass(frozen=True)
class Face:
    """Landmarks in model space. Index 0 of ``eyes`` is the character's left eye (+x)."""

    centre_x: float
    top: float
    chin: float
    eyes: np.ndarray  # (2, 2) x, y of the left and right eye centres
    eye_half: np.ndarray  # (2,) half width and half height of one eye's box
    mouth: np.ndarray  # (2,) x, y
    source: str  # "eye bones", "eye materials", "eye morphs" or "proportions"

    @property
    def height(self) -> float:
        return self.top - self.chin

    def eye_box(self, side: int) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) around eye ``side`` (0 left, 1 right)."""
        (x, y), (w, h) = self.eyes[side], self.eye_half
        return x - w, x + w, y - h, y + h

    def mouth_box(self) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) from the mouth down to the chin, as wide as the eyes are apart."""
        x, y = self.mouth
        half = 0.5 * abs(self.eyes[0, 0] - self.eyes[1, 0])
        reach = 0.6 * (self.eyes[:, 1].mean() - y)
        return x - half, x + half, max(self.chin, y - reach), y + reach


def locate_face(model: Model, top: float, chin: float) -> Face:
    """The face's landmarks for head bounds (top, chin)."""
    centre_x = head_centre_x(model)
    height = top - chin
    found = None
    for source, points in (("eye bones", _eye_bone_points(model)),  # noqa: B007 (read after the loop)
                          ("eye materials", _eye_material_points(model)),
                          ("eye morphs", _panel_points(model, EYE_PANEL))):
        found = _eyes_from(points, centre_x, top, chin)
        if found is not None:
            break
    if found is None:
        source = "proportions"
        level, off, half_w, half_h = DEFAULT_EYE
        y = chin + level * height
        eyes = np.array([[centre_x + off * height, y], [centre_x - off * height, y]])
        half = np.array([half_w, half_h]) * height
    else:
        eyes, half = found
    low, high = EYE_BOX_LIMITS
    half = np.clip(half, low * height, high * height)
    return Face(centre_x, top, chin, eyes, half, _mouth(model, centre_x, eyes, chin), source)


def _eyes_from(points: np.ndarray | None, centre_x: float, top: float, chin: float
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """Eye centres and box half size from candidate points, or None when they do not look like two eyes."""
    if points is None or len(points) == 0:
        return None
    points = points[(points[:, 1] > chin) & (points[:, 1] < top)]
    sides = [points[points[:, 0] > centre_x], points[points[:, 0] < centre_x]]
    if min(len(side) for side in sides) < MIN_POINTS:
        return None
    eyes = np.array([np.median(side[:, :2], axis=0) for side in sides])
    offsets = np.abs(eyes[:, 0] - centre_x)
    if offsets.min() < 0.5 * offsets.max() or abs(eyes[0, 1] - eyes[1, 1]) > 0.15 * (top - chin):
        return None  # not a symmetric pair
    extent = np.array([np.percentile(side[:, :2], 95, axis=0) - np.percentile(side[:, :2], 5, axis=0)
                       for side in sides]).mean(0)
    return eyes, BOX_SCALE * extent / 2


def _eye_bone_points(model: Model) -> np.ndarray | None:
    """Vertices mostly skinned to an eye bone: the irises, which turn with the eyes."""
    bones = [bone for bone in eye_bones(model)[1:] if bone >= 0]
    if not bones:
        return None
    mask = np.zeros(len(model.bones), bool)
    mask[bones] = True
    return model.vertices.positions[bone_weight(model, mask) >= 0.5]


def _eye_material_points(model: Model) -> np.ndarray | None:
    """Vertices of materials named as eyes (iris, eye whites), never brows, lashes or shadows."""
    names = [_fold(n) + " " + _fold(e) for n, e in zip(model.materials.names, model.materials.names_en)]
    chosen = [i for i, name in enumerate(names)
              if any(w in name for w in EYE_MATERIAL_WORDS) and not any(w in name for w in NOT_EYE_WORDS)]
    if not chosen:
        return None
    faces = np.concatenate([_material_faces(model, i) for i in chosen])
    return model.vertices.positions[np.unique(faces)]


def _material_faces(model: Model, material: int) -> np.ndarray:
    start, count = model.materials.index_start[material] // 3, model.materials.index_count[material] // 3
    return model.indices[start:start + count].reshape(-1)


def _panel_points(model: Model, panel: int) -> np.ndarray | None:
    """Rest positions of the vertices that the model's morphs of one panel move most."""
    moved = moved_by_panel(model, panel)
    return model.vertices.positions[moved] if moved.any() else None


def _mouth(model: Model, centre_x: float, eyes: np.ndarray, chin: float) -> np.ndarray:
    """The mouth on the centre line: where mouth morphs act below the eyes, else a proportion."""
    eye_y = float(eyes[:, 1].mean())
    half = abs(eyes[0, 0] - eyes[1, 0]) / 2
    points = _panel_points(model, MOUTH_PANEL)
    if points is not None:
        points = points[(points[:, 1] < eye_y - 0.5 * (eye_y - chin) * 0.3) & (points[:, 1] > chin)
                        & (np.abs(points[:, 0] - centre_x) < half)]
        if len(points) >= MIN_POINTS:
            return np.array([centre_x, float(np.median(points[:, 1]))])
    return np.array([centre_x, eye_y - MOUTH_DEPTH * (eye_y - chin)])


def _fold(name: str) -> str:
    return unicodedata.normalize("NFKC", name).strip().lower()


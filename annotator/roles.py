"""Morph roles (blink, winks, smiles, mouth open) from what each morph does to the face.

Names vary and lie, so geometry decides the class of a morph: which side's eye it
moves (x > 0 is the character's left), whether it pulls the upper lid down by a
closing distance, whether the closed lid bows up in the middle (a smile, ``^``) or
not, and whether it pulls the jaw down. Names only break ties between morphs of the
same class (まばたき over じと目, あ over ワ).
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

from annotator.head import head_centre_x, suggest_head_bounds
from manifests.record import ROLES
from renderer.model import Model, MorphKind

MOVED = 0.3  # a vertex takes part when it moves this fraction of the morph's largest motion
CLOSE = 0.06  # a lid closes when it travels this fraction of the head height down
OPEN = 0.03  # a mouth opens when the jaw travels this fraction of the head height down
EYE_LEVEL = 0.18  # eye morphs act above this fraction of the head height over the chin
ONE_SIDE = 0.9  # share of the motion on one side that makes a wink
SMILE = -0.04  # lid bow (sagitta / eye width) below which the closed lid is a smile's ^
NAMES = {
    "blink": ("まばたき", "blink"),
    "smile": ("笑い", "smile", "ウィンク", "wink"),
    "wink": ("ウィンク", "wink"),
    "mouth_open": ("あ", "a", "口あけ", "mouth open"),
}


@dataclass
class Effect:
    """What one morph does: displacement per moved vertex, at the rest positions."""

    name: str
    rest: np.ndarray  # (K, 3)
    offset: np.ndarray  # (K, 3)


def vertex_effects(model: Model) -> list[Effect]:
    """Each vertex or group morph as one summed vertex displacement (groups through members)."""
    count = len(model.vertices)
    totals: dict[int, np.ndarray] = {}

    def total(index: int, depth: int = 0) -> np.ndarray | None:
        if index in totals or depth > 8 or not 0 <= index < len(model.morphs):
            return totals.get(index)
        morph = model.morphs[index]
        if morph.kind == MorphKind.VERTEX:
            offset = np.zeros((count, 3), np.float32)
            np.add.at(offset, morph.index, morph.data[:, :3])
        elif morph.kind == MorphKind.GROUP:
            parts = [(total(int(member), depth + 1), float(weight))
                     for member, weight in zip(morph.index, morph.data[:, 0])]
            parts = [(part, weight) for part, weight in parts if part is not None]
            if not parts:
                return None
            offset = sum(part * weight for part, weight in parts)
        else:
            return None
        totals[index] = offset
        return offset

    effects = []
    for index, morph in enumerate(model.morphs):
        offset = total(index)
        if offset is None:
            continue
        moved = np.flatnonzero(np.abs(offset).max(1) > 0)
        if len(moved):
            effects.append(Effect(morph.name, model.vertices.positions[moved], offset[moved]))
    return effects


def normalise(name: str) -> str:
    return unicodedata.normalize("NFKC", name).strip().lower()


def classify(effect: Effect, chin: float, height: float, centre_x: float) -> tuple[str | None, float]:
    """(role, geometric confidence) of one morph, or (None, 0) when it fills no role."""
    size = np.linalg.norm(effect.offset, axis=1)
    moved = size >= MOVED * size.max()
    rest, offset = effect.rest[moved], effect.offset[moved]
    level = (np.average(rest[:, 1], weights=size[moved]) - chin) / height
    drop = -offset[:, 1].min() / height
    if level < EYE_LEVEL:
        return ("mouth_open", float(min(1.0, drop / (2 * OPEN)))) if drop >= OPEN else (None, 0.0)
    if drop < CLOSE or np.average(offset[:, 1], weights=size[moved]) >= 0:
        return None, 0.0
    side = rest[:, 0] - centre_x
    left = size[moved][side > 0].sum() / size[moved].sum()
    smile = _lid_bow(rest + offset, offset, side) < SMILE
    if left >= ONE_SIDE or left <= 1 - ONE_SIDE:
        role = ("smile_wink_" if smile else "wink_") + ("left" if left >= ONE_SIDE else "right")
    else:
        role = "smile_blink" if smile else "blink"
    return role, float(min(1.0, drop / (2 * CLOSE)) * (0.6 + 0.4 * abs(2 * left - 1) if "wink" in role else 1.0))


def _lid_bow(final: np.ndarray, offset: np.ndarray, side: np.ndarray) -> float:
    """Curvature of the closed upper lid per eye, as sagitta over eye width (negative = ^)."""
    lid = offset[:, 1] <= 0.5 * offset[:, 1].min()
    bows = []
    for eye in (side > 0, side < 0):
        points = final[lid & eye]
        if len(points) < 4:
            continue
        x = points[:, 0] - points[:, 0].mean()
        width = np.ptp(x)
        if width <= 0:
            continue
        curvature = np.polyfit(x, points[:, 1], 2)[0]
        bows.append(curvature * width / 4)
    return float(np.mean(bows)) if bows else 0.0


def name_matches(role: str, name: str) -> bool:
    keys = NAMES[role if role in NAMES else "smile" if role.startswith("smile") else "wink"]
    name = normalise(name)
    return name in keys if role == "mouth_open" else any(key in name for key in keys)


def suggest_roles(model: Model, head: tuple[float, float] | None = None
                  ) -> tuple[dict[str, str | None], dict[str, float]]:
    """Best morph per role and its confidence in [0, 1]; None where the model has no such morph.

    ``head`` is (top_y, chin_y), suggested from the model when not given. Among morphs
    of one class a fitting name wins; a role filled against its name costs confidence.
    A role left empty reports 1.0: no morph of the model does that.
    """
    top, chin = head if head is not None else suggest_head_bounds(model)[:2]
    centre_x = head_centre_x(model)
    candidates: dict[str, list[tuple[bool, float, str]]] = {role: [] for role in ROLES}
    for effect in vertex_effects(model):
        role, confidence = classify(effect, chin, top - chin, centre_x)
        if role is not None:
            candidates[role].append((name_matches(role, effect.name), confidence, effect.name))
    roles: dict[str, str | None] = dict.fromkeys(ROLES)
    confidences = dict.fromkeys(ROLES, 1.0)
    for role, found in candidates.items():
        if found:
            named, confidence, roles[role] = max(found, key=lambda item: item[:2])
            confidences[role] = round(confidence * (1.0 if named else 0.6), 3)
    return roles, confidences

"""Morph roles (blink, winks, smiles, mouth open) decided by what each morph does.

Names vary and lie (eyebrow morphs called 困る, comic eyes called ウィンク), so a morph's
role comes from its measured effect: on the render (:mod:`annotator.effects`: which
eye's pixels it hides, whether it opens the mouth, what else it changes) and in its
geometry (the lid travelling down over the eye, the closed lid's curve). Names are a
prior: they rank morphs that do the same thing (まばたき over なごみ) and they lower the
confidence of a morph whose name says it is something else. A model with only a
both-eyes blink gets one-eye roles derived from it (``"まばたき[left]"``,
:mod:`renderer.sided`), never a both-eyes morph standing in for one eye.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

import numpy as np

from annotator.effects import Effect, FaceProbe
from annotator.face import Face
from manifests.record import ROLES
from renderer.model import Model, MorphKind
from renderer.morphs import MorphEvaluator
from renderer.sided import sided_name

HIDDEN = 0.3  # an eye closes when this share of its visible pixels turns into skin
FULL_HIDE = 0.5  # a closure hiding this share of the eye's pixels counts as fully clear evidence
OTHER_EYE = 0.12  # a wink hides at most this share of the other eye
OTHER_CHANGED = 0.2  # ...and changes at most this share of its box (a slight squint is allowed)
TRAVEL = 0.05  # ...and its lids travel (up or down) at least this fraction of the eye box height
OUTSIDE = 0.35  # an eye or mouth morph changes at most this much elsewhere (in eye-box areas)
MOUTH_ALSO = 0.35  # an eye closure changes at most this much of the mouth (in eye-box areas)
OPENED = 0.1  # a mouth opens when this much skin (in eye-box areas) turns into mouth
FULL_OPEN = 0.2  # ...and opening this much counts as fully clear evidence
EYES_STILL = 0.06  # ...while each eye box changes at most this share
SIDEWAYS = 0.9  # lid vertices moving more sideways than down (x/y) draw comic eyes (> <)
ARCH = (0.02, 0.5)  # a closed eye's drawn line decides smile (^) or not when its arch magnitude is in this range
SMILE_BOW = -0.12  # otherwise the lid geometry's bow (sagitta / eye width) below which it is a smile
MOVED = 0.3  # a vertex takes part when it moves this fraction of the morph's largest motion
REVIEW = 0.6  # a role suggested with less confidence than this is flagged for review
CHANNEL_ROLES = ("mouth_open", "blink", "wink_left", "wink_right")  # roles the pose channels are built from

NAMES = {
    "blink": ("まばたき", "まばたき2", "blink", "eyesclosed", "eyes closed", "eyeclose", "close eyes", "目閉じ",
              "目とじ", "blink_both"),
    "wink": ("ウィンク", "ウインク", "wink", "eyeblink", "ｳｨﾝｸ"),
    "smile": ("笑い", "smile", "happy", "笑顔", "にっこり", "joy"),
    "mouth_open": ("あ", "a", "aa", "口あけ", "口開け", "mouthopen", "mouth open", "mouth_open", "jawopen",
                   "mouth_a", "vrc.v_aa", "a1"),
}
# names that say a morph is something else: comic eyes, other eye shapes, brows, decorations
OTHER_NAMES = ("はぅ", "はう", "><", "＞＜", "なごみ", "じと", "ジト", "びっくり", "瞳", "ムキャ", "くわっ", "怒", "困",
               "汗", "涙", "照れ", "青", "なぬ", "ぐるぐる", "星", "ハート", "眉", "糸目", "目つき", "垂れ", "たれ",
               "つり", "キリッ", "ｷﾘｯ", "ｷﾞｭｯ", "ギュ", "surprise", "angry", "sad", "brow", "tear", "sweat")


@dataclass(frozen=True)
class Candidate:
    """One morph that fills a role, with the strength of its evidence and its name's verdict."""

    name: str
    role: str
    strength: float  # [0, 1]: how clearly the render and geometry show the role
    named: int  # +1 the name fits the role, 0 it says nothing, -1 it names something else

    @property
    def score(self) -> float:
        return self.strength + 0.5 * self.named

    @property
    def confidence(self) -> float:
        return self.strength * {1: 1.0, 0: 0.75, -1: 0.45}[self.named]


@dataclass
class RoleSuggestion:
    """Chosen morph per role (None: the model has none), confidences and the measured effects."""

    roles: dict[str, str | None]
    confidence: dict[str, float]
    effects: dict[str, Effect] = field(default_factory=dict)  # by morph name
    review: list[str] = field(default_factory=list)  # why a person should look


@dataclass(frozen=True)
class LidMotion:
    """Per eye (left, right): how far the moving lids travel, how sideways, the closed lid's curve."""

    travel: tuple[float, float]  # mean vertical travel / eye box height
    sideways: tuple[float, float]  # mean |dx| / mean |dy|
    bow: tuple[float, float]  # sagitta / width of the closed lid (negative: ^)


def lid_motion(offsets: np.ndarray, positions: np.ndarray, face: Face) -> LidMotion:
    """Measure the moved vertices inside each eye's box (see :class:`LidMotion`)."""
    size = np.linalg.norm(offsets, axis=1)
    moved = size >= MOVED * max(float(size.max()), 1e-12)
    travels, sideways, bows = [], [], []
    for side in (0, 1):
        x0, x1, y0, y1 = face.eye_box(side)
        inside = moved & (positions[:, 0] >= x0) & (positions[:, 0] <= x1) & (positions[:, 1] >= y0) & (
            positions[:, 1] <= y1 + (y1 - y0) * 0.25)
        if inside.sum() < 3:
            travels.append(0.0), sideways.append(0.0), bows.append(0.0)
            continue
        d = offsets[inside]
        travels.append(float(np.abs(d[:, 1]).mean() / (y1 - y0)))
        sideways.append(float(np.abs(d[:, 0]).mean() / max(np.abs(d[:, 1]).mean(), 1e-9)))
        bows.append(_lid_bow(positions[inside] + d, d))
    return LidMotion(tuple(travels), tuple(sideways), tuple(bows))


def _lid_bow(final: np.ndarray, offset: np.ndarray) -> float:
    """Curvature of the closed upper lid (the vertices that moved down most), as sagitta over width."""
    lid = final[offset[:, 1] <= 0.5 * offset[:, 1].min()]
    if len(lid) < 4:
        return 0.0
    x = lid[:, 0] - lid[:, 0].mean()
    width = float(np.ptp(x))
    if width <= 0:
        return 0.0
    return float(np.polyfit(x, lid[:, 1], 2)[0] * width / 4)


def classify(effect: Effect, lids: LidMotion) -> tuple[str | None, float]:
    """(role, strength) of one morph from its effect and lid motion; (None, 0) for no role."""
    if effect.opened >= OPENED and max(effect.changed) <= EYES_STILL and effect.outside <= OUTSIDE:
        return "mouth_open", min(1.0, effect.opened / FULL_OPEN)
    if effect.outside > OUTSIDE or effect.mouth_changed > MOUTH_ALSO:
        return None, 0.0
    closed = [effect.hidden[s] >= HIDDEN and lids.travel[s] >= TRAVEL for s in (0, 1)]
    if not any(closed):
        return None, 0.0
    sides = [s for s in (0, 1) if closed[s]]
    if any(lids.sideways[s] > SIDEWAYS for s in sides):
        return None, 0.0  # comic eyes
    if len(sides) == 1:
        other = 1 - sides[0]
        if effect.changed[other] > OTHER_CHANGED or effect.hidden[other] > OTHER_EYE:
            return None, 0.0  # one eye closed, the other changed: not a clean wink
    smile = np.mean([_is_smile(effect.arch[s], lids.bow[s]) for s in sides]) > 0.5
    prefix = "smile_" if smile else ""
    role = f"{prefix}blink" if len(sides) == 2 else f"{prefix}wink_{('left', 'right')[sides[0]]}"
    strength = min(1.0, min(effect.hidden[s] for s in sides) / FULL_HIDE)
    return role, float(strength)


def _is_smile(arch: float, bow: float) -> bool:
    """A closed eye drawn as ^: from the rendered line when it is clear, else from the lid's geometry."""
    low, high = ARCH
    return arch < 0 if low <= abs(arch) <= high else bow < SMILE_BOW


def name_verdict(role: str, name: str) -> int:
    """+1 when the name is the role's usual name, -1 when it names something else, else 0."""
    folded = normalise(name)
    family = "mouth_open" if role == "mouth_open" else "smile" if role.startswith("smile") else (
        "blink" if role == "blink" else "wink")
    keys = NAMES[family]
    if role == "mouth_open":
        fits = folded in keys or any(len(k) > 2 and k in folded for k in keys)
    else:
        fits = any(key in folded for key in keys)
    if family == "wink" and any(key in folded for key in NAMES["smile"]):
        fits = False
    if fits and not any(word in folded for word in OTHER_NAMES):
        return 1
    return -1 if any(word in folded for word in OTHER_NAMES) or _names_other_role(role, folded) else 0


def _names_other_role(role: str, folded: str) -> bool:
    """The name is another role's usual name (a blink called ウィンク, a wink called 笑い)."""
    for family, keys in NAMES.items():
        same = (family == "mouth_open") == (role == "mouth_open") and (family in role or role.startswith(family))
        if not same and (folded in keys if family == "mouth_open" else any(k in folded for k in keys)):
            return True
    return False


def normalise(name: str) -> str:
    return unicodedata.normalize("NFKC", name).strip().lower()


def candidates(model: Model, probe: FaceProbe,
               key=lambda index: f"#{index}") -> tuple[list[Candidate], dict[str, Effect]]:
    """Every vertex or group morph that fills a role. ``key`` names morph i in the probe's renderer."""
    evaluator = MorphEvaluator(model)
    positions = model.vertices.positions
    found, effects, images = [], {}, {}
    for index, morph in enumerate(model.morphs):
        if morph.kind not in (MorphKind.VERTEX, MorphKind.GROUP):
            continue  # texture and material swaps are decorations, never a role
        offsets = evaluator.evaluate({index: 1.0}).vertex_offsets
        if not np.abs(offsets).any():
            continue
        image = probe.render(None, {key(index): 1.0})
        effect = effects[morph.name] = probe.measure(image)
        role, strength = classify(effect, lid_motion(offsets, positions, probe.face))
        if role is not None:
            found.append(Candidate(morph.name, role, strength, name_verdict(role, morph.name)))
            images[morph.name] = image
    return settle_lid_shapes(found, images, probe), effects


def settle_lid_shapes(found: list[Candidate], images: dict[str, np.ndarray], probe: FaceProbe) -> list[Candidate]:
    """One-eye closures take the lid shape (normal or ^) of the model's own blink or smile they look like.

    A wink's closed eye is drawn like the same model's blink or like its smile; its
    pixels over that eye, compared with both, say which, more reliably than a curve
    fitted to a few lid pixels. The references are the both-eyes closures whose names
    say blink and smile (names choose the references, pixels decide); without both,
    the shapes measured per morph stay.
    """
    both = [c for c in found if c.role in ("blink", "smile_blink")]
    normal = next((c for c in both if any(k in normalise(c.name) for k in NAMES["blink"])), None)
    smile = next((c for c in both if any(k in normalise(c.name) for k in NAMES["smile"])), None)
    if normal is None or smile is None:
        return found
    settled = []
    for c in found:
        if "wink" in c.role:
            side = 0 if c.role.endswith("left") else 1
            mask = probe.eye_mask(side)
            distance = [np.abs(images[c.name][mask].astype(np.int16) - images[ref.name][mask]).mean()
                        for ref in (normal, smile)]
            role = ("smile_" if distance[1] < distance[0] else "") + "wink_" + ("left", "right")[side]
            c = Candidate(c.name, role, c.strength, name_verdict(role, c.name))
        settled.append(c)
    return settled


def choose_roles(found: list[Candidate]) -> tuple[dict[str, str | None], dict[str, float], list[str]]:
    """Best candidate per role; one-eye roles derived from the blink where no wink exists."""
    roles: dict[str, str | None] = dict.fromkeys(ROLES)
    confidence = dict.fromkeys(ROLES, 1.0)
    review: list[str] = []
    for role in ROLES:
        ranked = sorted((c for c in found if c.role == role), key=lambda c: -c.score)
        if not ranked:
            continue
        best = ranked[0]
        value = best.confidence
        if len(ranked) > 1 and ranked[1].named == best.named and ranked[1].strength >= best.strength - 0.1:
            value *= 0.7  # two morphs do it about as clearly and names do not decide
        roles[role], confidence[role] = best.name, round(value, 3)
    for side in ("left", "right"):
        role = f"wink_{side}"
        if roles[role] is None and roles["blink"] is not None:
            roles[role] = sided_name(roles["blink"], side)
            confidence[role] = confidence["blink"]
    for role in CHANNEL_ROLES:
        if roles[role] is not None and confidence[role] < REVIEW:
            review.append(f"{role} {roles[role]!r} suggested with confidence {confidence[role]:.2f}")
    return roles, confidence, review

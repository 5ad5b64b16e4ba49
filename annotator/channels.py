"""The channel check: does each pose channel do, on the render, what its label says?

Roles a schema finds by MMD's names (THA3's eyebrows, eye shapes, vowels) are checked too:
a brow morph may not close an eye or move the mouth, an eye-shape morph must change the
eyes, a mouth morph the mouth and not the eyes; a morph that fails is not driven (its
parameters are masked), where a failing channel refuses the model.

The checked channels are the pose schema's parameters with a ``check``: tha1's eye_left = 1
(tha3's eye_wink_left) must close the character's left eye (the image's right) and nothing
else, eye_right the right eye, mouth = 1 (mouth_aaa) must open the mouth; each may change
only the face around its feature. ``suggest`` holds a model that fails for review, ``build``
refuses to ship it, ``verify`` fails a dataset whose models lack a passing check, and
the GUI shows the reasons beside the close-ups.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotator.binding import Binding
from annotator.effects import Effect, FaceProbe
from annotator.face import locate_face
from annotator.roles import EYES_STILL, HIDDEN, MOUTH_ALSO, OPENED, OTHER_CHANGED, OTHER_EYE, OUTSIDE
from manifests.schema import PoseSchema, load_schema
from renderer.model import Model

SIZE = 160  # close-up size of the check's renders
SHOWS = 0.05  # a role's morph that changes less than this (eye areas) on the close-up shows nothing


@dataclass(frozen=True)
class ChannelResult:
    channel: str
    ok: bool
    reason: str | None
    effect: Effect


@dataclass(frozen=True)
class ChannelReport:
    """Per channel the verdict and its measurements; ``ok`` only when every channel passes."""

    results: tuple[ChannelResult, ...]
    roles: tuple[tuple[str, str | None], ...] = ()  # (schema role found by name, why its morph is refused or None)

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    @property
    def reasons(self) -> list[str]:
        return [f"{r.channel}: {r.reason}" for r in self.results if not r.ok]

    @property
    def rejected_roles(self) -> dict[str, str]:
        """Schema roles whose morph does not do what the role means: {role: why}."""
        return {role: reason for role, reason in self.roles if reason}

    def to_dict(self) -> dict:
        return {"ok": self.ok, "reasons": self.reasons,
                "channels": {r.channel: {"ok": r.ok, "reason": r.reason, **r.effect.to_dict()}
                             for r in self.results},
                "roles": dict(self.roles)}


def judge(check: str, effect: Effect) -> str | None:
    """Why ``effect`` is not what a channel of ``check`` (eye_left, eye_right, mouth) promises, or None."""
    if check == "mouth":
        if effect.opened < OPENED:
            return f"does not open the mouth (opened {effect.opened:.2f} eye areas, needs {OPENED})"
        if max(effect.changed) > EYES_STILL:
            return f"also changes the eyes ({max(effect.changed):.0%} of an eye box)"
        return _outside(effect)
    side = 0 if check == "eye_left" else 1
    eye, other = ("left", "right") if side == 0 else ("right", "left")
    if effect.hidden[side] < HIDDEN:
        return f"does not close the {eye} eye ({effect.hidden[side]:.0%} of it hidden, needs {HIDDEN:.0%})"
    if effect.hidden[1 - side] > OTHER_EYE or effect.changed[1 - side] > OTHER_CHANGED:
        return (f"also changes the {other} eye ({effect.hidden[1 - side]:.0%} hidden, "
                f"{effect.changed[1 - side]:.0%} of its box changed)")
    if effect.mouth_changed > MOUTH_ALSO:
        return f"also changes the mouth ({effect.mouth_changed:.2f} eye areas)"
    return _outside(effect)


def judge_role(effect_kind: str, effect: Effect, area: float) -> str | None:
    """Why a morph found by name does not do what a role of ``effect_kind`` (brow, eyes, mouth) means."""
    if area < SHOWS:
        return f"changes nothing visible on the face ({area:.2f} eye areas)"
    mouth = effect.opened >= OPENED or effect.mouth_changed > MOUTH_ALSO
    if effect_kind == "brow":
        if max(effect.hidden) > OTHER_EYE:
            return f"closes an eye ({max(effect.hidden):.0%} of it hidden)"
        return "changes the mouth" if mouth else None
    if effect_kind == "eyes":
        if max(effect.changed) < EYES_STILL:
            return f"does not change the eyes ({max(effect.changed):.0%} of an eye box)"
        return "changes the mouth" if mouth else None
    if effect.mouth_changed < SHOWS:
        return f"does not change the mouth ({effect.mouth_changed:.2f} eye areas)"
    if max(effect.changed) > OTHER_CHANGED:
        return f"also changes the eyes ({max(effect.changed):.0%} of an eye box)"
    return None


def _outside(effect: Effect) -> str | None:
    if effect.outside > OUTSIDE:
        return f"changes the face away from its feature ({effect.outside:.2f} eye areas, at most {OUTSIDE})"
    return None


def checked(schema: PoseSchema) -> list[tuple[str, str]]:
    """(parameter, check) of every parameter the schema asks to be checked, in pose order."""
    return [(p.name, p.check) for p in schema.parameters if p.check]


def channel_pose(schema: PoseSchema, parameter: str) -> np.ndarray:
    """All zeros but ``parameter`` at 1: one channel alone (zeros: eyes open, mouth closed)."""
    pose = np.zeros(schema.size)
    pose[schema.index(parameter)] = 1.0
    return pose


def check_channels(probe: FaceProbe, binding: Binding, schema: PoseSchema) -> ChannelReport:
    """Render each checked channel at 1 through the probe's renderer (its drivers) and judge it;
    a channel without a morph fails without a render."""
    results = []
    for name, check in checked(schema):
        if name not in binding.morphs:
            zero = Effect((0.0, 0.0), (0.0, 0.0), 0.0, 0.0, 0.0)
            results.append(ChannelResult(name, False, "no morph drives it", zero))
            continue
        effect = probe.pose_effect(channel_pose(schema, name))
        reason = judge(check, effect)
        results.append(ChannelResult(name, reason is None, reason, effect))
    roles = []
    for role, morph in binding.found.items():
        image = probe.render(None, {morph: 1.0})
        roles.append((role, judge_role(schema.roles[role].effect, probe.measure(image), probe.changed_area(image))))
    return ChannelReport(tuple(results), tuple(roles))


def check_model(model: Model, head: tuple[float, float], binding: Binding, schema: PoseSchema | None = None,
                size: int = SIZE) -> ChannelReport:
    """The channel check of one model bound (with the model) to ``schema`` (tha1 by default)."""
    from renderer.renderer import Renderer

    schema = schema or load_schema()
    face = locate_face(model, *head)
    with Renderer(model, head_bounds=head, drivers=binding.drivers, size=size) as renderer:
        return check_channels(FaceProbe(renderer, face), binding, schema)


def close_ups(model: Model, head: tuple[float, float], binding: Binding, schema: PoseSchema | None = None,
              size: int = 256) -> dict[str, np.ndarray]:
    """Rest and each checked channel at 1, face close-ups for a person to judge (the GUI's check panel)."""
    from renderer.renderer import Renderer

    schema = schema or load_schema()
    face = locate_face(model, *head)
    with Renderer(model, head_bounds=head, drivers=binding.drivers, size=size) as renderer:
        probe = FaceProbe(renderer, face)
        return {"rest": probe.rest, **{name: probe.render(channel_pose(schema, name)) for name, _ in checked(schema)}}

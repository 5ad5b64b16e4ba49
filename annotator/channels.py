"""The channel check: does each pose channel do, on the render, what its label says?

eye_left = 1 must close the character's left eye (the image's right) and nothing
else, eye_right the right eye, mouth = 1 must open the mouth; each may change only the
face around its feature. ``suggest`` holds a model that fails for review, ``build``
refuses to ship it, ``verify`` fails a dataset whose models lack a passing check, and
the GUI shows the reasons beside the close-ups.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotator.effects import Effect, FaceProbe
from annotator.face import locate_face
from annotator.roles import EYES_STILL, HIDDEN, MOUTH_ALSO, OPENED, OTHER_CHANGED, OTHER_EYE, OUTSIDE
from renderer.model import Model

CHANNELS = ("eye_left", "eye_right", "mouth")
POSES = {"eye_left": (1.0, 0, 0, 0, 0, 0), "eye_right": (0, 1.0, 0, 0, 0, 0), "mouth": (0, 0, 1.0, 0, 0, 0)}
SIZE = 160  # close-up size of the check's renders


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

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    @property
    def reasons(self) -> list[str]:
        return [f"{r.channel}: {r.reason}" for r in self.results if not r.ok]

    def to_dict(self) -> dict:
        return {"ok": self.ok, "reasons": self.reasons,
                "channels": {r.channel: {"ok": r.ok, "reason": r.reason, **r.effect.to_dict()}
                             for r in self.results}}


def judge(channel: str, effect: Effect) -> str | None:
    """Why ``effect`` is not what ``channel`` promises, or None when it is."""
    if channel == "mouth":
        if effect.opened < OPENED:
            return f"does not open the mouth (opened {effect.opened:.2f} eye areas, needs {OPENED})"
        if max(effect.changed) > EYES_STILL:
            return f"also changes the eyes ({max(effect.changed):.0%} of an eye box)"
        return _outside(effect)
    side = 0 if channel == "eye_left" else 1
    eye, other = ("left", "right") if side == 0 else ("right", "left")
    if effect.hidden[side] < HIDDEN:
        return f"does not close the {eye} eye ({effect.hidden[side]:.0%} of it hidden, needs {HIDDEN:.0%})"
    if effect.hidden[1 - side] > OTHER_EYE or effect.changed[1 - side] > OTHER_CHANGED:
        return (f"also changes the {other} eye ({effect.hidden[1 - side]:.0%} hidden, "
                f"{effect.changed[1 - side]:.0%} of its box changed)")
    if effect.mouth_changed > MOUTH_ALSO:
        return f"also changes the mouth ({effect.mouth_changed:.2f} eye areas)"
    return _outside(effect)


def _outside(effect: Effect) -> str | None:
    if effect.outside > OUTSIDE:
        return f"changes the face away from its feature ({effect.outside:.2f} eye areas, at most {OUTSIDE})"
    return None


def check_channels(probe: FaceProbe, bound: dict[str, bool]) -> ChannelReport:
    """Render each channel at 1 through the probe's renderer (its morph binding) and judge it.

    ``bound`` says which channels have a morph; an unbound channel fails without a render.
    """
    results = []
    for channel in CHANNELS:
        if not bound.get(channel):
            zero = Effect((0.0, 0.0), (0.0, 0.0), 0.0, 0.0, 0.0)
            results.append(ChannelResult(channel, False, "no morph drives it", zero))
            continue
        effect = probe.pose_effect(POSES[channel])
        reason = judge(channel, effect)
        results.append(ChannelResult(channel, reason is None, reason, effect))
    return ChannelReport(tuple(results))


def check_model(model: Model, head: tuple[float, float], binding, size: int = SIZE) -> ChannelReport:
    """The channel check of one model with a renderer ``MorphBinding`` (eye_left, eye_right, mouth)."""
    from renderer.renderer import Renderer

    face = locate_face(model, *head)
    with Renderer(model, head_bounds=head, morphs=binding, size=size) as renderer:
        probe = FaceProbe(renderer, face)
        return check_channels(probe, {"eye_left": bool(binding.eye_left), "eye_right": bool(binding.eye_right),
                                      "mouth": bool(binding.mouth)})


def close_ups(model: Model, head: tuple[float, float], binding, size: int = 256) -> dict[str, np.ndarray]:
    """Rest and each channel at 1, face close-ups for a person to judge (the GUI's check panel)."""
    from renderer.renderer import Renderer

    face = locate_face(model, *head)
    with Renderer(model, head_bounds=head, morphs=binding, size=size) as renderer:
        probe = FaceProbe(renderer, face)
        return {"rest": probe.rest, **{channel: probe.render(POSES[channel]) for channel in CHANNELS}}

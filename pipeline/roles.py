"""Manifest morph roles -> the renderer's three pose channels, with the method's fallbacks.

A missing one-eye wink falls back to the both-eyes blink for that eye (so both winks
missing means the blink drives both eyes); a missing mouth_open makes the model
unusable. What was used, fallbacks included, is recorded per model in the shard.
"""
from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


class RoleError(ValueError):
    """A model cannot drive the pose channels (no mouth morph): skip it, with this reason."""


@dataclass(frozen=True)
class ChannelMorphs:
    """Morph name per pose channel (None: the channel moves nothing) and the fallbacks taken."""

    eye_left: str | None
    eye_right: str | None
    mouth: str
    fallbacks: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    def binding(self) -> Any:
        """The renderer's ``MorphBinding`` (imported here so planning never loads OpenGL)."""
        from renderer.renderer import MorphBinding

        return MorphBinding(eye_left=self.eye_left, eye_right=self.eye_right, mouth=self.mouth)


def _present(roles: Mapping[str, str | None], role: str, available: Collection[str] | None,
             notes: list[str]) -> str | None:
    """The role's morph name, or None when unset or (given the model's morphs) not in the model."""
    name = roles.get(role)
    if name and available is not None and name not in available:
        notes.append(f"{role} {name!r} is not in the model")
        return None
    return name or None


def _eye(roles: Mapping[str, str | None], side: str, available: Collection[str] | None,
         notes: list[str]) -> str | None:
    wink = _present(roles, f"wink_{side}", available, notes)
    if wink:
        return wink
    blink = _present(roles, "blink", available, notes)
    notes.append(f"eye_{side}: no wink_{side}, used blink {blink!r}" if blink
                 else f"eye_{side}: no wink_{side} and no blink, channel unbound")
    return blink


def bind_roles(roles: Mapping[str, str | None], available: Collection[str] | None = None) -> ChannelMorphs:
    """Choose the morph for each pose channel; ``available`` (the model's morph names) enables checks."""
    notes: list[str] = []
    mouth = _present(roles, "mouth_open", available, notes)
    if not mouth:
        raise RoleError("; ".join([*notes, "no mouth_open morph: the model cannot open its mouth"]))
    eye_left = _eye(roles, "left", available, notes)
    eye_right = _eye(roles, "right", available, notes)
    return ChannelMorphs(eye_left=eye_left, eye_right=eye_right, mouth=mouth, fallbacks=notes)

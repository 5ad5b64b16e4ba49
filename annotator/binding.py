"""Manifest morph roles -> the three morphs that drive the pose's eye_left, eye_right and mouth.

An eye channel is driven by that eye's wink; without one, by the one-eye half of the
both-eyes blink (``"まばたき[left]"``, :mod:`renderer.sided`), never by the whole blink:
a label "left eye closed" must not sit under an image with both eyes closed. A model
with no mouth_open, or no morph that can close an eye, cannot honour the pose and is
refused with the reason. What was used, derivations included, is recorded per model
in the shard.
"""
from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from renderer.sided import parse_sided, sided_name


class RoleError(ValueError):
    """A model cannot drive the pose channels (no mouth, no eye morph): skip it, with this reason."""


@dataclass(frozen=True)
class ChannelMorphs:
    """Morph name per pose channel and how each was derived."""

    eye_left: str
    eye_right: str
    mouth: str
    fallbacks: list[str] = field(default_factory=list)
    check: dict[str, Any] | None = None  # the channel check's verdict and measurements, once made

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
    if name and available is not None and parse_sided(name)[0] not in available and name not in available:
        notes.append(f"{role} {name!r} is not in the model")
        return None
    return name or None


def _eye(roles: Mapping[str, str | None], side: str, available: Collection[str] | None,
         notes: list[str]) -> str:
    wink = _present(roles, f"wink_{side}", available, notes)
    if wink:
        return wink
    blink = _present(roles, "blink", available, notes)
    if not blink:
        raise RoleError("; ".join([*notes, f"no wink_{side} and no blink: the model cannot close its {side} eye"]))
    derived = sided_name(parse_sided(blink)[0], side)
    notes.append(f"eye_{side}: no wink_{side}, used the {side} half of blink {blink!r} ({derived!r})")
    return derived


def bind_roles(roles: Mapping[str, str | None], available: Collection[str] | None = None) -> ChannelMorphs:
    """Choose the morph for each pose channel; ``available`` (the model's morph names) enables checks."""
    notes: list[str] = []
    mouth = _present(roles, "mouth_open", available, notes)
    if not mouth:
        raise RoleError("; ".join([*notes, "no mouth_open morph: the model cannot open its mouth"]))
    eye_left = _eye(roles, "left", available, notes)
    eye_right = _eye(roles, "right", available, notes)
    return ChannelMorphs(eye_left=eye_left, eye_right=eye_right, mouth=mouth, fallbacks=notes)

"""Manifest roles + a pose schema -> what drives each pose parameter on one model.

A morph parameter takes the first of its driver's roles the model has: a manifest role
(``wink_left``), or a role of the schema found by MMD's usual names (``困る``);
``role[side]`` is that side's half of the role's morph (``"まばたき[left]"``,
:mod:`renderer.sided`), so an eye parameter without a wink uses one half of the blink,
never the whole blink: a label "left eye closed" must not sit under an image with both
eyes closed. A bone parameter takes the first of its humanoid bones the model has
(:mod:`renderer.humanoid`). A parameter the model cannot drive is masked: it stays at its
default and the shard's mask says so; a required one (tha1's all, tha3's winks and mouth)
refuses the model with the reason. What was used, derivations included, is recorded per
model in the shard.
"""
from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from manifests.record import ROLES
from manifests.schema import AXES, BoneDriver, MorphDriver, PoseSchema, load_schema
from renderer.errors import UserError
from renderer.humanoid import eye_bones, head_bone, neck_bone, upper_body_bones
from renderer.model import Model
from renderer.posing import Drivers
from renderer.sided import parse_sided, sided_name

BONES = {"head": head_bone, "neck": neck_bone, "eyes": lambda m: eye_bones(m).both,
         "eye_left": lambda m: eye_bones(m).left, "eye_right": lambda m: eye_bones(m).right,
         "upper_body": lambda m: upper_body_bones(m)[0], "upper_body2": lambda m: upper_body_bones(m)[1]}


class RoleError(UserError, ValueError):
    """A model cannot drive a required parameter (no mouth, no eye morph, no head): skip it, with this reason."""


@dataclass(frozen=True)
class Binding:
    """Per parameter the morph or bones driving it; the parameters the model cannot express."""

    schema: str
    morphs: dict[str, str]  # parameter -> morph name (``base[side]`` for a derived half)
    bones: dict[str, list[str]] = field(default_factory=dict)  # parameter -> bone names
    masked: list[str] = field(default_factory=list)  # kept at their default: the image cannot show them
    fallbacks: list[str] = field(default_factory=list)
    check: dict[str, Any] | None = None  # the channel check's verdict and measurements, once made
    found: dict[str, str] = field(default_factory=dict)  # schema role -> morph found by name (its effect is checked)
    drivers: Drivers | None = field(default=None, compare=False)  # the renderer's, when bound to a model

    def mask(self, schema: PoseSchema) -> np.ndarray:
        """(P,) bool: which parameters of ``schema`` this model can express."""
        return np.array([name not in self.masked for name in schema.names], bool)

    def to_json(self) -> str:
        data = {"schema": self.schema, "morphs": self.morphs, "bones": self.bones, "masked": self.masked,
                "fallbacks": self.fallbacks, "check": self.check, "found": self.found}
        return json.dumps(data, ensure_ascii=False, sort_keys=True)


def bind_roles(roles: Mapping[str, str | None], available: Collection[str] | None = None, *,
               schema: PoseSchema | None = None, model: Model | None = None, strict: bool = True,
               rejected: Mapping[str, str] | None = None) -> Binding:
    """Bind every parameter of ``schema`` (tha1 by default). ``available`` (the model's morph names)
    enables checks and roles found by name; ``model`` (which implies them) also binds bones and
    makes the renderer's :class:`Drivers`. ``strict`` False masks a required parameter the model
    cannot drive instead of refusing the model (previews). ``rejected`` ({role: why}) are schema roles
    whose morph, found by name, was seen not to do what the role means: they count as absent."""
    schema = schema or load_schema()
    if model is not None and available is None:
        available = [morph.name for morph in model.morphs]
    notes = [f"{role}: not driven ({why})" for role, why in (rejected or {}).items()]
    found: dict[str, str] = {}
    morphs: dict[str, str] = {}
    bones: dict[str, list[int]] = {}
    masked: list[str] = []
    refused: list[str] = []
    for parameter in schema.parameters:
        driver = parameter.driver
        if isinstance(driver, MorphDriver):
            name = _morph(parameter.name, driver, roles, available, schema, notes, found, rejected or {})
            if name:
                morphs[parameter.name] = name
                continue
            what = f"no {' or '.join(_plain(driver.roles))} morph"
        elif isinstance(driver, BoneDriver) and model is not None:
            chosen = next((indices for indices in ([BONES[b](model) for b in option] for option in driver.bones)
                           if min(indices) >= 0), None)
            if chosen:
                bones[parameter.name] = chosen
                continue
            what = f"no {' or '.join('+'.join(option) for option in driver.bones)} bone"
        elif isinstance(driver, BoneDriver):
            continue  # bones are bound with the model
        else:
            what = "no driver"
        if parameter.required and strict:
            refused.append(f"{what}: the model cannot drive {parameter.name}")
        if parameter.required and not strict:
            notes.append(f"{what}: {parameter.name} is not driven")
        masked.append(parameter.name)
    if refused:
        raise RoleError("; ".join([*notes, *refused]))
    drivers = make_drivers(schema, morphs, bones) if model is not None else None
    bone_names = {p: [model.bones.names[i] for i in indices] for p, indices in bones.items()} if model else {}
    return Binding(schema=schema.name, morphs=morphs, bones=bone_names, masked=masked, fallbacks=notes,
                   drivers=drivers, found=found)


def _plain(roles: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(parse_sided(role)[0] for role in roles))


def _morph(parameter: str, driver: MorphDriver, roles: Mapping[str, str | None],
           available: Collection[str] | None, schema: PoseSchema, notes: list[str], found: dict[str, str],
           rejected: Mapping[str, str]) -> str | None:
    """The first of the driver's roles the model has, a ``[side]`` role as that side's half."""
    for k, wanted in enumerate(driver.roles):
        role, side = parse_sided(wanted)
        name = None if role in rejected else _role_morph(role, roles, available, schema, notes)
        if name and role in schema.roles and role not in roles:
            found[role] = name
        if not name:
            continue
        if not side or parse_sided(name)[1]:
            return name
        derived = sided_name(name, side)
        if k:
            notes.append(f"{parameter}: no {_plain(driver.roles[:k])[0]}, used the {side} half of "
                         f"{role} {name!r} ({derived!r})")
        return derived
    return None


def _role_morph(role: str, roles: Mapping[str, str | None], available: Collection[str] | None,
                schema: PoseSchema, notes: list[str]) -> str | None:
    """A manifest role's morph (None when unset or not in the model), else a schema role's by name."""
    if role in ROLES or role in roles:
        name = roles.get(role)
        if name and available is not None and parse_sided(name)[0] not in available and name not in available:
            note = f"{role} {name!r} is not in the model"
            if note not in notes:
                notes.append(note)
            return None
        return name or None
    spec = schema.roles.get(role)
    if spec is None or available is None:
        return None
    by_name = {name.strip(): name for name in available}
    return next((by_name[name] for name in spec.names if name in by_name), None)


def make_drivers(schema: PoseSchema, morphs: Mapping[str, str], bones: Mapping[str, list[int]]) -> Drivers:
    """The renderer's drivers: {parameter: morph name} and {parameter: bone indices} as plain arrays."""
    params = {name: i for i, name in enumerate(schema.names)}
    bone_rows = [(bone, params[p.name], AXES.index(p.driver.axis), float(np.radians(p.driver.degrees)))
                 for p in schema.parameters if p.name in bones for bone in bones[p.name]]
    return Drivers(size=schema.size, morphs=tuple(morphs.values()),
                   morph_param=tuple(params[p] for p in morphs),
                   bones=tuple(r[0] for r in bone_rows), bone_param=tuple(r[1] for r in bone_rows),
                   bone_axis=tuple(r[2] for r in bone_rows), bone_radians=tuple(r[3] for r in bone_rows),
                   names=schema.names)


def schema_drivers(model: Model, roles: Mapping[str, str | None] | None = None,
                   schema: PoseSchema | None = None) -> Drivers:
    """The renderer's drivers of ``model`` for ``schema`` (tha1 by default), best effort: what the
    model cannot drive stays still (previews, benchmarks, tests of the renderer)."""
    binding = bind_roles(roles or {}, schema=schema, model=model, strict=False)
    assert binding.drivers is not None
    return binding.drivers

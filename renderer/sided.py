"""One-eye copies of a both-eyes morph, named ``"まばたき[left]"`` / ``"まばたき[right]"``.

Many models can only blink both eyes at once. A label that says "left eye closed" must
show only the left eye closed, so the one-eye morph is derived: the base morph's vertex
offsets (groups and flips resolved as MMD does) kept on one side of the face's centre
line (the head bone's x; +x is the character's left). Only vertex motion is copied; a
material or bone part of the base morph does not carry over, which the channel check
then sees on the render.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from renderer.framing import head_center_x
from renderer.model import Model, Morph, MorphKind
from renderer.morphs import MorphEvaluator, morph_index

SIDES = ("left", "right")
_SIDED = re.compile(r"^(.*)\[(left|right)\]$")


def sided_name(base: str, side: str) -> str:
    """The derived morph's name: ``base[side]``."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, not {side!r}")
    return f"{base}[{side}]"


def parse_sided(name: str) -> tuple[str, str | None]:
    """(base morph name, side) of a derived name; (name, None) for any other name."""
    match = _SIDED.match(name)
    return (match.group(1), match.group(2)) if match else (name, None)


def with_sided_morphs(model: Model, names: Iterable[str | None]) -> Model:
    """``model`` plus a derived vertex morph for every ``base[side]`` in ``names`` it lacks.

    A name the model already has (a real morph that happens to end in ``[left]``) is
    left alone; an unknown base morph raises ModelError like any unknown morph name.
    """
    wanted = [name for name in dict.fromkeys(n for n in names if n)
              if parse_sided(name)[1] and model.find_morph(name) < 0]
    if not wanted:
        return model
    evaluator = MorphEvaluator(model)
    side_of = np.sign(model.vertices.positions[:, 0] - head_center_x(model))
    derived = []
    for name in wanted:
        base, side = parse_sided(name)
        source = model.morphs[morph_index(model, base)]
        offsets = evaluator.evaluate({morph_index(model, base): 1.0}).vertex_offsets
        rows = np.flatnonzero((side_of == (1.0 if side == "left" else -1.0)) & np.abs(offsets).any(axis=1))
        derived.append(Morph(name=name, name_en=sided_name(source.name_en, side) if source.name_en else "",
                             panel=source.panel, kind=MorphKind.VERTEX, index=rows.astype(np.int32),
                             data=offsets[rows].astype(np.float32)))
    return replace(model, morphs=[*model.morphs, *derived])

"""Automatic annotation: one model file -> a suggested manifest record.

Composes the head bounds (``annotator.head``), the face's landmarks
(``annotator.face``), the morph roles measured on renders (``annotator.roles``) and the
channel check (``annotator.channels``). A file that does not load or is not a character
becomes a rejected record with the reason, so a batch over thousands of files never
stops; a character whose channels fail the check, whose textures are missing or whose
roles are uncertain is held for review (status ``review``) with every reason.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from annotator.binding import RoleError, bind_roles
from annotator.channels import SIZE, check_model
from annotator.effects import FaceProbe
from annotator.face import locate_face
from annotator.head import NotACharacter, suggest_head_bounds, top_without
from annotator.parts import worn_faces
from annotator.roles import RoleSuggestion, candidates, choose_roles
from annotator.views import indexed, morph_key
from manifests.record import Record
from manifests.store import model_sha256
from renderer.errors import ModelError
from renderer.model import Model

__all__ = ["suggest", "suggest_head_bounds", "suggest_roles", "relative_model_path"]


def relative_model_path(model_path: str | os.PathLike, models_root: str | os.PathLike) -> str:
    """The manifest's name for a model: relative to the root, forward slashes."""
    path, root = Path(model_path).resolve(), Path(models_root).resolve()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        raise ModelError(str(model_path), f"not inside the models root {root}") from None


def suggest_roles(model: Model, head: tuple[float, float]) -> RoleSuggestion:
    """Roles of every morph measured on face close-ups (one renderer, morphs addressed by index)."""
    from renderer.renderer import Renderer

    face = locate_face(model, *head)
    with Renderer(indexed(model), head_bounds=head, size=SIZE) as renderer:
        probe = FaceProbe(renderer, face)
        found, effects = candidates(model, probe, morph_key)
    roles, confidence, review = choose_roles(found)
    review = [problem for problem in [probe.visibility_problem()] if problem] + review
    counts = Counter(morph.name for morph in model.morphs)
    review += [f"{role} {name!r}: the model has {counts[name]} morphs of that name"
               for role, name in roles.items() if name and counts[name] > 1]
    return RoleSuggestion(roles, confidence, effects, review)


def suggest(model_path: str | os.PathLike, models_root: str | os.PathLike, group: str | None = None) -> Record:
    """A suggested record; ``group`` defaults to the model's first folder under the root."""
    name = relative_model_path(model_path, models_root)
    from renderer.loader import load_model  # deferred: the CLI's --help must not pay for it

    record = Record(model=name, group=group if group is not None else name.split("/")[0] if "/" in name else "")
    try:
        model = load_model(str(model_path))
        record.sha256 = model.sha256  # the loader hashed the file already
        top, chin, head_confidence = suggest_head_bounds(model)
        top = top_without(model, worn_faces(model, (top, chin)), top, chin)
    except (ModelError, NotACharacter) as error:
        record.sha256 = record.sha256 or model_sha256(model_path)
        record.status, record.reject_reason = "rejected", getattr(error, "reason", str(error))
        return record
    roles = suggest_roles(model, (top, chin))
    record.head = {"top": round(top, 4), "bottom": round(chin, 4)}
    record.morphs = roles.roles
    record.confidence = {"head": round(head_confidence, 3), **roles.confidence}
    record.review = review_reasons(model, (top, chin), roles)
    record.status = "review" if record.review else "ok"
    return record


def review_reasons(model: Model, head: tuple[float, float], roles: RoleSuggestion) -> list[str]:
    """Everything a person must see before this model ships: missing textures, uncertain roles, failed channels."""
    reasons = [f"texture file missing: {name}" for name in model.textures_missing]
    reasons += roles.review
    try:
        binding = bind_roles(roles.roles, model=model)
    except RoleError as error:
        return [*reasons, f"channels: {error}"]
    reasons += [f"channel check: {reason}" for reason in check_model(model, head, binding).reasons]
    return reasons

"""Automatic annotation: one model file -> a suggested manifest record.

Composes the head bounds (``annotator.head``) and the morph roles
(``annotator.roles``); a file that does not load or is not a character becomes a
rejected record with the reason, so a batch over thousands of files never stops.
"""
from __future__ import annotations

import os
from pathlib import Path

from annotator.head import NotACharacter, suggest_head_bounds
from annotator.roles import suggest_roles
from manifests.record import Record
from manifests.store import model_sha256
from renderer.errors import ModelError

__all__ = ["suggest", "suggest_head_bounds", "suggest_roles", "relative_model_path"]


def relative_model_path(model_path: str | os.PathLike, models_root: str | os.PathLike) -> str:
    """The manifest's name for a model: relative to the root, forward slashes."""
    path, root = Path(model_path).resolve(), Path(models_root).resolve()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        raise ModelError(str(model_path), f"not inside the models root {root}") from None


def suggest(model_path: str | os.PathLike, models_root: str | os.PathLike, group: str | None = None) -> Record:
    """A suggested record; ``group`` defaults to the model's first folder under the root."""
    name = relative_model_path(model_path, models_root)
    from renderer.loader import load_model  # deferred: the CLI's --help must not pay for it

    record = Record(model=name, group=group if group is not None else name.split("/")[0] if "/" in name else "")
    try:
        model = load_model(str(model_path))
        record.sha256 = model.sha256  # the loader hashed the file already
        top, chin, head_confidence = suggest_head_bounds(model)
    except (ModelError, NotACharacter) as error:
        record.sha256 = record.sha256 or model_sha256(model_path)
        record.status, record.reject_reason = "rejected", getattr(error, "reason", str(error))
        return record
    roles, confidences = suggest_roles(model, (top, chin))
    record.status = "ok"
    record.head = {"top": round(top, 4), "bottom": round(chin, 4)}
    record.morphs = roles
    record.confidence = {"head": round(head_confidence, 3), **confidences}
    return record

"""One manifest line (DESIGN.md, "Manifest record") and its validation.

A manifest is JSON lines; each line describes one model file. ``confidence`` is an
optional extra written by the suggester: ``{"head": float, role: float, ...}`` in
[0, 1], so that the labeling GUI can show the least certain suggestions first
(a null role with confidence 1.0 means no morph of the model does that).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

ROLES = ("mouth_open", "blink", "wink_left", "wink_right",
         "smile_blink", "smile_wink_left", "smile_wink_right")
STATUSES = ("ok", "review", "rejected", "unlabeled")  # review: suggested, held for a person (reasons in review)
SPLITS = ("train", "val", "test")  # a split names a shard file: a closed set, never a path
HEAD_LIMIT = 1e5  # |y| of head bounds; MMD models are tens of units tall
SOURCES = ("suggested", "annotated")
FIELDS = ("model", "sha256", "group", "split", "status", "reject_reason", "head", "morphs",
          "layers", "source", "confidence", "review")


class ManifestError(ValueError):
    """A manifest line is malformed; the message names the file and line."""

    def __init__(self, where: str, reason: str):
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.where, self.reason)  # picklable: the GUI's render process sends it back


@dataclass
class Record:
    """One model's annotation. ``head`` is model-space y of the head top and chin tip."""

    model: str
    sha256: str | None = None
    group: str = ""
    split: str | None = None
    status: str = "unlabeled"
    reject_reason: str | None = None
    head: dict[str, float] | None = None
    morphs: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(ROLES))
    layers: dict[str, str] = field(default_factory=dict)
    source: str = "suggested"
    confidence: dict[str, float] | None = None
    review: list[str] = field(default_factory=list)  # why a person must look before it ships

    @property
    def head_bounds(self) -> tuple[float, float] | None:
        """(top_y, chin_y) as the renderer takes them."""
        return None if self.head is None else (self.head["top"], self.head["bottom"])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for optional in ("confidence", "review"):
            if not data[optional]:
                del data[optional]
        data["morphs"] = {role: self.morphs.get(role) for role in ROLES}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Any, where: str = "<record>") -> Record:
        """Validate a decoded JSON object; every problem raises ManifestError(where)."""
        if not isinstance(data, dict):
            raise ManifestError(where, "a record must be a JSON object")
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise ManifestError(where, f"unknown field(s) {', '.join(unknown)}")
        _check_str(data.get("model"), "model", where, empty=False)
        record = cls(**data)
        record.validate(where)
        return record

    @classmethod
    def from_json(cls, line: str, where: str = "<record>") -> Record:
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise ManifestError(where, f"not valid JSON ({error.msg} at column {error.colno})") from None
        return cls.from_dict(data, where)

    def validate(self, where: str = "<record>") -> None:
        _check_str(self.model, "model", where, empty=False)
        if "\\" in self.model or self.model.startswith("/"):
            raise ManifestError(where, f"model {self.model!r} must be relative with forward slashes")
        if ".." in self.model.split("/"):
            raise ManifestError(where, f"model {self.model!r} must stay inside the models root (no '..')")
        for name in ("sha256", "split", "reject_reason"):
            _check_str(getattr(self, name), name, where, optional=True)
        if self.split is not None:
            _check_choice(self.split, "split", SPLITS, where)
        _check_str(self.group, "group", where)
        _check_choice(self.status, "status", STATUSES, where)
        _check_choice(self.source, "source", SOURCES, where)
        if self.status == "rejected" and not self.reject_reason:
            raise ManifestError(where, "a rejected record needs a reject_reason")
        if not isinstance(self.review, list) or not all(isinstance(r, str) for r in self.review):
            raise ManifestError(where, f"review must be a list of reasons, got {self.review!r}")
        _check_head(self.head, where)
        _check_morphs(self.morphs, where)
        _check_mapping(self.layers, "layers", where, str)
        if self.confidence is not None:
            _check_mapping(self.confidence, "confidence", where, (int, float))
            bad = [key for key, value in self.confidence.items() if not 0 <= value <= 1]
            if bad:
                raise ManifestError(where, f"confidence of {bad[0]!r} is outside [0, 1]")


def _check_str(value: Any, name: str, where: str, optional: bool = False, empty: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or (not empty and not value):
        raise ManifestError(where, f"{name} must be a {'non-empty ' if not empty else ''}string, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape cannot be written back
        raise ManifestError(where, f"{name} is not valid Unicode text: {value!r}") from None


def _check_choice(value: Any, name: str, choices: tuple[str, ...], where: str) -> None:
    if value not in choices:
        raise ManifestError(where, f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _check_mapping(value: Any, name: str, where: str, kind: type | tuple[type, ...]) -> None:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, kind) and not isinstance(v, bool) for k, v in value.items()):
        raise ManifestError(where, f"{name} must map names to {getattr(kind, '__name__', 'numbers')}, got {value!r}")


def _check_head(head: Any, where: str) -> None:
    if head is None:
        return
    if not isinstance(head, dict) or set(head) != {"top", "bottom"}:
        raise ManifestError(where, f"head must be null or {{\"top\", \"bottom\"}}, got {head!r}")
    _check_mapping(head, "head", where, (int, float))
    absurd = [key for key in ("top", "bottom") if not abs(head[key]) <= HEAD_LIMIT]  # also NaN, inf
    if absurd:
        raise ManifestError(where, f"head {absurd[0]} {head[absurd[0]]} is not a finite y within ±{HEAD_LIMIT:g}")
    if not head["top"] > head["bottom"]:
        raise ManifestError(where, f"head top {head['top']} must lie above bottom {head['bottom']}")


def _check_morphs(morphs: Any, where: str) -> None:
    if not isinstance(morphs, dict):
        raise ManifestError(where, f"morphs must be an object, got {morphs!r}")
    unknown = sorted(set(morphs) - set(ROLES))
    if unknown:
        raise ManifestError(where, f"unknown morph role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
    bad = [role for role, name in morphs.items() if name is not None and not isinstance(name, str)]
    if bad:
        raise ManifestError(where, f"morph role {bad[0]!r} must be a morph name or null")

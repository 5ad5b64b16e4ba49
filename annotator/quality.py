"""How close suggestions come to the careful labels of tests/labels/*.yaml (made from renders).

A label file maps a model path (relative to the models root) to its head bounds and
one category per morph (see tests/labels/README.md). A role's true answers are the
morphs of that category; a one-eye role of a model without winks is also right as the
one-eye half of a true blink (``まばたき[left]``). A wrong role counts as flagged when
its confidence is below the review threshold or the whole record is held for review.

``python -m annotator.quality tuning`` prints the table for the tuning labels;
``holdout`` for the held-out third.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from annotator.roles import REVIEW
from annotator.suggest import suggest
from manifests.record import ROLES, Record
from renderer.sided import sided_name

LABELS = Path(__file__).resolve().parent.parent / "tests" / "labels"
CATEGORY = {role: role for role in ROLES} | {"mouth_open": "mouth_a"}


@dataclass
class Score:
    model: str
    head_error: float | None  # largest of |top|, |chin| error, in % of the true head height
    right: int
    wrong: list[str]  # roles suggested wrongly
    missed: list[str]  # roles left empty though the model has them
    flagged: int  # wrong roles that carry a review flag
    status: str


def read_labels(*names: str, folder: Path = LABELS) -> dict[str, dict]:
    """Labels of the named sets ("tuning", "holdout"): every ``{name}*.yaml`` in the folder, merged."""
    labels: dict[str, dict] = {}
    for name in names:
        for path in sorted(folder.glob(f"{name}*.yaml")):
            labels.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return labels


def true_roles(label: dict) -> dict[str, set[str]]:
    """Per role, every morph name that fills it (derived one-eye blinks included where no wink exists)."""
    truth = {role: set() for role in ROLES}
    by_category: dict[str, set[str]] = {}
    for entry in (label.get("morphs") or {}).values():
        by_category.setdefault(entry[1], set()).add(str(entry[0]))
    for role in ROLES:
        truth[role] = set(by_category.get(CATEGORY[role], set()))
    for side in ("left", "right"):
        if not truth[f"wink_{side}"]:
            truth[f"wink_{side}"] = {sided_name(blink, side) for blink in truth["blink"]}
    return truth


def score(record: Record, label: dict) -> Score:
    truth = true_roles(label)
    right, wrong, missed, flagged = 0, [], [], 0
    for role in ROLES:
        got = record.morphs.get(role)
        if got is None:
            (missed.append(role) if truth[role] else None)
            right += not truth[role]
        elif got in truth[role]:
            right += 1
        else:
            wrong.append(role)
            flagged += record.status == "review" or (record.confidence or {}).get(role, 1.0) < REVIEW
    error = None
    head = label.get("head")
    if record.head and head:
        height = head["top"] - head["chin"]
        error = 100 * max(abs(record.head["top"] - head["top"]), abs(record.head["bottom"] - head["chin"])) / height
    return Score(record.model, error, right, wrong, missed, flagged, record.status)


def quality_table(models_root: str | os.PathLike, *sets: str) -> list[Score]:
    """Suggest every labelled model of ``sets`` and print the comparison, one line per model and a total."""
    scores = [score(suggest(Path(models_root) / model, models_root), label)
              for model, label in read_labels(*sets).items()]
    print(f"{'model':52s} {'status':7s} {'head %':>6s} {'right':>5s}  wrong (flagged) / missed")
    for s in scores:
        head = "-" if s.head_error is None else f"{s.head_error:.1f}"
        print(f"{s.model[:52]:52s} {s.status:7s} {head:>6s} {s.right:5d}  {','.join(s.wrong) or '-'} "
              f"({s.flagged}) / {','.join(s.missed) or '-'}")
    total = sum(s.right + len(s.wrong) + len(s.missed) for s in scores)
    wrong = sum(len(s.wrong) for s in scores)
    print(f"roles right {sum(s.right for s in scores)}/{total}, wrong {wrong} (flagged "
          f"{sum(s.flagged for s in scores)}), missed {sum(len(s.missed) for s in scores)}; head error "
          f"max {max((s.head_error for s in scores if s.head_error is not None), default=0):.1f}%")
    return scores


if __name__ == "__main__":
    root = os.environ.get("MMDSYNTH_SHARED_MODELS", LABELS.parent.parent.parent / "shared" / "models")
    quality_table(root, *(sys.argv[1:] or ["tuning"]))

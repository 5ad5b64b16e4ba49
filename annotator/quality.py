"""How close the suggester comes to careful manual annotation (manifests/shared_models.jsonl)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from annotator.suggest import suggest
from manifests.record import ROLES, Record
from manifests.store import read_manifest

TRUTH = Path(__file__).resolve().parent.parent / "manifests" / "shared_models.jsonl"


@dataclass
class Score:
    model: str
    head_error: float | None  # largest of |top|, |chin| error, in % of the true head height
    right: int
    wrong: int
    missed: int


def score(suggested: Record, truth: Record) -> Score:
    error = None
    if suggested.head and truth.head:
        height = truth.head["top"] - truth.head["bottom"]
        error = 100 * max(abs(suggested.head[k] - truth.head[k]) for k in ("top", "bottom")) / height
    pairs = [(suggested.morphs.get(role), truth.morphs.get(role)) for role in ROLES]
    right = sum(got == want for got, want in pairs)
    missed = sum(got is None and want is not None for got, want in pairs)
    return Score(truth.model, error, right, len(pairs) - right - missed, missed)


def quality_table(models_root: str | os.PathLike, truth: str | os.PathLike = TRUTH) -> list[Score]:
    """Suggest every annotated character in ``truth`` and print the comparison."""
    scores = [score(suggest(Path(models_root) / record.model, models_root), record)
              for record in read_manifest(truth) if record.status == "ok"]
    print(f"{'model':45s} {'head err %':>10s} {'right':>5s} {'wrong':>5s} {'missed':>6s}")
    for s in scores:
        head = "-" if s.head_error is None else f"{s.head_error:.1f}"
        print(f"{s.model:45s} {head:>10s} {s.right:5d} {s.wrong:5d} {s.missed:6d}")
    return scores


if __name__ == "__main__":
    quality_table(os.environ.get("MMDSYNTH_SHARED_MODELS", TRUTH.parent.parent.parent / "shared" / "models"))

"""Train / val / test assignment by the manifest's group, so no group spans two splits.

A group's split comes from a hash of (seed, group) placed against cumulative fractions:
stable across runs and machines, independent of which other groups exist. A record's
own ``split`` field, when set, wins for its whole group.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Protocol

from manifests.record import SPLITS
from renderer.errors import UserError

DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.9, "val": 0.05, "test": 0.05}


class SplitError(UserError, ValueError):
    """The manifest's explicit splits or the requested fractions cannot be honoured."""


class Grouped(Protocol):
    model: str
    group: str | None
    split: str | None


def group_of(record: Grouped) -> str:
    """A record without a group is a group of its own (its model path)."""
    return record.group or f"model:{record.model}"


def hashed_split(seed: int, group: str, fractions: Mapping[str, float] = DEFAULT_FRACTIONS) -> str:
    """The split a group falls in by its hash: a uniform number against the cumulative fractions."""
    check_fractions(fractions)
    digest = hashlib.sha256(f"{seed}\0{group}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64 * sum(fractions.values())
    total = 0.0
    for split, fraction in fractions.items():
        total += fraction
        if u < total:
            return split
    return next(reversed(list(fractions)))


def check_fractions(fractions: Mapping[str, float]) -> None:
    if not fractions or any(f < 0 for f in fractions.values()) or sum(fractions.values()) <= 0:
        raise SplitError(f"split fractions must be non-negative with a positive sum, got {dict(fractions)}")


def assign_splits(records: Iterable[Grouped], seed: int = 0,
                  fractions: Mapping[str, float] = DEFAULT_FRACTIONS) -> dict[str, str]:
    """Group -> split for every group of ``records``; explicit splits win, conflicting ones refuse."""
    explicit: dict[str, str] = {}
    groups: list[str] = []
    for record in records:
        group = group_of(record)
        groups.append(group)
        if record.split:
            if explicit.setdefault(group, record.split) != record.split:
                raise SplitError(f"group {group!r} is given two splits in the manifest: "
                                 f"{explicit[group]!r} and {record.split!r} (model {record.model})")
    return {group: explicit.get(group) or hashed_split(seed, group, fractions) for group in groups}


def parse_fractions(text: str) -> dict[str, float]:
    """'0.9,0.05,0.05' -> {'train': 0.9, 'val': 0.05, 'test': 0.05} (for the command line)."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise SplitError(f"split fractions must be numbers like 0.9,0.05,0.05, got {text!r}") from None
    if len(values) != len(SPLITS):
        raise SplitError(f"give {len(SPLITS)} split fractions (train,val,test), got {text!r}")
    fractions = dict(zip(SPLITS, values))
    check_fractions(fractions)
    return fractions

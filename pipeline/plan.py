"""A build's deterministic plan: which model and which pose indices go into which shard.

The plan is a pure function of the manifest records and the build settings (never of
jobs or backend), so any worker can render any shard and a resumed build redoes
exactly the shards that are missing.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from manifests.store import repeated_models
from pipeline.splits import DEFAULT_FRACTIONS, assign_splits, group_of
from renderer.errors import UserError

DEFAULT_SHARD_SIZE = 1000  # samples; ~0.5 GB of raw images per shard at 256 px, less compressed


class PlanError(UserError, ValueError):
    """The manifest and settings give nothing to build, or contradict each other."""


@dataclass(frozen=True)
class ModelSlice:
    """Poses ``start .. start + count`` of one model; sample ids ``first_id ..`` match them."""

    model: str  # path relative to the models root
    sha256: str | None  # as the manifest gives it
    key: str  # the sampling key (see sampling_key)
    head: tuple[float, float]  # model-space y of head top and chin
    morphs: Mapping[str, str | None]  # manifest roles
    layers: Mapping[str, Any]
    start: int
    count: int
    first_id: int


@dataclass(frozen=True)
class ShardPlan:
    split: str
    number: int
    slices: tuple[ModelSlice, ...]

    @property
    def file(self) -> str:
        return f"{self.split}-{self.number:05d}.h5"

    @property
    def samples(self) -> int:
        return sum(piece.count for piece in self.slices)


@dataclass(frozen=True)
class Plan:
    shards: list[ShardPlan]
    records_hash: str  # what of the manifest the plan used (part of the resume config)
    splits: dict[str, int] = field(default_factory=dict)  # split -> samples

    @property
    def samples(self) -> int:
        return sum(self.splits.values())

    @property
    def models(self) -> int:
        return len({piece.model for shard in self.shards for piece in shard.slices})


def pose_counts(models: int, poses: int | None, poses_per_model: int | None) -> list[int]:
    """Spread ``poses`` evenly over the models, the remainder going to the first ones."""
    if poses_per_model is not None:
        if poses_per_model < 1:
            raise PlanError(f"--poses-per-model must be at least 1, got {poses_per_model}")
        return [poses_per_model] * models
    if poses is None or poses < 1:
        raise PlanError(f"--poses must be at least 1, got {poses}")
    base, extra = divmod(poses, models)
    return [base + (i < extra) for i in range(models)]


def _pieces(count: int, shard_size: int) -> list[tuple[int, int]]:
    """(start, count) pieces of at most shard_size, as even as possible, for one model."""
    n = -(-count // shard_size)
    bounds = [count * k // n for k in range(n + 1)]
    return [(a, b - a) for a, b in zip(bounds, bounds[1:]) if b > a]


def _pack(split: str, slices: list[ModelSlice], shard_size: int) -> list[ShardPlan]:
    """Greedy packing in order: whole slices, up to shard_size samples per shard."""
    shards: list[list[ModelSlice]] = []
    filled = shard_size
    for piece in slices:
        if filled + piece.count > shard_size:
            shards.append([])
            filled = 0
        shards[-1].append(piece)
        filled += piece.count
    return [ShardPlan(split, number, tuple(group)) for number, group in enumerate(shards)]


def _usable(record: Any) -> bool:
    return record.status == "ok"


def _canonical(record: Any, split: str) -> dict[str, Any]:
    head = record.head or {}
    return {"model": record.model, "sha256": sampling_key(record), "split": split,
            "head": [head.get("top"), head.get("bottom")], "morphs": dict(record.morphs or {}),
            "layers": dict(record.layers or {})}


def sampling_key(record: Any) -> str:
    """The model's sampling key: its sha256, or (unhashed manifests) the hash of its path."""
    return record.sha256 or hashlib.sha256(record.model.encode()).hexdigest()


def make_plan(records: Sequence[Any], *, poses: int | None, poses_per_model: int | None = None,
              shard_size: int = DEFAULT_SHARD_SIZE, seed: int = 0,
              fractions: Mapping[str, float] = DEFAULT_FRACTIONS) -> Plan:
    """Records with status ok, sorted by path -> per split, shards of whole model slices."""
    if shard_size < 1:
        raise PlanError(f"--shard-size must be at least 1, got {shard_size}")
    repeated = repeated_models(records)
    if repeated:
        raise PlanError(f"the manifest lists these models more than once: {'; '.join(repeated)}")
    usable = sorted((r for r in records if _usable(r)), key=lambda r: r.model)
    if not usable:
        raise PlanError("the manifest has no record with status ok: nothing to build")
    missing_head = [r.model for r in usable if not r.head or r.head.get("top") is None
                    or r.head.get("bottom") is None]
    if missing_head:
        raise PlanError(f"records with status ok lack head bounds: {', '.join(missing_head)}")
    split_of_group = assign_splits(usable, seed, fractions)
    counts = pose_counts(len(usable), poses, poses_per_model)
    by_split: dict[str, list[ModelSlice]] = {}
    first_id = 0
    canonical = []
    for record, count in zip(usable, counts):
        split = split_of_group[group_of(record)]
        canonical.append(_canonical(record, split))
        for start, n in _pieces(count, shard_size) if count else []:
            by_split.setdefault(split, []).append(ModelSlice(
                model=record.model, sha256=record.sha256 or None, key=sampling_key(record),
                head=(float(record.head["top"]), float(record.head["bottom"])),
                morphs=dict(record.morphs or {}), layers=dict(record.layers or {}),
                start=start, count=n, first_id=first_id + start))
        first_id += count
    shards = [shard for split in sorted(by_split) for shard in _pack(split, by_split[split], shard_size)]
    records_hash = hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    splits = {split: sum(piece.count for piece in slices) for split, slices in sorted(by_split.items())}
    return Plan(shards=shards, records_hash=records_hash, splits=splits)

"""A shard's work in progress: small pieces committed as they are rendered, assembled at the end.

Shards stay the unit trainers read (about a thousand samples), but a worker commits its
renders in pieces of ``PIECE_POSES`` poses (a second or so of rendering), each a small
shard-format file written under a temporary name and renamed when complete, in
``shards/.{split}-NNNNN.h5.parts/``. A crash or Ctrl-C therefore loses at most the piece
being rendered; a resumed build keeps every committed piece of this config and renders
only the missing ones. Piece boundaries follow from the plan alone (model position in
the shard, pose offset in its slice), and every pixel from (seed, model, index), so a
resumed shard is the same shard, each sample written exactly once. When a shard's
pieces are all there they are assembled by copying their compressed chunks (no
re-encoding) into the shard, which is renamed into place before the pieces are removed.
The parent counts committed pieces for the progress bar.
"""
from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from manifests.schema import PoseSchema
from pipeline import shards

PIECE_POSES = 16  # poses per piece: 33 images at most, well under a second at 256 px on one core
PIECE_NAME = re.compile(r"m(\d{5})-(\d{7})-(\d+)\.h5")


@dataclass(frozen=True)
class Piece:
    """Poses ``start .. start + count`` of the shard's ``model``-th slice (the first piece holds the rest image)."""

    model: int
    start: int
    count: int

    @property
    def name(self) -> str:
        return f"m{self.model:05d}-{self.start:07d}-{self.count}.h5"

    @property
    def images(self) -> int:
        return 2 * self.count + (self.start == 0)


def slice_pieces(model: int, count: int) -> list[Piece]:
    """The pieces of one model slice of ``count`` poses (one piece, for the rest image, when count is 0)."""
    return [Piece(model, start, min(PIECE_POSES, count - start)) for start in range(0, max(count, 1), PIECE_POSES)]


def parts_dir(shard_path: str | Path) -> Path:
    shard_path = Path(shard_path)
    return shard_path.with_name(f".{shard_path.name}.parts")


def committed_images(shard_path: str | Path) -> int:
    """Images in the committed pieces of a shard in progress (0 when none): what progress counts."""
    try:
        names = [entry.name for entry in parts_dir(shard_path).iterdir()]
    except OSError:
        return 0
    matches = (PIECE_NAME.fullmatch(name) for name in names)
    return sum(2 * int(m[3]) + (int(m[2]) == 0) for m in matches if m)


class ShardWork:
    """The pieces of one shard on disk: which are committed, writing one, assembling the shard."""

    def __init__(self, path: str | Path, *, size: int, split: str, config: dict, layers: list[str] | None,
                 taxonomy: str | None = None, styles: list[str] | None = None,
                 schema: PoseSchema | None = None) -> None:
        self.path, self.parts = Path(path), parts_dir(path)
        self.size, self.split, self.config, self.layers = size, split, config, layers
        self.taxonomy, self.styles, self.schema = taxonomy, styles, schema

    def missing(self, pieces: Sequence[Piece]) -> list[Piece]:
        """The pieces without a readable file of this config and size (those are rendered again)."""
        return [piece for piece in pieces if not self._committed(piece)]

    def _committed(self, piece: Piece) -> bool:
        try:
            with shards.open_shard(self.parts / piece.name) as f:
                return (f.attrs.get("config") == shards.config_text(self.config)
                        and len(f["sample_id"]) == piece.count and len(f["rest"]) == (piece.start == 0))
        except (shards.DatasetError, OSError, KeyError):
            return False

    @contextmanager
    def piece(self, piece: Piece) -> Iterator[shards.ShardWriter]:
        """A writer for one piece; the piece exists under its name only once the block completes."""
        with shards.ShardWriter(self.parts / piece.name, size=self.size, models=int(piece.start == 0),
                                samples=piece.count, split=self.split, config=self.config, layers=self.layers,
                                taxonomy=self.taxonomy, styles=self.styles, durable=False,
                                schema=self.schema) as writer:
            yield writer

    def assemble(self, models: Sequence[Sequence[Piece]]) -> tuple[int, int]:
        """Write the shard from the committed pieces of ``models`` (each a model's pieces, in order),
        then remove the pieces. Returns (samples, models) written."""
        samples = sum(piece.count for pieces in models for piece in pieces)
        with shards.ShardWriter(self.path, size=self.size, models=len(models), samples=samples, split=self.split,
                                config=self.config, layers=self.layers, taxonomy=self.taxonomy,
                                styles=self.styles, schema=self.schema) as writer:
            first = 0
            for index, pieces in enumerate(models):
                for piece in pieces:
                    with shards.open_shard(self.parts / piece.name) as source:
                        _copy_piece(source, writer.file, index, first, piece.start == 0)
                    first += piece.count
        self.discard()
        return samples, len(models)

    def discard(self) -> None:
        shutil.rmtree(self.parts, ignore_errors=True)


def _copy_piece(source: Any, target: Any, model: int, first: int, with_model: bool) -> None:
    """One piece into the shard: model ``model`` (from its first piece), samples from row ``first``."""
    n = len(source["sample_id"])
    if with_model:
        for name in ("models/name", "models/sha256", "models/morphs"):
            target[name][model] = source[name][0]
        for name in shards.PER_MODEL_FIELDS:
            if name in source:
                _copy_chunks(source[name], target[name], model)
    target["pose"][first:first + n] = source["pose"][:]
    target["pose_mask"][first:first + n] = source["pose_mask"][:]
    target["sample_id"][first:first + n] = source["sample_id"][:]
    target["model_index"][first:first + n] = model
    for name in shards.VARIATION_FIELDS:
        if name in source:
            target[name][first:first + n] = source[name][:]
    for name in ("expression", "posed", "layers/expression", "layers/posed"):
        if name in source:
            _copy_chunks(source[name], target[name], first)


def _copy_chunks(source: Any, target: Any, first: int) -> None:
    """Every stored chunk of image field ``source`` (one image per chunk) into ``target`` from row
    ``first``, as stored, with the rows' checksums."""
    checksums = source.file[shards.checksum_field(source.name.lstrip("/"))][:]
    target.file[shards.checksum_field(target.name.lstrip("/"))][first:first + len(checksums)] = checksums
    cells = list(np.ndindex(*source.shape[1:-3]))  # the layer axis of layer stacks; () for plain images
    tail = (0, 0, 0)
    for row in range(source.shape[0]):
        for cell in cells:
            try:
                mask, raw = source.id.read_direct_chunk((row, *cell, *tail))
            except RuntimeError:  # never written: the target keeps its fill value (zeros) there too
                continue
            target.id.write_direct_chunk((first + row, *cell, *tail), raw, mask)

"""The HDF5 shard schema (format_version 2): writing shards atomically, opening them, the index.

The schema is documented in docs/architecture.md ("Shard schema"). Images are chunked one
image (or one layer image) per chunk so that a random read decompresses exactly what it
returns. A shard is written to ``.{name}.tmp`` beside its final path and renamed only after
a successful, fsynced close, so a crashed build never leaves a half shard under a real name.

Datasets are preallocated for the planned counts and resizable: when some models of a
shard fail, the build packs the survivors at the front and calls
``finish(samples=n, models=m)``, which truncates every dataset to those counts. Without
``finish`` a shard keeps the planned counts (unwritten images read as zeros).

Every image row (an image, or a layer stack) has its CRC-32 in ``crc32/{field}``, computed
from the pixels as rendered, so a reader returns the written pixels or fails; a row never
written has the checksum of zeros (the fill value). A shard's attributes name its split
and its own file name, so a shard copied over another is caught.
"""
from __future__ import annotations

import errno
import json
import os
import re
import sys
import zlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from manifests.record import SPLITS
from manifests.schema import PoseSchema, load_schema, schema_from_json
from manifests.store import write_text_atomic

FORMAT_VERSION = 2  # 2: crc32/* checksums and the "name" attribute
INDEX_NAME = "index.json"
SHARDS_DIR = "shards"

# Per-sample fields a reader can ask for; "rest" and "layers/rest" are per model and
# are looked up through model_index. Layer fields exist only in shards built with layers.
IMAGE_FIELDS = ("rest", "expression", "posed")
LAYER_FIELDS = ("layers/rest", "layers/expression", "layers/posed")
VARIATION_FIELDS = ("jitter", "style")  # only in builds with --jitter or --styles
FIELDS = (*IMAGE_FIELDS, "pose", "pose_mask", "model_index", "sample_id", *LAYER_FIELDS, *VARIATION_FIELDS)
PER_MODEL_FIELDS = ("rest", "layers/rest")
CHECKSUMS = "crc32"

STR = h5py.string_dtype("utf-8")


class DatasetError(Exception):
    """A dataset on disk is missing, damaged or lacks what was asked of it."""


class DiskFullError(DatasetError):
    """The disk holding the dataset is full: not the fault of any model, so the build stops."""

    exit_code = 3  # the command line's status for it (1: some models failed, 2: bad input)


def disk_full(error: BaseException) -> bool:
    """Whether ``error`` is the OS's "no space left" (h5py words it inside a RuntimeError at times)."""
    return getattr(error, "errno", None) == errno.ENOSPC or f"errno = {errno.ENOSPC}," in str(error)


# What h5py raises on a damaged file: OSError for data, RuntimeError/KeyError/ValueError
# when metadata (heaps, B-trees, object headers) is garbled.
H5_DAMAGE = (OSError, RuntimeError, KeyError, ValueError)


def compression() -> dict[str, Any]:
    """Filter options for image datasets, chosen with ``pipeline.bench.reader.compare_codecs``.

    Blosc/zstd level 5, no shuffle (the items are single bytes). On 256 x 256 renders of
    the demo character (exact-zero background) it stored 33.4 kB per image, the size of
    the same image as PNG (32.9 kB), and read 4,100 random images/s against PNG's 210
    decodes/s; Blosc/LZ4 read at 3,500/s but stored 68 kB, gzip-4 36 kB at 1,300/s,
    zstd-9 30 kB at 760/s. Same disk as PNG, twenty times the read rate.
    """
    return dict(hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.NOSHUFFLE))


def generator_version() -> str:
    try:
        return version("mmd-synth")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def config_text(config: dict[str, Any]) -> str:
    """A build config as a shard's ``config`` attribute stores it (what a resume compares)."""
    return json.dumps(config, sort_keys=True)


def checksum_field(name: str) -> str:
    """Where the per-row checksums of image field ``name`` live."""
    return f"{CHECKSUMS}/{name}"


def row_checksums(rows: np.ndarray) -> np.ndarray:
    """CRC-32 of each row's bytes (zlib releases the GIL, so reader threads check in parallel)."""
    return np.fromiter((zlib.crc32(np.ascontiguousarray(row).data) for row in rows), np.uint32, len(rows))


def stored_schema(f: h5py.File) -> PoseSchema:
    """The pose schema a shard was built with (``pose`` attribute ``definition``); shards from
    before schemas hold tha1's 6 numbers."""
    text = f["pose"].attrs.get("definition") if "pose" in f else None
    return schema_from_json(text) if text else load_schema("tha1")


def shard_path(root: str | os.PathLike[str], split: str, k: int) -> Path:
    """``DIR/shards/{split}-{k:05d}.h5``: the one place shard names are made."""
    return Path(root) / SHARDS_DIR / f"{split}-{k:05d}.h5"


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class ShardWriter:
    """One shard being written; use as a context manager.

    ``size`` is the image side (or ``(H, W)``); ``models`` and ``samples`` the planned
    counts; ``layers`` the layer names in draw order, or None for a shard without layers;
    ``taxonomy`` the name of their preset (an attribute of ``layers/names``); ``styles`` (the
    style names of a build with --jitter or --styles) adds ``jitter`` (N, 3) float32 (dx, dy,
    scale) and ``style`` (N,) uint8, an index into ``style.attrs["names"]``, per sample;
    ``schema`` the pose schema (tha1 by default), stored with the poses.
    ``durable=False`` skips the fsyncs (a build's pieces: a power cut may lose one, which
    the resume then finds unreadable and renders again; a crash of the process loses none).
    """

    def __init__(self, path: str | os.PathLike[str], *, size: int | tuple[int, int], models: int,
                 samples: int, split: str, config: dict[str, Any], layers: list[str] | None = None,
                 taxonomy: str | None = None, styles: list[str] | None = None, durable: bool = True,
                 schema: PoseSchema | None = None) -> None:
        self.path = Path(path)
        self.tmp_path = self.path.with_name(f".{self.path.name}.tmp")
        self.height, self.width = _size(size)
        self.models, self.samples = int(models), int(samples)
        self.split, self.config, self.layers = split, config, list(layers) if layers else None
        self.taxonomy, self.styles, self.schema = taxonomy, styles, schema or load_schema()
        self.durable = durable
        self.file: h5py.File | None = None

    def __enter__(self) -> ShardWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _quiet_h5py_deallocs()
        self.file = h5py.File(self.tmp_path, "w")
        try:
            self._create()
        except BaseException:
            self._discard()
            raise
        return self

    @property
    def _file(self) -> h5py.File:
        """The file being written, which exists only inside ``with``."""
        if self.file is None:
            raise ValueError(f"{self.path}: a ShardWriter writes only inside 'with'")
        return self.file

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is not None:
            self._discard()
            return
        try:
            self._file.flush()
            self._file.close()
            self.file = None
            if self.durable:
                _fsync(self.tmp_path)
            os.replace(self.tmp_path, self.path)
        except BaseException:
            self._discard()
            raise
        if self.durable:
            _fsync(self.path.parent)

    def _discard(self) -> None:
        """Close (as far as a full disk allows) and remove the temporary file."""
        try:
            if self.file is not None:
                self.file.close()
        except H5_DAMAGE:
            pass  # the close failed too (a full disk): the file goes anyway
        finally:
            self.file = None
            self.tmp_path.unlink(missing_ok=True)

    def _create(self) -> None:
        f, h, w = self._file, self.height, self.width
        f.attrs.update(format_version=FORMAT_VERSION, generator_version=generator_version(),
                       split=self.split, name=self.path.name, config=config_text(self.config))
        _images(f, "rest", (self.models,), h, w)
        _images(f, "expression", (self.samples,), h, w)
        _images(f, "posed", (self.samples,), h, w)
        pose = _array(f, "pose", (self.samples, self.schema.size), np.float32)
        pose.attrs.update(schema=self.schema.name, names=list(self.schema.names), definition=self.schema.to_json())
        _array(f, "pose_mask", (self.samples, self.schema.size), bool)
        _array(f, "model_index", (self.samples,), np.int32)
        _array(f, "sample_id", (self.samples,), np.int64)
        for name in ("models/name", "models/sha256", "models/morphs"):
            _array(f, name, (self.models,), STR)
        if self.layers:
            n_layers = len(self.layers)
            names = f.create_dataset("layers/names", data=np.array(self.layers, dtype=object), dtype=STR)
            names.attrs.update(draw_order="back to front", taxonomy=self.taxonomy or "custom")
            _images(f, "layers/rest", (self.models, n_layers), h, w)
            _images(f, "layers/expression", (self.samples, n_layers), h, w)
            _images(f, "layers/posed", (self.samples, n_layers), h, w)
        if self.styles:
            _array(f, "jitter", (self.samples, 3), np.float32)
            _array(f, "style", (self.samples,), np.uint8)
            f["style"].attrs["names"] = list(self.styles)

    def add_model(self, i: int, name: str, sha256: str, morphs_json: str, rest: np.ndarray,
                  rest_layers: np.ndarray | None = None) -> None:
        """Model ``i`` of this shard: its identity, what its morph channels used, its rest image(s)."""
        f = self._file
        f["models/name"][i] = name
        f["models/sha256"][i] = sha256
        f["models/morphs"][i] = morphs_json
        self._put("rest", i, np.asarray(rest)[None])
        self._layers("layers/rest", i, rest_layers if rest_layers is None else rest_layers[None])

    def add_samples(self, start: int, pose: np.ndarray, model_index: np.ndarray,
                    sample_id: np.ndarray, expression: np.ndarray, posed: np.ndarray,
                    expression_layers: np.ndarray | None = None,
                    posed_layers: np.ndarray | None = None, pose_mask: np.ndarray | None = None) -> None:
        """Samples ``start .. start+n``, written as contiguous slices (one HDF5 call per dataset);
        ``pose_mask`` (n, P) says which parameters each image can show (default: all)."""
        f, stop = self._file, start + len(pose)
        f["pose"][start:stop] = np.asarray(pose, np.float32)
        f["pose_mask"][start:stop] = np.ones(np.shape(pose), bool) if pose_mask is None else pose_mask
        f["model_index"][start:stop] = np.asarray(model_index, np.int32)
        f["sample_id"][start:stop] = np.asarray(sample_id, np.int64)
        self._put("expression", start, expression)
        self._put("posed", start, posed)
        self._layers("layers/expression", start, expression_layers)
        self._layers("layers/posed", start, posed_layers)

    def add_variation(self, start: int, jitter: np.ndarray, style: np.ndarray) -> None:
        """Per sample from ``start`` on: its (dx, dy, scale) framing jitter and its style (index into ``styles``)."""
        self._file["jitter"][start:start + len(jitter)] = np.asarray(jitter, np.float32)
        self._file["style"][start:start + len(style)] = np.asarray(style, np.uint8)

    def _layers(self, name: str, start: int, images: np.ndarray | None) -> None:
        if (images is None) != (self.layers is None):
            wanted = "without" if self.layers is None else "with"
            raise ValueError(f"{self.path}: {name} given or missing for a shard {wanted} layers")
        if images is not None:
            self._put(name, start, images)

    def _put(self, name: str, start: int, images: np.ndarray) -> None:
        """Image rows and their checksums."""
        self._file[name][start:start + len(images)] = images
        self._file[checksum_field(name)][start:start + len(images)] = row_checksums(images)

    def finish(self, *, samples: int, models: int) -> None:
        """Truncate to the counts actually written (models that failed leave no trace)."""
        for name, dataset in _datasets(self.file):
            if dataset.maxshape[0] is not None:  # layers/names: fixed
                continue
            per_model = name.removeprefix(f"{CHECKSUMS}/") in PER_MODEL_FIELDS or name.startswith("models/")
            dataset.resize(models if per_model else samples, axis=0)
        self.models, self.samples = models, samples


def _quiet_h5py_deallocs() -> None:
    """Stop h5py objects of a file that could not be written (a full disk) from printing
    tracebacks when they are collected, whenever that is: the build reports the one error
    that matters. Cython prints them through ``sys.excepthook`` (the traceback) and
    ``sys.unraisablehook`` (the "Exception ignored in" line); both are filtered, for h5py's
    own deallocation errors only, once per process that writes shards."""
    if getattr(sys.excepthook, "quiet_h5py", False):
        return
    excepthook, unraisablehook = sys.excepthook, sys.unraisablehook

    def from_h5py(error: BaseException | None, trace: TracebackType | None) -> bool:
        while trace is not None and trace.tb_next is not None:
            trace = trace.tb_next
        return isinstance(error, H5_DAMAGE) and trace is not None and \
            trace.tb_frame.f_code.co_filename.startswith("h5py/")

    def on_exception(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        if not from_h5py(error, trace):
            excepthook(kind, error, trace)

    def on_unraisable(unraisable: Any) -> None:
        if not (isinstance(unraisable.object, str) and unraisable.object.startswith("h5py.")):
            unraisablehook(unraisable)

    on_exception.quiet_h5py = True  # type: ignore[attr-defined]
    sys.excepthook, sys.unraisablehook = on_exception, on_unraisable


def _images(f: h5py.File, name: str, lead: tuple[int, ...], h: int, w: int) -> None:
    shape = (*lead, h, w, 4)
    chunks = (*(1,) * len(lead), h, w, 4)
    f.create_dataset(name, shape=shape, maxshape=(None, *shape[1:]), dtype=np.uint8,
                     chunks=chunks, **compression())
    unwritten = row_checksums(np.zeros((1, *shape[1:]), np.uint8))[0]  # unwritten rows read as zeros
    f.create_dataset(checksum_field(name), shape=lead[:1], maxshape=(None,), dtype=np.uint32, chunks=True,
                     fillvalue=unwritten)


def _array(f: h5py.File, name: str, shape: tuple[int, ...], dtype: Any) -> h5py.Dataset:
    return f.create_dataset(name, shape=shape, maxshape=(None, *shape[1:]), dtype=dtype, chunks=True)


def _datasets(f: h5py.File) -> list[tuple[str, h5py.Dataset]]:
    found: list[tuple[str, h5py.Dataset]] = []
    f.visititems(lambda name, item: found.append((name, item)) if isinstance(item, h5py.Dataset) else None)
    return found


def _fsync(path: Path) -> None:
    """Make a file's bytes, or a directory's renames, durable (skipped where a directory cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except IsADirectoryError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_shard(path: str | os.PathLike[str], *, cache_bytes: int | None = None) -> h5py.File:
    """Open a shard read-only; anything but a shard of a known format is a ``DatasetError``.

    ``cache_bytes`` sizes h5py's per-dataset chunk cache (default: h5py's 1 MiB).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: shard file not found")
    options = {} if cache_bytes is None else {"rdcc_nbytes": cache_bytes, "rdcc_nslots": 521}
    try:
        f = h5py.File(path, "r", **options)
    except H5_DAMAGE as error:
        raise DatasetError(f"{path}: not an HDF5 shard ({error})") from None
    try:
        found = f.attrs.get("format_version")
    except H5_DAMAGE as error:
        f.close()
        raise DatasetError(f"{path}: damaged ({error})") from None
    if found != FORMAT_VERSION:
        f.close()
        raise DatasetError(f"{path}: shard format_version {found}, this reader knows {FORMAT_VERSION}")
    return f


def read_index(root: str | os.PathLike[str]) -> dict[str, Any]:
    """The dataset's ``index.json``, checked for the format version this code reads."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset directory not found")
    path = root / INDEX_NAME
    if not path.is_file():
        raise DatasetError(f"{path}: index not found (not a built dataset, or the build never finished a shard)")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: unreadable index ({error})") from None
    if not isinstance(index, dict) or index.get("format_version") != FORMAT_VERSION:
        found = index.get("format_version") if isinstance(index, dict) else None
        raise DatasetError(f"{path}: format_version {found}, this reader knows {FORMAT_VERSION}")
    _check_entries(path, index.get("shards"))
    return index


SHARD_FILE = re.compile(rf"{SHARDS_DIR}/({'|'.join(SPLITS)})-\d{{5}}\.h5")


def _check_entries(path: Path, entries: Any) -> None:
    """Every shard entry names a file inside ``shards/``, of its own split, once: an index
    cannot send a reader (or verify) to a file elsewhere, or to one shard twice."""
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise DatasetError(f"{path}: 'shards' must be a list of objects")
    seen: set[str] = set()
    for entry in entries:
        name, split = entry.get("file"), entry.get("split")
        match = SHARD_FILE.fullmatch(name) if isinstance(name, str) else None
        if match is None or match.group(1) != split:
            raise DatasetError(f"{path}: shard entry {name!r} (split {split!r}) is not "
                               f"{SHARDS_DIR}/{{split}}-NNNNN.h5 of one of {', '.join(SPLITS)}")
        if name in seen:
            raise DatasetError(f"{path}: shard {name} is listed twice")
        seen.add(name)


def write_index(root: str | os.PathLike[str], index: dict[str, Any]) -> None:
    """Replace ``index.json`` atomically: a reader sees the old index or the new, never half."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(root / INDEX_NAME, json.dumps(index, indent=1, sort_keys=True, ensure_ascii=False))

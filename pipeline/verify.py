"""``inspect`` and ``verify`` of a built dataset: what is in it, and whether every shard is sound.

Verification re-reads every image, so it catches what a crash, a full disk or a bug
could leave behind: unreadable or truncated files, images that do not match their
checksums, wrong shapes, empty images, colour in the background (alpha 0 must mean
(0, 0, 0, 0)), poses out of range, duplicate sample ids, counts, splits or shard names
that disagree with ``index.json``.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from manifests.schema import PoseSchema
from pipeline import shards

BLOCK = 64  # images read at a time: bounds memory on any shard size


def inspect(root: str | os.PathLike) -> dict[str, Any]:
    """Counts per split and per model, bytes on disk, config and failures of a dataset."""
    root = Path(root)
    index = shards.read_index(root)
    per_model: Counter[str] = Counter()
    total_bytes = 0
    for entry in index["shards"]:
        path = root / entry["file"]
        total_bytes += path.stat().st_size if path.is_file() else 0
        with shards.open_shard(path) as f:
            names = f["models/name"].asstr()[:]
            per_model.update(dict(zip(names, np.bincount(f["model_index"][:], minlength=len(names)).tolist())))
    samples = sum(index["splits"].values())
    return {"root": str(root), "splits": index["splits"], "samples": samples,
            "shards": len(index["shards"]), "models": dict(sorted(per_model.items())),
            "bytes": total_bytes, "bytes_per_sample": total_bytes / samples if samples else 0.0,
            "config": index["config"], "failed": index.get("failed", [])}


def verify(root: str | os.PathLike, composites: list | None = None) -> list[str]:
    """Every defect found, one line each naming the file; empty when the dataset is sound.

    ``composites``, when given, receives the composite check's figures of shards with layers
    (``pipeline.layers.CompositeFigures``, one per image field and shard).
    """
    root = Path(root)
    index = shards.read_index(root)
    size = index["config"].get("size")
    composites = [] if composites is None else composites
    defects: list[str] = []
    ids: list[np.ndarray] = []
    listed = set()
    splits: Counter[str] = Counter()
    for entry in index["shards"]:
        listed.add(entry["file"])
        splits[entry["split"]] += entry["samples"]
        defects += _check_shard(root / entry["file"], entry, size, ids, composites)
    if {k: v for k, v in splits.items() if v} != {k: v for k, v in index["splits"].items() if v}:
        defects.append(f"{root / shards.INDEX_NAME}: splits {index['splits']} disagree with its shards {dict(splits)}")
    for path in sorted((root / shards.SHARDS_DIR).glob("*.h5")):
        if path.relative_to(root).as_posix() not in listed:
            defects.append(f"{path}: shard file not listed in {shards.INDEX_NAME}")
    all_ids = np.concatenate([np.zeros(0, np.int64), *ids])
    unique, counts = np.unique(all_ids, return_counts=True)
    if (counts > 1).any():
        repeated = unique[counts > 1]
        defects.append(f"{root}: {len(repeated)} sample ids occur more than once (first: {repeated[0]})")
    return defects


def _check_shard(path: Path, entry: dict[str, Any], size: int | None, ids: list[np.ndarray],
                 composites: list) -> list[str]:
    try:
        with shards.open_shard(path) as f:
            return _check_open_shard(f, path, entry, size, ids, composites)
    except shards.DatasetError as error:
        return [str(error)]
    except shards.H5_DAMAGE as error:  # damage h5py meets while reading
        return [f"{path}: unreadable ({error})"]


def _check_open_shard(f: h5py.File, path: Path, entry: dict[str, Any], size: int | None,
                      ids: list[np.ndarray], composites: list) -> list[str]:
    image_fields = [*shards.IMAGE_FIELDS, *(shards.LAYER_FIELDS if "layers" in f else ())]
    missing = [name for name in ("pose", "model_index", "sample_id", "models/name", "models/sha256",
                                 "models/morphs", *image_fields, *map(shards.checksum_field, image_fields))
               if name not in f]
    if missing:
        return [f"{path}: missing dataset(s) {', '.join(missing)}"]
    n, m = len(f["sample_id"]), len(f["rest"])
    try:
        schema = shards.stored_schema(f)
    except (ValueError, KeyError, TypeError) as error:
        return [f"{path}: pose schema unreadable ({error})"]
    defects = _shapes(f, path, n, m, size, schema.size)
    if defects:
        return defects
    if (n, m) != (entry["samples"], entry["models"]):
        defects.append(f"{path}: holds {n} samples of {m} models, index.json says "
                       f"{entry['samples']} of {entry['models']}")
    if f.attrs.get("split") != entry["split"]:
        defects.append(f"{path}: split attribute {f.attrs.get('split')!r}, index.json says {entry['split']!r}")
    if f.attrs.get("name") != path.name:
        defects.append(f"{path}: holds shard {f.attrs.get('name')!r} (a copy of another shard?)")
    defects += _check_values(f, path, m, schema)
    ids.append(f["sample_id"][:])
    for name in image_fields:
        defects += _check_images(f, path, name, empty_allowed=name in shards.LAYER_FIELDS)
    if "layers" in f:
        from pipeline.layers import check_shard, composite_defects

        figures = check_shard(f, str(path))
        composites += figures
        defects += composite_defects(figures)
    return defects


def _shapes(f: h5py.File, path: Path, n: int, m: int, size: int | None, pose_size: int) -> list[str]:
    h, w = (size, size) if size else f["posed"].shape[1:3]
    expected = {"rest": ((m, h, w, 4), np.uint8), "expression": ((n, h, w, 4), np.uint8),
                "posed": ((n, h, w, 4), np.uint8), "pose": ((n, pose_size), np.float32),
                "model_index": ((n,), np.int32), "sample_id": ((n,), np.int64)}
    expected.update({name: ((m,), None) for name in ("models/name", "models/sha256", "models/morphs")})
    if "pose_mask" in f:  # datasets built before pose schemas have none
        expected["pose_mask"] = ((n, pose_size), np.bool_)
    if "layers" in f:
        n_layers = len(f["layers/names"])
        expected.update({name: ((rows, n_layers, h, w, 4), np.uint8)
                         for name, rows in zip(shards.LAYER_FIELDS, (m, n, n))})
    expected.update({shards.checksum_field(name): (shape[:1], np.uint32)
                     for name, (shape, _) in list(expected.items())
                     if name in shards.IMAGE_FIELDS + shards.LAYER_FIELDS})
    return [f"{path}: {name} is {f[name].shape} {f[name].dtype}, expected {shape} {dtype or 'str'}"
            for name, (shape, dtype) in expected.items()
            if f[name].shape != shape or (dtype is not None and f[name].dtype != dtype)]


def _check_values(f: h5py.File, path: Path, m: int, schema: PoseSchema) -> list[str]:
    defects = []
    pose = f["pose"][:]
    bad = ~np.isfinite(pose).all(axis=1)
    bad |= ((pose < schema.vector("low")) | (pose > schema.vector("high"))).any(axis=1)
    if bad.any():
        defects.append(f"{path}: {int(bad.sum())} poses out of range (first at row {int(np.argmax(bad))})")
    if "pose_mask" in f:
        shown = f["pose_mask"][:]
        unshown = (~shown & (pose != schema.vector("default"))).any(axis=1)
        if unshown.any():
            defects.append(f"{path}: {int(unshown.sum())} poses give a masked parameter a value other than its "
                           f"default (first at row {int(np.argmax(unshown))})")
    model_index = f["model_index"][:]
    if len(model_index) and (model_index.min() < 0 or model_index.max() >= m):
        defects.append(f"{path}: model_index outside [0, {m})")
    for index, (name, text) in enumerate(zip(f["models/name"].asstr()[:], f["models/morphs"].asstr()[:])):
        try:
            morphs = json.loads(text)
        except json.JSONDecodeError:
            defects.append(f"{path}: models/morphs holds invalid JSON {text[:40]!r}")
            break
        if morphs == {}:  # nothing drives the pose (a Live2D import): every pose must be the rest pose
            if np.any(pose[model_index == index]):
                defects.append(f"{path}: {name}: poses other than the rest pose, but no morph drives them")
            continue
        defects += _channel_defects(path, name, morphs)
    return defects


def _channel_defects(path: Path, name: str, morphs: Any) -> list[str]:
    """A model whose pose channels were not shown, on its renders, to do what they say is a defect."""
    check = morphs.get("check") if isinstance(morphs, dict) else None
    if not isinstance(check, dict):
        return [f"{path}: {name}: no channel check recorded (built before checks existed: rebuild)"]
    if check.get("ok") is not True:
        return [f"{path}: {name}: channel check failed: {'; '.join(check.get('reasons', []))}"]
    bound = morphs.get("morphs", morphs)  # before pose schemas: the channels' morphs at the top level
    checked = [bound.get(channel) for channel in check.get("channels", {})]
    if len(set(checked)) < len(checked):
        return [f"{path}: {name}: two pose channels drive the same morph"]
    return []


def _check_images(f: h5py.File, path: Path, name: str, empty_allowed: bool) -> list[str]:
    """Checksums, empty images and background colour, read ``BLOCK`` rows (images or layer
    stacks) at a time; a block h5py cannot decode is read row by row to name the bad rows."""
    dataset, checksums = f[name], f[shards.checksum_field(name)][:]
    found: dict[str, list[np.ndarray]] = {"unreadable": [], "damaged": [], "colour": [], "empty": []}
    for lo in range(0, len(dataset), BLOCK):
        rows = np.arange(lo, min(lo + BLOCK, len(dataset)))
        images, unreadable = _read_block(dataset, rows)
        readable = np.setdiff1d(rows, unreadable)
        images = images[readable - lo]
        uncovered = images[..., 3] == 0
        found["unreadable"].append(unreadable)
        found["damaged"].append(readable[shards.row_checksums(images) != checksums[readable]])
        found["colour"].append(readable[(uncovered[..., None] & (images[..., :3] != 0))
                                        .reshape(len(images), -1).any(axis=1)])
        found["empty"].append(readable[uncovered.reshape(len(images), -1).all(axis=1)])
    what = {"unreadable": "cannot be decoded", "damaged": "do not match their checksums",
            "colour": "have colour where alpha is 0", "empty": "are empty, alpha all zero"}
    defects = []
    for kind, parts in found.items():
        bad = np.concatenate([np.zeros(0, np.int64), *parts])
        if len(bad) and not (kind == "empty" and empty_allowed):
            defects.append(f"{path}: {name}: {len(bad)} images {what[kind]} (first at row {int(bad[0])})")
    return defects


def _read_block(dataset: h5py.Dataset, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``dataset[rows]`` and the rows among them that cannot be decoded (left as zeros)."""
    try:
        return dataset[rows[0]:rows[-1] + 1], np.zeros(0, np.int64)
    except OSError:
        images = np.zeros((len(rows), *dataset.shape[1:]), dataset.dtype)
        unreadable = []
        for k, row in enumerate(rows.tolist()):
            try:
                images[k] = dataset[row]
            except OSError:
                unreadable.append(row)
        return images, np.array(unreadable, np.int64)

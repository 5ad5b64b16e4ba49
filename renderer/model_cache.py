"""A parsed Model as a file that cannot run code: one ``.npz`` of plain arrays plus JSON.

The disk cache (``loader``) used to pickle models, so anyone who could write a file into
the cache folder could run code in every process that loaded a model. Here the arrays
are read with ``allow_pickle=False`` and everything else is JSON naming only the
dataclasses and enums of ``renderer.model``; a planted or damaged file is a ValueError.
"""
from __future__ import annotations

import dataclasses
import io
import json
from enum import IntEnum
from typing import Any

import numpy as np

from renderer import model as model_module

CLASSES = {cls.__name__: cls for cls in (model_module.Vertices, model_module.Materials, model_module.IKLink,
                                         model_module.IKChain, model_module.Bones, model_module.Morph,
                                         model_module.Model)}
ENUMS = {cls.__name__: cls for cls in (model_module.Deform, model_module.MaterialFlag, model_module.BoneFlag,
                                       model_module.MorphKind)}
DESCRIPTION = "model.json"  # the array holding the JSON (UTF-8 bytes)


def dump(model: model_module.Model, version: str) -> bytes:
    """The file's bytes: every array of ``model`` by name, and its structure as JSON."""
    arrays: dict[str, np.ndarray] = {}
    text = json.dumps({"version": version, "model": _encode(model, arrays)})
    arrays[DESCRIPTION] = np.frombuffer(text.encode("utf-8"), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def load(file: Any, version: str) -> model_module.Model | None:
    """The model in ``file`` (a path or file object); None when another loader version wrote it.

    Raises ValueError (or OSError) for anything that is not such a file.
    """
    with np.load(file, allow_pickle=False) as arrays:
        description = json.loads(bytes(arrays[DESCRIPTION]).decode("utf-8"))
        if description.get("version") != version:
            return None
        model = _decode(description["model"], arrays)
    if not isinstance(model, model_module.Model):
        raise ValueError("the cache file does not hold a Model")
    return model


def _encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"@array": key}
    if isinstance(value, IntEnum):
        return {"@enum": type(value).__name__, "value": int(value)}
    if dataclasses.is_dataclass(value):
        return {"@class": type(value).__name__,
                "fields": {f.name: _encode(getattr(value, f.name), arrays) for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return {"@dict": [[_encode(k, arrays), _encode(v, arrays)] for k, v in value.items()]}
    if isinstance(value, list):
        return [_encode(item, arrays) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise TypeError(f"cannot cache a {type(value).__name__}")


def _decode(value: Any, arrays: Any) -> Any:
    if isinstance(value, list):
        return [_decode(item, arrays) for item in value]
    if not isinstance(value, dict):
        return value
    if "@array" in value:
        return arrays[value["@array"]]
    if "@enum" in value:
        return ENUMS[value["@enum"]](value["value"])
    if "@dict" in value:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in value["@dict"]}
    if value.get("@class") in CLASSES:
        return CLASSES[value["@class"]](**{k: _decode(v, arrays) for k, v in value["fields"].items()})
    raise ValueError(f"unknown entry in a cached model: {sorted(value)[:3]}")

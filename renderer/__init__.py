"""Model files -> render-ready arrays -> posed RGBA images. Knows nothing of datasets.

The public API is imported lazily so that ``import renderer`` stays cheap for the
CLI and for worker processes that only need the loader.
"""
from __future__ import annotations

import importlib
from typing import Any

from renderer.errors import ModelError
from renderer.model import Deform, Model, MorphKind

_LAZY = {
    "load_model": "renderer.loader",
    "Renderer": "renderer.renderer",
    "Drivers": "renderer.posing",
    "demo_model": "renderer.demo",
}

__all__ = ["ModelError", "Model", "Deform", "MorphKind", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'renderer' has no attribute {name!r}")

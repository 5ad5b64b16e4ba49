"""Which vertices a model's own morphs move: where its eyes and mouth are, by its author's word.

MMD sorts morphs into panels (1 eyebrow, 2 eye, 3 mouth, 4 other). The vertices that
the morphs of one panel move most mark that feature, whatever the morphs are called.
"""
from __future__ import annotations

import numpy as np

from renderer.model import Model, MorphKind
from renderer.morphs import MorphEvaluator

EYE_PANEL, MOUTH_PANEL = 2, 3
MOVED = 0.3  # a vertex takes part when it moves this fraction of its morph's largest motion


def moved_by_panel(model: Model, panel: int) -> np.ndarray:
    """(N,) bool: vertices that some vertex or group morph of ``panel`` moves (groups through members)."""
    evaluator = MorphEvaluator(model)
    moved = np.zeros(len(model.vertices), bool)
    for index, morph in enumerate(model.morphs):
        if morph.panel != panel or morph.kind not in (MorphKind.VERTEX, MorphKind.GROUP):
            continue
        size = np.linalg.norm(evaluator.evaluate({index: 1.0}).vertex_offsets, axis=1)
        if size.max() > 0:
            moved |= size >= MOVED * size.max()
    return moved

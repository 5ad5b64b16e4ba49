"""Parts, not materials: each face of a model gets its layer from the part it belongs to.

A material often spans two classes and two depths: one hair material holds the bangs
and the back hair, a face material holds lids, lashes, brows and lips, an eye material
the eye whites, irides and highlights. A material's *kind* (:mod:`annotator.layers`:
its name, else its geometry) is refined per face, with:

- connected components: faces of one material that share a vertex position (UV seams
  welded) form a part and are decided together where they agree;
- position against the head: hair (and, in a material that names do not place, the
  non-skin parts that move with the head) in front of the skull centre is front hair, behind it
  back hair (per face where a part has both, so a hair cap that wraps the head splits);
  skin above the chin is face, between chin and neck bone neck, below it body; worn
  things (ribbons, ornaments) moving with the head are headwear, else neckwear near the
  neck and topwear below;
- the morphs that move them: in a face material, dark or non-skin faces that eye morphs
  (panel 2) move are lids and lashes (``eyelash``, drawn over the irides so that a
  closed lid covers the eye), those brow morphs move are ``eyebrow``, those mouth
  morphs move are ``mouth`` (the skin around the mouth stays face);
- texture colour (diffuse times the texel at each corner): in an eye material, white
  parts behind the rest are the eye whites; dark parts eye morphs move are lashes.

Manifest overrides keep a whole material in their layer.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from annotator.layers import (BODY, DEFAULT, HAIR, SKIN, WEAR, Assignment, Geometry, LayerConfig, assign_layers,
                              corner_colours, corner_materials, skin_coloured)
from renderer.model import Model, MorphKind

MOVED = 0.01  # a morph moves a vertex by this fraction of the head height
MAJORITY = 0.8  # a part takes one side when this share of its faces is on it
PANELS = {"eyebrow": 1, "eye": 2, "mouth": 3}  # PMD/PMX morph panels
DARK = 0.35  # luminance below which a face is dark (lashes, brows, lip lines)
WHITE = 0.75  # every channel above this: white (eye whites, highlights)


def face_layers(model: Model, overrides: Mapping[str, str] | None = None, config: LayerConfig = DEFAULT,
                head_bounds: tuple[float, float] | None = None) -> np.ndarray:
    """(F,) int: the index into ``config.names`` of every face of ``model`` (see the module docstring)."""
    geometry = Geometry(model, head_bounds)
    assignments = assign_layers(model, overrides, config, head_bounds=geometry.bounds)
    faces = _Faces(model, geometry)
    kinds = np.full(len(model.indices), "objects", dtype=object)
    for assignment in assignments:
        rows = np.flatnonzero(faces.material == assignment.material)
        if len(rows):
            kinds[rows] = _part_kinds(assignment, rows, faces, geometry)
    lookup = {kind: config.names.index(config.layer(kind)) for kind in set(kinds)}
    return np.array([lookup[kind] for kind in kinds], np.int64) if len(kinds) else np.zeros(0, np.int64)


def _part_kinds(assignment: Assignment, rows: np.ndarray, faces: _Faces, geometry: Geometry) -> np.ndarray:
    """Kinds (canonical, or the override's layer) of the faces ``rows`` of one material."""
    kind = assignment.kind
    if kind is None:
        return np.full(len(rows), assignment.layer, dtype=object)
    if kind == HAIR:
        return _hair_kinds(rows, faces, geometry)
    if assignment.decided == "geometry" and kind in ("topwear", "headwear", "objects"):
        on_head = faces.by_part(rows, faces.head[rows] >= 0.5) & ~faces.skin[rows]
        return np.where(on_head, _hair_kinds(rows, faces, geometry), kind)
    if kind in (SKIN, BODY, "face", "neck"):
        return _skin_kinds(kind, rows, faces, geometry)
    if kind == WEAR:
        on_head = faces.by_part(rows, faces.head[rows] >= 0.5)
        neck = geometry.neck_y if geometry.neck_y is not None else -np.inf
        near_neck = faces.by_part(rows, faces.centroid[rows, 1] >= neck - faces.height * 0.25)
        return np.where(on_head, "headwear", np.where(near_neck, "neckwear", "topwear"))
    if kind == "irides":
        return _eye_kinds(rows, faces)
    return np.full(len(rows), kind, dtype=object)


def _hair_kinds(rows: np.ndarray, faces: _Faces, geometry: Geometry) -> np.ndarray:
    """Front hair in front of the skull centre, back hair behind it (by part where the part agrees)."""
    front = faces.by_part(rows, faces.centroid[rows, 2] >= geometry.skull_z)
    return np.where(front, "front hair", "back hair").astype(object)


def _skin_kinds(kind: str, rows: np.ndarray, faces: _Faces, geometry: Geometry) -> np.ndarray:
    """Skin by height (face / neck / body), then the face's lids, lashes, brows and lips by their morphs."""
    y = faces.centroid[rows, 1]
    chin = geometry.bounds[1] if geometry.bounds else -np.inf
    neck = geometry.neck_y if geometry.neck_y is not None else -np.inf
    if kind == "neck":
        result = np.full(len(rows), "neck", dtype=object)
    else:
        by_height = np.where(y >= chin, "face", np.where(y >= neck, "neck", BODY))
        result = np.where(kind == "face", "face", by_height).astype(object)
    face = result == "face"
    skin = faces.skin[rows]
    result[face & faces.moved["eye"][rows] & (~skin | faces.dark[rows])] = "eyelash"
    result[face & faces.moved["eyebrow"][rows] & ~skin] = "eyebrow"
    result[face & faces.moved["mouth"][rows] & ~skin] = "mouth"
    return result


def _eye_kinds(rows: np.ndarray, faces: _Faces) -> np.ndarray:
    """An eye material: white parts behind the rest are eye whites, dark parts eye morphs move are lashes."""
    white = faces.by_part(rows, faces.white[rows])
    z = faces.centroid[rows, 2]
    behind = z <= np.median(z[~white]) if (~white).any() else np.ones(len(rows), bool)
    lash = faces.by_part(rows, faces.moved["eye"][rows] & faces.dark[rows])
    return np.where(white & behind, "eyewhite", np.where(lash, "eyelash", "irides")).astype(object)


class _Faces:
    """Per-face arrays: material, centroid, part (connected component), colour tests, morph movement."""

    def __init__(self, model: Model, geometry: Geometry) -> None:
        triangles = np.asarray(model.indices, np.int64)
        owner = corner_materials(model)
        self.material = owner.reshape(-1, 3)[:, 0] if len(owner) else np.zeros(0, np.int64)
        positions = model.vertices.positions.astype(np.float64)
        self.centroid = positions[triangles].mean(axis=1)
        bounds = geometry.bounds
        self.height = float(bounds[0] - bounds[1]) if bounds else float(np.ptp(positions[:, 1]) or 1.0)
        self.part = _components(positions, triangles, self.material)
        self.head = geometry.head_weight[triangles].mean(axis=1)
        keep = np.repeat(self.material >= 0, 3)
        colours = np.zeros((triangles.size, 3))
        corners = triangles.reshape(-1)
        colours[keep] = corner_colours(model, corners[keep], owner[keep])
        colour = colours.reshape(-1, 3, 3).mean(axis=1)
        self.skin = skin_coloured(colour)
        self.dark = colour @ np.array([0.299, 0.587, 0.114]) < DARK
        self.white = (colour > WHITE).all(axis=1)
        moved = _moved_vertices(model, MOVED * self.height)
        self.moved = {panel: moved[panel][triangles].any(axis=1) for panel in PANELS}

    def by_part(self, rows: np.ndarray, flags: np.ndarray) -> np.ndarray:
        """Per face of ``rows``: its part's majority of ``flags`` where the part agrees, else its own flag."""
        parts, inverse = np.unique(self.part[rows], return_inverse=True)
        share = np.bincount(inverse, flags.astype(np.float64), len(parts)) / np.bincount(inverse, minlength=len(parts))
        share = share[inverse]
        return np.where(share >= MAJORITY, True, np.where(share <= 1 - MAJORITY, False, flags))


def _components(positions: np.ndarray, triangles: np.ndarray, material: np.ndarray) -> np.ndarray:
    """(F,) connected-component label of every face: faces of one material sharing a vertex position."""
    if not len(triangles):
        return np.zeros(0, np.int64)
    _, welded = np.unique(np.round(positions, 5), axis=0, return_inverse=True)
    welded = welded.reshape(-1)
    nodes = material[:, None].astype(np.int64) * (welded.max() + 1) + welded[triangles]
    _, node = np.unique(nodes, return_inverse=True)
    node = node.reshape(-1, 3)
    edges = np.concatenate([node[:, [0, 1]], node[:, [1, 2]]])
    count = int(node.max()) + 1
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    return labels[node[:, 0]]


def _moved_vertices(model: Model, threshold: float) -> dict[str, np.ndarray]:
    """Per morph panel (eyebrow, eye, mouth): which vertices one of its vertex morphs moves by ``threshold``."""
    moved = {panel: np.zeros(len(model.vertices), bool) for panel in PANELS}
    for morph in model.morphs:
        panel = next((name for name, number in PANELS.items() if number == morph.panel), None)
        if panel is None or morph.kind != MorphKind.VERTEX or not len(morph.index):
            continue
        far = np.linalg.norm(morph.data[:, :3], axis=1) >= threshold
        index = morph.index[far]
        moved[panel][index[(index >= 0) & (index < len(model.vertices))]] = True
    return moved


WORN = ("headwear", "earwear", "eyewear", "objects")  # what a head wears or holds, not the head


def worn_faces(model: Model, head_bounds: tuple[float, float]) -> np.ndarray:
    """(F,) bool: faces classed as worn on the head or held (See-through's classes), for head bounds."""
    names = np.array(DEFAULT.names)
    return np.isin(names[face_layers(model, head_bounds=head_bounds)], WORN)

"""Parts, not materials: each face of a model gets its layer from the part it belongs to.

A material often spans two classes and two depths: one hair material holds the bangs
and the back hair, a face material holds lids, lashes, brows and lips, an eye material
the eye whites, irides and highlights. A material's *kind* (:mod:`annotator.layers`:
its name, else its geometry) is refined per face, with:

- connected components: faces of one material that share a vertex position (UV seams
  welded) form a part and are decided together where they agree;
- position against the head: hair (and, in a material that names do not place, the
  parts that move with the head and are not mostly skin-coloured) in front of the head's
  skin seen from the front (where skin lies under it; elsewhere in front of the skull
  centre) is front hair, behind it back hair (per face where a part has both, so a hair
  cap that wraps the head splits);
  skin (also the mostly skin-coloured parts of a material that names do not place)
  above the chin is face, between chin and neck bone neck, below it body; worn
  things (ribbons, ornaments) moving with the head are headwear, else neckwear near the
  neck and topwear below;
- the morphs that move them: in a face material, the faces the morphs closing the eyes
  (panel 2: blink, winks) move far, and dark or non-skin ones they move at all, are lids
  and lashes (``eyelash``, drawn over the irides so that a
  closed lid covers the eye), those brow morphs move are ``eyebrow``, those mouth
  morphs move are ``mouth`` (the skin around the mouth stays face);
- texture colour (diffuse times the texel at each corner): in an eye material, white
  parts behind the rest are the eye whites; dark parts eye morphs move are lashes;
- facial features among the head's small parts that no name places, by region (around
  what the closing morphs and the mouth morphs move) and colour, on the face's skin
  (not above it in the hair): eye whites, lashes, irides, brows above the eyes, the mouth.

Manifest overrides keep a whole material in their layer.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from annotator.layers import (
    BODY,
    DEFAULT,
    HAIR,
    SKIN,
    WEAR,
    Assignment,
    Geometry,
    LayerConfig,
    assign_layers,
    corner_colours,
    corner_materials,
    normalise,
    skin_coloured,
)
from annotator.mesh import node_components, weld
from renderer.model import Model, MorphKind

MOVED = 0.01  # a morph moves a vertex by this fraction of the head height
MAJORITY = 0.8  # a part takes one side when this share of its faces is on it
SMALL = 0.5  # a facial feature's part spans less than this fraction of the head height
GRID = 24  # the skin depth grid has cells of 1/GRID of the head height
SKIN_MARGIN = 0.02  # hair this close behind the skin (fraction of the head height) still counts as in front
MOST = 0.5  # the mouth region: vertices the opening morph moves this share of its largest move or more
PANELS = {"eyebrow": 1, "eye": 2, "mouth": 3}  # PMD/PMX morph panels
DARK = 0.35  # luminance below which a face is dark (lashes, brows, lip lines)
WHITE = 0.75  # every channel above this: white (eye whites, highlights)
CLOSING = ("まばたき", "blink", "ウィンク", "ウインク", "wink")  # eye morphs that close the lids
LID = 4  # lids: faces the closing morphs move this many times MOVED or more
OPENING = ("あ", "ア", "a", "aa", "mouthopen")  # the mouth morph whose moved vertices mark the mouth region


def face_layers(model: Model, overrides: Mapping[str, str] | None = None, config: LayerConfig = DEFAULT,
                head_bounds: tuple[float, float] | None = None) -> np.ndarray:
    """(F,) int: the index into ``config.names`` of every face of ``model`` (see the module docstring)."""
    geometry = Geometry(model, head_bounds)
    assignments = assign_layers(model, overrides, config, head_bounds=geometry.bounds)
    faces = _Faces(model, geometry)
    skin_materials = [a.material for a in assignments if a.kind in ("face", SKIN, BODY)]
    faces.use_skin(np.isin(faces.material, skin_materials) & faces.skin & (faces.head >= 0.5))
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
        skin = faces.part_share(rows, faces.skin[rows]) >= 0.5
        on_head = faces.by_part(rows, faces.head[rows] >= 0.5)
        result = np.where(on_head, "headwear" if kind == "headwear" else _hair_kinds(rows, faces, geometry),
                          kind).astype(object)
        features = _feature_kinds(rows, faces)  # small unnamed parts on the head: facial features?
        small = on_head & (faces.extent[rows] < SMALL * faces.height) & (features != "")
        result[small] = features[small]
        result[skin] = _skin_kinds(SKIN, rows[skin], faces, geometry)
        return result
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
    """Front hair in front of the head's skin where skin lies under it (seen from the front), else in front
    of the skull centre; back hair behind (by part where the part agrees)."""
    z = faces.centroid[rows, 2]
    skin_z = faces.skin_depth(faces.centroid[rows, :2])
    front = np.where(np.isfinite(skin_z), z >= skin_z - SKIN_MARGIN * faces.height, z >= geometry.skull_z)
    return np.where(faces.by_part(rows, front), "front hair", "back hair").astype(object)


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
    result[face & ((faces.moved["eye"][rows] & (~skin | faces.dark[rows])) | faces.moved["lid"][rows])] = "eyelash"
    result[face & faces.moved["eyebrow"][rows] & ~skin] = "eyebrow"
    result[face & faces.moved["mouth"][rows] & ~skin] = "mouth"
    return result


def _feature_kinds(rows: np.ndarray, faces: _Faces) -> np.ndarray:
    """Facial features among faces no name places, by region and colour: in the eye region (around what the
    closing morphs move) white parts are eye whites, dark ones, those the closing morphs move and those in
    its upper third lashes, the rest irides; above it brows; in the mouth region (around what mouth morphs
    move) the mouth; "" elsewhere."""
    result = np.full(len(rows), "", dtype=object)
    x, y = faces.centroid[rows, 0], faces.centroid[rows, 1]
    on_face = faces.centroid[rows, 2] >= faces.skin_depth(faces.centroid[rows, :2]) - SKIN_MARGIN * 2 * faces.height
    (eye_low, eye_high), (mouth_low, mouth_high) = faces.eye_region, faces.mouth_region
    across = (x >= eye_low[0]) & (x <= eye_high[0])
    in_eyes = across & (y >= eye_low[1]) & (y <= eye_high[1])
    upper = y >= eye_high[1] - (eye_high[1] - eye_low[1]) / 3
    in_mouth = (x >= mouth_low[0]) & (x <= mouth_high[0]) & (y >= mouth_low[1]) & (y <= mouth_high[1])
    result[in_mouth | faces.moved["mouth"][rows]] = "mouth"
    result[across & (y > eye_high[1]) & (y <= 2 * eye_high[1] - eye_low[1])] = "eyebrow"
    result[in_eyes] = "irides"
    result[in_eyes & (faces.moved["eye"][rows] | faces.dark[rows] | upper)] = "eyelash"
    result[in_eyes & faces.by_part(rows, faces.white[rows])] = "eyewhite"
    result[~on_face | (faces.skin[rows] & (result == "irides"))] = ""  # not on the face; blush
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
        corners = positions[triangles]
        low, high = np.full((self.part.max() + 1, 3), np.inf), np.full((self.part.max() + 1, 3), -np.inf)
        np.minimum.at(low, self.part, corners.min(axis=1))
        np.maximum.at(high, self.part, corners.max(axis=1))
        self.extent = np.linalg.norm(high - low, axis=1)[self.part]  # per face, its part's bounding-box diagonal
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
        self.moved = {panel: moved[panel][triangles].any(axis=1) for panel in moved}
        self.eye_region = _region(positions[moved["eye"]], self.height)
        self.mouth_region = _region(positions[moved["open"]], self.height)

    def by_part(self, rows: np.ndarray, flags: np.ndarray) -> np.ndarray:
        """Per face of ``rows``: its part's majority of ``flags`` where the part agrees, else its own flag."""
        share = self.part_share(rows, flags)
        return np.where(share >= MAJORITY, True, np.where(share <= 1 - MAJORITY, False, flags))

    def use_skin(self, mask: np.ndarray) -> None:
        """The faces that make the head's skin (those of face and skin materials) for :meth:`skin_depth`."""
        self._skin_grid = _depth_grid(self.centroid[mask], self.height / GRID)

    def skin_depth(self, xy: np.ndarray) -> np.ndarray:
        """The frontmost z of the head's skin in the grid cell of each (x, y); -inf where none."""
        cell, origin, grid = self.height / GRID, *self._skin_grid
        if not grid.size:
            return np.full(len(xy), -np.inf)
        index = np.floor((xy - origin) / cell).astype(np.int64)
        inside = ((index >= 0) & (index < np.array(grid.shape))).all(axis=1)
        depth = np.full(len(xy), -np.inf)
        depth[inside] = grid[index[inside, 0], index[inside, 1]]
        return depth

    def part_share(self, rows: np.ndarray, flags: np.ndarray) -> np.ndarray:
        """Per face of ``rows``: the share of its part's faces (among ``rows``) whose flag is set."""
        parts, inverse = np.unique(self.part[rows], return_inverse=True)
        share = np.bincount(inverse, flags.astype(np.float64), len(parts)) / np.bincount(inverse, minlength=len(parts))
        return share[inverse]


def _depth_grid(points: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """(origin, grid): the largest z of ``points`` per square x/y cell (-inf where none), holes of one cell
    closed by the neighbours' largest."""
    if not len(points):
        return np.zeros(2), np.zeros((0, 0))
    origin = points[:, :2].min(axis=0) - cell
    index = np.floor((points[:, :2] - origin) / cell).astype(np.int64)
    grid = np.full(tuple(index.max(axis=0) + 2), -np.inf)
    np.maximum.at(grid, (index[:, 0], index[:, 1]), points[:, 2])
    padded = np.pad(grid, 1, constant_values=-np.inf)
    neighbours = np.max([padded[1 + dx:padded.shape[0] - 1 + dx, 1 + dy:padded.shape[1] - 1 + dy]
                         for dx in (-1, 0, 1) for dy in (-1, 0, 1)], axis=0)
    return origin, np.where(np.isfinite(grid), grid, neighbours)


def _region(moved: np.ndarray, height: float) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) x/y corners around the vertices some morphs move, grown by 1/20 of the head height;
    an empty region without them."""
    if not len(moved):
        return np.full(2, np.inf), np.full(2, -np.inf)
    margin = height / 20
    return moved[:, :2].min(axis=0) - margin, moved[:, :2].max(axis=0) + margin


def _components(positions: np.ndarray, triangles: np.ndarray, material: np.ndarray) -> np.ndarray:
    """(F,) connected-component label of every face: faces of one material sharing a vertex position."""
    if not len(triangles):
        return np.zeros(0, np.int64)
    welded = weld(positions)
    nodes = material[:, None].astype(np.int64) * (welded.max() + 1) + welded[triangles]
    _, node = np.unique(nodes, return_inverse=True)
    node = node.reshape(-1, 3)
    return node_components(node, int(node.max()) + 1)[node[:, 0]]


def _moved_vertices(model: Model, threshold: float) -> dict[str, np.ndarray]:
    """Per morph panel (eyebrow, eye, mouth): which vertices one of its vertex morphs moves by ``threshold``;
    for the eyes only the morphs that close them (CLOSING names) when the model has any, since others
    (瞳小, じと目) move the irides too; "open": what the mouth-opening morph (OPENING names) moves most;
    "lid": what the closing morphs (none without CLOSING names) move LID times as far."""
    moved = {panel: np.zeros(len(model.vertices), bool) for panel in (*PANELS, "open", "lid")}
    closing = [m for m in model.morphs if m.panel == PANELS["eye"] and any(w in normalise(m.name) for w in CLOSING)]
    for morph in model.morphs:
        panel = next((name for name, number in PANELS.items() if number == morph.panel), None)
        if panel is None or morph.kind != MorphKind.VERTEX or not len(morph.index):
            continue
        if panel == "eye" and closing and morph not in closing:
            continue
        far = np.linalg.norm(morph.data[:, :3], axis=1) >= threshold
        index = morph.index[far]
        index = index[(index >= 0) & (index < len(model.vertices))]
        moved[panel][index] = True
        if panel == "eye" and closing:  # lids: what closing the eye moves far (skin around it a little)
            lid = morph.index[np.linalg.norm(morph.data[:, :3], axis=1) >= LID * threshold]
            moved["lid"][lid[(lid >= 0) & (lid < len(model.vertices))]] = True
        if panel == "mouth" and normalise(morph.name) in OPENING:  # where the lips are: what moves most
            distance = np.linalg.norm(morph.data[:, :3], axis=1)
            most = morph.index[distance >= MOST * distance.max()]
            moved["open"][most[(most >= 0) & (most < len(model.vertices))]] = True
    return moved


WORN = ("headwear", "earwear", "eyewear", "objects")  # what a head wears or holds, not the head


def worn_faces(model: Model, head_bounds: tuple[float, float]) -> np.ndarray:
    """(F,) bool: faces classed as worn on the head or held (See-through's classes), for head bounds."""
    names = np.array(DEFAULT.names)
    return np.isin(names[face_layers(model, head_bounds=head_bounds)], WORN)

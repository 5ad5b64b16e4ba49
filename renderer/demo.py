"""The built-in demo character: a chibi head-and-shoulders figure generated in code.

It lets the README's first command, the tests and the benchmarks run without any
third-party model, while exercising what real models use: BDEF1/BDEF2/SDEF skinning,
double-sided hair, and eye and mouth vertex morphs under the standard Japanese names.
Every shape is a parametric grid evaluated with numpy; facial decals (eyes, brows,
mouth, eyelids) are projected onto the analytic face surface so that they sit a fixed
small distance in front of the skin. The iris is the one textured material: pupil and
highlights are painted into ``iris.png`` so that each layer of a layer stack holds one
part of the eye (白目 the whites, 瞳 the whole iris, まつげ only the lashes). The eyelids
are their own material まぶた, after the lashes: skin that closes over the eyes in the eye
morphs, so a layer stack can put it above the eye layers (in the face it would lie under them).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from renderer.model import BoneFlag, Bones, Deform, MaterialFlag, Materials, Model, Morph, MorphKind, Vertices
from renderer.shading import MMD_LIGHT

# Skull: an ellipsoid above HEAD_Y; below it the rings narrow to a chin pushed forward.
HEAD_Y = 19.0
RX, RZ, RY_TOP, RY_BOT = 1.08, 1.0, 1.12, 1.42
JAW_FORWARD = 0.3
HAIR_GAP = 0.1  # the hair shell lies this far outside the skull
DROP_SPEED = 1.1  # model units of vertical hair fall per unit of the shell path parameter

EYE_X, EYE_Y, EYE_W = 0.43, 18.72, 0.29  # eye centre (left eye at +x) and half-width
EYE_TOP, EYE_BOTTOM, EYE_TILT = 0.3, 0.21, 0.04
MOUTH_Y, MOUTH_W = 18.02, 0.15

# Decal heights above the skin, back to front.
LAYER = {"white": 0.010, "iris": 0.018, "brow": 0.02, "mouth": 0.02, "lid": 0.085, "lash": 0.1}

# (top of the hair on the skull, chin tip): the head bounds a manifest would record.
DEMO_HEAD = (HEAD_Y + RY_TOP + HAIR_GAP, HEAD_Y - RY_BOT)

MATERIALS = [  # name, English name, diffuse RGB, double-sided
    ("後髪", "back_hair", (0.20, 0.64, 0.66), True),
    ("体", "body", (0.80, 0.82, 0.86), True),
    ("首", "neck", (0.96, 0.82, 0.74), False),
    ("顔", "face", (1.00, 0.89, 0.81), True),
    ("白目", "eye_white", (1.00, 1.00, 1.00), False),
    ("瞳", "iris", (1.00, 1.00, 1.00), False),  # white: the texture carries the colour
    ("口", "mouth", (0.42, 0.10, 0.14), False),
    ("眉", "eyebrow", (0.24, 0.34, 0.36), False),
    ("まつげ", "eyelash", (0.10, 0.08, 0.10), False),
    ("まぶた", "eyelid", (0.99, 0.88, 0.80), True),  # the face's skin, a shade apart to stay distinct
    ("前髪", "front_hair", (0.24, 0.74, 0.74), True),
]

BONES = [  # name, English name, parent, position
    ("全ての親", "master", -1, (0.0, 0.0, 0.0)),
    ("センター", "center", 0, (0.0, 8.0, 0.0)),
    ("上半身", "upper body", 1, (0.0, 12.0, -0.1)),
    ("首", "neck", 2, (0.0, 17.0, -0.08)),
    ("頭", "head", 3, (0.0, 17.75, -0.08)),
    ("左目", "eye_L", 4, (EYE_X, EYE_Y, 0.45)),
    ("右目", "eye_R", 4, (-EYE_X, EYE_Y, 0.45)),
]
BONE = {name: i for i, (name, *_rest) in enumerate(BONES)}

EYE_MORPHS = {  # morph -> (English name, eyes it closes, smile-shaped lid)
    "まばたき": ("blink", (1, -1), False),
    "笑い": ("smile", (1, -1), True),
    "ウィンク": ("wink", (1,), True),
    "ウィンク右": ("wink_R", (-1,), True),
    "ウィンク２": ("wink_2", (1,), False),
    "ｳｨﾝｸ２右": ("wink_2_R", (-1,), False),
}
MOUTH_MORPH = ("あ", "a")

Curve = Callable[[np.ndarray], np.ndarray]  # y of a feature's edge as a function of u or q


@dataclass
class _Part:
    """One piece of geometry in one material, skinned to fixed bones."""

    material: str
    positions: np.ndarray  # (N, 3)
    triangles: np.ndarray  # (F, 3), indices into positions
    normals: np.ndarray  # (N, 3)
    bone: int = BONE["頭"]
    skin: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # deform, indices, weights
    offsets: dict[str, np.ndarray] = field(default_factory=dict)  # morph name -> (N, 3)
    uv: np.ndarray | None = None  # (N, 2) for a textured part; untextured parts get a planar map


# ---------------------------------------------------------------- surfaces and meshes

def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _jaw_ring(c: np.ndarray) -> np.ndarray:
    """Ring radius factor at cos(polar angle) c: a sphere above, a tapering jaw below."""
    t = np.clip(-c, 0.0, 1.0)
    lower = np.clip(1 - t ** 2.2, 0.0, 1.0) ** 0.75 * (1 - 0.12 * t)
    return np.where(c >= 0, np.sqrt(np.clip(1 - c * c, 0.0, 1.0)), lower)


def _skull(c: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Skull point at cos(polar angle) c (1 = crown, -1 = chin) and azimuth phi (0 = front)."""
    ring = _jaw_ring(c)
    y = HEAD_Y + np.where(c >= 0, RY_TOP, RY_BOT) * c
    z = RZ * ring * np.cos(phi) + JAW_FORWARD * np.clip(-c, 0.0, 1.0) ** 2
    return np.stack(np.broadcast_arrays(RX * ring * np.sin(phi), y, z), -1)


def _face_depth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """z of the front of the skull at (x, y): the inverse of :func:`_skull` on its front half."""
    c = np.clip((y - HEAD_Y) / np.where(y >= HEAD_Y, RY_TOP, RY_BOT), -1.0, 1.0)
    ring = _jaw_ring(c)
    sin_phi = np.clip(x / np.maximum(RX * ring, 1e-6), -1.0, 1.0)
    return RZ * ring * np.sqrt(1 - sin_phi ** 2) + JAW_FORWARD * np.clip(-c, 0.0, 1.0) ** 2


def _on_face(x: np.ndarray, y: np.ndarray, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """Decal points a layer's height in front of the skin, with the skin's normals."""
    h = 1e-3
    z = _face_depth(x, y)
    dzdx = (_face_depth(x + h, y) - _face_depth(x - h, y)) / (2 * h)
    dzdy = (_face_depth(x, y + h) - _face_depth(x, y - h)) / (2 * h)
    normals = np.stack([-dzdx, -dzdy, np.ones_like(z)], -1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    return np.stack([x, y, z + LAYER[layer]], -1), normals


def _grid_triangles(nu: int, nv: int) -> np.ndarray:
    """Two triangles per quad of an (nu, nv) vertex grid, counter-clockwise in (u, v)."""
    i, j = np.meshgrid(np.arange(nu - 1), np.arange(nv - 1), indexing="ij")
    a = (i * nv + j).ravel()
    b, c, d = a + nv, a + nv + 1, a + 1
    return np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])


def _triangle_normals(positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    p = positions[triangles]
    return np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])


def _smooth_normals(positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, shared across coincident vertices (seams, poles)."""
    _, weld = np.unique(np.round(positions, 5), axis=0, return_inverse=True)
    weld = weld.ravel()
    summed = np.zeros((weld.max() + 1, 3))
    np.add.at(summed, weld[triangles].ravel(), np.repeat(_triangle_normals(positions, triangles), 3, 0))
    normals = summed[weld]
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _surface(grid: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A grid of points -> (positions, triangles) facing away from ``inside``, without slivers."""
    nu, nv = grid.shape[:2]
    positions = grid.reshape(-1, 3)
    triangles = _grid_triangles(nu, nv)
    normals = _triangle_normals(positions, triangles)
    area = np.linalg.norm(normals, axis=1)
    triangles, normals = triangles[area > 1e-9], normals[area > 1e-9]
    away = positions[triangles].mean(1) - np.broadcast_to(inside, grid.shape).reshape(-1, 3)[triangles[:, 0]]
    if np.einsum("ij,ij->", normals, away) < 0:
        triangles = triangles[:, ::-1]
    return positions, triangles


def _merge(meshes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate (positions, triangles) meshes, renumbering the triangles."""
    starts = np.cumsum([0] + [len(p) for p, _t in meshes])
    return (np.concatenate([p for p, _t in meshes]),
            np.concatenate([t + start for (_p, t), start in zip(meshes, starts)]))


def _solid(material: str, grid: np.ndarray, inside: np.ndarray, **kwargs) -> _Part:
    """A part with smooth normals computed from its own triangles."""
    positions, triangles = _surface(grid, inside)
    return _Part(material, positions, triangles, _smooth_normals(positions, triangles), **kwargs)


def _decal(material: str, x: np.ndarray, y: np.ndarray, layer: str, **kwargs) -> _Part:
    """A part lying on the face: an (nu, nv) grid of (x, y) projected onto the skin."""
    positions, normals = _on_face(x, y, layer)
    positions, triangles = _surface(positions, positions - (0.0, 0.0, 1.0))
    return _Part(material, positions, triangles, normals.reshape(-1, 3), **kwargs)


def _lens(x0: float, width: float, top: Curve, bottom: Curve,
          n: tuple[int, int] = (24, 8)) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) grid of the region between two curves of u in (-1, 1), x = x0 + width * u."""
    u = -np.cos(np.linspace(0.05, np.pi - 0.05, n[0]))[:, None]
    s = np.linspace(0.0, 1.0, n[1])[None, :]
    lo, hi = bottom(u), top(u)
    return np.broadcast_to(x0 + width * u, (n[0], n[1])), lo + s * (hi - lo)


def _ellipse(cx: float, cy: float, rx: float, ry: float,
             n: tuple[int, int] = (20, 8)) -> tuple[np.ndarray, np.ndarray]:
    def half(sign: float) -> Curve:
        return lambda u: cy + sign * ry * np.sqrt(np.clip(1 - u * u, 0.0, 1.0))
    return _lens(cx, rx, half(1.0), half(-1.0), n)


# ---------------------------------------------------------------- head, neck, body

def _head() -> _Part:
    c = np.cos(np.linspace(np.pi, 0.0, 48))[None, :]
    phi = np.linspace(-np.pi, np.pi, 73)[:, None]
    return _solid("顔", _skull(c, phi), np.array([0.0, HEAD_Y, 0.0]))


def _tube(material: str, profile: np.ndarray, rings: int, centre_z: float, **kwargs) -> _Part:
    """A vertical tube from (y, half-width, half-depth) rows, slightly squarish in section."""
    s = np.linspace(0.0, 1.0, len(profile))
    t = np.linspace(0.0, 1.0, rings)
    y, a, b = (np.interp(t, s, profile[:, k])[None, :] for k in range(3))
    phi = np.linspace(-np.pi, np.pi, 49)[:, None]
    sin, cos = np.sin(phi), np.cos(phi)
    x = a * np.sign(sin) * np.abs(sin) ** 0.8
    z = centre_z + b * np.sign(cos) * np.abs(cos) ** 0.8
    grid = np.stack(np.broadcast_arrays(x, y, z), -1)
    axis = np.stack(np.broadcast_arrays(np.zeros_like(x), y, np.full_like(x, centre_z)), -1)
    return _solid(material, grid, axis, **kwargs)


def _skin(first: np.ndarray, second: np.ndarray, weight: np.ndarray,
          deform: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PMX skinning arrays for at most two bones per vertex (second = -1: BDEF1)."""
    n = len(first)
    indices = np.full((n, 4), -1, np.int32)
    weights = np.zeros((n, 4), np.float32)
    indices[:, 0], indices[:, 1] = first, second
    weights[:, 0] = weight
    weights[:, 1] = np.where(second >= 0, 1 - weight, 0.0)
    return np.asarray(deform, np.uint8), indices, weights


def _neck() -> _Part:
    """Skinned to 首, blending into 上半身 at the base (BDEF2) and into 頭 at the top (SDEF)."""
    part = _tube("首", np.array([[16.7, 0.27, 0.25], [18.2, 0.26, 0.24]]), 18, -0.08)
    y = part.positions[:, 1]
    to_body = np.clip((17.15 - y) / 0.35, 0.0, 1.0)
    to_head = np.clip((y - 17.55) / 0.4, 0.0, 1.0)
    base, top = to_body > 0, to_head > 0
    part.skin = _skin(np.where(top, BONE["頭"], BONE["首"]),
                      np.select([base, top], [BONE["上半身"], BONE["首"]], -1),
                      np.select([base, top], [1 - to_body, to_head], 1.0),
                      np.select([base, top], [Deform.BDEF2, Deform.SDEF], Deform.BDEF1))
    return part


def _body() -> _Part:
    profile = np.array([  # y, half-width, half-depth: collar, shoulders, chest
        [17.28, 0.31, 0.29], [17.02, 0.34, 0.31], [17.00, 0.46, 0.38], [16.92, 0.75, 0.48],
        [16.78, 1.05, 0.56], [16.58, 1.32, 0.62], [16.25, 1.50, 0.66], [15.80, 1.56, 0.68],
        [15.00, 1.46, 0.70], [14.00, 1.36, 0.70], [13.30, 1.30, 0.68]])
    return _tube("体", profile, 40, -0.1, bone=BONE["上半身"])


# ---------------------------------------------------------------- hair

def _hair_shell(phi: np.ndarray, path: np.ndarray, gap: np.ndarray | float) -> np.ndarray:
    """Point on the hair shell: over the skull while path < pi/2, then falling straight down."""
    theta = np.minimum(path, np.pi / 2)
    ring = np.sin(theta)
    y = HEAD_Y + (RY_TOP + gap) * np.cos(theta) - DROP_SPEED * np.maximum(path - np.pi / 2, 0.0)
    return np.stack(np.broadcast_arrays((RX + gap) * ring * np.sin(phi), y,
                                        (RZ + gap) * ring * np.cos(phi)), -1)


def _back_hair() -> _Part:
    """The hair cap: a hairline over the forehead, falling past the cheeks and to the shoulders behind."""
    phi = np.linspace(-np.pi, np.pi, 97)[:, None]
    side = np.abs(phi)
    end = (0.95 + (np.pi / 2 + 1.1 - 0.95) * _smoothstep(0.8, 1.5, side)
           + (1.5 + 0.12 * np.abs(np.sin(7 * phi))) * _smoothstep(1.6, 2.6, side))
    path = end * np.linspace(1.0, 0.02, 40)[None, :]
    return _solid("後髪", _hair_shell(phi, path, HAIR_GAP), np.array([0.0, HEAD_Y - 1.0, 0.0]))


def _strand(phi0: float, width: float, tip: float, curl: float, lift: float) -> np.ndarray:
    """A tapered lock on the hair shell from the crown to ``tip`` (shell path), as a grid."""
    t = np.linspace(1.0, 0.0, 22)[None, :]
    across = np.linspace(-1.0, 1.0, 7)[:, None]
    half = width * np.clip(1 - t ** 2.5, 0.0, 1.0) ** 0.6 * (0.6 + 0.4 * t)
    phi = phi0 + curl * t ** 2 + across * half
    gap = HAIR_GAP + 0.03 + lift * t + 0.04 * (1 - across ** 2) * (0.3 + t)
    return _hair_shell(phi, 0.08 + (tip - 0.08) * t, gap)


BANGS = [  # azimuth, half-width (rad), tip (shell path), curl, lift
    (0.0, 0.20, 1.30, 0.00, 0.06), (0.28, 0.21, 1.36, -0.06, 0.06), (-0.28, 0.21, 1.34, 0.06, 0.06),
    (0.56, 0.22, 1.42, -0.08, 0.05), (-0.56, 0.22, 1.42, 0.08, 0.05), (0.84, 0.2, 1.5, -0.05, 0.05),
    (-0.84, 0.2, 1.5, 0.05, 0.05), (1.18, 0.24, np.pi / 2 + 1.45, -0.08, 0.02),
    (-1.18, 0.24, np.pi / 2 + 1.45, 0.08, 0.02),
]


def _front_hair() -> _Part:
    """Bangs over the forehead and two long side locks framing the face."""
    positions, triangles = _merge([_surface(_strand(*lock), np.array([0.0, HEAD_Y - 0.5, 0.0]))
                                   for lock in BANGS])
    return _Part("前髪", positions, triangles, _smooth_normals(positions, triangles))


def _twin_tail(side: int) -> _Part:
    """A twin tail: a swept tube hanging from the back of the head down past the shoulders."""
    control = np.array([[0.95, 19.75, -0.45], [1.75, 20.15, -0.55], [2.05, 17.6, -0.65], [1.65, 14.6, -0.7]])
    control[:, 0] *= side
    t = np.linspace(0.0, 1.0, 40)
    basis = np.stack([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t ** 2 * (1 - t), t ** 3], 1)
    centre = basis @ control  # cubic Bezier, (40, 3)
    tangent = np.gradient(centre, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.cross(tangent, [0.0, 0.0, 1.0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    binormal = np.cross(tangent, normal)
    radius = 0.1 + 0.38 * np.sin(np.pi * t) ** 0.7 * (1 - 0.75 * t) + 0.1 * (1 - t)
    alpha = np.linspace(0.0, 2 * np.pi, 25)[:, None, None]
    grid = centre + radius[:, None] * (np.cos(alpha) * normal + 0.75 * np.sin(alpha) * binormal)
    return _solid("後髪", grid, np.broadcast_to(centre, grid.shape))


# ---------------------------------------------------------------- face features

def _eye_top(q: np.ndarray) -> np.ndarray:
    """Upper edge of the eye opening; q in [-1, 1] from the inner to the outer corner."""
    return EYE_Y + EYE_TILT * q + EYE_TOP * np.clip(1 - q * q, 0.0, 1.0) ** 0.55


def _eye_bottom(q: np.ndarray) -> np.ndarray:
    return EYE_Y + EYE_TILT * q - EYE_BOTTOM * np.clip(1 - q * q, 0.0, 1.0) ** 0.8


def _closed_line(q: np.ndarray, smile: bool) -> np.ndarray:
    """Where the lids meet: sagging for a plain blink, arched (^) for a smile."""
    bulge = np.clip(1 - q * q, 0.0, 1.0)
    if smile:
        return EYE_Y + EYE_TILT * q - 0.08 + 0.18 * bulge
    return EYE_Y + EYE_TILT * q - 0.11 * bulge


def _eye_x(side: int, q: np.ndarray) -> np.ndarray:
    """Model x of eye coordinate q (the face is symmetric; side +1 is the character's left)."""
    return side * (EYE_X + EYE_W * q)


@dataclass(frozen=True)
class _LidBand:
    """A strip of an eyelid: columns q, rows y at rest, and rows y once the lids meet."""

    material: str
    layer: str
    q: np.ndarray  # (n, 1)
    rest: np.ndarray  # (n, rows)
    closed: Curve  # meeting line (n, 1) -> (n, rows)


def _lid_bands() -> list[_LidBand]:
    """Skin lids folded just outside the opening, the upper lashes and a short lower lash."""
    rows = np.linspace(0.0, 1.0, 6)[None, :]
    fold = 0.05  # how far outside the opening the folded lids wait
    q = np.linspace(-1.1, 1.1, 23)[:, None]
    top, bottom = _eye_top(q) + fold, _eye_bottom(q) - fold
    lq = np.linspace(-1.05, 1.25, 26)[:, None]  # the lash runs past the outer corner, flicking down
    lash_top = _eye_top(lq) - 0.1 * np.clip(lq - 1, 0.0, None) - 0.03
    lash_width = 0.05 + 0.04 * np.clip((lq + 1) / 2, 0.0, 1.0)
    bq = np.linspace(0.15, 1.0, 12)[:, None]
    lower_width = 0.025 * np.sqrt(np.clip(1 - ((bq - 0.575) / 0.425) ** 2, 0.05, 1.0))
    return [
        _LidBand("まぶた", "lid", q, top - fold * rows,
                 lambda m: (1 - rows) * top + rows * np.minimum(m - 0.03, top - 0.01)),
        _LidBand("まぶた", "lid", q, bottom + fold * rows,
                 lambda m: (1 - rows) * bottom + rows * np.maximum(m + 0.03, bottom + 0.01)),
        _LidBand("まつげ", "lash", lq, lash_top + rows * lash_width, lambda m: m - 0.025 + rows * 0.05),
        _LidBand("まつげ", "lash", bq, _eye_bottom(bq) - 0.02 + rows * lower_width,
                 lambda m: m - 0.0125 + rows * lower_width),
    ]


def _lid_parts(side: int) -> list[_Part]:
    """The lid bands of one eye, with the offsets that close it plainly and smiling."""
    parts = []
    for band in _lid_bands():
        x = np.broadcast_to(_eye_x(side, band.q), band.rest.shape)
        part = _decal(band.material, x, band.rest, band.layer)
        closed = {smile: _on_face(x, np.broadcast_to(band.closed(_closed_line(band.q, smile)), x.shape), band.layer)
                  for smile in (False, True)}
        if band.material == "まぶた":  # shade the stretched lid like the skin it covers
            part.normals = closed[False][1].reshape(-1, 3)
        for name, (_en, eyes, smile) in EYE_MORPHS.items():
            if side in eyes:
                part.offsets[name] = closed[smile][0].reshape(-1, 3) - part.positions
        parts.append(part)
    return parts


IRIS_Y, IRIS_RQ, IRIS_RY = EYE_Y - 0.03, 0.65, 0.27  # iris centre height and radii (q, y) in the opening
IRIS_TEXTURE, IRIS_TEXELS = "iris.png", 128
# Painted features of the iris texture in (s, t): model x and y over the iris's radii, measured
# from its centre, so both eyes show the highlights on the same screen side (lit alike).
PUPIL = ((0.0, -0.07), (0.46, 0.52))  # centre, radii
HIGHLIGHTS = [((-0.36, 0.34), (0.28, 0.24)), ((0.38, -0.4), (0.15, 0.1))]


def _iris_st(x: np.ndarray, y: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Texture-space (s, t) of model (x, y) on one eye's iris: the unit disc is the iris."""
    return (x - side * EYE_X) / (EYE_W * IRIS_RQ), (y - IRIS_Y) / IRIS_RY


def _blob(s: np.ndarray, t: np.ndarray, centre: tuple[float, float], radii: tuple[float, float],
          soft: float) -> np.ndarray:
    """Coverage of an ellipse with an edge ``soft`` wide (in radii), for painting."""
    r = np.hypot((s - centre[0]) / radii[0], (t - centre[1]) / radii[1])
    return 1 - _smoothstep(1 - soft, 1 + soft, r)


def iris_texture() -> np.ndarray:
    """(IRIS_TEXELS, IRIS_TEXELS, 4) RGBA: a teal iris darkening upwards and at the rim,
    a dark pupil and two white highlights, on the unit disc of :func:`_iris_st`."""
    centres = (np.arange(IRIS_TEXELS) + 0.5) / IRIS_TEXELS * 2 - 1
    s, t = centres[None, :], -centres[:, None]  # rows run down the image (MMD's v)
    shade = _smoothstep(-0.9, 0.8, t)[..., None]  # 0 at the bottom, 1 at the top
    rgb = (1 - shade) * np.array([0.30, 0.86, 0.84]) + shade * np.array([0.05, 0.40, 0.48])
    rim = _smoothstep(0.68, 1.0, np.hypot(s, t))[..., None]
    rgb = rgb * (1 - 0.5 * rim)
    pupil = _blob(s, t, *PUPIL, 0.12)[..., None]
    rgb = rgb * (1 - pupil) + pupil * np.array([0.03, 0.08, 0.12])
    for centre, radii in HIGHLIGHTS:
        spot = _blob(s, t, centre, radii, 0.12)[..., None]
        rgb = rgb * (1 - spot) + spot
    rgba = np.concatenate([rgb, np.ones((*rgb.shape[:2], 1))], -1)
    return np.rint(rgba * 255).astype(np.uint8)


def _iris(side: int) -> _Part:
    """The iris decal (turning with the eye bone), kept inside the opening, its UVs on the texture."""
    q, y = _ellipse(0.0, IRIS_Y, IRIS_RQ, IRIS_RY)
    inside = np.clip(q, -1.0, 1.0)
    y = np.clip(y, _eye_bottom(inside) + 0.004, _eye_top(inside) - 0.004)
    x = _eye_x(side, q)
    part = _decal("瞳", x, y, "iris", bone=BONE["左目" if side > 0 else "右目"])
    s, t = _iris_st(x.ravel(), y.ravel(), side)
    part.uv = np.stack([(1 + s) / 2, (1 - t) / 2], 1)
    return part


def _eye_parts(side: int) -> list[_Part]:
    """Eye white and iris, then the lids."""
    q, y = _lens(0.0, 1.0, _eye_top, _eye_bottom)
    return [_decal("白目", _eye_x(side, q), y, "white"), _iris(side)] + _lid_parts(side)


def _brow(side: int) -> _Part:
    def centre(u):
        return 19.22 + 0.05 * (1 - u * u) - 0.03 * side * u

    def thickness(u):
        return 0.03 * np.sqrt(np.clip(1 - u * u, 0.0, 1.0)) * (1 - 0.4 * side * u)

    x, y = _lens(side * (EYE_X + 0.02), 0.26, lambda u: centre(u) + thickness(u),
                 lambda u: centre(u) - thickness(u), (20, 4))
    return _decal("眉", x, y, "brow")


def _mouth() -> _Part:
    """A small closed smile whose lower edge drops into an open 'a' shape."""
    def top(u):
        return MOUTH_Y + 0.03 * u * u + 0.012 * np.sqrt(np.clip(1 - u * u, 0.0, 1.0))

    def closed_bottom(u):
        return MOUTH_Y + 0.03 * u * u - 0.012 * np.sqrt(np.clip(1 - u * u, 0.0, 1.0))

    def open_bottom(u):
        return MOUTH_Y + 0.03 * u * u - 0.28 * np.clip(1 - u * u, 0.0, 1.0) ** 0.7

    x, y = _lens(0.0, MOUTH_W, top, closed_bottom, (24, 8))
    ox, oy = _lens(0.0, MOUTH_W * 1.2, top, open_bottom, (24, 8))
    part = _decal("口", x, y, "mouth")
    part.offsets[MOUTH_MORPH[0]] = _on_face(ox, oy, "mouth")[0].reshape(-1, 3) - part.positions
    return part


# ---------------------------------------------------------------- assembly

def _parts() -> list[_Part]:
    parts = [_back_hair(), _twin_tail(1), _twin_tail(-1), _body(), _neck(), _head(), _mouth(),
             _brow(1), _brow(-1), _front_hair()]
    for side in (1, -1):
        parts += _eye_parts(side)
    order = [name for name, *_rest in MATERIALS]
    return sorted(parts, key=lambda p: order.index(p.material))  # stable: keeps part order


def _skinning(parts: list[_Part]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All parts' skinning; a part without its own is rigidly bound to its bone."""
    skins = [part.skin or _skin(np.full(len(part.positions), part.bone), np.full(len(part.positions), -1),
                                np.ones(len(part.positions)), np.full(len(part.positions), Deform.BDEF1))
             for part in parts]
    return tuple(np.concatenate(arrays) for arrays in zip(*skins))


def _planar_uv(positions: np.ndarray) -> np.ndarray:
    """A front projection of the whole figure: plausible UVs for the untextured materials."""
    return np.stack([(positions[:, 0] + 3) / 6, (21 - positions[:, 1]) / 8], 1)


def _vertices(parts: list[_Part]) -> Vertices:
    positions = np.concatenate([p.positions for p in parts]).astype(np.float32)
    normals = np.concatenate([p.normals for p in parts])
    normals = (normals / np.linalg.norm(normals, axis=1, keepdims=True)).astype(np.float32)
    deform, indices, weights = _skinning(parts)
    n = len(positions)
    sdef = deform == Deform.SDEF
    sdef_c = np.zeros((n, 3), np.float32)
    sdef_c[sdef] = BONES[BONE["頭"]][3]
    uv = np.concatenate([_planar_uv(p.positions) if p.uv is None else p.uv for p in parts]).astype(np.float32)
    return Vertices(positions=positions, normals=normals, uv=uv, extra_uv=np.zeros((n, 0, 4), np.float32),
                    deform=deform, bone_indices=indices, bone_weights=weights, sdef_c=sdef_c,
                    sdef_r0=sdef_c.copy(), sdef_r1=sdef_c.copy(), edge_scale=np.ones(n, np.float32))


def _materials(parts: list[_Part]) -> tuple[Materials, np.ndarray]:
    _positions, triangles = _merge([(p.positions, p.triangles) for p in parts])
    counts = np.array([sum(len(p.triangles) for p in parts if p.material == name)
                       for name, *_rest in MATERIALS], np.int64) * 3
    diffuse = np.array([(*rgb, 1.0) for _n, _e, rgb, _d in MATERIALS], np.float32)
    flags = np.array([MaterialFlag.GROUND_SHADOW | MaterialFlag.SELF_SHADOW_MAP | MaterialFlag.SELF_SHADOW
                      | (MaterialFlag.DOUBLE_SIDED if double else 0) for *_rest, double in MATERIALS], np.uint8)
    m = len(MATERIALS)
    names = [name for name, *_rest in MATERIALS]
    materials = Materials(
        names=names, names_en=[en for _n, en, *_rest in MATERIALS],
        diffuse=diffuse, specular=np.full((m, 3), 0.1, np.float32), shininess=np.full(m, 12.0, np.float32),
        ambient=(diffuse[:, :3] * (1 - MMD_LIGHT)).astype(np.float32), flags=flags,  # MMD shows the listed RGB
        edge_color=np.tile(np.array([0.1, 0.1, 0.12, 1.0], np.float32), (m, 1)),
        edge_size=np.ones(m, np.float32), sphere=[None] * m,
        texture=[IRIS_TEXTURE if name == "瞳" else None for name in names],
        sphere_mode=np.zeros(m, np.uint8), toon=[None] * m, toon_shared=np.zeros(m, bool),
        index_start=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64), index_count=counts)
    return materials, triangles.astype(np.uint32)


def _bones() -> Bones:
    b = len(BONES)
    flags = np.full(b, BoneFlag.ROTATABLE | BoneFlag.VISIBLE | BoneFlag.ENABLED, np.uint16)
    flags[:2] |= np.uint16(BoneFlag.TRANSLATABLE)
    parent = np.array([p for _n, _e, p, _pos in BONES], np.int32)
    tail_index = np.full(b, -1, np.int32)
    for child, p in enumerate(parent[:5]):  # the spine chain points at its child
        if p >= 0:
            tail_index[p] = child
    flags[tail_index >= 0] |= np.uint16(BoneFlag.TAIL_IS_BONE)
    tail_offset = np.zeros((b, 3), np.float32)
    tail_offset[[BONE["頭"]]] = (0.0, 1.0, 0.0)
    tail_offset[[BONE["左目"], BONE["右目"]]] = (0.0, 0.0, 0.3)
    zeros = np.zeros((b, 3), np.float32)
    return Bones(names=[n for n, *_rest in BONES], names_en=[e for _n, e, *_rest in BONES],
                 positions=np.array([pos for *_rest, pos in BONES], np.float32), parent=parent,
                 transform_level=np.zeros(b, np.int32), flags=flags, tail_index=tail_index,
                 tail_offset=tail_offset, append_parent=np.full(b, -1, np.int32),
                 append_ratio=np.zeros(b, np.float32), fixed_axis=zeros, local_x=zeros.copy(),
                 local_z=zeros.copy(), external_key=np.zeros(b, np.int32))


def _morphs(parts: list[_Part]) -> list[Morph]:
    """Vertex morphs listing only the vertices that move (eyes on panel 2, mouth on 3)."""
    names = [(name, en, 2) for name, (en, _eyes, _smile) in EYE_MORPHS.items()] + [(*MOUTH_MORPH, 3)]
    morphs = []
    for name, name_en, panel in names:
        data = np.concatenate([p.offsets.get(name, np.zeros_like(p.positions)) for p in parts])
        index = np.flatnonzero(np.abs(data).max(1) > 1e-7)
        morphs.append(Morph(name, name_en, panel, MorphKind.VERTEX, index.astype(np.int32),
                            data[index].astype(np.float32)))
    return morphs


def demo_model() -> Model:
    """The demo character, built in memory: deterministic, about 0.1 s. Its texture lies in a
    cache file (the renderer loads textures from files), written on first use."""
    parts = _parts()
    materials, indices = _materials(parts)
    return Model(name="デモキャラ", name_en="mmd-synth demo",
                 comment="mmd-synth built-in demo character, generated in code.", format="pmx",
                 version=2.0, vertices=_vertices(parts), indices=indices, materials=materials,
                 bones=_bones(), morphs=_morphs(parts), textures=[IRIS_TEXTURE],
                 texture_paths={IRIS_TEXTURE: str(_cached_texture())})


def _save_png(pixels: np.ndarray, path: Path) -> None:
    """Write atomically: parallel workers may write the same file at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    Image.fromarray(pixels).save(partial, format="PNG")
    os.replace(partial, path)


def _cached_texture() -> Path:
    """The iris texture in the temp folder, named by its content so that a changed one is rewritten."""
    pixels = iris_texture()
    folder = Path(tempfile.gettempdir()) / f"mmd-synth-demo-{hashlib.sha256(pixels).hexdigest()[:16]}"
    path = folder / IRIS_TEXTURE
    if not path.is_file():
        _save_png(pixels, path)
    return path


def write_demo(directory: str | Path) -> Path:
    """Write ``demo.pmx`` and its texture ``iris.png`` into ``directory``; returns the model's path."""
    from renderer.pmx_writer import write_pmx

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _save_png(iris_texture(), directory / IRIS_TEXTURE)
    path = directory / "demo.pmx"
    write_pmx(demo_model(), path)
    return path

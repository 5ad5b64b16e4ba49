"""Semantic layers: which Live2D-style layer each material of a model belongs to.

The default layers, in draw order (back to front)::

    back_hair, neck, body, clothes, face, eye_white, iris, eyelash_brow, mouth,
    front_hair, accessory

The order is measured: pipeline.layers' composite error (mean / p99 over covered pixels,
0-255) at 128 px over 10 poses (rest, each wink, blink, mouth open, 5 rotations with
morphs), per model the average over poses. The neck goes under the body, as in Live2D
rigs where the collar covers the neck: demo 1.19 / 46.7 -> 0.15 / 0.0 (the old order drew
the neck over the collar); Appearance Miku 8.49 / 78.3, miku_v2 24.76 / 159.9, mokou 4.72 /
88.6, gumi 18.83 / 164.7 unchanged (no neck layer); consistency 0 on the demo. Rejected:
face under clothes (mean over models 9.91 vs 11.39, all of it gumi, whose "face" is all its
skin; worse p99 on gumi 198.5 and mean on mokou 4.83); clothes under body (Appearance Miku
13.15); eyelash_brow under the eyes (demo 1.76, closed lids hidden); mouth anywhere below
eyelash_brow (no change). Eyelids (まぶた, 瞼, eyelid) are eyelash_brow: the closed lid must
cover the eye layers, so a model whose lids are their own material composites a wink
cleanly (the demo in the old order, worst pose: mean 4.48 -> 1.27, p99 170 -> 49 when its
lids left the face material).

A material's layer is decided, strongest first, by

1. ``override``: the manifest record's ``layers`` {material name: layer};
2. ``name``: a dictionary of keywords (Japanese and English) found in the material's
   name, English name or texture file name, all NFKC-normalised, lower-cased and
   stripped of spaces, ``_ - . ・``. The longest keyword found wins; between equally
   long ones the one ending last (compounds are head-final: 髪リボン is a ribbon).
   A bare "hair" (髪, hair) says hair but not which side: geometry picks front or back
   (centroid behind or in front of the skull centre); "skin" (肌, skin) picks face or body
   (centroid above or below the neck bone);
3. ``geometry``, where names say nothing: per material the centroid, the share of its
   skinning on the head bone 頭 and its subtree, its extent and its colour (diffuse times
   the median texel under its vertices).
   Hair-like (moves with the head, not skin-coloured, reaches the skull top or hangs
   below the chin) -> back_hair behind the skull centre, front_hair in front;
   skin-coloured on the head -> face, between chin and neck bone -> neck, below the
   neck bone -> body; anything else reaching below the neck bone -> clothes; the rest
   -> the fallback layer (accessory).

Everything is configurable with a YAML or JSON file (:func:`load_config`)::

    layers: [back_hair, body, ...]    # draw order; replaces the default list
    keywords: {しっぽ: accessory}      # merged over the default dictionary (null removes)
    parts: {"^PartTail": accessory}   # Live2D part-ID regexes, checked before the defaults
    fallback: accessory               # for materials and parts nothing matches
    rename: {eyelash_brow: brows}     # renames a layer everywhere

Default dictionary entries (and geometry results) that name a layer the config lacks
go to the fallback layer; the user's own entries must name known layers.
"""
from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from annotator.head import (HEAD_BONE, NECK_BONE, NotACharacter, bone_mask, bone_weight, descendants,
                            suggest_head_bounds)
from renderer.model import Model

LAYERS = ("back_hair", "neck", "body", "clothes", "face", "eye_white", "iris", "eyelash_brow", "mouth",
          "front_hair", "accessory")
HAIR = "hair"  # a keyword target meaning "hair; geometry decides front or back"
SKIN = "skin"  # a keyword target meaning "skin; geometry decides face or body"
DECIDED = ("override", "name", "geometry")  # how an Assignment was decided, strongest first


def normalise(text: str) -> str:
    """NFKC, lower case, no spaces or separators: how names and keywords are compared."""
    return re.sub(r"[\s_\-.・]+", "", unicodedata.normalize("NFKC", text).lower())


_K = {
    "back_hair": "後髪 後ろ髪 うしろ髪 後頭髪 backhair hairback rearhair",
    "front_hair": "前髪 まえがみ bangs fringe fronthair hairfront",
    HAIR: "髪 かみ ヘア hair アホ毛 あほ毛 ahoge ツインテ twintail おさげ ポニテ ponytail",
    "face": "顔 頬 鼻 耳 face cheek nose",
    SKIN: "肌 skin",
    "eye_white": "白目 しろめ eyewhite whiteeye sclera",
    "iris": "瞳 目 眼 ハイライト eye iris pupil hitomi",
    "eyelash_brow": "眉 まゆ 睫毛 まつげ まつ毛 マツゲ 瞼 まぶた brow lash eyelid",
    "mouth": "口 歯 舌 唇 mouth teeth tooth tongue lip",
    "clothes": "服 衣 上着 スカート シャツ ネクタイ リボン 袖 襟 靴 手袋 ニーソ ズボン 着物 帯 "
               "cloth shirt skirt ribbon dress jacket coat sleeve collar uniform glove sock shoe boot "
               "pants vest necktie",
    "body": "体 ボディ 腕 手 脚 足 body arm hand leg",
    "neck": "首 neck",
    "accessory": "髪飾 髪留 ヘアピン ヘアゴム ヘアバンド 首輪 首飾 hairpin clip hairband necklace "
                 "headset headphone",
}
KEYWORDS = {normalise(word): layer for layer, words in _K.items() for word in words.split()}

PARTS = (  # Live2D part IDs (regex, case-insensitive search) -> layer; first match wins
    (r"hair.*back|back.*hair|後ろ?髪", "back_hair"),
    (r"hair.*(front|side|bang)|(front|side|bang).*hair|bangs|前髪|横髪", "front_hair"),
    (r"eye.*white|white.*eye|sclera|白目", "eye_white"),
    (r"brow|lash|eyelid|眉|まつ|まぶた|瞼", "eyelash_brow"),  # lids close over the eyes
    (r"eyeball|iris|pupil|hitomi|eye|瞳|目", "iris"),
    (r"mouth|lip|teeth|tongue|口", "mouth"),
    (r"face|cheek|nose|head|顔", "face"),
    (r"neck|首", "neck"),
    (r"cloth|shirt|skirt|ribbon|dress|coat|jacket|uniform|服", "clothes"),
    (r"body|arm|hand|leg|torso|体|腕", "body"),
    (r"hair|髪", "front_hair"),
)

# Geometry thresholds: skinning shares, then fractions of the head height (top - chin).
HEAD_SHARE = 0.8  # a material moves with the head when this share of its skinning is on 頭's subtree
SKULL_WEIGHT = 0.5  # a vertex belongs to the skull when 頭 itself carries this much of it
SKULL_TOP = 0.75  # hair reaches this height above the chin...
HANGS = 0.25  # ...or hangs this far below it


class LayerConfigError(ValueError):
    """A layer config (file or overrides) is malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class LayerConfig:
    """Layer names in draw order, the material-name dictionary, Live2D part patterns, the fallback."""

    names: tuple[str, ...] = LAYERS
    keywords: Mapping[str, str] = field(default_factory=lambda: dict(KEYWORDS))
    parts: tuple[tuple[str, str], ...] = PARTS
    fallback: str = "accessory"
    rename: Mapping[str, str] = field(default_factory=dict)

    def layer(self, canonical: str) -> str:
        """A default layer name as this config calls it, or the fallback when it has none."""
        name = self.rename.get(canonical, canonical)
        return name if name in self.names else self.fallback

    def part_layer(self, part_id: str) -> str:
        """The layer of a Live2D part ID: the first matching pattern, else the fallback."""
        for pattern, layer in self.parts:
            if re.search(pattern, part_id, re.IGNORECASE):
                return self.layer(layer)
        return self.fallback


DEFAULT = LayerConfig()


@dataclass(frozen=True)
class Assignment:
    """One material's layer and how it was decided (``override``, ``name`` or ``geometry``)."""

    material: int
    name: str
    layer: str
    decided: str
    reason: str


# ---- configuration ------------------------------------------------------------------------

def make_config(data: Mapping[str, Any], where: str = "<config>") -> LayerConfig:
    """A config from decoded YAML/JSON (see the module docstring); problems raise LayerConfigError."""
    if not isinstance(data, Mapping):
        raise LayerConfigError(f"{where}: a layer config must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - {"layers", "keywords", "parts", "fallback", "rename"})
    if unknown:
        raise LayerConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
    rename = _str_map(data.get("rename") or {}, "rename", where)
    names = [rename.get(n, n) for n in _str_list(data.get("layers", LAYERS), "layers", where)]
    if len(set(names)) != len(names) or not names:
        raise LayerConfigError(f"{where}: layers must be distinct, non-empty names, got {names}")
    fallback = rename.get(str(data.get("fallback", "accessory")), str(data.get("fallback", "accessory")))
    own_keywords = _str_map(data.get("keywords") or {}, "keywords", where, nullable=True)
    own_parts = _str_map(data.get("parts") or {}, "parts", where)
    config = LayerConfig(names=tuple(names), fallback=fallback, rename=rename,
                         keywords={normalise(k): v for k, v in {**KEYWORDS, **own_keywords}.items()
                                   if v is not None},
                         parts=(*own_parts.items(), *PARTS))
    _check_targets(config, own_keywords, own_parts, where)
    return config


def _check_targets(config: LayerConfig, keywords: Mapping[str, str | None], parts: Mapping[str, str],
                   where: str) -> None:
    if config.fallback not in config.names:
        raise LayerConfigError(f"{where}: fallback {config.fallback!r} is not one of the layers {list(config.names)}")
    for pattern in parts:
        try:
            re.compile(pattern)
        except re.error as error:
            raise LayerConfigError(f"{where}: part pattern {pattern!r} is not a regex ({error})") from None
    targets = {config.rename.get(v, v) for v in [*keywords.values(), *parts.values()] if v is not None}
    bad = sorted(targets - set(config.names) - {HAIR, SKIN})
    if bad:
        raise LayerConfigError(f"{where}: entries name unknown layer(s) {bad}; layers are {list(config.names)}")


def _str_list(value: Any, name: str, where: str) -> list[str]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise LayerConfigError(f"{where}: {name} must be a list of names, got {value!r}")
    return list(value)


def _str_map(value: Any, name: str, where: str, nullable: bool = False) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and (isinstance(v, str) or (nullable and v is None)) for k, v in value.items()):
        raise LayerConfigError(f"{where}: {name} must map names to layer names, got {value!r}")
    return dict(value)


def load_config(path: str | os.PathLike | None) -> LayerConfig:
    """The config in a YAML or JSON file (``.json`` read as JSON, anything else as YAML); None: default."""
    if path is None:
        return DEFAULT
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LayerConfigError(f"{path}: cannot read the layer config ({error})") from None
    is_json = path.suffix.lower() == ".json"
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise LayerConfigError(f"{path}: not valid {'JSON' if is_json else 'YAML'} ({error})") from None
    return make_config(data or {}, str(path))


# ---- assignment --------------------------------------------------------------------------

def assign_layers(model: Model, overrides: Mapping[str, str] | None = None, config: LayerConfig = DEFAULT,
                  head_bounds: tuple[float, float] | None = None) -> list[Assignment]:
    """Every material's layer, in material order (see the module docstring for the rules).

    ``overrides`` naming a material the model lacks are ignored (a stale manifest entry
    must not fail a build); one naming an unknown layer raises LayerConfigError.
    """
    overrides = dict(overrides or {})
    bad = sorted({layer for layer in overrides.values() if layer not in config.names})
    if bad:
        where = model.path or model.name
        raise LayerConfigError(f"{where}: layer override(s) name unknown layer(s) {bad}; "
                               f"layers are {list(config.names)}")
    geometry = _Geometry(model, head_bounds)
    result = []
    for i, name in enumerate(model.materials.names):
        if name in overrides:
            result.append(Assignment(i, name, overrides[name], "override", "manifest layers override"))
            continue
        found = _keyword(_name_sources(model, i), config.keywords)
        if found is None:
            layer, reason = geometry.layer(i)
            result.append(Assignment(i, name, config.layer(layer), "geometry", reason))
        elif config.keywords[found[1]] in (HAIR, SKIN):
            kind = config.keywords[found[1]]
            layer, reason = geometry.hair_side(i) if kind == HAIR else geometry.skin_side(i)
            result.append(Assignment(i, name, config.layer(layer), "geometry", f"{found[0]} says {kind}; {reason}"))
        else:
            layer = config.layer(config.keywords[found[1]])
            result.append(Assignment(i, name, layer, "name", f"{found[0]} contains {found[1]!r}"))
    return result


def layer_groups(assignments: Sequence[Assignment], names: Sequence[str]) -> list[list[int]]:
    """Material indices of each layer, in the order of ``names`` (materials keep file order)."""
    return [[a.material for a in assignments if a.layer == layer] for layer in names]


def _name_sources(model: Model, i: int) -> list[tuple[str, str]]:
    """(label, text) of what may name material i: its names and its texture's file stem."""
    mats = model.materials
    texture = (mats.texture[i] or "").split("*")[0].replace("\\", "/").rsplit("/", 1)[-1]
    stem = texture.rsplit(".", 1)[0] if "." in texture else texture
    sources = [("name", mats.names[i]), ("English name", mats.names_en[i] if i < len(mats.names_en) else ""),
               ("texture", stem)]
    return [(f"{label} {text!r}", normalise(text)) for label, text in sources if text]


def _keyword(sources: list[tuple[str, str]], keywords: Mapping[str, str]) -> tuple[str, str] | None:
    """(source label, keyword) of the first source containing a keyword: the longest, then the last."""
    for label, text in sources:
        found = [(len(k), text.rfind(k) + len(k), k) for k in keywords if k and k in text]
        if found:
            return label, max(found)[2]
    return None


class _Geometry:
    """Per-material statistics that place unnamed materials relative to the head and neck."""

    def __init__(self, model: Model, head_bounds: tuple[float, float] | None) -> None:
        self.model = model
        self.bounds = head_bounds or _head_bounds(model)
        corners = np.asarray(model.indices, np.int64).reshape(-1)
        owner = _corner_materials(model)
        keep = owner >= 0
        corners, owner = corners[keep], owner[keep]
        count = len(model.materials)
        self.count = np.bincount(owner, minlength=count)
        positions = model.vertices.positions[corners].astype(np.float64)
        safe = np.maximum(self.count, 1)[:, None]
        self.centroid = np.stack([np.bincount(owner, positions[:, k], count) for k in range(3)], 1) / safe
        self.top = np.full(count, -np.inf)
        self.bottom = np.full(count, np.inf)
        np.maximum.at(self.top, owner, positions[:, 1])
        np.minimum.at(self.bottom, owner, positions[:, 1])
        head = model.bones.find(HEAD_BONE)
        self.head_share = np.zeros(count)
        self.skull_z = 0.0
        if head >= 0:
            weight = bone_weight(model, descendants(model, head))
            self.head_share = np.bincount(owner, weight[corners], count) / safe[:, 0]
            skull = model.vertices.positions[bone_weight(model, bone_mask(model, head)) >= SKULL_WEIGHT, 2]
            self.skull_z = float(skull.min() + skull.max()) / 2 if len(skull) else float(model.bones.positions[head, 2])
        neck = model.bones.find(NECK_BONE)
        self.neck_y = float(model.bones.positions[neck, 1]) if neck >= 0 else None
        self.skin = _skin_coloured(material_colours(model, corners, owner))

    def hair_side(self, i: int) -> tuple[str, str]:
        if self.count[i] == 0:
            return "front_hair", "no faces: front_hair"
        if self.centroid[i, 2] < self.skull_z:
            return "back_hair", "centroid behind the skull centre"
        return "front_hair", "centroid in front of the skull centre"

    def skin_side(self, i: int) -> tuple[str, str]:
        if self.neck_y is not None and self.count[i] and self.centroid[i, 1] < self.neck_y:
            return "body", "centroid below the neck bone"
        return "face", "centroid above the neck bone"

    def layer(self, i: int) -> tuple[str, str]:
        if self.count[i] == 0:
            return "accessory", "no faces"
        if self.bounds is None:
            return "accessory", "no head to place it against"
        top, chin = self.bounds
        height = top - chin
        y = self.centroid[i, 1]
        with_head = self.head_share[i] >= HEAD_SHARE
        if with_head and not self.skin[i] and (self.top[i] >= chin + SKULL_TOP * height
                                              or self.bottom[i] <= chin - HANGS * height):
            side, reason = self.hair_side(i)
            return side, f"hair-like (moves with the head, reaches the skull top or hangs), {reason}"
        if self.skin[i]:
            if self.neck_y is not None and y < self.neck_y:
                return "body", "skin-coloured, below the neck bone"
            if y >= chin:
                return "face", "skin-coloured, on the head"
            return "neck", "skin-coloured, between chin and neck bone"
        if self.neck_y is not None and self.bottom[i] < self.neck_y:
            return "clothes", "not skin-coloured, reaches below the neck bone"
        return "accessory", "names and geometry say nothing"


def _head_bounds(model: Model) -> tuple[float, float] | None:
    try:
        top, chin, _confidence = suggest_head_bounds(model)
    except NotACharacter:
        return None
    return top, chin


def _corner_materials(model: Model) -> np.ndarray:
    """Material of every index (triangle corner) of ``model.indices``, -1 where none claims it."""
    mats = model.materials
    total = np.asarray(model.indices).size
    owner = np.full(total, -1, np.int64)
    counts = np.asarray(mats.index_count, np.int64)
    starts = np.asarray(mats.index_start, np.int64)
    positions = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    valid = positions < total
    owner[positions[valid]] = np.repeat(np.arange(len(mats)), counts)[valid]
    return owner


def material_colours(model: Model, corners: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """(M, 3) diffuse RGB times the median texel under each material's vertices (each texture decoded once).

    ``corners`` are vertex indices and ``owner`` their materials (as _Geometry makes them).
    """
    from renderer.textures import load_texture

    colours = np.asarray(model.materials.diffuse[:, :3], np.float64).copy()
    images: dict[str, np.ndarray] = {}
    for i, name in enumerate(model.materials.texture):
        path = model.texture_paths.get(name) if name else None
        mine = corners[owner == i]
        if path is None or not len(mine):
            continue
        if path not in images:
            images[path] = load_texture(path)[..., :3]
        image = images[path]
        uv = np.mod(model.vertices.uv[mine], 1.0)
        rows = np.minimum((uv[:, 1] * image.shape[0]).astype(np.int64), image.shape[0] - 1)
        cols = np.minimum((uv[:, 0] * image.shape[1]).astype(np.int64), image.shape[1] - 1)
        colours[i] *= np.median(image[rows, cols], axis=0) / 255.0
    return colours


def _skin_coloured(rgb: np.ndarray) -> np.ndarray:
    """Light, warm, low-saturation colours: r >= g >= b, r bright, r - b between 0.08 and 0.5."""
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    return (r >= 0.6) & (r >= g) & (g >= b) & (r - b >= 0.08) & (r - b <= 0.5)

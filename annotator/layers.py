"""Semantic layers: the layer taxonomy, its configuration, and each material's class.

The default taxonomy is See-through's 23 part classes (SIGGRAPH 2026), in draw order
(back to front) for a head-and-shoulders view::

    back hair, wings, tail, legwear, footwear, bottomwear, neck, topwear, handwear,
    neckwear, ears, face, nose, mouth, eyewhite, irides, eyelash, eyebrow, eyewear,
    earwear, front hair, headwear, objects

(the neck under the topwear, as in rigs where the collar covers it; lids and lashes over
the irides, so a closed lid covers the eye). See-through has no class for bare skin
below the neck; its canonical kind ``body`` goes with the upper body, ``topwear``.
The preset ``coarse`` keeps the earlier 11 layers::

    back_hair, neck, body, clothes, face, eye_white, iris, eyelash_brow, mouth,
    front_hair, accessory

Classes are decided per part, not per material (:mod:`annotator.parts` splits faces);
this module decides a material's *kind*, which parts start from, strongest first:

1. ``override``: the manifest record's ``layers`` {material name: layer};
2. ``name``: a dictionary of keywords (Japanese and English) found in the material's
   name, English name or texture file name, all NFKC-normalised, lower-cased and
   stripped of spaces, ``_ - . ・``. The longest keyword found wins; between equally
   long ones the one ending last (compounds are head-final: 髪リボン is a ribbon).
   Three keyword targets leave the class to geometry: ``hair`` (front or back),
   ``skin`` (face, neck or body) and ``wear`` (a ribbon or ornament: on the head,
   at the neck or on the clothes);
3. ``geometry``, where names say nothing: per material the centroid, the share of its
   skinning on the head bone 頭 and its subtree, its extent and its colour (diffuse times
   the median texel under its vertices). Hair-like (moves with the head, not
   skin-coloured, reaches the skull top or hangs below the chin) -> hair; skin-coloured
   -> skin; anything else reaching below the neck bone -> topwear; anything else moving
   with the head -> headwear; the rest -> the fallback class.

Everything is configurable with a YAML or JSON file (:func:`load_config`), or a preset
name (``see-through``, ``coarse``) in its place::

    preset: coarse                    # the base (default see-through)
    layers: [back_hair, body, ...]    # draw order; replaces the preset's list
    keywords: {しっぽ: accessory}      # merged over the default dictionary (null removes)
    parts: {"^PartTail": accessory}   # Live2D part-ID regexes, checked before the defaults
    fallback: accessory               # for materials and parts nothing matches
    rename: {eyelash_brow: brows}     # renames a layer everywhere

Keywords and parts name a layer of the config or a canonical kind (a See-through class
or ``body``), which the preset maps to its layers; kinds a config lacks go to the
fallback layer; the user's own entries must name known layers or kinds.
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

from annotator.head import NotACharacter, bone_mask, bone_weight, descendants, suggest_head_bounds
from renderer.errors import UserError
from renderer.humanoid import head_bone, neck_bone
from renderer.model import Model

LAYERS = ("back_hair", "neck", "body", "clothes", "face", "eye_white", "iris", "eyelash_brow", "mouth",
          "front_hair", "accessory")  # the coarse preset
CLASSES = ("back hair", "wings", "tail", "legwear", "footwear", "bottomwear", "neck", "topwear", "handwear",
           "neckwear", "ears", "face", "nose", "mouth", "eyewhite", "irides", "eyelash", "eyebrow", "eyewear",
           "earwear", "front hair", "headwear", "objects")  # See-through's 23, back to front
BODY = "body"  # canonical kind of bare skin below the neck (no See-through class of its own)
KINDS = (*CLASSES, BODY)
HAIR = "hair"  # a keyword target meaning "hair; geometry decides front or back"
SKIN = "skin"  # a keyword target meaning "skin; geometry decides face, neck or body"
WEAR = "wear"  # a keyword target meaning "worn; geometry decides head, neck or clothes"
UNDECIDED = (HAIR, SKIN, WEAR)
DECIDED = ("override", "name", "geometry")  # how an Assignment was decided, strongest first
COARSE = {"back hair": "back_hair", "neck": "neck", BODY: "body", "topwear": "clothes", "bottomwear": "clothes",
          "legwear": "clothes", "footwear": "clothes", "handwear": "clothes", "neckwear": "clothes",
          "ears": "face", "face": "face", "nose": "face", "eyewhite": "eye_white", "irides": "iris",
          "eyelash": "eyelash_brow", "eyebrow": "eyelash_brow", "mouth": "mouth", "front hair": "front_hair"}


def normalise(text: str) -> str:
    """NFKC, lower case, no spaces or separators: how names and keywords are compared."""
    return re.sub(r"[\s_\-.・]+", "", unicodedata.normalize("NFKC", text).lower())


_K = {
    "back hair": "後髪 後ろ髪 うしろ髪 後頭髪 backhair hairback rearhair",
    "front hair": "前髪 まえがみ bangs fringe fronthair hairfront",
    HAIR: "髪 かみ ヘア hair アホ毛 あほ毛 ahoge ツインテ twintail おさげ ポニテ ponytail",
    "face": "顔 頬 face cheek",
    "nose": "鼻 nose",
    "ears": "耳 ears",
    SKIN: "肌 skin",
    "eyewhite": "白目 しろめ eyewhite whiteeye sclera",
    "irides": "瞳 目 眼 ハイライト eye iris pupil hitomi",
    "eyebrow": "眉 まゆ brow",
    "eyelash": "睫毛 まつげ まつ毛 マツゲ 瞼 まぶた lash eyelid",
    "mouth": "口 歯 舌 唇 mouth teeth tooth tongue lip",
    "topwear": "服 衣 上着 シャツ 袖 襟 着物 制服 cloth shirt dress jacket coat sleeve collar uniform vest",
    "bottomwear": "スカート ズボン パンツ skirt pants shorts trousers",
    "legwear": "ニーソ 靴下 ソックス タイツ sock stocking tights",
    "footwear": "靴 ブーツ shoe boot",
    "handwear": "手袋 グローブ glove",
    "neckwear": "ネクタイ ネクタイ 首輪 首飾 マフラー necktie necklace scarf choker",
    WEAR: "リボン 飾 アクセ ribbon accessory ornament",
    BODY: "体 ボディ 腕 手 脚 足 body arm hand leg",
    "neck": "首 neck",
    "headwear": "帽子 髪飾 髪留 ヘアピン ヘアゴム ヘアバンド カチューシャ ヘッドセット ヘッドホン hat cap hairpin clip "
                "hairband headset headphone",
    "eyewear": "眼鏡 メガネ めがね glasses goggle",
    "earwear": "イヤリング ピアス 耳飾 earring",
    "tail": "尻尾 しっぽ シッポ tail",
    "wings": "羽 翼 wing",
    "objects": "ネギ 武器 剣 マイク leek weapon sword",
}
KEYWORDS = {normalise(word): kind for kind, words in _K.items() for word in words.split()}

PARTS = (  # Live2D part IDs (regex, case-insensitive search) -> kind; first match wins
    (r"hair.*back|back.*hair|後ろ?髪", "back hair"),
    (r"hair.*(front|side|bang)|(front|side|bang).*hair|bangs|前髪|横髪", "front hair"),
    (r"eye.*white|white.*eye|sclera|白目", "eyewhite"),
    (r"brow|眉", "eyebrow"),
    (r"lash|eyelid|まつ|まぶた|瞼", "eyelash"),  # lids close over the eyes
    (r"eyeball|iris|pupil|hitomi|eye|瞳|目", "irides"),
    (r"mouth|lip|teeth|tongue|口", "mouth"),
    (r"nose|鼻", "nose"),
    (r"hat|cap|headwear|帽", "headwear"),
    (r"face|cheek|head|顔", "face"),
    (r"neck|首", "neck"),
    (r"skirt|pants|スカート", "bottomwear"),
    (r"cloth|shirt|ribbon|dress|coat|jacket|uniform|服", "topwear"),
    (r"body|arm|hand|leg|torso|体|腕", BODY),
    (r"tail|尻尾", "tail"),
    (r"wing|羽", "wings"),
    (r"hair|髪", "front hair"),
)

# Geometry thresholds: skinning shares, then fractions of the head height (top - chin).
HEAD_SHARE = 0.8  # a material moves with the head when this share of its skinning is on 頭's subtree
SKULL_WEIGHT = 0.5  # a vertex belongs to the skull when 頭 itself carries this much of it
SKULL_TOP = 0.75  # hair reaches this height above the chin...
HANGS = 0.25  # ...or hangs this far below it


class LayerConfigError(UserError, ValueError):
    """A layer config (file or overrides) is malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class LayerConfig:
    """Layer names in draw order, kinds -> layers, the name dictionary, Live2D part patterns, the fallback."""

    names: tuple[str, ...] = CLASSES
    keywords: Mapping[str, str] = field(default_factory=lambda: dict(KEYWORDS))
    parts: tuple[tuple[str, str], ...] = PARTS
    fallback: str = "objects"
    rename: Mapping[str, str] = field(default_factory=dict)
    classes: Mapping[str, str] = field(default_factory=lambda: {BODY: "topwear"})  # kind -> layer, where not same
    preset: str = "see-through"

    def layer(self, kind: str) -> str:
        """The layer of a canonical kind (or of a layer name) in this config, or the fallback when it has none."""
        name = self.classes.get(kind, kind)
        name = self.rename.get(name, name)
        return name if name in self.names else self.fallback

    def part_layer(self, part_id: str) -> str:
        """The layer of a Live2D part ID: the first matching pattern, else the fallback."""
        for pattern, layer in self.parts:
            if re.search(pattern, part_id, re.IGNORECASE):
                return self.layer(layer)
        return self.fallback


PRESETS = {"see-through": LayerConfig(),
           "coarse": LayerConfig(names=LAYERS, fallback="accessory", classes=COARSE, preset="coarse")}
DEFAULT = PRESETS["see-through"]


@dataclass(frozen=True)
class Assignment:
    """One material's layer, its kind and how it was decided (``override``, ``name`` or ``geometry``).

    ``kind`` is what the name or geometry says before parts refine it: a canonical kind,
    ``hair``, ``skin`` or ``wear``; None for an override (its layer is final).
    """

    material: int
    name: str
    layer: str
    decided: str
    reason: str
    kind: str | None = None


# ---- configuration ------------------------------------------------------------------------

def make_config(data: Mapping[str, Any], where: str = "<config>") -> LayerConfig:
    """A config from decoded YAML/JSON (see the module docstring); problems raise LayerConfigError."""
    if not isinstance(data, Mapping):
        raise LayerConfigError(f"{where}: a layer config must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - {"preset", "layers", "keywords", "parts", "fallback", "rename"})
    if unknown:
        raise LayerConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
    base = PRESETS.get(str(data.get("preset", DEFAULT.preset)))
    if base is None:
        raise LayerConfigError(f"{where}: unknown preset {data.get('preset')!r}; presets are {', '.join(PRESETS)}")
    rename = _str_map(data.get("rename") or {}, "rename", where)
    names = [rename.get(n, n) for n in _str_list(data.get("layers", base.names), "layers", where)]
    if len(set(names)) != len(names) or not names:
        raise LayerConfigError(f"{where}: layers must be distinct, non-empty names, got {names}")
    fallback = str(data.get("fallback", base.fallback))
    own_keywords = _str_map(data.get("keywords") or {}, "keywords", where, nullable=True)
    own_parts = _str_map(data.get("parts") or {}, "parts", where)
    config = LayerConfig(names=tuple(names), fallback=rename.get(fallback, fallback), rename=rename,
                         keywords={normalise(k): v for k, v in {**KEYWORDS, **own_keywords}.items()
                                   if v is not None},
                         parts=(*own_parts.items(), *PARTS), classes=base.classes, preset=base.preset)
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
    targets = {v for v in [*keywords.values(), *parts.values()] if v is not None}
    known = {*config.names, *config.rename, *KINDS, *UNDECIDED}
    bad = sorted(targets - known)
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
    """A preset by name, or the config in a YAML or JSON file (``.json`` read as JSON, anything else as
    YAML); None: the default (See-through's classes)."""
    if path is None:
        return DEFAULT
    if str(path) in PRESETS:
        return PRESETS[str(path)]
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LayerConfigError(f"{path}: neither a preset ({', '.join(PRESETS)}) nor a readable layer config "
                               f"({error})") from None
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

    ``overrides`` name a layer of ``config`` or a canonical kind; one naming a material the
    model lacks is ignored (a stale manifest entry must not fail a build); one naming an
    unknown layer raises LayerConfigError.
    """
    overrides = dict(overrides or {})
    bad = sorted({layer for layer in overrides.values() if layer not in config.names and layer not in KINDS})
    if bad:
        where = model.path or model.name
        raise LayerConfigError(f"{where}: layer override(s) name unknown layer(s) {bad}; "
                               f"layers are {list(config.names)}")
    geometry = Geometry(model, head_bounds)
    result = []
    for i, name in enumerate(model.materials.names):
        if name in overrides:
            result.append(Assignment(i, name, config.layer(overrides[name]), "override", "manifest layers override"))
            continue
        found = _keyword(_name_sources(model, i), config.keywords)
        if found is None:
            kind, reason = geometry.kind(i)
            decided = "geometry"
        else:
            kind, reason = config.keywords[found[1]], f"{found[0]} contains {found[1]!r}"
            decided = "geometry" if kind in UNDECIDED else "name"
        side, why = geometry.resolve(i, kind)
        result.append(Assignment(i, name, config.layer(side), decided, f"{reason}; {why}" if why else reason, kind))
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


WHOLE_WORDS = {"hat", "cap", "arm", "leg", "lip", "ears"}  # keywords inside many words: count only alone


def _keyword(sources: list[tuple[str, str]], keywords: Mapping[str, str]) -> tuple[str, str] | None:
    """(source label, keyword) of the first source containing a keyword: the longest, then the last."""
    for label, text in sources:
        found = [(len(k), end, k) for k in keywords if k and k in text and (end := _found_end(text, k))]
        if found:
            return label, max(found)[2]
    return None


def _found_end(text: str, keyword: str) -> int:
    """Where the last occurrence of ``keyword`` in ``text`` ends, 0 when none counts: a WHOLE_WORDS
    keyword inside a longer word ("hat" in "hatune", "arm" in "warm") does not."""
    if keyword not in WHOLE_WORDS:
        return text.rfind(keyword) + len(keyword)
    ends = [m.end() for m in re.finditer(rf"(?<![a-z]){re.escape(keyword)}(?![a-z])", text)]
    return ends[-1] if ends else 0


class Geometry:
    """Per-material statistics that place unnamed materials relative to the head and neck."""

    def __init__(self, model: Model, head_bounds: tuple[float, float] | None) -> None:
        self.model = model
        self.bounds = head_bounds or _head_bounds(model)
        corners = np.asarray(model.indices, np.int64).reshape(-1)
        owner = corner_materials(model)
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
        head = head_bone(model)
        self.head_share = np.zeros(count)
        self.head_weight = np.zeros(len(model.vertices))  # per vertex, skinning on 頭's subtree
        self.skull_z = 0.0
        if head >= 0:
            weight = self.head_weight = bone_weight(model, descendants(model, head))
            self.head_share = np.bincount(owner, weight[corners], count) / safe[:, 0]
            skull = model.vertices.positions[bone_weight(model, bone_mask(model, head)) >= SKULL_WEIGHT, 2]
            self.skull_z = float(skull.min() + skull.max()) / 2 if len(skull) else float(model.bones.positions[head, 2])
        neck = neck_bone(model)
        self.neck_y = float(model.bones.positions[neck, 1]) if neck >= 0 else None
        self.skin = skin_coloured(material_colours(model, corners, owner))

    def resolve(self, i: int, kind: str) -> tuple[str, str]:
        """(kind, reason) of a whole material whose kind may be undecided (hair, skin, wear)."""
        if kind == HAIR:
            if self.count[i] and self.centroid[i, 2] < self.skull_z:
                return "back hair", "centroid behind the skull centre"
            return "front hair", "centroid in front of the skull centre"
        if kind == SKIN:
            if self.neck_y is not None and self.count[i] and self.centroid[i, 1] < self.neck_y:
                return BODY, "centroid below the neck bone"
            return "face", "centroid above the neck bone"
        if kind == WEAR:
            if self.head_share[i] >= HEAD_SHARE:
                return "headwear", "moves with the head"
            return "topwear", "does not move with the head"
        return kind, ""

    def kind(self, i: int) -> tuple[str, str]:
        """(kind, reason) of a material that names say nothing about."""
        if self.count[i] == 0:
            return "objects", "no faces"
        if self.bounds is None:
            return "objects", "no head to place it against"
        top, chin = self.bounds
        height = top - chin
        with_head = self.head_share[i] >= HEAD_SHARE
        if with_head and not self.skin[i] and (self.top[i] >= chin + SKULL_TOP * height
                                              or self.bottom[i] <= chin - HANGS * height):
            return HAIR, "hair-like (moves with the head, reaches the skull top or hangs)"
        if self.skin[i]:
            if self.neck_y is not None and self.centroid[i, 1] < self.neck_y or self.centroid[i, 1] >= chin:
                return SKIN, "skin-coloured"
            return "neck", "skin-coloured, between chin and neck bone"
        if self.neck_y is not None and self.bottom[i] < self.neck_y:
            return "topwear", "not skin-coloured, reaches below the neck bone"
        if with_head:
            return "headwear", "moves with the head, names say nothing"
        return "objects", "names and geometry say nothing"


def _head_bounds(model: Model) -> tuple[float, float] | None:
    try:
        top, chin, _confidence = suggest_head_bounds(model)
    except NotACharacter:
        return None
    return top, chin


def corner_materials(model: Model) -> np.ndarray:
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
    """(M, 3) diffuse RGB times the median texel under each material's vertices.

    ``corners`` are vertex indices and ``owner`` their materials (as Geometry makes them).
    """
    colours = corner_colours(model, corners, owner)
    result = np.asarray(model.materials.diffuse[:, :3], np.float64).copy()
    for i in np.unique(owner):
        result[i] = np.median(colours[owner == i], axis=0)
    return result


def corner_colours(model: Model, corners: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """(K, 3) diffuse RGB times the texel under each vertex ``corners[k]`` of material ``owner[k]``
    (each texture decoded once)."""
    from renderer.textures import load_texture

    colours = np.asarray(model.materials.diffuse[:, :3], np.float64)[owner].copy()
    images: dict[str, np.ndarray] = {}
    for i, name in enumerate(model.materials.texture):
        path = model.texture_paths.get(name) if name else None
        rows = np.flatnonzero(owner == i)
        if path is None or not len(rows):
            continue
        if path not in images:
            images[path] = load_texture(path)[..., :3]
        image = images[path]
        uv = np.mod(model.vertices.uv[corners[rows]], 1.0)
        y = np.minimum((uv[:, 1] * image.shape[0]).astype(np.int64), image.shape[0] - 1)
        x = np.minimum((uv[:, 0] * image.shape[1]).astype(np.int64), image.shape[1] - 1)
        colours[rows] *= image[y, x] / 255.0
    return colours


def skin_coloured(rgb: np.ndarray) -> np.ndarray:
    """Light, warm, low-saturation colours: r >= g >= b, r bright, r - b between 0.08 and 0.5."""
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    return (r >= 0.6) & (r >= g) & (g >= b) & (r - b >= 0.08) & (r - b <= 0.5)

"""Pose schemas: what each number of a pose means, declared as data in ``manifests/schemas/*.yaml``.

A schema is the one home of a pose layout. Every other part (sampling, binding a model's
morphs and bones, the renderer's drivers, shards, the reader, verify, preview) takes a
schema; none restates a layout. ``tha1`` is DESIGN.md's 6 numbers (the default), ``tha3``
THA3 / THA4's 45; any other layout (AnimeCeleb, ARKit) is a new file, not new code.

File keys: ``name``, ``description``, ``framing`` (``size``: default image side;
``head_height``: head top to chin as a share of the image height; ``head_centre``: the
head's middle as a share of the height from the top), ``roles`` (morph roles beyond the
manifest's, each with MMD's usual ``names`` and the ``effect`` it must show: brow, eyes or
mouth), ``defaults`` (keys every parameter gets unless it says otherwise) and
``parameters``, in pose order. A parameter has a ``name`` (or a ``group`` with ``arity`` 2:
``{group}_left`` then ``{group}_right``, "{side}" in its strings replaced), a ``category``,
a ``kind`` (expression: morphs, zeroed in no image; rotation: set to its default in the
expression image), a ``range``, a ``default`` (what a model that cannot express it gets),
a ``rest`` value (the rest image), a ``sampling`` distribution (``uniform``, or
``linear_extremes``: density growing linearly from the default to the range's ends, f(x) =
|x| on [-1, 1]), ``active`` (the chance a sample moves it off its default), ``required``
(a model without a driver is refused) and ``check`` (the channel check it must pass:
eye_left, eye_right or mouth) and a ``driver``: ``{morph: [role, ...]}`` (the first role the
model has; ``role[side]`` is one side's half of the role's morph) or ``{bone: [bone, ...],
axis, degrees}`` (the first humanoid bone the model has, ``a+b`` for two bones driven
together, rotated about the character's axis by ``degrees`` at value 1).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

SCHEMA_DIR = Path(__file__).parent / "schemas"
DEFAULT_SCHEMA = "tha1"
KINDS = ("expression", "rotation")
DISTRIBUTIONS = ("uniform", "linear_extremes")
AXES = ("x", "y", "z")
SIDES = ("left", "right")
EFFECTS = ("brow", "eyes", "mouth")
CHECKS = ("eye_left", "eye_right", "mouth")
_PARAMETER_KEYS = {"name", "group", "arity", "category", "kind", "range", "default", "rest", "sampling",
                   "active", "required", "check", "driver"}


class SchemaError(ValueError):
    """A schema file is missing or malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class MorphDriver:
    """Roles tried in order; ``role[side]`` is that side's half of the role's morph."""

    roles: tuple[str, ...]


@dataclass(frozen=True)
class BoneDriver:
    """Humanoid bones tried in order (each a tuple of bones driven together), axis and angle at 1."""

    bones: tuple[tuple[str, ...], ...]
    axis: str
    degrees: float


@dataclass(frozen=True)
class Parameter:
    name: str
    group: str
    category: str
    kind: str
    range: tuple[float, float]
    default: float
    rest: float
    sampling: str
    active: float
    required: bool
    check: str | None
    driver: MorphDriver | BoneDriver | None


@dataclass(frozen=True)
class Framing:
    size: int
    head_height: float  # head top to chin, share of the image height
    head_centre: float  # the head's middle, share of the image height from the top


@dataclass(frozen=True)
class RoleSpec:
    names: tuple[str, ...]
    effect: str


@dataclass(frozen=True)
class PoseSchema:
    name: str
    description: str
    parameters: tuple[Parameter, ...]
    framing: Framing
    roles: dict[str, RoleSpec] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.parameters)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def vector(self, attribute: str) -> np.ndarray:
        """One float32 value per parameter: ``default``, ``rest``, or ``low`` / ``high`` of the range."""
        if attribute in ("low", "high"):
            return np.array([p.range[attribute == "high"] for p in self.parameters], np.float32)
        return np.array([getattr(p, attribute) for p in self.parameters], np.float32)

    def of_kind(self, kind: str) -> np.ndarray:
        """Boolean mask of the parameters of ``kind`` (expression or rotation)."""
        return np.array([p.kind == kind for p in self.parameters], bool)

    def to_json(self) -> str:
        """The whole schema as JSON (what shards store beside the poses)."""
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


def load_schema(name_or_path: str | os.PathLike[str] = DEFAULT_SCHEMA) -> PoseSchema:
    """A preset by name (``tha1``, ``tha3``: ``manifests/schemas/{name}.yaml``) or a schema file's path."""
    text = str(name_or_path)
    path = Path(text) if text.endswith((".yaml", ".yml", ".json")) or os.sep in text else SCHEMA_DIR / f"{text}.yaml"
    return _load(str(path.resolve()))


def presets() -> list[str]:
    return sorted(path.stem for path in SCHEMA_DIR.glob("*.yaml"))


def schema_from_json(text: str) -> PoseSchema:
    """Inverse of :meth:`PoseSchema.to_json` (a shard's stored schema)."""
    data = json.loads(text)
    return PoseSchema(name=data["name"], description=data["description"],
                      parameters=tuple(_parameter_from_dict(p) for p in data["parameters"]),
                      framing=Framing(**data["framing"]),
                      roles={k: RoleSpec(tuple(v["names"]), v["effect"]) for k, v in data["roles"].items()})


def _parameter_from_dict(data: dict[str, Any]) -> Parameter:
    driver = data["driver"]
    if driver is not None:
        driver = (BoneDriver(tuple(map(tuple, driver["bones"])), driver["axis"], driver["degrees"])
                  if "bones" in driver else MorphDriver(tuple(driver["roles"])))
    return Parameter(**{**data, "range": tuple(data["range"]), "driver": driver})


@lru_cache(maxsize=16)
def _load(path: str) -> PoseSchema:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaError(f"{path}: no such pose schema (presets: {', '.join(presets())})") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise SchemaError(f"{path}: cannot read the pose schema ({error})") from None
    return parse_schema(data, path)


def parse_schema(data: Any, where: str) -> PoseSchema:
    """Validate a decoded schema file; every problem raises SchemaError naming ``where``."""
    if not isinstance(data, dict) or not isinstance(data.get("parameters"), list) or not data["parameters"]:
        raise SchemaError(f"{where}: a schema is a mapping with a non-empty 'parameters' list")
    defaults = data.get("defaults") or {}
    parameters = [parameter for i, entry in enumerate(data["parameters"])
                  for parameter in _expand({**defaults, **_mapping(entry, f"{where}: parameter {i}")},
                                           f"{where}: parameter {i}")]
    names = [p.name for p in parameters]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SchemaError(f"{where}: parameter names repeat: {', '.join(repeated)}")
    roles = {str(role): _role(spec, f"{where}: role {role}") for role, spec in (data.get("roles") or {}).items()}
    try:
        framing = Framing(int(data["framing"]["size"]), float(data["framing"]["head_height"]),
                          float(data["framing"]["head_centre"]))
    except (KeyError, TypeError, ValueError):
        raise SchemaError(f"{where}: framing needs size, head_height and head_centre") from None
    return PoseSchema(name=str(data.get("name") or Path(where).stem), description=str(data.get("description", "")),
                      parameters=tuple(parameters), framing=framing, roles=roles)


def _mapping(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise SchemaError(f"{where}: must be a mapping, got {entry!r}")
    unknown = sorted(set(entry) - _PARAMETER_KEYS)
    if unknown:
        raise SchemaError(f"{where}: unknown key(s) {', '.join(unknown)}")
    return entry


def _expand(entry: dict[str, Any], where: str) -> list[Parameter]:
    """One parameter, or a group of arity 2 as {group}_left, {group}_right with "{side}" filled in."""
    group = entry.get("group") or entry.get("name")
    if not isinstance(group, str) or not group:
        raise SchemaError(f"{where}: needs a name or a group")
    arity = entry.get("arity", 1)
    if arity == 1:
        return [_parameter(entry, entry.get("name") or group, group, where)]
    if arity != 2:
        raise SchemaError(f"{where}: arity must be 1 or 2, got {arity!r}")
    return [_parameter(_fill(entry, side), f"{group}_{side}", group, f"{where} ({side})") for side in SIDES]


def _fill(value: Any, side: str) -> Any:
    if isinstance(value, str):
        return value.replace("{side}", side)
    if isinstance(value, list):
        return [_fill(v, side) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, side) for k, v in value.items()}
    return value


def _parameter(entry: dict[str, Any], name: str, group: str, where: str) -> Parameter:
    try:
        low, high = (float(v) for v in entry.get("range", (0.0, 1.0)))
        default = float(entry.get("default", 0.0))
        rest = float(entry.get("rest", default))
        active = float(entry.get("active", 1.0))
    except (TypeError, ValueError):
        raise SchemaError(f"{where}: range, default, rest and active must be numbers") from None
    kind, sampling, check = entry.get("kind", "expression"), entry.get("sampling", "uniform"), entry.get("check")
    for value, choices, key in ((kind, KINDS, "kind"), (sampling, DISTRIBUTIONS, "sampling")):
        if value not in choices:
            raise SchemaError(f"{where}: {key} must be one of {', '.join(choices)}, got {value!r}")
    if check is not None and check not in CHECKS:
        raise SchemaError(f"{where}: check must be one of {', '.join(CHECKS)}, got {check!r}")
    if not (low < high and low <= default <= high and low <= rest <= high and 0.0 <= active <= 1.0):
        raise SchemaError(f"{where}: needs low < high, default and rest within the range, active in [0, 1]")
    return Parameter(name=name, group=group, category=str(entry.get("category", group)), kind=kind,
                     range=(low, high), default=default, rest=rest, sampling=sampling, active=active,
                     required=bool(entry.get("required", False)), check=check,
                     driver=_driver(entry.get("driver"), where))


def _driver(spec: Any, where: str) -> MorphDriver | BoneDriver | None:
    if spec is None:
        return None
    if isinstance(spec, dict) and set(spec) == {"morph"} and _strings(spec["morph"]):
        return MorphDriver(tuple(spec["morph"]))
    if isinstance(spec, dict) and set(spec) == {"bone", "axis", "degrees"} and _strings(spec["bone"]) \
            and spec["axis"] in AXES and isinstance(spec["degrees"], (int, float)):
        return BoneDriver(tuple(tuple(b.split("+")) for b in spec["bone"]), spec["axis"], float(spec["degrees"]))
    raise SchemaError(f"{where}: driver must be {{morph: [roles]}} or {{bone: [bones], axis: x|y|z, degrees: n}}, "
                      f"got {spec!r}")


def _role(spec: Any, where: str) -> RoleSpec:
    if not isinstance(spec, dict) or not _strings(spec.get("names")) or spec.get("effect") not in EFFECTS:
        raise SchemaError(f"{where}: needs names (a list) and an effect ({', '.join(EFFECTS)})")
    return RoleSpec(tuple(spec["names"]), spec["effect"])


def _strings(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)

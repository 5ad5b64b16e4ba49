"""Importing Live2D layer dumps into the shard layout a build with ``--layers`` writes.

SRC holds one folder per model (the folder name is the model name), in either format:

(a) full canvas: ``NNNN_<partID>.png``, every one the size of the canvas, plus
    ``all.png`` (the whole character); the draw order is NNNN.
(b) cropped: one PNG per drawable, cropped to its alpha bounds, and one YAML file::

        canvas: [width, height]          # or {width: W, height: H}
        drawables:                       # a list of these, or a mapping {id: entry}
          - id: ArtMesh12
            part: PartHairBack           # the part ID that picks the layer
            file: ArtMesh12.png          # default: <id>.png
            crop_xyxy: [x0, y0, x1, y1]  # where the PNG sits on the canvas (x1, y1 exclusive)
            render_order: 500            # or draw_order (render_order wins when both are given)

    A drawable with an empty box (x1 <= x0 or y1 <= y0) is invisible and skipped.

Part IDs map to the semantic layers through the config's ``parts`` patterns
(:mod:`annotator.layers`; ``--map FILE`` replaces or extends them); a layer is its parts
composited with "over" in draw order, at full resolution. Every image is then fitted
to the dataset size the same way: the square around the visible content (the bounding
box of all alpha > 0, or of all crop boxes, centred in a square of its longer side,
padded with transparency where it leaves the canvas) is resized to size x size with
Pillow's bilinear filter (antialiased when shrinking) on premultiplied colour, so that
no dark fringes appear; uncovered pixels are exactly zero. Layers resized one by one do
not blend at their edges exactly as all.png resized does: :func:`pipeline.layers.exact_stacks`
settles those pixels, so that imported stacks add up as rendered ones do.

The output is the shard layout of docs/architecture.md, split ``train``, one shard per
``shard_size`` models: ``rest`` is all.png (format a) or the composite of the layers
(format b). A dump shows one pose, the model's default parameters, so each model is one
sample with pose (0, 0, 0, 0, 0, 0) (eyes open, mouth closed, head straight) whose
``expression`` and ``posed`` images are the rest image and whose ``layers/expression``
and ``layers/posed`` are ``layers/rest``: the reader serves imported and rendered
datasets alike. ``models/morphs`` is ``{}``. A bad dump (missing or unreadable files,
inconsistent sizes, YAML errors) is reported and skipped.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from annotator.layers import DEFAULT, LayerConfig
from manifests.schema import load_schema
from pipeline import shards
from pipeline.layers import composite, composite_error, exact_stacks, premultiply, unpremultiply
from renderer.errors import UserError

SPLIT = "train"
FULL_NAME = "all.png"
PART_FILE = re.compile(r"^(\d+)_(.+)\.png$", re.IGNORECASE)
DUMP_POSE = load_schema().vector("default")  # a dump's default parameters: eyes open, mouth closed, head straight


class DumpError(ValueError):
    """One model's dump is unusable; the message names the file and the problem."""


class Live2DImportError(UserError, ValueError):
    """The import cannot start (SRC holds no model folders, OUT holds a dataset)."""


@dataclass(frozen=True)
class Part:
    """One drawable or part image, placed on the canvas at (x, y)."""

    part_id: str
    order: float
    path: Path
    x: int = 0
    y: int = 0
    width: int = 0  # the size its PNG must have; 0: the canvas size
    height: int = 0


@dataclass
class Dump:
    """One model's dump, read lazily: part files in draw order and where they sit."""

    folder: Path
    canvas: tuple[int, int]  # (width, height)
    parts: list[Part]
    box: tuple[int, int, int]  # square around the content: x0, y0, side (canvas pixels)
    full: np.ndarray | None  # all.png, format (a) only
    description: Path | None = None  # the YAML, format (b) only


@dataclass
class ImportReport:
    out: Path
    imported: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    errors: dict[str, tuple[float, ...]] = field(default_factory=dict)  # all.png vs composite: composite_error
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"{self.out}: {len(self.imported)} models imported, {len(self.skipped)} skipped "
                 f"in {self.seconds:.1f} s"]
        lines += [f"  {name}: composite of layers vs all.png: mean {e[0]:.2f}, alpha {e[1]:.0f}"
                  for name, e in self.errors.items()]
        lines += [f"skipped: {entry['model']}: {entry['reason']}" for entry in self.skipped]
        return "\n".join(lines)


# ---- reading one dump -----------------------------------------------------------------

def read_png(path: Path) -> np.ndarray:
    """(H, W, 4) uint8 straight-alpha RGBA of any PNG; DumpError when missing or unreadable."""
    from PIL import Image

    if not path.is_file():
        raise DumpError(f"{path}: missing")
    try:
        with Image.open(path) as image:
            kind = image.format
            pixels = np.asarray(image.convert("RGBA"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DumpError(f"{path}: unreadable PNG ({error})") from None
    if kind != "PNG":
        raise DumpError(f"{path}: not a PNG but {kind}")
    return pixels


def read_dump(folder: str | os.PathLike) -> Dump:
    """The dump in ``folder``: format (b) when it holds a YAML file, else format (a)."""
    folder = Path(folder)
    described = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    if len(described) > 1:
        raise DumpError(f"{folder}: more than one YAML file ({', '.join(p.name for p in described)})")
    if described:
        return _read_cropped(folder, described[0])
    if not (folder / FULL_NAME).is_file():
        raise DumpError(f"{folder}: neither {FULL_NAME} (a full-canvas dump) nor a YAML file (a cropped dump)")
    return _read_full_canvas(folder)


def _read_full_canvas(folder: Path) -> Dump:
    full = read_png(folder / FULL_NAME)
    matches = [(PART_FILE.match(path.name), path) for path in folder.iterdir()]
    parts = sorted((Part(m.group(2), int(m.group(1)), path) for m, path in matches if m), key=_draw_order)
    if not parts:
        raise DumpError(f"{folder}: no part images named NNNN_<partID>.png beside {FULL_NAME}")
    height, width = full.shape[:2]
    return Dump(folder, (width, height), parts, _square(_alpha_box(full[..., 3]) or (0, 0, width, height)), full)


def _read_cropped(folder: Path, description: Path) -> Dump:
    try:
        data = yaml.safe_load(description.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise DumpError(f"{description}: invalid YAML ({error})") from None
    if not isinstance(data, dict):
        raise DumpError(f"{description}: expected a mapping with canvas and drawables")
    width, height = _canvas(data.get("canvas"), description)
    entries = data.get("drawables")
    if isinstance(entries, dict):
        entries = [{"id": key, **(value if isinstance(value, dict) else {"bad": value})}
                   for key, value in entries.items()]
    if not isinstance(entries, list) or not entries:
        raise DumpError(f"{description}: drawables must be a non-empty list or mapping")
    parts = [_drawable(entry, folder, description, (width, height)) for entry in entries]
    parts = sorted((part for part in parts if part), key=_draw_order)
    if not parts:
        raise DumpError(f"{description}: every drawable has an empty crop box")
    boxes = np.array([(p.x, p.y, p.x + p.width, p.y + p.height) for p in parts])
    content = (int(boxes[:, 0].min()), int(boxes[:, 1].min()), int(boxes[:, 2].max()), int(boxes[:, 3].max()))
    return Dump(folder, (width, height), parts, _square(content), None, description)


def _draw_order(part: Part) -> tuple[float, str]:
    return part.order, part.path.name


def _canvas(value: Any, where: Path) -> tuple[int, int]:
    if isinstance(value, dict):
        value = [value.get("width"), value.get("height")]
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise DumpError(f"{where}: canvas must be [width, height] in pixels, got {value!r}")
    return int(value[0]), int(value[1])


def _drawable(entry: Any, folder: Path, where: Path, canvas: tuple[int, int]) -> Part | None:
    """One YAML entry as a Part (None when its box is empty); its PNG is checked against the box on use."""
    if not isinstance(entry, dict) or "id" not in entry:
        raise DumpError(f"{where}: a drawable must be a mapping with an id, got {entry!r}")
    name = str(entry["id"])
    box, part = entry.get("crop_xyxy"), entry.get("part")
    order = entry.get("render_order", entry.get("draw_order"))
    if not isinstance(part, str) or not isinstance(order, (int, float)) or isinstance(order, bool):
        raise DumpError(f"{where}: drawable {name} needs a part ID and a render_order or draw_order")
    if (not isinstance(box, list) or len(box) != 4
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in box)):
        raise DumpError(f"{where}: drawable {name}: crop_xyxy must be four integers, got {box!r}")
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return None
    if x0 < 0 or y0 < 0 or x1 > canvas[0] or y1 > canvas[1]:
        raise DumpError(f"{where}: drawable {name}: crop_xyxy {box} leaves the {canvas[0]}x{canvas[1]} canvas")
    return Part(part, float(order), folder / str(entry.get("file", f"{name}.png")), x0, y0, x1 - x0, y1 - y0)


def _alpha_box(alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of alpha > 0, exclusive ends; None when nothing is visible."""
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if not len(rows):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _square(box: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """(x0, y0, side): the square of the box's longer side, centred on the box."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 1)
    return x0 - (side - (x1 - x0)) // 2, y0 - (side - (y1 - y0)) // 2, side


# ---- layers of one dump -----------------------------------------------------------------

def load_part(dump: Dump, part: Part) -> np.ndarray:
    """A part's pixels, checked to have the size its dump says."""
    image = read_png(part.path)
    width, height = (part.width, part.height) if part.width else dump.canvas
    if image.shape[:2] != (height, width):
        expected = "crop_xyxy says" if part.width else f"the canvas ({FULL_NAME}) is"
        raise DumpError(f"{part.path}: is {image.shape[1]}x{image.shape[0]}, {expected} {width}x{height}")
    return image


def _place(canvas: np.ndarray, image: np.ndarray, x: int, y: int, box: tuple[int, int, int]) -> None:
    """Composite premultiplied ``image`` (at canvas x, y) "over" ``canvas`` (the square box), in place."""
    bx, by, side = box
    x0, y0 = max(x, bx), max(y, by)
    x1, y1 = min(x + image.shape[1], bx + side), min(y + image.shape[0], by + side)
    if x1 <= x0 or y1 <= y0:
        return
    source = image[y0 - y:y1 - y, x0 - x:x1 - x]
    target = canvas[y0 - by:y1 - by, x0 - bx:x1 - bx]
    target *= 1.0 - source[..., 3:]
    target += source


def fit(premultiplied: np.ndarray, size: int) -> np.ndarray:
    """A premultiplied square (side, side, 4) float image -> (size, size, 4) straight-alpha uint8."""
    from PIL import Image

    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(premultiplied[..., c]), mode="F")
                           .resize((size, size), Image.Resampling.BILINEAR)) for c in range(4)]
    return unpremultiply(np.stack(channels, axis=-1))


def layer_stack(dump: Dump, config: LayerConfig = DEFAULT, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(rest (size, size, 4), layers (L, size, size, 4)) of one dump; parts of a layer composited in draw order."""
    side = dump.box[2]
    by_layer: dict[str, list[Part]] = {}
    for part in dump.parts:
        by_layer.setdefault(config.part_layer(part.part_id), []).append(part)
    layers = np.zeros((len(config.names), size, size, 4), np.uint8)
    for index, layer in enumerate(config.names):
        if layer not in by_layer:
            continue
        canvas = np.zeros((side, side, 4), np.float32)
        for part in by_layer[layer]:
            _place(canvas, premultiply(load_part(dump, part)), part.x, part.y, dump.box)
        layers[index] = fit(canvas, size)
    if dump.full is None:
        return composite(layers), layers
    canvas = np.zeros((side, side, 4), np.float32)
    _place(canvas, premultiply(dump.full), 0, 0, dump.box)
    full = fit(canvas, size)
    exact_stacks(layers[None], full[None])  # resizing each layer alone blurs edges differently from all.png
    return full, layers


def dump_sha256(dump: Dump) -> str:
    """Hash of every file the dump's images come from, in a fixed order."""
    digest = hashlib.sha256()
    extra = dump.folder / FULL_NAME if dump.full is not None else dump.description
    files = sorted({part.path for part in dump.parts} | {extra})
    for path in files:
        digest.update(path.name.encode("utf-8") + b"\0" + path.read_bytes())
    return digest.hexdigest()


# ---- the import --------------------------------------------------------------------------

def import_config(config: LayerConfig, size: int) -> dict[str, Any]:
    """What an imported dataset's index and shards record as their config."""
    return {"source": "live2d", "size": size, "layers": True, "layer_names": list(config.names),
            "format_version": shards.FORMAT_VERSION, "generator_version": shards.generator_version()}


def import_dumps(src: str | os.PathLike, out: str | os.PathLike, *, size: int = 256,
                 config: LayerConfig = DEFAULT, shard_size: int = 1000, force: bool = False,
                 progress: bool = True) -> ImportReport:
    """Import every model folder of ``src`` into a dataset at ``out`` (see the module docstring)."""
    from tqdm import tqdm

    start = time.perf_counter()
    src, out = Path(src), Path(out)
    folders = _model_folders(src)
    _prepare(out, force)
    settings = import_config(config, size)
    report = ImportReport(out)
    entries: list[dict[str, Any]] = []
    with tqdm(total=len(folders), unit="model", desc="import", disable=not progress, dynamic_ncols=True) as bar:
        for number, first in enumerate(range(0, len(folders), shard_size)):
            chunk = folders[first:first + shard_size]
            entries.append(_write_shard(out, number, chunk, first, config, settings, report, bar))
            _write_index(out, settings, entries, report.skipped)
    report.seconds = time.perf_counter() - start
    return report


def _model_folders(src: Path) -> list[Path]:
    if not src.is_dir():
        raise Live2DImportError(f"{src}: not a directory")
    folders = sorted(path for path in src.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not folders:
        raise Live2DImportError(f"{src}: holds no model folders (one folder per model expected)")
    return folders


def _prepare(out: Path, force: bool) -> None:
    """Refuse to mix with an existing dataset unless forced; forced, remove what an import writes."""
    if (out / shards.INDEX_NAME).exists() and not force:
        raise Live2DImportError(f"{out}: already holds a dataset; use --force to replace it")
    if force:
        for path in (out / shards.SHARDS_DIR).glob("*.h5"):
            path.unlink()
        (out / shards.INDEX_NAME).unlink(missing_ok=True)


def _write_shard(out: Path, number: int, folders: list[Path], first_id: int, config: LayerConfig,
                 settings: dict[str, Any], report: ImportReport, bar: Any) -> dict[str, Any]:
    path = shards.shard_path(out, SPLIT, number)
    written = 0
    with shards.ShardWriter(path, size=settings["size"], models=len(folders), samples=len(folders), split=SPLIT,
                            config=settings, layers=list(config.names), taxonomy=config.preset) as writer:
        for offset, folder in enumerate(folders):
            bar.update(1)
            try:
                dump = read_dump(folder)
                rest, layers = layer_stack(dump, config, settings["size"])
                sha = dump_sha256(dump)
            except DumpError as error:
                report.skipped.append({"model": folder.name, "reason": str(error)})
                continue
            writer.add_model(written, folder.name, sha, "{}", rest, layers)
            writer.add_samples(written, DUMP_POSE[None], np.array([written]), np.array([first_id + offset]),
                               rest[None], rest[None], layers[None], layers[None])
            if dump.full is not None:
                report.errors[folder.name] = tuple(float(v) for v in composite_error(layers[None], rest[None])[0])
            report.imported.append(folder.name)
            written += 1
        writer.finish(samples=written, models=written)
    return {"file": path.relative_to(out).as_posix(), "split": SPLIT, "samples": written, "models": written}


def _write_index(out: Path, settings: dict[str, Any], entries: list[dict[str, Any]],
                 skipped: list[dict[str, str]]) -> None:
    shards.write_index(out, {"format_version": shards.FORMAT_VERSION, "generator_version": shards.generator_version(),
                             "config": settings, "splits": {SPLIT: sum(e["samples"] for e in entries)},
                             "shards": entries, "failed": list(skipped)})

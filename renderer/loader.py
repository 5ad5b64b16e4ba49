"""``load_model(path)``: format detection by magic bytes, hashing, caching, texture resolution.

Parsing is cached by the file's sha256, in process (a few models) and on disk
(``$MMDSYNTH_CACHE`` or ``~/.cache/mmdsynth/models/<sha256>.npz``, a format that cannot
run code: ``model_cache``), so a batch build that loads the same model in many workers
parses it once. Texture resolution depends
on where the file lies, so it runs on every load, after the cache.
"""
from __future__ import annotations

import copy
import hashlib
import os
import stat
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from renderer import model_cache
from renderer.errors import ModelError
from renderer.model import Model
from renderer.pmd import read_pmd
from renderer.pmx import read_pmx
from renderer.textures import TextureOutsideModel, resolve

_READERS = ("binary.py", "model.py", "pmd.py", "pmx.py", "loader.py", "model_cache.py")


def _reader_version() -> str:
    """Hash of the reader sources: any change to what they produce invalidates the disk cache."""
    digest = hashlib.sha256()
    for name in _READERS:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:16]


CACHE_VERSION = _reader_version()
MAX_MODEL_BYTES = 1 << 30  # the largest MMD models are a few hundred MB; more is not a model
MEMORY_CACHE_SIZE = 4
_memory: OrderedDict[str, Model] = OrderedDict()


def parse_model(data: bytes, path: str | None = None) -> Model:
    """Parse PMX or PMD bytes (detected by magic, not extension); no hashing, cache or textures."""
    if not data:
        raise ModelError(path, "empty file (0 bytes)")
    if data.startswith(b"PMX "):
        model = read_pmx(data, path)
    elif data.startswith(b"Pmd"):
        model = read_pmd(data, path)
    else:
        raise ModelError(path, f"not a PMX or PMD model (file starts with {data[:4]!r})")
    if not len(model.vertices):
        raise ModelError(path, "no vertices: not a character model")
    return model


def load_model(path: str | Path, *, cache: bool = True) -> Model:
    """The model at ``path`` with ``path``, ``sha256`` and ``texture_paths`` filled in.

    Raises :class:`ModelError` for anything wrong with the file, including a missing one.
    """
    path = Path(path)
    data = read_model_bytes(path)
    sha256 = hashlib.sha256(data).hexdigest()
    model = _cached(sha256) if cache else None
    if model is None:
        model = parse_model(data, str(path))
        if cache:
            _remember(sha256, model)
    return _placed(model, path, sha256)


@dataclass
class ModelInfo:
    """What ``mmdsynth info`` reports for one file; ``load_seconds`` is the parse alone."""

    model: str
    vertices: int
    faces: int
    materials: int
    bones: int
    morphs: int
    textures_missing: list[str]
    load_seconds: float


def inspect_model(path: str | Path) -> ModelInfo:
    """Parse ``path`` afresh (no cache), timing only the parse, and summarise it."""
    path = Path(path)
    data = read_model_bytes(path)
    start = time.perf_counter()
    parsed = parse_model(data, str(path))
    seconds = time.perf_counter() - start
    model = _placed(parsed, path, hashlib.sha256(data).hexdigest())
    return ModelInfo(model=str(path), vertices=len(model.vertices), faces=len(model.indices),
                     materials=len(model.materials), bones=len(model.bones), morphs=len(model.morphs),
                     textures_missing=model.textures_missing, load_seconds=seconds)


def read_model_bytes(path: Path) -> bytes:
    """The file's bytes; a FIFO, device or folder (which would hang or never end) and a
    file over ``MAX_MODEL_BYTES`` (which would exhaust memory) are ModelErrors."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not wait for a writer
    except OSError as error:
        raise ModelError(str(path), f"cannot read file ({error.strerror or error})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_MODEL_BYTES:
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ModelError(str(path), "not a regular file (a folder, device or pipe)")
        raise ModelError(str(path), f"{info.st_size:,} bytes, more than a model file can be ({MAX_MODEL_BYTES:,})")
    with os.fdopen(fd, "rb") as file:
        try:
            return file.read()
        except OSError as error:
            raise ModelError(str(path), f"cannot read file ({error.strerror or error})") from None


def _placed(model: Model, path: Path, sha256: str) -> Model:
    """A copy of a parsed (possibly cached) model, tied to where it lies on disk."""
    model = copy.deepcopy(model)
    model.path = str(path)
    model.sha256 = sha256
    resolve_textures(model, path.parent)
    return model


def resolve_textures(model: Model, model_dir: Path) -> None:
    """Fill ``texture_paths`` for every referenced name; missing files become warnings.

    Shared toons are never missing: a PMD's toon file beside the model wins (as in MMD),
    otherwise the renderer draws the built-in ramp. A name leading outside the model's
    folder tree is missing too (with its own warning): a model must not read other files.
    """
    m = model.materials
    for i, (toon, shared) in enumerate(zip(m.toon, m.toon_shared)):
        if shared and model.format == "pmd" and _find_texture(model_dir, toon)[0] is not None:
            m.toon_shared[i] = False
    names = [n for n in (*m.texture, *m.sphere) if n]
    names += [t for t, shared in zip(m.toon, m.toon_shared) if t and not shared]
    for name in dict.fromkeys(names):
        found, missing = _find_texture(model_dir, name)
        model.texture_paths[name] = None if found is None else str(found)
        if found is None:
            model.warnings.append(missing.format(name=name, model=model.path))


def _find_texture(model_dir: Path, name: str) -> tuple[Path | None, str]:
    """The file for ``name`` and, when there is none, the warning's template saying why."""
    try:
        return resolve(model_dir, name), "texture {name!r} not found beside {model}"
    except TextureOutsideModel:
        return None, "texture {name!r} leads outside the folder of {model}; treated as missing"


def cache_dir() -> Path:
    return Path(os.environ.get("MMDSYNTH_CACHE") or Path.home() / ".cache" / "mmdsynth" / "models")


def clear_memory_cache() -> None:
    _memory.clear()


def _cached(sha256: str) -> Model | None:
    if sha256 in _memory:
        _memory.move_to_end(sha256)
        return _memory[sha256]
    try:
        model = model_cache.load(cache_dir() / f"{sha256}.npz", CACHE_VERSION)
    except Exception:  # absent, unreadable or not a cache file: parse again
        return None
    if model is None:  # from another loader version
        return None
    _keep(sha256, model)
    return model


def _keep(sha256: str, model: Model) -> None:
    """Into the in-process cache, dropping the least recently used beyond its size."""
    _memory[sha256] = model
    while len(_memory) > MEMORY_CACHE_SIZE:
        _memory.popitem(last=False)


def _remember(sha256: str, model: Model) -> None:
    _keep(sha256, model)
    directory = cache_dir()
    temp = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        data = model_cache.dump(model, CACHE_VERSION)
        with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as file:
            temp = Path(file.name)
            file.write(data)
        os.replace(temp, directory / f"{sha256}.npz")
    except OSError:  # a read-only or full cache directory only costs speed
        if temp is not None:
            temp.unlink(missing_ok=True)

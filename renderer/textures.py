"""Texture files: lookup the way MMD (on Windows) finds them, and decoding by content.

Model files name textures with backslashes, in any letter case, and archives
unpacked on Linux often leave Shift-JIS file names as raw bytes; :func:`resolve`
copes with all three, finds textures re-encoded under another extension, and never
leaves the model's folder tree. MMD's shared toons (toon01..toon10.bmp) come with MMD, not with
models, so :func:`shared_toon` generates equivalent ramps here.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

# magic bytes -> Pillow format; TGA has none and is tried last
_MAGIC = [(b"BM", "BMP"), (b"\x89PNG", "PNG"), (b"\xff\xd8", "JPEG"), (b"DDS ", "DDS"), (b"GIF8", "GIF")]

# shade colour at the bottom of each shared toon ramp (the top is white), toon01..toon10
_TOON_SHADES = np.array([
    [0.80, 0.80, 0.80], [0.94, 0.78, 0.78], [0.80, 0.80, 0.80], [0.96, 0.86, 0.80], [0.80, 0.80, 0.88],
    [0.93, 0.83, 0.76], [0.75, 0.75, 0.75], [0.90, 0.80, 0.80], [0.82, 0.82, 0.90], [0.88, 0.88, 0.88],
], np.float32)
TOON_SIZE = 32


# extensions tried, in this order, when the referenced one is not on disk (re-encoded textures)
IMAGE_EXTENSIONS = (".png", ".bmp", ".tga", ".jpg", ".jpeg", ".dds", ".gif", ".spa", ".sph")


class TextureOutsideModel(ValueError):
    """A texture reference that leaves the model's folder tree."""


def resolve(model_dir: str | Path, name: str) -> Path | None:
    """The file ``name`` (relative to the model's folder) refers to, or None when missing.

    Each folder component matches exactly, else case-insensitively; the file name also
    matches the same stem with another image extension (``Fuku1.tga`` -> ``Fuku1.png``), as
    archives often re-encode textures without editing the model. A name that leads outside
    the model's folder tree (``..\\..\\secret.png``, or a link out) raises
    :class:`TextureOutsideModel`: models must not read arbitrary files.
    """
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts:
        return None
    if _climbs_out(parts):
        raise TextureOutsideModel(f"texture {name!r} leads outside the model's folder")
    current = os.fsencode(model_dir)
    for part in parts[:-1]:
        found = _match(current, part)
        if found is None:
            return None
        current = os.path.join(current, found)
    found = _match_file(current, parts[-1])
    if found is None:
        return None
    path = os.path.join(current, found)
    if not _inside(path, os.fsencode(model_dir)):
        raise TextureOutsideModel(f"texture {name!r} links outside the model's folder")
    return Path(os.fsdecode(path))


def _climbs_out(parts: list[str]) -> bool:
    """Whether some ``..`` climbs above the folder the path starts in (checked before any look-up)."""
    depth = 0
    for part in parts:
        depth += -1 if part == ".." else 1
        if depth < 0:
            return True
    return False


def _inside(path: bytes, root: bytes) -> bool:
    """Whether ``path``, links followed, lies in the tree under ``root``."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([real, top]) == top


def _match_file(directory: bytes, part: str) -> bytes | None:
    """The file for ``part``: its own name (exact, then any case), then its stem with another image extension."""
    found = _match(directory, part)
    if found is not None and os.path.isfile(os.path.join(directory, found)):
        return found
    stem, extension = os.path.splitext(part)
    if part == ".." or not stem:
        return None
    for other in IMAGE_EXTENSIONS:
        if other == extension.lower():
            continue
        found = _match(directory, stem + other)
        if found is not None and os.path.isfile(os.path.join(directory, found)):
            return found
    return None


def _match(directory: bytes, part: str) -> bytes | None:
    """Exact name first, then a case-insensitive match under the filesystem or Shift-JIS encoding."""
    if part == "..":
        return b".."
    exact = [os.fsencode(part)]
    try:
        exact.append(part.encode("cp932"))
    except UnicodeEncodeError:
        pass
    for candidate in exact:
        if os.path.exists(os.path.join(directory, candidate)):
            return candidate
    try:
        entries = os.listdir(directory)
    except OSError:
        return None
    wanted = part.casefold()
    for entry in entries:
        if any(text.casefold() == wanted for text in _spellings(entry)):
            return entry
    return None


def _spellings(entry: bytes) -> list[str]:
    names = [os.fsdecode(entry)]
    try:
        names.append(entry.decode("cp932"))
    except UnicodeDecodeError:
        pass
    return names


def sniff(data: bytes) -> str:
    """Pillow format name from the content; .spa/.sph are usually BMP, TGA has no magic."""
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    return "TGA"


def load_texture(path: str | Path) -> np.ndarray:
    """(H, W, 4) uint8 RGBA. A file that cannot be decoded warns and yields 1x1 white (= untextured)."""
    try:
        data = Path(path).read_bytes()
        fmt = sniff(data)
        with Image.open(io.BytesIO(data), formats=[fmt]) as image:
            return np.asarray(image.convert("RGBA"), np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:  # Pillow's bad-data errors
        warnings.warn(f"{path}: cannot decode texture ({error}); drawing the material untextured",
                      stacklevel=2)
        return np.full((1, 1, 4), 255, np.uint8)


def shared_toon(name: str) -> np.ndarray:
    """MMD's shared toon ``toonNN.bmp`` as a built-in (TOON_SIZE, TOON_SIZE, 4) ramp: lit top, shaded bottom."""
    number = int("".join(ch for ch in name if ch.isdigit()) or 0)
    shade = _TOON_SHADES[(number - 1) % len(_TOON_SHADES)]
    t = np.clip((np.arange(TOON_SIZE, dtype=np.float32) / (TOON_SIZE - 1) - 0.4) / 0.2, 0, 1)
    rows = 1 - t[:, None] * (1 - shade)
    rgb = np.broadcast_to(rows[:, None, :], (TOON_SIZE, TOON_SIZE, 3))
    alpha = np.ones((TOON_SIZE, TOON_SIZE, 1), np.float32)
    return np.rint(np.concatenate([rgb, alpha], -1) * 255).astype(np.uint8)

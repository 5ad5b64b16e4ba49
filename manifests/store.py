"""Manifest files: reading, and merging records in safely while others write too.

Writers take an exclusive ``flock`` on the manifest's folder (no lock file is left
behind), re-read the file under the lock, merge, and replace the file atomically (temp
file, fsync, rename, fsync of the folder), so a crash leaves either the old or the new
manifest, never a partial one. The new file keeps the old one's permissions, or gets
the umask's (as any new file would).

A manifest may start with a header line ``{"models_root": "../models"}``: the folder its
model paths are relative to, itself relative to the manifest's folder, so that the
manifest and the models may live apart and every command still finds the models.
Without one the models root is the manifest's folder (DESIGN.md).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manifests.record import ManifestError, Record

__all__ = ["ManifestError", "read_manifest", "upsert_records", "model_sha256", "default_models_root",
           "repeated_models", "ModelsRoot", "models_root", "read_header"]
HEADER_KEY = "models_root"


def read_manifest(path: str | os.PathLike[str]) -> list[Record]:
    """All records of a manifest; blank lines and the header are skipped, a bad line raises ManifestError."""
    path = Path(path)
    return [Record.from_json(line, f"{path}:{number}") for number, line in _record_lines(path)]


def read_header(path: str | os.PathLike[str]) -> dict[str, str]:
    """The manifest's header line (``{"models_root": ...}``), or {} when it has none or does not exist."""
    path = Path(path)
    if not path.is_file():
        return {}
    for number, line in _lines(path):
        header = _header(line)
        if header is None:
            return {}
        if not isinstance(header.get(HEADER_KEY), str) or set(header) != {HEADER_KEY}:
            raise ManifestError(f"{path}:{number}", f'the header must be {{"{HEADER_KEY}": "<folder>"}}, '
                                                    f"got {line.strip()}")
        return header
    return {}


def _lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ManifestError(str(path), f"not UTF-8 text ({error.reason})") from None
    return [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def repeated_models(records: Iterable[Record]) -> list[str]:
    """Models listed more than once, each as ``name (status, status, ...)``: a hand-edited or
    concatenated manifest may say ``ok`` and ``rejected`` for one file, and nothing may pick one silently."""
    statuses: dict[str, list[str]] = {}
    for record in records:
        statuses.setdefault(record.model, []).append(record.status)
    return [f"{model} ({', '.join(found)})" for model, found in sorted(statuses.items()) if len(found) > 1]


def _header(line: str) -> dict[str, Any] | None:
    """The decoded line when it is a header (an object naming the models root and no model)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and HEADER_KEY in data and "model" not in data else None


def _record_lines(path: Path) -> list[tuple[int, str]]:
    lines = _lines(path)
    return lines[1:] if lines and _header(lines[0][1]) is not None else lines


def upsert_records(path: str | os.PathLike[str], records: Iterable[Record],
                   root: str | os.PathLike[str] | None = None) -> list[Record]:
    """Merge ``records`` into the manifest by model and return the manifest as written.

    A later record replaces an earlier one for the same model, except that an annotated
    record is never replaced by a suggested one (a person's work outranks a guess).
    ``root`` (the models root the records are relative to) is written as the header
    when the manifest has none and it is not the manifest's folder (the default); an
    existing header is kept.
    """
    path = Path(path)
    incoming = list(records)
    for record in incoming:
        record.validate(f"record for {record.model}")
    with _locked(path):
        header = read_header(path)
        if not header and root is not None and Path(root).resolve() != path.resolve().parent:
            header = {HEADER_KEY: Path(os.path.relpath(Path(root).resolve(), path.resolve().parent)).as_posix()}
        merged = {record.model: record for record in (read_manifest(path) if path.exists() else [])}
        for record in incoming:
            old = merged.get(record.model)
            if old is None or not (old.source == "annotated" and record.source == "suggested"):
                merged[record.model] = record
        result = list(merged.values())
        lines = [json.dumps(header, ensure_ascii=False)] if header else []
        write_text_atomic(path, "".join(line + "\n" for line in lines + [r.to_json() for r in result]))
    return result


def model_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelsRoot:
    """The folder a manifest's model paths are relative to, and how it was chosen (for errors)."""

    path: Path
    origin: str


def models_root(manifest: str | os.PathLike[str], override: str | os.PathLike[str] | None = None) -> ModelsRoot:
    """``override`` (``--models-root``), else the manifest's header, else the manifest's folder."""
    manifest = Path(manifest)
    if override is not None:
        return ModelsRoot(Path(override).resolve(), "--models-root")
    header = read_header(manifest)
    if header:
        return ModelsRoot((manifest.resolve().parent / header[HEADER_KEY]).resolve(),
                          f"the models_root header of {manifest}")
    return ModelsRoot(manifest.resolve().parent, f"the folder of {manifest} (it has no models_root header)")


def root_for_inputs(manifest: str | os.PathLike[str] | None, override: str | os.PathLike[str] | None,
                    inputs: Iterable[str | os.PathLike[str]]) -> ModelsRoot:
    """The root that new records of ``inputs`` (model files, folders) are named against.

    ``override``, else the manifest's header, else the manifest's folder (without a
    manifest: the current directory) when every input lies inside it, else the inputs'
    common folder (README's layout: ``manifests/`` beside ``models/``). A root that
    contradicts the manifest's header is refused: the manifest's names share one root.
    """
    if manifest is not None:
        settled = models_root(manifest)  # what the manifest's existing names are relative to
        if override is not None and read_header(manifest) and settled.path != Path(override).resolve():
            raise ManifestError(str(manifest), f"its models_root header names {settled.path}, not --models-root "
                                               f"{override}; drop --models-root or use another manifest")
        if read_header(manifest) or (Path(manifest).is_file() and read_manifest(manifest)):
            return settled if override is None else models_root(manifest, override)
    if override is not None:
        return ModelsRoot(Path(override).resolve(), "--models-root")
    base = Path(manifest).resolve().parent if manifest is not None else Path.cwd().resolve()
    paths = [Path(path).resolve() for path in inputs]
    if all(path.is_relative_to(base) for path in paths):
        return ModelsRoot(base, f"the folder of {manifest}" if manifest is not None else "the current directory")
    folders = [path if path.is_dir() else path.parent for path in paths]
    return ModelsRoot(Path(os.path.commonpath(folders)), "the common folder of the models given")


def default_models_root(manifest_path: str | os.PathLike[str]) -> Path:
    """Where a manifest's model paths point when no --models-root is given."""
    return models_root(manifest_path).path


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock for writers of ``path``: a ``flock`` on its folder (closing the
    descriptor releases it, so nothing is left on disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _new_file_mode(path: Path) -> int:
    """The mode ``path`` has, or the one a new file gets under this process's umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        pass
    try:  # Linux: read the umask without the race of setting it to read it
        status = Path("/proc/self/status").read_text()
        mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader or a crash sees the old file or the new, never half."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _new_file_mode(path))  # mkstemp makes 0600 whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)

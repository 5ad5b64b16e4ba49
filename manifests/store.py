"""Manifest files: reading, and merging records in safely while others write too.

Writers take an exclusive ``flock`` on ``<manifest>.lock``, re-read the file under the
lock, merge, and replace the file atomically (temp file, fsync, rename, fsync of the
folder), so a crash leaves either the old or the new manifest, never a partial one.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from manifests.record import ManifestError, Record

__all__ = ["ManifestError", "read_manifest", "upsert_records", "model_sha256", "default_models_root",
           "repeated_models"]


def read_manifest(path: str | os.PathLike) -> list[Record]:
    """All records of a manifest; blank lines are skipped, a bad line raises ManifestError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ManifestError(str(path), f"not UTF-8 text ({error.reason})") from None
    return [Record.from_json(line, f"{path}:{number}")
            for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def repeated_models(records: Iterable[Record]) -> list[str]:
    """Models listed more than once, each as ``name (status, status, ...)``: a hand-edited or
    concatenated manifest may say ``ok`` and ``rejected`` for one file, and nothing may pick one silently."""
    statuses: dict[str, list[str]] = {}
    for record in records:
        statuses.setdefault(record.model, []).append(record.status)
    return [f"{model} ({', '.join(found)})" for model, found in sorted(statuses.items()) if len(found) > 1]


def upsert_records(path: str | os.PathLike, records: Iterable[Record]) -> list[Record]:
    """Merge ``records`` into the manifest by model and return the manifest as written.

    A later record replaces an earlier one for the same model, except that an annotated
    record is never replaced by a suggested one (a person's work outranks a guess).
    """
    path = Path(path)
    incoming = list(records)
    for record in incoming:
        record.validate(f"record for {record.model}")
    with _locked(path):
        merged = {record.model: record for record in (read_manifest(path) if path.exists() else [])}
        for record in incoming:
            old = merged.get(record.model)
            if old is None or not (old.source == "annotated" and record.source == "suggested"):
                merged[record.model] = record
        result = list(merged.values())
        write_text_atomic(path, "".join(record.to_json() + "\n" for record in result))
    return result


def model_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_models_root(manifest_path: str | os.PathLike) -> Path:
    """Model paths in a manifest are relative to the folder that holds it (DESIGN.md)."""
    return Path(manifest_path).resolve().parent


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader or a crash sees the old file or the new, never half."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
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

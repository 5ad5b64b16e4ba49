"""Unpacking the archives MMD models ship in: zip (Shift-JIS names too), 7z and rar.

zip through the standard library, 7z through py7zr, rar through rarfile (which needs an
extracting tool: bsdtar from libarchive-tools, unar or unrar). Zip entries without the
UTF-8 flag carry their names in whatever code page the packer used, for MMD models
almost always Shift-JIS (CP932): such names are decoded as UTF-8 when they are valid
UTF-8, else as CP932. Member paths are made safe (backslashes are separators; absolute
paths and ``..`` are refused) but never renamed otherwise: models name their textures
by relative path. Every failure is an ``ArchiveError`` with a one-line reason.
"""
from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from renderer.errors import UserError

ARCHIVE_SUFFIXES = (".zip", ".7z", ".rar")
UTF8_FLAG = 0x800


class ArchiveError(UserError):
    """An archive that cannot be unpacked (damaged, encrypted, unsupported)."""


def is_archive(path: Path) -> bool:
    return path.suffix.lower() in ARCHIVE_SUFFIXES and path.is_file()


def extract(archive: str | Path, target: str | Path) -> None:
    """Unpack every member of ``archive`` below ``target`` (created); raises ArchiveError."""
    archive, target = Path(archive), Path(target)
    suffix = archive.suffix.lower()
    if suffix not in ARCHIVE_SUFFIXES:
        raise ArchiveError(f"{archive}: not a .zip, .7z or .rar archive")
    target.mkdir(parents=True, exist_ok=True)
    try:
        if suffix == ".7z":
            _extract_7z(archive, target)
            return
        for name, is_dir, opener in (_zip_members if suffix == ".zip" else _rar_members)(archive):
            _write_member(target, name, is_dir, opener, archive)
    except ArchiveError:
        raise
    except Exception as error:  # each library has its own exception zoo: all mean a bad archive
        raise ArchiveError(f"{archive}: cannot unpack ({type(error).__name__}: {error})") from None


Member = tuple[str, bool, Callable[[], IO[bytes]]]


def zip_name(info: zipfile.ZipInfo) -> str:
    """A zip member's name: as stored when flagged UTF-8, else UTF-8 if it decodes, else CP932."""
    if info.flag_bits & UTF8_FLAG:
        return info.filename
    raw = info.filename.encode("cp437")  # how zipfile decoded the stored bytes
    for encoding in ("utf-8", "cp932"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return info.filename


def _zip_members(archive: Path) -> Iterator[Member]:
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            if info.flag_bits & 0x1:
                raise ArchiveError(f"{archive}: password-protected ({zip_name(info)})")
            yield zip_name(info), info.is_dir(), lambda info=info: z.open(info)


def _extract_7z(archive: Path, target: Path) -> None:
    """7z names are UTF-16 in the format; py7zr refuses members that would escape ``target``."""
    import py7zr

    with py7zr.SevenZipFile(archive) as z:
        if z.needs_password():
            raise ArchiveError(f"{archive}: password-protected")
        z.extractall(path=target)


def _rar_members(archive: Path) -> Iterator[Member]:
    import rarfile

    try:
        rarfile.tool_setup()
    except rarfile.RarCannotExec:
        raise ArchiveError(f"{archive}: unpacking rar needs bsdtar (apt-get install libarchive-tools), "
                           f"unar or unrar") from None
    with rarfile.RarFile(archive) as z:
        if z.needs_password():
            raise ArchiveError(f"{archive}: password-protected")
        for info in z.infolist():
            yield info.filename, info.is_dir(), lambda info=info: z.open(info)


def safe_parts(name: str) -> tuple[str, ...] | None:
    """A member name as path parts below the target, or None when it would escape it."""
    parts = tuple(part for part in PurePosixPath(name.replace("\\", "/")).parts if part not in ("", "."))
    if not parts or parts[0] == "/" or ".." in parts or any(":" in part[:2] for part in parts[:1]):
        return None
    return parts


def _write_member(target: Path, name: str, is_dir: bool, opener: Callable[[], IO[bytes]], archive: Path) -> None:
    parts = safe_parts(name)
    if parts is None:
        raise ArchiveError(f"{archive}: member {name!r} would land outside the folder it is unpacked into")
    path = target.joinpath(*parts)
    if is_dir:
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with opener() as source, open(path, "wb") as sink:
        shutil.copyfileobj(source, sink, 1 << 20)

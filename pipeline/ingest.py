"""Downloaded models -> one models folder: each archive or folder unpacked under a clean name,
identical models kept once, and a catalog of where every model came from.

``ingest(sources, out)`` takes archives (``pipeline.archives``) and folders (each archive
below a folder is a source of its own; each subfolder holding loose models is one too).
Every source lands in ``out/<clean name>/`` whole, so the authors' readme and licence
files stay beside their models and textures keep their relative paths. A model whose
content (sha256) is already in the folder is removed again and listed as a duplicate of
the first. ``out/catalog.jsonl`` says, per model: the source it came from, its licence or
readme file, its group (the source: splits keep a source together) and its variant
family (models of one source that are the same character: one name extends the other,
or they share a mesh). A source is unpacked into a staging folder and moved into place
before its catalog lines are written, so a crash never leaves half a source; a rerun
skips sources already in the catalog, making ``ingest`` idempotent. Bad archives are
reported and skipped.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from manifests.store import model_sha256, write_text_atomic
from pipeline.archives import ArchiveError, extract, is_archive
from renderer.files import is_model_file, model_files

CATALOG_NAME = "catalog.jsonl"
STAGING = ".ingest-staging"
LICENCE_WORDS = ("readme", "read me", "read_me", "licen", "terms", "copyright", "規約", "利用", "はじめに",
                 "お読み", "読んで", "注意", "説明")
TEXT_SUFFIXES = (".txt", ".md", ".html", ".htm", ".rtf", ".pdf")
SEPARATORS = "_- .(（[【"


@dataclass
class Entry:
    """One catalog line: a model under the models folder and where it came from."""

    model: str  # path relative to the models folder, forward slashes
    sha256: str
    source: str  # the archive or folder, as given
    source_key: str  # the archive's sha256, or the folder's absolute path: what makes a rerun skip it
    group: str
    family: str
    licence: str | None  # relative to the models folder
    duplicates: list[str] = field(default_factory=list)  # "source: member" of identical models left out


@dataclass
class Source:
    path: Path
    name: str  # clean folder name under the models folder
    key: str


@dataclass
class IngestReport:
    added: list[Entry] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # one reason per model left out
    already: list[str] = field(default_factory=list)  # sources skipped: ingested before
    failed: list[str] = field(default_factory=list)  # one reason per bad source

    def table(self) -> str:
        from pipeline.progress import summary_table

        return summary_table({"ok": [None] * len(self.added), "duplicate": self.duplicates,
                              "already ingested": self.already, "failed": self.failed})


def clean_name(text: str) -> str:
    """A folder name from an archive or folder name: NFKC, no separators, controls or spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r'[\\/:*?"<>|\x00-\x1f\x7f]', "_", text)
    return re.sub(r"\s+", "_", text).strip("._ ") or "source"


def read_catalog(models: str | os.PathLike) -> list[Entry]:
    """The catalog of a models folder ([] when it has none)."""
    path = Path(models) / CATALOG_NAME
    if not path.is_file():
        return []
    return [Entry(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def find_sources(arguments: Iterable[str | os.PathLike]) -> list[Path]:
    """Archives and folders of loose models named by ``arguments`` (folders are searched)."""
    found: dict[Path, None] = {}
    for argument in map(Path, arguments):
        if is_archive(argument):
            found[argument] = None
        elif argument.is_dir():
            found.update(dict.fromkeys(_folder_sources(argument)))
        else:
            raise FileNotFoundError(f"{argument}: not a .zip/.7z/.rar archive or a folder")
    return list(found)


def _folder_sources(folder: Path) -> Iterator[Path]:
    """The archives below ``folder``, and the folders holding loose models outside archives:
    ``folder`` itself when models lie directly in it, else each subfolder with models below it."""
    archives = sorted(path for path in folder.rglob("*") if is_archive(path))
    yield from archives
    if any(is_model_file(path) for path in folder.iterdir()):
        yield folder
        return
    for sub in sorted(path for path in folder.iterdir() if path.is_dir()):
        if model_files(sub):
            yield sub


def ingest(arguments: Sequence[str | os.PathLike], out: str | os.PathLike, progress: bool = False) -> IngestReport:
    """Unpack every source into ``out`` (see the module docstring); returns what happened."""
    from pipeline.progress import bar

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / STAGING, ignore_errors=True)  # a crashed run's half source
    sources = find_sources(arguments)
    catalog = read_catalog(out)
    report = IngestReport()
    with bar(len(sources), "ingest", "source", enabled=progress) as status:
        for path in sources:
            _ingest_one(path, out, catalog, report)
            status.update()
    shutil.rmtree(out / STAGING, ignore_errors=True)
    return report


def _ingest_one(path: Path, out: Path, catalog: list[Entry], report: IngestReport) -> None:
    key = model_sha256(path) if path.is_file() else str(path.resolve())
    done = {entry.source_key: entry for entry in catalog}
    if key in done and (out / done[key].model).is_file():
        report.already.append(f"{path.name}")
        return
    staging = out / STAGING / "source"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if path.is_file():
            extract(path, staging)
        else:
            shutil.copytree(path, staging, symlinks=False)
    except (ArchiveError, OSError) as error:
        report.failed.append(str(error) if isinstance(error, ArchiveError) else f"{path}: cannot copy ({error})")
        return
    source = Source(path, _free_name(out, clean_name(path.stem if path.is_file() else path.name), catalog), key)
    repeated = len(report.duplicates)
    entries = _catalogue(staging, source, {entry.sha256: entry for entry in catalog}, report)
    if not entries and len(report.duplicates) == repeated:
        report.failed.append(f"{path}: no .pmx or .pmd model in it")
        return
    if entries:  # a source of duplicates only leaves no folder, just its notes on the models it repeats
        os.replace(staging, out / source.name)
    catalog.extend(entries)
    report.added.extend(entries)
    _write_catalog(out, catalog)


def _write_catalog(out: Path, catalog: list[Entry]) -> None:
    """Replace the catalog atomically, and only when its text changes (a rerun touches nothing)."""
    path = out / CATALOG_NAME
    text = "".join(json.dumps(asdict(entry), ensure_ascii=False) + "\n" for entry in catalog)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_text_atomic(path, text)


def _free_name(out: Path, name: str, catalog: list[Entry]) -> str:
    """``name``, or ``name-2``, ``name-3``... when that folder is taken (by another source or by the user)."""
    taken = {entry.model.split("/")[0] for entry in catalog}
    candidate, n = name, 1
    while candidate in taken or (out / candidate).exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _catalogue(folder: Path, source: Source, known: dict[str, Entry], report: IngestReport) -> list[Entry]:
    """Catalog entries of the models in a staged source; duplicates (of earlier models or of each
    other) are deleted from the folder and noted on the entry they repeat."""
    entries: list[Entry] = []
    for path in model_files(folder):
        member = path.relative_to(folder).as_posix()
        digest = model_sha256(path)
        if digest in known:
            first, note = known[digest], f"{source.path.name}: {member}"
            if note not in first.duplicates:
                first.duplicates.append(note)
            report.duplicates.append(f"same as {first.model}")
            path.unlink()
            continue
        licence = _licence(path.parent, folder)
        entry = Entry(model=f"{source.name}/{member}", sha256=digest, source=str(source.path), source_key=source.key,
                      group=source.name, family="", licence=f"{source.name}/{licence}" if licence else None)
        known[digest] = entry
        entries.append(entry)
    for entry, family in zip(entries, families([folder / e.model.split("/", 1)[1] for e in entries])):
        entry.family = f"{source.name}/{family}"
    return entries


def _licence(folder: Path, top: Path) -> str | None:
    """The readme or licence file nearest a model: its folder first, then up to the source's top.
    Files named like one (readme, 利用規約...) win over other text files."""
    while True:
        texts = sorted(path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in TEXT_SUFFIXES)
        named = [path for path in texts if any(word in path.name.lower() for word in LICENCE_WORDS)]
        if named or texts:
            return (named or texts)[0].relative_to(top).as_posix()
        if folder == top:
            return None
        folder = folder.parent


def families(paths: Sequence[Path]) -> list[str]:
    """A family name per model: models are one family when one file name extends the other
    ("Miku" and "Miku_BDEF", not "style_01" and "style_02") or they have the same vertex count."""
    parent = list(range(len(paths)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    stems = [unicodedata.normalize("NFKC", path.stem).lower() for path in paths]
    vertices = [_vertex_count(path) for path in paths]
    for i in range(len(paths)):
        for j in range(i):
            if _extends(stems[i], stems[j]) or (vertices[i] is not None and vertices[i] == vertices[j]):
                parent[root(i)] = root(j)
    return [paths[root(i)].stem for i in range(len(paths))]


def _extends(a: str, b: str) -> bool:
    short, long = sorted((a, b), key=len)
    rest = long[len(short):]
    return long.startswith(short) and bool(rest) and rest[0] in SEPARATORS and not rest.strip(SEPARATORS).isdigit()


def _vertex_count(path: Path) -> int | None:
    from renderer.errors import ModelError
    from renderer.loader import load_model

    try:
        return len(load_model(path).vertices)
    except ModelError:
        return None

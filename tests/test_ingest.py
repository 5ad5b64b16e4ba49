"""``mmdsynth ingest`` on archives made here from the shared models: a zip with Shift-JIS
names (no UTF-8 flag, as Japanese Windows packs them), a 7z, a folder of loose models, a
repeated model and broken archives."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline.archives import ArchiveError, extract, safe_parts, zip_name
from pipeline.ingest import CATALOG_NAME, clean_name, ingest, read_catalog

CLI = [sys.executable, "-c", "from pipeline.cli import main; main()"]
MIKU = "appearance_miku"
PACK = "ミク詰め合わせ"  # the zip's name; its members are Shift-JIS too


class ShiftJisInfo(zipfile.ZipInfo):
    """Stores the name as CP932 bytes without the UTF-8 flag, like Japanese Windows zip tools."""

    def _encodeFilenameFlags(self):  # noqa: N802 (zipfile's name)
        return self.filename.encode("cp932"), self.flag_bits & ~0x800


def shift_jis_zip(path: Path, files: dict[str, Path | bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, content in files.items():
            z.writestr(ShiftJisInfo(name), content if isinstance(content, bytes) else content.read_bytes())
    return path


def seven_zip(path: Path, files: dict[str, Path]) -> Path:
    py7zr = pytest.importorskip("py7zr")
    with py7zr.SevenZipFile(path, "w", filters=[{"id": py7zr.FILTER_COPY}]) as z:
        for name, source in files.items():
            z.write(source, name)
    return path


@pytest.fixture(scope="module")
def downloads(shared_models, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("downloads")
    miku = shared_models / MIKU
    files = {f"アピアランスミク/{p.name}": p for p in miku.iterdir() if p.is_file()}
    files["アピアランスミク/利用規約.txt"] = "再配布禁止".encode("cp932")
    shift_jis_zip(root / f"{PACK}.zip", files)
    mokou = shared_models / "mokou"
    seven_zip(root / "妹紅 v1.0.7z", {f"mokou/{p.relative_to(mokou).as_posix()}": p
                                      for p in mokou.rglob("*") if p.is_file()})
    shift_jis_zip(root / "重複.zip", {"copy/Appearance Miku.pmx": miku / "Appearance Miku.pmx"})
    (root / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    (root / "broken.7z").write_bytes(b"7z\xbc\xaf\x27\x1c\x00\x04garbage")
    (root / "broken.rar").write_bytes(b"Rar!\x1a\x07\x00garbage")
    (root / "empty.zip").write_bytes(shift_jis_zip(root / "x.zip", {"notes.txt": b"hi"}).read_bytes())
    (root / "x.zip").unlink()
    shutil.copytree(shared_models / "low_poly", root / "low_poly")  # a folder of loose models: one source
    return root


@pytest.fixture(scope="module")
def ingested(downloads, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("ingested") / "models"
    run = subprocess.run([*CLI, "ingest", str(downloads), "--out", str(out), "-q"], capture_output=True, text=True)
    return out, run


def test_zip_names_in_shift_jis_are_decoded(downloads):
    with zipfile.ZipFile(downloads / f"{PACK}.zip") as z:
        info = z.infolist()[0]
        assert not info.flag_bits & 0x800 and info.filename != zip_name(info)  # zipfile alone gets it wrong
        assert zip_name(info).startswith("アピアランスミク/")


@pytest.mark.real_models
def test_each_archive_lands_whole_under_a_clean_name(ingested):
    out, run = ingested
    assert run.returncode == 1 and "Traceback" not in run.stderr  # the broken archives
    pack = out / PACK / "アピアランスミク"
    assert (pack / "Appearance Miku.pmx").is_file()
    assert (pack / "利用規約.txt").read_bytes() == "再配布禁止".encode("cp932")
    assert (out / "妹紅_v1.0" / "mokou" / "mokou_A.pmd").is_file()
    assert (out / "low_poly" / "gumi.pmd").is_file()
    from renderer.loader import load_model
    assert load_model(pack / "Appearance Miku.pmx").textures_missing == []  # textures kept their relative paths


@pytest.mark.real_models
def test_catalog_records_source_licence_group_family_and_duplicates(ingested, downloads):
    out, _ = ingested
    catalog = {entry.model: entry for entry in read_catalog(out)}
    miku = catalog[f"{PACK}/アピアランスミク/Appearance Miku.pmx"]
    bdef = catalog[f"{PACK}/アピアランスミク/Appearance Miku_BDEF.pmx"]
    assert miku.source == str(downloads / f"{PACK}.zip") and miku.group == PACK
    assert miku.licence == f"{PACK}/アピアランスミク/Readme.txt"
    assert miku.family == bdef.family != catalog["low_poly/gumi.pmd"].family
    assert catalog["low_poly/gumi.pmd"].family != catalog["low_poly/low_miku.pmd"].family
    assert miku.duplicates == ["重複.zip: copy/Appearance Miku.pmx"]
    assert not (out / "重複").exists()  # a source of duplicates only leaves nothing behind
    assert len({entry.sha256 for entry in catalog.values()}) == len(catalog)
    assert sorted(catalog) == sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                                     if p.suffix.lower() in (".pmx", ".pmd"))


@pytest.mark.real_models
def test_bad_archives_are_reported_and_skipped(ingested):
    _, run = ingested
    failed = [line for line in run.stderr.splitlines() if line.startswith("failed: ")]
    assert sorted(Path(line.split(": ")[1]).name for line in failed) == [
        "broken.7z", "broken.rar", "broken.zip", "empty.zip"], run.stderr
    assert "no .pmx or .pmd model" in run.stderr


@pytest.mark.real_models
def test_a_rerun_changes_nothing(ingested, downloads):
    out, _ = ingested
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    catalog = (out / CATALOG_NAME).read_text("utf-8")
    report = ingest([downloads], out)
    assert report.added == [] and sorted(report.already) == ["low_poly", "ミク詰め合わせ.zip", "妹紅 v1.0.7z"]
    assert len(report.duplicates) == 1  # a source of duplicates only is looked at again, and changes nothing
    assert (out / CATALOG_NAME).read_text("utf-8") == catalog
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


@pytest.mark.real_models
def test_suggested_groups_are_the_sources(ingested, tmp_path):
    out, _ = ingested
    manifest = tmp_path / "manifests" / "m.jsonl"
    run = subprocess.run([*CLI, "suggest", str(out / PACK), str(out / "low_poly"), "--manifest", str(manifest), "-q"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in manifest.read_text("utf-8").splitlines()][1:]
    assert {line["model"]: line["group"] for line in lines} == {
        f"{PACK}/アピアランスミク/Appearance Miku.pmx": PACK, f"{PACK}/アピアランスミク/Appearance Miku_BDEF.pmx": PACK,
        "low_poly/gumi.pmd": "low_poly", "low_poly/low_miku.pmd": "low_poly"}


def test_member_paths_cannot_escape(tmp_path):
    assert safe_parts("a\\b/c.pmx") == ("a", "b", "c.pmx")
    assert safe_parts("../evil.pmx") is None and safe_parts("/etc/passwd") is None and safe_parts("C:/x") is None
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../outside.txt", b"x")
    with pytest.raises(ArchiveError, match="outside the folder"):
        extract(evil, tmp_path / "target")
    assert not (tmp_path / "outside.txt").exists()


def test_clean_names():
    assert clean_name(" ﾐｸ v1.0 / final? ") == "ミク_v1.0___final"
    assert clean_name("...") == "source"


@pytest.mark.real_models
def test_readme_commands_from_archives_to_an_export(ingested, tmp_path):
    """Done means: archives -> ingest -> suggest -> build -> verify -> export with the README's commands."""
    out, _ = ingested
    manifest = tmp_path / "manifests" / "mine.jsonl"

    def mmdsynth(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=tmp_path)

    assert mmdsynth("suggest", str(out), "--manifest", str(manifest)).returncode == 0
    build = mmdsynth("build", "--manifest", str(manifest), "--out", "data", "--poses-per-model", "2",
                     "--size", "32", "-q")
    assert build.returncode in (0, 1) and "Traceback" not in build.stderr, build.stderr  # 1: some model failed
    assert "models:" in build.stdout and "samples per split" in build.stdout
    assert mmdsynth("verify", "data").returncode == 0
    export = mmdsynth("export", "data", "--to", "png", "--out", "data-png", "-q")
    assert export.returncode == 0, export.stderr
    index = json.loads((tmp_path / "data" / "index.json").read_text("utf-8"))
    tables = (p.read_text("utf-8").splitlines() for p in (tmp_path / "data-png").glob("*.csv"))
    assert sum(len(rows) - 1 for rows in tables) == sum(index["splits"].values()) > 0

"""The manifest remembers its models root: README's layout (manifests/ beside models/) works
without --models-root; folders and globs without globstar name models; errors say which
folder was tried and how to fix it."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from manifests.record import ManifestError, Record
from manifests.store import models_root, read_header, read_manifest, root_for_inputs, upsert_records
from renderer.files import expand_inputs

CLI = [sys.executable, "-c", "from pipeline.cli import main; main()"]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PMX ")
    return path


def test_folders_and_globs_without_globstar(tmp_path):
    deep = touch(tmp_path / "models" / "a" / "b" / "deep.PMX")
    top = touch(tmp_path / "models" / "top.pmd")
    touch(tmp_path / "models" / "readme.txt")
    assert expand_inputs([str(tmp_path / "models")]) == [deep, top]
    assert expand_inputs([str(tmp_path / "models" / "**" / "*.PMX")]) == [deep]  # ** at any depth, no bash
    assert expand_inputs([str(top), str(tmp_path / "models")]) == [top, deep]  # each once, in argument order
    with pytest.raises(FileNotFoundError, match="nothing.pmx: no such file or folder"):
        expand_inputs([str(tmp_path / "nothing.pmx")])
    with pytest.raises(FileNotFoundError, match="no .pmx or .pmd files"):
        expand_inputs([str(tmp_path / "models" / "*.pmx")])


def test_header_round_trip_and_resolution(tmp_path):
    manifest = tmp_path / "manifests" / "mine.jsonl"
    models = tmp_path / "models"
    models.mkdir()
    record = Record(model="a/x.pmx", group="a")
    upsert_records(manifest, [record], root=models)
    assert manifest.read_text("utf-8").splitlines()[0] == '{"models_root": "../models"}'
    assert read_manifest(manifest) == [record]
    upsert_records(manifest, [Record(model="a/y.pmx")], root=tmp_path / "elsewhere")  # the header stays
    assert read_header(manifest) == {"models_root": "../models"}
    assert [r.model for r in read_manifest(manifest)] == ["a/x.pmx", "a/y.pmx"]
    assert models_root(manifest).path == models.resolve()
    assert models_root(manifest, tmp_path).path == tmp_path.resolve()  # --models-root only overrides
    with pytest.raises(ManifestError, match="drop --models-root"):
        root_for_inputs(manifest, tmp_path, [models])


def test_root_for_a_new_manifest(tmp_path):
    inside = tmp_path / "m.jsonl"
    assert root_for_inputs(inside, None, [touch(tmp_path / "chars" / "x.pmx")]).path == tmp_path.resolve()
    apart = tmp_path / "manifests" / "m.jsonl"
    found = root_for_inputs(apart, None, [tmp_path / "chars"])
    assert found.path == (tmp_path / "chars").resolve() and "common folder" in found.origin


def test_a_bad_header_is_one_line(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"models_root": 3}\n', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"m.jsonl:1: the header must be"):
        read_header(manifest)


@pytest.mark.real_models
def test_readme_layout_without_models_root(shared_models, tmp_path):
    """suggest a folder into manifests/, then build and preview with no --models-root; a moved
    models folder fails with the folder tried and the fix."""
    models = tmp_path / "models"
    for name in ("mmd_default/miku_v2.pmd", "mmd_default/dummy.pmd"):
        (models / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_models / name, models / name)
    for texture in (shared_models / "mmd_default").glob("*.[bs][mp][ph]"):  # .bmp and .sph: miku_v2 uses them
        shutil.copyfile(texture, models / "mmd_default" / texture.name)
    manifest = tmp_path / "manifests" / "mine.jsonl"
    run = subprocess.run([*CLI, "suggest", str(models), "--manifest", str(manifest)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert read_header(manifest) == {"models_root": "../models"}
    statuses = {r.model: r.status for r in read_manifest(manifest)}
    assert statuses["mmd_default/dummy.pmd"] == "rejected" and statuses["mmd_default/miku_v2.pmd"] in ("ok", "review")
    summary = run.stderr.splitlines()
    assert any(line.split()[:2] == ["rejected", "1"] for line in summary), run.stderr
    assert any(line.split()[:2] == ["ok", "1"] or line.split()[:4] == ["held", "for", "review", "1"]
               for line in summary), run.stderr
    records = read_manifest(manifest)
    for record in records:  # what a person confirms in annotate
        if record.status == "review":
            record.status, record.review, record.source = "ok", [], "annotated"
    upsert_records(manifest, records)
    build = [*CLI, "build", "-m", str(manifest), "-o", str(tmp_path / "data"), "--poses", "2", "--size", "32",
             "-q"]
    run = subprocess.run(build, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "rejected" in run.stdout and "no vertices" in run.stdout  # the closing table says why
    preview = subprocess.run([*CLI, "preview", str(models / "mmd_default/miku_v2.pmd"), "--out",
                              str(tmp_path / "p.png"), "--manifest", str(manifest), "--size", "32"],
                             capture_output=True, text=True)
    assert preview.returncode == 0, preview.stderr
    models.rename(tmp_path / "moved")
    run = subprocess.run([*build[:-1], "--force", "-q"], capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert str(models) in run.stderr and "models_root header" in run.stderr and "--models-root" in run.stderr
    run = subprocess.run([*build, "--force", "--models-root", str(tmp_path / "moved")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr

"""Manifest records and the store: validation, merging, atomic writes, concurrent writers."""
from __future__ import annotations

import json
import multiprocessing
import os
import re

import pytest

from manifests.record import ROLES, ManifestError, Record
from manifests.store import default_models_root, model_sha256, read_manifest, upsert_records


def make(model: str, source: str = "suggested", top: float = 20.0) -> Record:
    return Record(model=model, sha256="0" * 64, group="g", status="ok", head={"top": top, "bottom": 17.0},
                  morphs=dict.fromkeys(ROLES) | {"blink": "まばたき"}, source=source,
                  confidence={"head": 0.9, "blink": 1.0} if source == "suggested" else None)


def test_round_trip_keeps_every_field_and_key_order():
    record = make("vocaloid/ミク.pmx")
    line = record.to_json()
    assert "ミク" in line and "まばたき" in line  # ensure_ascii=False
    assert list(json.loads(line)) == ["model", "sha256", "group", "split", "status", "reject_reason", "head",
                                      "morphs", "layers", "source", "confidence"]
    assert list(json.loads(line)["morphs"]) == list(ROLES)
    assert Record.from_json(line) == record
    assert "confidence" not in make("a.pmd", source="annotated").to_json()
    assert record.head_bounds == (20.0, 17.0)


@pytest.mark.parametrize("change, message", [
    ({"status": "done"}, "status must be one of"),
    ({"head": {"top": 1.0, "bottom": 2.0}}, "must lie above"),
    ({"head": {"top": 1.0}}, "head must be null"),
    ({"morphs": {"blinky": "x"}}, "unknown morph role"),
    ({"morphs": {"blink": 3}}, "morph name or null"),
    ({"model": "C:\\models\\a.pmx"}, "forward slashes"),
    ({"model": ""}, "model must be a non-empty string"),
    ({"status": "rejected"}, "needs a reject_reason"),
    ({"confidence": {"head": 1.5}}, "outside [0, 1]"),
    ({"extra": 1}, "unknown field"),
    ({"head": {"top": float("inf"), "bottom": 17.0}}, "head top inf is not a finite y"),
    ({"head": {"top": 20.0, "bottom": float("nan")}}, "head bottom nan is not a finite y"),
    ({"head": {"top": 1e308, "bottom": -1e308}}, "head top 1e+308 is not a finite y"),
    ({"split": "../../../escaped"}, "split must be one of train, val, test"),
    ({"model": "../outside.pmx"}, "must stay inside the models root"),
    ({"model": "a/../../outside.pmx"}, "must stay inside the models root"),
])
def test_validation_names_file_line_and_problem(tmp_path, change, message):
    data = json.loads(make("a.pmd").to_json()) | change
    path = tmp_path / "m.jsonl"
    path.write_text(make("ok.pmd").to_json() + "\n\n" + json.dumps(data, ensure_ascii=False) + "\n", "utf-8")
    with pytest.raises(ManifestError, match=rf"m\.jsonl:3: .*{re.escape(message)}"):
        read_manifest(path)


@pytest.mark.parametrize("line, message", [
    ('{"model": "a.pmd", "head": {"top": 1e400, "bottom": 0}}', "head top inf is not a finite y"),
    ('{"model": "a.pmd", "status": "rejected", "reject_reason": "\\ud800"}', "reject_reason is not valid Unicode"),
])
def test_json_that_python_decodes_but_cannot_render_or_write(tmp_path, line, message):
    path = tmp_path / "m.jsonl"
    path.write_text(line + "\n", "utf-8")
    with pytest.raises(ManifestError, match=rf"m\.jsonl:1: {re.escape(message)}"):
        read_manifest(path)


def test_bad_json_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"model": "a.pmd",\n', "utf-8")
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: not valid JSON"):
        read_manifest(path)


def test_upsert_merges_by_model_and_keeps_annotations(tmp_path):
    path = tmp_path / "sub" / "m.jsonl"
    upsert_records(path, [make("a.pmd"), make("b.pmd", source="annotated")])
    result = upsert_records(path, [make("a.pmd", top=21.0), make("b.pmd", top=22.0), make("c.pmd")])
    by_model = {record.model: record for record in read_manifest(path)}
    assert [record.model for record in result] == ["a.pmd", "b.pmd", "c.pmd"] == list(by_model)
    assert by_model["a.pmd"].head["top"] == 21.0  # newer suggestion replaces the older
    assert by_model["b.pmd"].head["top"] == 20.0 and by_model["b.pmd"].source == "annotated"
    upsert_records(path, [make("b.pmd", source="annotated", top=23.0)])
    assert read_manifest(path)[1].head["top"] == 23.0  # a person may revise their own work
    assert default_models_root(path) == path.parent.resolve()


def test_crash_before_rename_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.jsonl"
    upsert_records(path, [make("a.pmd")])
    before = path.read_bytes()

    def crash(src, dst):
        assert os.path.dirname(src) == str(tmp_path) and os.path.getsize(src) > len(before)  # complete temp file
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        upsert_records(path, [make("b.pmd")])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]


def _writer(path: str, prefix: str) -> None:
    for index in range(15):
        upsert_records(path, [make(f"{prefix}{index}.pmd")])


def test_concurrent_writers_both_land(tmp_path):
    path = str(tmp_path / "m.jsonl")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, prefix)) for prefix in "ab"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert sorted(record.model for record in read_manifest(path)) == sorted(
        f"{prefix}{index}.pmd" for prefix in "ab" for index in range(15))


def test_sha256(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    assert model_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_files_follow_the_umask_keep_their_mode_and_leave_no_lock(tmp_path):
    from pipeline.shards import FORMAT_VERSION, write_index

    mask = os.umask(0o022)
    try:
        upsert_records(tmp_path / "m.jsonl", [make("a.pmd")])
        write_index(tmp_path / "ds", {"format_version": FORMAT_VERSION, "shards": []})
    finally:
        os.umask(mask)
    assert (tmp_path / "m.jsonl").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "ds" / "index.json").stat().st_mode & 0o777 == 0o644
    (tmp_path / "m.jsonl").chmod(0o664)  # shared with a group: stays so
    upsert_records(tmp_path / "m.jsonl", [make("b.pmd")])
    assert (tmp_path / "m.jsonl").stat().st_mode & 0o777 == 0o664
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "m.jsonl"]  # no .lock, no .tmp

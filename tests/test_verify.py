"""`mmdsynth demo`, `inspect` and `verify`: a sound dataset passes, each kind of damage is caught."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from pipeline import shards
from pipeline.demo import run_demo
from pipeline.verify import inspect, verify

CLI = [sys.executable, "-c", "from pipeline.cli import main; main()"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo-dataset"
    result = run_demo(out, poses=12, size=32, jobs=1, progress=False)
    assert not result.report.failed
    return out


def damaged(demo: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the demo dataset and the path of its first shard."""
    copy = tmp_path / "copy"
    shutil.copytree(demo, copy)
    return copy, copy / shards.read_index(copy)["shards"][0]["file"]


def test_demo_layout_and_inspect(demo):
    for name in ("manifest.jsonl", "index.json", "preview.png", "pose_histograms.png"):
        assert (demo / name).is_file(), name
    assert list((demo / "models" / "demo").glob("*.pmx"))
    summary = inspect(demo)
    assert summary["samples"] == 12 and summary["splits"] == {"train": 12}
    assert list(summary["models"].values()) == [12] and summary["bytes"] > 0
    run = subprocess.run([*CLI, "inspect", str(demo)], capture_output=True, text=True)
    assert run.returncode == 0 and "train 12" in run.stdout and '"seed": 0' in run.stdout


def test_sound_dataset_verifies(demo):
    assert verify(demo) == []
    run = subprocess.run([*CLI, "verify", str(demo)], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip().endswith(": ok")


def test_background_colour_caught(demo, tmp_path):
    copy, shard = damaged(demo, tmp_path)
    with h5py.File(shard, "r+") as f:
        image = f["posed"][2]
        image[0, 0] = (9, 0, 0, 0)  # colour under alpha 0
        f["posed"][2] = image
    assert any("posed: 1 images have colour where alpha is 0 (first at row 2)" in d for d in verify(copy))


def test_empty_image_and_bad_pose_caught(demo, tmp_path):
    copy, shard = damaged(demo, tmp_path)
    with h5py.File(shard, "r+") as f:
        f["expression"][1] = 0
        f["pose"][3, 4] = 1.5
    defects = verify(copy)
    assert any("expression: 1 images are empty" in d for d in defects)
    assert any("1 poses out of range (first at row 3)" in d for d in defects)


def test_truncated_shard_caught_by_cli(demo, tmp_path):
    copy, shard = damaged(demo, tmp_path)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    run = subprocess.run([*CLI, "verify", str(copy)], capture_output=True, text=True)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert str(shard) in run.stdout and "defect" in run.stderr


def test_count_mismatch_and_duplicate_ids_caught(demo, tmp_path):
    copy, shard = damaged(demo, tmp_path)
    with h5py.File(shard, "r+") as f:
        f["sample_id"][1] = f["sample_id"][0]
    index = shards.read_index(copy)
    index["shards"][0]["samples"] += 1
    shards.write_index(copy, index)
    defects = verify(copy)
    assert any("index.json says" in d for d in defects)
    assert any("sample ids occur more than once" in d for d in defects)


def test_not_a_dataset_is_a_user_error(tmp_path):
    run = subprocess.run([*CLI, "verify", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.startswith("error:") and "index not found" in run.stderr


@pytest.mark.parametrize("change, message", [
    (lambda morphs: morphs.pop("check"), "no channel check recorded"),
    (lambda morphs: morphs["check"].update(ok=False, reasons=["eye_left: does not close the left eye"]),
     "channel check failed: eye_left: does not close the left eye"),
    (lambda morphs: morphs["morphs"].update(eye_right=morphs["morphs"]["eye_left"]),
     "two pose channels drive the same morph"),
])
def test_a_model_without_a_passing_channel_check_fails_verify(demo, tmp_path, change, message):
    copy, shard = damaged(demo, tmp_path)
    with h5py.File(shard, "r+") as f:
        morphs = json.loads(f["models/morphs"].asstr()[0])
        change(morphs)
        f["models/morphs"][0] = json.dumps(morphs, ensure_ascii=False)
    assert any(message in problem for problem in verify(copy))

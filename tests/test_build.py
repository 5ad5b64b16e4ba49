"""The batch build on real renders: same pixels for any worker count or backend, resumable
after SIGKILL, refusing a changed config, and isolating a broken model."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from manifests.record import Record
from manifests.store import model_sha256, read_manifest
from pipeline import shards
from pipeline.build import BuildError, build
from pipeline.demo import DEMO_MORPHS, write_demo_manifest
from pipeline.verify import verify
from renderer.demo import DEMO_HEAD

SIZE = 32
FIELDS = ("rest", "expression", "posed", "pose", "model_index", "sample_id", "models/name",
          "models/sha256", "models/morphs")
CLI = [sys.executable, "-c", "from pipeline.cli import main; main()"]


def write_manifest(root: Path, extra: list[Record] = ()) -> Path:
    """The demo character in group a (train) and a wider variant of it in group b (val)."""
    from renderer.demo import demo_model
    from renderer.pmx_writer import write_pmx

    _, manifest = write_demo_manifest(root)
    demo = read_manifest(manifest)[0]
    variant = demo_model()
    variant.vertices.positions[:, 0] *= 1.2
    write_pmx(variant, root / "models" / "variant.pmx")
    second = Record(**{**demo.to_dict(), "model": "models/variant.pmx", "group": "b", "split": "val",
                       "sha256": model_sha256(root / "models" / "variant.pmx")})
    demo.group, demo.split = "a", "train"
    manifest.write_text("".join(r.to_json() + "\n" for r in [demo, second, *extra]), encoding="utf-8")
    return manifest


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_manifest(tmp_path_factory.mktemp("models"))


def contents(root: Path) -> dict[str, dict[str, np.ndarray]]:
    index = shards.read_index(root)
    result = {}
    for entry in index["shards"]:
        with shards.open_shard(root / entry["file"]) as f:
            result[entry["file"]] = {name: f[name][:] for name in FIELDS}
    return result


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for file in a:
        for name in FIELDS:
            assert np.array_equal(a[file][name], b[file][name]), (file, name)


@pytest.fixture(scope="module")
def serial(manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial")
    report = build(manifest, out, 24, jobs=1, size=SIZE, shard_size=6, progress=False)
    assert not report.failed and len(report.written) == 4 and report.splits == {"train": 12, "val": 12}
    return out


def test_serial_build_is_sound(serial):
    assert verify(serial) == []
    data = contents(serial)
    assert sorted(data) == [f"shards/{s}-{k:05d}.h5" for s in ("train", "val") for k in range(2)]
    ids = np.concatenate([d["sample_id"] for d in data.values()])
    assert sorted(ids.tolist()) == list(range(24))
    first = data["shards/train-00000.h5"]
    assert not np.array_equal(first["expression"], first["posed"])  # the rotation shows
    assert (first["pose"][:, 3:] != 0).all()
    assert (serial / "preview.png").stat().st_size > 0 and (serial / "pose_histograms.png").stat().st_size > 0


def test_two_jobs_same_output(manifest, serial, tmp_path):
    build(manifest, tmp_path, 24, jobs=2, size=SIZE, shard_size=6, progress=False, sheets=False)
    assert_same(contents(serial), contents(tmp_path))


def test_dask_cluster_same_output(manifest, serial, tmp_path):
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        build(manifest, tmp_path, 24, backend="dask", scheduler=cluster.scheduler_address, size=SIZE,
              shard_size=6, progress=False, sheets=False)
    assert_same(contents(serial), contents(tmp_path))


def test_changed_config_refuses_unless_forced(manifest, serial, tmp_path):
    args = dict(jobs=1, size=SIZE, shard_size=6, progress=False, sheets=False)
    build(manifest, tmp_path, 24, **args)
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "shards").glob("*.h5")}
    again = build(manifest, tmp_path, 24, **args)  # same config: nothing to do
    assert again.skipped == 4 and not again.written
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    with pytest.raises(BuildError, match=r"different config \(seed 0 -> 1\)"):
        build(manifest, tmp_path, 24, seed=1, **args)
    run = subprocess.run([*CLI, "build", "-m", str(manifest), "-o", str(tmp_path), "--poses", "24",
                          "--size", str(SIZE), "--shard-size", "6", "--seed", "1", "-q"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "--force" in run.stderr
    forced = build(manifest, tmp_path, 24, seed=1, force=True, **args)
    assert len(forced.written) == 4 and shards.read_index(tmp_path)["config"]["seed"] == 1


def test_sigkill_then_resume(manifest, tmp_path):
    command = [*CLI, "build", "-m", str(manifest), "-o", str(tmp_path), "--poses", "120", "--size", str(SIZE),
               "--shard-size", "10", "-q"]
    process = subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "shards").glob("*.h5")) and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "shards").glob("*.h5")}
    assert 0 < len(before) < 12, "the build finished before it could be killed"
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"{12 - len(before)} shards written, {len(before)} already complete" in run.stdout
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "shards").glob("*.h5")}
    assert len(after) == 12 and all(after[name] == mtime for name, mtime in before.items())
    assert not list((tmp_path / "shards").glob(".*.tmp"))
    assert verify(tmp_path) == []
    ids = np.concatenate([d["sample_id"] for d in contents(tmp_path).values()])
    assert sorted(ids.tolist()) == list(range(120))


def test_broken_model_reported_and_skipped(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "broken.pmx").write_bytes(b"")
    template = Record(model="models/broken.pmx", sha256=model_sha256(tmp_path / "models" / "broken.pmx"),
                      group="a", split="train", status="ok", head={"top": 1.0, "bottom": 0.0},
                      morphs={"mouth_open": "あ"})
    manifest = write_manifest(tmp_path, [template])
    out = tmp_path / "out"
    run = subprocess.run([*CLI, "build", "-m", str(manifest), "-o", str(out), "--poses-per-model", "4",
                          "--size", str(SIZE), "-q"], capture_output=True, text=True)
    assert run.returncode == 1, run.stderr
    assert "failed: models/broken.pmx:" in run.stdout and "Traceback" not in run.stderr
    index = shards.read_index(out)
    assert [entry["model"] for entry in index["failed"]] == ["models/broken.pmx"]
    assert index["splits"] == {"train": 4, "val": 4}
    assert verify(out) == []


def test_layers_hook_writes_stacks(manifest, tmp_path):
    from pipeline.layers import NAMES

    build(manifest, tmp_path, poses_per_model=2, size=SIZE, layers=True, progress=False, sheets=False)
    with shards.open_shard(tmp_path / "shards" / "train-00000.h5") as f:
        assert list(f["layers/names"].asstr()[:]) == list(NAMES)
        assert f["layers/names"].attrs["taxonomy"] == "see-through"
        assert f["layers/posed"].shape == (2, len(NAMES), SIZE, SIZE, 4)
        assert f["layers/rest"].shape == (1, len(NAMES), SIZE, SIZE, 4)
        covered = f["layers/posed"][:, :, :, :, 3].max(axis=1) > 0
        assert np.array_equal(covered, f["posed"][:, :, :, 3] > 0)  # the layers cover what the image covers


@pytest.mark.real_models
def test_real_models_suggested_then_built_and_verified(shared_models, tmp_path):
    """Suggest -> build -> verify on real characters: every model suggested ok passes the build's check."""
    from annotator.suggest import suggest
    from pipeline.bench.build import SHARED_FILES

    records = [suggest(shared_models / name, shared_models) for name in SHARED_FILES]
    for record in records:
        record.split = "train"
    assert [r.status for r in records] == ["ok"] * len(records), [r.review for r in records]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(r.to_json() + "\n" for r in records), encoding="utf-8")
    report = build(manifest, tmp_path / "out", poses_per_model=2, size=SIZE, models_root=shared_models,
                   progress=False, sheets=False)
    assert report.failed == [] and sum(report.splits.values()) == 2 * len(records)
    assert verify(tmp_path / "out") == []


def test_toon_shading_differs_and_a_changed_shading_is_refused(manifest, serial, tmp_path):
    args = dict(jobs=1, size=SIZE, shard_size=6, progress=False, sheets=False)
    build(manifest, tmp_path, 24, shading="toon", **args)
    phong, toon = contents(serial), contents(tmp_path)
    assert phong.keys() == toon.keys()
    first = "shards/train-00000.h5"
    assert np.array_equal(phong[first]["pose"], toon[first]["pose"])
    assert np.array_equal(phong[first]["posed"][..., 3] > 0, toon[first]["posed"][..., 3] > 0)
    assert np.abs(phong[first]["posed"].astype(int) - toon[first]["posed"].astype(int)).max() > 20
    assert shards.read_index(tmp_path)["config"]["shading"] == "toon"
    with pytest.raises(BuildError, match=r"different config \(shading 'toon' -> 'phong'\)"):
        build(manifest, tmp_path, 24, **args)


def test_gpu_choice_is_not_config_and_a_missing_gpu_is_one_line(manifest, serial, tmp_path):
    args = dict(jobs=1, size=SIZE, shard_size=6, progress=False, sheets=False)
    build(manifest, tmp_path, 24, gpus=[0, 0], **args)
    assert_same(contents(serial), contents(tmp_path))
    assert build(manifest, tmp_path, 24, **args).skipped == 4  # resuming on the default device is fine
    run = subprocess.run([*CLI, "build", "-m", str(manifest), "-o", str(tmp_path / "other"), "--poses", "4",
                          "--size", str(SIZE), "--gpu", "0,99", "--gpu", "98", "-q"], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "EGL device 99" in run.stderr and "Traceback" not in run.stderr


LAYER_CONFIG = """\
preset: coarse
layers: [back_hair, body, neck, face, eyes, mouth, eyelash_brow, front_hair, accessory]
rename: {eyelash_brow: brows}
keywords: {白目: eyes, 瞳: eyes}
"""


def test_layer_config_renames_and_remaps_layers(manifest, tmp_path):
    config = tmp_path / "layers.yaml"
    config.write_text(LAYER_CONFIG, encoding="utf-8")
    out = tmp_path / "out"
    args = dict(poses_per_model=2, size=SIZE, layers=True, progress=False, sheets=False)
    build(manifest, out, layer_config=config, **args)
    names = ["back_hair", "body", "neck", "face", "eyes", "mouth", "brows", "front_hair", "accessory"]
    with shards.open_shard(out / "shards" / "train-00000.h5") as f:
        assert list(f["layers/names"].asstr()[:]) == names
        rest = f["layers/rest"][0]
        covered = rest[..., 3] > 0
        assert covered[names.index("eyes")].any() and covered[names.index("brows")].any()
        assert not covered[names.index("accessory")].any()  # nothing falls back
        assert np.array_equal(covered.any(axis=0), f["rest"][0, ..., 3] > 0)
    assert verify(out) == []
    config.write_text(LAYER_CONFIG.replace("瞳: eyes", "瞳: face"), encoding="utf-8")
    with pytest.raises(BuildError, match="different config.*layer_config"):
        build(manifest, out, layer_config=config, **args)
    with pytest.raises(BuildError, match="needs --layers"):
        build(manifest, tmp_path / "plain", 4, size=SIZE, layer_config=config, progress=False)
    config.write_text("layers: [a, a]\n", encoding="utf-8")
    run = subprocess.run([*CLI, "build", "-m", str(manifest), "-o", str(tmp_path / "bad"), "--poses", "4",
                          "--layers", "--layer-config", str(config), "-q"], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "layers.yaml" in run.stderr, run.stderr


def test_a_model_failing_the_channel_check_is_not_shipped(tmp_path):
    """Winks bound to the wrong eyes: listed as failed with the reason, the rest ships, verify is ok."""
    (tmp_path / "models").mkdir()
    swapped_file = tmp_path / "models" / "swapped.pmx"
    write_demo_manifest(tmp_path / "demo")
    shutil.copytree(tmp_path / "demo" / "models" / "demo", tmp_path / "models", dirs_exist_ok=True)
    (tmp_path / "models" / "demo.pmx").rename(swapped_file)
    roles = dict(DEMO_MORPHS)
    swapped = Record(model="models/swapped.pmx", sha256=model_sha256(swapped_file), group="c", split="train",
                     status="ok", head=dict(zip(("top", "bottom"), DEMO_HEAD)),
                     morphs={**roles, "wink_left": roles["wink_right"], "wink_right": roles["wink_left"]})
    manifest = write_manifest(tmp_path, [swapped])
    out = tmp_path / "out"
    report = build(manifest, out, 4, jobs=1, size=SIZE, shard_size=8, progress=False)
    assert [entry["model"] for entry in report.failed] == ["models/swapped.pmx"]
    assert "channel check failed: eye_left: does not close the left eye" in report.failed[0]["reason"]
    assert verify(out) == []
    with shards.open_shard(out / shards.read_index(out)["shards"][0]["file"]) as f:
        recorded = json.loads(f["models/morphs"].asstr()[0])
    assert recorded["check"]["ok"] is True and set(recorded["check"]["channels"]) == {"eye_left", "eye_right", "mouth"}

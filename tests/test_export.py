"""``mmdsynth export``: PNG folders and WebDataset tars whose images equal the shard pixels,
one CSV row per sample with the rest image referenced; and full-body framing on build."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import tarfile

import numpy as np
import pytest
from PIL import Image
from test_build import CLI, SIZE, write_manifest

from pipeline import shards
from pipeline.build import build
from pipeline.export import CSV_COLUMNS, convert, export


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    build(write_manifest(tmp_path_factory.mktemp("models")), root, 20, size=SIZE, shard_size=6, progress=False,
          sheets=False)
    return root


def shard_pixels(root) -> dict[int, dict[str, np.ndarray]]:
    """sample_id -> its rest, expression and posed images and pose, straight from the shards."""
    found = {}
    for entry in shards.read_index(root)["shards"]:
        with shards.open_shard(root / entry["file"]) as f:
            for row, sample_id in enumerate(f["sample_id"][:].tolist()):
                found[sample_id] = {"rest": f["rest"][f["model_index"][row]], "expression": f["expression"][row],
                                    "posed": f["posed"][row], "pose": f["pose"][row]}
    return found


def png(data) -> np.ndarray:
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
        return np.asarray(image)


def rows(out, split) -> list[dict[str, str]]:
    with open(out / f"{split}.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_png_round_trip(dataset, tmp_path):
    out = tmp_path / "png"
    run = subprocess.run([*CLI, "export", str(dataset), "--to", "png", "--out", str(out), "-q"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    expected = shard_pixels(dataset)
    seen = []
    for split in ("train", "val"):
        for row in rows(out, split):
            sample = expected[int(row["sample_id"])]
            for name in ("rest", "expression", "posed"):
                assert np.array_equal(png(out / row[name]), sample[name]), (row["sample_id"], name)
            assert np.allclose([float(row[c]) for c in CSV_COLUMNS[-6:]], sample["pose"])
            seen.append(int(row["sample_id"]))
    assert sorted(seen) == sorted(expected)
    assert len(list((out / "rest").glob("*.png"))) == 2  # one per model, referenced by every sample
    settings = json.loads((out / "export.json").read_text("utf-8"))
    assert settings["splits"] == {"train": 10, "val": 10} and settings["config"]["size"] == SIZE


def test_webdataset_round_trip_on_white_without_alpha(dataset, tmp_path):
    out = tmp_path / "wds"
    export(dataset, out, "webdataset", background="white", rgb=True)
    expected = shard_pixels(dataset)
    tars = sorted(out.glob("*.tar"))
    assert [t.name for t in tars] == [f"{s}-0000{k}.tar" for s in ("train", "val") for k in range(2)]
    for path in tars:
        with tarfile.open(path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        keys = sorted({name.split(".")[0] for name in members})
        kinds = ("expression.png", "posed.png", "json")
        assert sorted(members) == sorted(f"{k}.{kind}" for k in keys for kind in kinds)
        for key in keys:
            record = json.loads(members[f"{key}.json"])
            sample = expected[record["sample_id"]]
            for name in ("expression", "posed"):
                image = sample[name].astype(np.float64)
                alpha = image[..., 3:] / 255
                white = np.round(image[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
                assert np.array_equal(png(members[f"{key}.{name}.png"]), white)
                assert record[name] == f"{path.name}:{key}.{name}.png"
            assert np.array_equal(png(out / record["rest"]), convert(sample["rest"][None], "white", True)[0])
    assert len(rows(out, "train")) == 10


def test_export_refuses_its_own_dataset_folder(dataset):
    run = subprocess.run([*CLI, "export", str(dataset), "--to", "png", "--out", str(dataset / "x")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "folder of its own" in run.stderr and "Traceback" not in run.stderr


def test_full_body_framing_shows_the_whole_model(tmp_path):
    manifest = write_manifest(tmp_path / "models")
    heads, bodies = tmp_path / "head", tmp_path / "body"
    build(manifest, heads, 2, size=64, progress=False, sheets=False)
    run = subprocess.run([*CLI, "build", "-m", str(manifest), "-o", str(bodies), "--poses", "2", "--size", "64",
                          "--framing", "full-body", "-q"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert shards.read_index(bodies)["config"]["framing"] == "full-body"
    with shards.open_shard(heads / "shards/train-00000.h5") as f:
        head = f["rest"][0, ..., 3] > 0
    with shards.open_shard(bodies / "shards/train-00000.h5") as f:
        body = f["rest"][0, ..., 3] > 0
    assert head[-1].any()  # head framing: the body runs off the bottom edge
    rows_covered = np.flatnonzero(body.any(axis=1))
    assert not body[0].any() and not body[-1].any()  # the whole model inside the frame
    assert rows_covered[-1] - rows_covered[0] + 1 >= 0.85 * 64  # and filling it (5% margins)

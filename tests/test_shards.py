"""The HDF5 shard schema: what ShardWriter writes, atomic renames, the index, clear errors."""
from __future__ import annotations

import json

import h5py
import hdf5plugin
import numpy as np
import pytest

from pipeline.shards import FORMAT_VERSION, DatasetError, ShardWriter, open_shard, read_index, shard_path, write_index

SIZE = 8


def images(n: int, tag: int, layers: int | None = None) -> np.ndarray:
    """Images whose red channel is the row number and blue a tag: swaps are caught."""
    shape = (n, SIZE, SIZE, 4) if layers is None else (n, layers, SIZE, SIZE, 4)
    out = np.zeros(shape, np.uint8)
    out[..., 0] = np.arange(n).reshape((n,) + (1,) * (len(shape) - 2))
    out[..., 2] = tag
    out[..., 3] = 255
    return out


def write(path, samples=5, models=2, layers=None, finish=None):
    n_layers = len(layers) if layers else None
    with ShardWriter(path, size=SIZE, models=models, samples=samples, split="train",
                     config={"seed": 3}, layers=layers) as writer:
        for m in range(models):
            writer.add_model(m, f"model{m}.pmx", f"{m:064x}", json.dumps({"blink": "まばたき"}),
                             images(models, 1)[m],
                             None if layers is None else images(models, 4, n_layers)[m])
        pose = np.arange(samples * 6, dtype=np.float64).reshape(samples, 6)
        layer_images = None if layers is None else images(samples, 5, n_layers)
        writer.add_samples(0, pose, np.arange(samples) % models, np.arange(samples) + 100,
                           images(samples, 2), images(samples, 3), layer_images, layer_images)
        if finish:
            writer.finish(**finish)
    return path


def test_schema_round_trip(tmp_path):
    path = write(shard_path(tmp_path, "train", 0))
    assert path.name == "train-00000.h5" and path.parent.name == "shards"
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == FORMAT_VERSION
        assert f.attrs["split"] == "train" and json.loads(f.attrs["config"]) == {"seed": 3}
        assert f.attrs["generator_version"]
        for name, shape in [("rest", (2, SIZE, SIZE, 4)), ("expression", (5, SIZE, SIZE, 4)),
                            ("posed", (5, SIZE, SIZE, 4))]:
            assert f[name].shape == shape and f[name].dtype == np.uint8
            assert f[name].chunks == (1, SIZE, SIZE, 4)
            assert str(hdf5plugin.BLOSC_ID) in f[name]._filters
        np.testing.assert_array_equal(f["posed"][()], images(5, 3))
        np.testing.assert_array_equal(f["rest"][()], images(2, 1))
        assert f["pose"].dtype == np.float32 and f["pose"][4, 5] == 29
        assert f["model_index"].dtype == np.int32 and list(f["model_index"]) == [0, 1, 0, 1, 0]
        assert f["sample_id"].dtype == np.int64 and list(f["sample_id"]) == [100, 101, 102, 103, 104]
        assert list(f["models/name"].asstr()) == ["model0.pmx", "model1.pmx"]
        assert f["models/sha256"].asstr()[1] == f"{1:064x}"
        assert json.loads(f["models/morphs"].asstr()[0]) == {"blink": "まばたき"}
        assert "layers" not in f


def test_layers(tmp_path):
    path = write(tmp_path / "a.h5", layers=["body", "hair", "face"])
    with h5py.File(path, "r") as f:
        assert list(f["layers/names"].asstr()) == ["body", "hair", "face"]
        assert f["layers/rest"].shape == (2, 3, SIZE, SIZE, 4)
        assert f["layers/posed"].chunks == (1, 1, SIZE, SIZE, 4)
        np.testing.assert_array_equal(f["layers/expression"][()], images(5, 5, 3))


def test_layer_images_must_match_the_shard(tmp_path):
    with pytest.raises(ValueError, match="without layers"):
        with ShardWriter(tmp_path / "a.h5", size=SIZE, models=1, samples=1, split="train", config={}) as w:
            w.add_model(0, "m", "0" * 64, "{}", images(1, 1)[0], images(1, 1, 2)[0])
    assert list(tmp_path.iterdir()) == []


def test_finish_truncates_to_what_was_written(tmp_path):
    path = write(tmp_path / "a.h5", samples=5, models=2, layers=["x"], finish={"samples": 3, "models": 1})
    with h5py.File(path, "r") as f:
        assert f["posed"].shape[0] == f["pose"].shape[0] == f["layers/posed"].shape[0] == 3
        assert f["rest"].shape[0] == f["models/name"].shape[0] == f["layers/rest"].shape[0] == 1
        assert f["layers/names"].shape == (1,)
        np.testing.assert_array_equal(f["posed"][()], images(5, 3)[:3])


def test_written_under_a_temporary_name_then_renamed(tmp_path):
    final = tmp_path / "shards" / "train-00000.h5"
    with ShardWriter(final, size=SIZE, models=1, samples=1, split="train", config={}) as writer:
        assert not final.exists()
        assert writer.tmp_path == final.with_name(".train-00000.h5.tmp") and writer.tmp_path.exists()
    assert final.exists() and not writer.tmp_path.exists()


def test_failure_leaves_nothing(tmp_path):
    final = tmp_path / "a.h5"
    with pytest.raises(RuntimeError):
        with ShardWriter(final, size=SIZE, models=1, samples=2, split="train", config={}):
            raise RuntimeError("render failed")
    assert list(tmp_path.iterdir()) == []


def test_open_shard_errors(tmp_path):
    with pytest.raises(DatasetError, match="missing.h5: shard file not found"):
        open_shard(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(DatasetError, match="junk.h5: not an HDF5 shard"):
        open_shard(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(DatasetError, match="other.h5: shard format_version 99"):
        open_shard(tmp_path / "other.h5")
    with open_shard(write(tmp_path / "ok.h5"), cache_bytes=1 << 20) as f:
        assert f["posed"].shape == (5, SIZE, SIZE, 4)


def test_index_round_trip_and_errors(tmp_path):
    index = {"format_version": FORMAT_VERSION, "shards": [], "splits": {}, "config": {"a": "é"}}
    write_index(tmp_path / "ds", index)
    assert read_index(tmp_path / "ds") == index
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["index.json"]
    with pytest.raises(DatasetError, match="nowhere: dataset directory not found"):
        read_index(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="index.json: index not found"):
        read_index(tmp_path / "empty")
    (tmp_path / "empty" / "index.json").write_text("{broken")
    with pytest.raises(DatasetError, match="index.json: unreadable index"):
        read_index(tmp_path / "empty")
    (tmp_path / "empty" / "index.json").write_text('{"format_version": 7}')
    with pytest.raises(DatasetError, match="format_version 7"):
        read_index(tmp_path / "empty")


@pytest.mark.parametrize("entries, message", [
    ([{"file": "shards/../../../escaped-00000.h5", "split": "../../../escaped"}], "is not shards/"),
    ([{"file": "/etc/train-00000.h5", "split": "train"}], "is not shards/"),
    ([{"file": "shards/train-00000.h5", "split": "val"}], "is not shards/"),
    ([{"file": "shards/train-00000.h5", "split": "train"}] * 2, "listed twice"),
])
def test_index_entries_stay_inside_the_dataset_and_appear_once(tmp_path, entries, message):
    write_index(tmp_path, {"format_version": FORMAT_VERSION, "shards": entries, "splits": {}, "config": {}})
    with pytest.raises(DatasetError, match=message):
        read_index(tmp_path)

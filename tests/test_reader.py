"""The reader trainers use: map-style values, batches, pickling, streaming partitions, resume, errors."""
from __future__ import annotations

import contextlib
import pickle
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
import pytest

import pipeline.shards
from pipeline.reader import Dataset, StreamingDataset, _chunk_grid, to_chw
from pipeline.shards import FORMAT_VERSION, DatasetError, ShardWriter, shard_path, write_index

SIZE = 16
TRAIN_SHARDS = (7, 5, 9)  # samples per shard: uneven on purpose
LAYERS = ["body", "hair"]
ALL_FIELDS = ("rest", "expression", "posed", "pose", "model_index")
# Per train shard: None keeps the writer's Blosc (decoded by the reader itself); gzip and
# no filter at all are read through h5py.
MIXED_CODECS = (None, {"compression": "gzip", "compression_opts": 4}, {})


def tagged(ids: np.ndarray, tag: int, layers: int = 0) -> np.ndarray:
    """Images that carry their id (two bytes) and a tag in every pixel, plus the column."""
    shape = (len(ids), *((layers,) if layers else ()), SIZE, SIZE, 4)
    out = np.zeros(shape, np.uint8)
    ids = np.asarray(ids).reshape((-1,) + (1,) * (len(shape) - 2))
    out[..., 0], out[..., 1] = ids % 256, ids // 256
    out[..., 2] = tag * 16 + np.arange(SIZE)
    out[..., 3] = 255
    return out


@contextlib.contextmanager
def image_filters(options: dict | None) -> Iterator[None]:
    """The shard writer's image filters replaced by ``options`` (None: left alone)."""
    with pytest.MonkeyPatch.context() as patch:
        if options is not None:
            patch.setattr(pipeline.shards, "compression", lambda: options)
        yield


def build_dataset(root: Path, layers: bool = False, codecs: Sequence[dict | None] = ()) -> Path:
    """Train shards of 7, 5 and 9 samples and one val shard; sample ids are global and unique.
    ``codecs[k]``, when given and not None, replaces the image filters of train shard k."""
    n_layers = len(LAYERS) if layers else 0
    entries, next_id, next_model = [], 0, 0
    for split, counts in (("train", TRAIN_SHARDS), ("val", (4,))):
        for k, n in enumerate(counts):
            path, models = shard_path(root, split, k), 2 + k % 2
            model_ids = np.arange(models) + next_model
            codec = codecs[k] if split == "train" and k < len(codecs) else None
            with image_filters(codec), ShardWriter(path, size=SIZE, models=models, samples=n, split=split,
                                                   config={}, layers=LAYERS if layers else None) as writer:
                for m, model_id in enumerate(model_ids):
                    writer.add_model(m, f"m{model_id}.pmx", "0" * 64, "{}", tagged([model_id], 1)[0],
                                     tagged([model_id], 4, n_layers)[0] if layers else None)
                ids = np.arange(n) + next_id
                extra = (tagged(ids, 5, n_layers), tagged(ids, 6, n_layers)) if layers else ()
                writer.add_samples(0, ids[:, None] * np.ones(6) / 100, ids % models, ids,
                                   tagged(ids, 2), tagged(ids, 3), *extra)
            entries.append({"file": str(path.relative_to(root)), "split": split, "samples": n, "models": models})
            next_id, next_model = next_id + n, next_model + models
    write_index(root, {"format_version": FORMAT_VERSION, "generator_version": "test", "config": {},
                       "shards": entries, "splits": {"train": sum(TRAIN_SHARDS), "val": 4}, "failed": []})
    return root


def direct(root: Path, split: str, index: int) -> dict[str, np.ndarray]:
    """Sample ``index`` of a split read with plain h5py: the reference for every comparison."""
    counts = TRAIN_SHARDS if split == "train" else (4,)
    k = int(np.searchsorted(np.cumsum(counts), index, side="right"))
    row = index - sum(counts[:k])
    with h5py.File(shard_path(root, split, k), "r") as f:
        sample = {name: f[name][row] for name in ("expression", "posed", "pose", "model_index", "sample_id")}
        sample["rest"] = f["rest"][sample["model_index"]]
        if "layers" in f:
            for name in ("expression", "posed"):
                sample[f"layers/{name}"] = f[f"layers/{name}"][row]
            sample["layers/rest"] = f["layers/rest"][sample["model_index"]]
    return sample


def assert_same(got: dict, expected: dict) -> None:
    for name, value in got.items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("reader") / "ds")


@pytest.fixture(scope="module")
def layered(tmp_path_factory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("layered") / "ds", layers=True)


def test_map_style_equals_direct_reads(root):
    ds = Dataset(root, fields=ALL_FIELDS)
    assert len(ds) == sum(TRAIN_SHARDS)
    for i in range(len(ds)):
        sample = ds[i]
        assert set(sample) == {*ALL_FIELDS, "sample_id"}
        assert sample["posed"].shape == (SIZE, SIZE, 4) and sample["posed"].dtype == np.uint8
        assert sample["pose"].shape == (6,) and sample["pose"].dtype == np.float32
        assert sample["sample_id"] == i
        assert_same(sample, direct(root, "train", i))
    assert_same(ds[-1], direct(root, "train", len(ds) - 1))
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert list(Dataset(root, "val")[3]) == ["rest", "expression", "posed", "pose", "sample_id"]
    assert Dataset(root, "val")[3]["sample_id"] == sum(TRAIN_SHARDS) + 3


def test_batch_in_the_order_asked(root):
    ds = Dataset(root, fields=ALL_FIELDS)
    indices = [20, 3, 3, 0, 12, 7, -1]
    batch = ds.get_batch(indices)
    assert batch["posed"].shape == (len(indices), SIZE, SIZE, 4)
    for position, index in enumerate(indices):
        assert_same({name: value[position] for name, value in batch.items()}, ds[index])
    with pytest.raises(IndexError):
        ds.get_batch([0, 21])


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("mixed") / "ds", layers=True, codecs=MIXED_CODECS)


def stack(samples: list[dict]) -> dict[str, np.ndarray]:
    return {name: np.stack([sample[name] for sample in samples]) for name in samples[0]}


def stacked(ds: Dataset, indices: Sequence[int]) -> dict[str, np.ndarray]:
    """Single-item reads (h5py's own decoding), stacked: the reference for batches."""
    return stack([ds[int(i)] for i in indices])


def test_shards_decoded_by_the_reader_and_by_h5py(mixed):
    """What the batch test below covers: Blosc images take the direct-chunk path, the rest h5py."""
    grids = []
    for k in range(len(TRAIN_SHARDS)):
        with h5py.File(shard_path(mixed, "train", k), "r") as f:
            grids.append([_chunk_grid(f[name]) for name in ("posed", "rest", "layers/posed", "pose")])
    assert grids == [[(), (), (len(LAYERS),), None], [None] * 4, [None] * 4]


@pytest.mark.parametrize("threads", [1, 3])
def test_batches_equal_single_reads(mixed, threads):
    fields = (*ALL_FIELDS, "layers/rest", "layers/posed")
    ds = Dataset(mixed, fields=fields, threads=threads)
    rng = np.random.default_rng(threads)
    for size in (1, 5, 21, 40):  # 40: every sample, some twice; the rest images are shared
        indices = rng.integers(-len(ds), len(ds), size)
        assert_same(ds.get_batch(indices), stacked(ds, indices))
        assert_same(stack(ds.get_samples(indices)), stacked(ds, indices))
    ds.close()


def test_unwritten_and_incompressible_rows(tmp_path):
    """A shard never finished keeps its planned rows, whose chunks have no storage (zeros);
    an image Blosc cannot shrink is stored unfiltered (HDF5 skips the optional filter)."""
    path = shard_path(tmp_path, "train", 0)
    noise = np.random.default_rng(0).integers(0, 256, (1, SIZE, SIZE, 4), dtype=np.uint8)
    with ShardWriter(path, size=SIZE, models=1, samples=4, split="train", config={}) as writer:
        writer.add_model(0, "m.pmx", "0" * 64, "{}", tagged([0], 1)[0])
        writer.add_samples(0, np.zeros((2, 6)), [0, 0], [0, 1], tagged([0, 1], 2),
                           np.concatenate([tagged([0], 3), noise]))
    write_index(tmp_path, {"format_version": FORMAT_VERSION, "shards": [
        {"file": str(path.relative_to(tmp_path)), "split": "train", "samples": 4, "models": 1}]})
    with h5py.File(path, "r") as f:
        assert [f["posed"].id.read_direct_chunk((row, 0, 0, 0))[0] for row in (0, 1)] == [0, 1]  # 1: unfiltered
    ds = Dataset(tmp_path, fields=("posed", "expression"), threads=2)
    batch = ds.get_batch([3, 1, 2, 0])
    assert_same(batch, stacked(ds, [3, 1, 2, 0]))
    np.testing.assert_array_equal(batch["posed"], [np.zeros_like(noise[0]), noise[0], np.zeros_like(noise[0]),
                                                   tagged([0], 3)[0]])


def test_damaged_chunk_names_the_file(tmp_path):
    root = build_dataset(tmp_path / "ds")
    path = shard_path(root, "train", 1)
    with h5py.File(path, "r") as f:
        offset = f["posed"].id.get_chunk_info_by_coord((2, 0, 0, 0)).byte_offset
    with open(path, "r+b") as f:  # the Blosc header's decoded size (bytes 4..8) now lies
        f.seek(offset + 4)
        f.write((123).to_bytes(4, "little"))
    ds = Dataset(root, fields=("posed",))
    assert_same(ds.get_batch([7, 8, 10]), stacked(ds, [7, 8, 10]))  # rows 0, 1, 3 of that shard
    with pytest.raises(DatasetError, match=r"train-00001\.h5: posed\[2\]: damaged Blosc chunk"):
        ds.get_batch([3, 9])


def test_layer_fields(layered):
    fields = ("layers/rest", "layers/expression", "layers/posed", "posed")
    ds = Dataset(layered, fields=fields)
    for i in (0, 8, 20):
        sample = ds[i]
        assert sample["layers/posed"].shape == (len(LAYERS), SIZE, SIZE, 4)
        assert_same(sample, direct(layered, "train", i))


def test_to_chw(root):
    sample = Dataset(root, fields=("posed", "pose"), transform=to_chw())[5]
    assert sample["posed"].shape == (4, SIZE, SIZE) and sample["posed"].dtype == np.float32
    assert sample["posed"][3].min() == 1.0 and sample["posed"][0, 0, 0] == pytest.approx(5 * 2 / 255 - 1)
    np.testing.assert_array_equal(sample["pose"], direct(root, "train", 5)["pose"])
    batch = Dataset(root, fields=("posed",), transform=to_chw("[0,1]")).get_batch([1, 2])
    assert batch["posed"].shape == (2, 4, SIZE, SIZE) and batch["posed"].max() == 1.0
    with pytest.raises(ValueError):
        to_chw("[0,255]")


def test_pickles_without_handles_and_reopens(root):
    ds = Dataset(root, transform=to_chw(), threads=2)
    first, batch = ds[4], ds.get_batch([4, 20])
    assert ds._files and ds._pool  # handles and decoding threads exist now
    copy = pickle.loads(pickle.dumps(ds))
    assert not copy._files and copy._pool is None
    assert_same(copy[4], first)
    assert_same(copy.get_batch([4, 20]), batch)


@pytest.mark.parametrize("threads", [1, 2])  # 1: Blosc decodes in the calling thread
def test_fork_after_use_reopens_in_the_child(root, threads):
    """Direct reads agree with a fork child's (tests/fork_reader_check.py, in a fresh interpreter)."""
    check = Path(__file__).with_name("fork_reader_check.py")
    run = subprocess.run([sys.executable, str(check), str(root), str(threads)], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parent.parent)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
    assert_same(Dataset(root, fields=ALL_FIELDS)[9], direct(root, "train", 9))


def ids_of(stream, worker_id=0, num_workers=1) -> list[int]:
    return [int(s["sample_id"]) for s in stream.iterate(worker_id, num_workers)]


def test_stream_exactly_once_across_ranks_and_workers(root):
    seen = []
    for rank in range(3):
        rank_ids = []
        for worker in range(2):
            stream = StreamingDataset(root, fields=("pose",), rank=rank, world_size=3, batch_size=2)
            worker_ids = ids_of(stream, worker, 2)
            assert worker_ids == stream.worker_order(worker, 2).tolist()
            rank_ids += worker_ids
        assert len(rank_ids) == len(stream)
        seen.append(rank_ids)
    assert sorted(sum(seen, [])) == list(range(sum(TRAIN_SHARDS)))
    assert [len(ids) for ids in seen] == [7, 7, 7]


def test_drop_last_gives_equal_counts(root):
    counts = [len(StreamingDataset(root, rank=r, world_size=4, drop_last=True)) for r in range(4)]
    assert counts == [5, 5, 5, 5]
    exact = [len(StreamingDataset(root, rank=r, world_size=4)) for r in range(4)]
    assert exact == [6, 5, 5, 5]


def test_shuffle_depends_on_seed_and_epoch_only(root):
    stream = StreamingDataset(root, fields=("pose",), seed=1)
    first = ids_of(stream)
    assert ids_of(StreamingDataset(root, fields=("pose",), seed=1)) == first
    stream.set_epoch(1)
    second = ids_of(stream)
    assert sorted(second) == sorted(first) and second != first
    assert ids_of(StreamingDataset(root, fields=("pose",), seed=2)) != first
    assert ids_of(StreamingDataset(root, fields=("pose",), shuffle=False)) == list(range(21))


def test_shuffle_keeps_shards_together(root):
    order = StreamingDataset(root, seed=5).epoch_order()
    shard_of = np.searchsorted(np.cumsum(TRAIN_SHARDS), order, side="right")
    assert np.count_nonzero(np.diff(shard_of)) == len(TRAIN_SHARDS) - 1


def test_resume_without_workers(root):
    stream = StreamingDataset(root, fields=("pose",), seed=3, rank=1, world_size=2)
    stream.set_epoch(2)
    iterator = iter(stream)
    taken = [int(next(iterator)["sample_id"]) for _ in range(4)]
    state = stream.state_dict()
    assert state == {"epoch": 2, "position": 4}
    resumed = StreamingDataset(root, fields=("pose",), seed=3, rank=1, world_size=2)
    resumed.load_state_dict(state)
    rest = ids_of(resumed)
    reference = StreamingDataset(root, seed=3, rank=1, world_size=2)
    reference.set_epoch(2)
    assert taken + rest == reference.rank_order().tolist()
    assert resumed.state_dict()["position"] == 0  # the epoch finished


def test_resume_with_workers_from_consumed_count(root):
    """Batches come back round-robin from the workers, so what was consumed is a prefix."""
    def loader_order(stream: StreamingDataset, workers: int, batch: int) -> list[int]:
        per_worker = [ids_of(stream, w, workers) for w in range(workers)]
        batches = [[ids[i:i + batch] for i in range(0, len(ids), batch)] for ids in per_worker]
        rounds = max(len(b) for b in batches)
        return [i for r in range(rounds) for b in batches if r < len(b) for i in b[r]]

    stream = StreamingDataset(root, fields=("pose",), seed=4, batch_size=3)
    full = loader_order(stream, 2, 3)
    assert sorted(full) == list(range(21))
    consumed = 9  # three batches
    resumed = StreamingDataset(root, fields=("pose",), seed=4, batch_size=3)
    resumed.load_state_dict(stream.state_dict(consumed=consumed))
    assert full[:consumed] + loader_order(resumed, 2, 3) == full


def test_errors_name_the_file_and_the_field(root, tmp_path):
    with pytest.raises(DatasetError, match="nowhere: dataset directory not found"):
        Dataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="index.json: index not found"):
        Dataset(tmp_path)
    with pytest.raises(DatasetError, match="no shards for split 'test'"):
        Dataset(root, "test")
    with pytest.raises(DatasetError, match="unknown field"):
        Dataset(root, fields=("posed", "depth"))
    with pytest.raises(DatasetError, match=r"train-00000\.h5: field 'layers/posed' was not built"):
        Dataset(root, fields=("layers/posed",))[0]
    broken = build_dataset(tmp_path / "broken")
    shard_path(broken, "train", 1).write_bytes(b"truncated")
    ds = Dataset(broken)
    ds[0]
    with pytest.raises(DatasetError, match=r"train-00001\.h5: not an HDF5 shard"):
        ds[8]

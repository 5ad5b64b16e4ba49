"""The reader inside a real torch DataLoader with two workers, under fork and spawn."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from test_reader import ALL_FIELDS, TRAIN_SHARDS, assert_same, build_dataset, direct  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from pipeline.reader import Dataset, StreamingDataset, to_chw  # noqa: E402

CONTEXTS = ["fork", "spawn"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("torch") / "ds")


def as_numpy(batch: dict) -> dict[str, np.ndarray]:
    return {name: value.numpy() for name, value in batch.items()}


@pytest.mark.parametrize("context", CONTEXTS)
def test_map_style_in_workers(root, context):
    ds = Dataset(root, fields=ALL_FIELDS)
    ds[0]  # open handles in the parent: the fork child must not reuse them
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2, multiprocessing_context=context,
                        generator=torch.Generator().manual_seed(0))
    seen = []
    for batch in loader:
        batch = as_numpy(batch)
        for position, sample_id in enumerate(batch["sample_id"]):
            assert_same({name: value[position] for name, value in batch.items()}, direct(root, "train", int(sample_id)))
            seen.append(int(sample_id))
    assert sorted(seen) == list(range(sum(TRAIN_SHARDS)))


@pytest.mark.parametrize("context", CONTEXTS)
def test_streaming_in_workers_exactly_once_and_resumable(root, context):
    def run(stream: StreamingDataset) -> list[int]:
        loader = DataLoader(stream, batch_size=3, num_workers=2, multiprocessing_context=context)
        ids = []
        for batch in loader:
            batch = as_numpy(batch)
            for position, sample_id in enumerate(batch["sample_id"]):
                expected = direct(root, "train", int(sample_id))
                chw = np.moveaxis(expected["posed"], -1, 0) * (2 / 255) - 1
                np.testing.assert_allclose(batch["posed"][position], chw, atol=1e-6)
                ids.append(int(sample_id))
        return ids

    def stream(rank: int) -> StreamingDataset:
        return StreamingDataset(root, fields=("posed",), seed=7, rank=rank, world_size=2, batch_size=3,
                                transform=to_chw())

    ranks = [run(stream(rank)) for rank in range(2)]
    assert sorted(ranks[0] + ranks[1]) == list(range(sum(TRAIN_SHARDS)))
    assert ranks[0] == stream(0).rank_order().tolist()  # batches arrive as a prefix of the rank's order

    resumed = stream(0)
    resumed.load_state_dict({"epoch": 0, "position": 6})
    assert ranks[0][:6] + run(resumed) == ranks[0]


def test_reader_does_not_import_torch():
    code = ("import sys, pipeline.reader; "
            "bad = [m for m in ('torch', 'dask', 'moderngl', 'renderer') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def loader_ids(loader) -> list[int]:
    return [int(i) for batch in loader for i in batch["sample_id"]]


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("context", CONTEXTS)
def test_epochs_and_resume_reach_workers(root, context, persistent):
    """set_epoch and load_state_dict in the trainer reach the workers, persistent ones too:
    each epoch in its own order exactly once, and after a mid-epoch resume every later
    epoch whole."""
    stream = StreamingDataset(root, fields=("pose",), seed=5, batch_size=3)
    reference = StreamingDataset(root, fields=("pose",), seed=5, batch_size=3)
    loader = DataLoader(stream, batch_size=3, num_workers=2, multiprocessing_context=context,
                        persistent_workers=persistent)

    def epoch_order(epoch: int) -> list[int]:
        reference.set_epoch(epoch)
        full = reference.worker_order(0, 2).tolist(), reference.worker_order(1, 2).tolist()
        runs = [[ids[i:i + 3] for i in range(0, len(ids), 3)] for ids in full]
        return [i for r in range(max(map(len, runs))) for ids in runs if r < len(ids) for i in ids[r]]

    stream.set_epoch(1)
    assert loader_ids(loader) == epoch_order(1) != epoch_order(2)
    stream.load_state_dict({"epoch": 2, "position": 6})  # two batches of epoch 2 were consumed before a crash
    assert loader_ids(loader) == epoch_order(2)[6:]
    stream.set_epoch(3)
    assert loader_ids(loader) == epoch_order(3)


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_loader_batch_size_other_than_the_streams_is_refused(root, context):
    stream = StreamingDataset(root, fields=("pose",), seed=5, batch_size=3)
    loader = DataLoader(stream, batch_size=4, num_workers=2, multiprocessing_context=context)
    with pytest.raises(ValueError, match="batch_size 4 differs from StreamingDataset's batch_size 3"):
        loader_ids(loader)
    if context == "fork":  # one worker keeps the order whatever the batch size
        single = DataLoader(stream, batch_size=4, num_workers=1, multiprocessing_context=context)
        assert sorted(loader_ids(single)) == list(range(sum(TRAIN_SHARDS)))


def test_real_torch_datasets_whenever_created(root):
    """Created before torch is imported, pickled for a spawn worker: still torch's classes."""
    code = f"""
import pickle, sys
from pipeline.reader import Dataset, StreamingDataset
ds, stream = Dataset({str(root)!r}), StreamingDataset({str(root)!r})
import torch.utils.data as tud
assert isinstance(ds, tud.Dataset) and not isinstance(ds, tud.IterableDataset), type(ds).__mro__
assert isinstance(stream, tud.IterableDataset), type(stream).__mro__
again = pickle.loads(pickle.dumps(ds))
assert isinstance(again, tud.Dataset) and type(again) is type(ds) and len(again) == len(ds)
assert len(ds + ds) == 2 * len(ds)  # torch's ConcatDataset
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plain_classes_without_torch(root):
    code = f"""
import pickle, sys
sys.modules["torch"] = None  # as if torch were not installed
from pipeline.reader import Dataset, StreamingDataset
ds = Dataset({str(root)!r})
assert type(ds) is Dataset and type(StreamingDataset({str(root)!r})) is StreamingDataset
assert type(pickle.loads(pickle.dumps(ds))) is Dataset and ds[[0, 1]]["posed"].shape[0] == 2
"""
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("context", CONTEXTS)
def test_batch_loader_recipe_decodes_whole_batches_in_workers(root, context):
    ds = Dataset(root, fields=ALL_FIELDS)
    loader = ds.loader(4, seed=0, num_workers=2, multiprocessing_context=context)
    assert loader.batch_size is None  # no per-sample collation: a worker returns a whole batch
    seen = []
    for batch in loader:
        batch = as_numpy(batch)
        assert len(batch["sample_id"]) <= 4
        for position, sample_id in enumerate(batch["sample_id"]):
            assert_same({name: value[position] for name, value in batch.items()}, direct(root, "train", int(sample_id)))
            seen.append(int(sample_id))
    assert sorted(seen) == list(range(sum(TRAIN_SHARDS)))
    assert seen == [int(i) for batch in ds.loader(4, seed=0) for i in batch["sample_id"]]  # seeded order

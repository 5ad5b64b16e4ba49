"""Damaged shards: every read returns the written pixels or raises DatasetError naming the
shard (and, for image damage, the row); ``verify`` reports every damaged image.

Trials flip single bits inside stored image chunks and overwrite random byte runs anywhere
in the file (metadata included), each on a fresh copy of a small real shard.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.reader import Dataset
from pipeline.shards import FORMAT_VERSION, DatasetError, ShardWriter, shard_path, write_index
from pipeline.verify import verify

SIZE, SAMPLES, MODELS = 32, 6, 2
FIELDS = ("rest", "expression", "posed", "pose", "sample_id")


def images(rng: np.random.Generator, n: int) -> np.ndarray:
    """Blobs of noisy colour on an exactly-zero background, like renders: chunks of some size."""
    out = rng.integers(0, 256, (n, SIZE, SIZE, 4), dtype=np.uint8)
    y, x = np.mgrid[:SIZE, :SIZE]
    inside = (y - SIZE / 2) ** 2 + (x - SIZE / 2) ** 2 < (SIZE / 3) ** 2
    out[:, ~inside] = 0
    out[:, inside, 3] = 255
    return out


def write(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    written = {"rest": images(rng, MODELS), "expression": images(rng, SAMPLES), "posed": images(rng, SAMPLES)}
    path = shard_path(root, "train", 0)
    with ShardWriter(path, size=SIZE, models=MODELS, samples=SAMPLES, split="train", config={}) as writer:
        for m in range(MODELS):
            writer.add_model(m, f"m{m}.pmx", "0" * 64, "{}", written["rest"][m])
        writer.add_samples(0, np.zeros((SAMPLES, 6)), np.arange(SAMPLES) % MODELS, np.arange(SAMPLES),
                           written["expression"], written["posed"])
    write_index(root, {"format_version": FORMAT_VERSION, "generator_version": "test", "config": {"size": SIZE},
                       "shards": [{"file": "shards/train-00000.h5", "split": "train", "samples": SAMPLES,
                                   "models": MODELS}], "splits": {"train": SAMPLES}, "failed": []})
    return written


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("clean")
    return root, write(root)


def expected_sample(written: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {"rest": written["rest"][i % MODELS], "expression": written["expression"][i],
            "posed": written["posed"][i]}


def read_outcome(root: Path, written: dict[str, np.ndarray]) -> str:
    """"exact", "error" (a DatasetError naming the shard) or "wrong" (other pixels, or another exception)."""
    outcomes = set()
    for read in (lambda ds: [ds[i] for i in range(SAMPLES)], lambda ds: ds.get_samples(list(range(SAMPLES)))):
        ds = Dataset(root, fields=FIELDS, threads=2)
        try:
            samples = read(ds)
        except DatasetError as error:
            assert "train-00000.h5" in str(error), error
            outcomes.add("error")
            continue
        except Exception as error:  # noqa: BLE001 - what the trial counts as a failure
            outcomes.add(f"wrong: {type(error).__name__}: {error}")
            continue
        finally:
            ds.close()
        same = all(np.array_equal(sample[name], want) for i, sample in enumerate(samples)
                   for name, want in expected_sample(written, i).items())
        outcomes.add("exact" if same else "wrong: other pixels")
    assert len(outcomes) == 1 or not any(o.startswith("wrong") for o in outcomes), outcomes
    return sorted(outcomes)[-1] if any(o.startswith("wrong") for o in outcomes) else sorted(outcomes)[0]


def chunk_spans(path: Path) -> list[tuple[int, int]]:
    """(offset, size) of every stored image chunk."""
    spans = []
    with h5py.File(path, "r") as f:
        for name in ("rest", "expression", "posed"):
            for k in range(f[name].id.get_num_chunks()):
                info = f[name].id.get_chunk_info(k)
                spans.append((info.byte_offset, info.size))
    return spans


def trial(clean: tuple[Path, dict[str, np.ndarray]], tmp: Path, damage) -> tuple[str, list[str]]:
    source, written = clean
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    path = shard_path(tmp, "train", 0)
    data = bytearray(path.read_bytes())
    damage(data)
    path.write_bytes(bytes(data))
    return read_outcome(tmp, written), verify(tmp)


def assert_all_caught(what: str, results: list[tuple[str, list[str]]]) -> None:
    """No read returned other pixels or raised anything but DatasetError; verify flagged
    every shard whose reads were not exact. Prints the figures (pytest -s)."""
    outcomes = [outcome for outcome, _ in results]
    wrong = [outcome for outcome in outcomes if outcome.startswith("wrong")]
    missed = sum(1 for outcome, defects in results if outcome != "exact" and not defects)
    print(f"{what}: {len(results)} tried, {outcomes.count('error')} detected by the reader, "
          f"{outcomes.count('exact')} harmless, {len(wrong)} wrong {sorted(set(wrong))}; verify missed {missed}")
    assert not wrong and missed == 0


def test_single_bit_flips_in_image_chunks_are_caught(clean, tmp_path):
    rng = np.random.default_rng(1)
    spans = chunk_spans(shard_path(clean[0], "train", 0))
    results = []
    for _ in range(48):
        offset, size = spans[rng.integers(len(spans))]
        byte, bit = offset + int(rng.integers(size)), int(rng.integers(8))
        results.append(trial(clean, tmp_path / "copy", lambda data: data.__setitem__(byte, data[byte] ^ (1 << bit))))  # noqa: B023 (called at once)
    assert_all_caught("bit flips", results)


def test_overwritten_byte_runs_anywhere_are_caught(clean, tmp_path):
    rng = np.random.default_rng(2)
    size = shard_path(clean[0], "train", 0).stat().st_size
    results = []
    for _ in range(44):
        start, length = int(rng.integers(size)), int(rng.integers(1, 64))
        noise = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        results.append(trial(clean, tmp_path / "copy",
                             lambda data: data.__setitem__(slice(start, start + length), noise[:len(data) - start])))  # noqa: B023 (called at once)
    assert_all_caught("byte runs", results)


def test_a_shard_copied_over_another_is_caught(tmp_path):
    root = tmp_path / "ds"
    write(root)
    shutil.copy(shard_path(root, "train", 0), shard_path(root, "val", 0))
    index = {"format_version": FORMAT_VERSION, "generator_version": "test", "config": {"size": SIZE},
             "shards": [{"file": f"shards/{split}-00000.h5", "split": split, "samples": SAMPLES, "models": MODELS}
                        for split in ("train", "val")], "splits": {"train": SAMPLES, "val": SAMPLES}}
    write_index(root, index)
    with pytest.raises(DatasetError, match=r"val-00000\.h5: holds split 'train', name 'train-00000.h5'"):
        Dataset(root, split="val", fields=FIELDS)[0]
    assert any("val-00000.h5: holds shard 'train-00000.h5'" in defect for defect in verify(root))

"""Pose sampling (DESIGN.md): distributions, per-sample streams, and the split assignment."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from manifests.record import Record
from pipeline.sampling import expression_poses, model_key, rest_pose, sample_poses
from pipeline.splits import SplitError, assign_splits, hashed_split, parse_fractions

POSE_SIZE = 6  # tha1

SHA = "3f" * 32
N = 100_000


@pytest.fixture(scope="module")
def poses() -> np.ndarray:
    return sample_poses(7, SHA, N)


def rotation_cdf(x: np.ndarray) -> np.ndarray:
    return (1 + np.sign(x) * x**2) / 2


def test_shapes_ranges(poses):
    assert poses.shape == (N, POSE_SIZE) and poses.dtype == np.float32
    assert (poses[:, :3] >= 0).all() and (poses[:, :3] <= 1).all()
    assert (poses[:, 3:] >= -1).all() and (poses[:, 3:] <= 1).all()


@pytest.mark.parametrize("channel", range(3))
def test_morph_channels_uniform(poses, channel):
    assert stats.kstest(poses[:, channel], "uniform").pvalue > 1e-3


@pytest.mark.parametrize("channel", range(3, 6))
def test_rotations_follow_abs_density(poses, channel):
    assert stats.kstest(poses[:, channel], rotation_cdf).pvalue > 1e-3
    # the test has power: the same draws are far from uniform on [-1, 1]
    assert stats.kstest(poses[:, channel], stats.uniform(-1, 2).cdf).pvalue < 1e-10


def test_channels_independent(poses):
    correlation = np.corrcoef(poses.T.astype(np.float64))
    assert np.abs(correlation - np.eye(POSE_SIZE)).max() < 0.02


def test_index_alone_equals_batch(poses):
    rng = np.random.default_rng(1)
    picks = rng.choice(N, 50, replace=False)
    for i in picks[:10]:
        assert np.array_equal(sample_poses(7, SHA, [i])[0], poses[i])
    assert np.array_equal(sample_poses(7, SHA, picks), poses[picks])
    assert np.array_equal(sample_poses(7, SHA, picks[::-1]), poses[picks[::-1]])


def test_streams_differ_by_seed_and_model(poses):
    assert not np.array_equal(sample_poses(8, SHA, 100), poses[:100])
    assert not np.array_equal(sample_poses(7, "40" + SHA[2:], 100), poses[:100])
    assert model_key(7, SHA) == model_key(7, SHA)


def test_rest_and_expression_poses(poses):
    assert rest_pose().tolist() == [0, 0, 1, 0, 0, 0]
    expression = expression_poses(poses[:10])
    assert np.array_equal(expression[:, :3], poses[:10, :3]) and not expression[:, 3:].any()
    assert poses[:10, 3:].any()  # the input is untouched


def records(groups: list[str], split: str | None = None) -> list[Record]:
    return [Record(model=f"m{i}.pmx", group=g, split=split, status="ok") for i, g in enumerate(groups)]


def test_no_group_spans_two_splits():
    groups = [f"g{i % 300}" for i in range(3000)]
    assignment = assign_splits(records(groups), seed=3)
    assert set(assignment) == set(groups)
    counts = {s: sum(v == s for v in assignment.values()) for s in ("train", "val", "test")}
    assert 240 <= counts["train"] <= 295 and counts["val"] > 3 and counts["test"] > 3


def test_splits_seed_stable_and_independent_of_other_groups():
    a = assign_splits(records([f"g{i}" for i in range(200)]), seed=3)
    b = assign_splits(records([f"g{i}" for i in range(100, 150)]), seed=3)
    assert all(a[g] == split for g, split in b.items())
    c = assign_splits(records([f"g{i}" for i in range(200)]), seed=4)
    assert a != c
    assert hashed_split(3, "g5") == a["g5"]


def test_explicit_split_wins_and_conflicts_refuse():
    assignment = assign_splits(records(["x", "y"], split="test"), seed=0)
    assert assignment == {"x": "test", "y": "test"}
    mixed = records(["x", "x"])
    mixed[0].split, mixed[1].split = "train", "val"
    with pytest.raises(SplitError, match="'x'.*two splits"):
        assign_splits(mixed)


def test_fractions():
    assert parse_fractions("1,0,0") == {"train": 1.0, "val": 0.0, "test": 0.0}
    assert set(assign_splits(records([f"g{i}" for i in range(100)]), 0, parse_fractions("0,0,1")).values()) == {"test"}
    for bad in ("a,b,c", "1,1", "-1,1,1"):
        with pytest.raises(SplitError):
            parse_fractions(bad)

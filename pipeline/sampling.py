"""Pose sampling with one random stream per sample, keyed by (seed, model, index).

The generator is counter-based (SplitMix64 evaluated at an arbitrary position), so
sample ``i`` of a model is the same number whether it is drawn alone, in a batch, by
any worker, in any order, on any backend: a build's output cannot depend on how it
was scheduled. Everything is vectorized over samples.
"""
from __future__ import annotations

import numpy as np

POSE_NAMES = ("eye_left", "eye_right", "mouth", "neck_z", "head_x", "head_y")
POSE_SIZE = len(POSE_NAMES)
MORPH_CHANNELS = slice(0, 3)  # in [0, 1]
ROTATION_CHANNELS = slice(3, 6)  # in [-1, 1]

# The rest image's pose: eyes open, mouth open, head unrotated (the method's input spec).
REST_POSE = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0], dtype=np.float32)

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment (the golden ratio)
_U64 = (1 << 64) - 1


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function: a bijective avalanche on uint64 (wraps by design)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def model_key(seed: int, sha256: str) -> np.uint64:
    """The stream key of one model: its content hash mixed with the build seed."""
    seed_word = _mix64(np.array([int(seed) & _U64], dtype=np.uint64))
    sha_word = np.array([int(sha256[:16], 16)], dtype=np.uint64)
    return _mix64(seed_word ^ sha_word)[0]


def uniforms(key: np.uint64, indices: np.ndarray, width: int = POSE_SIZE) -> np.ndarray:
    """``width`` uniforms in [0, 1) per sample index: position ``index * width + c`` of the stream."""
    counters = np.asarray(indices, dtype=np.uint64)[:, None] * np.uint64(width) + np.arange(
        1, width + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        bits = _mix64(key + counters * _GAMMA)
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def substream_uniforms(key: np.uint64, tag: int, indices: np.ndarray, width: int) -> np.ndarray:
    """``width`` uniforms per sample index from sub-stream ``tag`` (> 0) of a model's stream: the same
    sample's own randomness, independent of the pose draws (tag 0)."""
    with np.errstate(over="ignore"):
        sub = _mix64(np.array([key ^ np.uint64(tag) * _GAMMA], dtype=np.uint64))[0]
    return uniforms(sub, indices, width)


def rotation_from_uniform(u: np.ndarray) -> np.ndarray:
    """Inverse CDF of the density |x| on [-1, 1], F(x) = (1 + sign(x) x^2) / 2."""
    t = 2.0 * u - 1.0
    return np.sign(t) * np.sqrt(np.abs(t))


def sample_poses(seed: int, sha256: str, indices: np.ndarray | range | int) -> np.ndarray:
    """Poses (N, 6) float32 for the given sample indices of one model (DESIGN.md's sampling)."""
    indices = np.arange(indices) if isinstance(indices, int) else np.asarray(indices)
    u = uniforms(model_key(seed, sha256), indices)
    poses = np.empty((len(indices), POSE_SIZE), dtype=np.float32)
    poses[:, MORPH_CHANNELS] = u[:, MORPH_CHANNELS]
    poses[:, ROTATION_CHANNELS] = rotation_from_uniform(u[:, ROTATION_CHANNELS])
    return poses


def expression_poses(poses: np.ndarray) -> np.ndarray:
    """The same poses with the head unrotated: the expression image's pose (morphs only)."""
    expression = np.array(poses, dtype=np.float32, copy=True)
    expression[:, ROTATION_CHANNELS] = 0.0
    return expression

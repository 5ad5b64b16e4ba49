"""Pose sampling with one random stream per sample, keyed by (seed, model, index).

The generator is counter-based (SplitMix64 evaluated at an arbitrary position), so
sample ``i`` of a model is the same number whether it is drawn alone, in a batch, by
any worker, in any order, on any backend: a build's output cannot depend on how it
was scheduled. Everything is vectorized over samples.

What is drawn is the pose schema's (:mod:`manifests.schema`): per parameter its
distribution over its range and the chance it leaves its default. Sample ``i`` uses the
stream's positions ``i * width + 1 ..``: one uniform per parameter, then one per parameter
that is not always active (so a schema without ``active`` draws exactly DESIGN.md's
numbers). A parameter the model cannot express (``mask`` False) is written as its default.
"""
from __future__ import annotations

import numpy as np

from manifests.schema import PoseSchema, load_schema

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


def uniforms(key: np.uint64, indices: np.ndarray, width: int) -> np.ndarray:
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


def _from_uniform(u: np.ndarray, sampling: str, low: float, high: float) -> np.ndarray:
    """One parameter's values: uniform on [low, high], or growing linearly towards the ends."""
    if sampling == "uniform":
        return u if (low, high) == (0.0, 1.0) else low + (high - low) * u
    if (low, high) == (-1.0, 1.0):
        return rotation_from_uniform(u)
    return low + (high - low) * np.sqrt(u)  # density growing from low to high


def sample_poses(seed: int, sha256: str, indices: np.ndarray | range | int, schema: PoseSchema | None = None,
                 mask: np.ndarray | None = None) -> np.ndarray:
    """Poses (N, P) float32 for the given sample indices of one model (the schema's sampling, tha1's
    by default); parameters where ``mask`` (P,) is False stay at their default."""
    schema = schema or load_schema()
    indices = np.arange(indices) if isinstance(indices, int) else np.asarray(indices)
    sometimes = [i for i, p in enumerate(schema.parameters) if p.active < 1.0]
    u = uniforms(model_key(seed, sha256), indices, schema.size + len(sometimes))
    poses = np.empty((len(indices), schema.size), dtype=np.float32)
    for i, parameter in enumerate(schema.parameters):
        poses[:, i] = _from_uniform(u[:, i], parameter.sampling, *parameter.range)
    defaults = schema.vector("default")
    for k, i in enumerate(sometimes):
        idle = u[:, schema.size + k] >= schema.parameters[i].active
        poses[idle, i] = defaults[i]
    if mask is not None:
        poses[:, ~np.asarray(mask, bool)] = defaults[~np.asarray(mask, bool)]
    return poses


def rest_pose(schema: PoseSchema | None = None) -> np.ndarray:
    """The rest image's pose (tha1: eyes open, mouth open, head unrotated: the method's input spec)."""
    return (schema or load_schema()).vector("rest")


def expression_poses(poses: np.ndarray, schema: PoseSchema | None = None) -> np.ndarray:
    """The same poses with every rotation parameter at its default: the expression image's pose."""
    schema = schema or load_schema()
    expression = np.array(poses, dtype=np.float32, copy=True)
    rotation = schema.of_kind("rotation")
    expression[:, rotation] = schema.vector("default")[rotation]
    return expression

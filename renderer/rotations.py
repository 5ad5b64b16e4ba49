"""Vectorized quaternion, rotation-matrix and dual-quaternion helpers (numpy only).

Quaternions are (..., 4) arrays ordered (x, y, z, w), as in PMX files. Products follow
the column-vector convention: ``quat_multiply(a, b)`` rotates by ``b`` first, then by
``a``, and ``quat_to_matrix(q) @ v`` rotates the column vector ``v``.
"""
from __future__ import annotations

import numpy as np

IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])


def _product_tensor() -> np.ndarray:
    """(4, 16) table T with (a * b)_i = sum_jk a_j b_k T[j, 4 k + i].

    Two small matmuls with it beat sixteen ufunc calls on the short arrays of posing.
    """
    table = np.zeros((4, 4, 4))
    terms = [  # (j, k, i, sign): a_j b_k contributes sign to component i
        (3, 0, 0, 1), (0, 3, 0, 1), (1, 2, 0, 1), (2, 1, 0, -1),
        (3, 1, 1, 1), (1, 3, 1, 1), (2, 0, 1, 1), (0, 2, 1, -1),
        (3, 2, 2, 1), (2, 3, 2, 1), (0, 1, 2, 1), (1, 0, 2, -1),
        (3, 3, 3, 1), (0, 0, 3, -1), (1, 1, 3, -1), (2, 2, 3, -1),
    ]
    for j, k, i, sign in terms:
        table[j, k, i] = sign
    return table.reshape(4, 16)


_PRODUCT = _product_tensor()


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` (rotate by b, then by a); broadcasts over leading axes."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    left = (a @ _PRODUCT).reshape(*a.shape[:-1], 4, 4)
    return (b[..., None, :] @ left)[..., 0, :]


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    """The inverse rotation of a unit quaternion."""
    return np.asarray(q, dtype=np.float64) * np.array([-1.0, -1.0, -1.0, 1.0])


def quat_normalize(q: np.ndarray) -> np.ndarray:
    """Unit quaternions; zero-length input becomes the identity instead of NaN."""
    q = np.asarray(q, dtype=np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(norm > 1e-12, q / np.where(norm > 1e-12, norm, 1.0), IDENTITY)


def quat_from_axis_angle(axis: np.ndarray, angle: np.ndarray | float) -> np.ndarray:
    """Rotation by ``angle`` radians (right-handed) about ``axis`` (need not be unit)."""
    axis = np.asarray(axis, dtype=np.float64)
    half = 0.5 * np.asarray(angle, dtype=np.float64)[..., None]
    unit = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    return np.concatenate([unit * np.sin(half), np.cos(half)], axis=-1)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions -> (..., 3, 3) rotation matrices."""
    q = np.asarray(q, dtype=np.float64)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    rows = [
        1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
        2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
        2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
    ]
    return np.stack(rows, axis=-1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions with w >= 0.

    The trace formula is exact and cheap when the trace is positive (rotations under
    120 degrees, nearly all of posing); the rest take Shepperd's branch-free method.
    """
    m = np.asarray(m, dtype=np.float64)
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    four_w = 2 * np.sqrt(np.maximum(1 + trace, 1e-300))
    q = np.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                  m[..., 1, 0] - m[..., 0, 1], 0.25 * four_w * four_w], axis=-1) / four_w[..., None]
    hard = trace <= 0
    if np.any(hard):
        q[hard] = _shepperd(m[hard])
    return q


def _shepperd(m: np.ndarray) -> np.ndarray:
    """(n, 3, 3) -> (n, 4): take the square root of the largest diagonal combination,
    so no branch divides by a small number."""
    m00, m11, m22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    candidates = np.stack([
        1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22, 1 + m00 + m11 + m22,
    ], axis=-1)
    pick = np.argmax(candidates, axis=-1)
    s = np.sqrt(np.maximum(candidates[np.arange(len(m)), pick], 1e-300))
    a, b, c = m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]
    d, e, f = m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1]
    options = np.stack([
        np.stack([s * s, d, e, a], -1), np.stack([d, s * s, f, b], -1),
        np.stack([e, f, s * s, c], -1), np.stack([a, b, c, s * s], -1),
    ], axis=1)
    q = options[np.arange(len(m)), pick] / (2 * s[:, None])
    return np.where(q[:, 3:] < 0, -q, q)


def quat_slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical interpolation from ``a`` (t = 0) to ``b`` (t = 1) along the shorter arc.

    ``t`` may leave [0, 1]: ``quat_slerp(IDENTITY, q, -1)`` is the inverse of ``q``, which
    is how MMD's negative append ratios behave.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.sum(a * b, axis=-1, keepdims=True)
    b = np.where(dot < 0, -b, b)
    dot = np.minimum(np.abs(dot), 1.0)
    theta = np.arccos(dot)
    sin_theta = np.sin(theta)
    small = sin_theta < 1e-9
    safe = np.where(small, 1.0, sin_theta)
    wa = np.where(small, 1 - t, np.sin((1 - t) * theta) / safe)
    wb = np.where(small, t, np.sin(t * theta) / safe)
    return quat_normalize(wa * a + wb * b)


def dual_quaternions(rotations: np.ndarray, translations: np.ndarray) -> np.ndarray:
    """Rigid transforms (rotate, then translate) -> (..., 8) dual quaternions (real, dual).

    The dual part is ``0.5 * (t, 0) * real``; QDEF skinning blends these linearly.
    """
    real = np.asarray(rotations, dtype=np.float64)
    t = np.asarray(translations, dtype=np.float64)
    pure = np.concatenate([t, np.zeros((*t.shape[:-1], 1))], axis=-1)
    return np.concatenate([real, 0.5 * quat_multiply(pure, real)], axis=-1)


def matrices_to_dual_quaternions(m: np.ndarray) -> np.ndarray:
    """(..., 4, 4) rigid matrices (column-vector convention) -> (..., 8) dual quaternions."""
    m = np.asarray(m, dtype=np.float64)
    return dual_quaternions(matrix_to_quat(m[..., :3, :3]), m[..., :3, 3])

"""Mesh connectivity: which vertices belong to one connected piece of surface.

Vertices at the same position are welded first, so a face split over two materials (or
over UV seams) stays one piece, while a ribbon or a strand of hair modelled as its own
mesh stays apart even where it touches the chin.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def weld(positions: np.ndarray) -> np.ndarray:
    """(N,) id per vertex, shared by vertices at the same position (to 1e-5)."""
    _, welded = np.unique(np.round(positions, 5), axis=0, return_inverse=True)
    return welded.reshape(-1)


def node_components(corners: np.ndarray, count: int) -> np.ndarray:
    """(count,) connected-component label per node, for triangles given as (F, 3) node ids."""
    corners = np.asarray(corners, np.int64).reshape(-1, 3)
    edges = np.concatenate([corners[:, [0, 1]], corners[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    return connected_components(graph, directed=False)[1]


def vertex_components(positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(N,) label per vertex; vertices in no triangle get labels of their own."""
    welded = weld(positions)
    count = int(welded.max()) + 1 if len(welded) else 0
    corners = welded[np.asarray(triangles, np.int64).reshape(-1, 3)] if len(triangles) else np.zeros((0, 3), int)
    return node_components(corners, count)[welded]

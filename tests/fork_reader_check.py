"""Run by tests/test_reader.py in a fresh interpreter: a Dataset used, then forked, reads the same.

A fresh process stands in for a trainer's: the test runner's own threads (a Dask cluster,
loky executors, the annotator's render thread, left by other tests) must not be forked
into the children, where a lock one of them held would hang the check, not the reader.
"""
from __future__ import annotations

import multiprocessing
import sys

import numpy as np

from pipeline.reader import Dataset

FIELDS = ("rest", "expression", "posed", "pose", "model_index")


def read(ds: Dataset, index: int) -> dict:
    return ds[index]


def batch(ds: Dataset, indices: list[int]) -> dict:
    return ds.get_batch(indices)


def main(root: str, threads: int) -> None:
    ds = Dataset(root, fields=FIELDS, threads=threads)
    expected = [ds[i] for i in (0, 9, 20)]  # the parent holds open files and a decoding pool across the fork
    expected_batch = ds.get_batch([20, 0, 9])
    with multiprocessing.get_context("fork").Pool(1) as pool:
        results = pool.starmap(read, [(ds, i) for i in (0, 9, 20)])
        got_batch = pool.apply(batch, (ds, [20, 0, 9]))
    for got, want in [*zip(results, expected), (got_batch, expected_batch)]:
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

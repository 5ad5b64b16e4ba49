"""DataLoader benchmark: ``Dataset.loader`` (whole batches decoded in workers) and the plain
``DataLoader(ds, batch_size=64)`` against ``get_batch`` in one process, in the same run.

The reference is the reader's own batch path: random batches of 64 through ``get_batch``
with its decoding threads. The recipe hands each of ``workers`` DataLoader workers whole
batches of indices; the plain loader lets torch collate per-sample dicts (``__getitems__``
reads them as one batch, then ``default_collate`` stacks them again). Workers persist
across epochs, as a trainer sets them. Every figure is the best of a few epochs, taken
in turns. Needs torch; prints why when it is missing.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 64
FIELDS = ("rest", "posed", "pose")


def run(n: int = 2048, size: int = 256, workers: int = 2, epochs: int = 3,
        root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Samples/s of the three paths over ``n`` rendered (or synthetic) images of ``size`` pixels."""
    try:
        import torch
        from torch.utils.data import DataLoader
    except ImportError:
        print("torch is not installed: nothing to measure (pip install torch)")
        return {"skipped": "torch not installed"}
    from pipeline.bench.reader import character_images, write_shards
    from pipeline.reader import Dataset, available_cores

    images, source = character_images(min(n, 256), size)
    images = np.resize(images, (n, *images.shape[1:]))  # repeats: the decoder cannot tell
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        write_shards(Path(tmp), images, per_shard=256)
        data = Dataset(tmp, fields=FIELDS)
        order = np.random.default_rng(0).permutation(n)
        recipe = data.loader(BATCH, num_workers=workers, persistent_workers=True)
        plain = DataLoader(data, batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=True)
        passes = {
            "get_batch": lambda: sum(len(data.get_batch(order[b:b + BATCH])["posed"]) for b in range(0, n, BATCH)),
            "recipe": lambda: sum(len(batch["posed"]) for batch in recipe),
            "plain_dataloader": lambda: sum(len(batch["posed"]) for batch in plain),
        }
        for loader in (recipe, plain):  # start the persistent workers outside the timing
            next(iter(loader))
        best = dict.fromkeys(passes, float("inf"))
        for _ in range(epochs):
            for name, work in passes.items():
                start = time.perf_counter()
                assert work() == n
                best[name] = min(best[name], time.perf_counter() - start)
        data.close()
    rate = {name: n / seconds for name, seconds in best.items()}
    print(f"{n} samples of {', '.join(FIELDS)} at {size} px ({source}); batches of {BATCH}; "
          f"{workers} loader workers; get_batch decodes on {available_cores()} threads; torch {torch.__version__}")
    for name, value in rate.items():
        print(f"  {name:<18}{value:>9.0f} samples/s  {value / rate['get_batch']:>5.2f}x get_batch")
    return {"n": n, "size": size, "workers": workers, **{f"{k}_samples_per_s": round(v, 1) for k, v in rate.items()},
            **{f"{k}_vs_get_batch": round(v / rate["get_batch"], 2) for k, v in rate.items()}}

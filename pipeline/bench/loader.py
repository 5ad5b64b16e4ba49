"""Loader benchmark: our parse against pymeshio 3.0.1's on the same files, in the same run.

Both sides parse bytes already in memory (pymeshio through its in-memory reader) so the
disk is out of the comparison; each figure is the best of several repeats. Files: the
largest shared PMX (Appearance Miku) when ../shared is present, and a generated
45,000-vertex PMX 2.0 (pymeshio reads neither PMX 2.1 nor additional UVs).
"""
from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.bench import SHARED_MODELS

TARGET = 10.0
LARGE_VERTICES = 45_000
SHARED_PMX = SHARED_MODELS / "appearance_miku" / "Appearance Miku.pmx"


def run(models: list[Path] | None = None, repeats: int = 5) -> dict[str, Any]:
    """Time both parsers on each file and print a table with the speed-up (target >= 10x)."""
    try:
        from pymeshio.pmx import reader as pymeshio_pmx
    except ImportError:
        raise SystemExit("the loader benchmark needs pymeshio 3.0.1 (pip install -e .[test])") from None
    from renderer.loader import parse_model

    figures: dict[str, Any] = {"target_ratio": TARGET, "repeats": repeats, "models": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for path in models if models is not None else default_models(Path(scratch)):
            data = Path(path).read_bytes()
            ours = best_time(lambda: parse_model(data, str(path)), repeats)  # noqa: B023 (called at once)
            theirs = best_time(lambda: pymeshio_pmx.read(io.BytesIO(data)), max(2, repeats // 2))  # noqa: B023 (called at once)
            figures["models"][Path(path).name] = row = {
                "bytes": len(data), "ours_seconds": ours, "pymeshio_seconds": theirs, "ratio": theirs / ours}
            print(f"{Path(path).name:<28} ours {ours * 1000:8.1f} ms   pymeshio {theirs * 1000:8.1f} ms   "
                  f"speed-up {row['ratio']:5.1f}x (target >= {TARGET:.0f}x)")
    return figures


def default_models(scratch: Path) -> list[Path]:
    """The shared Appearance Miku when present, and a generated 45,000-vertex PMX 2.0."""
    paths = [SHARED_PMX] if SHARED_PMX.is_file() else []
    try:
        from renderer.pmx_writer import write_pmx
        from renderer.synthetic import large_model
    except ImportError:
        return paths
    large = scratch / f"generated_{LARGE_VERTICES}.pmx"
    write_pmx(large_model(LARGE_VERTICES, version=2.0, extra_uv=0), large)
    return paths + [large]


def best_time(function: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best

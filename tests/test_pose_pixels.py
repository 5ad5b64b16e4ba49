"""A tha1 build's pixels and poses are pinned: hashes of a small demo build in tests/golden.

The pose schema moved the 6-number pose out of code into manifests/schemas/tha1.yaml; that
move by itself must change no pixel. Regenerate with MMDSYNTH_REGEN_GOLDEN=1 only in a
commit that changes rendering or sampling on purpose.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from pipeline import shards
from pipeline.build import build
from pipeline.demo import write_demo_manifest

HASHES = Path(__file__).parent / "golden" / "tha1_build.json"
PINNED = ("rest", "expression", "posed", "pose")


def build_hashes(root: Path) -> dict[str, str]:
    """sha256 of every pinned field of every shard of a 6-pose, 64-pixel demo build."""
    _, manifest = write_demo_manifest(root)
    build(manifest, root / "out", 6, jobs=1, seed=3, size=64, shard_size=3, progress=False)
    index = shards.read_index(root / "out")
    result = {}
    for entry in index["shards"]:
        with shards.open_shard(root / "out" / entry["file"]) as f:
            for name in PINNED:
                data = np.ascontiguousarray(f[name][:])
                result[f"{entry['file']}:{name}"] = hashlib.sha256(data.tobytes()).hexdigest()
    return result


def test_tha1_build_matches_stored_hashes(tmp_path):
    hashes = build_hashes(tmp_path)
    if os.environ.get("MMDSYNTH_REGEN_GOLDEN") == "1":
        HASHES.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    assert hashes == json.loads(HASHES.read_text(encoding="utf-8"))

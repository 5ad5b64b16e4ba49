"""Benchmarks behind ``mmdsynth bench``; each measures its reference in the same run."""
from __future__ import annotations

import os
from pathlib import Path

# The third-party models (../shared/models, see its README), used when present.
SHARED_MODELS = Path(os.environ.get("MMDSYNTH_SHARED_MODELS",
                                    Path(__file__).resolve().parents[2].parent / "shared" / "models"))

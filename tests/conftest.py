"""Shared fixtures: where the third-party models are, and where artifacts go."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_MODELS = Path(os.environ.get("MMDSYNTH_SHARED_MODELS", ROOT.parent / "shared" / "models"))
ARTIFACTS = ROOT / "tests" / "artifacts"

# name -> path relative to SHARED_MODELS (see ../shared/models/README.md)
SHARED = {
    "appearance_miku": "appearance_miku/Appearance Miku.pmx",
    "appearance_miku_bdef": "appearance_miku/Appearance Miku_BDEF.pmx",
    "miku_v2": "mmd_default/miku_v2.pmd",
    "dummy": "mmd_default/dummy.pmd",
    "mokou": "mokou/mokou_A.pmd",
    "gumi": "low_poly/gumi.pmd",
}
CHARACTERS = [name for name in SHARED if name != "dummy"]


@pytest.fixture(scope="session")
def shared_models() -> Path:
    """The folder of real third-party models; tests that need it skip without it."""
    if not (SHARED_MODELS / SHARED["miku_v2"]).is_file():
        pytest.skip(f"third-party models not found at {SHARED_MODELS} (../shared is absent)")
    return SHARED_MODELS


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where tests put images for a person to look at (ignored by git)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS

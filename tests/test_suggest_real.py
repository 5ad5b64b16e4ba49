"""Suggestions on the real third-party models against careful manual marks."""
from __future__ import annotations

import time

import pytest

from annotator.quality import TRUTH, quality_table, score
from annotator.suggest import suggest
from manifests.record import ROLES
from manifests.store import model_sha256, read_manifest

pytestmark = pytest.mark.real_models
pytest.importorskip("renderer.loader")
ANNOTATED = {record.model: record for record in read_manifest(TRUTH)}


@pytest.mark.parametrize("model", [m for m, r in ANNOTATED.items() if r.status == "ok"])
def test_suggestion_matches_manual_marks(shared_models, model):
    truth = ANNOTATED[model]
    start = time.perf_counter()
    record = suggest(shared_models / model, shared_models)
    assert time.perf_counter() - start < 5  # the whole file load included; the suggester alone is ~50 ms
    assert record.status == "ok" and record.sha256 == truth.sha256 and record.source == "suggested"
    assert score(record, truth).head_error < 5
    assert record.morphs == truth.morphs
    assert set(record.confidence) == {"head", *ROLES}


def test_dummy_is_rejected(shared_models):
    record = suggest(shared_models / "mmd_default/dummy.pmd", shared_models)
    assert record.status == "rejected" and record.reject_reason and record.head is None


def test_quality_table_meets_targets(shared_models, capsys):
    scores = quality_table(shared_models)
    assert "head err %" in capsys.readouterr().out
    assert max(s.head_error for s in scores) < 5
    assert sum(s.wrong + s.missed for s in scores) == 0


def test_truth_hashes_match_the_files(shared_models):
    for model, record in ANNOTATED.items():
        assert model_sha256(shared_models / model) == record.sha256, model

"""Suggestions on the real third-party models against the careful labels in tests/labels/.

The tuning labels were used while the suggester was tuned; the held-out third was not
looked at until the end (tests/labels/README.md). Both must meet the targets: roles
right, every wrong role flagged, and no model suggested ``ok`` with a wrong channel role.
"""
from __future__ import annotations

import pytest

from annotator.quality import read_labels, score, true_roles
from annotator.suggest import suggest
from renderer.sided import sided_name

pytestmark = pytest.mark.real_models
LABELS = {name: read_labels(name) for name in ("tuning", "holdout")}


# Measured floors (regression guards) and the issue's targets, which are not met yet.
FLOOR = {"tuning": 0.97, "holdout": 0.92}
TARGET = 0.95


@pytest.fixture(scope="module")
def records(shared_models):
    return {name: {model: suggest(shared_models / model, shared_models) for model in labels}
            for name, labels in LABELS.items()}


def share_right(records, labels) -> tuple[float, int, int]:
    scores = [score(records[labels][model], label) for model, label in LABELS[labels].items()]
    total = sum(s.right + len(s.wrong) + len(s.missed) for s in scores)
    return (sum(s.right for s in scores) / total, sum(len(s.wrong) for s in scores),
            sum(s.flagged for s in scores))


@pytest.mark.parametrize("labels", ["tuning", "holdout"])
def test_roles_right_at_least_the_measured_floor(records, labels):
    assert len(LABELS[labels]) >= 13
    assert share_right(records, labels)[0] >= FLOOR[labels]


@pytest.mark.parametrize("labels", ["tuning", pytest.param("holdout", marks=pytest.mark.xfail(
    strict=True, reason="issue 13's target (95% right, every wrong role flagged) is not met on the held-out third"))])
def test_issue_targets(records, labels):
    right, wrong, flagged = share_right(records, labels)
    assert right >= TARGET and wrong == flagged


@pytest.mark.parametrize("labels", ["tuning", "holdout"])
def test_every_model_suggested_ok_has_channels_that_do_what_they_say(records, labels):
    """eye_left's morph closes the left eye (a wink, a smile wink or the blink's left half), and so on."""
    for model, label in LABELS[labels].items():
        record = records[labels][model]
        if record.status != "ok":
            continue
        truth = true_roles(label)
        for side in ("left", "right"):
            allowed = truth[f"wink_{side}"] | truth[f"smile_wink_{side}"] | {
                sided_name(blink, side) for blink in truth["blink"] | truth["smile_blink"]}
            assert record.morphs[f"wink_{side}"] in allowed, (model, side, record.morphs)
        assert record.morphs["mouth_open"] in truth["mouth_open"], (model, record.morphs)


def test_dummy_is_rejected(shared_models):
    record = suggest(shared_models / "mmd_default/dummy.pmd", shared_models)
    assert record.status == "rejected" and record.reject_reason and record.head is None


def test_models_without_eye_or_mouth_morphs_are_held_with_the_reason(shared_models):
    record = suggest(shared_models / "low_poly/gumi.pmd", shared_models)
    assert record.status == "review" and any("cannot drive mouth" in reason for reason in record.review)


# What the suggester of d1eafe7 bound to (eye_left, eye_right, mouth), one model per failure class of
# issue 13: an eyebrow as the eyes (MEIKO), the both-eyes fallback on one-eye channels (miku), the
# mouth taken as the blink and left unbound (rin), a prop toggle as the mouth (low_miku).
BEFORE = {
    "mmd_default/MEIKO.pmd": ("困り眉右", "困り眉左", "あ"),
    "mmd_default/miku.pmd": ("まばたき", "まばたき", "あ"),
    "mmd_default/rin.pmd": ("あ", "あ", None),
    "low_poly/low_miku.pmd": (None, None, "ネギ消"),
}


def test_old_failures_fail_the_check_and_new_suggestions_pass(shared_models, records, artifacts):
    """Before/after contact sheet (tests/artifacts/labels_before_after.png): rest, eye_left, eye_right, mouth."""
    import numpy as np
    from PIL import Image

    from annotator.binding import RoleError, bind_roles
    from annotator.channels import check_model, close_ups
    from renderer.loader import load_model

    rows = []
    for model_name, before in BEFORE.items():
        model = load_model(shared_models / model_name)
        record = records["tuning"][model_name]
        assert record.head is not None, (model_name, record.status, record.reject_reason)
        head = (record.head["top"], record.head["bottom"])
        old = bind_roles(dict(zip(("wink_left", "wink_right", "mouth_open"), before)), model=model, strict=False)
        assert not check_model(model, head, old).ok, model_name
        try:
            new = bind_roles(record.morphs, model=model)
        except RoleError:
            assert record.status == "review"  # cannot be bound: held, never shipped
            new = None
        if new is not None:
            assert check_model(model, head, new).ok, model_name
        for binding in (old, new):
            if binding is None:
                rows.append(np.zeros((128, 4 * 128, 4), np.uint8))
                continue
            images = close_ups(model, head, binding, size=128).values()
            rows.append(np.concatenate(list(images), axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(artifacts / "labels_before_after.png")

"""The channel check and one-eye morphs on the demo character, whose truth is known by construction."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from annotator.binding import bind_roles
from annotator.channels import check_model
from pipeline.demo import DEMO_MORPHS
from renderer.demo import DEMO_HEAD, demo_model
from renderer.renderer import Renderer
from renderer.sided import parse_sided, sided_name, with_sided_morphs


@pytest.fixture(scope="module")
def character():
    return demo_model()


def binding(model=None, **roles):
    return bind_roles({**DEMO_MORPHS, **roles}, model=model or demo_model())


def test_the_demo_passes_and_each_channel_closes_its_own_eye(character):
    report = check_model(character, DEMO_HEAD, binding())
    assert report.ok, report.reasons
    effects = {r.channel: r.effect for r in report.results}
    assert effects["eye_left"].hidden[0] > 0.5 and effects["eye_left"].hidden[1] < 0.05
    assert effects["eye_right"].hidden[1] > 0.5 and effects["eye_right"].hidden[0] < 0.05
    assert effects["mouth"].opened > 0.1


def test_swapped_winks_fail(character):
    roles = dict(DEMO_MORPHS)
    swapped = binding(wink_left=roles["wink_right"], wink_right=roles["wink_left"])
    report = check_model(character, DEMO_HEAD, swapped)
    assert not report.ok
    assert any("does not close the left eye" in reason for reason in report.reasons)


def test_a_both_eyes_morph_on_one_eye_channel_fails(character):
    both = binding(wink_left=DEMO_MORPHS["blink"])
    report = check_model(character, DEMO_HEAD, both)
    assert report.reasons == [next(r for r in report.reasons if r.startswith("eye_left: also changes the right eye"))]


def test_a_mouth_that_does_not_open_fails(character):
    report = check_model(character, DEMO_HEAD, binding(mouth_open=DEMO_MORPHS["blink"]))
    assert any(reason.startswith("mouth: does not open the mouth") for reason in report.reasons)


def test_derived_halves_of_the_blink_pass_the_check(character):
    no_winks = {role: None for role in ("wink_left", "wink_right")}
    derived = bind_roles({**DEMO_MORPHS, **no_winks}, model=character)
    assert derived.morphs["eye_left"] == sided_name(DEMO_MORPHS["blink"], "left")
    report = check_model(character, DEMO_HEAD, derived)
    assert report.ok, report.reasons


def test_sided_morph_keeps_exactly_one_side_of_the_offsets(character):
    blink = DEMO_MORPHS["blink"]
    model = with_sided_morphs(character, [sided_name(blink, "left"), sided_name(blink, "right"), None])
    assert len(model.morphs) == len(character.morphs) + 2
    base = character.morphs[character.find_morph(blink)]
    left = model.morphs[model.find_morph(f"{blink}[left]")]
    right = model.morphs[model.find_morph(f"{blink}[right]")]
    x = character.vertices.positions[:, 0]
    assert (x[left.index] > 0).all() and (x[right.index] < 0).all()
    assert sorted([*left.index, *right.index]) == sorted(base.index.tolist())
    assert with_sided_morphs(character, ["まばたき"]) is character  # nothing derived, nothing copied
    assert parse_sided("a[b]") == ("a[b]", None) and parse_sided("x[right]") == ("x", "right")


def test_renderer_draws_a_derived_morph_on_one_side_only(character):
    blink = DEMO_MORPHS["blink"]
    with Renderer(character, head_bounds=DEMO_HEAD, size=128,
                  drivers=binding(wink_left=f"{blink}[left]", wink_right=f"{blink}[right]").drivers) as renderer:
        rest, left = renderer.render([0] * 6), renderer.render([1, 0, 0, 0, 0, 0])
    changed = np.abs(rest.astype(int) - left.astype(int)).sum(-1) > 30
    columns = np.flatnonzero(changed.any(0))
    assert len(columns) and columns.min() >= 64  # the character's left eye is on the image's right


def test_a_model_whose_lids_sit_elsewhere_still_gets_a_verdict(character):
    """Landmarks from proportions (no eye bones, no eye materials, no eye-panel morphs) still judge."""
    bones = dataclasses.replace(character.bones, names=[f"b{i}" if n in ("左目", "右目") else n
                                                        for i, n in enumerate(character.bones.names)])
    model = dataclasses.replace(character, bones=bones)
    report = check_model(model, DEMO_HEAD, binding(model))
    assert {r.channel for r in report.results} == {"eye_left", "eye_right", "mouth"}

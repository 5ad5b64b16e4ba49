"""Fuzzing: truncated and bit-flipped model files either load or raise ModelError, nothing else.

Generated files (PMX 2.1 with every feature, a hand-made PMD) run everywhere; the real
shared models join when ../shared is present. Each file is read once per session.
"""
from __future__ import annotations

import pytest
from conftest import SHARED, SHARED_MODELS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_loader import tiny_pmd

from renderer.errors import ModelError
from renderer.loader import parse_model
from renderer.pmx_writer import write_pmx
from renderer.synthetic import feature_model


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, bytes]:
    path = tmp_path_factory.mktemp("fuzz") / "feature.pmx"
    write_pmx(feature_model(2.1), path)
    files = {"feature.pmx": path.read_bytes(), "tiny.pmd": tiny_pmd()}
    for key in ("appearance_miku", "miku_v2", "gumi"):
        real = SHARED_MODELS / SHARED[key]
        if real.is_file():
            files[real.name] = real.read_bytes()
    return files


def parses_or_model_error(data: bytes, name: str) -> None:
    try:
        parse_model(data, name)
    except ModelError as error:
        assert str(error).startswith(name)


FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(pick=st.integers(0, 10**6), cut=st.floats(0, 1, exclude_max=True))
def test_truncation_anywhere_is_a_model_error(samples, pick, cut):
    """PMX has no optional tail; a PMD cut between its optional sections is a valid older PMD."""
    name = sorted(samples)[pick % len(samples)]
    data = samples[name][: int(cut * len(samples[name]))]
    if name.endswith(".pmx"):
        with pytest.raises(ModelError, match=name):
            parse_model(data, name)
    else:
        parses_or_model_error(data, name)


@FUZZ
@given(pick=st.integers(0, 10**6), flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
                                                              st.integers(1, 255)), min_size=1, max_size=8))
def test_flipped_bytes_load_or_raise_model_error(samples, pick, flips):
    name = sorted(samples)[pick % len(samples)]
    data = bytearray(samples[name])
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    parses_or_model_error(bytes(data), name)

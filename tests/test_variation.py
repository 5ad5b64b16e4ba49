"""Per-sample framing jitter and art styles: drawn from each sample's own stream, the same for a full
image and every layer of it, stored per sample."""
from __future__ import annotations

import numpy as np
import pytest

from annotator.binding import schema_drivers
from pipeline.demo import DEMO_MORPHS
from pipeline.variation import SCALE, SHIFT, Variation, VariationError, draw_jitter, draw_styles

SHA = "ab" * 32
STYLES = ("phong", "toon", "toon+edges")


def test_draws_are_per_sample_and_in_range():
    jitter = draw_jitter(3, SHA, np.arange(500))
    np.testing.assert_array_equal(jitter[[7, 123]], draw_jitter(3, SHA, np.array([7, 123])))  # batch-free
    assert (np.abs(jitter[:, :2]) <= SHIFT).all() and ((jitter[:, 2] >= SCALE[0]) & (jitter[:, 2] <= SCALE[1])).all()
    assert np.abs(jitter[:, :2]).max() > 0.9 * SHIFT and not np.array_equal(jitter, draw_jitter(4, SHA, np.arange(500)))
    styles = draw_styles(3, SHA, np.arange(600), STYLES)
    assert set(np.bincount(styles, minlength=3) // 100) == {1, 2} or min(np.bincount(styles)) > 150


def test_bad_styles_are_refused():
    for styles in (("phong", "sketch"), ("toon", "toon"), ()):
        with pytest.raises(VariationError, match="--styles takes distinct styles"):
            Variation(styles=styles)


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    from pipeline.build import build
    from pipeline.demo import write_demo_manifest

    root = tmp_path_factory.mktemp("varied")
    _model, manifest = write_demo_manifest(root)
    build(manifest, root / "ds", 6, size=64, layers=True, jitter=True, styles=list(STYLES), progress=False)
    return root, manifest


def test_full_image_and_layers_share_each_samples_jitter_and_style(varied):
    """Re-render sample by sample from what the shard stores: the full image and every layer match the
    sample's own camera and style, and would not match another sample's."""
    from pipeline import shards
    from pipeline.layers import render_alone
    from pipeline.variation import STYLES as SHADINGS
    from pipeline.variation import sample_camera
    from renderer import Renderer
    from renderer.demo import DEMO_HEAD, demo_model

    root, _manifest = varied
    with shards.open_shard(root / "ds" / "shards" / "train-00000.h5") as f:
        jitter, style, names = f["jitter"][:], f["style"][:], list(f["style"].attrs["names"])
        posed, layers, pose, rest = f["posed"][:], f["layers/posed"][:], f["pose"][:], f["rest"][0]
    assert names == list(STYLES) and len(set(map(tuple, jitter))) == len(jitter)
    model = demo_model()
    matched = []
    for i in range(len(pose)):
        shading, edges = SHADINGS[names[style[i]]]
        with Renderer(model, head_bounds=DEMO_HEAD, drivers=schema_drivers(model, DEMO_MORPHS), size=64,
                      shading=shading, edges=edges) as r:
            own, other = sample_camera(r.camera, jitter[i]), sample_camera(r.camera, jitter[i - 1])
            np.testing.assert_array_equal(r.render(pose[i], camera=own), posed[i])
            assert not np.array_equal(r.render(pose[i], camera=other), posed[i])
            if names[style[i]] == STYLES[0]:
                np.testing.assert_array_equal(r.render([0, 0, 1, 0, 0, 0]), rest)  # rest: plain, first style
            alone = render_alone(r, model, {}, pose[i:i + 1], camera=own)[0]
            shifted = render_alone(r, model, {}, pose[i:i + 1], camera=other)[0]
        covered = (alone[..., 3] > 0) | (layers[i][..., 3] > 0)
        same = (np.abs(alone.astype(int) - layers[i]).max(-1) <= 2)[covered].mean()
        moved = (np.abs(shifted.astype(int) - layers[i]).max(-1) <= 2)[covered].mean()
        matched.append((same, moved))
    print("share of layer pixels equal to the own / another sample's camera:", np.round(matched, 3).tolist())
    assert all(same > 0.98 and moved < 0.9 for same, moved in matched)


def test_varied_build_verifies_and_the_reader_serves_jitter_and_style(varied):
    from pipeline.reader import Dataset
    from pipeline.verify import verify

    root, _manifest = varied
    assert verify(root / "ds") == []
    sample = Dataset(root / "ds", fields=("posed", "jitter", "style", "layers/posed"))[2]
    assert sample["jitter"].shape == (3,) and sample["style"] in (0, 1, 2)


def test_bad_styles_on_the_command_line_are_one_line(tmp_path):
    import subprocess
    import sys

    from pipeline.demo import write_demo_manifest

    _model, manifest = write_demo_manifest(tmp_path)
    run = subprocess.run([sys.executable, "-c", "from pipeline.cli import main; main()", "build", "-m", str(manifest),
                          "-o", str(tmp_path / "ds"),
                          "--poses", "2", "--styles", "phong,sketch", "-q"], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "--styles takes distinct styles" in run.stderr

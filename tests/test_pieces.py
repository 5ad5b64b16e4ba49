"""Work is committed in pieces smaller than a shard: Ctrl-C loses at most the pieces being
rendered, the resume renders only what is missing, and the result equals an uninterrupted
build (each sample exactly once, the same pixels)."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pytest
from test_build import CLI, assert_same, contents, write_manifest

from pipeline import pieces, shards
from pipeline.build import build
from pipeline.verify import verify

SIZE = 48
POSES, SHARD = 96, 48  # 2 models of 48 poses: one shard each, three pieces per model


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_manifest(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def whole(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    build(manifest, out, POSES, size=SIZE, shard_size=SHARD, progress=False, sheets=False)
    return out


def test_pieces_tile_each_slice():
    assert [(p.start, p.count) for p in pieces.slice_pieces(3, 40)] == [(0, 16), (16, 16), (32, 8)]
    assert sum(p.images for p in pieces.slice_pieces(0, 40)) == 2 * 40 + 1  # the first piece holds the rest image


def test_ctrl_c_keeps_committed_pieces_and_the_resume_matches(manifest, whole, tmp_path):
    command = [*CLI, "build", "-m", str(manifest), "-o", str(tmp_path), "--poses", str(POSES), "--size", str(SIZE),
               "--shard-size", str(SHARD), "-q"]
    process = subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    parts = tmp_path / "shards" / ".train-00000.h5.parts"
    while not list(parts.glob("m*.h5")) and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=60) == 130
    assert "Traceback" not in process.stderr.read()
    committed = sum(pieces.committed_images(tmp_path / "shards" / name) for name in ("train-00000.h5", "val-00000.h5"))
    finished = list((tmp_path / "shards").glob("*.h5"))
    assert committed > 0 and len(finished) < 2, "the build finished before it could be interrupted"

    run = subprocess.run(command, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"{committed} of them committed by an interrupted run" in run.stdout
    assert not list((tmp_path / "shards").glob(".*"))  # no pieces or temporary files left
    assert verify(tmp_path) == []
    assert_same(contents(tmp_path), contents(whole))


def test_a_stale_piece_is_rendered_again(manifest, whole, tmp_path):
    """A piece of another config, or an unreadable one (a power cut), is not trusted."""
    out = tmp_path / "out"
    parts = out / "shards" / ".train-00000.h5.parts"
    parts.mkdir(parents=True)
    (parts / pieces.Piece(0, 16, 16).name).write_bytes(b"")  # renamed but never written
    with shards.ShardWriter(parts / pieces.Piece(0, 0, 16).name, size=SIZE, models=1, samples=16,
                            split="train", config={"other": 1}) as writer:
        writer.add_samples(0, np.zeros((16, 6)), np.zeros(16), np.arange(16), np.full((16, SIZE, SIZE, 4), 9, np.uint8),
                           np.full((16, SIZE, SIZE, 4), 9, np.uint8))
    report = build(manifest, out, POSES, size=SIZE, shard_size=SHARD, progress=False, sheets=False)
    assert report.images_reused == 0
    assert_same(contents(out), contents(whole))

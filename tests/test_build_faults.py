"""The build when the machine fails it: a full disk, SIGTERM, a worker that dies mid-shard.

Real processes throughout: the CLI in a subprocess, loky workers, a real (tmpfs) full disk.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_build import CLI, SIZE, write_manifest

from pipeline import shards
from pipeline.verify import verify


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_manifest(tmp_path_factory.mktemp("models"))


def children(pid: int) -> list[int]:
    """Live loky worker processes started by ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if stat[1] == str(pid) and stat[0] != "Z" and b"loky" in cmdline and b"resource_tracker" not in cmdline:
            found.append(int(entry.name))
    return found


def wait_for(condition, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def leftovers(out: Path) -> list[str]:
    """Temporary files and notes; committed pieces (``.*.h5.parts/m*.h5``) are progress, kept for a resume."""
    return sorted(p.name for p in [*out.glob("shards/**/.*.tmp"), *out.glob("shards/.*.model")])


@pytest.fixture
def small_disk(tmp_path):
    """A 300 kB tmpfs: room for the index and a shard or two, not for the build."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root (a full disk cannot be made otherwise)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_line_its_own_status_and_leaves_no_temporary_shards(manifest, small_disk):
    run = subprocess.run([*CLI, "build", "-m", str(manifest), "-o", str(small_disk), "--poses", "60",
                          "--size", "64", "--shard-size", "10", "-j", "2", "-q"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == shards.DiskFullError.exit_code == 3, run.stderr
    assert run.stderr.strip().splitlines()[-1] == \
        f"error: {small_disk}: no space left on the device; free some and rerun the same command to resume"
    assert "Traceback (most recent call last)" not in run.stderr
    assert leftovers(small_disk) == []


def test_sigterm_stops_the_workers_and_exits_143(manifest, tmp_path):
    command = [*CLI, "build", "-m", str(manifest), "-o", str(tmp_path), "--poses", "120", "--size", str(SIZE),
               "--shard-size", "10", "-j", "2", "-q"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(children(process.pid)) == 2 and leftovers(tmp_path), process)
    workers = children(process.pid)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "terminated" and "Traceback" not in stderr
    time.sleep(1)  # an orphan would go on rendering and rename its shard now
    shards_now = sorted(p.name for p in (tmp_path / "shards").iterdir())
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()
                and (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z")]
    time.sleep(2)
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == shards_now
    assert leftovers(tmp_path) == []


def test_a_worker_that_dies_is_retried_then_its_model_marked_failed(manifest, tmp_path):
    """SIGKILL stands in for a segfault or the OOM killer: whenever a worker renders the
    variant model, it dies. The other model's shards are built; the variant is reported."""
    command = [*CLI, "build", "-m", str(manifest), "-o", str(tmp_path), "--poses-per-model", "30",
               "--size", str(SIZE), "--shard-size", "30", "-j", "2", "-q"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    note = tmp_path / "shards" / ".val-00000.h5.model"
    kills, killed_at = 0, None
    while process.poll() is None:
        try:
            written = note.stat().st_mtime_ns  # a note a dead worker left names nobody new
            victim = written != killed_at and note.read_text() == "models/variant.pmx"
        except OSError:
            victim = False
        if victim:
            for pid in children(process.pid):
                os.kill(pid, signal.SIGKILL)
            kills, killed_at = kills + 1, written
        time.sleep(0.002)
    stdout, stderr = process.communicate()
    assert kills == 2, (kills, stderr)  # once in parallel, once alone: then given up
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    (line,) = [line for line in stdout.splitlines() if line.startswith("failed: models/variant.pmx")]
    assert "the worker rendering it died, twice (exit code {SIGKILL(-9)" in line, stdout  # all on one line
    index = shards.read_index(tmp_path)
    assert index["splits"] == {"train": 30, "val": 0}
    assert [f["model"] for f in index["failed"]] == ["models/variant.pmx"]
    assert verify(tmp_path) == [] and leftovers(tmp_path) == []

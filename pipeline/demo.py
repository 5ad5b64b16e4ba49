"""``mmdsynth demo``: the built-in demo character -> its manifest -> a small dataset with previews.

The first thing a new user runs: it exercises the whole path (writer, loader, renderer,
sampling, shards, sheets) in well under a minute, with nothing to download.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.build import BuildReport, build
from pipeline.sheets import HISTOGRAMS_NAME, PREVIEW_NAME

DEFAULT_OUT = Path("demo-dataset")
MANIFEST_NAME = "manifest.jsonl"
MODEL_DIR = Path("models") / "demo"
DEMO_MORPHS = {"mouth_open": "あ", "blink": "まばたき", "wink_left": "ウィンク２", "wink_right": "ｳｨﾝｸ２右",
               "smile_blink": "笑い", "smile_wink_left": "ウィンク", "smile_wink_right": "ウィンク右"}


@dataclass
class Demo:
    out: Path
    model: Path
    manifest: Path
    report: BuildReport

    def summary(self) -> str:
        out = self.out
        return "\n".join([
            self.report.summary(),
            f"model:      {self.model}",
            f"manifest:   {self.manifest}",
            f"shards:     {out / 'shards'} (index: {out / 'index.json'})",
            f"preview:    {out / PREVIEW_NAME} (rest | expression | posed)",
            f"histograms: {out / HISTOGRAMS_NAME}",
            "next:",
            f"  mmdsynth inspect {out}",
            f"  mmdsynth verify {out}",
            f"  mmdsynth build --manifest {self.manifest} --out {out.parent / (out.name + '-bigger')}"
            " --poses 1000 --jobs 2",
        ])


def write_demo_manifest(out: Path) -> tuple[Path, Path]:
    """The demo model under OUT/models/demo/ and OUT/manifest.jsonl with its one record."""
    from manifests.record import Record
    from manifests.store import model_sha256
    from renderer.demo import DEMO_HEAD, write_demo

    model = write_demo(out / MODEL_DIR)
    top, bottom = DEMO_HEAD
    record = Record(model=model.relative_to(out).as_posix(), sha256=model_sha256(model), group="demo",
                    split="train", status="ok", head={"top": top, "bottom": bottom},
                    morphs=dict(DEMO_MORPHS), source="annotated")
    manifest = out / MANIFEST_NAME
    manifest.write_text(record.to_json() + "\n", encoding="utf-8")
    return model, manifest


def run_demo(out: str | os.PathLike = DEFAULT_OUT, *, poses: int = 64, size: int = 256,
             jobs: int | None = None, progress: bool = True) -> Demo:
    """Write the demo character, its manifest and a small dataset (with previews) under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, manifest = write_demo_manifest(out)
    jobs = jobs or min(2, os.cpu_count() or 1)
    report = build(manifest, out, poses, jobs=jobs, seed=0, size=size,
                   shard_size=max(1, -(-poses // jobs)), force=True, progress=progress)
    return Demo(out=out, model=model, manifest=manifest, report=report)

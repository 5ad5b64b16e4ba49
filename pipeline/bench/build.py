"""Build benchmark: a whole build (render, encode, write) against the bare draw-and-read limit.

``run()`` builds a dataset from the demo character plus the shared third-party models
when they are present (annotated by ``manifests/shared_models.jsonl`` if it exists,
else framed by the renderer's bounding-box head guess), with 2 jobs, and measures in
the same run the bare draw-and-read loop of the same meshes (the renderer benchmark's
loop, reused). It also prints bytes per image in the shards against the same images
as PNG files, and what the rate means for Khungurn's 1,007,881 images (16 hours).
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.bench import SHARED_MODELS

KHUNGURN_IMAGES = 1_007_881
KHUNGURN_HOURS = 16.0
SHARED_FILES = ("mmd_default/miku_v2.pmd", "mokou/mokou_A.pmd", "mmd_default/MEIKO.pmd",
                "appearance_miku/Appearance Miku.pmx")


def shared_records(root: Path) -> list[Any]:
    """Suggested records of the shared models that the suggester ships (status ok), as a user gets them."""
    from annotator.suggest import suggest

    if not root.is_dir():
        return []
    records = [suggest(root / name, root) for name in SHARED_FILES if (root / name).is_file()]
    for record in records:
        record.split = "train"
    return [record for record in records if record.status == "ok"]


def _manifest(work: Path) -> tuple[Path, Path]:
    """One manifest over the demo (under ``work``) and the shared models, by absolute root."""
    from manifests.store import read_manifest
    from pipeline.demo import write_demo_manifest

    _, demo_manifest = write_demo_manifest(work)
    demo = read_manifest(demo_manifest)[0]
    shared = shared_records(SHARED_MODELS)
    # one models root for all: link the shared folder beside the demo
    if shared:
        (work / "shared").symlink_to(SHARED_MODELS, target_is_directory=True)
        for record in shared:
            record.model = f"shared/{record.model}"
    manifest = work / "bench.jsonl"
    manifest.write_text("".join(r.to_json() + "\n" for r in [demo, *shared]), encoding="utf-8")
    return manifest, work


def _png_bytes(root: Path, per_shard: int = 16) -> float:
    """Mean PNG size of the images of every shard (its rest and first posed and expression images)."""
    from PIL import Image

    from pipeline import shards
    from pipeline.sheets import shard_files

    sizes = []
    for path in shard_files(root):
        with shards.open_shard(path) as f:
            images = np.concatenate([f[name][:per_shard] for name in shards.IMAGE_FIELDS])
        for image in images:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            sizes.append(buffer.tell())
    return float(np.mean(sizes))


def _bare_rate(manifest: Path, root: Path, size: int, frames: int) -> float:
    """Images/s of the renderer benchmark's bare draw-and-read loop, over the same models."""
    from manifests.store import read_manifest
    from pipeline.bench.renderer import bare_images_per_second
    from renderer.loader import load_model

    rates = [bare_images_per_second(load_model(root / r.model), size=size, frames=frames)
             for r in read_manifest(manifest)]
    return float(len(rates) / np.sum(1.0 / np.asarray(rates)))  # same images per model: harmonic mean


def run(poses_per_model: int = 100, size: int = 256, jobs: int = 2, frames: int = 50,
        work: str | os.PathLike | None = None) -> dict[str, Any]:
    """Build with ``jobs`` workers and print the figures beside their references."""
    from pipeline.build import build
    from pipeline.verify import inspect

    with tempfile.TemporaryDirectory(dir=work) as temp:
        manifest, root = _manifest(Path(temp))
        out = Path(temp) / "dataset"
        report = build(manifest, out, poses_per_model=poses_per_model, jobs=jobs, size=size,
                       shard_size=poses_per_model, models_root=root, progress=False, sheets=False)
        summary = inspect(out)
        images = report.images_written
        bytes_per_image = summary["bytes"] / images
        png = _png_bytes(out)
        bare = _bare_rate(manifest, root, size, frames)
    rate = report.images_per_second
    figures = {"models": len(summary["models"]), "images": images, "jobs": jobs,
               "size": size, "build_images_per_second": rate, "bare_images_per_second": bare,
               "ratio": rate / bare, "target_ratio": 0.7, "bytes_per_image_shards": bytes_per_image,
               "bytes_per_image_png": png, "khungurn_hours_at_this_rate": KHUNGURN_IMAGES / rate / 3600,
               "khungurn_hours": KHUNGURN_HOURS, "failed": report.failed}
    print(f"build: {images} images of {figures['models']} models at {size}px with {jobs} jobs: "
          f"{rate:.1f} images/s end to end (render, encode, write)")
    print(f"bare draw-and-read loop, same meshes: {bare:.1f} images/s; ratio {rate / bare:.2f} (target >= 0.7)")
    print(f"bytes per image: {bytes_per_image / 1e3:.1f} kB in shards vs {png / 1e3:.1f} kB as PNG files")
    print(f"Khungurn's {KHUNGURN_IMAGES:,} images at this rate: "
          f"{figures['khungurn_hours_at_this_rate']:.1f} hours (his: {KHUNGURN_HOURS:.0f} hours)")
    for entry in report.failed:
        print(f"failed: {entry['model']}: {entry['reason']}")
    return figures

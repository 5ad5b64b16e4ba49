"""Reader benchmark: shard reads against a PNG folder and a PNG tar, and the codec table.

``run()`` builds a few hundred 256 x 256 character images (rendered from the demo
character when the renderer is available, synthetic otherwise), stores them three ways
and reads them back: random access through ``pipeline.reader.Dataset``, one sample at a
time and in batches of 64 (decoded on every core, and on one thread for comparison);
(a) a folder of PNG files decoded with Pillow, in the same random order; (b) one tar of
those PNGs streamed sequentially and decoded, the WebDataset way. Each figure is the best
of several passes, taken in turns, which keeps other processes on a shared machine out of
the ratios. ``compare_codecs()`` measures the
HDF5 filters that ``pipeline.shards.compression`` chose among.
"""
from __future__ import annotations

import io
import os
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np
from PIL import Image

from pipeline.shards import FORMAT_VERSION, ShardWriter, shard_path, write_index


def synthetic_images(n: int, size: int = 256, seed: int = 0) -> np.ndarray:
    """Stand-ins for rendered characters: exact-zero background, shaded shapes, fine texture.

    A head, hair and a body as ellipses with a diffuse shading gradient, anti-aliased
    edges and a little high-frequency texture, which is what makes real renders harder
    to compress than flat shapes.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.zeros((n, size, size, 4), np.uint8)
    for i in range(n):  # per image, not per pixel: each image is one vectorized pass
        cx, cy = 0.5 + rng.uniform(-0.05, 0.05, 2)
        shapes = [(cx, cy + 0.35, 0.28, 0.4), (cx, cy - 0.05, 0.25, 0.3), (cx, cy, 0.19, 0.22)]
        rgb = np.zeros((size, size, 3), np.float32)
        alpha = np.zeros((size, size), np.float32)
        for (sx, sy, rx, ry), colour in zip(shapes, rng.uniform(0.3, 1.0, (3, 3))):
            d = np.sqrt(((x - sx) / rx) ** 2 + ((y - sy) / ry) ** 2)
            cover = np.clip((1.0 - d) * size * min(rx, ry), 0.0, 1.0)
            shade = 0.5 + 0.5 * np.clip(1.0 - d ** 2, 0.0, 1.0) - 0.2 * (x - sx)
            rgb = rgb * (1 - cover[..., None]) + cover[..., None] * colour * shade[..., None]
            alpha = np.maximum(alpha, cover)
        texture = rng.normal(0.0, 0.02, (size, size, 3)).astype(np.float32)
        rgb = np.clip(rgb + texture * (alpha[..., None] > 0), 0.0, 1.0)
        out[i, ..., :3] = (rgb * alpha[..., None] * 255).astype(np.uint8)
        out[i, ..., 3] = (alpha * 255).astype(np.uint8)
    return out


def character_images(n: int, size: int = 256, seed: int = 0) -> tuple[np.ndarray, str]:
    """Rendered demo-character images when the renderer works here, else synthetic ones."""
    try:
        from annotator.binding import bind_roles
        from pipeline.demo import DEMO_MORPHS
        from pipeline.sampling import sample_poses
        from renderer import Renderer
        from renderer.demo import DEMO_HEAD, demo_model
        demo = demo_model()
        drivers = bind_roles(DEMO_MORPHS, model=demo).drivers
        with Renderer(demo, head_bounds=DEMO_HEAD, drivers=drivers, size=size) as renderer:
            return renderer.render_batch(sample_poses(seed, "0" * 64, n)), "rendered demo character"
    except Exception as error:  # no EGL here, or the renderer is broken: still measure the reader
        return synthetic_images(n, size, seed), f"synthetic (renderer unavailable: {type(error).__name__})"


CODECS: dict[str, dict[str, Any]] = {
    "none": {},
    "gzip-1": {"compression": "gzip", "compression_opts": 1},
    "gzip-4": {"compression": "gzip", "compression_opts": 4},
    "lzf": {"compression": "lzf"},
    "blosc-lz4": dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.NOSHUFFLE)),
    "blosc-lz4-bitshuffle": dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE)),
    "blosc-zstd-1": dict(hdf5plugin.Blosc(cname="zstd", clevel=1, shuffle=hdf5plugin.Blosc.NOSHUFFLE)),
    "blosc-zstd-5": dict(hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.NOSHUFFLE)),
    "zstd-3": dict(hdf5plugin.Zstd(clevel=3)),
    "lz4": dict(hdf5plugin.LZ4()),
}


def _timed(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _fastest(works: dict[str, Callable[[], Any]], passes: int = 7) -> dict[str, float]:
    """Seconds of each work's fastest pass; the works take turns, so a busy spell hits them all."""
    seconds = {name: float("inf") for name in works}
    for _ in range(passes):
        for name, work in works.items():
            seconds[name] = min(seconds[name], _timed(work))
    return seconds


def compare_codecs(images: np.ndarray | None = None, folder: str | os.PathLike | None = None) -> list[dict]:
    """Write MB/s, random-read images/s and bytes per image of each candidate filter."""
    images = character_images(200)[0] if images is None else images
    n, raw_mb = len(images), images.nbytes / 1e6
    order = np.random.default_rng(0).permutation(n)
    rows = []
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        for name, options in CODECS.items():
            path = Path(tmp) / f"{name}.h5"
            with h5py.File(path, "w") as f:
                dataset = f.create_dataset("x", shape=images.shape, dtype=np.uint8,
                                           chunks=(1, *images.shape[1:]), **options)
                write_s = _timed(lambda: dataset.__setitem__(slice(None), images))  # noqa: B023 (called at once)
            with h5py.File(path, "r") as f:
                dataset = f["x"]
                read_s = _timed(lambda: [dataset[int(i)] for i in order])  # noqa: B023 (called at once)
            rows.append({"codec": name, "write_MBps": raw_mb / write_s, "read_images_per_s": n / read_s,
                         "bytes_per_image": path.stat().st_size / n})
    return rows


def print_codecs(rows: list[dict]) -> None:
    print(f"{'codec':<22}{'write MB/s':>12}{'read img/s':>12}{'KB/image':>10}")
    for row in rows:
        print(f"{row['codec']:<22}{row['write_MBps']:>12.0f}{row['read_images_per_s']:>12.0f}"
              f"{row['bytes_per_image'] / 1e3:>10.1f}")


def write_shards(root: Path, images: np.ndarray, per_shard: int = 100) -> None:
    """The images as posed (and expression) samples of one model per shard, plus the index."""
    entries = []
    for k, start in enumerate(range(0, len(images), per_shard)):
        chunk = images[start:start + per_shard]
        path = shard_path(root, "train", k)
        with ShardWriter(path, size=images.shape[1:3], models=1, samples=len(chunk), split="train",
                         config={"bench": "reader"}) as writer:
            writer.add_model(0, "bench", "0" * 64, "{}", chunk[0])
            writer.add_samples(0, np.zeros((len(chunk), 6)), np.zeros(len(chunk)), np.arange(len(chunk)) + start,
                               chunk, chunk)
        entries.append({"file": str(path.relative_to(root)), "split": "train", "samples": len(chunk), "models": 1})
    write_index(root, {"format_version": FORMAT_VERSION, "config": {"bench": "reader"}, "shards": entries,
                       "splits": {"train": len(images)}, "failed": []})


def write_pngs(folder: Path, images: np.ndarray) -> Path:
    """A folder of PNG files and a tar of the same files; returns the tar's path."""
    folder.mkdir(parents=True)
    tar_path = folder.with_suffix(".tar")
    with tarfile.open(tar_path, "w") as tar:
        for i, image in enumerate(images):
            path = folder / f"{i:06d}.png"
            Image.fromarray(image).save(path)
            tar.add(path, arcname=path.name)
    return tar_path


def read_tar(tar_path: Path) -> int:
    """WebDataset-style: stream the members in order and decode each."""
    count = 0
    with tarfile.open(tar_path, "r|") as tar:
        for member in tar:
            data = tar.extractfile(member).read()
            np.asarray(Image.open(io.BytesIO(data)))
            count += 1
    return count


def run(n: int = 300, size: int = 256, root: str | os.PathLike | None = None, codecs: bool = True) -> dict:
    """Samples/s of random reads from shards, from a PNG folder and of a PNG tar streamed in order."""
    from pipeline.reader import Dataset, available_cores

    images, source = character_images(n, size)
    order = np.random.default_rng(1).permutation(n)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        tmp = Path(tmp)
        write_shards(tmp / "shards", images)
        tar_path = write_pngs(tmp / "png", images)
        dataset = Dataset(tmp / "shards", fields=("posed",))
        one_thread = Dataset(tmp / "shards", fields=("posed",), threads=1)
        pngs = [tmp / "png" / f"{i:06d}.png" for i in order]
        seconds = _fastest({
            "shards_single": lambda: [dataset[int(i)] for i in order],
            "shards_batch64": lambda: [dataset.get_batch(order[b:b + 64]) for b in range(0, n, 64)],
            "shards_batch64_1thread": lambda: [one_thread.get_batch(order[b:b + 64]) for b in range(0, n, 64)],
            "png_folder": lambda: [np.asarray(Image.open(path)) for path in pngs],
            "png_tar": lambda: read_tar(tar_path),
        })
        dataset.close()
        one_thread.close()
    rate = {name: n / s for name, s in seconds.items()}
    figures = {"images": source, "n": n, "size": size, "decode_threads": available_cores(),
               **{f"{name}_samples_per_s": round(value, 1) for name, value in rate.items()},
               **{f"{name}_vs_png_folder": round(value / rate["png_folder"], 2) for name, value in rate.items()}}
    print(f"{n} images {size}x{size} ({source}), one image per sample; batches decoded on "
          f"{available_cores()} threads")
    for name, value in rate.items():
        print(f"  {name:<24}{value:>10.0f} samples/s  {value / rate['png_folder']:>6.2f}x the PNG folder")
    if codecs:
        rows = compare_codecs(images[:200], root)
        print_codecs(rows)
        figures["codecs"] = rows
    return figures

"""Pictures of a built dataset for a person: a contact sheet of triplets, pose histograms.

They sit beside the shards (``DIR/preview.png``, ``DIR/pose_histograms.png``) so that a
glance tells whether framing, morphs and the pose distribution look right.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from manifests.schema import Parameter, PoseSchema, load_schema
from pipeline import shards

PREVIEW_NAME = "preview.png"
HISTOGRAMS_NAME = "pose_histograms.png"
LAYERS_NAME = "layers.png"
BACKDROP = np.array([96, 96, 96], dtype=np.float32)  # grey, so black hair and empty pixels differ


def shard_files(root: str | os.PathLike) -> list[Path]:
    """The dataset's shard files as its index lists them."""
    root = Path(root)
    return [root / entry["file"] for entry in shards.read_index(root)["shards"]]


def _triplet(f, i: int) -> np.ndarray:
    """Rest | expression | posed of sample ``i``, side by side."""
    rest = f["rest"][int(f["model_index"][i])]
    return np.concatenate([rest, f["expression"][i], f["posed"][i]], axis=1)


def _on_backdrop(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgba[..., :3] * alpha + BACKDROP * (1.0 - alpha)).round().astype(np.uint8)


def contact_sheet(root: str | os.PathLike, count: int = 8, seed: int = 0) -> np.ndarray | None:
    """RGB rows of random (rest, expression, posed) triplets, two per row; None when empty."""
    files = shard_files(root)
    sizes = []
    for path in files:
        with shards.open_shard(path) as f:
            sizes.append(len(f["sample_id"]))
    total = sum(sizes)
    if total == 0:
        return None
    picks = np.sort(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False))
    starts = np.cumsum([0, *sizes])
    tiles = []
    for shard, path in enumerate(files):
        chosen = picks[(picks >= starts[shard]) & (picks < starts[shard + 1])] - starts[shard]
        if len(chosen):
            with shards.open_shard(path) as f:
                tiles += [_on_backdrop(_triplet(f, int(i))) for i in chosen]
    if len(tiles) % 2:
        tiles.append(np.full_like(tiles[0], BACKDROP.astype(np.uint8)))
    gap = np.full((tiles[0].shape[0], 8, 3), 255, dtype=np.uint8)
    rows = [np.concatenate([a, gap, b], axis=1) for a, b in zip(tiles[::2], tiles[1::2])]
    return np.concatenate(rows, axis=0)


def write_preview(root: str | os.PathLike, count: int = 8, seed: int = 0) -> Path | None:
    """``DIR/preview.png``: random triplets (rest / expression / posed); None when no samples."""
    from PIL import Image

    sheet = contact_sheet(root, count, seed)
    if sheet is None:
        return None
    path = Path(root) / PREVIEW_NAME
    Image.fromarray(sheet).save(path)
    return path


def all_poses(root: str | os.PathLike) -> tuple[np.ndarray, PoseSchema]:
    """Every pose of the dataset and the schema they follow (tha1 for an empty dataset)."""
    poses, schema = [], load_schema()
    for path in shard_files(root):
        with shards.open_shard(path) as f:
            poses.append(f["pose"][:])
            schema = shards.stored_schema(f)
    return (np.concatenate(poses) if poses else np.zeros((0, schema.size), np.float32)), schema


def target_density(parameter: Parameter, x: np.ndarray) -> np.ndarray:
    """The density a parameter is sampled from where it is active (sampling.py's distributions)."""
    low, high = parameter.range
    if parameter.sampling == "uniform":
        return np.full_like(x, 1.0 / (high - low))
    if (low, high) == (-1.0, 1.0):
        return np.abs(x)
    return 2.0 * (x - low) / (high - low) ** 2


def write_histograms(root: str | os.PathLike) -> Path | None:
    """``DIR/pose_histograms.png``: one histogram per pose parameter beside its target density
    (drawn where a parameter is always active; others show a spike at their default)."""
    poses, schema = all_poses(root)
    if not len(poses):
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    bins = int(np.clip(np.sqrt(len(poses)), 10, 40))
    columns = 3 if schema.size <= 6 else 8
    rows = -(-schema.size // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), constrained_layout=True, squeeze=False)
    for channel, (axis, parameter) in enumerate(zip(axes.flat, schema.parameters)):
        low, high = parameter.range
        axis.hist(poses[:, channel], bins=bins, range=(low, high), density=True, color="tab:blue")
        if parameter.active >= 1.0:
            x = np.linspace(low, high, 201)
            axis.plot(x, target_density(parameter, x), color="tab:red", label="target")
        axis.set_title(f"{parameter.name} (n = {len(poses)})")
    for axis in axes.flat[schema.size:]:
        axis.axis("off")
    drawn = [i for i, parameter in enumerate(schema.parameters) if parameter.active >= 1.0]
    if drawn:
        axes.flat[drawn[0]].legend()
    path = Path(root) / HISTOGRAMS_NAME
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def layer_sheet(stacks: np.ndarray, names: list[str], fulls: np.ndarray) -> np.ndarray:
    """RGB: a column per layer under its class name, then the composite and the full render; a row
    per (L, H, W, 4) stack of ``stacks`` (one stack, or R of them with R full images)."""
    from PIL import Image, ImageDraw

    from pipeline.layers import composite

    stacks, fulls = np.asarray(stacks), np.asarray(fulls)
    if stacks.ndim == 4:
        stacks, fulls = stacks[None], fulls[None]
    side = fulls.shape[1]
    labels = [*names, "composite", "full render"]
    header = Image.new("RGB", ((side + 4) * len(labels), 24), (255, 255, 255))
    draw = ImageDraw.Draw(header)
    for column, label in enumerate(labels):
        draw.text((column * (side + 4) + 4, 6), label, fill=(0, 0, 0))
    rows = [np.asarray(header)]
    for stack, full in zip(stacks, fulls):
        tiles = [*stack, composite(stack), full]
        rows.append(np.concatenate([np.pad(_on_backdrop(tile), ((2, 2), (2, 2), (0, 0)), constant_values=255)
                                    for tile in tiles], axis=1))
    return np.concatenate(rows, axis=0)


def write_layer_preview(root: str | os.PathLike, rows: int = 4) -> Path | None:
    """``DIR/layers.png``: rest stacks of the first models and posed stacks of the first samples, each
    beside its composite and full render; None without layers."""
    from PIL import Image

    files = shard_files(root)
    if not files:
        return None
    with shards.open_shard(files[0]) as f:
        if "layers/rest" not in f or not len(f["rest"]):
            return None
        models, samples = min(rows // 2 or 1, len(f["rest"])), min(rows - rows // 2, len(f["posed"]))
        stacks = np.concatenate([f["layers/rest"][:models], f["layers/posed"][:samples]])
        fulls = np.concatenate([f["rest"][:models], f["posed"][:samples]])
        sheet = layer_sheet(stacks, list(f["layers/names"].asstr()[:]), fulls)
    out = Path(root) / LAYERS_NAME
    Image.fromarray(sheet).save(out)
    return out

"""Importing Live2D layer dumps: both formats, generated here with numpy + Pillow, bad dumps skipped."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from annotator.layers import CLASSES as LAYERS
from annotator.layers import LayerConfigError, load_config
from pipeline.cli import cli, main
from pipeline.layers import composite_error
from pipeline.live2d import DumpError, import_dumps, read_dump
from pipeline.reader import Dataset
from pipeline.shards import read_index

W, H, SIZE = 180, 240, 64
# part ID, draw order, colour, ellipse (cx, cy, rx, ry) on the canvas; draw order agrees with layer order
PARTS = [("PartHairBack", 1, (40, 150, 160), (90, 80, 70, 75)),
         ("PartBody", 2, (200, 200, 215), (90, 200, 60, 50)),
         ("PartFace", 3, (255, 225, 205), (90, 90, 50, 55)),
         ("PartEyeWhiteL", 4, (255, 255, 255), (110, 90, 12, 8)),
         ("PartEyeBallL", 5, (30, 150, 170), (110, 90, 6, 7)),
         ("PartBrowL", 6, (60, 80, 90), (110, 72, 12, 3)),
         ("PartMouth", 7, (120, 30, 40), (90, 118, 10, 4)),
         ("PartHairFront", 8, (60, 180, 185), (90, 45, 52, 25)),
         ("PartHat", 9, (200, 40, 40), (90, 22, 30, 12))]
EXPECTED = {"PartHairBack": "back hair", "PartBody": "topwear", "PartFace": "face", "PartEyeWhiteL": "eyewhite",
            "PartEyeBallL": "irides", "PartBrowL": "eyebrow", "PartMouth": "mouth",
            "PartHairFront": "front hair", "PartHat": "headwear"}


def ellipse(colour, cx, cy, rx, ry) -> np.ndarray:
    """A full-canvas RGBA ellipse with a soft (anti-aliased) edge and colour under alpha 0 left at zero."""
    y, x = np.mgrid[0:H, 0:W] + 0.5
    distance = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    alpha = np.clip((1.0 - distance) * min(rx, ry) + 0.5, 0.0, 1.0)
    image = np.zeros((H, W, 4), np.uint8)
    image[..., :3] = colour
    image[..., 3] = np.rint(alpha * 255)
    image[image[..., 3] == 0] = 0
    return image


def over(images: list[np.ndarray]) -> np.ndarray:
    """Reference straight-alpha "over", written out plainly in float64."""
    colour, alpha = np.zeros((H, W, 3)), np.zeros((H, W, 1))
    for image in images:
        a = image[..., 3:] / 255.0
        colour = image[..., :3] / 255.0 * a + colour * (1 - a)
        alpha = a + alpha * (1 - a)
    straight = np.divide(colour, alpha, out=np.zeros_like(colour), where=alpha > 0)
    return np.rint(np.concatenate([straight, alpha], -1) * 255).astype(np.uint8)


def save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def full_canvas_dump(folder: Path) -> None:
    images = [ellipse(colour, *shape) for _part, _order, colour, shape in PARTS]
    for (part, order, _c, _s), image in zip(PARTS, images):
        save(folder / f"{order:04d}_{part}.png", image)
    save(folder / "all.png", over(images))


def cropped_dump(folder: Path) -> None:
    drawables = []
    for index, (part, order, colour, shape) in enumerate(PARTS):
        image = ellipse(colour, *shape)
        rows, cols = np.flatnonzero(image[..., 3].any(1)), np.flatnonzero(image[..., 3].any(0))
        x0, y0, x1, y1 = int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
        save(folder / f"ArtMesh{index}.png", image[y0:y1, x0:x1])
        drawables.append({"id": f"ArtMesh{index}", "part": part, "crop_xyxy": [x0, y0, x1, y1],
                          "render_order": order * 10})
    drawables.append({"id": "Hidden", "part": "PartSketch", "crop_xyxy": [0, 0, 0, 0], "render_order": 0})
    (folder / "model.yaml").write_text(yaml.safe_dump({"canvas": [W, H], "drawables": drawables[::-1]}))


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("dumps")
    full_canvas_dump(src / "a_full")
    cropped_dump(src / "b_cropped")
    return src


@pytest.fixture(scope="module")
def imported(dumps, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "ds"
    report = import_dumps(dumps, out, size=SIZE, progress=False)
    assert report.imported == ["a_full", "b_cropped"] and not report.skipped
    return out


def read(out: Path, name: str) -> dict[str, np.ndarray]:
    with h5py.File(out / "shards" / "train-00000.h5") as f:
        i = list(f["models/name"].asstr()[:]).index(name)
        return {"rest": f["rest"][i], "layers": f["layers/rest"][i], "names": list(f["layers/names"].asstr()[:]),
                "posed": f["posed"][i], "layers_posed": f["layers/posed"][i], "pose": f["pose"][i]}


def test_full_canvas_dump_becomes_layers(imported):
    data = read(imported, "a_full")
    assert data["names"] == list(LAYERS)
    assert data["layers"].shape == (len(LAYERS), SIZE, SIZE, 4)
    filled = {name for name, layer in zip(LAYERS, data["layers"]) if layer[..., 3].any()}
    assert filled == set(EXPECTED.values())
    assert not data["layers"][LAYERS.index("neck")].any()  # no part maps there: all zeros
    uncovered = data["layers"][..., 3] == 0
    assert not data["layers"][..., :3][uncovered].any()


def test_occluded_parts_stay_whole(imported):
    """The back hair keeps the pixels the face hides in all.png."""
    data = read(imported, "a_full")
    back_hair = data["layers"][LAYERS.index("back hair")][..., 3]
    face = data["layers"][LAYERS.index("face")][..., 3] == 255
    assert (back_hair[face] == 255).mean() > 0.9


def test_composite_reproduces_all_png(imported):
    data = read(imported, "a_full")
    mean, alpha = composite_error(data["layers"][None], data["rest"][None])[0]
    assert mean < 1.0 and alpha <= 2, (mean, alpha)


def test_square_padding_and_size(imported):
    """The content (taller than wide) fills the height and is centred horizontally."""
    alpha = read(imported, "a_full")["rest"][..., 3]
    rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
    assert rows[0] == 0 and rows[-1] == SIZE - 1
    assert abs(cols[0] - (SIZE - 1 - cols[-1])) <= 1


def test_cropped_dump_matches_full_canvas(imported):
    full, cropped = read(imported, "a_full"), read(imported, "b_cropped")
    difference = np.abs(full["layers"].astype(int) - cropped["layers"].astype(int))
    assert (difference.max(axis=-1) <= 2).mean() > 0.99  # all but the edges a.png's settling touched
    assert composite_error(cropped["layers"][None], full["rest"][None])[0, 0] < 1.0


def test_one_sample_per_model_at_the_default_pose(imported):
    data = read(imported, "b_cropped")
    np.testing.assert_array_equal(data["pose"], np.zeros(6, np.float32))
    np.testing.assert_array_equal(data["posed"], data["rest"])
    np.testing.assert_array_equal(data["layers_posed"], data["layers"])
    index = read_index(imported)
    assert index["config"]["source"] == "live2d" and index["splits"] == {"train": 2}


def test_reader_serves_layer_fields(imported):
    ds = Dataset(imported, fields=("rest", "layers/rest", "layers/posed", "pose"))
    assert len(ds) == 2
    sample = ds[1]
    assert sample["layers/rest"].shape == (len(LAYERS), SIZE, SIZE, 4)
    np.testing.assert_array_equal(sample["layers/rest"], read(imported, "b_cropped")["layers"])


def test_verify_accepts_an_import(imported):
    from pipeline.verify import verify

    assert verify(imported) == []


def bad_dumps(src: Path) -> dict[str, str]:
    """Broken copies of the generated dumps -> the text their skip reason must contain."""
    full_canvas_dump(src / "missing_file")
    (src / "missing_file" / "all.png").unlink()
    full_canvas_dump(src / "wrong_size")
    save(src / "wrong_size" / "0003_PartFace.png", np.zeros((10, 10, 4), np.uint8))
    full_canvas_dump(src / "garbage_png")
    (src / "garbage_png" / "0002_PartBody.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cropped_dump(src / "bad_yaml")
    (src / "bad_yaml" / "model.yaml").write_text("canvas: [180, 240\ndrawables: {")
    cropped_dump(src / "bad_crop")
    description = yaml.safe_load((src / "bad_crop" / "model.yaml").read_text())
    next(d for d in description["drawables"] if d["id"] == "ArtMesh0")["crop_xyxy"][2] += 5
    (src / "bad_crop" / "model.yaml").write_text(yaml.safe_dump(description))
    return {"missing_file": "neither all.png", "wrong_size": "0003_PartFace.png: is 10x10",
            "garbage_png": "0002_PartBody.png: unreadable PNG", "bad_yaml": "model.yaml: invalid YAML",
            "bad_crop": "crop_xyxy says"}


def test_bad_dumps_are_skipped_with_exit_status_1(tmp_path):
    src = tmp_path / "src"
    cropped_dump(src / "good")
    reasons = bad_dumps(src)
    result = CliRunner().invoke(cli, ["layers", "import", str(src), "--out", str(tmp_path / "out"),
                                      "--size", "32", "--quiet"])
    assert result.exit_code == 1, result.output
    assert "1 models imported, 5 skipped" in result.output
    failed = {entry["model"]: entry["reason"] for entry in read_index(tmp_path / "out")["failed"]}
    assert set(failed) == set(reasons)
    for model, text in reasons.items():
        assert text in failed[model], failed[model]
    assert Dataset(tmp_path / "out")[0]["rest"].shape == (32, 32, 4)


def test_map_file_changes_the_part_table(dumps, tmp_path):
    config = tmp_path / "map.yaml"
    config.write_text(yaml.safe_dump({"parts": {"^PartHat$": "topwear"}}))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["layers", "import", str(dumps), "--out", str(out), "--size", "32",
                                      "--map", str(config), "-q"])
    assert result.exit_code == 0, result.output
    with h5py.File(out / "shards" / "train-00000.h5") as f:
        layers = f["layers/rest"][0]
    assert layers[LAYERS.index("topwear")][..., 3].any() and not layers[LAYERS.index("headwear")].any()


def test_bad_map_file_is_a_one_line_error(dumps, tmp_path, monkeypatch, capsys):
    config = tmp_path / "map.json"
    config.write_text(json.dumps({"parts": {"^PartHat$": "hats"}}))
    with pytest.raises(LayerConfigError, match=r"map\.json: entries name unknown layer"):
        load_config(config)
    monkeypatch.setattr("sys.argv", ["mmdsynth", "layers", "import", str(dumps), "--out", str(tmp_path / "o"),
                                     "--map", str(config)])
    with pytest.raises(SystemExit) as exit_:
        main()
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and error.count("\n") == 1 and "'hats'" in error and "Traceback" not in error


def test_read_dump_rejects_two_yaml_files(tmp_path):
    cropped_dump(tmp_path / "m")
    (tmp_path / "m" / "other.yml").write_text("{}")
    with pytest.raises(DumpError, match="more than one YAML"):
        read_dump(tmp_path / "m")


def test_existing_dataset_needs_force(imported, dumps):
    from pipeline.live2d import Live2DImportError

    with pytest.raises(Live2DImportError, match="already holds a dataset"):
        import_dumps(dumps, imported, size=SIZE, progress=False)


def test_a_jpeg_named_png_is_refused(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png", format="JPEG")
    from pipeline.live2d import read_png

    with pytest.raises(DumpError, match=r"x\.png: not a PNG but JPEG"):
        read_png(tmp_path / "x.png")


def test_verify_refuses_a_pose_that_nothing_drives(imported, tmp_path):
    """An import has no morphs: a pose other than the rest pose would be a label the image does not show."""
    import shutil

    import h5py

    from pipeline.verify import verify

    copy = tmp_path / "copy"
    shutil.copytree(imported, copy)
    shard = next((copy / "shards").glob("*.h5"))
    with h5py.File(shard, "r+") as f:
        f["pose"][0, 0] = 1.0
    assert any("no morph drives them" in problem for problem in verify(copy))

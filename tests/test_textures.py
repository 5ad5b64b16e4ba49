"""Texture lookup the way MMD finds files, decoding by content, and the built-in shared toons."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from renderer.textures import TextureOutsideModel, load_texture, resolve, shared_toon, sniff

RED = (200, 10, 10, 255)


def save(path, fmt: str, mode: str = "RGBA") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (4, 2), RED[: len(mode)]).save(path, format=fmt)


def test_resolve_ignores_case_per_component_and_backslashes(tmp_path):
    save(tmp_path / "Tex" / "Hair" / "A1.bmp", "BMP", "RGB")
    found = tmp_path / "Tex" / "Hair" / "A1.bmp"
    assert resolve(tmp_path, "tex\\hair\\a1.bmp") == found
    assert resolve(tmp_path, "./TEX/HAIR/a1.BMP") == found
    assert resolve(tmp_path, "Tex\\..\\tex\\Hair\\A1.bmp").resolve() == found
    assert resolve(tmp_path, "tex\\hair\\a2.bmp") is None
    assert resolve(tmp_path, "tex") is None  # a folder is not a texture
    assert resolve(tmp_path, "") is None


def test_resolve_prefers_the_exact_name_then_any_case_then_another_extension(tmp_path):
    for name in ("Fuku1.png", "x.png", "x.dds", "Hair.BMP", "hair.png", "same.tga", "SAME.png", "dir.bmp/a.png"):
        save(tmp_path / name, "PNG")
    assert resolve(tmp_path, "Fuku1.tga") == tmp_path / "Fuku1.png"
    assert resolve(tmp_path, "fuku1.TGA") == tmp_path / "Fuku1.png"  # case and extension both differ
    assert resolve(tmp_path, "x.bmp") == tmp_path / "x.png"  # png is the first alternative tried
    assert resolve(tmp_path, "hair.bmp") == tmp_path / "Hair.BMP"  # the same extension in another case wins
    assert resolve(tmp_path, "same.tga") == tmp_path / "same.tga"  # the exact name wins
    assert resolve(tmp_path, "dir.png") is None  # a folder is not a texture under any extension
    assert resolve(tmp_path, "fuku2.tga") is None


@pytest.mark.parametrize("name", ["..\\..\\secret.png", "../secret.png", "a\\..\\..\\secret.png",
                                  "..\\model\\inside.png"])
def test_resolve_refuses_names_that_climb_out_of_the_model_folder(tmp_path, name):
    save(tmp_path / "secret.png", "PNG")
    save(tmp_path / "model" / "inside.png", "PNG")
    (tmp_path / "model" / "a").mkdir()
    with pytest.raises(TextureOutsideModel, match="outside"):
        resolve(tmp_path / "model", name)


def test_resolve_refuses_a_link_out_of_the_model_folder(tmp_path):
    save(tmp_path / "secret.png", "PNG")
    (tmp_path / "model").mkdir()
    os.symlink(tmp_path / "secret.png", tmp_path / "model" / "linked.png")
    with pytest.raises(TextureOutsideModel, match="links outside"):
        resolve(tmp_path / "model", "linked.png")


def test_resolve_finds_shift_jis_names_left_as_raw_bytes(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), "髪の毛.png".encode("cp932"))
    Image.new("RGBA", (2, 2), RED).save(raw, format="PNG")
    found = resolve(tmp_path, "髪の毛.png")
    assert found is not None and os.fsencode(found) == raw
    assert load_texture(found)[0, 0].tolist() == list(RED)


@pytest.mark.parametrize(("name", "fmt", "mode"), [
    ("a.bmp", "BMP", "RGB"), ("b.png", "PNG", "RGBA"), ("c.tga", "TGA", "RGBA"), ("d.jpg", "JPEG", "RGB"),
    ("sphere.spa", "BMP", "RGB"), ("sphere.sph", "BMP", "RGB"), ("png_named.bmp", "PNG", "RGBA"),
])
def test_load_texture_decodes_by_content_to_rgba(tmp_path, name, fmt, mode):
    save(tmp_path / name, fmt, mode)
    pixels = load_texture(tmp_path / name)
    assert pixels.shape == (2, 4, 4) and pixels.dtype == np.uint8
    np.testing.assert_allclose(pixels[0, 0], RED, atol=4 if fmt == "JPEG" else 0)


def test_sniff_falls_back_to_tga():
    assert [sniff(b"BM...."), sniff(b"\x89PNG...."), sniff(b"\xff\xd8\xff"), sniff(b"DDS |")] == \
        ["BMP", "PNG", "JPEG", "DDS"]
    assert sniff(b"\x00\x00\x02\x00") == "TGA"


def test_undecodable_texture_warns_and_draws_white(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.warns(UserWarning, match="broken.png"):
        pixels = load_texture(tmp_path / "broken.png")
    assert pixels.tolist() == [[[255, 255, 255, 255]]]


def test_shared_toons_are_ten_distinct_ramps_lit_at_the_top():
    ramps = [shared_toon(f"toon{i:02d}.bmp") for i in range(1, 11)]
    for ramp in ramps:
        assert ramp.dtype == np.uint8 and ramp.shape[2] == 4 and (ramp[..., 3] == 255).all()
        assert (ramp[0, :, :3] == 255).all() and (ramp[-1, :, :3] < 255).any()
        assert (np.diff(ramp[:, 0, :3].astype(int), axis=0) <= 0).all()  # darkens monotonically downwards
    assert len({ramp.tobytes() for ramp in ramps}) >= 8


def test_absurd_image_size_is_a_warning_not_a_crash(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "small.bmp", format="BMP")
    header = bytearray((tmp_path / "small.bmp").read_bytes())
    header[18:26] = (200_000).to_bytes(4, "little") + (200_000).to_bytes(4, "little")  # width, height
    (tmp_path / "bomb.bmp").write_bytes(bytes(header))
    with pytest.warns(UserWarning, match="bomb.bmp"):
        assert load_texture(tmp_path / "bomb.bmp").shape == (1, 1, 4)

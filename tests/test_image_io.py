"""Decoding one photo (mae_utils.util.image_io): the pixel limit, and big images reduced while decoding."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mae_utils import splits as splits_mod
from mae_utils.util.errors import UserError

from conftest import write_faces

# ---------------------------------------------------------------------- faults
def test_images_over_the_pixel_limit_are_skipped_with_a_reason(tmp_path, monkeypatch):
    folder = tmp_path / "faces"
    write_faces(folder, 10, size=32, seed=0)
    Image.new("RGB", (300, 200), (200, 100, 50)).save(folder / "huge.png")
    monkeypatch.setenv("MASKAE_MAX_PIXELS", "50000")  # 300x200 = 60000 pixels is over it
    lines: list[str] = []
    splits = splits_mod.prepare_data(folder, 32, cache_dir=tmp_path / "cache", log=lines.append)
    assert ("huge.png", "image too large: 300x200 = 0 MP, over the 0.05 MP limit (set MASKAE_MAX_PIXELS to "
            "allow it)") in splits.skipped  # fmt: skip
    assert any("skipped 1 unreadable file(s): huge.png (image too large" in x for x in lines)
    monkeypatch.setenv("MASKAE_MAX_PIXELS", "lots")
    with pytest.raises(UserError, match="MASKAE_MAX_PIXELS must be a positive number"):
        splits_mod.prepare_data(folder, 32, cache_dir=tmp_path / "cache", log=lines.append)


@pytest.mark.parametrize("sixteen_bit", [False, True])
def test_big_images_are_reduced_while_decoding(tmp_path, monkeypatch, sixteen_bit):
    from mae_utils.util import image_io

    rng = np.random.default_rng(0)
    if sixteen_bit:  # a 16-bit grey scan: reduced through 32-bit integers, then scaled to 8 bits as before
        big = np.kron(rng.integers(0, 65536, (32, 32)), np.ones((32, 32))).astype(np.uint16)
    else:
        big = np.kron(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), np.ones((32, 32, 1), dtype=np.uint8))
    Image.fromarray(big).save(tmp_path / "big.png")  # 1024x1024
    full = image_io.resize_center_crop(image_io.to_rgb(Image.open(tmp_path / "big.png")), 32)
    reduced = []
    real_reduce = Image.Image.reduce

    def spy(self, factor, *args):
        reduced.append((self.size, factor))
        return real_reduce(self, factor, *args)

    monkeypatch.setattr(Image.Image, "reduce", spy)
    small = image_io.load_image(tmp_path / "big.png", 32)
    assert reduced == [((1024, 1024), 8)]  # 1024 -> 128 px (4x the target) before any conversion
    assert np.abs(small.astype(int) - full.astype(int)).mean() < 2.0  # the same picture



# ---------------------------------------------------------------------- the pixel limit's value
@pytest.mark.parametrize("value", ["inf", "1e400", "abc", "-3", "nan"])
def test_a_bad_pixel_limit_is_one_error_not_every_photo_skipped(tmp_path, monkeypatch, value):
    from mae_utils.data import FaceFolder

    folder = tmp_path / "faces"
    write_faces(folder, 3, size=32, seed=0)
    monkeypatch.setenv("MASKAE_MAX_PIXELS", value)
    with pytest.raises(UserError, match=f"MASKAE_MAX_PIXELS must be a positive number of pixels .*; got '{value}'"):
        FaceFolder(folder, 32, cache_dir=False, progress=False)
    with pytest.raises(UserError, match="MASKAE_MAX_PIXELS"):
        splits_mod.prepare_data(folder, 32, cache_dir=tmp_path / "cache", log=lambda _m: None)

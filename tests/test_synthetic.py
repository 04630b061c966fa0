"""Synthetic faces: deterministic per (seed, index) at any size, varied, face-like; the synth command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mae_utils.app.cli import main as cli_main
from mae_utils.data import SyntheticFaces
from mae_utils.util.errors import UserError
from mae_utils.synthetic import face_grid, face_uniforms, generate_faces, render_faces


def test_deterministic_per_seed_and_index_whatever_the_batch() -> None:
    a = generate_faces(12, 32, seed=5)
    b = generate_faces(12, 32, seed=5)
    np.testing.assert_array_equal(a, b)
    # the same faces drawn alone or in another batch order are identical
    picked = generate_faces(size=32, seed=5, indices=[11, 3, 7])
    np.testing.assert_array_equal(picked, a[[11, 3, 7]])
    np.testing.assert_array_equal(render_faces(face_uniforms(5, [3]), 32)[0], a[3])
    assert not np.array_equal(generate_faces(12, 32, seed=6), a)


@pytest.mark.parametrize("size", [8, 33, 64, 96])
def test_any_size(size: int) -> None:
    imgs = generate_faces(3, size, seed=0)
    assert imgs.shape == (3, size, size, 3) and imgs.dtype == np.uint8


def test_same_face_at_different_sizes() -> None:
    small = generate_faces(4, 32, seed=1).astype(float)
    big = generate_faces(4, 128, seed=1)
    down = np.stack([np.asarray(Image.fromarray(im).resize((32, 32), Image.Resampling.BOX)) for im in big])
    down = down.astype(float)
    assert np.abs(small - down).mean() < 8  # the same drawing, only the resolution differs
    other = generate_faces(size=32, seed=1, indices=[4, 5, 6, 7]).astype(float)
    assert np.abs(other - down).mean() > 2 * np.abs(small - down).mean()


def test_faces_are_varied_and_face_like() -> None:
    imgs = generate_faces(64, 48, seed=0).astype(float)
    flat = imgs.reshape(64, -1)
    sq = (flat**2).sum(1)
    rms = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * flat @ flat.T, 0) / flat.shape[1])
    assert rms[~np.eye(64, dtype=bool)].min() > 10  # no two faces alike
    assert imgs.std(axis=(1, 2, 3)).min() > 10  # each image has structure
    # both eyes hold dark pupils: the darkest pixels of the eye band sit left and right of centre
    n_two_sided = 0
    for im in imgs:
        gray = im.mean(-1)
        band = gray[14:26, 8:40]
        thr = np.percentile(band, 3)
        cols = np.nonzero(band <= thr)[1] + 8
        n_two_sided += (cols < 24).any() and (cols >= 24).any()
    assert n_two_sided > 40


def test_dataset_contract_and_indices() -> None:
    ds = SyntheticFaces(10, 16, seed=3, indices=[9, 2])
    assert len(ds) == 2 and ds.names == ["synthetic/000009", "synthetic/000002"]
    x = ds[0]
    assert x.shape == (3, 16, 16) and str(x.dtype) == "torch.uint8"
    full = SyntheticFaces(10, 16, seed=3)
    np.testing.assert_array_equal(ds.uint8(1), full.uint8(2))
    with pytest.raises(UserError, match=r"indices must lie in \[0, 10\)"):
        SyntheticFaces(10, 16, indices=[10])
    with pytest.raises(UserError, match="n \\(number of synthetic faces\\)"):
        SyntheticFaces(0, 16)


def test_grid() -> None:
    grid = face_grid(generate_faces(5, 8, seed=0), cols=3, pad=1)
    assert grid.shape == (2 * 9 + 1, 3 * 9 + 1, 3)


def test_synth_command_writes_pngs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "faces"
    assert cli_main(["synth", "--out", str(out), "--n", "7", "--size", "24", "--seed", "4"]) == 0
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == [f"face_{i:06d}.png" for i in range(7)]
    expected = generate_faces(7, 24, seed=4)
    for f, e in zip(files, expected):
        np.testing.assert_array_equal(np.asarray(Image.open(f)), e)
    assert "wrote 7 faces" in capsys.readouterr().out
    assert cli_main(["synth", "--out", str(out), "--n", "0"]) == 2
    assert "--n must be at least 1" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert cli_main(["synth", "--out", str(tmp_path / "file"), "--n", "2"]) == 2


# ---------------------------------------------------------------------- values out of range
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--size", "100000"], "--size 100000 is too large"),
        (["--seed", "-5"], "--seed must be an integer from 0 to 4294967295; got -5"),
    ],
)
def test_synth_bad_size_or_seed_is_one_error_line(tmp_path, capsys, flags, message):
    assert cli_main(["synth", "--out", str(tmp_path / "o"), "--n", "2", *flags]) == 2
    err = capsys.readouterr().err
    assert f"error: {message}" in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()

"""Helpers shared by the fault tests of several modules: a tiny configuration (about a second an epoch on
a shared CPU core), a folder of synthetic face photos, a finished run of it, and a check that a command
fails the way a user should see it (one ``error:`` line, exit 2, no traceback)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mae_utils.app import cli

from conftest import TINY_MODEL, write_faces

ROOT = Path(__file__).resolve().parents[1]
BAD_NAME = b"face_\xff\xfe.png"  # not valid UTF-8
TINY = dict(TINY_MODEL, batch_size=8, epochs=2, device="cpu", base_lr=1e-3, sample_every=0, augment=False)
TINY_FLAGS = ["--image-size", "32", "--patch-size", "8", "--batch-size", "8", "--epochs", "2", "--embed-dim", "32",
              "--depth", "1", "--num-heads", "2", "--decoder-embed-dim", "32", "--decoder-depth", "1",
              "--decoder-num-heads", "2", "--device", "cpu", "--base-lr", "1e-3", "--sample-every", "0",
              "--no-augment"]  # fmt: skip


def fault_faces(tmp_path_factory) -> Path:
    """24 synthetic 32 px faces as PNG files, one of them with a name that is not valid UTF-8."""
    folder = tmp_path_factory.mktemp("faces") / "faces"
    write_faces(folder, 23, size=32, seed=0, name_of=lambda i, _: f"face_{i:03d}.png")
    (extra,) = write_faces(folder, 1, size=32, seed=1, prefix="extra_")
    os.rename(extra, os.path.join(bytes(folder), BAD_NAME))
    return folder


def train_tiny_run(tmp_path_factory, faces: Path) -> Path:
    """A finished two-epoch run on ``faces`` (cache on, the default); tests copy it before changing it."""
    out = tmp_path_factory.mktemp("run") / "run"
    cache = tmp_path_factory.mktemp("cache")
    assert cli.main(["train", "--data-dir", str(faces), "--out-dir", str(out), "--cache-dir", str(cache),
                     *TINY_FLAGS]) == 0  # fmt: skip
    return out


def copy_run(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(run, target)
    return target


def cli_error(capsys, argv: list[str]) -> str:
    """Run the command line, which must fail with exit 2 and one ``error:`` line (no traceback)."""
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err  # progress bars may come first
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

"""Shared test set-up: the tiny model every training test uses, and folders of face photos.

``TINY_MODEL`` is the one small architecture (32 px images, 8 px patches: 16 patches; a 1-block,
32-wide encoder and decoder) that trains an epoch in about a second on a shared CPU core. Tests that
need other sizes say so where they build them. Import it with ``from conftest import TINY_MODEL``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from mae_utils.config import TrainConfig
from mae_utils.synthetic import face_attributes, generate_faces

TINY_MODEL = dict(
    image_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2,
    decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
)


def write_faces(
    folder: Path,
    n: int = 6,
    size: int = 40,
    seed: int = 77,
    prefix: str = "face_",
    name_of: Callable[[int, dict], str] | None = None,
) -> list[Path]:
    """``n`` synthetic faces saved as PNG files in ``folder`` (created): stand-ins for a user's photos.

    Files are named ``{prefix}{i}.png``, or ``name_of(i, attributes)`` (sub-folders allowed), where
    ``attributes`` is what was drawn for face ``i`` (skin tone, beard, ...): how label tests put a
    face's label in its file name. Returns the paths, in face order.
    """
    images = generate_faces(size=size, seed=seed, indices=np.arange(n), progress=False)
    attributes = face_attributes(seed, range(n)) if name_of else {}
    paths = []
    for i, img in enumerate(images):
        name = name_of(i, {k: v[i] for k, v in attributes.items()}) if name_of else f"{prefix}{i}.png"
        paths.append(folder / name)
        paths[-1].parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(paths[-1])
    return paths


@pytest.fixture
def face_folder(tmp_path: Path) -> Callable[..., Path]:
    """A factory: ``face_folder(name="faces", n=6, size=40, seed=77)`` writes faces into
    tmp_path/name and returns that folder."""

    def make(name: str = "faces", n: int = 6, size: int = 40, seed: int = 77) -> Path:
        write_faces(tmp_path / name, n=n, size=size, seed=seed)
        return tmp_path / name

    return make


@pytest.fixture
def tiny_config(tmp_path: Path) -> Callable[..., TrainConfig]:
    """A factory: ``tiny_config(epochs=2, ...)`` is a CPU :class:`TrainConfig` of :data:`TINY_MODEL`
    on 40 synthetic faces, its run folder in tmp_path/run (``out_dir=`` to change it)."""

    def make(**overrides) -> TrainConfig:
        settings = dict(TINY_MODEL, max_images=40, batch_size=8, epochs=1, device="cpu")
        settings.update(base_lr=1e-3, sample_every=0, out_dir=str(tmp_path / "run"))
        return TrainConfig(**{**settings, **overrides})

    return make


# ---------------------------------------------------------------------- fault tests' shared run
@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """24 synthetic face files, one with a name that is not valid UTF-8 (tiny_runs.fault_faces)."""
    from tiny_runs import fault_faces  # local: tiny_runs imports this module's TINY_MODEL

    return fault_faces(tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, faces) -> Path:
    """A finished two-epoch run on ``faces``; tests copy it before changing it."""
    from tiny_runs import train_tiny_run  # local: tiny_runs imports this module's TINY_MODEL

    return train_tiny_run(tmp_path_factory, faces)

"""Linear probes (``python -m mae_utils probe``): every readout its own row with its width, PCA pixels
at each width, standardisation from the training faces only, the best block chosen on the validation
faces, the honesty check (shuffled labels score at chance), each label source, and the command
line's exit codes. The labels' own tests: ``test_labels.py``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mae_utils import load_model_from_run
from mae_utils.app import cli
from mae_utils.tools import probe, readouts
from mae_utils.tools.probe import ProbeData, ProbeSettings
from mae_utils.train import TrainConfig, fit
from mae_utils.transforms import batch_to_input
from mae_utils.util.errors import UserError

from conftest import write_faces
from tiny_runs import ROOT, subprocess_env

# a 2-block encoder, one quick epoch on 120 synthetic training faces at 32 px (20 validation, 60 test)
SMALL = dict(image_size=32, patch_size=8, max_images=200, val_frac=0.1, test_frac=0.3, batch_size=16,
             epochs=1, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=32, decoder_depth=1,
             decoder_num_heads=2, device="cpu", base_lr=1e-3, seed=3, sample_every=0)
FAST = dict(cv=3, progress=False, batch_size=64)
WIDTH, GRID_WIDTH = 32, 32 * (4 + 16)


def settings(targets, **extra) -> ProbeSettings:
    return ProbeSettings(targets=targets, **{**FAST, **extra})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = str(tmp_path_factory.mktemp("probe") / "run")
    return fit(TrainConfig(**SMALL, out_dir=out), log=lambda _m: None).run_dir


@pytest.fixture(scope="module")
def skin_and_hair(run_dir) -> dict:
    return probe.probe_run(run_dir, settings(["skin_tone", "hair_colour"]))


# ---------------------------------------------------------------------- refused up front
def test_a_label_regex_that_could_hang_is_refused_up_front(run_dir, tmp_path) -> None:
    """([\\d_]+)+ backtracks catastrophically on a long name it almost matches (2**31 ways to split 32
    characters between the two repeats): refused before the model or a face is read, in a subprocess
    that would otherwise not return."""
    faces = tmp_path / "faces"
    write_faces(faces, 4, size=32, seed=11, name_of=lambda i, a: f"{'1234567890' * 3}_{i}.png")
    pattern = r"(?P<x>([\d_]+)+)Q"
    argv = [sys.executable, "-m", "mae_utils", "probe", "--run", str(run_dir), "--data-dir", str(faces),
            "--label-regex", pattern, "--target", "x", "--cache-dir", "off"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=subprocess_env(), cwd=ROOT)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: --label-regex '{pattern}' repeats a part that itself repeats")
    assert "[\\d_]+ instead of" in lines[0]


# ---------------------------------------------------------------------- the readouts
ROW_KINDS = ["mae_mean", "mae_cls", "mae_grid", "mae_block1", "mae_block2", "mae_best_block",
             "random_mean", "pixels", "pixels_grid", "chance"]


def test_every_readout_is_its_own_row_with_its_width(skin_and_hair) -> None:
    result = skin_and_hair
    data = result["data"]
    assert len(data.test_pos) == 60 and len(data.val_pos) == 20
    assert len(data.train_pos) == 119  # of 120: the one 'white'-haired face is left out
    assert any("left out 1 training face(s) of 'hair_colour' classes seen once" in n
               for n in result["notes"])
    for target, rows in result["rows"].items():
        by_kind = {r["kind"]: r for r in rows}
        assert [r["kind"] for r in rows] == ROW_KINDS
        for kind in ("mae_mean", "mae_cls", "mae_block1", "mae_block2", "random_mean", "pixels"):
            assert by_kind[kind]["width"] == WIDTH, (target, kind)
        assert by_kind["mae_grid"]["width"] == GRID_WIDTH
        # PCA pixels at the grid's width, capped by the 119 training faces (rank 118 once centred)
        assert by_kind["pixels_grid"]["width"] == min(GRID_WIDTH, len(data.train_pos) - 1)
        for r in rows:
            assert r["low"] <= r["score"] <= r["high"]
    skin = {r["kind"]: r for r in result["rows"]["skin_tone"]}
    assert skin["pixels"]["high"] < skin["chance"]["low"]  # skin tone is plain in the pixels
    # PCA pixels are not whitened: at a width near the number of training faces they still learn
    assert skin["pixels_grid"]["high"] < skin["chance"]["low"]
    table = result["tables"]["skin_tone"]
    for text in ("MAE encoder, class token", "patch tokens on 2x2 + 4x4 regions",
                 "block 2 of 2", "chosen on validation", "mean abs. error"):
        assert text in table
    assert any("fit on train, choose on val, score on test" in n for n in result["notes"])


def test_the_encoder_sees_the_whole_face(run_dir, skin_and_hair) -> None:
    """The readouts come from every patch with nothing hidden: the mean token equals the model's
    own encoder given an explicit mask that hides no patch."""
    model, _ = load_model_from_run(run_dir, "best", "cpu")
    data = skin_and_hair["data"]
    enc = readouts.encode(model, data.test_set, data.test_pos[:8], progress=False)
    x = batch_to_input(torch.stack([data.test_set[int(i)] for i in data.test_pos[:8]]), "cpu")
    with torch.no_grad():
        latent, mask, _ = model.forward_encoder(x, mask=torch.zeros(8, model.num_patches))
    assert mask.sum() == 0 and latent.shape[1] == 1 + model.num_patches
    assert np.allclose(enc.mean, latent[:, 1:].mean(1).numpy(), atol=1e-5)
    assert np.allclose(enc.cls, latent[:, 0].numpy(), atol=1e-5)


def test_standardisation_uses_the_training_faces_statistics_only(run_dir, skin_and_hair) -> None:
    model, _ = load_model_from_run(run_dir, "best", "cpu")
    data, sets = skin_and_hair["data"], skin_and_hair["sets"]
    raw = {part: readouts.encode(model, ds, pos, progress=False, all_blocks=True)
           for part, (ds, pos) in data.parts().items()}
    for kind, name in (("mae_mean", "mean"), ("mae_grid", "grid"), ("mae_block1", "block1")):
        train = readouts.readout_features(raw["train"])[name].astype(np.float64)
        mean, scale = train.mean(0), np.sqrt(train.var(0) + readouts.STANDARDISE_EPS)
        for part in ("train", "val", "test"):
            expected = (readouts.readout_features(raw[part])[name] - mean) / scale
            assert np.allclose(sets[kind][part], expected, atol=1e-4), (kind, part)
        assert np.allclose(sets[kind]["train"].mean(0), 0, atol=1e-4)
        # the test faces are not re-centred on themselves: their own means stay off zero
        assert np.abs(sets[kind]["test"].mean(0)).max() > 1e-3


def test_standardiser_is_frozen_after_the_training_faces() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(3.0, 2.0, size=(500, 4))
    standardise = readouts.Standardiser.fit(train)
    assert np.allclose(standardise(train).mean(0), 0, atol=1e-6)
    assert np.allclose(standardise(train).std(0), 1, atol=1e-3)
    shifted = standardise(train + 2.0)  # other faces keep their offset in training units
    assert np.allclose(shifted.mean(0), 2.0 / train.std(0), atol=1e-3)
    constant = readouts.Standardiser.fit(np.ones((10, 2)))
    assert np.all(np.isfinite(constant(np.ones((3, 2)))))


def test_grid_pool_averages_regions_row_major() -> None:
    """A 4x4 patch grid, one channel valued by position: the 2x2 regions' means, then the 16
    patches themselves (4x4 regions of one patch)."""
    values = torch.arange(16.0).reshape(1, 16, 1)
    pooled = readouts.grid_pool(values)
    assert pooled.shape == (1, 4 + 16)
    assert pooled[0, :4].tolist() == [2.5, 4.5, 10.5, 12.5]
    assert pooled[0, 4:].tolist() == list(range(16))
    wide = readouts.grid_pool(torch.randn(3, 64, 5))
    assert wide.shape == (3, 5 * 20)


def _toy_data(n: int, rng) -> tuple[ProbeData, dict]:
    """Two 'blocks': block 1 tells the class on the training and validation faces only, block 2
    on the training and test faces only."""
    y = {part: rng.integers(0, 2, n).astype(str) for part in ("train", "val", "test")}
    signal = {part: (y[part] == "1")[:, None] * 3.0 for part in y}
    noise = {part: rng.normal(size=(n, 4)) for part in y}

    def block(informative: tuple[str, ...]) -> dict:
        parts = {p: noise[p] + (signal[p] if p in informative else rng.normal(size=(n, 1)) * 3)
                 for p in y}
        return {"name": "block", "pca": None, "seconds": 0.0, **parts}

    sets = {"mae_block1": block(("train", "val")), "mae_block2": block(("train", "test"))}
    pos = np.arange(n)
    data = ProbeData(None, pos, None, pos, {"t": y["train"]}, {"t": y["test"]}, {"t": "classify"},
                     val_set=None, val_pos=pos, y_val={"t": y["val"]})
    return data, sets


def test_the_best_block_is_chosen_on_validation_never_on_test() -> None:
    data, sets = _toy_data(200, np.random.default_rng(1))
    rows = {r["kind"]: r for r in probe.probe_features(sets, data, "t", settings(["t"]))}
    assert rows["mae_block1"]["val_score"] > 0.9 and rows["mae_block2"]["val_score"] < 0.7
    assert rows["mae_block2"]["score"] > rows["mae_block1"]["score"]  # test would pick block 2
    best = rows["mae_best_block"]
    assert best["block"] == 1 and best["score"] == rows["mae_block1"]["score"]
    assert "best block (1 of 2, chosen on validation)" in best["name"]


def test_the_best_block_of_a_run_is_its_best_validation_score(skin_and_hair) -> None:
    for target, rows in skin_and_hair["rows"].items():
        blocks = [r for r in rows if r["kind"].startswith("mae_block")]
        best = next(r for r in rows if r["kind"] == "mae_best_block")
        sign = 1 if skin_and_hair["data"].tasks[target] == "classify" else -1
        top = max(sign * r["val_score"] for r in blocks)
        assert sign * best["val_score"] == top and best["score"] == blocks[best["block"] - 1]["score"]


def test_readouts_can_be_chosen(run_dir) -> None:
    result = probe.probe_run(run_dir, settings("skin_tone", readouts=["cls", "grid"],
                                               random_weights=False, max_test=30))
    kinds = [r["kind"] for r in result["rows"]["skin_tone"]]
    assert kinds == ["mae_cls", "mae_grid", "pixels", "pixels_grid", "chance"]


# ---------------------------------------------------------------------- probes
def test_a_second_run_gets_its_own_rows(run_dir) -> None:
    result = probe.probe_run(run_dir, settings("skin_tone", second_run=str(run_dir),
                                               readouts=["mean", "cls"], random_weights=False,
                                               pixel_baseline=False, max_test=30))
    rows = {r["kind"]: r for r in result["rows"]["skin_tone"]}
    assert list(rows) == ["mae_mean", "mae_cls", "second_mean", "second_cls", "chance"]
    assert rows["second_mean"]["score"] == pytest.approx(rows["mae_mean"]["score"])  # same run


def test_shuffled_labels_score_at_chance(run_dir, skin_and_hair) -> None:
    """The honesty check: with the training labels shuffled nothing can be learnt, so no probe may
    be clearly better than chance (its whole 95% interval on the better side); a leak between
    training and test faces would show here. Worse than chance is no leak: a wide probe (PCA
    pixels at the grid's width, ~1 number per training face) fits the shuffled noise."""
    result = probe.probe_run(run_dir, settings(["skin_tone", "hair_colour"], shuffle_labels=True))
    for target, rows in result["rows"].items():
        chance = rows[-1]["score"]
        classify = result["data"].tasks[target] == "classify"
        for r in rows[:-1]:
            better = r["low"] > chance if classify else r["high"] < chance
            assert not better, (target, r)
    honest = {r["kind"]: r["score"] for r in skin_and_hair["rows"]["skin_tone"]}
    shuffled = {r["kind"]: r["score"] for r in result["rows"]["skin_tone"]}
    assert honest["pixels"] < 0.8 * shuffled["pixels"]  # the same probe with true labels learns


def test_probe_on_a_foreign_folder_of_class_sub_folders(run_dir, tmp_path) -> None:
    write_faces(tmp_path / "faces", 48, size=32, seed=11,
                name_of=lambda i, a: f"{'dark' if a['skin_tone'] < 2.5 else 'light'}/f{i}.png")
    result = probe.probe_run(run_dir, settings("skin", data_dir=str(tmp_path / "faces"),
                                               cache_dir="off"))
    data = result["data"]
    assert data.tasks == {"skin": "classify"}
    # 25% tested, 15% (of all: 20% of the rest) to choose the best block, the rest to fit
    assert (len(data.train_pos), len(data.val_pos), len(data.test_pos)) == (28, 8, 12)
    assert set(data.y_test["skin"]) == {"dark", "light"}  # stratified
    assert set(data.y_val["skin"]) == {"dark", "light"}
    every = np.concatenate([data.train_pos, data.val_pos, data.test_pos])
    assert len(set(every.tolist())) == 48  # no face in two parts
    assert any("split here: 28 train / 8 validation / 12 test" in n for n in result["notes"])
    assert result["rows"]["skin"][-1]["kind"] == "chance"


def test_no_validation_faces_means_no_best_block_row(run_dir, tmp_path) -> None:
    write_faces(tmp_path / "faces", 40, size=32, seed=11,
                name_of=lambda i, a: f"{'dark' if a['skin_tone'] < 2.5 else 'light'}/f{i}.png")
    result = probe.probe_run(run_dir, settings("skin", data_dir=str(tmp_path / "faces"),
                                               cache_dir="off", val_frac=0.0,
                                               random_weights=False, pixel_baseline=False))
    kinds = [r["kind"] for r in result["rows"]["skin"]]
    assert kinds == ["mae_mean", "mae_cls", "mae_grid", "mae_block1", "mae_block2", "chance"]
    assert any("no best-block row" in n for n in result["notes"])


def test_probe_with_a_label_regex_leaves_out_unmatched_files(run_dir, tmp_path) -> None:
    write_faces(tmp_path / "faces", 40, size=32, seed=11,
                name_of=lambda i, a: f"{i}_{a['beard']}_x.png" if i else "nolabel.png")
    result = probe.probe_run(run_dir, settings("beard", data_dir=str(tmp_path / "faces"),
                                               label_regex=r"^\d+_(?P<beard>\d)_", cache_dir="off",
                                               random_weights=False, readouts=["mean", "cls"]))
    data = result["data"]
    assert len(data.train_pos) + len(data.val_pos) + len(data.test_pos) == 39
    assert any("left out 1 of 40" in n for n in result["notes"])
    assert [r["kind"] for r in result["rows"]["beard"]] == ["mae_mean", "mae_cls", "pixels", "chance"]


def test_a_class_with_one_image_is_refused(run_dir, tmp_path) -> None:
    write_faces(tmp_path / "faces", 10, size=32, seed=11,
                name_of=lambda i, a: f"{'solo' if i == 0 else 'many'}/f{i}.png")
    with pytest.raises(UserError, match="one image \\('solo'\\)"):
        probe.probe_run(run_dir, settings("kind", data_dir=str(tmp_path / "faces"), cache_dir="off"))


@pytest.mark.parametrize(("extra", "message"), [
    (dict(targets=[]), "name at least one target"),
    (dict(readouts=["mean", "pixels"]), "readouts must be one of mean, cls, grid, blocks"),
    (dict(val_frac=0.8), "val_frac must lie in"),
    (dict(cv=1), "cv must be at least 2"),
    (dict(task="guess"), "task must be one of"),
])
def test_settings_are_checked_once_with_the_field_named(extra, message) -> None:
    with pytest.raises(UserError, match=message):
        ProbeSettings(**{"targets": ["beard"], **extra}).validate()


# ---------------------------------------------------------------------- command line
def test_cli_prints_the_table_and_writes_every_row(run_dir, capsys, tmp_path) -> None:
    out_json = tmp_path / "rows.json"
    code = cli.main(["probe", "--run", str(run_dir), "--target", "beard", "--cv", "3",
                     "--max-test", "30", "--readouts", "mean", "grid", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0
    assert "target 'beard': accuracy on 30 test faces" in out and "PCA of pixels" in out
    assert "total wall time" in out
    saved = json.loads(out_json.read_text())
    kinds = [r["kind"] for r in saved["rows"]["beard"]]
    assert kinds == ["mae_mean", "mae_grid", "random_mean", "pixels", "pixels_grid", "chance"]
    assert saved["tasks"] == {"beard": "classify"}


@pytest.mark.parametrize(("extra", "message"), [
    (["--target", "wings"], "no attribute 'wings'"),
    (["--target", "beard", "--label-regex", r"(?P<beard>\d)"], "synthetic faces have attributes"),
    (["--target", "beard", "--cv", "1"], "cv must be at least 2"),
    (["--target", "beard", "--max-train", "1"], "max_train must be at least 2"),
])
def test_cli_bad_input_exits_2_with_one_line(run_dir, capsys, extra, message) -> None:
    assert cli.main(["probe", "--run", str(run_dir), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_cli_missing_run_exits_2(tmp_path, capsys) -> None:
    assert cli.main(["probe", "--run", str(tmp_path / "nope"), "--target", "beard"]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------------- maps and neighbours
def test_maps_and_nearest_neighbours() -> None:
    from mae_utils import viz
    from mae_utils.tools import feature_space

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 8))
    x[10] = x[3] * 2.0 + 0.01 * rng.normal(size=8)  # a near copy (scaled): its nearest neighbour
    nn = feature_space.nearest_neighbours(x, [3, 10], k=3)
    assert nn.shape == (2, 3) and nn[0, 0] == 10 and nn[1, 0] == 3 and 3 not in nn[0]
    for method in ("pca", "tsne"):
        assert feature_space.map_2d(x, method).shape == (30, 2)
    with pytest.raises(UserError, match="map method"):
        feature_space.map_2d(x, "umap")
    faces = rng.integers(0, 255, (30, 16, 16, 3), dtype=np.uint8)
    coords = {"PCA": feature_space.map_2d(x, "pca")}
    for values in (np.array(["a", "b", "c"] * 10), rng.random(30)):
        fig = viz.feature_map_figure(coords, values, "label", faces, n_thumbnails=5)
        assert len(fig.axes) == 1
    fig = viz.neighbours_figure(faces, [3, 10], {"features": nn, "pixels": nn})
    assert len(fig.axes) == 2 * (1 + 2 * (1 + 3))


def test_sigterm_during_a_probe_says_what_happened(run_dir) -> None:
    """Stopped by SIGTERM while the features are computed: exit 130 as train, and one line saying so
    and how to go on (a probe writes nothing, so: again)."""
    script = (
        "import os, signal, sys\n"
        "from mae_utils.app import cli\n"
        "from mae_utils.tools import probe\n"
        "def stopped_here(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "probe.feature_sets = stopped_here\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, "probe", "--run", str(run_dir), "--target", "beard"],
                          cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 130 and "Traceback" not in done.stderr, (done.returncode, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    assert last == "stopped (SIGTERM); a probe writes nothing: run the same command again"

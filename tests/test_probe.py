"""Linear probes (``python -m mae_utils probe``): each label source, the bad-label errors, the honesty
check (shuffled labels score at chance), the table's baselines, and the command line's exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mae_utils.synthetic import ATTRIBUTES, face_attributes, generate_faces
from mae_utils.tools import probe
from mae_utils.tools.labels import decide_task, folder_labels, nested_repeat, regex_labels, synthetic_labels
from mae_utils.train import TrainConfig, fit
from mae_utils.app import cli
from mae_utils.util.errors import UserError

from tiny_runs import ROOT, subprocess_env

# a 1-block encoder, one quick epoch on 120 synthetic training faces at 32 px (60 held out)
SMALL = dict(image_size=32, patch_size=8, max_images=200, val_frac=0.1, test_frac=0.3, batch_size=16, epochs=1,
             embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
             device="cpu", base_lr=1e-3, seed=3, sample_every=0)  # fmt: skip
FAST = dict(cv=3, progress=False, batch_size=64)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return fit(TrainConfig(**SMALL, out_dir=str(tmp_path_factory.mktemp("probe") / "run")), log=lambda _m: None).run_dir


def _write_faces(root: Path, n: int, name_of) -> None:
    """Synthetic faces (seed 11) saved as PNGs under ``root / name_of(i, attributes)``."""
    attrs = face_attributes(11, range(n))
    for i, img in enumerate(generate_faces(n, 32, seed=11)):
        path = root / name_of(i, {k: v[i] for k, v in attrs.items()})
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)


# ---------------------------------------------------------------------- label sources
def test_synthetic_attributes_are_fixed_per_face_and_typed() -> None:
    a = face_attributes(4, range(30))
    b = face_attributes(4, [7, 3])
    assert set(a) == set(ATTRIBUTES)
    for name, (kind, _) in ATTRIBUTES.items():
        assert len(a[name]) == 30 and list(b[name]) == [a[name][7], a[name][3]]
        assert a[name].dtype.kind == ("f" if kind == "number" else "U")
    assert set(a["glasses"]) <= {"0", "1"} and len(set(a["hair_colour"])) > 2
    # a beard is drawn with a moustache, so every bearded face has one
    assert all(m == "1" for m, bd in zip(a["moustache"], a["beard"]) if bd == "1")
    labels = synthetic_labels(4, range(30), "skin_tone")
    assert labels.task == "regress" and np.allclose(labels.values, a["skin_tone"], atol=1e-5)


@pytest.mark.parametrize(("values", "task"), [
    (["0", "1", "1"], "classify"), ([str(a) for a in range(1, 60)], "regress"),
    ([f"{p:02d}" for p in range(1, 40)], "classify"), (["cat", "dog"], "classify"), (["0", "1", "4"], "classify"),
])  # fmt: skip
def test_auto_task(values, task) -> None:
    assert decide_task(values)[0] == task


def test_regressing_names_is_refused() -> None:
    with pytest.raises(UserError, match="needs numbers.*'cat'"):
        decide_task(["cat", "dog"], "regress")


def test_folder_labels_and_their_errors() -> None:
    labels = folder_labels(["a/1.png", "a/2.png", "b/3.png", "b/x/4.png", "loose.png"], "DIR")
    assert labels.values.tolist() == ["a", "a", "b", "b"] and labels.keep.tolist() == [0, 1, 2, 3]
    assert any("left out 1" in n for n in labels.notes)
    with pytest.raises(UserError, match="DIR has no labels.*--label-regex"):
        folder_labels(["1.png", "2.png"], "DIR")
    with pytest.raises(UserError, match=r"1 class\(es\) with one image \('b'\)"):
        folder_labels(["a/1.png", "a/2.png", "b/3.png"], "DIR")
    with pytest.raises(UserError, match="single class"):
        folder_labels(["a/1.png", "a/2.png"], "DIR")


UTK = r"^(?P<age>\d+)_(?P<gender>\d)_(?P<race>\d)_"


def test_regex_labels_read_utkface_and_yale_names() -> None:
    names = ["sub/25_0_1_2017.jpg.chip.jpg", "3_1_0_2016.jpg", "61_1_20170109.jpg", "40_0_4_x.jpg", "8_1_1_y.jpg",
             "70_0_2_z.jpg", "33_1_3_w.jpg", "5_0_1_v.jpg"]  # fmt: skip
    gender = regex_labels(names, UTK, "gender", "utk")
    assert gender.task == "classify" and gender.values.tolist() == ["0", "1", "0", "1", "0", "1", "0"]
    assert gender.keep.tolist() == [0, 1, 3, 4, 5, 6, 7] and any("left out 1 of 8" in n for n in gender.notes)
    age = regex_labels(names, UTK, "age", "utk", task="regress")
    assert age.values.tolist() == [25.0, 3.0, 40.0, 8.0, 70.0, 33.0, 5.0]
    yale = regex_labels([f"yaleB{p:02d}_P00A+0{k}.png" for p in (1, 2, 11, 39) for k in range(2)],
                        r"yaleB(?P<person>\d\d)_", None, "yale")  # fmt: skip
    assert yale.target == "person" and yale.task == "classify" and sorted(set(yale.values)) == ["01", "02", "11", "39"]


@pytest.mark.parametrize(("pattern", "target", "message"), [
    (r"^(?P<age>\d+)_", "gender", "not a named group.*its groups: age"),
    (r"^(?P<age>\d+)_(?P<g>\d)_", None, "several named groups"),
    (r"^(\d+)_", None, "no named group"),
    (r"^(?P<age>\d+", "age", "not a valid regular expression"),
    (r"^zzz(?P<age>\d+)", "age", "matches none of the 3 file names"),
])  # fmt: skip
def test_bad_patterns_are_named(pattern, target, message) -> None:
    with pytest.raises(UserError, match=message):
        regex_labels(["1_0_a.png", "2_1_b.png", "3_0_c.png"], pattern, target, "DIR")


def test_patterns_are_shown_as_typed() -> None:
    names = ["1_0_a.png", "2_1_b.png", "3_0_c.png", "4_1_d.png"]
    pattern = r"^\d+_(?P<g>\d)_"
    note = regex_labels(names, pattern, None, "DIR", check=False).notes[0]
    assert f"group 'g' of '{pattern}' in" in note and "\\\\" not in note
    for bad in (r"^zzz(?P<g>\d)", r"^(\d)_"):
        with pytest.raises(UserError) as raised:
            regex_labels(names, bad, None, "DIR")
        assert f"--label-regex '{bad}'" in str(raised.value)


@pytest.mark.parametrize(("pattern", "nested"), [
    (r"(?P<x>([\d_]+)+)Q", True), (r"(a*)*", True), (r"(?:x|(a+))*", True), (r"(a{1,3})+", True),
    (r"^(?P<age>\d+)_(?P<gender>\d)_", False), (r"yaleB(?P<person>\d\d)_", False), (r"(\d{2}_)+", False),
    (r"(?P<x>a)+", False),
])
def test_nested_repeats_are_found(pattern, nested) -> None:
    assert nested_repeat(pattern) is nested


def test_a_label_regex_that_could_hang_is_refused_up_front(run_dir, tmp_path) -> None:
    """([\\d_]+)+ backtracks catastrophically on a long name it almost matches (2**31 ways to split 32
    characters between the two repeats): refused before the model or a face is read, in a subprocess
    that would otherwise not return."""
    faces = tmp_path / "faces"
    _write_faces(faces, 4, lambda i, a: f"{'1234567890' * 3}_{i}.png")
    pattern = r"(?P<x>([\d_]+)+)Q"
    argv = [sys.executable, "-m", "mae_utils", "probe", "--run", str(run_dir), "--data-dir", str(faces),
            "--label-regex", pattern, "--target", "x", "--cache-dir", "off"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=subprocess_env(), cwd=ROOT)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: --label-regex '{pattern}' repeats a part that itself repeats")
    assert "[\\d_]+ instead of" in lines[0]


# ---------------------------------------------------------------------- probes
def test_probe_table_on_synthetic_attributes(run_dir) -> None:
    result = probe.probe_run(run_dir, ["skin_tone", "hair_colour"], **FAST)
    assert set(result["tables"]) == {"skin_tone", "hair_colour"}
    data = result["data"]
    assert len(data.test_pos) == 60 and len(data.train_pos) == 119  # of 120: the one 'white'-haired face ...
    assert any("left out 1 training face(s) of 'hair_colour' classes seen once" in n for n in result["notes"])
    for target, rows in result["rows"].items():
        kinds = [r["kind"] for r in rows]
        assert kinds == ["mae_mean", "mae_cls", "random_mean", "pixels", "chance"]
        assert {r["width"] for r in rows if r["kind"] != "chance"} == {32}  # PCA at the encoder's width
        for r in rows:
            assert r["low"] <= r["score"] <= r["high"]
    skin = {r["kind"]: r for r in result["rows"]["skin_tone"]}
    assert skin["pixels"]["high"] < skin["chance"]["low"]  # skin tone is plain in the pixels: the probe sees it
    assert "MAE encoder, class token" in result["tables"]["skin_tone"] and "mean abs. error" in result["tables"]["skin_tone"]
    assert any("fit on train, score on test" in n for n in result["notes"])


def test_a_second_run_gets_its_own_rows(run_dir) -> None:
    result = probe.probe_run(run_dir, "skin_tone", second_run=run_dir, random_weights=False, pixel_baseline=False,
                             max_test=30, **FAST)  # fmt: skip
    rows = {r["kind"]: r for r in result["rows"]["skin_tone"]}
    assert list(rows) == ["mae_mean", "mae_cls", "second_mean", "second_cls", "chance"]
    assert rows["second_mean"]["score"] == pytest.approx(rows["mae_mean"]["score"])  # the same run twice


def test_shuffled_labels_score_at_chance(run_dir) -> None:
    """The honesty check: with the training labels shuffled nothing can be learnt, so every probe must
    land at chance (within its 95% interval); a leak between training and test faces would show here."""
    result = probe.probe_run(run_dir, ["skin_tone", "hair_colour"], shuffle_labels=True, **FAST)
    for target, rows in result["rows"].items():
        chance = rows[-1]["score"]
        for r in rows[:-1]:
            assert r["low"] <= chance <= r["high"] or abs(r["score"] - chance) < 0.05 * max(chance, 1), (target, r)
    honest = {r["kind"]: r["score"] for r in probe.probe_run(run_dir, "skin_tone", **FAST)["rows"]["skin_tone"]}
    shuffled = {r["kind"]: r["score"] for r in result["rows"]["skin_tone"]}
    assert honest["pixels"] < 0.8 * shuffled["pixels"]  # the same probe with true labels does learn


def test_probe_on_a_foreign_folder_of_class_sub_folders(run_dir, tmp_path) -> None:
    _write_faces(tmp_path / "faces", 48, lambda i, a: f"{'dark' if a['skin_tone'] < 2.5 else 'light'}/f{i}.png")
    result = probe.probe_run(run_dir, "skin", data_dir=tmp_path / "faces", cache_dir="off", **FAST)
    data = result["data"]
    assert data.tasks == {"skin": "classify"} and len(data.test_pos) == 12 and len(data.train_pos) == 36
    assert set(data.y_test["skin"]) == {"dark", "light"}  # stratified
    assert any("split here" in n for n in result["notes"])
    assert result["rows"]["skin"][-1]["kind"] == "chance"


def test_probe_with_a_label_regex_leaves_out_unmatched_files(run_dir, tmp_path) -> None:
    _write_faces(tmp_path / "faces", 40, lambda i, a: f"{i}_{a['beard']}_x.png" if i else "nolabel.png")
    result = probe.probe_run(run_dir, "beard", data_dir=tmp_path / "faces", label_regex=r"^\d+_(?P<beard>\d)_",
                             cache_dir="off", random_weights=False, **FAST)  # fmt: skip
    data = result["data"]
    assert len(data.train_pos) + len(data.test_pos) == 39
    assert any("left out 1 of 40" in n for n in result["notes"])
    assert [r["kind"] for r in result["rows"]["beard"]] == ["mae_mean", "mae_cls", "pixels", "chance"]


def test_a_class_with_one_image_is_refused(run_dir, tmp_path) -> None:
    _write_faces(tmp_path / "faces", 10, lambda i, a: f"{'solo' if i == 0 else 'many'}/f{i}.png")
    with pytest.raises(UserError, match="one image \\('solo'\\)"):
        probe.probe_run(run_dir, "kind", data_dir=tmp_path / "faces", cache_dir="off", **FAST)


# ---------------------------------------------------------------------- command line
def test_cli_prints_the_table(run_dir, capsys) -> None:
    code = cli.main(["probe", "--run", str(run_dir), "--target", "beard", "--cv", "3", "--max-test", "30"])
    out = capsys.readouterr().out
    assert code == 0
    assert "target 'beard': accuracy on 30 test faces" in out and "PCA of pixels" in out and "total wall time" in out


@pytest.mark.parametrize(("extra", "message"), [
    (["--target", "wings"], "no attribute 'wings'"),
    (["--target", "beard", "--label-regex", r"(?P<beard>\d)"], "synthetic faces have attributes"),
    (["--target", "beard", "--cv", "1"], "--cv must be at least 2"),
    (["--target", "beard", "--max-train", "1"], "max_train must be at least 2"),
])  # fmt: skip
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

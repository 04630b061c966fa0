"""Training on several photo folders at once: the union, each folder's own split, resume, evaluation
per folder, and the mistakes a user can make naming the folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch

from mae_utils.config import TrainConfig
from mae_utils.data import FaceFolder
from mae_utils.pretrained import load_model_from_run
from mae_utils.splits import TrainItems, prepare_data
from mae_utils.train import fit
from mae_utils.app import cli
from mae_utils.app.notebook_params import check_parameters
from mae_utils.tools.evaluate import EvalSettings, evaluate_each_folder
from mae_utils.util.errors import UserError

from tiny_runs import TINY, TINY_FLAGS, cli_error, copy_run, write_faces


def _quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Three folders of tiny faces, of different sizes and with clashing file names."""
    root = tmp_path_factory.mktemp("folders")
    sizes = {"utk": (12, 1), "lfw": (8, 2), "yale": (10, 3)}
    for name, (n, seed) in sizes.items():
        write_faces(root / name, n, seed=seed)
    return {name: root / name for name in sizes}


def _split(data_dir, tmp_path: Path, name: str):
    return prepare_data(data_dir, 32, split_path=tmp_path / name / "split.json", cache_dir=False,
                        log=_quiet)


def test_the_union_holds_every_folders_split(folders, tmp_path):
    splits = _split([str(folders["utk"]), str(folders["lfw"])], tmp_path, "two")
    assert len(splits.train) + len(splits.val) + len(splits.test) == 12 + 8
    assert sorted(splits.folders) == ["lfw", "utk"]
    for part in ("train", "val", "test"):
        expected = [f"{name}/{f}" for name in ("utk", "lfw") for f in splits.folders[name].split[part]]
        assert splits.split[part] == expected
    # the union's items are the folders' images, folder after folder
    lfw_test = splits.folders["lfw"].test
    assert np.array_equal(splits.test.uint8(len(splits.test) - 1), lfw_test.uint8(len(lfw_test) - 1))
    alone = FaceFolder(folders["lfw"], 32, cache_dir=False, progress=False)
    first = splits.folders["lfw"].train.rel_files[0]
    k = len(splits.folders["utk"].train)
    assert np.array_equal(splits.train.uint8(k), alone.uint8(alone.rel_files.index(first)))


def test_each_folder_is_split_as_it_would_be_alone(folders, tmp_path):
    alone = _split(str(folders["utk"]), tmp_path, "alone").split
    two = _split([str(folders["utk"]), str(folders["lfw"])], tmp_path, "two").folders["utk"].split
    three = _split([str(folders["lfw"]), str(folders["yale"]), str(folders["utk"])], tmp_path, "three")
    assert two == alone and three.folders["utk"].split == alone
    record = json.loads((tmp_path / "three" / "split.json").read_text())
    assert list(record["folders"]) == ["lfw", "yale", "utk"]
    assert record["folders"]["utk"]["root"] == str(folders["utk"])
    assert {k: record["folders"]["utk"][k] for k in ("train", "val", "test")} == alone


def test_a_list_of_one_folder_is_that_folder(folders, tmp_path):
    assert TrainConfig(data_dir=[str(folders["utk"])]).data_dir == str(folders["utk"])
    out = tmp_path / "one"
    assert cli.main(["train", "--data-dir", str(folders["utk"]), "--out-dir", str(out), "--cache-dir",
                     "off", *TINY_FLAGS, "--epochs", "1"]) == 0
    assert json.loads((out / "config.json").read_text())["data_dir"] == str(folders["utk"])
    assert "folders" not in json.loads((out / "split.json").read_text())


def test_a_notebook_parameter_may_list_folders(folders):
    before = {"__name__"}
    names = [str(folders["utk"]), str(folders["lfw"])]
    ns = {"__name__": "x", "__annotations__": {"data_dir": Optional[str | list[str]]}, "data_dir": names}
    assert check_parameters(ns, before)["data_dir"] == names
    ns = {"__name__": "x", "__annotations__": {"data_dir": Optional[str | list[str]]}, "data_dir": names[0]}
    assert check_parameters(ns, before)["data_dir"] == names[0]
    ns = {"__name__": "x", "__annotations__": {"data_dir": Optional[str | list[str]]}, "data_dir": [1, 2]}
    with pytest.raises(UserError, match="data_dir must be a folder, a list of folders or none"):
        TrainConfig(**check_parameters(ns, before)).validate()


def test_dry_run_lists_each_folder_with_its_counts(folders, tmp_path, capsys):
    argv = ["train", "--data-dir", str(folders["utk"]), str(folders["lfw"]), "--out-dir",
            str(tmp_path / "run"), "--dry-run", *TINY_FLAGS]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"utk: 12 of 12 image files in {folders['utk']}: 10 train / 1 val / 1 test" in out
    assert f"lfw: 8 of 8 image files in {folders['lfw']}: 6 train / 1 val / 1 test" in out
    assert "together: 16 train / 2 val / 2 test" in out
    assert not (tmp_path / "run").exists()


def test_a_several_folder_run_resumes_exactly(folders, tmp_path, monkeypatch):
    settings = dict(TINY, epochs=3, cache_dir=str(tmp_path / "cache"),
                    data_dir=[str(folders["utk"]), str(folders["lfw"])])
    whole = fit(TrainConfig(**settings, out_dir=str(tmp_path / "whole")))
    real_item = TrainItems.__getitem__

    def crash_in_third_epoch(items, i):
        if items.epoch == 2:
            raise KeyboardInterrupt("simulated crash")
        return real_item(items, i)

    config = TrainConfig(**settings, out_dir=str(tmp_path / "cut"))
    monkeypatch.setattr(TrainItems, "__getitem__", crash_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        fit(config)
    monkeypatch.undo()
    split_before = (tmp_path / "cut" / "split.json").read_text()
    resumed = fit(config, resume=True)
    assert (tmp_path / "cut" / "split.json").read_text() == split_before
    a = load_model_from_run(whole.run_dir, "last", "cpu")[0].state_dict()
    b = load_model_from_run(resumed.run_dir, "last", "cpu")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "cut" / "config.json").read_text())["data_dir"] == settings["data_dir"]


@pytest.fixture(scope="module")
def two_folder_run(tmp_path_factory, folders) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    assert cli.main(["train", "--data-dir", str(folders["utk"]), str(folders["lfw"]), "--out-dir",
                     str(out), "--cache-dir", str(tmp_path_factory.mktemp("cache")), *TINY_FLAGS]) == 0
    return out


def test_evaluate_scores_each_folder_and_the_union(two_folder_run, tmp_path, capsys):
    run = copy_run(two_folder_run, tmp_path)
    assert cli.main(["evaluate", "--run", str(run), "--device", "cpu", "--baselines", "mean_fill"]) == 0
    out = capsys.readouterr().out
    record = json.loads((run / "split.json").read_text())["folders"]
    results = {p.stem: json.loads(p.read_text()) for p in (run / "eval").glob("*.json")}
    assert sorted(results) == ["test-lfw_random75_best", "test-utk_random75_best", "test_random75_best"]
    for name in ("utk", "lfw"):
        scored = results[f"test-{name}_random75_best"]
        assert scored["names"] == record[name]["test"] and scored["data"]["folder"] == name
        assert f"test images of {record[name]['root']}," in out
    union = results["test_random75_best"]
    assert union["names"] == [f"{n}/{f}" for n in ("utk", "lfw") for f in record[n]["test"]]
    assert union["data"]["n_images"] == len(record["utk"]["test"]) + len(record["lfw"]["test"])


def test_evaluate_one_of_the_runs_folders_scores_its_held_out_faces(two_folder_run, folders):
    settings = EvalSettings(data_dir=folders["lfw"], split="val", device="cpu", baselines=["mean_fill"])
    results = evaluate_each_folder(two_folder_run, settings, write=False, progress=False)
    record = json.loads((two_folder_run / "split.json").read_text())["folders"]
    assert len(results) == 1 and results[0].names == record["lfw"]["val"]


def test_evaluate_another_folder_scores_all_of_it(two_folder_run, folders):
    settings = EvalSettings(data_dir=folders["yale"], device="cpu", baselines=["mean_fill"])
    results = evaluate_each_folder(two_folder_run, settings, write=False, progress=False)
    assert len(results) == 1 and results[0].n_images == 10 and results[0].data["split"] == "all"


def test_resuming_with_other_folders_is_refused(folders, tmp_path):
    _split([str(folders["utk"]), str(folders["lfw"])], tmp_path, "two")
    with pytest.raises(UserError, match="records the folders utk, lfw, but data_dir names utk, yale"):
        _split([str(folders["utk"]), str(folders["yale"])], tmp_path, "two")
    with pytest.raises(UserError, match="records the split of several folders"):
        _split(str(folders["utk"]), tmp_path, "two")


def test_folders_with_the_same_name_are_told_apart(tmp_path):
    a, b = tmp_path / "a" / "faces", tmp_path / "b" / "faces"
    write_faces(a, 6, seed=1)
    write_faces(b, 6, seed=2)
    splits = _split([str(a), str(b)], tmp_path, "same")
    assert list(splits.folders) == ["faces", "faces-2"]


def test_naming_folders_wrongly_is_one_error_naming_the_folder(folders, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    inner = folders["utk"].parent / "outer" / "inner"
    write_faces(inner, 4)
    utk, lfw = str(folders["utk"]), str(folders["lfw"])
    cases = {
        "twice": ([utk, lfw, utk + "/"], f"data_dir: {utk} is given twice"),
        "inside": ([str(inner.parent), str(inner)], f"data_dir: {inner} lies inside {inner.parent}"),
        "missing": ([utk, str(tmp_path / "nope")], f"data_dir: {tmp_path / 'nope'} does not exist"),
        "empty": ([utk, str(empty)], f"no image files in {empty}"),
    }
    for case, (dirs, message) in cases.items():
        error = cli_error(capsys, ["train", "--data-dir", *dirs, "--out-dir", str(tmp_path / f"run-{case}"),
                                   *TINY_FLAGS])
        assert message in error, (case, error)
        assert not (tmp_path / f"run-{case}").exists()

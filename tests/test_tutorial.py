"""The notebooks' glue: which model a notebook uses when its ``run_dir`` holds none (never another model
in silence when the user named a run), and the shared quick model when two notebooks need it at once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from mae_utils.app import tutorial
from mae_utils.util.errors import UserError
from mae_utils.util.fileio import host_name
from mae_utils.util.rundir import LOCK_FILE

from tiny_runs import fault_faces, train_tiny_run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory, fault_faces(tmp_path_factory))


@pytest.fixture
def workdir(tmp_path, tiny_run, monkeypatch):
    """A working directory whose runs/quick already holds a model (so nothing trains for a minute)."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_run, tmp_path / tutorial.QUICK_RUN_DIR)
    return tmp_path


def test_the_default_run_dir_falls_back_to_the_quick_model(workdir, capsys):
    assert tutorial.ensure_run(tutorial.NOTEBOOK_RUN_DIR).resolve() == workdir / tutorial.QUICK_RUN_DIR
    assert "using the quick model" in capsys.readouterr().out


def test_a_misspelt_run_dir_is_an_error_not_the_quick_model(workdir, tiny_run):
    shutil.copytree(tiny_run, workdir / "runs" / "notebook")
    with pytest.raises(UserError, match=r"run_dir runs/notebok does not exist \(did you mean runs/notebook\?\)"):
        tutorial.ensure_run("runs/notebok")
    (workdir / "runs" / "empty").mkdir()
    with pytest.raises(UserError, match=r"run_dir runs/empty holds no trained model"):
        tutorial.ensure_run("runs/empty")


def test_a_run_holding_only_last_says_so(workdir, tiny_run):
    run = workdir / "runs" / "mine"
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / "checkpoints" / "best")
    with pytest.raises(UserError, match=r"holds no best checkpoint, only last: set checkpoint = 'last'"):
        tutorial.ensure_run(run)
    assert tutorial.ensure_run(run, "last") == run


def test_a_notebook_waits_for_the_one_training_the_quick_model(tmp_path, tiny_run, monkeypatch, capsys):
    """Two notebooks started together: the second waits on the first's lock, then uses its model."""
    monkeypatch.chdir(tmp_path)
    quick = tmp_path / tutorial.QUICK_RUN_DIR
    quick.mkdir(parents=True)
    trainer = subprocess.Popen(["sleep", "60"])  # stands in for the first notebook's training process
    try:
        (quick / LOCK_FILE).write_text(json.dumps({"pid": trainer.pid, "host": host_name(), "started": "now"}))

        def finish():  # the first notebook's run ends: its model saved, its lock released
            time.sleep(1.5)
            shutil.copytree(tiny_run, quick, dirs_exist_ok=True)
            (quick / LOCK_FILE).unlink()

        threading.Thread(target=finish, daemon=True).start()
        assert tutorial.ensure_run(tutorial.NOTEBOOK_RUN_DIR).resolve() == quick
    finally:
        trainer.kill()
        trainer.wait()
    out = capsys.readouterr().out
    assert f"process {trainer.pid}" in out and "waiting for it" in out and "the other process trained" in out
    assert os.listdir(quick / "checkpoints")  # its model, untouched

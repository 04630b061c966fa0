"""The run folder (mae_utils.util.rundir): one run per folder (a lock), --overwrite that loses nothing,
killed saves and failed starts that leave nothing behind, out_dir that cannot be used."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mae_utils.train import TrainConfig, fit
from mae_utils.util import checkpoint as ckpt
from mae_utils.app import cli
from mae_utils.util.errors import UserError
from mae_utils.util.rundir import LOCK_FILE, REFINER_DIR, REPLACED_DIR

from tiny_runs import ROOT, TINY, TINY_FLAGS, cli_error, copy_run, subprocess_env, write_faces
# ---------------------------------------------------------------------- faults
@pytest.mark.slow
def test_two_trains_racing_for_one_out_dir(tmp_path, faces):
    out = tmp_path / "run"
    base = [sys.executable, "-m", "mae_utils", "train", "--data-dir", str(faces), "--out-dir", str(out),
            "--cache-dir", "off", *TINY_FLAGS]  # fmt: skip
    procs = [subprocess.Popen([*base, "--seed", str(seed)], cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for seed in (1, 2)]  # fmt: skip
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "error: out_dir" in loser and ("in use by another run" in loser or "already holds a run" in loser), loser
    # the folder is the winner's alone: its config, split and checkpoints agree, and evaluate runs
    seed = json.loads((out / "config.json").read_text())["seed"]
    state = ckpt.load_state(out / "checkpoints" / "best")
    assert state["config"]["seed"] == seed
    assert json.loads((out / "split.json").read_text())["run_id"] == state["run_id"]
    assert not (out / LOCK_FILE).exists()
    assert cli.main(["evaluate", "--run", str(out), "--baselines", "mean_fill"]) == 0


def test_a_live_lock_refuses_and_a_dead_ones_is_reported(tmp_path, faces, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "started": "now"}))
    err = cli_error(capsys, ["train", "--data-dir", str(faces), "--out-dir", str(out), *TINY_FLAGS])
    assert f"in use by another run (process {os.getpid()}" in err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing written, the owner's lock kept
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "started": "then"}))
    assert cli.main(["train", "--data-dir", str(faces), "--out-dir", str(out), "--cache-dir", "off", *TINY_FLAGS,
                     "--epochs", "1"]) == 0  # fmt: skip
    assert f"removed a stale lock: process {dead.pid}" in (out / "log.txt").read_text()
    assert not (out / LOCK_FILE).exists()


def test_overwrite_deletes_nothing_until_the_new_run_has_saved(tmp_path, tiny_run, faces):
    run = copy_run(tiny_run, tmp_path)
    before = ckpt.load_state(run / "checkpoints" / "best")["run_id"]
    (run / REFINER_DIR).mkdir()  # a seam refiner trained on the old weights
    (run / REFINER_DIR / "weights.safetensors").write_bytes(b"old refiner")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"not an image")
    cfg = TrainConfig(**TINY, data_dir=str(junk), out_dir=str(run), cache_dir="off")
    with pytest.raises(UserError, match="no usable images"):
        fit(cfg, overwrite=True)
    assert ckpt.load_state(run / "checkpoints" / "best")["run_id"] == before  # the old run is whole
    assert json.loads((run / "config.json").read_text())["run_id"] == before
    assert (run / REFINER_DIR / "weights.safetensors").read_bytes() == b"old refiner"  # its refiner too
    assert not (run / REPLACED_DIR).exists() and not (run / LOCK_FILE).exists()
    # a good new run replaces it, and says so once its first checkpoint is saved
    result = fit(TrainConfig(**{**TINY, "epochs": 1}, data_dir=str(faces), out_dir=str(run), cache_dir="off"),
                 overwrite=True)  # fmt: skip
    assert ckpt.load_state(run / "checkpoints" / "last")["run_id"] != before
    log = (run / "log.txt").read_text()
    assert "moved the previous run's" in log and "deleted the previous run" in log
    assert not (run / REPLACED_DIR).exists() and result.metrics["epoch"] == 1
    assert not (run / REFINER_DIR).exists()  # replaced with the weights it was trained on, not left stale


def _killed_overwrite(run: Path) -> None:
    """What a kill -9 after --overwrite's move-aside leaves: the old run in .replaced, the new one's first files."""
    aside = run / REPLACED_DIR
    aside.mkdir()
    for name in ("config.json", "split.json", "metrics.jsonl", "log.txt", "checkpoints", "eval"):
        if (run / name).exists():
            os.replace(run / name, aside / name)
    (run / "log.txt").write_text("the new run's first lines\n")
    (run / "split.json").write_text("{}")


def test_overwrite_killed_before_the_first_checkpoint_gives_the_old_run_back(tmp_path, tiny_run, faces, capsys):
    run = copy_run(tiny_run, tmp_path)
    before = ckpt.load_state(run / "checkpoints" / "best")["run_id"]
    old_log = (run / "log.txt").read_text()
    _killed_overwrite(run)
    err = cli_error(capsys, ["train", "--data-dir", str(faces), "--out-dir", str(run), *TINY_FLAGS])
    assert "already holds a run" in err  # the next start found the old run back in place
    assert (run / "log.txt").read_text() == old_log and not (run / REPLACED_DIR).exists()
    assert ckpt.load_state(run / "checkpoints" / "best")["run_id"] == before
    _killed_overwrite(run)  # the same, then straight to --resume
    assert cli.main(["train", "--resume", str(run), "--epochs", "3"]) == 0
    assert ckpt.load_state(run / "checkpoints" / "last")["run_id"] == before
    assert ckpt.load_state(run / "checkpoints" / "last")["epoch"] == 3


_KILLED_DURING_FIRST_SAVE = textwrap.dedent(
    """
    import os, signal, sys, tempfile
    from mae_utils.app import cli
    from mae_utils.util import checkpoint

    def dying_save(ckpt_dir, *args, **kwargs):
        ckpt_dir.parent.mkdir(parents=True, exist_ok=True)
        tempfile.mkdtemp(prefix=f".{ckpt_dir.name}.tmp-", dir=ckpt_dir.parent)  # begun, never finished
        os.kill(os.getpid(), signal.SIGKILL)

    checkpoint.save_checkpoint = dying_save
    sys.exit(cli.main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_killed_during_the_first_save_restarts_or_resumes_without_overwrite(tmp_path, faces):
    out = tmp_path / "run"
    argv = ["train", "--data-dir", str(faces), "--out-dir", str(out), "--cache-dir", "off", *TINY_FLAGS]
    killed = subprocess.run([sys.executable, "-c", _KILLED_DURING_FIRST_SAVE, *argv], cwd=ROOT,
                            env=subprocess_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -9
    assert list((out / "checkpoints").glob(".*.tmp-*")) and (out / LOCK_FILE).exists()
    copy = copy_run(out, tmp_path, "copy")
    # a fresh start: the dead attempt's files and its stale lock go, no --overwrite needed
    assert cli.main(argv) == 0
    log = (out / "log.txt").read_text()
    assert "removed a stale lock" in log and "never saved a checkpoint" in log
    assert not list((out / "checkpoints").glob(".*.tmp-*"))
    # --resume of the same state starts it from epoch 0 with its saved settings
    assert cli.main(["train", "--resume", str(copy)]) == 0
    assert "has no checkpoint yet" in (copy / "log.txt").read_text()
    assert ckpt.load_state(copy / "checkpoints" / "last")["epoch"] == 2


def test_temporaries_of_killed_saves_are_removed_at_the_next_start(tmp_path, tiny_run):
    run = copy_run(tiny_run, tmp_path)
    stale = run / "checkpoints" / ".last.tmp-k1ll3d"
    stale.mkdir()
    (stale / ckpt.MODEL_FILE).write_bytes(b"\0" * 1000)
    (run / ".config.json.999999999.tmp").write_text("{")
    assert cli.main(["train", "--resume", str(run), "--epochs", "3"]) == 0
    assert not stale.exists() and not (run / ".config.json.999999999.tmp").exists()
    assert "temporary file(s) left by killed writes" in (run / "log.txt").read_text()


def test_out_dir_that_is_a_file_or_read_only(tmp_path, faces, capsys, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    err = cli_error(capsys, ["train", "--data-dir", str(faces), "--out-dir", str(a_file), *TINY_FLAGS])
    assert "is a file, not a folder" in err and a_file.read_text() == "mine"
    err = cli_error(capsys, ["train", "--data-dir", str(faces), "--out-dir", str(a_file / "run"), *TINY_FLAGS])
    assert "is a file, not a folder" in err
    locked = tmp_path / "read_only"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:  # root writes anywhere: make the folder's refusal what a user would get
        real_write = Path.write_text

        def refuse(self, *args, **kwargs):
            if self.parent == locked:
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return real_write(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", refuse)
    err = cli_error(capsys, ["train", "--data-dir", str(faces), "--out-dir", str(locked), *TINY_FLAGS])
    assert f"cannot write to out_dir {locked}: Permission denied; choose a folder you can write to" in err
    locked.chmod(0o700)


def test_a_run_that_fails_before_training_leaves_no_files(tmp_path, capsys, monkeypatch):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"not a jpeg")
    fresh = tmp_path / "runs" / "new"
    off = ["--cache-dir", "off", *TINY_FLAGS]
    err = cli_error(capsys, ["train", "--data-dir", str(junk), "--out-dir", str(fresh), *off])
    assert "no usable images" in err
    assert not (tmp_path / "runs").exists()  # the folders it made are gone too
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "notes.txt").write_text("my notes")
    cli_error(capsys, ["train", "--data-dir", str(junk), "--out-dir", str(existing), *off])
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]
    # a failure after the split was written (a batch larger than the split is clamped now, so one is
    # simulated where the optimiser is built): still nothing left
    from mae_utils import train as train_mod

    def fail(*_args, **_kwargs):
        raise UserError("simulated failure after the split")

    monkeypatch.setattr(train_mod, "build_optimizer", fail)
    few = write_faces(tmp_path / "few", 12)
    err = cli_error(capsys, ["train", "--data-dir", str(few), "--out-dir", str(existing), "--cache-dir", "off",
                              *TINY_FLAGS, "--batch-size", "64"])  # fmt: skip
    assert "simulated failure" in err and sorted(p.name for p in existing.iterdir()) == ["notes.txt"]



# ---------------------------------------------------------------------- a replacing run keeps eval/
def test_replacing_a_run_keeps_its_evaluation_results(tmp_path, tiny_run, faces):
    run = copy_run(tiny_run, tmp_path)
    old_id = json.loads((run / "config.json").read_text())["run_id"]
    assert cli.main(["evaluate", "--run", str(run), "--baselines", "mean_fill", "--name", "mine"]) == 0
    mine = (run / "eval" / "mine.json").read_bytes()
    fit(TrainConfig(**{**TINY, "epochs": 1}, data_dir=str(faces), out_dir=str(run), cache_dir="off"), overwrite=True)
    kept = run / "eval" / f"previous_run_{old_id[:8]}" / "mine.json"
    assert kept.read_bytes() == mine
    assert f"kept the previous run's evaluation results in {kept.parent}" in (run / "log.txt").read_text()

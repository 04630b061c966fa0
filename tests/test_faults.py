"""Faults a user can cause or meet (issue 11's table, one test per row, plus a failed start leaving no
files): each ends in a clear ``UserError`` (``error: ...`` and exit 2 on the command line), no run is
lost, nothing half-written stays behind. Disk full is real where it can be (writes that land on
/dev/full fail with ENOSPC), concurrency is two real processes.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from mae_utils.util import checkpoint as ckpt
from mae_utils.util import cli
from mae_utils import data
from mae_utils import train as train_mod
from mae_utils.util.errors import UserError
from mae_utils.model import MaskedAutoencoder, build_mae
from mae_utils.tools.pretrained import load_pretrained
from mae_utils import splits as splits_mod
from mae_utils.util.rundir import LOCK_FILE, REPLACED_DIR
from mae_utils.synthetic import generate_faces
from mae_utils.train import NonFiniteLossError, TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
BAD_NAME = b"face_\xff\xfe.png"  # not valid UTF-8
# a run of about a second per epoch on a shared CPU core
TINY = dict(image_size=32, patch_size=8, batch_size=8, epochs=2, embed_dim=32, depth=1, num_heads=2,
            decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, device="cpu", base_lr=1e-3,
            sample_every=0, augment=False)  # fmt: skip
TINY_FLAGS = ["--image-size", "32", "--patch-size", "8", "--batch-size", "8", "--epochs", "2", "--embed-dim", "32",
              "--depth", "1", "--num-heads", "2", "--decoder-embed-dim", "32", "--decoder-depth", "1",
              "--decoder-num-heads", "2", "--device", "cpu", "--base-lr", "1e-3", "--sample-every", "0",
              "--no-augment"]  # fmt: skip


def _write_faces(folder: Path, n: int, seed: int = 0, bad_name: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(generate_faces(n, size=32, seed=seed)):
        Image.fromarray(img).save(folder / f"face_{i:03d}.png")
    if bad_name:
        Image.fromarray(generate_faces(1, size=32, seed=seed + 1)[0]).save(os.path.join(bytes(folder), BAD_NAME))
    return folder


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """24 synthetic faces as PNG files, one of them with a name that is not valid UTF-8."""
    return _write_faces(tmp_path_factory.mktemp("faces") / "faces", 23, bad_name=True)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, faces) -> Path:
    """A finished two-epoch run on ``faces`` (cache on, the default); tests copy it before changing it."""
    out = tmp_path_factory.mktemp("run") / "run"
    cache = tmp_path_factory.mktemp("cache")
    assert cli.main(["train", "--data-dir", str(faces), "--out-dir", str(out), "--cache-dir", str(cache),
                     *TINY_FLAGS]) == 0  # fmt: skip
    return out


def _copy(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(run, target)
    return target


def _cli_error(capsys, argv: list[str]) -> str:
    """Run the command line, which must fail with exit 2 and one ``error:`` line (no traceback)."""
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err  # progress bars may come first
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


# ---------------------------------------------------------------------- row 1: two runs, one folder
@pytest.mark.slow
def test_two_trains_racing_for_one_out_dir(tmp_path, faces):
    out = tmp_path / "run"
    base = [sys.executable, "-m", "mae_utils", "train", "--data-dir", str(faces), "--out-dir", str(out),
            "--cache-dir", "off", *TINY_FLAGS]  # fmt: skip
    procs = [subprocess.Popen([*base, "--seed", str(seed)], cwd=ROOT, env=_subprocess_env(), stdout=subprocess.PIPE,
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
    err = _cli_error(capsys, ["train", "--data-dir", str(faces), "--out-dir", str(out), *TINY_FLAGS])
    assert f"in use by another run (process {os.getpid()}" in err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing written, the owner's lock kept
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "started": "then"}))
    assert cli.main(["train", "--data-dir", str(faces), "--out-dir", str(out), "--cache-dir", "off", *TINY_FLAGS,
                     "--epochs", "1"]) == 0  # fmt: skip
    assert f"removed a stale lock: process {dead.pid}" in (out / "log.txt").read_text()
    assert not (out / LOCK_FILE).exists()


# ---------------------------------------------------------------------- row 2: --overwrite
def test_overwrite_deletes_nothing_until_the_new_run_has_saved(tmp_path, tiny_run, faces):
    run = _copy(tiny_run, tmp_path)
    before = ckpt.load_state(run / "checkpoints" / "best")["run_id"]
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"not an image")
    cfg = TrainConfig(**TINY, data_dir=str(junk), out_dir=str(run), cache_dir="off")
    with pytest.raises(UserError, match="no usable images"):
        fit(cfg, overwrite=True)
    assert ckpt.load_state(run / "checkpoints" / "best")["run_id"] == before  # the old run is whole
    assert json.loads((run / "config.json").read_text())["run_id"] == before
    assert not (run / REPLACED_DIR).exists() and not (run / LOCK_FILE).exists()
    # a good new run replaces it, and says so once its first checkpoint is saved
    result = fit(TrainConfig(**{**TINY, "epochs": 1}, data_dir=str(faces), out_dir=str(run), cache_dir="off"),
                 overwrite=True)  # fmt: skip
    assert ckpt.load_state(run / "checkpoints" / "last")["run_id"] != before
    log = (run / "log.txt").read_text()
    assert "moved the previous run's" in log and "deleted the previous run" in log
    assert not (run / REPLACED_DIR).exists() and result.metrics["epoch"] == 1


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
    run = _copy(tiny_run, tmp_path)
    before = ckpt.load_state(run / "checkpoints" / "best")["run_id"]
    old_log = (run / "log.txt").read_text()
    _killed_overwrite(run)
    err = _cli_error(capsys, ["train", "--data-dir", str(faces), "--out-dir", str(run), *TINY_FLAGS])
    assert "already holds a run" in err  # the next start found the old run back in place
    assert (run / "log.txt").read_text() == old_log and not (run / REPLACED_DIR).exists()
    assert ckpt.load_state(run / "checkpoints" / "best")["run_id"] == before
    _killed_overwrite(run)  # the same, then straight to --resume
    assert cli.main(["train", "--resume", str(run), "--epochs", "3"]) == 0
    assert ckpt.load_state(run / "checkpoints" / "last")["run_id"] == before
    assert ckpt.load_state(run / "checkpoints" / "last")["epoch"] == 3


# ---------------------------------------------------------------------- row 3: file names that are not UTF-8
def test_non_utf8_file_names_train_and_evaluate(tiny_run, faces, tmp_path):
    bad = os.fsdecode(BAD_NAME)
    split = json.loads((tiny_run / "split.json").read_text())
    assert bad in split["train"] + split["val"] + split["test"]
    shown: list[str] = []
    train_mod._RunLog(tmp_path / "log.txt", shown.append, active=True)(f"data: skipped {bad}")  # a log line naming it
    assert shown == ["data: skipped face_\\udcff\\udcfe.png"] and (tmp_path / "log.txt").read_text() == shown[0] + "\n"
    ds = data.FaceFolder(faces, 32, cache_dir=tmp_path / "cache", progress=False)
    assert bad in ds.rel_files and len(ds) == 24 and ds.cache_status == "built"
    where = next(k for k in ("train", "val", "test") if bad in split[k])
    assert cli.main(["evaluate", "--run", str(tiny_run), "--baselines", "mean_fill", "--split", where,
                     "--name", "with_bad_name"]) == 0  # fmt: skip
    assert bad in json.loads((tiny_run / "eval" / "with_bad_name.json").read_text())["names"]


# ---------------------------------------------------------------------- row 4: disk full while caching
def _cache_tmp(root: Path, cache: Path, size: int) -> Path:
    files, _ = data.scan_images(root)
    npy = cache / f"faces_{size}px_{data._cache_key(root, files, size)}.cache.npy"
    return npy.with_name(f".{npy.name}.{os.getpid()}.tmp")


def test_disk_full_while_building_the_cache(tmp_path, faces):
    cache = tmp_path / "cache"
    cache.mkdir()
    tmp = _cache_tmp(faces, cache, 32)
    tmp.symlink_to("/dev/full")  # every write to the cache's temporary file fails with ENOSPC
    with pytest.raises(UserError, match="cannot write the image cache in .*No space left on device"):
        data.FaceFolder(faces, 32, cache_dir=cache, progress=False)
    assert list(cache.iterdir()) == []  # no temporary, no half cache
    # too little free space is found before writing anything; a dead build's temporary is cleared
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = cache / f".faces_32px_x.cache.npy.{dead.pid}.tmp"
    stale.write_bytes(b"half")
    real_usage = shutil.disk_usage
    try:
        data.shutil.disk_usage = lambda p: real_usage(p)._replace(free=10_000)
        with pytest.raises(UserError, match="not enough disk space .* 0 MiB free"):
            data.FaceFolder(faces, 32, cache_dir=cache, progress=False)
    finally:
        data.shutil.disk_usage = real_usage
    assert list(cache.iterdir()) == []
    assert len(data.FaceFolder(faces, 32, cache_dir=cache, progress=False)) == 24


# ---------------------------------------------------------------------- row 5: disk full while saving
def test_disk_full_while_saving_a_checkpoint(tmp_path, monkeypatch):
    model = build_mae("tiny", img_size=32, patch_size=8, depth=1, decoder_depth=1)
    ckpt.save_checkpoint(tmp_path / "last", model.state_dict(), {"epoch": 1}, model.config)
    real_mkdtemp = ckpt.tempfile.mkdtemp

    def full_disk_mkdtemp(**kwargs):
        folder = Path(real_mkdtemp(**kwargs))
        for name in (ckpt.MODEL_FILE, ckpt.STATE_FILE):
            (folder / name).symlink_to("/dev/full")
        return str(folder)

    monkeypatch.setattr(ckpt.tempfile, "mkdtemp", full_disk_mkdtemp)
    with pytest.raises(UserError, match=r"cannot save checkpoint .*last.*the previous checkpoint .* is kept"):
        ckpt.save_checkpoint(tmp_path / "last", model.state_dict(), {"epoch": 2}, model.config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # temporaries removed
    assert ckpt.load_state(tmp_path / "last")["epoch"] == 1
    # the state file alone failing (torch's own error text) gives the same kind of message
    monkeypatch.setattr(ckpt.tempfile, "mkdtemp", lambda **kw: _state_only_full(real_mkdtemp(**kw)))
    with pytest.raises(UserError, match="disk full"):
        ckpt.save_checkpoint(tmp_path / "last", model.state_dict(), {"epoch": 2}, model.config)
    assert ckpt.load_state(tmp_path / "last")["epoch"] == 1


def _state_only_full(folder: str) -> str:
    (Path(folder) / ckpt.STATE_FILE).symlink_to("/dev/full")
    return folder


# ---------------------------------------------------------------------- rows 6 and 7: killed saves
_KILLED_DURING_FIRST_SAVE = textwrap.dedent(
    """
    import os, signal, sys, tempfile
    from mae_utils.util import checkpoint, cli

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
                            env=_subprocess_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -9
    assert list((out / "checkpoints").glob(".*.tmp-*")) and (out / LOCK_FILE).exists()
    copy = _copy(out, tmp_path, "copy")
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
    run = _copy(tiny_run, tmp_path)
    stale = run / "checkpoints" / ".last.tmp-k1ll3d"
    stale.mkdir()
    (stale / ckpt.MODEL_FILE).write_bytes(b"\0" * 1000)
    (run / ".config.json.999999999.tmp").write_text("{")
    assert cli.main(["train", "--resume", str(run), "--epochs", "3"]) == 0
    assert not stale.exists() and not (run / ".config.json.999999999.tmp").exists()
    assert "temporary file(s) left by killed writes" in (run / "log.txt").read_text()


# ---------------------------------------------------------------------- rows 8-10: crafted weights
def _rewrite(ckpt_dir: Path, *, config=None, raw_config: str | None = None, change=None) -> Path:
    path = ckpt_dir / ckpt.MODEL_FILE
    tensors = load_file(str(path))
    meta = {"format": "pt", "mae_config": json.dumps({**ckpt.read_model_config(ckpt_dir), **(config or {})})}
    if raw_config is not None:
        meta["mae_config"] = raw_config
    if change is not None:
        change(tensors)
    save_file(tensors, str(path), metadata=meta)
    return path


def test_an_edited_config_fails_before_anything_is_allocated(tmp_path, tiny_run, capsys, monkeypatch):
    run = _copy(tiny_run, tmp_path)
    _rewrite(run / "checkpoints" / "best", config={"embed_dim": 16384, "depth": 64})
    built = []
    real_init = MaskedAutoencoder.__init__

    @functools.wraps(real_init)
    def spy(self, *args, **kwargs):
        built.append(kwargs)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(MaskedAutoencoder, "__init__", spy)
    err = _cli_error(capsys, ["evaluate", "--run", str(run)])
    assert "model.safetensors: mae_config embed_dim is 16384 but the stored tensors imply 32" in err
    assert built == []  # not even a meta-device model was built
    err = _cli_error(capsys, ["reconstruct", "--run", str(run), "--images", str(tmp_path),
                              "--out", str(tmp_path / "o.png")])  # fmt: skip
    assert "mae_config embed_dim" in err


@pytest.mark.parametrize(
    "edit, message",
    [
        (dict(change=lambda t: t.update({"decoder_pred.weight": torch.zeros(10, 32)})),
         "tensor decoder_pred.weight has shape [10, 32], the model needs [192, 32]"),
        (dict(change=lambda t: t.pop("norm.bias")), "missing norm.bias"),
        (dict(change=lambda t: t.update({"extra": torch.zeros(2)})), "unexpected extra"),
        (dict(config={"dropout": 0.1}), "mae_config has unknown key(s) dropout"),
        (dict(config={"num_heads": "two"}), "mae_config num_heads must be a positive int"),
        (dict(raw_config="{not json"), "mae_config metadata is not valid JSON"),
        (dict(raw_config="[1, 2]"), "mae_config metadata must be a JSON object"),
    ],
)
def test_inconsistent_weights_are_user_errors(tmp_path, tiny_run, capsys, edit, message):
    run = _copy(tiny_run, tmp_path)
    _rewrite(run / "checkpoints" / "best", **edit)
    err = _cli_error(capsys, ["evaluate", "--run", str(run)])
    assert "model.safetensors" in err and message in err, err


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.update({k: v.to(torch.int8) for k, v in t.items()}), "is I8, not floating point"),
        (lambda t: t.update({k: torch.full_like(v, float("nan")) for k, v in t.items()}), "NaN/inf value"),
        (lambda t: t["blocks.0.mlp.fc1.weight"].view(-1)[3].fill_(float("inf")), "blocks.0.mlp.fc1.weight holds 1"),
    ],
)
def test_int8_or_non_finite_weights_are_refused(tmp_path, tiny_run, capsys, change, message):
    run = _copy(tiny_run, tmp_path)
    _rewrite(run / "checkpoints" / "best", change=change)
    assert message in _cli_error(capsys, ["evaluate", "--run", str(run)])
    # resuming from such weights is refused the same way
    _rewrite(run / "checkpoints" / "last", change=change)
    assert message in _cli_error(capsys, ["train", "--resume", str(run), "--epochs", "3"])


# ---------------------------------------------------------------------- rows 11 and 12: resume
def test_resume_with_fewer_epochs_than_done(tmp_path, tiny_run, capsys):
    run = _copy(tiny_run, tmp_path)
    err = _cli_error(capsys, ["train", "--resume", str(run), "--epochs", "1"])
    assert "has already trained 2 epochs; --epochs 1 cannot undo them: give --epochs 2 or more" in err
    assert ckpt.load_state(run / "checkpoints" / "last")["epoch"] == 2  # untouched


@pytest.mark.slow
def test_the_advice_after_a_non_finite_loss_works(tmp_path, faces, monkeypatch):
    real_epoch, real_loss = train_mod._train_epoch, MaskedAutoencoder.forward_loss
    poisoned = {"on": False}

    def epoch_hook(run, epoch, **kwargs):
        poisoned["on"] = epoch == 1 and run.config.base_lr > 5e-4  # only the too-fast setting diverges
        return real_epoch(run, epoch, **kwargs)

    monkeypatch.setattr(train_mod, "_train_epoch", epoch_hook)
    monkeypatch.setattr(MaskedAutoencoder, "forward_loss",
                        lambda self, *a: real_loss(self, *a) * (float("nan") if poisoned["on"] else 1.0))  # fmt: skip
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as info:
        fit(TrainConfig(**TINY, data_dir=str(faces), out_dir=str(run), cache_dir="off"))
    advice = str(info.value).split("continue from it with a lower learning rate: ")[1]
    assert advice == f"--resume {run} --base-lr 0.0001"
    assert cli.main(["train", *advice.split()]) == 0  # exactly what it said
    assert json.loads((run / "config.json").read_text())["base_lr"] == 1e-4
    assert ckpt.load_state(run / "checkpoints" / "last")["epoch"] == 2
    assert "base_lr 0.001 -> 0.0001 from step" in (run / "log.txt").read_text()


# ---------------------------------------------------------------------- row 13: --name stays in eval/
@pytest.mark.parametrize("name", ["/tmp/escaped", "../../escaped", "sub/escaped", "..", ".hidden"])
def test_evaluate_name_must_be_a_file_name(tiny_run, capsys, name):
    err = _cli_error(capsys, ["evaluate", "--run", str(tiny_run), "--name", name])
    assert "must be a plain file name" in err
    assert not Path("/tmp/escaped.json").exists() and not (tiny_run.parent.parent / "escaped.json").exists()


def test_evaluate_refuses_a_folder_mixing_two_runs(tmp_path, tiny_run, capsys):
    run = _copy(tiny_run, tmp_path)
    split = json.loads((run / "split.json").read_text())
    split["run_id"] = "another-run"
    (run / "split.json").write_text(json.dumps(split))
    err = _cli_error(capsys, ["evaluate", "--run", str(run)])
    assert "mixes files of different runs" in err and "split.json (run another-)" in err


# ---------------------------------------------------------------------- row 14: out-dir unusable
def test_out_dir_that_is_a_file_or_read_only(tmp_path, faces, capsys, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    err = _cli_error(capsys, ["train", "--data-dir", str(faces), "--out-dir", str(a_file), *TINY_FLAGS])
    assert "is a file, not a folder" in err and a_file.read_text() == "mine"
    err = _cli_error(capsys, ["train", "--data-dir", str(faces), "--out-dir", str(a_file / "run"), *TINY_FLAGS])
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
    err = _cli_error(capsys, ["train", "--data-dir", str(faces), "--out-dir", str(locked), *TINY_FLAGS])
    assert f"cannot write to out_dir {locked}: Permission denied; choose a folder you can write to" in err
    locked.chmod(0o700)


# ---------------------------------------------------------------------- row 15: --seed range
def test_seed_out_of_range(tiny_run, faces, capsys, tmp_path):
    huge = "99999999999999999999"
    err = _cli_error(capsys, ["train", "--data-dir", str(faces), "--out-dir", str(tmp_path / "r"), "--seed", huge])
    assert "seed must be an integer from 0 to 4294967295" in err
    assert not (tmp_path / "r").exists()
    assert "seed must be" in _cli_error(capsys, ["evaluate", "--run", str(tiny_run), "--seed", huge])
    err = _cli_error(capsys, ["evaluate", "--run", str(tiny_run), "--seed", "-1", "--mask", "eyes"])
    assert "--seed must be an integer from 0 to 4294967295; got -1" in err


# ---------------------------------------------------------------------- row 16: huge images
def test_images_over_the_pixel_limit_are_skipped_with_a_reason(tmp_path, monkeypatch):
    folder = _write_faces(tmp_path / "faces", 10)
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


# ---------------------------------------------------------------------- row 17: the scan says what it skips
def test_symlinked_and_unreadable_folders_are_logged(tmp_path, monkeypatch):
    root = _write_faces(tmp_path / "faces", 10)
    _write_faces(tmp_path / "elsewhere", 3, seed=9)
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    (root / "loop").symlink_to(root)
    (root / "locked").mkdir()
    Image.new("RGB", (40, 40)).save(root / "locked" / "x.png")
    real_scandir = os.scandir

    def scandir(path="."):  # what an unreadable folder does (root reads everything, so it is told)
        if str(path).endswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    lines: list[str] = []
    splits = splits_mod.prepare_data(root, 32, cache_dir=False, log=lines.append)
    assert sum(len(v) for v in splits.split.values()) == 10
    text = "\n".join(lines)
    assert "not following 2 symlinked folder(s): linked, loop (set MASKAE_FOLLOW_SYMLINKS=1" in text
    assert "cannot read 1 folder(s), skipped: locked (Permission denied)" in text
    monkeypatch.setenv("MASKAE_FOLLOW_SYMLINKS", "1")
    files, _ = data.scan_images(root)
    assert len([f for f in files if f.startswith("linked/")]) == 3 and not any(f.startswith("loop/") for f in files)


# ---------------------------------------------------------------------- row 18: no guessed head counts
def test_pretrained_of_an_unknown_width_asks_for_head_counts(tmp_path):
    m = build_mae("tiny", img_size=32, patch_size=8, embed_dim=96, depth=1, num_heads=2,
                  decoder_embed_dim=64, decoder_depth=1, decoder_num_heads=2)  # fmt: skip
    torch.save({"model": m.state_dict()}, tmp_path / "odd.pth")
    with pytest.raises(UserError, match=r"width 96 is not a standard one .* pass num_heads="):
        load_pretrained(tmp_path / "odd.pth")
    with pytest.raises(UserError, match="width 64 .* pass decoder_num_heads="):
        load_pretrained(tmp_path / "odd.pth", num_heads=2)
    loaded = load_pretrained(tmp_path / "odd.pth", num_heads=2, decoder_num_heads=2)
    imgs, noise = torch.randn(1, 3, 32, 32), torch.rand(1, 16)
    assert torch.equal(loaded.eval()(imgs, noise=noise)[1], m.eval()(imgs, noise=noise)[1])
    state = dict(m.state_dict())
    state["norm.weight"] = torch.full_like(m.norm.weight, float("nan"))
    torch.save({"model": state}, tmp_path / "nan.pth")
    with pytest.raises(UserError, match="norm.weight holds 96 NaN/inf"):
        load_pretrained(tmp_path / "nan.pth", num_heads=2, decoder_num_heads=2)


# ---------------------------------------------------------------------- row 19: the center mask
def test_center_mask_ratio_zero_is_refused_and_the_area_is_the_closest(tiny_run, capsys, tmp_path):
    from mae_utils.masking import structured_mask

    Image.fromarray(generate_faces(1, size=32)[0]).save(tmp_path / "a.png")
    err = _cli_error(capsys, ["reconstruct", "--run", str(tiny_run), "--images", str(tmp_path / "a.png"),
                              "--out", str(tmp_path / "o.png"), "--mask", "center", "--mask-ratio", "0"])  # fmt: skip
    assert "the center mask's mask_ratio is the block's area and must be between 0 and 1" in err
    for grid in (4, 5, 8, 14, (6, 8)):
        rows, cols = (grid, grid) if isinstance(grid, int) else grid
        blocks = [r * c / (rows * cols) for r in range(rows % 2 or 2, rows, 2) for c in range(cols % 2 or 2, cols, 2)]
        for ratio in (0.1, 0.25, 0.5, 0.75, 0.9):
            hidden = float(structured_mask("center", grid, mask_ratio=ratio).mean())
            assert abs(hidden - ratio) == pytest.approx(min(abs(b - ratio) for b in blocks), abs=1e-6), (grid, ratio)
    assert float(structured_mask("center", 8, mask_ratio=0.75).mean()) == 36 / 64  # as the help says


# ---------------------------------------------------------------------- issue 14, item 4
def test_a_run_that_fails_before_training_leaves_no_files(tmp_path, capsys, monkeypatch):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"not a jpeg")
    fresh = tmp_path / "runs" / "new"
    off = ["--cache-dir", "off", *TINY_FLAGS]
    err = _cli_error(capsys, ["train", "--data-dir", str(junk), "--out-dir", str(fresh), *off])
    assert "no usable images" in err
    assert not (tmp_path / "runs").exists()  # the folders it made are gone too
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "notes.txt").write_text("my notes")
    _cli_error(capsys, ["train", "--data-dir", str(junk), "--out-dir", str(existing), *off])
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]
    # a failure after the split was written (a batch larger than the split is clamped now, so one is
    # simulated where the optimiser is built): still nothing left
    from mae_utils import train as train_mod

    def fail(*_args, **_kwargs):
        raise UserError("simulated failure after the split")

    monkeypatch.setattr(train_mod, "build_optimizer", fail)
    few = _write_faces(tmp_path / "few", 12)
    err = _cli_error(capsys, ["train", "--data-dir", str(few), "--out-dir", str(existing), "--cache-dir", "off",
                              *TINY_FLAGS, "--batch-size", "64"])  # fmt: skip
    assert "simulated failure" in err and sorted(p.name for p in existing.iterdir()) == ["notes.txt"]

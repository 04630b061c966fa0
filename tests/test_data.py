"""Face data: decoding every image mode, bad files, errors, the folder split, the cache, transforms
(the partition itself: test_splits; loaders: test_loaders)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mae_utils import data
from mae_utils import splits as splits_mod
from mae_utils import train as train_mod
from mae_utils.data import (
    IMAGE_EXTENSIONS,
    FaceFolder,
    default_cache_dir,
    load_face,
    scan_images,
)
from mae_utils.splits import prepare_data
from mae_utils.transforms import MEAN, STD, batch_to_input, denormalize, normalize
from mae_utils.app import cli
from mae_utils.util.errors import UserError
from mae_utils.util.image_io import BACKGROUND, load_image

from conftest import write_faces
from tiny_runs import BAD_NAME

S = 16  # image size used throughout: sources are made S x S so resizing is the identity


def _grad(w: int = S, h: int = S, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _smooth() -> np.ndarray:
    """A smooth colour gradient: JPEG keeps it to within a few levels."""
    yy, xx = np.mgrid[0:S, 0:S]
    return np.stack([xx * 255 // (S - 1), yy * 255 // (S - 1), np.full_like(xx, 128)], axis=2).astype(np.uint8)


def _exif_rotated(path: Path) -> None:
    """A 32x16 (w x h) JPEG, left half red / right half blue, tagged 'rotate 90 CW to display'."""
    arr = np.zeros((S, 2 * S, 3), dtype=np.uint8)
    arr[:, :S] = (255, 0, 0)
    arr[:, S:] = (0, 0, 255)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(path, quality=95, exif=exif.tobytes())


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A folder holding good images in every mode, bad files with image names, and other files."""
    root = tmp_path_factory.mktemp("faces")
    exp: dict[str, np.ndarray] = {}  # relative path -> exact expected uint8 (S, S, 3)
    rgb = _grad()
    Image.fromarray(rgb).save(root / "rgb.png")
    exp["rgb.png"] = rgb
    gray = _grad()[..., 0]
    Image.fromarray(gray, mode="L").save(root / "gray.png")
    exp["gray.png"] = np.repeat(gray[..., None], 3, axis=2)
    rgba = np.zeros((S, S, 4), dtype=np.uint8)
    rgba[:, S // 2 :] = (200, 10, 20, 255)  # right half opaque red, left half fully transparent black
    Image.fromarray(rgba, mode="RGBA").save(root / "rgba.png")
    e = np.zeros((S, S, 3), dtype=np.uint8)
    e[:, : S // 2] = BACKGROUND
    e[:, S // 2 :] = (200, 10, 20)
    exp["rgba.png"] = e
    la = np.zeros((S, S, 2), dtype=np.uint8)
    la[..., 0] = 250
    la[: S // 2, :, 1] = 255  # top half opaque near-white, bottom transparent
    Image.fromarray(la, mode="LA").save(root / "la.png")
    e = np.full((S, S, 3), BACKGROUND, dtype=np.uint8)
    e[: S // 2] = 250
    exp["la.png"] = e
    pal = Image.new("P", (S, S))
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    idx = (np.arange(S * S).reshape(S, S) % 3).astype(np.uint8)
    pal.putdata(idx.reshape(-1).tolist())
    pal.save(root / "palette.png")
    exp["palette.png"] = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)[idx]
    pal_t = pal.copy()
    pal_t.info["transparency"] = 0  # index 0 (red) is transparent
    pal_t.save(root / "palette_transparent.png", transparency=0)
    e = exp["palette.png"].copy()
    e[idx == 0] = BACKGROUND
    exp["palette_transparent.png"] = e
    cmyk = np.zeros((S, S, 4), dtype=np.uint8)
    cmyk[..., 0] = 255  # pure cyan ink -> RGB (0, 255, 255)
    Image.fromarray(cmyk, mode="CMYK").save(root / "cmyk.tif")
    exp["cmyk.tif"] = np.tile(np.array([0, 255, 255], dtype=np.uint8), (S, S, 1))
    g16 = (_grad()[..., 1].astype(np.uint16) * 257)
    Image.fromarray(g16).save(root / "gray16.png")  # 16-bit grayscale PNG
    exp["gray16.png"] = np.repeat((g16 // 257).astype(np.uint8)[..., None], 3, axis=2)
    Image.fromarray(rgb).save(root / "bitmap.bmp")
    exp["bitmap.bmp"] = rgb
    Image.fromarray(rgb).save(root / "netpbm.ppm")
    exp["netpbm.ppm"] = rgb
    Image.fromarray(gray, mode="L").save(root / "netpbm.pgm")
    exp["netpbm.pgm"] = exp["gray.png"]
    Image.fromarray(rgb).save(root / "lossless.webp", lossless=True)
    exp["lossless.webp"] = rgb
    wide = np.zeros((S, 2 * S, 3), dtype=np.uint8)  # 32 x 16: green | red (middle 16) | blue
    wide[:, : S // 2] = (0, 255, 0)
    wide[:, S // 2 : S // 2 + S] = (255, 0, 0)
    wide[:, S // 2 + S :] = (0, 0, 255)
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(wide).save(root / "sub" / "deeper" / "wide.PNG")  # upper-case extension, nested
    exp["sub/deeper/wide.PNG"] = np.tile(np.array([255, 0, 0], dtype=np.uint8), (S, S, 1))
    Image.fromarray(_smooth()).save(root / "sub" / "photo.JPG", quality=95)
    _exif_rotated(root / "sub" / "rotated.jpg")
    # bad files with image extensions
    (root / "empty.jpg").write_bytes(b"")
    buf = root / "full.tmp"
    Image.fromarray(_grad(64, 64, seed=3)).save(buf, format="PNG")
    data = buf.read_bytes()
    buf.unlink()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "notes.jpg").write_text("this is not a picture\n")
    # other files: ignored silently
    (root / "readme.txt").write_text("hello")
    (root / "labels.csv").write_text("a,b\n")
    Image.fromarray(rgb).save(root / ".hidden.png")
    (root / ".cache").mkdir()
    Image.fromarray(rgb).save(root / ".cache" / "x.png")
    good = sorted(list(exp) + ["sub/photo.JPG", "sub/rotated.jpg"])
    bad = ["empty.jpg", "notes.jpg", "truncated.png"]
    return {"root": root, "exp": exp, "good": good, "bad": bad}


def test_scan_finds_images_recursively_and_ignores_other_files(folder: dict) -> None:
    files, ignored = scan_images(folder["root"])
    assert files == sorted(folder["good"] + folder["bad"])
    assert ignored == 2  # readme.txt, labels.csv; hidden files and folders are not even counted
    assert all(Path(f).suffix.lower() in IMAGE_EXTENSIONS for f in files)


@pytest.mark.parametrize("cache", [False, "tmp"])
def test_every_mode_decodes_to_the_right_rgb(folder: dict, tmp_path: Path, cache) -> None:
    ds = FaceFolder(folder["root"], S, cache_dir=tmp_path / "c" if cache else False, progress=False)
    assert ds.rel_files == folder["good"]
    assert len(ds) == len(folder["good"])
    for rel, expected in folder["exp"].items():
        got = ds.uint8(ds.rel_files.index(rel))
        np.testing.assert_array_equal(got, expected, err_msg=rel)
    # lossy JPEGs: close, not exact
    photo = ds.uint8(ds.rel_files.index("sub/photo.JPG")).astype(int)
    assert np.abs(photo - _smooth().astype(int)).mean() < 6
    # EXIF orientation 6: the stored left (red) half ends up on top, blue at the bottom
    rot = ds.uint8(ds.rel_files.index("sub/rotated.jpg")).astype(int)
    top, bottom = rot[: S // 2 - 2].mean(axis=(0, 1)), rot[S // 2 + 2 :].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_items_are_uint8_and_batch_to_input_normalises(folder: dict) -> None:
    ds = FaceFolder(folder["root"], S, cache_dir=False, progress=False)
    i = ds.rel_files.index("rgb.png")
    x = ds[i]
    assert x.shape == (3, S, S) and x.dtype == torch.uint8
    expected = torch.from_numpy(folder["exp"]["rgb.png"]).permute(2, 0, 1)
    assert torch.equal(x, expected)
    expected01 = expected.float() / 255
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    inp = batch_to_input(torch.stack([x, x]), "cpu")
    assert inp.dtype == torch.float32 and inp.shape == (2, 3, S, S)
    torch.testing.assert_close(inp[0], (expected01 - mean) / std)
    torch.testing.assert_close(denormalize(inp), torch.stack([expected01, expected01]))
    assert torch.equal(denormalize(x), expected01)  # uint8 items are pixels already
    assert torch.equal(batch_to_input(inp), inp)  # a normalised float batch is only moved
    assert denormalize(torch.full((3, 2, 2), 100.0)).max() == 1.0  # clamped
    torch.testing.assert_close(denormalize(normalize(expected01)), expected01)
    with pytest.raises(UserError, match="3, H, W"):
        normalize(torch.zeros(4, 8, 8))
    with pytest.raises(UserError, match=r"\(N, 3, H, W\)"):
        batch_to_input(x)


def test_bad_files_are_excluded_counted_and_named(folder: dict, tmp_path: Path) -> None:
    ds = FaceFolder(folder["root"], S, cache_dir=tmp_path, progress=False)
    skipped = {p.relative_to(folder["root"]).as_posix(): reason for p, reason in ds.skipped}
    assert sorted(skipped) == folder["bad"]
    assert "empty" in skipped["empty.jpg"]
    assert "not a recognised image" in skipped["notes.jpg"]
    assert "truncated" in skipped["truncated.png"] or "corrupt" in skipped["truncated.png"]
    lines: list[str] = []
    splits = prepare_data(folder["root"], S, cache_dir=tmp_path, val_frac=0.2, test_frac=0.2, log=lines.append)
    text = "\n".join(lines)
    assert f"{len(folder['good']) + 3} image files, {len(folder['good'])} usable, 3 skipped" in text
    assert "skipped 3 unreadable file(s)" in text and "empty.jpg (empty file" in text and "notes.jpg" in text
    assert sorted(p for p, _ in splits.skipped) == folder["bad"]


def test_antialiased_resize_and_center_crop(tmp_path: Path) -> None:
    checker = ((np.indices((64, 96)).sum(axis=0) % 2) * 255).astype(np.uint8)  # 1-px checkerboard, 96 wide
    Image.fromarray(checker, mode="L").save(tmp_path / "checker.png")
    out = load_image(tmp_path / "checker.png", 16)
    assert out.shape == (16, 16, 3)
    # antialiased: every output pixel averages many black and white pixels (nearest would give 0/255)
    assert np.abs(out.astype(int) - 127.5).max() < 20


def test_missing_empty_and_not_a_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"{tmp_path / 'nope'} does not exist"):
        FaceFolder(tmp_path / "nope", S)
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="is not a directory"):
        prepare_data(tmp_path / "file.jpg", S)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(UserError, match=r"no image files in .*empty.*\.jpg.*1 other file"):
        prepare_data(empty, S, cache_dir=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.png").write_text("text")
    with pytest.raises(UserError, match=r"no usable images in .*bad: all 2 file\(s\).*\.jpeg.*a\.jpg \(empty"):
        FaceFolder(bad, S, cache_dir=tmp_path / "c", progress=False)


def test_too_few_images_for_the_split(tmp_path: Path) -> None:
    for i in range(2):
        Image.fromarray(_grad(seed=i)).save(tmp_path / f"{i}.png")
    with pytest.raises(UserError, match=rf"{tmp_path} has 2 usable image\(s\): too few"):
        prepare_data(tmp_path, S, cache_dir=False, log=lambda m: None)
    with pytest.raises(UserError, match="val_frac"):
        prepare_data(tmp_path, S, val_frac=1.5, cache_dir=False)


def test_prepare_data_writes_and_reuses_split(folder: dict, tmp_path: Path) -> None:
    split_path = tmp_path / "run" / "split.json"
    first = prepare_data(folder["root"], S, cache_dir=tmp_path / "c", split_path=split_path, val_frac=0.2,
                         test_frac=0.2, seed=1, log=lambda m: None)  # fmt: skip
    saved = json.loads(split_path.read_text())
    assert {k: saved[k] for k in ("train", "val", "test")} == first.split
    assert first.root == str(folder["root"])
    assert sorted(first.split["train"] + first.split["val"] + first.split["test"]) == folder["good"]
    assert len(first.train) == len(first.split["train"]) and len(first.val) == len(first.split["val"])
    assert first.train.rel_files == first.split["train"]
    # a resumed run reuses the saved split even with another seed; edit it to prove it is read
    custom = {"train": folder["good"][:-2], "val": [folder["good"][-2]], "test": [folder["good"][-1]]}
    split_path.write_text(json.dumps(custom))
    lines: list[str] = []
    again = prepare_data(folder["root"], S, cache_dir=tmp_path / "c", split_path=split_path, seed=99, log=lines.append)
    assert again.split == custom
    assert "reused from" in "\n".join(lines)
    alone = FaceFolder(folder["root"], S, files=custom["test"], cache_dir=False, progress=False)
    np.testing.assert_array_equal(again.test.uint8(0), alone.uint8(0))
    split_path.write_text(json.dumps({"train": ["gone.jpg"], "val": [], "test": []}))
    with pytest.raises(UserError, match="no longer in"):
        prepare_data(folder["root"], S, cache_dir=tmp_path / "c", split_path=split_path, log=lambda m: None)


def test_only_train_augments(folder: dict, tmp_path: Path) -> None:
    splits = prepare_data(folder["root"], S, cache_dir=tmp_path, val_frac=0.2, test_frac=0.2, log=lambda m: None)
    assert splits.train.augment is not None and splits.val.augment is None and splits.test.augment is None
    # items are the stored pixels; the training loader applies ``augment`` per batch (test_transforms)
    np.testing.assert_array_equal(splits.train[0].permute(1, 2, 0).numpy(), splits.train.uint8(0))


def test_cache_matches_decoding_and_rebuilds_when_files_change(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(5):
        Image.fromarray(_grad(24, 20, seed=i)).save(root / f"{i}.png")
    Image.fromarray(_grad(30, 30, seed=9)).save(root / "x.jpg", quality=90)
    cache = tmp_path / "cache"
    plain = FaceFolder(root, S, cache_dir=False, progress=False)
    built = FaceFolder(root, S, cache_dir=cache, progress=False)
    assert built.cache_status == "built" and built.cache_path.parent == cache
    for i in range(len(plain)):
        np.testing.assert_array_equal(built.uint8(i), plain.uint8(i))
        torch.testing.assert_close(built[i], plain[i], rtol=0, atol=0)
    reused = FaceFolder(root, S, cache_dir=cache, progress=False)
    assert reused.cache_status == "reused" and reused.cache_path == built.cache_path
    assert not list(cache.glob(".*.tmp"))  # the temporary file was renamed into place
    # another image size, an added file, a rewritten file: each gives a new cache
    assert FaceFolder(root, 8, cache_dir=cache, progress=False).cache_status == "built"
    Image.fromarray(_grad(24, 20, seed=7)).save(root / "new.png")
    added = FaceFolder(root, S, cache_dir=cache, progress=False)
    assert added.cache_status == "built" and added.cache_path != built.cache_path and len(added) == 7
    Image.fromarray(_grad(24, 20, seed=8)).save(root / "0.png")
    os.utime(root / "0.png", ns=(1, 1))
    changed = FaceFolder(root, S, cache_dir=cache, progress=False)
    assert changed.cache_status == "built"
    np.testing.assert_array_equal(changed.uint8(0), load_image(root / "0.png", S))
    # a cache whose metadata is broken is rebuilt, not trusted
    meta = changed.cache_path.with_name(changed.cache_path.name.replace(".cache.npy", ".json"))
    meta.write_text("{broken")
    assert FaceFolder(root, S, cache_dir=cache, progress=False).cache_status == "built"


def test_default_cache_dir_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MASKAE_CACHE_DIR", raising=False)
    project = Path(__file__).resolve().parent.parent
    assert default_cache_dir() == project / "data" / "cache"  # the checkout's, not the working directory's
    monkeypatch.setenv("MASKAE_CACHE_DIR", str(tmp_path / "envcache"))
    assert default_cache_dir() == tmp_path / "envcache"
    Image.fromarray(_grad()).save(tmp_path / "a.png")
    ds = FaceFolder(tmp_path, S, progress=False)
    assert ds.cache_path is not None and ds.cache_path.parent == tmp_path / "envcache"
    monkeypatch.setenv("MASKAE_CACHE_DIR", "off")
    assert default_cache_dir() is None


def test_load_face_for_single_photos(folder: dict, tmp_path: Path) -> None:
    t = load_face(folder["root"] / "rgb.png", S)
    torch.testing.assert_close(denormalize(t), torch.from_numpy(folder["exp"]["rgb.png"]).permute(2, 0, 1) / 255)
    with pytest.raises(UserError, match="does not exist"):
        load_face(tmp_path / "none.jpg", S)
    with pytest.raises(UserError, match=r"cannot read image .*notes\.jpg"):
        load_face(folder["root"] / "notes.jpg", S)


def test_two_working_directories_share_one_cache(tmp_path: Path) -> None:
    """A papermill run started in notebooks/ and a CLI run from the root must find the same cache."""
    import os
    import subprocess
    import sys

    project = Path(__file__).resolve().parent.parent
    root = tmp_path / "imgs"
    root.mkdir()
    Image.fromarray(_grad()).save(root / "a.png")
    code = (
        "import sys; from mae_utils.data import FaceFolder; "
        f"ds = FaceFolder({str(root)!r}, {S}, progress=False); print(ds.cache_status, ds.cache_path)"
    )
    env = {k: v for k, v in os.environ.items() if k != "MASKAE_CACHE_DIR"}
    env["PYTHONPATH"] = str(project)
    seen = []
    for cwd in (tmp_path, project / "notebooks"):
        out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True)
        seen.append(out.stdout.split())
    (status1, path1), (status2, path2) = seen
    assert path1 == path2 and Path(path1).parent == project / "data" / "cache"
    assert (status1, status2) == ("built", "reused")  # the second working directory reused the first one's cache
    Path(path1).unlink()
    Path(path1).with_name(Path(path1).name.replace(".cache.npy", ".json")).unlink(missing_ok=True)


# ---------------------------------------------------------------------- faults
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


def test_symlinked_and_unreadable_folders_are_logged(tmp_path, monkeypatch):
    root = tmp_path / "faces"
    write_faces(root, 10, size=32, seed=0)
    write_faces(tmp_path / "elsewhere", 3, size=32, seed=9)
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


def test_a_training_run_folder_is_never_taken_for_faces(tmp_path):
    """A run's figures (samples/*.png) are pictures of faces, not faces: a run folder inside a photo
    folder is left out with a note, and a run folder given as the photo folder is refused."""
    root = tmp_path / "faces"
    write_faces(root, 10, size=32, seed=0)
    run = root / "runs" / "r"
    write_faces(run / "samples", 4, size=32, seed=5)
    (run / "config.json").write_text('{"image_size": 32, "patch_size": 8}')
    (run / "checkpoints").mkdir()
    ds = FaceFolder(root, 32, cache_dir=False)
    assert len(ds) == 10 and not any(f.startswith("runs/") for f in ds.rel_files)
    assert ds.scan_notes == ["left out 1 training run folder(s), whose figures are not faces: runs/r"]
    with pytest.raises(UserError, match=f"data_dir {run} is a training run's folder .* give the folder of photos"):
        FaceFolder(run, 32, cache_dir=False)
    (run / "config.json").write_text('{"labels": "ages"}')  # photos beside a config.json of their own
    assert len(FaceFolder(root, 32, cache_dir=False)) == 14



# ---------------------------------------------------------------------- a damaged cache is rebuilt
def test_a_cache_damaged_in_place_is_rebuilt_not_served(tmp_path):
    folder = tmp_path / "faces"
    write_faces(folder, 6, size=32, seed=0)
    built = FaceFolder(folder, 32, cache_dir=tmp_path / "cache", progress=False)
    want = np.stack([built.uint8(i) for i in range(len(built))])
    npy = built.cache_path
    raw = bytearray(npy.read_bytes())
    raw[-5000:-4000] = bytes(1000)  # same size, other bytes
    npy.write_bytes(bytes(raw))
    lines: list[str] = []
    again = prepare_data(folder, 32, cache_dir=tmp_path / "cache", log=lines.append, augment=False)
    full = FaceFolder(folder, 32, cache_dir=tmp_path / "cache", progress=False)
    assert full.cache_status == "reused"  # the rebuild above repaired it
    np.testing.assert_array_equal(np.stack([full.uint8(i) for i in range(len(full))]), want)
    assert any("failed its checksum" in x and "rebuilt" in x for x in lines), lines
    assert len(again.train) + len(again.val) + len(again.test) == 6


@pytest.mark.parametrize("word", ["false", "False", "no", "0"])
def test_cache_dir_false_means_no_cache_not_a_folder_named_false(tmp_path, monkeypatch, word):
    folder = tmp_path / "faces"
    write_faces(folder, 3, size=32, seed=0)
    monkeypatch.chdir(tmp_path)
    ds = FaceFolder(folder, 32, cache_dir=word, progress=False)
    assert ds.cache_path is None and not (tmp_path / word).exists()

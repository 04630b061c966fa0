"""Face data sets: photo folders and built-in synthetic faces as uint8 items, with a fast uint8 cache.

* :class:`FaceFolder` scans a folder recursively for images (:data:`IMAGE_EXTENSIONS`, any case), in
  sorted order, decodes each one correctly to RGB (:mod:`mae_utils.util.image_io`), resizes the shorter
  side and center-crops to ``image_size``. Files that cannot be decoded (empty, truncated, corrupt,
  not an image) are found once, excluded and listed in ``ds.skipped``; other files are ignored.
* The cache: each image is decoded and resized once into a memory-mapped uint8 ``.npy`` file keyed
  by the file list (with sizes and modification times) and the image size, rebuilt when those
  change, written atomically. Later epochs and later runs read it instead of decoding JPEGs.
* :class:`SyntheticFaces` is the default data set when no folder is given
  (:mod:`mae_utils.synthetic` draws the faces; here they become a Dataset with the same contract).
* :func:`mae_utils.splits.prepare_data` splits them into train / val / test (``split.json``);
  :func:`mae_utils.util.loaders.build_loader` makes the loaders.

Items are uint8 (3, S, S) tensors (:func:`image_tensor`): a quarter of the bytes of float32 through
the loader, its workers and the copy to the GPU. :func:`mae_utils.transforms.batch_to_input` turns a
batch into the model's normalised input on the training device, with the training augmentation;
``MEAN``, ``STD``, ``Augment``, ``normalize``, ``denormalize`` and ``batch_to_input`` live in
:mod:`mae_utils.transforms` and are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .util.errors import UserError
from .util.fileio import atomic_write_text, environment_error, remove_dead_tmp_files
from .util.image_io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageDecodeError, is_image_name, load_image, load_rgb, max_pixels
from .util.progress import tqdm
from .util.rundir import is_run_folder
from .synthetic import generate_faces
from .transforms import MEAN, STD, Augment, batch_to_input, denormalize, normalize

__all__ = [
    "MEAN",
    "STD",
    "IMAGE_EXTENSIONS",
    "Augment",
    "FaceFolder",
    "FolderUnion",
    "SyntheticFaces",
    "default_cache_dir",
    "batch_to_input",
    "denormalize",
    "image_tensor",
    "load_face",
    "normalize",
    "scan_images",
]

#: Environment variable that moves the default cache folder (``off`` disables the cache).
CACHE_ENV = "MASKAE_CACHE_DIR"

#: Environment variable that makes the folder scan follow symlinked sub-folders (``1``); off by default,
#: since a link can lead out of the data set or into a loop. What is not followed is logged.
FOLLOW_SYMLINKS_ENV = "MASKAE_FOLLOW_SYMLINKS"

_CACHE_VERSION = 1
SKIPPED_SHOWN = 5  # how many skipped file names a log line shows

CacheDir = str | Path | None | Literal[False]


# --- items --------------------------------------------------------------------------------------


def image_tensor(img: np.ndarray) -> torch.Tensor:
    """A decoded uint8 (H, W, 3) image -> the item form, uint8 (3, H, W).

    One plain copy, kept in the stored (H, W, 3) order: the item is a (3, H, W) view of it
    ("channels last" strides). Reordering the bytes to (3, H, W) costs more than everything else an
    item needs at 256 px; :func:`~mae_utils.util.loaders.collate_batch` stacks such items with plain copies and
    :func:`~mae_utils.transforms.batch_to_input` reorders whole batches on the device.
    """
    return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1)


def as_augment(augment: bool | Augment | None) -> Augment | None:
    if augment is True:
        return Augment()
    if augment is False or augment is None:
        return None
    if isinstance(augment, Augment):
        return augment
    raise UserError(f"augment must be True, False or an Augment, got {augment!r}")


class _ImageDataset(Dataset):
    """Shared item contract: ``ds[i]`` is uint8 (3, S, S), the stored pixels, never augmented.

    ``augment`` (None or an :class:`~mae_utils.transforms.Augment`) says how the training loader
    should augment this split: it draws per-image parameters and
    :func:`~mae_utils.transforms.batch_to_input` applies them per batch on the device.
    """

    image_size: int
    augment: Augment | None

    def _uint8(self, i: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        return image_tensor(self._uint8(i % len(self)))

    def uint8(self, i: int) -> np.ndarray:
        """The stored (decoded, resized, not augmented) pixels of item ``i``: uint8 (S, S, 3)."""
        return np.array(self._uint8(i))


# --- scanning ------------------------------------------------------------------------------------


def check_folder(root: str | Path, what: str = "data_dir") -> Path:
    """``root`` if it is a folder that may hold photos; a training run's folder is refused (its
    ``samples/`` figures are not faces)."""
    path = Path(root).expanduser()
    if not path.exists():
        raise UserError(f"{what} {path} does not exist")
    if not path.is_dir():
        raise UserError(f"{what} {path} is not a directory")
    if is_run_folder(path):
        raise UserError(f"{what} {path} is a training run's folder (config.json, checkpoints, "
                        "figures), not a folder of face photos; give the folder of photos instead")
    return path


def _follow_symlinks_default() -> bool:
    return os.environ.get(FOLLOW_SYMLINKS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def scan_images(
    root: str | Path, *, follow_symlinks: bool | None = None, notes: list[str] | None = None
) -> tuple[list[str], int]:
    """Image files under ``root`` (recursive, sorted, relative posix paths) and how many other files were ignored.

    Hidden files and folders (names starting with '.') are skipped, as are training runs' folders
    (their figures are not faces) and files without one of :data:`IMAGE_EXTENSIONS`; the order does
    not depend on the file system. Symlinked sub-folders
    are followed only with ``follow_symlinks`` (default: ``$MASKAE_FOLLOW_SYMLINKS``), each real
    folder once. What the scan did not enter (symlinked folders not followed, folders it cannot read)
    is described in ``notes``, one line each, for the run's log.
    """
    root = check_folder(root)
    follow = _follow_symlinks_default() if follow_symlinks is None else follow_symlinks
    found: list[str] = []
    ignored = 0
    unreadable: list[OSError] = []
    links: list[str] = []
    runs: list[str] = []
    visited = {os.path.realpath(root)}
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable.append, followlinks=follow):
        kept = []
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if d.startswith("."):
                continue
            if os.path.islink(full) and not follow:
                links.append(Path(full).relative_to(root).as_posix())
                continue
            if is_run_folder(full):
                runs.append(Path(full).relative_to(root).as_posix())
                continue
            real = os.path.realpath(full)
            if real in visited:  # a link back into the tree: each real folder once, no loops
                continue
            visited.add(real)
            kept.append(d)
        dirnames[:] = kept
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            if name.startswith("."):
                continue
            if is_image_name(name):
                found.append((rel_dir / name).as_posix())
            else:
                ignored += 1
    if notes is not None:
        if runs:
            notes.append(f"left out {len(runs)} training run folder(s), whose figures are not "
                         f"faces: {_fmt_names(sorted(runs))}")
        if links:
            notes.append(f"not following {len(links)} symlinked folder(s): {_fmt_names(sorted(links))} "
                         f"(set {FOLLOW_SYMLINKS_ENV}=1 to follow them)")  # fmt: skip
        if unreadable:
            parts = [f"{Path(e.filename).relative_to(root).as_posix() if e.filename else '?'} "
                     f"({e.strerror or e})" for e in unreadable]  # fmt: skip
            notes.append(f"cannot read {len(unreadable)} folder(s), skipped: {_fmt_names(parts)}")
    return sorted(found), ignored


def _fmt_names(names: Sequence[str], shown: int = SKIPPED_SHOWN) -> str:
    more = f", ... and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def format_skipped(skipped: Sequence[tuple[Any, str]], shown: int = SKIPPED_SHOWN) -> str:
    parts = [f"{Path(p).as_posix() if not isinstance(p, str) else p} ({reason})" for p, reason in skipped[:shown]]
    more = f", ... and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return ", ".join(parts) + more


# --- the cache -----------------------------------------------------------------------------------


def project_root() -> Path | None:
    """The source checkout this package runs from (the folder with ``pyproject.toml`` and ``mae_utils/``).

    None when the package is installed elsewhere (``pip install .``): then there is no project folder.
    """
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "mae_utils").is_dir() else None


def default_cache_dir() -> Path | None:
    """Where decoded images are cached: one place whatever the working directory.

    ``$MASKAE_CACHE_DIR`` if set (``off`` / ``none`` / empty disables caching); else ``data/cache`` in the
    project folder; for an installed package, ``$XDG_CACHE_HOME/maskae`` (``~/.cache/maskae``). Resolved
    once, to an absolute path, so the CLI, papermill runs and notebooks under ``notebooks/`` share it.
    """
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        if env.strip().lower() in ("", "off", "none", "0", "false"):
            return None
        return Path(env).expanduser().resolve()
    root = project_root()
    if root is not None:
        return root / "data" / "cache"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser().resolve() / "maskae"


def _resolve_cache_dir(cache_dir: CacheDir) -> Path | None:
    if cache_dir is False:
        return None
    if cache_dir is None:
        return default_cache_dir()
    if isinstance(cache_dir, str) and cache_dir.strip().lower() in ("off", "none", "false", "no", "0"):
        return None
    return Path(cache_dir).expanduser()


def _cache_key(root: Path, rel_files: Sequence[str], image_size: int) -> str:
    # file names are bytes to the OS: ones that are not valid UTF-8 arrive as surrogates, and hash as
    # their original bytes (surrogateescape) instead of failing
    h = hashlib.sha256()
    head = {"v": _CACHE_VERSION, "root": str(root.resolve()), "size": image_size}
    if max_pixels() != DEFAULT_MAX_PIXELS:  # which big images are skipped changes what is cached
        head["max_pixels"] = max_pixels()
    h.update(json.dumps(head).encode("utf-8", "surrogateescape"))
    for rel in rel_files:
        try:
            st = (root / rel).stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"\n{rel}\t{stamp}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:20]


def _decode_one(args: tuple[Path, int]) -> tuple[np.ndarray | None, str | None]:
    path, size = args
    try:
        return load_image(path, size), None
    except ImageDecodeError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - a bad file must never stop a run
        return None, f"unreadable: {type(exc).__name__}: {exc}"


def _check_one(path: Path) -> str | None:
    try:
        load_rgb(path)
        return None
    except ImageDecodeError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001
        return f"unreadable: {type(exc).__name__}: {exc}"


def _pool_map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int, progress: bool, desc: str) -> Iterator[Any]:
    """``map(fn, items)`` in order on a thread pool (Pillow decodes without holding the GIL)."""
    bar = tqdm(total=len(items), desc=desc, unit="img", disable=not progress)
    try:
        if workers <= 1:
            for item in items:
                yield fn(item)
                bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for out in pool.map(fn, items, chunksize=1):
                    yield out
                    bar.update(1)
    finally:
        bar.close()


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


# --- FaceFolder ----------------------------------------------------------------------------------


class FaceFolder(_ImageDataset):
    """A folder of face photos as a Dataset of uint8 (3, image_size, image_size) tensors.

    ``files``: paths (relative to ``root`` or absolute under it) to use instead of scanning.
    ``cache_dir``: where the uint8 cache lives; ``None`` = :func:`default_cache_dir`, ``False`` =
    no cache (decode every access; bad files are still found once, up front).
    ``augment``: ``True`` for the default :class:`Augment`, or an :class:`Augment`: recorded for the
    training loader, which applies it per batch (items themselves are never augmented).
    Attributes: ``files`` (absolute paths used, in order), ``rel_files`` (the same relative to
    ``root``), ``skipped`` ((path, reason) of excluded files), ``cache_path`` and ``cache_status``
    ('built', 'reused' or None).
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int,
        *,
        files: Iterable[str | Path] | None = None,
        augment: bool | Augment = False,
        cache_dir: CacheDir = None,
        progress: bool = True,
        workers: int | None = None,
    ) -> None:
        self.root = check_folder(root)
        self.image_size = check_image_size(image_size)
        self.augment = as_augment(augment)
        self.progress = progress
        workers = _default_workers() if workers is None else max(1, int(workers))
        n_other = 0
        self.scan_notes: list[str] = []  # what the scan did not enter (symlinked, unreadable folders)
        max_pixels()  # a bad MASKAE_MAX_PIXELS is one error now, not a reason to skip every photo
        if files is None:
            candidates, n_other = scan_images(self.root, notes=self.scan_notes)
        else:
            candidates = sorted({self._relative(f) for f in files})
        if not candidates:
            raise UserError(
                f"no image files in {self.root} (accepted extensions: {', '.join(IMAGE_EXTENSIONS)}; "
                f"{n_other} other file(s) ignored)"
            )
        self.candidates = candidates
        self.cache_path: Path | None = None
        self.cache_status: str | None = None
        self._array: np.ndarray | None = None
        cache = _resolve_cache_dir(cache_dir)
        if cache is not None:
            good, skipped = self._load_or_build_cache(cache, candidates, workers)
        else:
            good, skipped = self._validate(candidates, workers)
        self.skipped: list[tuple[Path, str]] = [(self.root / rel, reason) for rel, reason in skipped]
        if not good:
            raise UserError(
                f"no usable images in {self.root}: all {len(candidates)} file(s) with accepted extensions "
                f"({', '.join(IMAGE_EXTENSIONS)}) were rejected: {format_skipped(skipped)}"
            )
        self.rel_files: list[str] = good
        self.files: list[Path] = [self.root / rel for rel in good]
        self._rows = np.arange(len(good))  # row of each item in the cache array

    # --- construction helpers ---
    def _relative(self, f: str | Path) -> str:
        p = Path(f)
        if p.is_absolute():
            try:
                p = p.resolve().relative_to(self.root.resolve())
            except ValueError:
                raise UserError(f"file {f} is not inside the data folder {self.root}") from None
        return p.as_posix()

    def _validate(self, candidates: list[str], workers: int) -> tuple[list[str], list[tuple[str, str]]]:
        paths = [self.root / rel for rel in candidates]
        reasons = _pool_map(_check_one, paths, workers, self.progress, f"checking images in {self.root.name}")
        good: list[str] = []
        skipped: list[tuple[str, str]] = []
        for rel, reason in zip(candidates, reasons):
            (good.append(rel) if reason is None else skipped.append((rel, reason)))
        return good, skipped

    def _load_or_build_cache(
        self, cache: Path, candidates: list[str], workers: int
    ) -> tuple[list[str], list[tuple[str, str]]]:
        key = _cache_key(self.root, candidates, self.image_size)
        stem = f"faces_{self.image_size}px_{key}"
        npy, meta_path = cache / f"{stem}.cache.npy", cache / f"{stem}.json"
        meta = _read_cache_meta(meta_path, npy, key, self.image_size)
        damaged = meta if meta is not None and meta.get("crc32") != _checksum(npy) else None
        if meta is None or damaged is not None:
            try:
                cache.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"cannot create cache_dir {cache}: {exc.strerror or exc}") from None
            if not os.access(cache, os.W_OK):
                raise UserError(f"cache_dir {cache} is not writable (pass another cache_dir, or False to disable)")
            meta = self._build_cache(npy, meta_path, key, candidates, workers)
            self.cache_status = "built"
            if damaged is not None:
                self.cache_status = ("rebuilt: the old cache failed its checksum (damaged)" if damaged.get("crc32")
                                     else "rebuilt: the old cache had no checksum")  # fmt: skip
        else:
            self.cache_status = "reused"
        self.cache_path = npy
        self._count = int(meta["count"])
        return list(meta["files"]), [(p, r) for p, r in meta["skipped"]]

    def _build_cache(
        self, npy: Path, meta_path: Path, key: str, candidates: list[str], workers: int
    ) -> dict[str, Any]:
        """Decode every candidate into ``npy``, written with plain file writes (not a memory map: a full
        disk then raises an error instead of killing the process with SIGBUS), via a temporary file
        that any failure removes, after checking that the disk has room for it."""
        S = self.image_size
        n, row_bytes = len(candidates), S * S * 3
        remove_dead_tmp_files(npy.parent)  # left by builds that were killed
        _check_free_space(npy.parent, n * row_bytes + 2**20, f"the image cache of {n} images at {S}px")
        tmp = npy.with_name(f".{npy.name}.{os.getpid()}.tmp")
        good: list[str] = []
        skipped: list[tuple[str, str]] = []
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                  "shape": (n, S, S, 3)}  # fmt: skip
        try:
            with open(tmp, "wb") as fh:
                np.lib.format.write_array_header_1_0(fh, header)
                jobs = [(self.root / rel, S) for rel in candidates]
                results = _pool_map(_decode_one, jobs, workers, self.progress, f"caching {self.root.name} at {S}px")
                for rel, (img, reason) in zip(candidates, results):
                    if img is None:
                        skipped.append((rel, reason or "unreadable"))
                    else:
                        fh.write(np.ascontiguousarray(img, dtype=np.uint8).tobytes())
                        good.append(rel)
                fh.write(bytes(row_bytes * (n - len(good))))  # rows of skipped files: never read
                fh.flush()
                os.fsync(fh.fileno())
            crc32 = _checksum(tmp)
            os.replace(tmp, npy)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise environment_error(exc, npy.parent, "write the image cache in") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        meta = {
            "version": _CACHE_VERSION,
            "key": key,
            "root": str(self.root.resolve()),
            "image_size": S,
            "count": len(good),
            "files": good,
            "skipped": skipped,
            "crc32": crc32,
        }
        atomic_write_text(meta_path, json.dumps(meta))
        return meta

    # --- access ---
    def _images(self) -> np.ndarray:
        if self._array is None:  # opened lazily, so each DataLoader worker maps the file itself
            self._array = np.load(self.cache_path, mmap_mode="r")
        return self._array

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None
        return state

    def __len__(self) -> int:
        return len(self._rows)

    def _uint8(self, i: int) -> np.ndarray:
        row = int(self._rows[i])
        if self.cache_path is not None:
            return self._images()[row]
        return load_image(self.root / self.rel_files[row], self.image_size)

    def subset(self, rel_files: Sequence[str], *, augment: bool | Augment = False) -> "FaceFolder":
        """A view on some of this folder's images (sharing its cache), e.g. one split."""
        index = {rel: i for i, rel in enumerate(self.rel_files)}
        missing = [r for r in rel_files if r not in index]
        if missing:
            raise UserError(
                f"{len(missing)} requested file(s) are missing from {self.root} or unreadable: "
                f"{', '.join(missing[:SKIPPED_SHOWN])}"
            )
        view = object.__new__(FaceFolder)
        view.__dict__.update(self.__getstate__())
        view.augment = as_augment(augment)
        # keep the cache rows of the full set but expose only the chosen files
        view._rows = np.array([self._rows[index[r]] for r in rel_files], dtype=np.int64)
        view.rel_files = [self.rel_files[index[r]] for r in rel_files]
        view.files = [self.root / r for r in view.rel_files]
        if self.cache_path is None:
            # without a cache, rows index rel_files directly: rebase them on the view's own list
            view._rows = np.arange(len(view.rel_files))
        return view

    def __repr__(self) -> str:
        cache = f", cache={self.cache_path}" if self.cache_path else ", no cache"
        return (
            f"FaceFolder({str(self.root)!r}, image_size={self.image_size}, {len(self)} images, "
            f"{len(self.skipped)} skipped{cache})"
        )


def _check_free_space(folder: Path, needed: int, what: str) -> None:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed:
        raise UserError(
            f"not enough disk space in {folder} for {what}: needs {needed / 2**20:.0f} MiB, {free / 2**20:.0f} MiB "
            f"free; free some space, point cache_dir (or {CACHE_ENV}) elsewhere, or set it to off"
        )


def _checksum(path: Path) -> str:
    """CRC-32 of a cache file, read in 16 MiB blocks (~1 GB/s): checked at every open, so bytes damaged
    in place are rebuilt instead of served as wrong pixels. A cache from before checksums has none and
    is rebuilt once."""
    crc = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            crc = zlib.crc32(block, crc)
    return f"{crc:08x}"


def _read_cache_meta(meta_path: Path, npy: Path, key: str, image_size: int) -> dict[str, Any] | None:
    """The cache's metadata if it is complete and matches ``key``; None means (re)build it."""
    if not (meta_path.exists() and npy.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("version") != _CACHE_VERSION or meta.get("key") != key or meta.get("image_size") != image_size:
            return None
        arr = np.load(npy, mmap_mode="r")
        if arr.dtype != np.uint8 or arr.shape[1:] != (image_size, image_size, 3) or arr.shape[0] < meta["count"]:
            return None
        if len(meta["files"]) != meta["count"]:
            return None
        return meta
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_image_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise UserError(f"image_size must be an integer of at least 8 pixels, got {image_size!r}")
    return int(image_size)


def load_face(path: str | Path, image_size: int) -> torch.Tensor:
    """One image file -> uint8 (3, image_size, image_size), as the datasets' items.

    For a user's own photos (e.g. the reconstruct command); raises UserError naming the file.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"image {path} does not exist")
    if path.is_dir():
        raise UserError(f"image {path} is a directory, not an image file")
    try:
        arr = load_image(path, check_image_size(image_size))
    except ImageDecodeError as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None
    return image_tensor(arr)


# --- synthetic faces -----------------------------------------------------------------------------


class SyntheticFaces(_ImageDataset):
    """Built-in synthetic faces (:mod:`mae_utils.synthetic`) with the FaceFolder item contract.

    Face ``k`` of generator ``seed`` is the same image whatever ``n`` or ``indices`` are;
    ``indices`` picks which of the ``n`` faces this dataset holds (one split). Images are drawn
    once, into memory as uint8, so epochs cost no drawing.
    """

    def __init__(
        self,
        n: int,
        image_size: int,
        seed: int = 0,
        *,
        augment: bool | Augment = False,
        indices: Sequence[int] | np.ndarray | None = None,
        progress: bool | None = None,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise UserError(f"n (number of synthetic faces) must be a positive integer, got {n!r}")
        self.n = int(n)
        self.image_size = check_image_size(image_size)
        self.seed = int(seed)
        self.augment = as_augment(augment)
        idx = np.arange(self.n) if indices is None else np.asarray(list(indices), dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise UserError(f"synthetic face indices must lie in [0, {self.n}), got {int(idx.min())}..{int(idx.max())}")
        self.indices = idx
        self.names = [f"synthetic/{int(i):06d}" for i in idx]
        show = len(idx) >= 500 if progress is None else progress
        self.images = generate_faces(size=self.image_size, seed=self.seed, indices=idx, progress=show,
                                     desc=f"drawing synthetic faces at {self.image_size}px")  # fmt: skip
        self.skipped: list[tuple[Path, str]] = []

    def __len__(self) -> int:
        return len(self.indices)

    def _uint8(self, i: int) -> np.ndarray:
        return self.images[i]

    def __repr__(self) -> str:
        return f"SyntheticFaces({len(self)} of {self.n}, image_size={self.image_size}, seed={self.seed})"


# --- several folders -----------------------------------------------------------------------------


class FolderUnion(_ImageDataset):
    """Several folders' images (one split of each) as one dataset, folder after folder.

    ``parts`` maps each folder's name (:func:`mae_utils.util.folders.folder_names`) to its images
    (a :class:`FaceFolder`, usually one split of it, with its own cache); the union's names are
    ``NAME/relative path``, unique even where two folders hold files of the same name.
    """

    def __init__(self, parts: dict[str, FaceFolder], *, augment: bool | Augment = False) -> None:
        if not parts:
            raise UserError("a union of folders needs at least one folder")
        self.parts = dict(parts)
        self.augment = as_augment(augment)
        self.image_size = next(iter(self.parts.values())).image_size
        self.rel_files = [f"{name}/{rel}" for name, ds in self.parts.items()
                          for rel in ds.rel_files]
        self.skipped = [s for ds in self.parts.values() for s in ds.skipped]
        self._ends = np.cumsum([len(ds) for ds in self.parts.values()])

    def __len__(self) -> int:
        return int(self._ends[-1])

    def _uint8(self, i: int) -> np.ndarray:
        k = int(np.searchsorted(self._ends, i, side="right"))
        start = int(self._ends[k - 1]) if k else 0
        return list(self.parts.values())[k]._uint8(i - start)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name} {len(ds)}" for name, ds in self.parts.items())
        return f"FolderUnion({len(self)} images: {sizes})"

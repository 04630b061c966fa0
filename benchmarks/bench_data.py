"""Data-loading speed: decoding every epoch versus the uint8 cache, side by side, at 64/128/256 px.

    python benchmarks/bench_data.py --data-dir ../shared/faces/utkface --limit 4000

For each size it times one full epoch through a DataLoader (batch 64, no augmentation) twice:
``FaceFolder(cache_dir=False)`` decodes and resizes every JPEG on every access; ``FaceFolder`` with
a cache reads the memory-mapped uint8 array. The one-off cost of building the cache is reported
separately. It also times the synthetic face generator at 64 px. Prints a table; nothing is saved
unless ``--json`` is given.

At 256 px a cached epoch is bound by memory, not decoding: every item is a fresh 768 KiB float
tensor, and glibc hands such blocks back to the kernel after use, so each one page-faults in again.
Keeping freed memory in the process (``MALLOC_MMAP_THRESHOLD_=4294967296
MALLOC_TRIM_THRESHOLD_=4294967296``) made cached 256 px epochs 2-3x faster on a 2-core VM.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mae_utils.data import FaceFolder, build_loader, scan_images  # noqa: E402
from mae_utils.synthetic import generate_faces  # noqa: E402


def _epoch(ds: FaceFolder, batch_size: int, workers: int) -> float:
    """Seconds for one pass over ``ds`` (loader construction and worker start-up included)."""
    t0 = time.perf_counter()
    loader = build_loader(ds, batch_size, shuffle=True, num_workers=workers, seed=0)
    n = 0
    for batch in loader:
        n += batch.shape[0]
    assert n == len(ds)
    return time.perf_counter() - t0


def _synthetic_rate(size: int = 64, n: int = 2000) -> float:
    generate_faces(64, size, seed=123)  # warm-up
    t0 = time.perf_counter()
    generate_faces(n, size, seed=0)
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    p.add_argument("--data-dir", required=True, help="folder of face images")
    p.add_argument("--limit", type=int, default=None, help="use a seeded random subset of this many files")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (default 0: one process)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads in the loading process (default 1, as in a DataLoader worker)")  # fmt: skip
    p.add_argument("--cache-dir", default=None, help="where to build the caches (default: a temporary folder)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    files, _ = scan_images(args.data_dir)
    if args.limit and len(files) > args.limit:
        keep = np.sort(np.random.default_rng(0).choice(len(files), args.limit, replace=False))
        files = [files[i] for i in keep]
    tmp = Path(tempfile.mkdtemp(prefix="maskae-bench-")) if args.cache_dir is None else Path(args.cache_dir)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{len(files)} images from {args.data_dir}; batch {args.batch_size}, {args.workers} worker(s), "
          f"{args.threads} torch thread(s); {os.cpu_count()} CPUs, load average {load:.1f}")  # fmt: skip
    rows = []
    try:
        for size in args.sizes:
            plain = FaceFolder(args.data_dir, size, files=files, cache_dir=False, progress=False)
            t0 = time.perf_counter()
            cached = FaceFolder(args.data_dir, size, files=files, cache_dir=tmp, progress=False)
            build = time.perf_counter() - t0
            n = len(plain)
            t_dec = _epoch(plain, args.batch_size, args.workers)
            t_cache = _epoch(cached, args.batch_size, args.workers)
            t_cache2 = _epoch(cached, args.batch_size, args.workers)  # a second, warm epoch
            mb = cached.cache_path.stat().st_size / 2**20
            row = {
                "size": size,
                "images": n,
                "decode_img_s": n / t_dec,
                "cache_img_s": n / t_cache,
                "cache_warm_img_s": n / t_cache2,
                "speedup": t_dec / t_cache,
                "cache_build_s": build,
                "cache_mb": mb,
            }
            rows.append(row)
            print(
                f"  {size:>4}px: decode {row['decode_img_s']:8.0f} img/s | cache {row['cache_img_s']:8.0f} img/s "
                f"(warm {row['cache_warm_img_s']:.0f}) | {row['speedup']:.1f}x | build {build:.1f} s, {mb:.0f} MiB",
                flush=True,
            )
            cached.cache_path.unlink(missing_ok=True)
    finally:
        if args.cache_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    synth = _synthetic_rate()
    print()
    print(
        "| size | images | decode every epoch (img/s) | cached epoch (img/s) | cached, 2nd epoch (img/s) "
        "| cached / decode | cache build (s) | cache size (MiB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['size']} | {r['images']} | {r['decode_img_s']:.0f} | {r['cache_img_s']:.0f} "
            f"| {r['cache_warm_img_s']:.0f} "
            f"| {r['speedup']:.1f}x | {r['cache_build_s']:.1f} | {r['cache_mb']:.0f} |"
        )
    print(f"\nsynthetic faces at 64 px: {synth:.0f} img/s (one process)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "synthetic_64_img_s": synth}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

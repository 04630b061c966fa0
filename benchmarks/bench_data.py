"""Data-loading speed: the uint8 cache against decoding every epoch, side by side, at 64/128/256 px.

    python benchmarks/bench_data.py --data-dir data/my_faces --limit 2000

For each size it builds the cache (timed on its own), then times epochs through a DataLoader
(batch 64, shuffled, the items training gets: uint8 (3, S, S)) with 1 worker and with N workers
(default: the CPU count, at most 8), decoding every JPEG (``FaceFolder(cache_dir=False)``) and
reading the memory-mapped cache, in turns. The rate counts from the first batch to the last, so
worker start-up is left out and the number is what a running epoch sustains. "Per worker
CPU-second" divides the images by the CPU time the loading processes spent on them (median over
worker counts and rounds): what one worker delivers on a core of its own, however busy the machine. Normalisation and
augmentation are not part of it: they run per batch on the training device
(:func:`mae_utils.transforms.batch_to_input`). Prints a table (and the load average, since the
machine may be shared: read the ratios, which are measured side by side); ``--json`` saves it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mae_utils.data import FaceFolder, scan_images  # noqa: E402
from mae_utils.util.loaders import build_loader  # noqa: E402
from mae_utils.synthetic import generate_faces  # noqa: E402


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (Linux /proc; NaN elsewhere)."""
    total = 0.0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")
    return total


def epoch_rate(ds: FaceFolder, batch_size: int, workers: int) -> tuple[float, float]:
    """(images per second of wall time, images per CPU-second of the loading processes) over one
    shuffled epoch, from the first batch to the last. The second number does not depend on how busy
    the machine is: it is what one worker (or the main process, with 0 workers) can deliver per core."""
    loader = build_loader(ds, batch_size, shuffle=True, num_workers=workers, seed=0)
    it = iter(loader)
    first = next(it)
    pids = [w.pid for w in getattr(it, "_workers", [])] or [os.getpid()]
    cpu0, t0 = _cpu_seconds(pids), time.perf_counter()
    n = 0
    for batch in it:
        n += batch.shape[0]
        if n + first.shape[0] == len(ds):  # the last batch: read the workers' clocks before they exit
            cpu1 = _cpu_seconds(pids)
    seconds = time.perf_counter() - t0
    assert first.dtype == torch.uint8 and n + first.shape[0] == len(ds)
    del it, loader  # stops persistent workers before the next measurement
    return n / seconds, n / (cpu1 - cpu0) if cpu1 > cpu0 else float("nan")


def _synthetic_rate(size: int = 64, n: int = 2000) -> float:
    generate_faces(64, size, seed=123)  # warm-up
    t0 = time.perf_counter()
    generate_faces(n, size, seed=0)
    return n / (time.perf_counter() - t0)


def format_table(rows: list[dict], workers: list[int]) -> str:
    head = ["size", "images"]
    for w in workers:
        head += [f"decode, {w} worker(s) (img/s)", f"cached, {w} worker(s) (img/s)", f"cached / decode, {w}"]
    head += ["per worker CPU-second: decode / cached (img)", "cached / decode, per CPU", "cache build (s)",
             "cache (MiB)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in rows:
        cells = [f"{r['size']} px", str(r["images"])]
        for w in workers:
            d, c = r["decode_img_s"][str(w)], r["cache_img_s"][str(w)]
            cells += [f"{d:.0f}", f"{c:.0f}", f"{c / d:.1f}x"]
        dc, cc = r["decode_img_per_cpu_s"], r["cache_img_per_cpu_s"]
        cells += [f"{dc:.0f} / {cc:.0f}", f"{cc / dc:.1f}x", f"{r['cache_build_s']:.1f}", f"{r['cache_mb']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    p.add_argument("--data-dir", required=True, help="folder of face images")
    p.add_argument("--limit", type=int, default=None, help="use a seeded random subset of this many files")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=None,
                   help="DataLoader worker counts to compare (default: 1 and the CPU count, at most 8)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=1, help="decode/cached turns per setting; the median counts")
    p.add_argument("--cache-dir", default=None, help="where to build the caches (default: a temporary folder)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    workers = args.workers or sorted({1, max(1, min(8, os.cpu_count() or 1))})
    files, _ = scan_images(args.data_dir)
    if args.limit and len(files) > args.limit:
        keep = np.sort(np.random.default_rng(0).choice(len(files), args.limit, replace=False))
        files = [files[i] for i in keep]
    tmp = Path(tempfile.mkdtemp(prefix="maskae-bench-")) if args.cache_dir is None else Path(args.cache_dir)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"{len(files)} images from {args.data_dir}; batch {args.batch_size}, workers {workers}; "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)  # fmt: skip
    rows = []
    try:
        for size in args.sizes:
            plain = FaceFolder(args.data_dir, size, files=files, cache_dir=False, progress=False)
            t0 = time.perf_counter()
            cached = FaceFolder(args.data_dir, size, files=files, cache_dir=tmp, progress=False)
            build = time.perf_counter() - t0
            row = {"size": size, "images": len(cached), "cache_build_s": build,
                   "cache_mb": cached.cache_path.stat().st_size / 2**20, "decode_img_s": {}, "cache_img_s": {}}  # fmt: skip
            dec_cpu, cac_cpu = [], []
            for w in workers:
                dec, cac = [], []
                for _ in range(args.rounds):  # in turns, so a busy neighbour slows both alike
                    wall, cpu = epoch_rate(plain, args.batch_size, w)
                    dec.append(wall)
                    dec_cpu.append(cpu)
                    wall, cpu = epoch_rate(cached, args.batch_size, w)
                    cac.append(wall)
                    cac_cpu.append(cpu)
                row["decode_img_s"][str(w)] = statistics.median(dec)
                row["cache_img_s"][str(w)] = statistics.median(cac)
                print(f"  {size:>4} px, {w} worker(s): decode {row['decode_img_s'][str(w)]:7.0f} img/s, "
                      f"cached {row['cache_img_s'][str(w)]:7.0f} img/s", flush=True)  # fmt: skip
            row["decode_img_per_cpu_s"] = statistics.median(dec_cpu)
            row["cache_img_per_cpu_s"] = statistics.median(cac_cpu)
            rows.append(row)
            cached.cache_path.unlink(missing_ok=True)
    finally:
        if args.cache_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    synth = _synthetic_rate()
    end_load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print()
    print(format_table(rows, workers))
    print(f"\nsynthetic faces at 64 px: {synth:.0f} img/s (one process); "
          f"load average at the end {end_load[0]:.2f} {end_load[1]:.2f} {end_load[2]:.2f}")  # fmt: skip
    if args.json:
        record = {"rows": rows, "workers": workers, "synthetic_64_img_s": synth, "load_start": load, "load_end": end_load}
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

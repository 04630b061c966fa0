"""One command that proves the GPU path on a CUDA machine in under 8 minutes; writes a JSON, prints a table.

    python benchmarks/gpu_check.py [--out runs/gpu_check/gpu_check.json] [--peak-tflops 989]

What it checks, in this order (the slowest, compilation, last and only if time is left):

1. the environment: GPU name and memory, torch / CUDA / cuDNN versions, bf16 support, TF32 as the
   trainer sets it, and whether SDPA's flash kernel runs in bf16;
2. the training step of ``base`` at 256/16 in bf16 (fused AdamW, SDPA), at the largest batch up to
   256 that fits, for maskAE and Hugging Face ``ViTMAEForPreTraining`` (sdpa) interleaved
   (``benchmarks/bench_step.py``): images/s, MFU against the GPU's bf16 peak, peak memory;
3. the input pipeline at 256 px (1024 synthetic faces written as PNG files, read from the uint8 cache,
   training items with augmentation, pinned uint8 batches, :func:`batch_to_input` on the GPU) with
   1..N loader workers, against the step rate: is the GPU starved?
4. a real short run: 2 epochs at 256/16 of the ``small`` model as ``python -m mae_utils train``, a
   SIGKILL once the first checkpoint exists, ``--resume``, one epoch of the seam refiner
   (``refine``), ``evaluate`` (with its model+refine row); the run folder must be
   complete and the resumed run must finish;
5. the same training step under ``torch.compile`` (compile time reported).

Without CUDA it says so in one line and exits 0. ``--cpu-smoke`` runs everything that does not need
CUDA (the settings, the JSON and table, the pipeline and the real run with its kill / resume /
evaluate) at a tiny size on the CPU; ``tests/test_gpu_check.py`` runs it so the script does not rot.
Exit status: 0 when every check passed, 1 when one failed (the JSON says which), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, Subset

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import bench_step  # noqa: E402
from mae_utils.util.checkpoint import load_state  # noqa: E402
from mae_utils.data import FaceFolder  # noqa: E402
from mae_utils.util.errors import UserError  # noqa: E402
from mae_utils.splits import TrainItems  # noqa: E402
from mae_utils.util.loaders import collate_batch  # noqa: E402
from mae_utils.util.runtime import configure_device  # noqa: E402
from mae_utils.synthetic import run_cli as synth_cli  # noqa: E402
from mae_utils.tools.inference import refiner_files  # noqa: E402
from mae_utils.transforms import Augment, batch_to_input  # noqa: E402

# The two sizes of every check: the real one for a GPU, and a tiny one that runs on a CPU in seconds.
SETTINGS: dict[str, dict[str, Any]] = {
    "gpu": dict(
        device="cuda", amp="bf16", step=bench_step.CONFIGS["base-256"], batches=(256, 192, 128, 96, 64, 32, 16, 8),
        steps=5, rounds=3, warmup=3, compile=True, pipeline_workers=(1, 2, 4, 8, 16), pipeline_passes=3,
        image_size=256, patch_size=16, faces=1024,
        train_flags=["--preset", "small", "--batch-size", "64", "--num-workers", "8", "--device", "cuda"],
        eval_flags=["--limit", "64", "--baselines", "mean_fill", "--device", "cuda"],
        refine_flags=["--device", "cuda"],
    ),
    "cpu-smoke": dict(
        device="cpu", amp="none", batches=(8, 4),
        step=dict(image_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=16,
                  decoder_depth=1, decoder_num_heads=2, batch_size=8),
        steps=1, rounds=1, warmup=1, compile=False, pipeline_workers=(0, 1), pipeline_passes=1,
        image_size=32, patch_size=8, faces=48,
        train_flags=["--preset", "tiny", "--embed-dim", "32", "--depth", "1", "--num-heads", "2",
                     "--decoder-embed-dim", "16", "--decoder-depth", "1", "--decoder-num-heads", "2",
                     "--batch-size", "8", "--num-workers", "0", "--device", "cpu"],
        eval_flags=["--limit", "4", "--baselines", "mean_fill", "--device", "cpu"],
        refine_flags=["--width", "8", "--batch-size", "4", "--device", "cpu"],
    ),
}  # fmt: skip
RUN_FILES = ("config.json", "split.json", "metrics.jsonl", "log.txt")
CHECKPOINT_FILES = ("model.safetensors", "state.pt")


# ---------------------------------------------------------------------- pieces
def environment(device: str) -> dict[str, Any]:
    """What the machine is: versions, GPU, bf16, TF32 as the trainer sets it, SDPA flash in bf16."""
    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda": torch.version.cuda, "cpu_count": os.cpu_count(), "device": device}  # fmt: skip
    if device != "cuda":
        return env
    props = torch.cuda.get_device_properties(0)
    configure_device(torch.device("cuda", 0), benchmark=False)  # TF32 as training sets it
    env.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(),
               memory_gib=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}",
               cudnn=torch.backends.cudnn.version(), bf16=torch.cuda.is_bf16_supported(),
               tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32)  # fmt: skip
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        q = torch.randn(2, 12, 65, 64, device="cuda", dtype=torch.bfloat16)
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            torch.nn.functional.scaled_dot_product_attention(q, q, q)
        torch.cuda.synchronize()
        env["sdpa_flash_bf16"] = True
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        env["sdpa_flash_bf16"] = f"no: {type(exc).__name__}: {str(exc)[:200]}"
    return env


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def largest_batch(try_batch: Callable[[int], Any], batches: tuple[int, ...]) -> tuple[int, Any]:
    """The first (largest) of ``batches`` for which ``try_batch`` runs without running out of memory."""
    for b in batches:
        try:
            return b, try_batch(b)
        except Exception as exc:  # noqa: BLE001
            if not _is_oom(exc):
                raise
        gc.collect()  # the failed attempt's models are free only once its traceback is gone
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    raise RuntimeError(f"no batch size in {batches} fits in memory")


def step_check(s: dict[str, Any], compile_model: bool, batch: int | None, peak: float | None,
               log: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    """maskAE and HF sdpa, interleaved, at the largest batch that fits (or ``batch``)."""
    contenders = ("maskae", "hf-sdpa")
    if importlib.util.find_spec("transformers") is None:
        contenders = ("maskae",)
        log("transformers is not installed: maskAE alone")

    def run(b: int) -> dict[str, dict[str, float]]:
        cfg = {**s["step"], "batch_size": b}
        return bench_step.time_contenders(cfg, contenders, device=s["device"], amp=s["amp"], steps=s["steps"],
                                          rounds=s["rounds"], warmup=s["warmup"], compile_model=compile_model,
                                          peak_flops=peak, log=log)  # fmt: skip

    b, res = largest_batch(run, (batch,) if batch else s["batches"])
    out: dict[str, Any] = {"batch_size": b, "compile": compile_model, "results": res}
    if "hf-sdpa" in res:
        out["maskae_vs_hf"] = res["maskae"]["images_per_s"] / res["hf-sdpa"]["images_per_s"]
    return out


def write_faces(workdir: Path, s: dict[str, Any]) -> Path:
    """Synthetic faces as PNG files, as ``python -m mae_utils synth`` writes them (photos' code path)."""
    faces = workdir / "faces"
    synth_cli(argparse.Namespace(out=str(faces), n=s["faces"], size=s["image_size"], seed=0))
    return faces


def pipeline_check(faces: Path, workdir: Path, s: dict[str, Any], batch: int, step_rate: float | None,
                   log: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    """Training items -> pinned uint8 batches -> batch_to_input on the device, for each worker count."""
    ds = FaceFolder(faces, s["image_size"], cache_dir=workdir / "cache", progress=False)
    n_patches = (s["image_size"] // s["patch_size"]) ** 2
    items = TrainItems(Subset(ds, list(range(len(ds))) * s["pipeline_passes"]), n_patches, seed=0, salt=1,
                       augment=Augment())  # fmt: skip
    items.epoch = 0
    dev = torch.device(s["device"])
    rates: dict[str, float] = {}
    for w in s["pipeline_workers"]:
        loader = DataLoader(items, batch_size=batch, shuffle=True, num_workers=w, pin_memory=dev.type == "cuda",
                            collate_fn=collate_batch, drop_last=True, prefetch_factor=4 if w else None)  # fmt: skip
        it = iter(loader)
        imgs, noise, aug = next(it)
        batch_to_input(imgs, dev, augment=aug)
        t0, n = time.perf_counter(), 0
        for imgs, noise, aug in it:
            x = batch_to_input(imgs, dev, augment=aug)
            noise.to(dev, non_blocking=True)
            n += x.shape[0]
        if dev.type == "cuda":
            torch.cuda.synchronize()
        rates[str(w)] = n / max(time.perf_counter() - t0, 1e-9)
        log(f"  pipeline, {w} worker(s): {rates[str(w)]:.0f} img/s")
        del it, loader
    out: dict[str, Any] = {"image_size": s["image_size"], "batch_size": batch, "images_per_s": rates}
    if step_rate:
        out["step_images_per_s"] = step_rate
        enough = [int(w) for w, r in rates.items() if r >= step_rate]
        out["workers_to_keep_up"] = min(enough) if enough else None
    return out


def _count_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def train_argv(faces: Path, workdir: Path, s: dict[str, Any]) -> list[str]:
    """``python -m mae_utils`` arguments of the real run (2 epochs into ``workdir/run``)."""
    return ["train", "--data-dir", str(faces), "--out-dir", str(workdir / "run"), "--image-size", str(s["image_size"]),
            "--patch-size", str(s["patch_size"]), "--epochs", "2", "--cache-dir", str(workdir / "cache"),
            "--sample-every", "1", *s["train_flags"]]  # fmt: skip


def evaluate_argv(run_dir: Path, s: dict[str, Any]) -> list[str]:
    return ["evaluate", "--run", str(run_dir), *s["eval_flags"]]


def refine_argv(run_dir: Path, s: dict[str, Any]) -> list[str]:
    """One epoch of the seam refiner on the run (its training, validation and files on the device)."""
    return ["refine", "--run", str(run_dir), "--epochs", "1", *s["refine_flags"]]


def run_check(faces: Path, workdir: Path, s: dict[str, Any], run: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """2 epochs, SIGKILL after the first checkpoint, --resume, refine, evaluate; is the run folder complete?"""
    run_dir = workdir / "run"
    flags = train_argv(faces, workdir, s)[1:]
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    with open(workdir / "train.log", "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "mae_utils", "train", *flags], cwd=ROOT, stdout=fh,
                                stderr=subprocess.STDOUT, env=_env())  # fmt: skip
        state = run_dir / "checkpoints" / "last" / "state.pt"
        while proc.poll() is None and not state.exists():
            time.sleep(0.02)
        out["killed"] = proc.poll() is None
        if out["killed"]:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    out["first_epoch_s"] = time.perf_counter() - t0
    # the epoch the checkpoint holds (metrics.jsonl may lag it by a line: the kill can land between
    # the checkpoint and the metrics line; --resume rewrites metrics.jsonl from the checkpoint)
    out["checkpoint_epoch_at_kill"] = load_state(run_dir / "checkpoints" / "last")["epoch"] if state.exists() else 0
    if not out["killed"]:
        out["train_tail"] = (workdir / "train.log").read_text()[-1500:]
    resumed = run(["train", "--resume", str(run_dir)], "resume")
    out["resume"] = resumed
    out["epochs_after_resume"] = _count_lines(run_dir / "metrics.jsonl")
    out["refine"] = run(refine_argv(run_dir, s), "refine")
    out["evaluate"] = run(evaluate_argv(run_dir, s), "evaluate")
    missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
    refiner = refiner_files(run_dir)
    missing += [str(refiner[k].relative_to(run_dir)) for k in ("weights", "state") if not refiner[k].is_file()]
    missing += [f"checkpoints/{c}/{f}" for c in ("last", "best") for f in CHECKPOINT_FILES
                if not (run_dir / "checkpoints" / c / f).is_file()]  # fmt: skip
    missing += [d for d in ("samples", "eval") if not any((run_dir / d).glob("*.png"))]
    missing += [] if any((run_dir / "eval").glob("*.json")) else ["eval/*.json"]
    out["missing"] = missing
    out["ok"] = (out["killed"] and out["checkpoint_epoch_at_kill"] == 1 and resumed["rc"] == 0
                 and out["epochs_after_resume"] == 2 and out["refine"]["rc"] == 0 and out["evaluate"]["rc"] == 0
                 and "model+refine" in out["evaluate"]["tail"] and not missing)  # fmt: skip
    return out


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _cli_runner(workdir: Path) -> Callable[..., dict[str, Any]]:
    def run(argv: list[str], name: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "mae_utils", *argv], cwd=ROOT, env=_env(),
                              capture_output=True, text=True)  # fmt: skip
        (workdir / f"{name}.log").write_text(proc.stdout + proc.stderr)
        return {"rc": proc.returncode, "seconds": time.perf_counter() - t0, "tail": (proc.stdout + proc.stderr)[-800:]}

    return run


# ---------------------------------------------------------------------- report
def format_report(report: dict[str, Any]) -> str:
    env = report["environment"]
    rows = [("check", "result"), ("---", "---")]
    if env.get("gpu"):
        rows.append(("environment", f"{env['gpu']} ({env['memory_gib']:.0f} GiB, sm {env['capability']}), torch "
                     f"{env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, bf16 {env['bf16']}, TF32 "
                     f"{env['tf32_matmul']}, SDPA flash bf16 {env['sdpa_flash_bf16']}"))  # fmt: skip
    else:
        rows.append(("environment", f"CPU ({env['cpu_count']} cores), torch {env['torch']}"))
    for key in ("step", "step_compiled"):
        step = report.get(key)
        if not step:
            continue
        if "skipped" in step:
            rows.append((key, f"skipped: {step['skipped']}"))
            continue
        for name, r in step["results"].items():
            bits = [f"{r['images_per_s']:.1f} img/s", f"{r['step_ms']:.1f} ms/step"]
            if "mfu" in r:
                bits.append(f"MFU {100 * r['mfu']:.1f}%")
            if "peak_mem_mb" in r:
                bits.append(f"peak {r['peak_mem_mb'] / 1024:.2f} GiB")
            if step["compile"]:
                bits.append(f"warm-up incl. compile {r['warmup_s']:.0f} s")
            rows.append((f"{'compiled ' if step['compile'] else ''}step {name}, batch {step['batch_size']}",
                         ", ".join(bits)))  # fmt: skip
        if "maskae_vs_hf" in step:
            rows.append((f"{'compiled ' if step['compile'] else ''}maskAE / HF sdpa", f"{step['maskae_vs_hf']:.2f}x"))
    pipe = report.get("pipeline")
    if pipe:
        rates = ", ".join(f"{w} workers {r:.0f}" for w, r in pipe["images_per_s"].items())
        verdict = ""
        if "step_images_per_s" in pipe:
            keep = pipe["workers_to_keep_up"]
            verdict = (f"; step {pipe['step_images_per_s']:.0f} img/s: "
                       + (f"{keep} worker(s) keep up" if keep is not None else "the GPU is starved at every count"))  # fmt: skip
        rows.append((f"input pipeline {pipe['image_size']} px (img/s)", rates + verdict))
    run = report.get("run")
    if run:
        rows.append(("run: kill after epoch 1", f"{'yes' if run['killed'] else 'NO'} (checkpoint of epoch "
                     f"{run['checkpoint_epoch_at_kill']}, {run['first_epoch_s']:.0f} s)"))  # fmt: skip
        rows.append(("run: --resume", f"rc {run['resume']['rc']}, {run['epochs_after_resume']} epochs, "
                     f"{run['resume']['seconds']:.0f} s"))  # fmt: skip
        if "refine" in run:
            rows.append(("run: refine (1 epoch)", f"rc {run['refine']['rc']}, {run['refine']['seconds']:.0f} s"))
        rows.append(("run: evaluate", f"rc {run['evaluate']['rc']}, {run['evaluate']['seconds']:.0f} s"))
        rows.append(("run folder complete", "yes" if not run["missing"] else f"NO, missing {run['missing']}"))
    rows.append(("all checks passed", "yes" if report["ok"] else f"NO: {', '.join(report['failed'])}"))
    rows.append(("total time", f"{report['seconds']:.0f} s"))
    return "\n".join(f"| {a} | {b} |" for a, b in rows)


# ---------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    p.add_argument("--out", default="runs/gpu_check/gpu_check.json", help="where to write the JSON report")
    p.add_argument("--workdir", default=None, help="scratch folder (default: next to --out; removed unless --keep)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (faces, cache, run, logs)")
    p.add_argument("--cpu-smoke", action="store_true", help="run every part that needs no CUDA, tiny, on the CPU")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the GPU's dense bf16 peak for the MFU (default: looked up by GPU name; H200 989)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=None, help="step batch (default: the largest up to 256 that fits)")
    p.add_argument("--budget-s", type=float, default=450.0,
                   help="the compiled step runs only if this much minus the time used leaves 150 s (default 450)")  # fmt: skip
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile step")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        print("error: --batch-size must be >= 1", file=sys.stderr)
        return 2
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        print("error: --peak-tflops must be positive", file=sys.stderr)
        return 2
    if not args.cpu_smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here, nothing to check (--cpu-smoke runs the parts that need none)")
        return 0
    s = SETTINGS["cpu-smoke" if args.cpu_smoke else "gpu"]
    start = time.perf_counter()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(args.workdir) if args.workdir else out.parent / "work"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    log = lambda m: print(m, flush=True)  # noqa: E731
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    report: dict[str, Any] = {"mode": "cpu-smoke" if args.cpu_smoke else "gpu", "environment": environment(s["device"])}
    failed: list[str] = []

    def section(name: str, fn: Callable[[], Any]) -> Any:
        log(f"== {name} ({time.perf_counter() - start:.0f} s)")
        try:
            report[name] = fn()
        except Exception as exc:  # noqa: BLE001 - one broken part must not hide the others
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append(name)
            log(f"{name} failed: {type(exc).__name__}: {exc}")
        return report[name]

    try:
        cli = _cli_runner(workdir)
        step = section("step", lambda: step_check(s, False, args.batch_size, peak, log))
        rate = step.get("results", {}).get("maskae", {}).get("images_per_s")
        batch = step.get("batch_size", s["batches"][-1])
        faces = section("faces", lambda: str(write_faces(workdir, s)))
        if "faces" not in failed:
            section("pipeline", lambda: pipeline_check(Path(faces), workdir, s, batch, rate, log))
            run = section("run", lambda: run_check(Path(faces), workdir, s, cli))
            if isinstance(run, dict) and run.get("ok") is False:
                failed.append("run")
        left = args.budget_s - (time.perf_counter() - start)
        if not s["compile"] or args.no_compile:
            report["step_compiled"] = {"skipped": "not asked" if s["compile"] else "not in --cpu-smoke"}
        elif left < 150:
            report["step_compiled"] = {"skipped": f"time budget ({left:.0f} s left of --budget-s {args.budget_s:.0f})"}
        else:
            section("step_compiled", lambda: step_check(s, True, batch, peak, log))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report.pop("faces", None)
    report.update(ok=not failed, failed=failed, seconds=time.perf_counter() - start)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(format_report(report))
    print(f"wrote {out}")
    return 0 if not failed else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)

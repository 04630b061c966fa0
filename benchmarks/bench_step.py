"""Training-step speed and memory: our MAE against Hugging Face ``ViTMAEForPreTraining``.

    python benchmarks/bench_step.py --config tiny-64 small-128

A benchmark, not part of the package: ``transformers`` (a test-only dependency) is imported here
only, and only when a Hugging Face contender is built. ``benchmarks/gpu_check.py`` reuses it.

One step = forward at mask ratio 0.75, backward, AdamW (betas 0.9/0.95, weight decay 0.05). Every
contender gets the same architecture, batch, images and mask noise. Timing is interleaved: each
round runs every contender for a few steps in rotating order, and the median round counts, so a
machine shared with other work slows all contenders alike instead of whichever ran last.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` over the timed steps. On CPU there is no
allocator counter, so each contender runs two steps in a fresh subprocess and reports its peak
resident memory above the resident memory just before the first step (activations, gradients,
optimizer state, allocator slack).

``python benchmarks/bench_step.py [--config tiny-64] [--steps 3] [--rounds 5] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mae_utils.util.errors import UserError  # noqa: E402
from mae_utils.model import MaskedAutoencoder  # noqa: E402
from mae_utils.optim import make_adamw, param_groups  # noqa: E402
from mae_utils.util.runtime import configure_device, resolve_amp, resolve_device  # noqa: E402

# Equal configurations for every contender (the three settings measurements.md reports).
CONFIGS: dict[str, dict[str, int]] = {
    "tiny-64": dict(image_size=64, patch_size=8, embed_dim=192, depth=12, num_heads=3, decoder_embed_dim=128,
                    decoder_depth=4, decoder_num_heads=4, batch_size=64),
    "small-128": dict(image_size=128, patch_size=16, embed_dim=384, depth=12, num_heads=6, decoder_embed_dim=256,
                      decoder_depth=4, decoder_num_heads=8, batch_size=32),
    "base-256": dict(image_size=256, patch_size=16, embed_dim=768, depth=12, num_heads=12, decoder_embed_dim=512,
                     decoder_depth=8, decoder_num_heads=16, batch_size=8),
}  # fmt: skip
CONTENDERS = ("maskae", "hf-sdpa", "hf-eager")
MASK_RATIO = 0.75
# Dense bf16 tensor-core peaks (FLOP/s, no sparsity) for MFU, by the start of the CUDA device name;
# the longest matching name wins. Vendor data sheets: H100/H200 SXM 989 TFLOP/s, H100 PCIe 756,
# A100 312, L40S 362. Others: pass the peak yourself (gpu_check --peak-tflops).
PEAK_FLOPS = {"NVIDIA H200": 989e12, "NVIDIA H100": 989e12, "NVIDIA H100 PCIe": 756e12, "NVIDIA A100": 312e12,
              "NVIDIA L40S": 362e12}  # fmt: skip


def peak_flops_for(device_name: str) -> float | None:
    """The bf16 dense peak of a GPU from :data:`PEAK_FLOPS`, or None if it is not listed."""
    names = [k for k in PEAK_FLOPS if device_name.startswith(k)]
    return PEAK_FLOPS[max(names, key=len)] if names else None


# ---------------------------------------------------------------------- contenders
def _maskae(cfg: dict[str, int], device: torch.device, compile_model: bool):
    model = MaskedAutoencoder(img_size=cfg["image_size"], patch_size=cfg["patch_size"], embed_dim=cfg["embed_dim"],
                              depth=cfg["depth"], num_heads=cfg["num_heads"], decoder_embed_dim=cfg["decoder_embed_dim"],
                              decoder_depth=cfg["decoder_depth"], decoder_num_heads=cfg["decoder_num_heads"]).to(device)  # fmt: skip
    fwd = torch.compile(model) if compile_model else model
    opt = _adamw(param_groups(model, 0.05), device)
    return model, opt, lambda x, noise: fwd(x, mask_ratio=MASK_RATIO, noise=noise)[0]


def _hf(cfg: dict[str, int], device: torch.device, attn: str, compile_model: bool):
    try:  # optional (test-only) dependency: imported when a Hugging Face contender is asked for
        from transformers import ViTMAEConfig, ViTMAEForPreTraining
    except ImportError:
        raise UserError("the Hugging Face contenders need `pip install transformers`") from None

    hf_cfg = ViTMAEConfig(
        image_size=cfg["image_size"], patch_size=cfg["patch_size"], hidden_size=cfg["embed_dim"],
        num_hidden_layers=cfg["depth"], num_attention_heads=cfg["num_heads"], intermediate_size=4 * cfg["embed_dim"],
        decoder_hidden_size=cfg["decoder_embed_dim"], decoder_num_hidden_layers=cfg["decoder_depth"],
        decoder_num_attention_heads=cfg["decoder_num_heads"], decoder_intermediate_size=4 * cfg["decoder_embed_dim"],
        mask_ratio=MASK_RATIO, layer_norm_eps=1e-6, attn_implementation=attn,
    )  # fmt: skip
    model = ViTMAEForPreTraining(hf_cfg).to(device)
    fwd = torch.compile(model) if compile_model else model
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1 and "token" not in n]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not (p.ndim > 1 and "token" not in n)]
    opt = _adamw([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}], device)
    return model, opt, lambda x, noise: fwd(pixel_values=x, noise=noise).loss


def _adamw(groups, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer ``fit`` uses (fused where available), for every contender alike."""
    return make_adamw(groups, 1e-4)


def build_contender(name: str, cfg: dict[str, int], device: torch.device, compile_model: bool = False):
    """(model, optimizer, loss_fn(x, noise))."""
    torch.manual_seed(0)
    if name == "maskae":
        return _maskae(cfg, device, compile_model)
    if name in ("hf-sdpa", "hf-eager"):
        return _hf(cfg, device, name.split("-")[1], compile_model)
    raise UserError(f"unknown contender {name!r}; choose from {', '.join(CONTENDERS)}")


@dataclass
class _Runner:
    name: str
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    amp: torch.dtype | None
    device: torch.device

    def step(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ctx = torch.autocast(self.device.type, dtype=self.amp) if self.amp else _null()
        with ctx:
            loss = self.loss_fn(x, noise)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_flops_per_image(cfg: dict[str, int]) -> float:
    """Analytic FLOPs of one training step per image (forward x 3), matmuls only (2 per MAC)."""
    p, c = cfg["patch_size"], 3
    length = (cfg["image_size"] // p) ** 2
    keep = int(length * (1 - MASK_RATIO))
    te, td = keep + 1, length + 1
    d, dd = cfg["embed_dim"], cfg["decoder_embed_dim"]
    macs = keep * p * p * c * d  # patch embedding of visible patches
    macs += cfg["depth"] * (12 * d * d * te + 2 * te * te * d)  # qkv, proj, mlp (ratio 4); QK^T and AV
    macs += te * d * dd  # decoder embedding
    macs += cfg["decoder_depth"] * (12 * dd * dd * td + 2 * td * td * dd)
    macs += length * dd * p * p * c  # prediction head
    return 3 * 2 * macs


# ---------------------------------------------------------------------- measurements
def time_contenders(
    config_name: str | dict[str, int],
    contenders: tuple[str, ...] = CONTENDERS,
    *,
    device: str = "auto",
    steps: int = 3,
    rounds: int = 5,
    warmup: int = 2,
    compile_model: bool = False,
    amp: str = "auto",
    peak_flops: float | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    """Interleaved timing: {contender: {images_per_s, step_ms, warmup_s, and on CUDA peak_mem_mb, tflops, mfu}}.

    ``config_name``: a key of :data:`CONFIGS` or such a dict itself. ``warmup_s``: wall time of the
    untimed first steps (with ``compile_model``, mostly compilation). CUDA peak memory is the
    contender's own: its weights, gradients and optimizer state plus the step's high-water mark
    (the other contenders' resident memory is subtracted). ``peak_flops``: the GPU's bf16 peak for
    the MFU (default: :func:`peak_flops_for` its name).
    """
    if isinstance(config_name, dict):
        cfg = config_name
    elif config_name in CONFIGS:
        cfg = CONFIGS[config_name]
    else:
        raise UserError(f"unknown bench config {config_name!r}; choose from {', '.join(CONFIGS)}")
    dev = resolve_device(device)
    amp_dtype = resolve_amp(amp, dev)
    configure_device(dev, benchmark=False)  # TF32 on CUDA, as training sets it
    g = torch.Generator().manual_seed(0)
    n, s = cfg["batch_size"], cfg["image_size"]
    x = torch.randn(n, 3, s, s, generator=g).to(dev)
    noise = torch.rand(n, (s // cfg["patch_size"]) ** 2, generator=g).to(dev)
    runners, resident, warm = [], {}, {}
    for name in contenders:
        before = _allocated(dev)
        model, opt, loss_fn = build_contender(name, cfg, dev, compile_model)
        r = _Runner(name, model.train(), opt, loss_fn, amp_dtype, dev)
        t0 = time.perf_counter()
        for _ in range(warmup):  # warm-up (and compilation); creates the optimizer state
            r.step(x, noise)
        _sync(dev)
        warm[name] = time.perf_counter() - t0
        resident[name] = _allocated(dev) - before
        runners.append(r)
    peak = {}
    if dev.type == "cuda":
        for r in runners:  # one step's high-water mark, less what the other contenders hold
            others = _allocated(dev) - resident[r.name]
            torch.cuda.reset_peak_memory_stats(dev)
            r.step(x, noise)
            _sync(dev)
            peak[r.name] = (torch.cuda.max_memory_allocated(dev) - others) / 2**20
    times: dict[str, list[float]] = {r.name: [] for r in runners}
    for k in range(rounds):
        order = runners[k % len(runners):] + runners[: k % len(runners)]
        for r in order:
            _sync(dev)
            t0 = time.perf_counter()
            for _ in range(steps):
                r.step(x, noise)
            _sync(dev)
            times[r.name].append((time.perf_counter() - t0) / steps)
        log(f"  round {k + 1}/{rounds}: " + ", ".join(f"{nm} {n / t[-1]:.0f} img/s" for nm, t in times.items()))
    if dev.type == "cuda" and peak_flops is None:
        peak_flops = peak_flops_for(torch.cuda.get_device_name(dev))
    out = {}
    for name, ts in times.items():
        step_s = statistics.median(ts)
        out[name] = {"images_per_s": n / step_s, "step_ms": 1000 * step_s, "warmup_s": warm[name]}
        if name in peak:
            out[name]["peak_mem_mb"] = peak[name]
        if dev.type == "cuda":
            tflops = train_flops_per_image(cfg) * n / step_s
            out[name]["tflops"] = tflops / 1e12
            if peak_flops:
                out[name]["mfu"] = tflops / peak_flops
    return out


def _allocated(dev: torch.device) -> int:
    return torch.cuda.memory_allocated(dev) if dev.type == "cuda" else 0


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_probe(config_name: str, contender: str, steps: int = 2) -> dict[str, float]:
    """Peak resident memory (MB) of training steps above the resident memory before the first one.

    Meant to run in a fresh process (see :func:`cpu_peak_memory`): the high-water mark is per process.
    """
    cfg = CONFIGS[config_name]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    r = _Runner(contender, *build_contender(contender, cfg, torch.device("cpu")), None, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    n, s = cfg["batch_size"], cfg["image_size"]
    x = torch.randn(n, 3, s, s, generator=g)
    noise = torch.rand(n, (s // cfg["patch_size"]) ** 2, generator=g)
    base = _rss_mb("VmRSS")
    try:  # reset the high-water mark so model building does not count (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    for _ in range(steps):
        r.step(x, noise)
    return {"peak_mem_mb": _rss_mb("VmHWM") - base, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def cpu_peak_memory(config_name: str, contender: str, timeout_s: float = 600) -> float:
    """:func:`memory_probe` in a fresh Python process; returns MB."""
    code = (
        "import json, sys; from bench_step import memory_probe; "
        f"print('RESULT', json.dumps(memory_probe({config_name!r}, {contender!r})))"
    )
    here = str(Path(__file__).resolve().parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])["peak_mem_mb"]
    raise RuntimeError(f"memory probe for {contender} at {config_name} failed:\n{proc.stderr[-2000:]}")


def format_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown table; "maskae speed-up" = our images/s / theirs, memory = their peak / ours."""
    rows = ["| config | contender | images/s | step ms | peak MB | maskae speed-up | peak MB / maskae's | MFU |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for config_name, res in results.items():
        ours = res.get("maskae", {})
        for name, m in res.items():
            speed = ours.get("images_per_s", float("nan")) / m["images_per_s"]
            mem = m.get("peak_mem_mb")
            mem_ratio = mem / ours["peak_mem_mb"] if mem and ours.get("peak_mem_mb") else float("nan")
            mfu = f"{100 * m['mfu']:.1f}%" if "mfu" in m else "-"
            rows.append(f"| {config_name} | {name} | {m['images_per_s']:.1f} | {m['step_ms']:.1f} | "
                        f"{mem if mem is not None else float('nan'):.0f} | "
                        f"{'-' if name == 'maskae' else f'{speed:.2f}x'} | "
                        f"{'-' if name == 'maskae' else f'{mem_ratio:.2f}x'} | {mfu} |")  # fmt: skip
    return "\n".join(rows)


# ---------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        description="Time one training step (forward at mask 0.75, backward, AdamW) for maskAE and Hugging Face "
        "ViTMAEForPreTraining (sdpa and eager attention) at equal configurations, interleaved."
    )
    parser.add_argument("--config", nargs="+", default=["tiny-64"], choices=list(CONFIGS),
                        help="configurations to measure (default: tiny-64)")  # fmt: skip
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=list(CONTENDERS))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "none"),
                        help="auto: bf16 on GPUs that have it, none on CPU")  # fmt: skip
    parser.add_argument("--steps", type=int, default=3, help="steps per contender per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median counts")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per contender first")
    parser.add_argument("--compile", action="store_true", help="torch.compile every contender")
    parser.add_argument("--no-memory", action="store_true", help="skip the CPU memory probes (subprocesses)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    for name in ("steps", "rounds"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be >= 1")
    results: dict[str, dict[str, dict[str, float]]] = {}
    for config_name in args.config:
        print(f"{config_name}: {CONFIGS[config_name]}", flush=True)
        res = time_contenders(config_name, tuple(args.contenders), device=args.device, steps=args.steps,
                              rounds=args.rounds, warmup=args.warmup, compile_model=args.compile, amp=args.amp)  # fmt: skip
        if "peak_mem_mb" not in next(iter(res.values())) and not args.no_memory:
            for name in res:
                res[name]["peak_mem_mb"] = cpu_peak_memory(config_name, name)
        results[config_name] = res
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"results": results, "torch": torch.__version__, "threads": torch.get_num_threads()}, fh, indent=2)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

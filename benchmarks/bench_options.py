"""What the model options cost per training step: partial decoding, the fill-started mask token and
per-image standardisation, against the default model, side by side in one run.

    OMP_NUM_THREADS=1 python benchmarks/bench_options.py [--image-size 64] [--rounds 7] [--steps 3]

One step is exactly what ``fit`` takes (:func:`mae_utils.optim.train_step`: forward, backward,
clipping, AdamW, the One-Cycle schedule) on the default ``TrainConfig`` (the ``cpu`` preset, batch
16) plus the option, on the same synthetic faces and mask noise for every contender. Timing is
interleaved: each round runs every contender for ``--steps`` steps in rotating order and the median
round counts, so a machine shared with other work slows all contenders alike. The harmonic fill
alone (``MaskedAutoencoder.fill_guess`` on one batch) is timed the same way and reported as a share
of the default step.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mae_utils.config import TrainConfig  # noqa: E402
from mae_utils.optim import build_optimizer, train_step  # noqa: E402
from mae_utils.synthetic import generate_faces  # noqa: E402
from mae_utils.train import build_model  # noqa: E402
from mae_utils.transforms import batch_to_input  # noqa: E402

#: The contenders: a name and the TrainConfig fields that differ from the defaults.
CONTENDERS: dict[str, dict[str, object]] = {
    "default": {},
    "decode_fraction 0.5": dict(decode_fraction=0.5),
    "fill_start harmonic": dict(fill_start="harmonic"),
    "decode 0.5 + fill": dict(decode_fraction=0.5, fill_start="harmonic"),
    "standardize_visible": dict(standardize_visible=True),
    "all three": dict(decode_fraction=0.5, fill_start="harmonic", standardize_visible=True),
}


def step_runner(config: TrainConfig, imgs: torch.Tensor, noise: torch.Tensor) -> Callable[[], None]:
    """One training step of ``config``'s model on the batch, as ``fit`` takes it."""
    torch.manual_seed(config.seed)
    model = build_model(config).train()
    optimizer, scheduler, _ = build_optimizer(model, config, total_steps=10_000)
    scaler = torch.amp.GradScaler("cpu", enabled=False)

    def step() -> None:
        train_step(model, imgs, noise, optimizer, scheduler, scaler, mask_ratio=config.mask_ratio,
                   grad_clip=config.grad_clip)  # fmt: skip

    return step


def fill_runner(config: TrainConfig, imgs: torch.Tensor, noise: torch.Tensor) -> Callable[[], None]:
    """The harmonic fill of one batch alone (what ``fill_start`` adds before the decoder)."""
    model = build_model(dataclasses.replace(config, fill_start="harmonic")).eval()
    with torch.no_grad():
        mask = model(imgs, mask_ratio=config.mask_ratio, noise=noise)[2]
    return lambda: model.fill_guess(imgs, mask)


def measure(runners: dict[str, Callable[[], None]], rounds: int, steps: int) -> dict[str, float]:
    """Median seconds per call of each runner over ``rounds`` interleaved rounds of ``steps`` calls."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for name in names:  # warm-up
        runners[name]()
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            for _ in range(steps):
                runners[name]()
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}


def table(seconds: dict[str, float], fill_seconds: float) -> str:
    """The markdown table: ms per step and the ratio to the default step, then the fill alone."""
    base = seconds["default"]
    lines = ["| option | ms / step | vs default | steps per default step |", "|---|---:|---:|---:|"]
    for name, s in seconds.items():
        lines.append(f"| {name} | {s * 1e3:.1f} | {s / base:.2f}x | {base / s:.2f} |")
    lines.append(f"\nharmonic fill alone: {fill_seconds * 1e3:.2f} ms per batch = "
                 f"{fill_seconds / base:.1%} of a default step")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    base = TrainConfig(image_size=args.image_size, batch_size=args.batch_size, device="cpu").validate()
    faces = torch.from_numpy(generate_faces(args.batch_size, size=args.image_size, seed=0, progress=False))
    imgs = batch_to_input(faces.permute(0, 3, 1, 2).contiguous(), torch.device("cpu"))
    grid = args.image_size // base.patch_size
    noise = torch.rand(args.batch_size, grid * grid, generator=torch.Generator().manual_seed(0))
    runners = {name: step_runner(dataclasses.replace(base, **fields), imgs, noise)
               for name, fields in CONTENDERS.items()}  # fmt: skip
    runners["fill alone"] = fill_runner(base, imgs, noise)
    seconds = measure(runners, args.rounds, args.steps)
    fill_seconds = seconds.pop("fill alone")
    print(f"preset {base.preset}, {args.image_size} px, patch {base.patch_size}, batch {args.batch_size}, "
          f"mask ratio {base.mask_ratio}; torch threads {torch.get_num_threads()} "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); median of {args.rounds} interleaved rounds "
          f"x {args.steps} steps")  # fmt: skip
    print(table(seconds, fill_seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

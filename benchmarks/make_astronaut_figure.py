"""A real face anyone may see: the NASA astronaut portrait, four mask kinds, the model against the best
classical inpainting.

``skimage.data.astronaut()`` (Eileen Collins, NASA, public domain) is the one real face this project
commits pixels of. The portrait is cropped to the face (framed like the aligned face chips the recipes
train on), then for each mask kind (random 75%, center block, eyes band, left half)
the figure shows: the masked input, the harmonic (Laplace) inpainting, the model's reconstruction with
the visible patches pasted back (the raw MAE), the same refined by the run's seam refiner and made
seam-free (`evaluate`'s model+refine; without a refiner, or with ``--no-refine``, the seam-free blend
alone, model+blend), and the original, with masked-region PSNR in the titles.

    benchmarks/recipes/cpu_quick.sh data/utkface runs/cpu_quick   # trains the refiner too
    python benchmarks/make_astronaut_figure.py --run runs/cpu_quick --out img/astronaut.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mae_utils import load_model_from_run  # noqa: E402
from mae_utils.baselines import inpaint_harmonic  # noqa: E402
from mae_utils.metrics import paste_visible, psnr_masked  # noqa: E402
from mae_utils.tools.reconstruct import FillSettings, reconstruct_images  # noqa: E402
from mae_utils.tools.inference import load_refiner  # noqa: E402
from mae_utils.viz import new_figure  # noqa: E402

# (top, left, side) of the face in the 512x512 portrait, framed like an aligned face chip (UTKFace):
# eyes about a third of the width apart, at 45% of the height, forehead to chin
FACE_BOX = (37, 155, 140)
MASKS = (("random", "random"), ("center", "center block"), ("eyes", "eyes band"), ("left", "left half"))


def astronaut_face() -> np.ndarray:
    """The public-domain NASA portrait from scikit-image, cropped to the face: uint8 (S, S, 3)."""
    from skimage import data

    top, left, side = FACE_BOX
    return np.ascontiguousarray(data.astronaut()[top : top + side, left : left + side])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)  # fmt: skip
    p.add_argument("--run", required=True, help="a training run folder (runs/NAME)")
    p.add_argument("--out", default=str(ROOT / "img" / "astronaut.png"), help="where to save the PNG")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--seed", type=int, default=0, help="seed of the random mask")
    p.add_argument("--no-refine", action="store_true", help="show model+blend even if the run has a seam refiner")
    args = p.parse_args(argv)

    model, _ = load_model_from_run(args.run, args.checkpoint, "cpu")
    refiner = None if args.no_refine else load_refiner(args.run, "cpu", checkpoint=args.checkpoint)
    fixed, suffix = ("model+refine", "_refine") if refiner is not None else ("model+blend", "_blend")
    face = astronaut_face()
    cols = ("masked", "harmonic", "model", fixed, "original")
    fig = new_figure(1.9 * len(cols), 1.95 * len(MASKS), dpi=110)
    axes = fig.subplots(len(MASKS), len(cols), squeeze=False)
    for r, (kind, label) in enumerate(MASKS):
        res = reconstruct_images(model, [face], FillSettings(kind, 0.75, seed=args.seed), device="cpu",
                                 refiner=refiner)
        original, pm = res["original"], res["pixel_mask"]
        harmonic = paste_visible(inpaint_harmonic(original, pm), original, pm)
        scores = {"harmonic": float(psnr_masked(harmonic, original, pm)[0]), "model": float(res["psnr_masked"][0]),
                  fixed: float(res[f"psnr_masked{suffix}"][0])}  # fmt: skip
        panels = {"masked": res["masked"], "harmonic": harmonic, "model": res["recon_visible"],
                  fixed: res[f"recon{suffix}"], "original": original}  # fmt: skip
        for c, name in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(panels[name][0].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if name in scores:
                ax.set_title(f"{name}: {scores[name]:.1f} dB", fontsize=8)
            elif name == "masked":
                ax.set_title(f"{label} ({float(res['mask'].mean()):.0%})", fontsize=8)
            else:
                ax.set_title("original", fontsize=8)
        print(f"{kind:7s} hidden {float(res['mask'].mean()):.0%}: model {scores['model']:.2f} dB, "
              f"{fixed} {scores[fixed]:.2f} dB, harmonic {scores['harmonic']:.2f} dB, "
              f"blockiness model {float(res['blockiness'][0]):.2f} / {fixed} {float(res[f'blockiness{suffix}'][0]):.2f}")  # fmt: skip
    fig.tight_layout(pad=0.4)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())

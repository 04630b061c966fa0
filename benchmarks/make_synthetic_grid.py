"""Draw the picture of built-in synthetic faces shown in the README: img/synthetic_faces.png.

    python benchmarks/make_synthetic_grid.py [--size 96] [--rows 4] [--cols 8] [--seed 0]

Faces are generated at the requested size (no upscaling), so the grid shows what training sees.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mae_utils.synthetic import face_grid, generate_faces  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "img" / "synthetic_faces.png"))
    args = p.parse_args(argv)
    faces = generate_faces(args.rows * args.cols, args.size, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(face_grid(faces, args.cols, pad=3)).save(out, optimize=True)
    print(f"wrote {out} ({args.rows}x{args.cols} faces at {args.size}px, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

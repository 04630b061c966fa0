"""The command line: ``python -m mae_utils <command> ...``.

Each command lives in the module that does its job; that module exposes
``add_cli_arguments(parser)`` and ``run_cli(args) -> int``. This file only dispatches, and turns a
:class:`~mae_utils.errors.UserError` into one ``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from .errors import UserError

# command -> (module that implements it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("mae_utils.train", "train an MAE (synthetic faces unless --data-dir is given)"),
    "evaluate": ("mae_utils.evaluate", "masked-region PSNR/SSIM of a run against classical baselines"),
    "reconstruct": ("mae_utils.evaluate_reconstruct", "four-panel figure for your own photos"),
    "synth": ("mae_utils.synthetic", "write built-in synthetic faces as PNG files"),
    "bench": ("mae_utils.bench", "training-step speed and memory against Hugging Face ViTMAE"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mae_utils",
        description="maskAE: a Masked Autoencoder for faces.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # a real missing dependency, not an unbuilt command
                raise
            command_parser.set_defaults(_unavailable=name)
            continue
        module.add_cli_arguments(command_parser)
        command_parser.set_defaults(_run=module.run_cli)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_unavailable", None):
        print(f"error: the '{args._unavailable}' command is not available in this version", file=sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

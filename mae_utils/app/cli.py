"""The command line: ``python -m mae_utils <command> ...`` (installed: ``maskae <command> ...``).

Each command lives in the module that does its job; that module exposes
``add_cli_arguments(parser)`` and ``run_cli(args) -> int``. This file only dispatches, and turns a
:class:`~mae_utils.util.errors.UserError` (or an ``OSError`` from the environment: disk full,
permission denied) into one ``error: ...`` line on stderr and exit status 2. Ctrl-C and SIGTERM stop
any command the same way: one line saying what happened and how to go on, exit status 130.

Flags are never guessed: abbreviations are off (``--epoch`` is not ``--epochs``), and an unknown or
misspelt flag is reported by the sub-command's own parser, with its usage and the closest valid
flag.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from pathlib import Path
from typing import Sequence

from ..util.errors import UserError, sigterm_as_interrupt
from ..util.fileio import environment_error


def _prog() -> str:
    """How the user called us: ``maskae`` (the console script) or ``python -m mae_utils``."""
    return "maskae" if Path(sys.argv[0]).name == "maskae" else "python -m mae_utils"


# command -> (module that implements it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("mae_utils.train", "train an MAE (synthetic faces unless --data-dir is given)"),
    "evaluate": (
        "mae_utils.tools.evaluate",
        "masked-region PSNR/SSIM of a run against classical baselines",
    ),
    "reconstruct": ("mae_utils.tools.reconstruct", "four-panel figure for your own photos"),
    "refine": (
        "mae_utils.tools.refine",
        "train a small convolutional refiner across patch borders for a run's MAE",
    ),
    "probe": (
        "mae_utils.tools.probe",
        "linear probes: what the frozen encoder knows, against pixels and random weights",
    ),
    "finetune": (
        "mae_utils.tools.finetune",
        "fine-tune the encoder on labelled faces (or from scratch)",
    ),
    "synth": ("mae_utils.synthetic", "write built-in synthetic faces as PNG files"),
}


# What to do after Ctrl-C or SIGTERM stopped a command; a command that knows more (how many epochs
# it saved) sets ``next_step`` on the KeyboardInterrupt it lets through, as refine does.
NEXT_STEP: dict[str, str] = {
    "train": "a training run continues from its last checkpoint with --resume",
    "finetune": "a fine-tune continues from its last checkpoint with --resume OUT_DIR",
    "probe": "a probe writes nothing: run the same command again",
    "evaluate": "evaluate writes its results at the end: run the same command again",
}
NEXT_STEP_ELSE = "run the same command again"


class StrictParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that takes flags only as spelt in full (``allow_abbrev=False``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def option_names(self) -> list[str]:
        """Every long and short flag this parser knows."""
        return [s for action in self._actions for s in action.option_strings]


def closest_flag(unknown: str, known: Sequence[str]) -> str | None:
    """The known flag nearest to a misspelt one (``--epoch``
    -> ``--epochs``), or None if none is close."""
    name = unknown.split("=", 1)[0]
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def reject_unknown(parser: StrictParser, extras: Sequence[str]) -> None:
    """Exit 2 through ``parser`` (its own usage line)
    naming the unknown arguments and a likely flag."""
    message = f"unrecognized arguments: {' '.join(extras)}"
    flags = [e for e in extras if e.startswith("-") and len(e) > 1]
    for flag in flags:
        guess = closest_flag(flag, parser.option_names())
        if guess is not None:
            message += f" (did you mean {guess}?)"
            break
    parser.error(message)


def build_parser() -> tuple[StrictParser, dict[str, StrictParser]]:
    """The top-level parser and each sub-command's parser."""
    parser = StrictParser(prog=_prog(), description="maskAE: a Masked Autoencoder for faces.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=StrictParser)
    sub.required = True
    commands: dict[str, StrictParser] = {}
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_cli_arguments(command_parser)
        command_parser.set_defaults(_run=module.run_cli)
        commands[name] = command_parser
    return parser, commands


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # argparse would report these from the top-level parser, with the wrong usage line
        reject_unknown(commands[args.command], extras)
    try:
        with sigterm_as_interrupt():  # a scheduler's or kill's stop ends any command as Ctrl-C does
            return int(args._run(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # the environment (disk full, permissions, a vanished file): never a traceback
    except OSError as exc:
        print(f"error: {environment_error(exc, exc.filename or '', 'use')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (errors.Terminated)
        next_step = getattr(exc, "next_step", None) or NEXT_STEP.get(args.command, NEXT_STEP_ELSE)
        print(f"{exc or 'interrupted'}; {next_step}", file=sys.stderr)
        return 130

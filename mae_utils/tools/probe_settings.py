"""Every setting of a probe, in one place: :class:`ProbeSettings`.

One plain dataclass, like :class:`~mae_utils.config.TrainConfig`: the command line builds it from
its flags (``--max-train`` <-> ``max_train``; the field's help text is the flag's), the library call
:func:`mae_utils.tools.probe.probe_run` takes it, and ``notebooks/what_it_learned.ipynb`` fills it
from its parameters. :meth:`ProbeSettings.validate` checks every field once, up front, with
messages that name the field.
"""

from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from ..util.errors import UserError, check_seed
from ..config import DEVICES, annotation_type
from .labels import TASKS, check_pattern
from .readouts import READOUTS

__all__ = ["CHECKPOINTS", "ProbeSettings", "add_settings_arguments", "settings_from_args"]

CHECKPOINTS = ("best", "last")


def _f(default: Any, help: str, **extra: Any) -> Any:
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class ProbeSettings:
    """What to probe, on which faces, and how (see :mod:`mae_utils.tools.probe`)."""

    targets: list[str] = _f(
        [], "what to predict: a synthetic attribute (glasses, beard, hair_colour, skin_tone, yaw, "
        "...), a named group of --label-regex, or any name for class sub-folders",
        flag="--target", metavar="NAME", required=True,
    )
    data_dir: str | None = _f(
        None, "default: the run's own data and split; another folder is split here (seeded, "
        "stratified by label)", metavar="DIR",
    )
    label_regex: str | None = _f(
        None, r"read labels from file names, e.g. '^(?P<age>\d+)_(?P<gender>\d)_(?P<race>\d)_' "
        r"(UTKFace) or 'yaleB(?P<person>\d\d)_' (Yale)", metavar="PATTERN",
    )
    task: str = _f(
        "auto", "classify (logistic regression) or regress (ridge); auto: many distinct numbers "
        "are regressed", choices=TASKS,
    )
    readouts: list[str] = _f(
        list(READOUTS), "the encoder's readouts, each its own row: mean (mean patch token), cls "
        "(class token), grid (patch tokens on 2x2 + 4x4 regions), blocks (every block, and the "
        "best on the validation faces)", choices=READOUTS,
    )
    second_run: str | None = _f(None, "probe a second run's encoder too", metavar="RUN_DIR")
    checkpoint: str = _f("best", "which checkpoint of the run", choices=CHECKPOINTS)
    max_train: int | None = _f(None, "fit on a seeded subset of N training faces; none = all")
    max_test: int | None = _f(None, "score at most N test (and validation) faces; none = all")
    test_frac: float = _f(0.25, "share of faces tested when --data-dir is not the run's data")
    val_frac: float = _f(
        0.15, "share of faces that choose the best block when --data-dir is not the run's data "
        "(the run's own data uses its validation split); 0 = no best-block row",
    )
    cv: int = _f(5, "cross-validation folds that choose the regularisation")
    shuffle_labels: bool = _f(
        False, "honesty check: fit on shuffled labels; every row should score at chance"
    )
    random_weights: bool = _f(True, "probe the same encoder with random weights too")
    pixel_baseline: bool = _f(True, "probe PCA of the pixels at each readout's width too")
    seed: int = _f(0, "seed of splits, subsets and random weights")
    batch_size: int = _f(256, "faces per encoder call")
    device: str = _f("auto", "where the encoder runs", choices=DEVICES)
    cache_dir: str | None = _f(None, "where decoded faces are cached; none = the run's")
    progress: bool = _f(True, "show progress bars", cli=False)

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            self.targets = [self.targets]
        if isinstance(self.readouts, str):
            self.readouts = [self.readouts]
        self.targets, self.readouts = list(self.targets), list(self.readouts)

    def validate(self) -> "ProbeSettings":
        """Check every field once; a :class:`UserError` names the field and the allowed values."""
        if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise UserError(f"name at least one target (--target NAME); got {self.targets!r}")
        for f in fields(self):
            choices = f.metadata.get("choices")
            values = getattr(self, f.name)
            for value in values if isinstance(values, list) else [values]:
                if choices and value not in choices:
                    raise UserError(f"{f.name} must be one of {', '.join(choices)}; got {value!r}")
        if not self.readouts:
            raise UserError(f"readouts: name at least one of {', '.join(READOUTS)}")
        check_seed(self.seed)
        self._check_numbers()
        if self.label_regex:
            check_pattern(self.label_regex)  # before the model and the faces are loaded
        return self

    def _check_numbers(self) -> None:
        for name in ("max_train", "max_test"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise UserError(f"{name} must be at least 2; got {value}")
        if self.cv < 2:
            raise UserError(f"cv must be at least 2; got {self.cv}")
        if self.batch_size < 1:
            raise UserError(f"batch_size must be at least 1; got {self.batch_size}")
        if not 0 < self.test_frac < 1:
            raise UserError(f"test_frac must lie between 0 and 1; got {self.test_frac}")
        if not 0 <= self.val_frac < 1 - self.test_frac:
            raise UserError(f"val_frac must lie in [0, 1 - test_frac); got {self.val_frac}")


# ---------------------------------------------------------------------- command line
def _argument(f: Any) -> tuple[str, dict[str, Any]]:
    """The flag and ``add_argument`` keywords of one settings field."""
    base, optional = annotation_type(f.type)
    flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
    default = f.default_factory() if f.default is MISSING else f.default
    shown = " ".join(map(str, default)) if isinstance(default, list) else default
    shown = "none" if default is None else shown
    help_text = f.metadata["help"]
    if "none =" not in help_text:  # a help that says what none means states the default already
        help_text += f" (default: {shown})"
    kwargs: dict[str, Any] = dict(dest=f.name, default=default, help=help_text)
    if base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
        return flag, kwargs
    if typing.get_origin(base) is list:
        kwargs["nargs"] = "+"
        base = str
    kwargs["type"] = base
    for key in ("choices", "metavar", "required"):
        if key in f.metadata:
            kwargs[key] = f.metadata[key]
    if kwargs.get("required"):
        kwargs.pop("default")
        kwargs["help"] = f.metadata["help"]
    if "choices" not in kwargs and "metavar" not in kwargs:
        kwargs["metavar"] = {int: "N", float: "X"}.get(base, "TEXT")
    return flag, kwargs


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`ProbeSettings` field, its help from the field."""
    for f in fields(ProbeSettings):
        if f.metadata.get("cli", True):
            flag, kwargs = _argument(f)
            parser.add_argument(flag, **kwargs)


def settings_from_args(args: argparse.Namespace) -> ProbeSettings:
    """The validated :class:`ProbeSettings` of parsed command-line ``args``."""
    values = {f.name: getattr(args, f.name) for f in fields(ProbeSettings) if hasattr(args, f.name)}
    return ProbeSettings(**values).validate()

"""Papermill parameters that cannot go wrong silently.

papermill replaces a notebook's defaults by adding a cell after the one tagged ``parameters``; a name
that cell does not know (``-p epoch 1``) only draws a warning, and ``-p overwrite false`` arrives as
the string ``"false"``, which is true. Each notebook therefore runs :func:`check_parameters` right
after that cell:

* the names defined since the snapshot taken before the parameters cell must be the parameters
  cell's own (the annotated ones); any other is refused, naming the closest valid name;
* each value is converted to its annotated type where the text is unambiguous (``"false"``, ``"0"``,
  ``"none"``, ``"3"``, ``"1e-3"``) and refused otherwise.

In ``maskAE.ipynb`` the annotated names are the :class:`~mae_utils.config.TrainConfig` fields (their
help texts live there: :func:`parameter_help`) plus the notebook's own options, and one call,
:func:`check_notebook`, does every check.
"""

from __future__ import annotations

import difflib
import math
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping, MutableMapping

from ..util.errors import UserError
from ..util.rundir import holds_checkpoint
from ..config import TrainConfig, admits_list, annotation_type, load_run_config, same_settings

__all__ = [
    "check_no_shadowed_imports",
    "check_notebook",
    "check_notebook_options",
    "check_parameters",
    "check_run_folder",
    "config_from_params",
    "parameter_help",
]

#: ``maskAE.ipynb``'s own whole-number options (not TrainConfig fields): name -> (lowest, meaning).
NOTEBOOK_OPTIONS = {
    "num_show": (1, "test faces in the results figure"),
    "refine_epochs": (0, "seam refiner epochs after training; 0 for none"),
}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null"}


def check_parameters(namespace: MutableMapping[str, Any], before: set[str]) -> dict[str, Any]:
    """Check and convert a notebook's parameters in place; return them as a dict.

    ``namespace``: the notebook's ``globals()``; ``before``: ``set(globals())`` taken just before the
    parameters cell. The parameters are the names the parameters cell annotates (``epochs: int = 14``);
    papermill's added cell assigns without annotations, so a name it adds that the parameters cell
    does not have is a misspelt or unknown parameter.
    """
    check_no_shadowed_imports(namespace, before)
    annotations = dict(namespace.get("__annotations__", {}))
    declared = [name for name in annotations if name in namespace and name not in before]
    added = [n for n, v in namespace.items()
             if n not in before and not n.startswith("_") and n not in annotations and v is not before]  # fmt: skip
    if added and not namespace.get("_parameters_checked"):  # a re-run in Jupyter sees later cells' names
        name = added[0]
        close = difflib.get_close_matches(name, declared, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserError(
            f"unknown parameter {name!r}{hint} This notebook's parameters: {', '.join(sorted(declared))}"
        )
    values = {}
    for name in declared:
        values[name] = namespace[name] = _convert(name, annotations[name], namespace[name])
    namespace["_parameters_checked"] = True
    return values


#: IPython's own plain-valued globals, defined before any cell runs.
_IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})
#: What papermill's ``-p``/``-r``/``-y`` can assign: plain values, never a module, class or function.
_PAPERMILL_VALUES = (type(None), bool, int, float, str, list, dict)


def check_no_shadowed_imports(namespace: Mapping[str, Any], before: set[str]) -> None:
    """Refuse ``-p torch 1`` or ``-p Image 0``: papermill assigns any name, and one the notebook imported
    before its parameters cell would be replaced by a plain value and break a later cell (after training).

    The names defined before the parameters cell are the notebook's imports (modules, classes,
    functions); one of them holding a plain value now was assigned by papermill.
    """
    if namespace.get("_parameters_checked"):  # a re-run in Jupyter: earlier runs' variables are in ``before``
        return
    annotations = namespace.get("__annotations__", {})
    shadowed = sorted(n for n in before if n in namespace and not n.startswith("_") and n not in _IPYTHON_NAMES
                      and n not in annotations and isinstance(namespace[n], _PAPERMILL_VALUES))  # fmt: skip
    if shadowed:
        name = shadowed[0]
        declared = sorted(n for n in annotations if n in namespace and n not in before)
        raise UserError(
            f"parameter {name!r} is not a parameter but a name the notebook imports (papermill set it to "
            f"{namespace[name]!r}, which would break a later cell); drop -p {name}. This notebook's parameters: "
            f"{', '.join(declared)}"
        )


def _convert(name: str, annotation: Any, value: Any) -> Any:
    """``value`` as the annotated type: strings parsed when unambiguous, a clear error otherwise."""
    hint, optional = annotation_type(annotation)
    base = typing.get_origin(hint) or hint
    if isinstance(value, (list, tuple)) and admits_list(annotation):  # several folders
        return list(value)
    text = value.strip().lower() if isinstance(value, str) else None
    if value is None or (optional and text in _NONE and base is not str):
        if optional or base is Any:
            return None
        raise UserError(f"parameter {name} must not be None")
    if base is bool:
        if isinstance(value, bool):
            return value
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise UserError(f"parameter {name} must be True or False; got {value!r}")
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(text) if text is not None else _fail()
        except ValueError:
            raise UserError(f"parameter {name} must be a whole number{' or None' if optional else ''}; "
                            f"got {value!r}") from None  # fmt: skip
    if base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            number = float(text) if text is not None else _fail()
        except ValueError:
            raise UserError(f"parameter {name} must be a number{' or None' if optional else ''}; "
                            f"got {value!r}") from None  # fmt: skip
        if not math.isfinite(number):
            raise UserError(f"parameter {name} must be a finite number; got {value!r}")
        return number
    if base is str:
        if isinstance(value, str):
            return value
        hint = ""
        if isinstance(value, (bool, int, float)):  # papermill's -p reads 5, 1e3 or True as a number or bool
            hint = f" (papermill's -p turned it into a number; pass text with -r {name} VALUE, the raw option)"
        raise UserError(f"parameter {name} must be text{' or None' if optional else ''}; got {value!r}{hint}")
    if base in (list, tuple):
        if isinstance(value, (list, tuple)):
            return list(value)
        raise UserError(f"parameter {name} must be a list (with papermill: -y '{{{name}: [...]}}'); got {value!r}")
    return value


def _fail() -> Any:
    raise ValueError


def config_from_params(params: Mapping[str, Any]) -> TrainConfig:
    """The validated :class:`TrainConfig` whose fields are taken from ``params`` (defaults elsewhere)."""
    values = {f.name: params[f.name] for f in fields(TrainConfig) if f.name in params}
    return TrainConfig(**values).validate()


def check_notebook_options(params: Mapping[str, Any]) -> None:
    """The notebook's own options (:data:`NOTEBOOK_OPTIONS`) checked with the others, before
    training: ``refine_epochs -1`` is refused naming it, not after the MAE has trained."""
    for name, (low, meaning) in NOTEBOOK_OPTIONS.items():
        value = params.get(name, low)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"parameter {name} must be a whole number of at least {low} "
                            f"({meaning}); got {value!r}")


def parameter_help(params: Mapping[str, Any]) -> str:
    """Each TrainConfig parameter with its value and the help text ``TrainConfig`` holds for it."""
    rows = []
    for f in fields(TrainConfig):
        if f.name in params:
            rows.append(f"{f.name:>18} = {params[f.name]!r:<16} {f.metadata['help']}")
    return "\n".join(rows)


def check_run_folder(config: TrainConfig, overwrite: bool, notebook: str = "maskAE.ipynb") -> bool:
    """Whether ``fit`` must replace the run in ``config.out_dir``; refuses to replace another run.

    A folder holding a run (a saved checkpoint, as :mod:`mae_utils.util.rundir` defines it) with other
    settings, or an unreadable ``config.json``, is kept unless ``overwrite``: the error gives the two
    ways on (with ``overwrite``, ``fit`` moves the old run aside until the new one has a checkpoint). A run with exactly these settings is what this
    notebook is about to make again from the same seed (a re-run, e.g. ``pytest`` twice), so it is
    replaced, with a note.
    """
    out_dir = Path(config.out_dir)
    if overwrite or not holds_checkpoint(out_dir):
        return overwrite
    try:
        same = same_settings(load_run_config(out_dir), config)
    except UserError:
        same = False
    if same:
        print(f"note: {out_dir} holds a run with exactly these settings; training it again from the same seed")
        return True
    raise UserError(
        f"out_dir {out_dir} already holds another run; nothing was changed. Continue it with "
        f"`python -m mae_utils train --resume {out_dir}` (add --epochs N to extend it), choose another "
        f"out_dir, or replace it: `papermill {notebook} OUT.ipynb -p out_dir {out_dir} -p overwrite True`"
    )


def check_notebook(
    namespace: MutableMapping[str, Any], before: set[str], notebook: str = "maskAE.ipynb"
) -> tuple[TrainConfig, bool]:
    """The one call after ``maskAE.ipynb``'s parameters cell: names and types (:func:`check_parameters`),
    the validated :class:`TrainConfig` (:func:`config_from_params`), the notebook's own options
    (:func:`check_notebook_options`) and the run folder
    (:func:`check_run_folder`). Prints one line on the model and the run; returns (config, overwrite)."""
    params = check_parameters(namespace, before)
    config = config_from_params(params)
    check_notebook_options(params)
    overwrite = check_run_folder(config, bool(params.get("overwrite", False)), notebook)
    arch = config.architecture()
    data = config.data_dir or "built-in synthetic faces"
    data = " + ".join(data) if isinstance(data, list) else data
    print(f"preset {config.preset} (encoder {arch['embed_dim']} x {arch['depth']}, decoder "
          f"{arch['decoder_embed_dim']} x {arch['decoder_depth']}), {config.image_size} px images in "
          f"{config.patch_size} px patches, {config.epochs} epochs on {data} -> {config.out_dir}")  # fmt: skip
    return config, overwrite

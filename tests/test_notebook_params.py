"""Papermill parameters: unknown or misspelt names are refused, strings become the annotated types
(never a truthy "false"), and an existing run is kept unless overwrite is asked for."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import papermill
import pytest

from mae_utils.config import PRESET_RECIPES
from mae_utils.util.errors import UserError
from mae_utils.app.notebook_params import check_parameters, check_run_folder, config_from_params

ROOT = Path(__file__).resolve().parents[1]


def _namespace(injected: dict, **overrides):
    """What a notebook's globals hold after its parameters cell and papermill's injected cell."""
    before = {"__name__", "torch", "Path", "names_before_parameters"}
    ns = {name: object() for name in before}
    ns["__annotations__"] = {"epochs": int, "overwrite": bool, "grad_clip": Optional[float], "base_lr": float,
                             "data_dir": Optional[str], "patches": list, "max_images": Optional[int]}  # fmt: skip
    ns.update(epochs=14, overwrite=False, grad_clip=1.0, base_lr=3.2e-2, data_dir=None, patches=[], max_images=None)
    ns.update(injected)
    ns["_i3"] = "IPython history: ignored"
    return ns, before


def test_unknown_and_misspelt_parameters_are_refused_with_the_closest_name():
    ns, before = _namespace({"epoch": 1})
    with pytest.raises(UserError, match=r"unknown parameter 'epoch'; did you mean 'epochs'\?"):
        check_parameters(ns, before)
    ns, before = _namespace({"flavour": "vanilla"})
    with pytest.raises(UserError, match=r"unknown parameter 'flavour' This notebook's parameters: base_lr"):
        check_parameters(ns, before)


@pytest.mark.parametrize(("text", "value"), [("false", False), ("False", False), ("0", False), ("no", False),
                                             ("true", True), ("1", True), (True, True), (0, False)])  # fmt: skip
def test_booleans_given_as_text_are_parsed(text, value):
    ns, before = _namespace({"overwrite": text})
    assert check_parameters(ns, before)["overwrite"] is value
    assert ns["overwrite"] is value  # the notebook's variable itself is converted


def test_values_that_are_not_their_type_are_refused():
    for injected, message in [({"overwrite": "maybe"}, "overwrite must be True or False"),
                              ({"epochs": "many"}, "epochs must be a whole number"),
                              ({"epochs": 2.5}, "epochs must be a whole number"),
                              ({"base_lr": "fast"}, "base_lr must be a number"),
                              ({"patches": "27,28"}, "patches must be a list"),
                              ({"epochs": None}, "epochs must not be None")]:  # fmt: skip
        ns, before = _namespace(injected)
        with pytest.raises(UserError, match=message):
            check_parameters(ns, before)


def test_text_numbers_and_none_are_converted():
    ns, before = _namespace({"epochs": "3", "base_lr": "1e-3", "grad_clip": "none", "max_images": "None",
                             "data_dir": "none"})  # fmt: skip
    values = check_parameters(ns, before)
    assert values["epochs"] == 3 and values["base_lr"] == 1e-3 and values["grad_clip"] is None
    assert values["max_images"] is None and values["data_dir"] == "none"  # text stays text
    config = config_from_params({"epochs": 3, "base_lr": 1e-3})
    assert (config.epochs, config.base_lr) == (3, 1e-3)


def test_a_rerun_in_jupyter_does_not_flag_later_cells_variables():
    ns, before = _namespace({})
    first = check_parameters(ns, before)
    ns["model"] = object()  # a later cell ran, then the user re-runs the check cell
    again = check_parameters(ns, before)
    assert again == first and "model" not in again


def test_another_run_is_refused_with_both_ways_on_and_the_same_run_is_redone(tmp_path, capsys):
    from mae_utils.config import TrainConfig

    fresh = TrainConfig(out_dir=str(tmp_path / "fresh"))
    assert check_run_folder(fresh, overwrite=False) is False
    run = tmp_path / "run"
    (run / "checkpoints" / "last").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("{}\n")
    assert check_run_folder(TrainConfig(out_dir=str(run), epochs=3), overwrite=False) is False  # no checkpoint yet
    for name in ("model.safetensors", "state.pt"):  # a run, as mae_utils.util.rundir counts them
        (run / "checkpoints" / "last" / name).write_bytes(b"saved")
    (run / "config.json").write_text(json.dumps({**TrainConfig(out_dir=str(run)).to_dict(), "model": {}}))
    with pytest.raises(UserError, match=r"python -m mae_utils train --resume .*run.*-p overwrite True"):
        check_run_folder(TrainConfig(out_dir=str(run), epochs=3), overwrite=False)  # other settings
    assert check_run_folder(TrainConfig(out_dir=str(run), epochs=3), overwrite=True) is True
    assert check_run_folder(TrainConfig(out_dir=str(run)), overwrite=False) is True  # the same run, again
    assert "exactly these settings" in capsys.readouterr().out


def _run_notebook(tmp_path, name="maskAE.ipynb", **parameters):
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(str(ROOT / name), str(tmp_path / "out.ipynb"), parameters=parameters,
                                   cwd=str(ROOT), progress_bar=False, kernel_name="python3")  # fmt: skip
    return info.value


@pytest.mark.slow
def test_papermill_refuses_a_misspelt_parameter(tmp_path):
    error = _run_notebook(tmp_path, epoch=1, out_dir=str(tmp_path / "run"))
    assert error.ename == "UserError" and "unknown parameter 'epoch'; did you mean 'epochs'?" in error.evalue
    assert not (tmp_path / "run").exists()  # stopped before anything trained


@pytest.mark.slow
def test_the_other_notebooks_refuse_misspelt_parameters_too(tmp_path):
    error = _run_notebook(tmp_path, "notebooks/reconstruct_your_photos.ipynb", mask_kind=["eyes"])
    assert "unknown parameter 'mask_kind'; did you mean 'mask_kinds'?" in error.evalue
    error = _run_notebook(tmp_path, "notebooks/evaluate.ipynb", limit="all")
    assert "parameter limit must be a whole number or None; got 'all'" in error.evalue


@pytest.mark.slow
def test_papermill_overwrite_false_keeps_an_existing_run(tmp_path):
    from papermill.cli import _resolve_type

    assert _resolve_type("false") == "false"  # what `-p overwrite false` hands the notebook: a string
    run = tmp_path / "run"
    (run / "checkpoints" / "best").mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (run / "checkpoints" / "best" / "model.safetensors").write_bytes(b"weights")
    (run / "checkpoints" / "best" / "state.pt").write_bytes(b"state")
    error = _run_notebook(tmp_path, out_dir=str(run), overwrite="false")
    assert error.ename == "UserError" and "already holds another run" in error.evalue
    assert "-p overwrite True" in error.evalue and "--resume" in error.evalue
    assert (run / "metrics.jsonl").read_text() == '{"epoch": 1}\n'
    assert (run / "checkpoints" / "best" / "model.safetensors").read_bytes() == b"weights"


@pytest.mark.parametrize("name", ["maskAE.ipynb", "notebooks/evaluate.ipynb", "notebooks/reconstruct_your_photos.ipynb"])
def test_every_notebook_lists_its_parameters_with_types_and_checks_them(name):
    params = papermill.inspect_notebook(str(ROOT / name))
    untyped = [p for p, info in params.items() if info["inferred_type_name"] in ("None", "")]
    assert not untyped, f"{name}: parameters papermill --help-notebook shows without a type: {untyped}"
    assert all(info["help"] for info in params.values()), f"{name}: a parameter without a comment"
    nb = json.loads((ROOT / name).read_text())
    tagged = [i for i, c in enumerate(nb["cells"]) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    code_before = ["".join(c["source"]) for c in nb["cells"][: tagged[0]] if c["cell_type"] == "code"]
    assert code_before[-1].rstrip().splitlines()[-1].startswith("names_before_parameters = set(globals())")
    code_after = "".join(nb["cells"][tagged[0] + 1]["source"])
    checks = ("check_parameters(globals(), names_before_parameters)", "check_notebook(globals(), names_before_parameters)")
    assert any(c in code_after for c in checks), f"{name}: no check after the parameters"


# ---------------------------------------------------------------------- parameters that shadow imports
@pytest.mark.parametrize("name", ["torch", "Path"])
def test_a_parameter_that_replaces_an_import_is_refused_up_front(name):
    ns, before = _namespace({name: 0})  # papermill -p torch 1 / -p Image 0: the import is gone
    with pytest.raises(UserError, match=rf"parameter '{name}' is not a parameter but a name the notebook imports"):
        check_parameters(ns, before)


def test_a_number_where_text_is_needed_points_at_papermills_raw_option():
    ns, before = _namespace({"data_dir": 5})  # -p data_dir 5
    with pytest.raises(UserError, match=r"data_dir must be text or None; got 5 .*-r data_dir VALUE"):
        check_parameters(ns, before)


@pytest.mark.slow
def test_papermill_refuses_a_parameter_named_like_an_import(tmp_path):
    error = _run_notebook(tmp_path, "notebooks/reconstruct_your_photos.ipynb", torch=1)
    assert error.ename == "UserError" and "parameter 'torch' is not a parameter" in error.evalue
    # maskAE.ipynb imports Image only after its parameters now, so there it is simply not a parameter
    error = _run_notebook(tmp_path, Image=0, out_dir=str(tmp_path / "run"))
    assert error.ename == "UserError" and "parameter 'Image'" in error.evalue
    assert not (tmp_path / "run").exists()  # refused before training, not after


@pytest.mark.slow
def test_evaluate_notebook_with_a_misspelt_run_dir_says_so(tmp_path):
    error = _run_notebook(tmp_path, "notebooks/evaluate.ipynb", run_dir=str(tmp_path / "runs" / "notebok"))
    assert error.ename == "UserError" and "notebok does not exist" in error.evalue  # not the quick model's scores


def _main_notebook_namespace(**injected) -> tuple[dict, set]:
    """maskAE.ipynb's globals after its parameters cell and papermill's injected values (no kernel)."""
    nb = json.loads((ROOT / "maskAE.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    namespace: dict = {}
    exec("from typing import Optional", namespace)  # noqa: S102 (the notebook's import cell)
    before = set(namespace)
    exec("".join(cell["source"]), namespace)  # noqa: S102 (our own notebook)
    namespace.update(injected)
    return namespace, before


@pytest.mark.parametrize(("name", "value", "message"), [
    ("refine_epochs", -1, "parameter refine_epochs must be a whole number of at least 0 (seam refiner epochs"),
    ("refine_epochs", "-3", "refine_epochs must be a whole number of at least 0"),
    ("num_show", 0, "parameter num_show must be a whole number of at least 1 (test faces"),
])
def test_the_notebooks_own_options_are_checked_before_training(name, value, message, tmp_path, monkeypatch):
    from mae_utils.app.notebook_params import check_notebook

    monkeypatch.chdir(tmp_path)
    namespace, before = _main_notebook_namespace(**{name: value})
    with pytest.raises(UserError, match=re.escape(message)):
        check_notebook(namespace, before)
    namespace, before = _main_notebook_namespace(refine_epochs=0, num_show=1)
    config, _ = check_notebook(namespace, before)  # 0: no refiner, 1 face: both fine
    recipe_epochs = PRESET_RECIPES[namespace["preset"]]["epochs"]  # None in the notebook: the preset's
    assert config.epochs == (namespace["epochs"] or recipe_epochs) and not (tmp_path / "runs").exists()

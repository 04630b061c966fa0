"""The tutorial notebook runs through papermill on a user's folder with non-default parameters.

``pytest --nbmake`` executes the notebooks with their defaults (CI); this test drives ``maskAE.ipynb``
the way a user with their own photos would (``papermill ... -p data_dir DIR ...``), on a small folder
written by ``python -m mae_utils synth``, and checks what the run wrote. It also checks the committed
notebook: a tagged, documented parameters cell whose names are the TrainConfig fields, outputs
present, and no machine-specific paths in them.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import papermill
import pytest

from mae_utils.app import cli

from conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "maskAE.ipynb"
NOTEBOOK_ONLY_PARAMS = {"overwrite", "num_show", "refine_epochs"}  # the rest are TrainConfig fields
MACHINE_PATHS = re.compile(r"(/work/|/root/|/tmp/|/home/|[A-Z]:\\\\Users)")


def _outputs_text(nb: dict) -> str:
    """Every text a notebook's outputs hold (streams, plain-text reprs, errors), images left out."""
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                parts.append("".join(out["text"]))
            elif out["output_type"] == "error":
                parts.append(out["ename"] + ": " + out["evalue"] + "\n".join(out.get("traceback", [])))
            else:
                data = out.get("data", {})
                for key in ("text/plain", "text/html", "text/markdown"):
                    if key in data:
                        parts.append("".join(data[key]))
    return "\n".join(parts)


def test_parameters_cell_lists_the_train_config_fields_with_help():
    from mae_utils.config import TrainConfig

    params = papermill.inspect_notebook(str(NOTEBOOK))
    assert set(params) == {f.name for f in fields(TrainConfig)} | NOTEBOOK_ONLY_PARAMS
    # short lines: name, value, a few words; the value is written once (no "default X" comment)
    restated = [name for name, p in params.items()
                if "default" in p["help"] or (p["default"] != "None" and p["default"] in p["help"])]  # fmt: skip
    assert not restated, f"comments that state the value again: {restated}"
    long = [name for name, p in params.items() if len(f"{name}: {p['inferred_type_name']} = {p['default']}  # "
                                                      f"{p['help']}") > 100]  # fmt: skip
    assert not long, f"parameter lines over 100 characters: {long}"
    helps = {f.name: f.metadata["help"] for f in fields(TrainConfig)}
    retyped = [name for name, p in params.items() if name in helps and helps[name][:30] in p["help"]]
    assert not retyped, f"the help text lives in TrainConfig; the parameters cell repeats it for {retyped}"
    nb = json.loads(NOTEBOOK.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1


def test_notebook_cli_and_train_config_share_one_set_of_defaults():
    """The notebook's parameters cell, the CLI with no flags and TrainConfig() train the same model the same way
    (out_dir aside: the notebook keeps its run in runs/notebook, which the other notebooks reuse): the
    same declared defaults (None for a preset's setting), so the same resolved values."""
    import ast

    from mae_utils.config import TrainConfig
    from mae_utils.train import config_for_cli

    defaults = TrainConfig()
    params = papermill.inspect_notebook(str(NOTEBOOK))
    differ = {f.name: (params[f.name]["default"], f.default) for f in fields(TrainConfig)
              if f.name != "out_dir" and ast.literal_eval(params[f.name]["default"]) != f.default}
    assert not differ, f"notebook parameter vs TrainConfig default: {differ}"
    parser, commands = cli.build_parser()
    args, extras = parser.parse_known_args(["train"])
    assert not extras and config_for_cli(args) == (defaults, False)


@pytest.mark.parametrize(("path", "figures"), [(NOTEBOOK, 8), (ROOT / "notebooks" / "evaluate.ipynb", 4),
                                              (ROOT / "notebooks" / "reconstruct_your_photos.ipynb", 3),
                                              (ROOT / "notebooks" / "what_it_learned.ipynb", 2)])  # fmt: skip
def test_committed_notebooks_keep_outputs_without_machine_paths_or_frozen_bars(path, figures):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), f"{path.name} must be committed executed (see README)"
    assert not any(o["output_type"] == "error" for c in code for o in c.get("outputs", []))
    images = sum("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", []))
    assert images >= figures, f"expected the notebook's figures in the committed outputs, found {images}"
    text = _outputs_text(nb)
    assert not MACHINE_PATHS.findall(text), f"machine-specific paths in outputs: {set(MACHINE_PATHS.findall(text))}"
    assert "widgets" not in nb["metadata"], "widget state committed (progress bars run as widgets in batch?)"
    widget_outputs = [o for c in code for o in c.get("outputs", []) if any("widget" in k for k in o.get("data", {}))]
    assert not widget_outputs and "%|" not in text, "frozen progress bars in the committed outputs"


def test_parameter_counts_add_up():
    from mae_utils.model import build_mae
    from mae_utils.app.tutorial import parameter_counts

    model = build_mae("tiny", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                      decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)  # fmt: skip
    counts = parameter_counts(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["fixed (sin-cos tables)"] == (16 + 1) * (32 + 16)


@pytest.mark.slow
def test_papermill_run_on_an_image_folder(tmp_path):
    from PIL import Image

    from mae_utils import load_model_from_run

    faces = tmp_path / "faces"
    subprocess.run(
        [sys.executable, "-m", "mae_utils", "synth", "--out", str(faces), "--n", "40", "--size", "40", "--seed", "3"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    assert len(list(faces.glob("*.png"))) == 40
    run_dir = tmp_path / "run"
    out_nb = tmp_path / "out.ipynb"
    params = dict(
        data_dir=str(faces), out_dir=str(run_dir), cache_dir=str(tmp_path / "cache"), max_images=40,
        **TINY_MODEL, mask_ratio=0.5, epochs=2, batch_size=8, seed=5, num_show=2, refine_epochs=1,
    )  # fmt: skip
    papermill.execute_notebook(str(NOTEBOOK), str(out_nb), parameters=params, cwd=str(ROOT), progress_bar=False,
                               kernel_name="python3")  # fmt: skip

    nb = json.loads(out_nb.read_text())
    text = _outputs_text(nb)
    assert "Traceback" not in text
    assert "32 train / 4 val / 4 test" in text  # the split the data cell printed, from 40 images

    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    for x in lines:
        assert all(math.isfinite(x[k]) for k in ("train_loss", "val_loss", "val_psnr_masked", "lr"))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["data_dir"] == str(faces) and config["image_size"] == 32 and config["mask_ratio"] == 0.5
    split = json.loads((run_dir / "split.json").read_text())
    assert len(split["test"]) == 4 and all(name.endswith(".png") for name in split["test"])

    model, loaded = load_model_from_run(run_dir, "best")
    assert (model.img_size, model.patch_size, model.blocks[0].attn.num_heads) == (32, 8, 2)
    assert loaded.seed == 5

    from mae_utils.app.tutorial import lr_schedule

    steps, lrs = lr_schedule(run_dir)  # the replayed One-Cycle curve passes through the logged rates
    assert steps[-1] == lines[-1]["step"] == 2 * (32 // 8)
    for x in lines:
        assert lrs[x["step"] - 1] == pytest.approx(x["lr"], rel=1e-9)
    assert lines[-1]["lr"] == pytest.approx(lrs.min())  # the last step runs at the schedule's end

    figure = run_dir / "eval" / "test_reconstructions.png"
    with Image.open(figure) as img:
        width, height = img.size
    assert 1.5 < width / height < 2.2, f"expected 4 panels x num_show=2 rows, got a {width}x{height} figure"
    refiner = run_dir / "refiner" / "log.txt"  # refine_epochs=1: the seam refiner trained one epoch
    assert "refine epoch 1/1" in refiner.read_text() and "model+refine" in text

"""Every command the documentation writes down works, and builds the model it says.

The ``python -m mae_utils ...``, ``torchrun ... -m mae_utils ...`` and ``papermill ...`` commands in
README.md, docs/*.md, benchmarks/recipes/*.sh and the markdown of maskAE.ipynb are extracted as a
reader would copy them, then run through the real parsers without training: ``train`` commands with
``--dry-run`` (the resolved settings, the parameter count and the peak learning rate; a torchrun
command with its number of processes), papermill commands through the notebook's own parameters
cell, papermill's value parsing and ``check_parameters`` (what the notebook's first cells do), the
other commands through their sub-command's parser. Each train or papermill command's parameter count
and peak learning rate must be the ones its preset and flags describe; ViT-Base at 256 px, 16 px
patches must be 111,984,640 parameters, and every GPU command trains that model with a peak learning
rate the paper's recipe gives, nobody typing one.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shlex
from pathlib import Path

import pytest
import torch

from mae_utils.config import PRESET_RECIPES
from mae_utils.model import PRESETS, MaskedAutoencoder, build_mae
from mae_utils.train import dry_run
from mae_utils.app import cli
from mae_utils.app.notebook_params import check_parameters, config_from_params

from conftest import write_faces

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "benchmarks" / "recipes").glob("*.sh")),
           ROOT / "maskAE.ipynb"]  # fmt: skip
GPU_SOURCES = ("docs/gpu.md", "benchmarks/recipes/gpu_base256.sh", "maskAE.ipynb")
BASE_256 = 111_984_640  # the paper's ViT-Base MAE at 256 px / 16 px patches (docs/model.md's preset table)
CPU_64 = 1_087_712  # the default: the cpu preset at 64 px / 8 px patches
ARCH = ("embed_dim", "depth", "num_heads", "decoder_embed_dim", "decoder_depth", "decoder_num_heads")
SHELL_VALUES = {"DATA_DIR": "data/faces", "OUT_DIR": "runs/recipe", "OTHER_DIR": "data/other", "LIMIT": "300"}
END = re.compile(r"\s(?:&&|\|\||\||[12]?>|&|;)(?=\s|$)")  # where a shell command's own arguments stop


def _chunks(path: Path) -> list[str]:
    """The code a reader would copy: fenced blocks and inline spans of Markdown (a notebook's markdown
    cells), all of a script."""
    text = path.read_text()
    if path.suffix == ".ipynb":
        cells = json.loads(text)["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    elif path.suffix != ".md":
        return [text]
    fenced = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    return fenced + re.findall(r"`([^`\n]+)`", prose)


def _expand(line: str) -> str:
    """Shell variables as a recipe's caller would set them: ``${X:-default}`` -> default."""
    line = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: SHELL_VALUES.get(m.group(1), m.group(2)), line)
    return re.sub(r"\$(\w+)", lambda m: SHELL_VALUES.get(m.group(1), m.group(1).lower()), line)


def documented_commands() -> list[tuple[str, str, list[str], int]]:
    """(where, kind, argv, processes) for every documented command; kind is 'cli' or 'papermill',
    processes is torchrun's --nproc_per_node (1 without torchrun)."""
    found = []
    for path in SOURCES:
        for chunk in _chunks(path):
            for line in re.sub(r"\\\n\s*", " ", chunk).splitlines():
                line = _expand(re.sub(r"(^|\s)#.*$", "", line))
                where = f"{path.relative_to(ROOT)}: {line.strip()[:90]}"
                cli_match = re.search(r"-m mae_utils (\w+.*)", line)
                notebook_match = re.search(r"(?:^|[\s/])papermill (\S+\.ipynb\s.*)", line)
                nproc = re.search(r"torchrun\s.*--nproc_per_node[= ](\d+)", line)
                world = int(nproc.group(1)) if nproc else 1
                for kind, match in (("cli", cli_match), ("papermill", notebook_match)):
                    if match:
                        found.append((where, kind, shlex.split(END.split(match.group(1))[0]), world))
    return found


COMMANDS = documented_commands()


def _flags(argv: list[str]) -> dict[str, str]:
    """``--image-size 256`` and ``-p image_size 256`` alike, as {'image_size': '256'}."""
    out = {}
    for i, token in enumerate(argv[:-1]):
        if token == "-p" and i + 2 < len(argv):
            out[argv[i + 1]] = argv[i + 2]
        elif token.startswith("--") and not argv[i + 1].startswith("-"):
            out[token[2:].replace("-", "_")] = argv[i + 1]
    return out


def _recipe(flags: dict[str, str], name: str) -> float:
    """A training setting as the command sets it: its flag, else its preset's recipe."""
    return float(flags[name]) if name in flags else PRESET_RECIPES[flags.get("preset", "cpu")][name]


def _expected_parameters(flags: dict[str, str]) -> int:
    """The parameter count of the model the flags describe, built here from model.PRESETS directly."""
    arch = {**PRESETS[flags.get("preset", "cpu")], **{k: int(flags[k]) for k in ARCH if k in flags}}
    with torch.device("meta"):
        model = MaskedAutoencoder(img_size=int(_recipe(flags, "image_size")),
                                  patch_size=int(_recipe(flags, "patch_size")), **arch)  # fmt: skip
    return sum(p.numel() for p in model.parameters())


def _expected_peak_lr(flags: dict[str, str], world: int) -> float:
    """The paper's linear scaling rule, written out: base_lr x batch per process x processes / 256."""
    return _recipe(flags, "base_lr") * _recipe(flags, "batch_size") * world / 256


def _folders(argv: list[str]) -> list[str]:
    """Every folder a command names for photos or a run: each of ``--data-dir A B ...`` (it takes
    several), papermill's ``-p data_dir A``, ``--run R``."""
    named: list[str] = []
    for i, token in enumerate(argv):
        if token == "--data-dir":
            named += itertools.takewhile(lambda value: not value.startswith("-"), argv[i + 1 :])
    flags = _flags(argv)
    named += [flags[key] for key in ("data_dir", "run") if key in flags and flags[key] not in named]
    return [folder for folder in named if not folder.startswith("none")]


def _prepare_paths(argv: list[str], world: int = 1) -> None:
    """What the command names must exist for its checks: photo folders (with enough files that the
    batch of every process fits the training split), a run to resume, weights."""
    flags = _flags(argv)
    for folder in map(Path, _folders(argv)):
        first = write_faces(folder, n=10, size=24)[0]
        needed = math.ceil(_recipe(flags, "batch_size") * world / 0.8) + 2  # 80% train (the default split)
        for i in range(10, needed):  # the dry run counts files, it decodes none
            (folder / f"copy_{i}.png").write_bytes(first.read_bytes())
    if "resume" in flags:
        run = Path(flags["resume"])
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps({"out_dir": str(run)}))
    if "init_from" in flags:  # a small official-format checkpoint (standard widths: 192 and 128)
        Path(flags["init_from"]).parent.mkdir(parents=True, exist_ok=True)
        weights = build_mae("tiny", img_size=32, patch_size=16, depth=1, decoder_depth=1).state_dict()
        torch.save({"model": weights}, flags["init_from"])


def _notebook_config(argv: list[str]):
    """The TrainConfig a papermill command gives the notebook: its parameters cell, papermill's values,
    and the notebook's own check (the first cells' work), run here without a kernel."""
    from papermill.cli import _resolve_type
    from papermill.cli import papermill as papermill_command
    from papermill.translators import translate_parameters

    options = papermill_command.make_context("papermill", list(argv)).params
    nb = json.loads((ROOT / options["notebook_path"]).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    namespace: dict = {}
    exec("from typing import Optional", namespace)  # noqa: S102 (the notebook's import cell)
    before = set(namespace)
    exec("".join(cell["source"]), namespace)  # noqa: S102 (our own notebook)
    values = {name: _resolve_type(value) for name, value in options["parameters"]}
    exec(translate_parameters("python3", "python", values, "Parameters"), namespace)  # noqa: S102
    return config_from_params(check_parameters(namespace, before))


def _train_report(kind: str, argv: list[str], world: int, monkeypatch, capsys) -> str:
    """The dry run of a documented train or papermill command (torchrun's processes as WORLD_SIZE)."""
    if kind == "papermill":
        return dry_run(_notebook_config(argv))
    monkeypatch.setenv("WORLD_SIZE", str(world))
    assert cli.main(argv + ["--dry-run"]) == 0, capsys.readouterr().err
    report = capsys.readouterr().out
    assert not Path(_flags(argv).get("out_dir", "runs/mae"), "split.json").exists()  # a dry run writes nothing
    return report


def _peak_lr(report: str) -> float:
    return float(re.search(r"peak lr: (\S+) ", report).group(1))


def test_the_documentation_writes_the_commands_this_test_checks():
    kinds = {kind for _, kind, _, _ in COMMANDS}
    assert kinds == {"cli", "papermill"}, kinds
    readme = [argv for where, _, argv, _ in COMMANDS if where.startswith("README.md")]
    assert any(argv[:1] == ["train"] for argv in readme) and any("maskAE.ipynb" in argv for argv in readme)
    base = [argv for _, _, argv, _ in COMMANDS if _flags(argv).get("preset") == "base"]
    assert base, "no documented command trains the paper's base model"
    assert any(world > 1 for _, _, _, world in COMMANDS), "no torchrun command found"
    assert any(where.startswith("maskAE.ipynb") for where, _, _, _ in COMMANDS)


@pytest.mark.parametrize(("where", "kind", "argv", "world"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_documented_command_parses_and_builds_its_model(where, kind, argv, world, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    flags = _flags(argv)
    _prepare_paths(argv, world)
    if kind == "cli" and (argv[0] != "train" or "--help" in argv):
        # evaluate, reconstruct, synth, --help: the real parser takes the command as written
        parser, _ = cli.build_parser()
        if "--help" in argv:
            with pytest.raises(SystemExit) as info:
                parser.parse_known_args(argv)
            assert info.value.code == 0
            return
        args, extras = parser.parse_known_args(argv)
        assert not extras and args.command == argv[0]
        return
    report = _train_report(kind, argv, world, monkeypatch, capsys)
    assert math.isclose(_peak_lr(report), _expected_peak_lr(flags, world), rel_tol=5e-3), report
    count = int(re.search(r"parameters: ([\d,]+)", report).group(1).replace(",", ""))
    if "init_from" in flags:  # the architecture is the weights' (192 wide encoder, 128 wide decoder)
        assert "encoder 192 wide x 1 blocks" in report and "decoder 128 x 1" in report
        return
    assert count == _expected_parameters(flags), report
    if flags.get("preset") == "base" and not {"image_size", "patch_size"} & set(flags):
        assert count == BASE_256 and not set(ARCH) & set(flags)
    if not {"preset", "image_size", "patch_size"} & set(flags) and not set(ARCH) & set(flags):
        assert count == CPU_64


def test_gpu_commands_train_one_model_at_the_papers_rate_without_typing_one(tmp_path, monkeypatch, capsys):
    """docs/gpu.md, the GPU recipe and the notebook's batch section: single-GPU, notebook and torchrun
    commands all train ViT-Base at 256 px / 16 px patches for the same number of epochs, at a peak lr
    of at most 1e-3 that comes from the preset (no --base-lr typed)."""
    monkeypatch.chdir(tmp_path)
    gpu = [c for c in COMMANDS if c[0].startswith(GPU_SOURCES) and _flags(c[2]).get("preset") == "base"]
    for source, least in zip(GPU_SOURCES, (4, 1, 2)):
        assert len([c for c in gpu if c[0].startswith(source)]) >= least, source
    for source in ("docs/gpu.md", "maskAE.ipynb"):
        assert any(c[3] > 1 and c[0].startswith(source) for c in gpu), f"{source}: no torchrun command"
    epochs = set()
    for where, kind, argv, world in gpu:
        flags = _flags(argv)
        assert "base_lr" not in flags, where
        _prepare_paths(argv, world)
        report = _train_report(kind, argv, world, monkeypatch, capsys)
        assert f"parameters: {BASE_256:,} " in report and "images: 256 px, 16x16 patches of 16 px" in report, where
        assert _peak_lr(report) <= 1e-3, where
        epochs.add(re.search(r" x (\d+) epochs = ", report).group(1))
    assert epochs == {str(PRESET_RECIPES["base"]["epochs"])}, epochs


def test_dry_run_of_the_paper_setting_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MASKAE_CACHE_DIR", str(tmp_path / "cache"))
    write_faces(tmp_path / "faces", n=12, size=24)
    argv = ["train", "--preset", "base", "--image-size", "256", "--patch-size", "16", "--data-dir", "faces",
            "--out-dir", "runs/base", "--batch-size", "4", "--epochs", "3", "--dry-run"]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "parameters: 111,984,640" in out and "embed_dim=768" in out and "decoder_depth=8" in out
    assert "data: 12 of 12 image files in faces: 10 train / 1 val / 1 test" in out
    assert "steps: 2 per epoch (batch 4 x 1 process) x 3 epochs = 6 steps" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces"]  # no run folder, no cache
    assert cli.main(argv[:-1] + ["--embed-dim", "384", "--num-heads", "6", "--dry-run"]) == 0
    assert "encoder 384 wide x 12 blocks (6 heads), decoder 512 x 8" in capsys.readouterr().out
    assert cli.main(["train", "--data-dir", "nowhere", "--dry-run"]) == 2  # the checks still run


def test_readme_stays_short_and_its_test_command_is_the_ci_command():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150, "details belong in docs/, linked from the README"
    assert ".venv/bin/python -m pytest -q\n" in readme
    assert '"$VENV/bin/python" -m pytest -q\n' in (ROOT / ".ci" / "run").read_text()
    linked = re.findall(r"\]\((docs/[\w.]+|benchmarks/[\w./]*)\)", readme)
    assert linked and all((ROOT / link).exists() for link in linked), linked

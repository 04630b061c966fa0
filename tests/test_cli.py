"""The command line never guesses: no flag abbreviations, unknown flags reported by the sub-command with
the closest valid flag, and options that only make sense together checked together."""

from __future__ import annotations

import pytest

from mae_utils.app import cli


def _fail(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI, expect exit 2, return what it printed on stderr."""
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, usage, hint",
    [
        (["train", "--epoch", "1"], "train", "--epochs"),  # an abbreviation of --epochs is not --epochs
        (["train", "--epochz=3"], "train", "--epochs"),
        (["train", "--batch", "4"], "train", "--batch-size"),
        (["evaluate", "--run", "r", "--mask-ration", "0.5"], "evaluate", "--mask-ratio"),
        (["reconstruct", "--run", "r", "--images", "a.png", "--out", "o.png", "--chekpoint", "last"],
         "reconstruct", "--checkpoint"),
        (["synth", "--out", "d", "--sizes", "64"], "synth", "--size"),
    ],
)
def test_abbreviated_and_misspelt_flags_fail_with_the_subcommands_usage(argv, usage, hint, capsys) -> None:
    err = _fail(argv, capsys)
    assert f"usage: python -m mae_utils {usage} " in err  # the sub-command's usage, not the top level's
    assert "unrecognized arguments" in err
    assert f"did you mean {hint}?" in err


def test_unknown_flag_far_from_any_gets_no_guess(capsys) -> None:
    err = _fail(["train", "--zzzzzz"], capsys)
    assert "usage: python -m mae_utils train " in err and "--zzzzzz" in err and "did you mean" not in err


def test_every_parser_refuses_abbreviations() -> None:
    parser, commands = cli.build_parser()
    assert parser.allow_abbrev is False
    assert commands and all(p.allow_abbrev is False for p in commands.values())


def test_closest_flag() -> None:
    known = ["--epochs", "--batch-size", "--base-lr", "--seed"]
    assert cli.closest_flag("--epoch", known) == "--epochs"
    assert cli.closest_flag("--base_lr=0.1", known) == "--base-lr"
    assert cli.closest_flag("--nothing-like-it", known) is None


@pytest.mark.parametrize("command", ["evaluate", "reconstruct", "refine", "probe"])
def test_a_file_given_as_the_run_folder_is_named_a_file(command, capsys, tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# not a run\n")
    extra = {"reconstruct": ["--images", str(readme), "--out", str(tmp_path / "o.png")],
             "probe": ["--target", "beard"]}.get(command, [])
    code = cli.main([command, "--run", str(readme), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err == (f"error: --run {readme} is a file, not a run folder; give --run a training run's folder "
                   "(runs/NAME, holding config.json)\n")
    assert cli.main([command, "--run", str(tmp_path / "nowhere"), *extra]) == 2
    assert f"run directory {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err


def test_train_resume_of_a_file_says_it_is_a_file(capsys, tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# not a run\n")
    assert cli.main(["train", "--resume", str(readme)]) == 2
    assert capsys.readouterr().err == (f"error: --resume {readme} is a file, not a run folder; give --resume a "
                                       "training run's folder (runs/NAME, holding config.json)\n")


@pytest.mark.parametrize("command", ["evaluate", "reconstruct"])
@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--patches", "3", "4", "5"], "--patches only applies to --mask patches"),
        (["--mask", "center", "--patches", "3"], "--patches only applies to --mask patches"),
        (["--mask", "patches"], "--mask patches needs --patches"),
        (["--mask", "left", "--mask-ratio", "0.5"], "--mask-ratio only applies to --mask random or center"),
        (["--mask", "eyes", "--mask-ratio", "0.75"], "--mask-ratio only applies"),
    ],
)
def test_mask_options_are_checked_together(command, extra, expected, capsys, tmp_path) -> None:
    argv = [command, "--run", str(tmp_path / "no-such-run")]
    if command == "reconstruct":
        argv += ["--images", str(tmp_path / "a.png"), "--out", str(tmp_path / "o.png")]
    code = cli.main(argv + extra)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and expected in err
    assert "no-such-run" not in err  # refused before anything is loaded


def test_resume_and_overwrite_together_are_refused(capsys, tmp_path) -> None:
    code = cli.main(["train", "--resume", str(tmp_path / "run"), "--overwrite"])
    assert code == 2
    assert "give one of them, not both" in capsys.readouterr().err


def test_every_command_defaults_to_the_best_device(capsys) -> None:
    from mae_utils.config import TrainConfig
    from mae_utils.tools.finetune import FinetuneConfig

    _, commands = cli.build_parser()
    devices = {name: next(a for a in parser._actions if "--device" in a.option_strings)
               for name, parser in commands.items() if "--device" in parser.option_names()}
    assert {"train", "evaluate", "reconstruct", "refine", "probe", "finetune"} <= set(devices)
    # train's and finetune's flags default to their settings (so that what was typed is known)
    settings = {"train": TrainConfig().device, "finetune": FinetuneConfig().device}
    defaults = {name: settings.get(name, action.default) for name, action in devices.items()}
    assert defaults == dict.fromkeys(devices, "auto")
    with pytest.raises(SystemExit):
        cli.main(["refine", "--help"])
    assert "(default: auto)" in " ".join(capsys.readouterr().out.split())

"""The shared training loop on a toy task: a resumed task ends bit for bit where an uninterrupted
one does, the best checkpoint holds the lowest validation value, and the metrics file, early stop
and the epochs check behave as every command relies on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from mae_utils.util import checkpoint as ckpt
from mae_utils.util.errors import UserError
from mae_utils.util.loop import Progress, Task, resume, run_epochs

QUIET = dict(log=lambda _m: None, bars=False)


def _toy_task(folder: Path, epochs: int, val_values: list[float] | None = None, **options) -> Task:
    """A linear model fitted to noisy targets drawn from the global RNG (which the loop seeds per
    epoch), with AdamW and a decaying rate; ``val_values`` scripts the validation values."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 0.9**k)
    progress = Progress()
    target = torch.tensor([[1.0, -2.0, 0.5, 3.0]])

    def train_epoch(epoch: int) -> dict[str, float]:
        total = 0.0
        for _ in range(3):
            x = torch.randn(8, 4)
            y = x @ target.T + 0.1 * torch.randn(8, 1)
            loss = ((model(x) - y) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            progress.step += 1
            total += loss.item()
        return {"train_loss": total / 3}

    def validate(epoch: int) -> dict[str, float]:
        if val_values is not None:
            return {"val_loss": val_values[epoch]}
        with torch.no_grad():
            return {"val_loss": float((model.weight - target).pow(2).sum())}

    return Task(model, optimizer, scheduler, train_epoch, validate, epochs=epochs,
                checkpoints=folder / "checkpoints", seed=7, metrics_file=folder / "metrics.jsonl",
                extra_state=lambda: {"settings": {"epochs": epochs}}, progress=progress,
                **{**QUIET, **options})


def _weights(folder: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return ckpt.load_model_state(folder / "checkpoints" / which)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if k != "seconds"} for line in history]


def test_a_task_resumed_after_an_interrupted_epoch_ends_bit_for_bit_as_an_uninterrupted_one(tmp_path):
    straight = _toy_task(tmp_path / "straight", epochs=4)
    run_epochs(straight)

    stopped = _toy_task(tmp_path / "stopped", epochs=4)
    real_epoch = stopped.train_epoch

    def crash_in_third_epoch(epoch: int) -> dict[str, float]:
        if epoch == 2:
            raise KeyboardInterrupt("simulated stop")
        return real_epoch(epoch)

    stopped.train_epoch = crash_in_third_epoch
    with pytest.raises(KeyboardInterrupt):
        run_epochs(stopped)
    assert ckpt.load_state(tmp_path / "stopped" / "checkpoints" / "last")["epoch"] == 2

    again = _toy_task(tmp_path / "stopped", epochs=4)
    assert not _same(dict(again.model.state_dict()), _weights(tmp_path / "stopped"))
    saved = resume(again, required={"settings": dict})
    assert saved["settings"] == {"epochs": 4} and again.progress.epoch == 2
    assert again.progress.step == 6
    run_epochs(again)
    assert _same(_weights(tmp_path / "straight"), _weights(tmp_path / "stopped"))
    assert _same(dict(straight.model.state_dict()), dict(again.model.state_dict()))
    assert _without_time(again.progress.history) == _without_time(straight.progress.history)
    assert again.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]
    lines = [json.loads(x) for x in (tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3, 4] and lines == again.progress.history
    assert [x["step"] for x in lines] == [3, 6, 9, 12]


def test_the_best_checkpoint_holds_the_epoch_with_the_lowest_validation_value(tmp_path):
    values = [3.0, 1.0, 2.0, 0.5, 0.7]
    weights_after: list[dict[str, torch.Tensor]] = []
    task = _toy_task(tmp_path, epochs=5, val_values=values,
                     on_epoch=lambda line: weights_after.append(_weights(tmp_path)))
    progress = run_epochs(task)
    best = ckpt.load_state(tmp_path / "checkpoints" / "best")
    assert best["epoch"] == 4 and best["best_val_loss"] == 0.5 and progress.best_val_loss == 0.5
    assert _same(_weights(tmp_path, "best"), weights_after[3])
    assert not _same(_weights(tmp_path, "best"), _weights(tmp_path, "last"))
    assert ckpt.load_state(tmp_path / "checkpoints" / "last")["stale_evals"] == 1


def test_patience_stops_early_and_epochs_without_validation_have_none(tmp_path):
    lines: list[str] = []
    task = _toy_task(tmp_path, epochs=10, val_values=[1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
                     eval_every=2, patience=2, log=lines.append)
    progress = run_epochs(task)
    assert [h["epoch"] for h in progress.history] == [1, 2, 3, 4, 5, 6]
    assert [h["val_loss"] for h in progress.history] == [None, 1.0, None, 3.0, None, 5.0]
    assert any(line.startswith("early stop: no better val_loss in 2 validations") for line in lines)
    resumed = _toy_task(tmp_path, epochs=10, val_values=[0.0] * 10, eval_every=2, patience=2)
    resume(resumed)
    assert run_epochs(resumed).epoch == 6  # a run that stopped early stays stopped


def test_resume_refuses_fewer_epochs_than_done_and_redraws_a_changed_plan(tmp_path):
    run_epochs(_toy_task(tmp_path, epochs=2))
    with pytest.raises(UserError, match="has already trained 2 epochs; --epochs 1 cannot undo"):
        resume(_toy_task(tmp_path, epochs=1))
    longer = _toy_task(tmp_path, epochs=3)
    longer.scheduler.base_lrs = [0.01]  # a new peak rate: the plan starts over at the saved step
    resume(longer, check=lambda state: False)
    assert longer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.9**6)
    assert run_epochs(longer).epoch == 3


def test_state_holds_plain_values_and_a_refused_resume_changes_nothing(tmp_path):
    run_epochs(_toy_task(tmp_path, epochs=1))
    state = torch.load(tmp_path / "checkpoints" / "last" / ckpt.STATE_FILE, weights_only=True)
    assert set(ckpt.STATE_TYPES) <= set(state) and state["settings"] == {"epochs": 1}
    before = _weights(tmp_path)

    def refuse(saved: dict) -> bool:
        raise UserError("settings changed")

    task = _toy_task(tmp_path, epochs=2)
    start = {k: v.clone() for k, v in task.model.state_dict().items()}
    with pytest.raises(UserError, match="settings changed"):
        resume(task, check=refuse)
    assert _same(dict(task.model.state_dict()), start) and task.progress.epoch == 0
    assert _same(_weights(tmp_path), before)

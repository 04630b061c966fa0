"""Fine-tuning: is a pre-trained encoder worth anything for a face task? (``finetune`` command)

The MAE paper's claim is about transfer (He et al. 2021, sec. 4-5): its pre-trained encoder,
fine-tuned on a labelled task, beats the same network trained from scratch, most of all when labels
are few. This module is that experiment on faces, with its honest control:

* **the network**: the run's encoder on the whole face (every patch visible, in order: no masking)
  and a small head, a LayerNorm and a Linear layer on the mean patch token (the paper fine-tunes
  with this global pooling); classes are learnt with cross-entropy, numbers with the squared error
  of the standardised target;
* **the recipe**: AdamW with layer-wise learning-rate decay (the paper's fine-tuning, after BEiT:
  block ``i`` learns at ``layer_decay ** (depth + 1 - (i + 1))`` of the rate, the patch embedding
  and class token at ``layer_decay ** (depth + 1)``, the head at the full rate), the One-Cycle plan
  of :mod:`mae_utils.optim`; ``augment`` adds the run's own augmentation (crops, flips) drawn
  per image as training draws it. It is off by default: made for reconstruction, its zoomed-out
  crops put another training face in the frame, and on real faces it cost accuracy (UTKFace gender
  and age, Yale identity: ``benchmarks/finetune_real_faces.md``);
* ``from_scratch``: the same network and budget from random (seeded) weights, which loads no
  pre-trained weight: the control that tells what pre-training gave;
* ``train_fraction``: a seeded, stratified share of the training labels (class shares kept; a
  number is stratified on its quantile bins), to measure label efficiency;
* ``freeze_blocks``: the patch embedding and the first K blocks keep their weights.

Which faces: the run's own data uses the run's split (fit on ``train``; ``val`` is reported each
epoch and picks ``checkpoints/best``; score on ``test``); another folder is split here (seeded),
and the split is saved. Labels come from :mod:`mae_utils.tools.labels` (synthetic attributes,
class folders, file names); a test face of a class training never saw counts as wrong.

A fine-tune is a run folder of its own (``config.json`` with these settings, the source run's path
and the SHA-256 of the weights it started from; ``split.json``, ``metrics.jsonl``, ``log.txt``,
``checkpoints/``, ``results.json``). Its epochs run in the shared training loop
(:mod:`mae_utils.util.loop`): this module gives it the network, the epoch (batches, loss, step)
and the validation, and the loop does the rest as for ``train``: seeding, checkpoints, exact
resume, metrics, progress, Ctrl-C and SIGTERM. The result is the test accuracy (classes) or mean
absolute error (numbers) of the last epoch's network, with a 95% interval, beside chance.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..util import checkpoint as ckpt
from ..util import loop, runtime
from ..util.errors import UserError, check_seed, sigterm_as_interrupt
from ..util.fileio import atomic_write_text, file_sha256
from ..util.folders import is_several
from ..util.loaders import build_loader, mix_seed, plan_batches
from ..util.loop import Task
from ..util.progress import tqdm
from ..util.rundir import RunFolder, new_run_id, read_run_id, stamp_split
from ..util.runtime import resolve_device
from ..util.text_table import aligned_table
from ..config import (DEVICES, TrainConfig, annotation_type, check_fracs, check_run_dir,
                      load_run_config)
from ..metrics import prediction_score, score_text
from ..model import MaskedAutoencoder
from ..optim import make_adamw, one_cycle_plan, param_groups
from ..pretrained import load_model_from_run
from ..splits import DataSplits, TrainItems, prepare_data, train_loader
from ..transforms import batch_to_input
from .labels import TASKS, check_pattern, dataset_labels

__all__ = ["FinetuneConfig", "FinetuneData", "FinetuneNet", "FinetuneResult", "LabelledItems",
           "add_cli_arguments", "finetune", "finetune_data", "finetune_loss", "finetune_optimizer",
           "format_results", "initial_network", "label_fraction", "layer_scales", "resume_settings",
           "run_cli", "source_weights"]

#: Regression targets are stratified on at most this many quantile bins (fewer for few faces).
QUANTILE_BINS = 5
#: Seeds the head's initial weights apart from the encoder's (from_scratch).
HEAD_SALT = 5
#: A fine-tune's results, next to its config.json.
RESULTS_FILE = "results.json"


def _f(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class FinetuneConfig:
    """Every fine-tuning setting; field names are the CLI's flags with dashes, validated once."""

    run: str = _f("", "the pre-trained run folder (runs/NAME) whose encoder is fine-tuned",
                  metavar="RUN_DIR")
    target: str = _f("", "what to predict: a synthetic attribute (beard, glasses, skin_tone, ...), "
                         "a named group of --label-regex, or any name for class sub-folders")
    out_dir: str = _f("", "the fine-tune's own run folder", metavar="OUT_DIR")
    data_dir: str | None = _f(None, "labelled faces; default: the run's own data and split")
    label_regex: str | None = _f(None, r"read labels from file names with a named group, e.g. "
                                       r"'^(?P<age>\d+)_(?P<gender>\d)_'", metavar="PATTERN")
    task: str = _f("auto", "classify or regress; auto: many distinct numbers are regressed",
                   choices=TASKS)
    train_fraction: float = _f(1.0, "seeded, stratified share of the training labels to use")
    from_scratch: bool = _f(False, "the same network from random weights (no pre-trained weight)")
    shuffle_labels: bool = _f(False, "honesty check: train on randomly permuted (seeded) "
                                     "labels; the test score should then be chance")
    freeze_blocks: int = _f(0, "keep the patch embedding and the first K encoder blocks frozen",
                            metavar="K")
    checkpoint: str = _f("best", "which checkpoint of the run to start from",
                         choices=("best", "last"))
    epochs: int = _f(10, "passes over the training labels")
    batch_size: int = _f(32, "faces per step")
    # 0.01: the low end of the plateau a search on UTKFace's validation faces found (gender and
    # age with 10% of the labels: 0.01 and 0.03 level, 0.003 worse, 0.1 diverged on gender;
    # benchmarks/finetune_real_faces.md)
    base_lr: float = _f(0.01, "learning rate per 256 faces (peak = base_lr x batch / 256)")
    layer_decay: float = _f(0.75, "layer-wise learning-rate decay, in (0, 1]")
    weight_decay: float = _f(0.05, "AdamW weight decay")
    warmup_frac: float = _f(0.1, "share of the steps spent warming the learning rate up")
    augment: bool = _f(False, "the run's training augmentation (crops, flips) on the faces; off: "
                              "its zoomed-out crops cost accuracy on real faces")
    val_frac: float = _f(0.1, "share held out for validation when --data-dir is split here")
    test_frac: float = _f(0.2, "share held out for the test when --data-dir is split here")
    seed: int = _f(0, "seed of the split, the label share, the head and the batch order")
    device: str = _f("auto", "where to train", choices=DEVICES)
    num_workers: int = _f(0, "data-loading worker processes")
    cache_dir: str | None = _f(None, "where decoded faces are cached (default: the run's)")

    def validate(self) -> "FinetuneConfig":
        """Check every field once, with messages naming the flag; returns self."""
        for name in ("run", "target", "out_dir"):
            if not getattr(self, name):
                raise UserError(f"--{name.replace('_', '-')} is required")
        check_seed(self.seed)
        if self.checkpoint not in ("best", "last") or self.device not in DEVICES:
            raise UserError(f"--checkpoint must be best or last, --device one of "
                            f"{', '.join(DEVICES)}; got {self.checkpoint!r}, {self.device!r}")
        if self.task not in TASKS:
            raise UserError(f"--task must be one of {', '.join(TASKS)}; got {self.task!r}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise UserError(f"--train-fraction must lie in (0, 1]; got {self.train_fraction}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise UserError(f"--layer-decay must lie in (0, 1]; got {self.layer_decay}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1; "
                                f"got {getattr(self, name)}")
        if self.freeze_blocks < 0 or self.num_workers < 0:
            raise UserError("--freeze-blocks and --num-workers must be >= 0")
        if not (self.base_lr > 0 and self.weight_decay >= 0 and 0 <= self.warmup_frac < 1):
            raise UserError("--base-lr must be > 0, --weight-decay >= 0, --warmup-frac in [0, 1)")
        check_fracs(self.val_frac, self.test_frac)
        if self.label_regex:
            check_pattern(self.label_regex)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------- labels and their share
def _strata(values: np.ndarray, task: str) -> np.ndarray | None:
    """What a stratified split keeps in proportion: the class, or a number's quantile bin."""
    if task == "classify":
        return values
    bins = min(QUANTILE_BINS, len(values) // 4)
    if bins < 2:
        return None
    edges = np.quantile(values.astype(np.float64), np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, values.astype(np.float64), side="right")


def label_fraction(values: np.ndarray, task: str, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of a seeded, stratified ``fraction`` of ``values`` (all of them at 1)."""
    from sklearn.model_selection import train_test_split  # local: a heavy import

    if fraction >= 1.0:
        return np.arange(len(values))
    try:
        kept, _ = train_test_split(np.arange(len(values)), train_size=fraction, random_state=seed,
                                   stratify=_strata(values, task))
    except ValueError as exc:
        raise UserError(f"--train-fraction {fraction:g} of {len(values)} labelled training faces "
                        f"cannot keep every class: {exc}; raise --train-fraction") from None
    return np.sort(kept)


# ---------------------------------------------------------------------- the labelled faces
class LabelledItems(TrainItems):
    """:class:`~mae_utils.splits.TrainItems` whose items also carry their label (a class index,
    -1 for a class training never saw, or a standardised number): the augmentation of each face is
    a function of (seed, epoch, index), so a resumed fine-tune sees exactly the same batches."""

    def __init__(self, ds: Any, labels: torch.Tensor, num_patches: int, seed: int, salt: int,
                 augment: Any = None) -> None:
        super().__init__(ds, num_patches, seed, salt, augment)
        self.labels = labels

    def __getitem__(self, i: int):
        return (*super().__getitem__(i), self.labels[i])


@dataclass
class FinetuneData:
    """The labelled training, validation and test faces and how their labels are coded."""

    task: str  # "classify" or "regress"
    classes: list[str]  # the training classes, in index order (classify)
    mean: float = 0.0  # the training target's mean and spread (regress): the net predicts z-scores
    std: float = 1.0
    notes: list[str] = field(default_factory=list)
    items: dict[str, LabelledItems] = field(default_factory=dict)  # train, val, test
    values: dict[str, np.ndarray] = field(default_factory=dict)  # each part's labels as read

    def code(self, values: np.ndarray) -> torch.Tensor:
        """Labels as the loss reads them: class indices (-1: unseen class), or z-scores."""
        if self.task == "classify":
            index = {c: i for i, c in enumerate(self.classes)}
            return torch.tensor([index.get(v, -1) for v in values.tolist()], dtype=torch.long)
        return torch.tensor((values.astype(np.float64) - self.mean) / self.std, dtype=torch.float32)

    def decode(self, outputs: torch.Tensor) -> np.ndarray:
        """The network's outputs as labels: the most likely class, or the number."""
        if self.task == "classify":
            return np.asarray(self.classes)[outputs.argmax(1).cpu().numpy()]
        return outputs[:, 0].double().cpu().numpy() * self.std + self.mean


def _splits(settings: FinetuneConfig, source: TrainConfig, out_dir: Path,
            log: Callable[[str], None]) -> tuple[DataSplits, str]:
    """The faces split train / val / test (the run's split for its own data), and their name."""
    own = settings.data_dir is None
    folder = source.data_dir if own else settings.data_dir
    where = ("the synthetic faces" if folder is None
             else ", ".join(map(str, folder)) if is_several(folder) else str(folder))
    one_folder = folder is not None and not is_several(folder)  # several: prepare_data checks them
    if own and one_folder and not Path(folder).expanduser().is_dir():
        raise UserError(f"the run's data folder {folder!r} is not a folder here; pass --data-dir "
                        "with its location")
    split_path = out_dir / "split.json"
    if own and not split_path.exists():
        source_split = Path(settings.run) / "split.json"
        if not source_split.is_file():
            raise UserError(f"{source_split} not found: cannot tell which faces {settings.run} "
                            "trained on; pass --data-dir to split labelled faces here")
        shutil.copyfile(source_split, split_path)  # the run's test faces stay the test faces
    splits = prepare_data(
        folder, source.image_size, max_images=source.max_images if own else None,
        val_frac=settings.val_frac, test_frac=settings.test_frac,
        seed=source.seed if own else settings.seed, split_path=split_path,
        cache_dir=settings.cache_dir or source.cache_dir, augment=False, log=log,
    )
    return splits, where


def _labelled(splits: DataSplits, settings: FinetuneConfig, where: str) -> dict[str, Any]:
    """Each part's labels (``{part: (positions, values)}``), training's cut to their share."""
    lab = dataset_labels(splits.train, [settings.target], settings.label_regex, settings.task,
                         f"the training faces of {where}")[0]
    parts, notes = {}, list(lab.notes)
    share = label_fraction(lab.values, lab.task, settings.train_fraction, settings.seed)
    parts["train"] = (lab.keep[share], lab.values[share])
    if settings.shuffle_labels:
        parts["train"] = (parts["train"][0], np.random.default_rng(settings.seed).permutation(
            parts["train"][1]))
        notes.append(f"honesty check: training labels shuffled (seed {settings.seed})")
    if settings.train_fraction < 1.0:
        notes.append(f"training labels: a stratified {settings.train_fraction:g} share (seed "
                     f"{settings.seed}), {len(share)} of {len(lab.values)} faces")
    for part in ("val", "test"):
        other = dataset_labels(getattr(splits, part), [settings.target], settings.label_regex,
                               lab.task, f"the {part} faces of {where}", check=False)[0]
        if len(other.keep) == 0:
            raise UserError(f"no labelled {part} faces in {where}; raise --{part}-frac or add "
                            "faces")
        parts[part] = (other.keep, other.values)
    return {"parts": parts, "task": lab.task, "notes": notes}


def finetune_data(settings: FinetuneConfig, source: TrainConfig, out_dir: Path,
                  log: Callable[[str], None] = print) -> FinetuneData:
    """The labelled faces of a fine-tune (see the module docstring); the split saved in
    ``out_dir``."""
    splits, where = _splits(settings, source, out_dir, log)
    found = _labelled(splits, settings, where)
    task, parts = found["task"], found["parts"]
    y_train = parts["train"][1]
    classes = sorted(set(y_train.tolist())) if task == "classify" else []
    if task == "classify" and len(classes) < 2:
        raise UserError(f"the training labels of {settings.target!r} hold a single class: "
                        "nothing to tell apart; raise --train-fraction or add faces")
    mean = float(np.mean(y_train)) if task == "regress" else 0.0
    std = float(np.std(y_train)) if task == "regress" else 1.0
    if task == "regress" and not std > 0:
        raise UserError(f"the training values of {settings.target!r} are all equal: nothing "
                        "to learn")
    data = FinetuneData(task, classes, mean, std, notes=found["notes"])
    num_patches = (source.image_size // source.patch_size) ** 2
    augment = source.augmentation() if settings.augment else None
    for salt, part in enumerate(("train", "val", "test"), start=1):
        positions, values = parts[part]
        ds = torch.utils.data.Subset(getattr(splits, part), positions.tolist())
        data.items[part] = LabelledItems(ds, data.code(values), num_patches, settings.seed, salt,
                                         augment if part == "train" else None)
        data.values[part] = values
    return data


# ---------------------------------------------------------------------- the network
class FinetuneNet(nn.Module):
    """An MAE's encoder on whole faces and a head on the mean patch token.

    ``mae`` keeps its decoder (frozen, never called), so its weights stay those of the MAE they
    came from; ``outputs``: the number of classes, or 1 for a number.
    """

    def __init__(self, mae: MaskedAutoencoder, outputs: int) -> None:
        super().__init__()
        self.mae = mae
        for name, p in mae.named_parameters():
            if not _in_encoder(name):
                p.requires_grad_(False)
        width = mae.config["embed_dim"]
        self.head = nn.Sequential(nn.LayerNorm(width, eps=1e-6), nn.Linear(width, outputs))
        nn.init.normal_(self.head[1].weight, std=2e-5)  # the paper's head starts near zero
        nn.init.zeros_(self.head[1].bias)
        self.config = {"mae": dict(mae.config), "outputs": outputs}

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        visible = imgs.new_zeros(imgs.shape[0], self.mae.num_patches)  # every patch, in order
        latent, _, _ = self.mae.forward_encoder(imgs, mask_ratio=0.0, mask=visible)
        return self.head(latent[:, 1:].mean(1))

    def freeze(self, blocks: int) -> None:
        """Keep the patch embedding, the class token and the first ``blocks`` blocks as they are."""
        depth = len(self.mae.blocks)
        if blocks > depth:
            raise UserError(f"--freeze-blocks {blocks} is more than the encoder's {depth} blocks")
        for name, p in self.mae.named_parameters():
            if blocks and _layer(name, depth) <= blocks:
                p.requires_grad_(False)


def _in_encoder(name: str) -> bool:
    return not name.startswith(("decoder", "mask_token"))


def _layer(name: str, depth: int) -> int:
    """The depth of a parameter for the learning-rate decay: 0 for the patch embedding, class
    token and positions, ``i + 1`` in block ``i``, ``depth + 1`` for the final norm and the head."""
    name = name.removeprefix("mae.")
    if name.startswith(("patch_embed", "cls_token", "pos_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def layer_scales(net: FinetuneNet, decay: float) -> Callable[[str], float]:
    """Each parameter's share of the learning rate: ``decay ** (depth + 1 - layer)``."""
    depth = len(net.mae.blocks)
    return lambda name: decay ** (depth + 1 - _layer(name, depth))


def source_weights(settings: FinetuneConfig) -> Path:
    """The weights file of the run's checkpoint a fine-tune starts from (or takes the shape of)."""
    return ckpt.resolve(Path(settings.run) / "checkpoints" / settings.checkpoint) / ckpt.MODEL_FILE


def initial_network(settings: FinetuneConfig, outputs: int,
                    device: str | torch.device = "cpu") -> FinetuneNet:
    """The network a fine-tune starts from: the run's encoder, or with ``from_scratch`` the same
    architecture freshly initialised (seeded by ``settings.seed``; only the shape is read from the
    run, no weight); the head is seeded either way."""
    if settings.from_scratch:
        torch.manual_seed(settings.seed)
        mae = MaskedAutoencoder(**ckpt.read_file_config(source_weights(settings)))
    else:
        mae, _ = load_model_from_run(settings.run, settings.checkpoint, "cpu")
    torch.manual_seed(mix_seed(settings.seed, HEAD_SALT))  # the same head with either encoder
    net = FinetuneNet(mae.train(), outputs)
    net.freeze(settings.freeze_blocks)
    return net.to(device)


def finetune_optimizer(net: FinetuneNet, settings: FinetuneConfig, total_steps: int
                       ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR, str | None]:
    """AdamW with layer-wise learning-rate decay on the One-Cycle plan of :mod:`mae_utils.optim`."""
    peak = settings.base_lr * settings.batch_size / 256
    groups = param_groups(net, settings.weight_decay, layer_scales(net, settings.layer_decay))
    for group in groups:
        group["lr"] = peak * group["lr_scale"]
    optimizer = make_adamw(groups, peak)
    plan, note = one_cycle_plan(total_steps, settings.warmup_frac)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, plan), note


def finetune_loss(net: nn.Module, imgs: torch.Tensor, labels: torch.Tensor,
                  task: str) -> torch.Tensor:
    """Cross-entropy for classes (faces of classes training never saw are left out), else the
    squared error of the standardised number."""
    out = net(imgs)
    if task == "classify":
        return F.cross_entropy(out, labels, ignore_index=-1)
    return F.mse_loss(out[:, 0], labels)


# ---------------------------------------------------------------------- one fine-tune
@dataclass
class _Job:
    """What one fine-tune holds while the shared loop runs it."""

    settings: FinetuneConfig
    source: TrainConfig
    out_dir: Path
    device: torch.device
    data: FinetuneData
    net: FinetuneNet
    batch_size: int
    log: Callable[[str], None]
    task: Task | None = None


def _loader(job: _Job, part: str, epoch: int | None = None) -> torch.utils.data.DataLoader:
    items = job.data.items[part]
    if epoch is None:  # validation and test: every face once, in order, never augmented
        return build_loader(items, job.batch_size, shuffle=False, device=job.device,
                            num_workers=job.settings.num_workers, persistent_workers=False)
    return train_loader(items, job.batch_size, seed=job.settings.seed, epoch=epoch,
                        num_workers=job.settings.num_workers, device=job.device)


def _train_epoch(job: _Job, epoch: int) -> dict[str, Any]:
    """One pass over the training labels; the loop seeds it and saves after it."""
    net, task = job.net, job.task
    net.train()
    total, count, lr = 0.0, 0, float("nan")
    for imgs, _noise, aug, labels in task.bar(_loader(job, "train", epoch), epoch):
        x = batch_to_input(imgs, job.device, augment=aug)
        lr = task.optimizer.param_groups[-1]["lr"]  # the head's rate, the full one
        loss = finetune_loss(net, x, labels.to(job.device), job.data.task)
        task.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        task.optimizer.step()
        task.scheduler.step()
        task.progress.step += 1
        total += float(loss.detach()) * len(x)
        count += len(x)
    return {"train_loss": total / max(count, 1), "lr": lr}


@torch.no_grad()
def _outputs(job: _Job, part: str) -> tuple[torch.Tensor, float]:
    """The network's outputs on every face of ``part`` (in order) and their mean loss."""
    job.net.eval()
    outs, total = [], 0.0
    for imgs, _noise, _aug, labels in _loader(job, part):
        x = batch_to_input(imgs, job.device)
        out = job.net(x)
        outs.append(out.float().cpu())
        labels = labels.to(job.device)
        if job.data.task == "classify":
            total += float(F.cross_entropy(out, labels, ignore_index=-1, reduction="sum"))
        else:
            total += float(F.mse_loss(out[:, 0], labels, reduction="sum"))
    job.net.train()
    return torch.cat(outs), total / len(job.data.items[part])


def _score(job: _Job, part: str) -> dict[str, Any]:
    """``part``'s loss and score (accuracy or mean absolute error) with its 95% interval."""
    outputs, loss = _outputs(job, part)
    truth = job.data.values[part]
    return {"loss": loss, **prediction_score(job.data.task, truth, job.data.decode(outputs)),
            "n": len(truth)}


def _validate(job: _Job, epoch: int) -> dict[str, Any]:
    scored = _score(job, "val")
    return {"val_loss": scored["loss"], "val_score": scored["score"]}


#: Settings a resumed fine-tune may change; the rest define its data, network or trajectory.
RESUME_OVERRIDABLE = ("epochs", "device", "num_workers")


def _read_record(out_dir: Path) -> dict[str, Any]:
    """A fine-tune's ``config.json``."""
    path = out_dir / "config.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} ({exc}); is {out_dir} a fine-tune's folder?") from None
    if not isinstance(record, dict) or not isinstance(record.get("finetune"), dict):
        raise UserError(f"{path} is not a fine-tune's config.json (no 'finetune' settings); "
                        "resume a training run with 'train --resume'")
    return record


def resume_settings(out_dir: str | Path, **changes: Any) -> FinetuneConfig:
    """The settings of the fine-tune in ``out_dir``, with ``changes`` to :data:`RESUME_OVERRIDABLE`
    (e.g. ``epochs=20`` extends it)."""
    out_dir = check_run_dir(out_dir, "--resume")
    saved = FinetuneConfig(**_read_record(out_dir)["finetune"])
    fixed = sorted(k for k, v in changes.items()
                   if k not in RESUME_OVERRIDABLE and getattr(saved, k) != v)
    if fixed:
        raise UserError(f"--resume takes the settings from {out_dir}/config.json; cannot change "
                        f"{', '.join('--' + k.replace('_', '-') for k in fixed)} (allowed: "
                        f"{', '.join('--' + k.replace('_', '-') for k in RESUME_OVERRIDABLE)})")
    return dataclasses.replace(saved, **changes, out_dir=str(out_dir))


def _source_record(settings: FinetuneConfig) -> dict[str, Any]:
    """Where the fine-tune's start came from: the run, its checkpoint, the weights' hash."""
    weights = source_weights(settings)
    return {"source_run": str(Path(settings.run).resolve()),
            "source_weights": str(weights.resolve()),
            "source_sha256": file_sha256(weights),
            "weights_loaded": not settings.from_scratch}


def _write_record(job: _Job, record: dict[str, Any] | None, run_id: str) -> None:
    """config.json: the settings, the source run and its hash, the label coding, the network."""
    data = job.data
    base = record if record is not None else _source_record(job.settings)
    keep = {k: base[k] for k in ("source_run", "source_weights", "source_sha256", "weights_loaded")}
    out = {"finetune": job.settings.to_dict(), **keep, "source_config": job.source.to_dict(),
           "task": data.task, "classes": data.classes, "mean": data.mean, "std": data.std,
           "model": job.net.config, "run_id": run_id,
           "runtime": runtime.environment(job.device, None, 1)}
    atomic_write_text(job.out_dir / "config.json", json.dumps(out, indent=2) + "\n")
    stamp_split(job.out_dir / "split.json", run_id)


def _file_log(path: Path, echo: Callable[[str], None] | None) -> Callable[[str], None]:
    """Print a line (above the progress bars) and append it to the fine-tune's log.txt."""
    show = echo or tqdm.write

    def log(message: str) -> None:
        # file names that are not valid UTF-8 arrive as surrogates: shown escaped, never a crash
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        show(message)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(message + "\n")

    return log


def _open_job(settings: FinetuneConfig, record: dict[str, Any] | None, restore: bool,
              log: Callable[[str], None]) -> _Job:
    """The data, the network (the run's encoder, or the saved one's shape when restoring) and
    the batch size that runs."""
    out_dir = Path(settings.out_dir)
    source = (TrainConfig.from_dict(record["source_config"]) if record is not None
              else load_run_config(settings.run))
    device = resolve_device(settings.device)
    data = finetune_data(settings, source, out_dir, log)
    for note in data.notes:
        log(note)
    outputs = len(data.classes) if data.task == "classify" else 1
    if restore:  # the weights come from the fine-tune's own checkpoint: the run is not needed
        shape = ckpt.read_model_config(out_dir / "checkpoints" / "last")
        net = FinetuneNet(MaskedAutoencoder(**shape["mae"]), outputs)
        net.freeze(settings.freeze_blocks)
        net = net.to(device)
    else:
        net = initial_network(settings, outputs, device)
    batch, _, warning = plan_batches(len(data.items["train"]), settings.batch_size)
    if warning:
        log(warning)
    return _Job(settings, source, out_dir, device, data, net, batch, log)


def _make_task(job: _Job, folder: RunFolder) -> Task:
    """The fine-tune as the shared loop's :class:`~mae_utils.util.loop.Task`."""
    steps = len(job.data.items["train"]) // job.batch_size
    total = job.settings.epochs * steps
    optimizer, scheduler, note = finetune_optimizer(job.net, job.settings, total)
    if note:
        job.log(note)

    def committed() -> None:
        for line in folder.committed():
            job.log(line)

    return Task(job.net, optimizer, scheduler, lambda e: _train_epoch(job, e),
                lambda e: _validate(job, e), job.settings.epochs, job.out_dir / "checkpoints",
                name="fine-tune epoch", seed=job.settings.seed, model_config=job.net.config,
                extra_state=lambda: {"settings": job.settings.to_dict()},
                describe=lambda line: _describe(job, line),
                val_keys=("val_loss", "val_score"), metrics_file=job.out_dir / "metrics.jsonl",
                log=job.log, after_save=committed)


def _describe(job: _Job, line: dict[str, Any]) -> str:
    """An epoch's log line: the losses and the validation score in the target's own terms."""
    text = f"epoch {line['epoch']}/{job.settings.epochs}: train loss {line['train_loss']:.4f}"
    if line["val_loss"] is not None:
        score = line["val_score"]
        classes = job.data.task == "classify"
        shown = f"accuracy {100 * score:.1f}%" if classes else f"MAE {score:.3g}"
        text += f", val loss {line['val_loss']:.4f}, val {shown}"
    return f"{text}, {line['seconds']:.1f} s"


def _check_resume(job: _Job, state: dict[str, Any]) -> bool:
    """Refuse a checkpoint of other settings; whether the saved learning-rate plan still holds."""
    saved = state["settings"]
    changed = [k for k, v in job.settings.to_dict().items()
               if k not in RESUME_OVERRIDABLE + ("out_dir",) and saved.get(k) != v]
    if changed:
        raise UserError(f"cannot resume {job.out_dir} with different {', '.join(changed)}; only "
                        f"{', '.join(RESUME_OVERRIDABLE)} may change on resume")
    return saved.get("epochs") == job.settings.epochs


# ---------------------------------------------------------------------- results
@dataclass
class FinetuneResult:
    """What :func:`finetune` returns: the folder, the test scores (network, then chance) as rows
    of ``name``, ``score``, ``low``, ``high``, ``n``, the table and every epoch's metrics line."""

    run_dir: Path
    target: str
    task: str
    rows: list[dict[str, Any]]
    table: str
    history: list[dict[str, Any]]
    seconds: float


def _chance(data: FinetuneData) -> dict[str, Any]:
    """The majority training class, or the training mean, scored on the test faces."""
    truth, train = data.values["test"], data.values["train"]
    if data.task == "classify":
        names, counts = np.unique(train, return_counts=True)
        guess = np.full(len(truth), names[np.argmax(counts)], dtype=object)  # never truncated
        name = "chance (majority class)"
    else:
        guess, name = np.full(len(truth), float(np.mean(train))), "chance (training mean)"
    return {"name": name, **prediction_score(data.task, truth, guess), "n": len(truth)}


def format_results(result_rows: list[dict[str, Any]], target: str, task: str, n_train: int) -> str:
    """The test scores as a small plain-text table, with their 95% intervals."""
    metric = "accuracy" if task == "classify" else "mean abs. error"
    table = [["", metric, "95% interval"]]
    table += [[r["name"], score_text(r["score"], task),
               f"[{score_text(r['low'], task)}, {score_text(r['high'], task)}]"]
              for r in result_rows]
    lines = [f"target {target!r}: {metric} on {result_rows[0]['n']} test faces "
             f"({'higher' if task == 'classify' else 'lower'} is better), fine-tuned on "
             f"{n_train} labelled faces"]
    return "\n".join(lines + aligned_table(table))


def _finish(job: _Job, seconds: float) -> FinetuneResult:
    """Score the last epoch's network on the test faces; results.json and the table."""
    settings = job.settings
    name = "fine-tuned from scratch" if settings.from_scratch else "fine-tuned from the MAE"
    if settings.freeze_blocks:
        name += f", {settings.freeze_blocks} block(s) frozen"
    scored = _score(job, "test")
    rows = [{"name": name, **{k: scored[k] for k in ("score", "low", "high", "n")}},
            _chance(job.data)]
    table = format_results(rows, settings.target, job.data.task, len(job.data.items["train"]))
    record = {"target": settings.target, "task": job.data.task, "metric": "accuracy"
              if job.data.task == "classify" else "mean_absolute_error", "rows": rows,
              "epochs": job.task.progress.epoch, "train_faces": len(job.data.items["train"]),
              "seconds": seconds}
    atomic_write_text(job.out_dir / RESULTS_FILE, json.dumps(record, indent=2) + "\n")
    history = list(job.task.progress.history)
    return FinetuneResult(job.out_dir, settings.target, job.data.task, rows, table, history,
                          seconds)


# ---------------------------------------------------------------------- the library call
def finetune(settings: FinetuneConfig, *, resume: bool = False, overwrite: bool = False,
             log: Callable[[str], None] | None = None) -> FinetuneResult:
    """Fine-tune ``settings.run``'s encoder on ``settings.target`` into ``settings.out_dir`` (with
    ``resume``, continue the fine-tune there: :func:`resume_settings` reads its settings), then
    score it on the test faces. The folder follows the rules of a training run's (lock,
    ``overwrite``, rollback of a failed start: :class:`~mae_utils.util.rundir.RunFolder`); ``log``
    receives each line (default: printed above the progress bars)."""
    started = time.perf_counter()
    settings.validate()
    if not resume:  # before the folder is touched: a missing run or checkpoint is the user's to fix
        check_run_dir(settings.run)
        source_weights(settings)
    folder = RunFolder(settings.out_dir, resume=resume, overwrite=overwrite).open()
    failed = True
    try:
        with sigterm_as_interrupt():
            out_dir = Path(settings.out_dir)
            echo = _file_log(out_dir / "log.txt", log)
            for note in folder.notes:
                echo(f"note: {note}")
            record = _read_record(out_dir) if resume else None
            restore = resume and folder.has_checkpoint
            job = _open_job(settings, record, restore, echo)
            job.task = _make_task(job, folder)
            if restore:
                loop.resume(job.task, {"settings": dict}, lambda state: _check_resume(job, state))
                done = job.task.progress
                echo(f"resumed after epoch {done.epoch} (step {done.step})")
            _write_record(job, record, read_run_id(out_dir) if resume else new_run_id())
            loop.run_epochs(job.task)
            result = _finish(job, time.perf_counter() - started)
        failed = False
    finally:
        folder.close(failed=failed)
    return result


# ---------------------------------------------------------------------- command line
def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`FinetuneConfig` field, plus --resume and --overwrite."""
    parser.description = (
        "Fine-tune a run's encoder (whole faces, no masking) with a small head on a labelled "
        "target: AdamW with layer-wise learning-rate decay on a One-Cycle plan (--augment adds "
        "the run's augmentation); --from-scratch trains the same network from random weights "
        "(the control). Prints the test accuracy or mean absolute error with a 95% interval."
    )
    for f in fields(FinetuneConfig):
        base, _ = annotation_type(f.type)
        kwargs: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS,
                                      help=f"{f.metadata['help']} (default: {f.default})")
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = base
            if f.metadata.get("choices"):
                kwargs["choices"] = f.metadata["choices"]
            else:
                kwargs["metavar"] = f.metadata.get("metavar") or (
                    "DIR" if f.name.endswith("_dir") else {int: "N", float: "X"}.get(base, "TEXT"))
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)
    parser.add_argument("--resume", metavar="OUT_DIR", default=None,
                        help="continue the fine-tune in OUT_DIR from its last checkpoint (settings "
                             f"from its config.json; {', '.join(RESUME_OVERRIDABLE)} may change)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a fine-tune already in --out-dir (kept until the new one "
                             "saves its first checkpoint)")


def run_cli(args: argparse.Namespace) -> int:
    given = {f.name: getattr(args, f.name) for f in fields(FinetuneConfig) if hasattr(args, f.name)}
    if args.resume is not None:
        if args.overwrite:
            raise UserError("--resume continues a fine-tune and --overwrite replaces it: give one")
        if "out_dir" in given and Path(given.pop("out_dir")) != Path(args.resume):
            raise UserError("--out-dir cannot differ from --resume: a fine-tune continues in its "
                            "folder")
        settings = resume_settings(args.resume, **given)
    else:
        settings = FinetuneConfig(**given)
    result = finetune(settings, resume=args.resume is not None, overwrite=args.overwrite)
    print()
    print(result.table)
    print(f"\nresults: {result.run_dir / RESULTS_FILE} (wall time {result.seconds:.1f} s)")
    return 0

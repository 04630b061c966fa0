"""One training configuration for the notebook, the command line and ``config.json``.

:class:`TrainConfig` field names are the notebook's papermill parameters and, with dashes, the CLI
flags (``image_size`` <-> ``--image-size``). Each field's help text lives in its metadata, so the
``--help`` output and the docs cannot drift from the code. Validation happens once, up front
(:meth:`TrainConfig.validate`), with messages that name the field and the allowed values.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Collection

from .util.errors import UserError, check_seed
from .util.folders import check_several_folders, is_several, one_or_several
from .model import FILL_STARTS, OPTION_DEFAULTS, PRESETS, check_options, check_sizes
from .transforms import MAX_CROP_SCALE, SCALE_DRAWS, ZOOM_FILLS, Augment

DEVICES = ("auto", "cpu", "cuda", "mps")
AMP_MODES = ("auto", "bf16", "fp16", "none")

# Fields a resumed run may change; everything else must match the run's config.json, because it
# defines the data, the model or the optimisation trajectory. base_lr and grad_clip may change so
# that a run stopped by a non-finite loss can continue from its last good checkpoint more gently
# (the new values are recorded in config.json, and the log says from which step they apply).
RESUME_OVERRIDABLE = frozenset(
    {"epochs", "device", "num_workers", "patience", "sample_every", "eval_every", "compile", "amp",
     "base_lr", "grad_clip", "force_lr"}
)

# The fields a preset fills in when they are None (TrainConfig.architecture).
ARCHITECTURE_FIELDS = (
    "embed_dim", "depth", "num_heads", "decoder_embed_dim", "decoder_depth", "decoder_num_heads"
)

# Each preset's training recipe: the settings it trains with unless a flag or parameter sets one
# (None in a TrainConfig field means "the preset's"). `cpu` is the measured CPU recipe
# (benchmarks/cpu_recipe.md); `tiny` and `small` keep its optimiser settings (an encoder 192 wide
# trained well with them at 256 px, benchmarks/recipes/cpu_256.sh); `base` and `large` follow the
# paper's pre-training recipe (He et al. 2021, appendix A.1: AdamW, weight decay 0.05, base lr
# 1.5e-4 per 256 images, 40 warm-up epochs of 800) at this project's 256 px images and 16 px
# patches (the paper trains at 224), with a batch of 64 per GPU instead of the paper's 4096 in all.
_CPU_OPTIMISER = dict(base_lr=3.2e-2, warmup_frac=0.1, weight_decay=0.05, batch_size=16, epochs=14)
_PAPER_OPTIMISER = dict(base_lr=1.5e-4, warmup_frac=40 / 800, weight_decay=0.05, batch_size=64,
                        epochs=400)
# `cpu` trains twice as long as the others: on the synthetic faces of the default run, 28 epochs
# instead of 14 took the margin over harmonic inpainting from +0.67 to +1.87 dB (200 test faces,
# benchmarks/cpu_recipe.md) for about a minute more on two cores.
PRESET_RECIPES: dict[str, dict[str, Any]] = {
    "cpu": dict(image_size=64, patch_size=8, **{**_CPU_OPTIMISER, "epochs": 28}),
    "tiny": dict(image_size=64, patch_size=8, **_CPU_OPTIMISER),
    "small": dict(image_size=128, patch_size=16, **_CPU_OPTIMISER),
    "base": dict(image_size=256, patch_size=16, **_PAPER_OPTIMISER),
    "large": dict(image_size=256, patch_size=16, **_PAPER_OPTIMISER),
}
RECIPE_FIELDS = ("image_size", "patch_size", "batch_size", "base_lr", "warmup_frac", "weight_decay",
                 "epochs")
assert set(PRESET_RECIPES) == set(PRESETS)
assert all(set(recipe) == set(RECIPE_FIELDS) for recipe in PRESET_RECIPES.values())

# A base_lr more than this many times the recipe's of the nearest preset width is refused unless
# force_lr: ViT-Base given the CPU recipe's rate (200x the paper's) diverges.
LR_GUARD_FACTOR = 10.0


def peak_lr(base_lr: float, batch_size: int, world: int = 1) -> float:
    """The paper's linear scaling rule: ``base_lr x effective batch / 256``."""
    return base_lr * batch_size * world / 256


def recipe_preset(embed_dim: int, preset: str) -> str:
    """The preset whose encoder width is nearest ``embed_dim`` (``preset`` itself on a tie): whose
    recipe an encoder this wide trains with."""
    def distance(name: str) -> tuple[int, bool]:
        return abs(PRESETS[name]["embed_dim"] - embed_dim), name != preset

    return min(PRESETS, key=distance)


def setting_sources(preset: str, given: Collection[str]) -> dict[str, str]:
    """Where each :class:`TrainConfig` field's value came from: ``flag`` (in ``given``), ``preset
    NAME`` (a recipe or architecture field left unset) or ``default``."""
    from_preset = set(RECIPE_FIELDS) | set(ARCHITECTURE_FIELDS)
    return {f.name: "flag" if f.name in given else f"preset {preset}" if f.name in from_preset
            else "default" for f in fields(TrainConfig)}


def same_settings(a: "TrainConfig", b: "TrainConfig") -> bool:
    """Whether two configs train the same model the same way; the architecture is compared as built
    (``preset="tiny", embed_dim=128, ...`` equals the ``cpu`` preset with the same values)."""
    plain = [f.name for f in fields(a) if f.name not in ARCHITECTURE_FIELDS + ("preset",)]
    same_plain = all(getattr(a, n) == getattr(b, n) for n in plain)
    return same_plain and a.architecture() == b.architecture()


def fixed_on_resume(saved: "TrainConfig", values: dict[str, Any]) -> list[str]:
    """The names in ``values`` that differ from the run's
    ``saved`` settings but may not change on resume."""
    fixed = [k for k in values if k not in RESUME_OVERRIDABLE | {"out_dir"}]
    return [k for k in fixed if getattr(saved, k) != values[k]]


def check_fracs(val_frac: float, test_frac: float) -> None:
    """The held-out fractions: each in [0, 1), together
    leaving training images (settings and splits)."""
    for name, v in (("val_frac", val_frac), ("test_frac", test_frac)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not (0.0 <= v < 1.0):
            raise UserError(f"{name} must be a fraction in [0, 1), got {v!r}")
    if val_frac + test_frac >= 1.0:
        raise UserError(
            "val_frac + test_frac must be below 1 to leave training images, "
            f"got {val_frac} + {test_frac}"
        )


def _f(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    """Every training setting. The defaults are one CPU recipe, shared by the notebook, papermill
    and the CLI: the ``cpu`` preset (a 1 M-parameter MAE) at 64 px with 8 px patches, which trains
    in minutes on 2 cores, with the zoom-in/zoom-out crops that made models generalise to face
    sources they never saw (``benchmarks/cpu_recipe.md``). The architecture and recipe fields
    default to None, "the preset's": a preset builds exactly its row of ``model.PRESETS`` and trains
    with its row of ``PRESET_RECIPES`` (filled in on construction); a field set explicitly overrides
    that value."""

    # data
    data_dir: str | list[str] | None = _f(
        None, "folder of face photos (searched recursively), or several folders to train on "
        "together, each split on its own; none = built-in synthetic faces",
    )
    out_dir: str = _f(
        "runs/mae", "run directory (config.json, metrics.jsonl, checkpoints/, samples/)"
    )
    image_size: int | None = _f(
        None, "images are resized and center-cropped to this many pixels square"
    )
    max_images: int | None = _f(
        None,
        "use at most this many images (of each folder); none = all (synthetic faces: how many to "
        "generate, none = 2000)",
    )
    val_frac: float = _f(0.1, "fraction of images held out for validation")
    test_frac: float = _f(0.1, "fraction of images held out for the final test")
    augment: bool = _f(True, "augment training images (crops, flips and the colour settings below)")
    crop_scale_min: float = _f(
        0.5, "augmentation: smallest crop, as a share of the image area (< 1 zooms in)"
    )
    crop_scale_max: float = _f(
        1.4, "augmentation: largest crop; > 1 zooms out, the face smaller in the frame"
    )
    crop_scale_draw: str = _f(
        "uniform",
        "augmentation: how the crop's area is drawn between min and max: uniform, or log (each "
        "doubling equally likely; suits wide ranges such as 0.5-4)",
        choices=SCALE_DRAWS, legacy="uniform",
    )
    zoom_fill: str = _f(
        "photo",
        "augmentation: what surrounds a zoomed-out photo: mean (flat mean colour), reflect (its "
        "borders mirrored), photo (another training photo, met by the mirrored borders)",
        choices=ZOOM_FILLS, legacy="mean",
    )
    grey_prob: float = _f(0.0, "augmentation: probability of turning a training image grey")
    color_jitter: float = _f(
        0.0, "augmentation: brightness, contrast and saturation factors in [1-x, 1+x]"
    )
    cache_dir: str | None = _f(
        None,
        "where decoded uint8 images are cached; none = $MASKAE_CACHE_DIR or the project's "
        "data/cache; off (or false, no) = no cache",
    )
    # model
    preset: str = _f(
        "cpu", "model size (model.PRESETS); cpu = minutes on a laptop, base = ViT-Base",
        choices=tuple(PRESETS),
    )
    patch_size: int | None = _f(None, "patch side in pixels; image_size must be a multiple of it")
    embed_dim: int | None = _f(None, "encoder width; none = the preset's")
    depth: int | None = _f(None, "encoder blocks; none = the preset's")
    num_heads: int | None = _f(None, "encoder attention heads; none = the preset's")
    decoder_embed_dim: int | None = _f(None, "decoder width; none = the preset's")
    decoder_depth: int | None = _f(None, "decoder blocks; none = the preset's")
    decoder_num_heads: int | None = _f(None, "decoder attention heads; none = the preset's")
    norm_pix_loss: bool = _f(
        False,
        "loss on per-patch normalised pixels (MAE paper sec. 3); sharper features, odd colours",
    )
    mask_ratio: float = _f(0.75, "fraction of patches hidden from the encoder (paper: 0.75)")
    init_from: str | None = _f(
        None,
        "start from these weights: an official MAE .pth, a Hugging Face ViTMAE folder, or a run "
        "(or its checkpoint folder); the patch size and widths then come from the weights; none = "
        "random initialisation",
        metavar="PATH",
    )
    decode_fraction: float = _f(
        1.0, "training decodes only this share of the hidden patches, drawn per image (less "
        "decoder compute per step); evaluation always predicts them all; 1 = all (the paper)"
    )
    fill_start: str = _f(
        "none", "each hidden patch's decoder token starts from: none (the learned mask token, the "
        "paper), or harmonic (plus a learned map of that patch's harmonic fill from the visible "
        "pixels)",
        choices=FILL_STARTS,
    )
    standardize_visible: bool = _f(
        False, "standardise each image per channel by the mean and std of its visible pixels "
        "(undone on output; losses are then in those units): the model need not learn each photo's "
        "lighting and colour; not with norm_pix_loss"
    )
    # optimisation
    epochs: int | None = _f(None, "passes over the training images")
    batch_size: int | None = _f(
        None, "images per step per process; the effective batch is batch_size x number of "
        "processes (small batches, more steps: better for short CPU runs)"
    )
    base_lr: float | None = _f(
        None, "peak learning rate per 256 images: lr = base_lr x effective batch / 256 (MAE paper)"
    )
    force_lr: bool = _f(
        False, f"train even with a base_lr over {LR_GUARD_FACTOR:g}x the recipe's for the "
        "encoder's width (otherwise refused: such rates diverge)"
    )
    weight_decay: float | None = _f(
        None, "AdamW weight decay (not applied to biases, norms, tokens)"
    )
    warmup_frac: float | None = _f(
        None, "fraction of all steps spent warming up in the One-Cycle schedule"
    )
    grad_clip: float | None = _f(1.0, "clip the gradient norm to this; none = no clipping")
    seed: int = _f(0, "seed for the split, initial weights, batch order, masks and augmentation")
    # hardware
    device: str = _f("auto", "where to train; auto = CUDA, then MPS, then CPU", choices=DEVICES)
    amp: str = _f(
        "auto",
        "mixed precision; auto = bf16 on GPUs that have it, else fp16 on CUDA, none on CPU/MPS",
        choices=AMP_MODES,
    )
    compile: bool = _f(False, "torch.compile the model (pays off on GPUs; slow to start)")
    num_workers: int = _f(0, "data-loading worker processes")
    # run control
    patience: int | None = _f(
        None, "stop after this many validations without a better val loss; none = never"
    )
    eval_every: int = _f(1, "validate every this many epochs (and always after the last)")
    sample_every: int = _f(
        1, "save a reconstruction grid to samples/ every this many epochs; 0 = never"
    )

    def __post_init__(self) -> None:
        """A recipe field left at None takes the preset's value (``PRESET_RECIPES``); an unknown
        preset is left for :meth:`validate` to report."""
        self.data_dir = one_or_several(self.data_dir)
        recipe = PRESET_RECIPES.get(self.preset, {})
        for name, value in recipe.items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    # ------------------------------------------------------------------ validation
    def validate(self, *, need_init_from: bool = True) -> "TrainConfig":
        """Check every field once; raise :class:`UserError` naming the field and the allowed values.

        ``~`` in the path fields is expanded. ``need_init_from=False`` (a resume) does not require
        the ``init_from`` source to exist any more: the run's own checkpoint holds the weights.
        """
        for f in fields(self):
            _check_type(f, getattr(self, f.name))
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                value = getattr(self, f.name)
                raise UserError(f"{f.name} must be one of {', '.join(choices)}; got {value!r}")
        _positive(self, "image_size", "patch_size", "epochs", "batch_size", "eval_every")
        _positive(self, "max_images", *ARCHITECTURE_FIELDS, "patience")
        _non_negative(self, "num_workers", "sample_every", "weight_decay")
        check_seed(self.seed)
        if not 0.0 < self.crop_scale_min <= self.crop_scale_max <= MAX_CROP_SCALE:
            raise UserError(
                "crop_scale_min and crop_scale_max must satisfy "
                f"0 < min <= max <= {MAX_CROP_SCALE:g}; got "
                f"{self.crop_scale_min} and {self.crop_scale_max}"
            )
        if not 0.0 <= self.grey_prob <= 1.0:
            raise UserError(f"grey_prob must be a probability in [0, 1]; got {self.grey_prob}")
        if not 0.0 <= self.color_jitter < 1.0:
            raise UserError(f"color_jitter must be in [0, 1); got {self.color_jitter}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise UserError(
                f"mask_ratio must be between 0 and 1 (exclusive); got {self.mask_ratio}"
            )
        num_patches = (self.image_size // self.patch_size) ** 2
        if int(num_patches * (1 - self.mask_ratio)) < 1:
            raise UserError(
                f"mask_ratio {self.mask_ratio} leaves no visible patch of the {num_patches}; "
                "lower mask_ratio"
            )
        check_fracs(self.val_frac, self.test_frac)
        if self.val_frac <= 0.0:
            raise UserError("val_frac must be > 0: validation picks the best checkpoint")
        if not (self.base_lr > 0 and math.isfinite(self.base_lr)):
            raise UserError(f"base_lr must be a positive number; got {self.base_lr}")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise UserError(f"warmup_frac must be in [0, 1); got {self.warmup_frac}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise UserError(f"grad_clip must be > 0 or none; got {self.grad_clip}")
        self._expand_user()
        if is_several(self.data_dir):
            check_several_folders(self.data_dir)
        elif self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise UserError(f"data_dir {self.data_dir!r} is not a folder")
        if need_init_from and self.init_from is not None and not Path(self.init_from).exists():
            raise UserError(f"init_from {self.init_from!r}: no such file or folder")
        if not str(self.out_dir).strip():
            raise UserError("out_dir must name a folder")
        self._validate_model()
        self._check_lr()
        return self

    def _check_lr(self) -> None:
        """Refuse a base_lr far above what an encoder this wide trains with (unless force_lr)."""
        width = self.architecture()["embed_dim"]
        name = recipe_preset(width, self.preset)
        usual = PRESET_RECIPES[name]["base_lr"]
        if self.force_lr or self.base_lr / usual <= LR_GUARD_FACTOR * (1 + 1e-9):  # 10x passes
            return
        batch = self.batch_size
        way = ("leave --base-lr out (the preset's)" if name == self.preset
               else f"give --preset {name} (its recipe) or --base-lr {usual:g}")
        raise UserError(
            f"base_lr {self.base_lr:g} (peak lr {peak_lr(self.base_lr, batch):.3g} at batch "
            f"{batch}) is over {LR_GUARD_FACTOR:g}x what a {width}-wide encoder trains with: "
            f"preset {name}'s base_lr {usual:g} (peak lr {peak_lr(usual, batch):.3g}); {way}, "
            f"or give --force-lr (parameter force_lr) to train with {self.base_lr:g} anyway"
        )

    def _expand_user(self) -> None:
        """``~/x`` means the home folder in every path field,
        as in a shell (papermill passes it literally)."""
        for name in ("data_dir", "out_dir", "init_from", "cache_dir"):
            value = getattr(self, name)
            if isinstance(value, str) and value.startswith("~"):
                setattr(self, name, str(Path(value).expanduser()))
            elif is_several(value):
                setattr(self, name, [str(Path(v).expanduser()) for v in value])

    def _validate_model(self) -> None:
        arch = self.architecture()
        encoder = (arch["embed_dim"], arch["num_heads"])
        decoder = (arch["decoder_embed_dim"], arch["decoder_num_heads"])
        check_sizes(self.image_size, self.patch_size, 3, *encoder, *decoder)
        check_options(self.decode_fraction, self.fill_start, self.standardize_visible,
                      self.norm_pix_loss)

    def model_options(self) -> dict[str, Any]:
        """The model options (``MaskedAutoencoder`` constructor arguments) these fields choose."""
        return {name: getattr(self, name) for name in OPTION_DEFAULTS}

    # ------------------------------------------------------------------ helpers
    def model_overrides(self) -> dict[str, int]:
        """The architecture fields set explicitly (the rest come from ``preset``)."""
        return {n: getattr(self, n) for n in ARCHITECTURE_FIELDS if getattr(self, n) is not None}

    def architecture(self) -> dict[str, int]:
        """The six widths, depths and head counts the model
        gets: the preset's row, then the overrides."""
        return {**PRESETS[self.preset], **self.model_overrides()}

    def augmentation(self) -> Augment | None:
        """The training augmentation these fields describe (None with ``augment`` off)."""
        if not self.augment:
            return None
        return Augment(
            crop_scale=(self.crop_scale_min, self.crop_scale_max),
            grey=self.grey_prob,
            jitter=self.color_jitter,
            fill=self.zoom_fill,
            scale_draw=self.crop_scale_draw,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> "TrainConfig":
        """Build from a mapping (e.g. ``config.json``); unknown keys are an error naming them."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise UserError(f"{source}: unknown TrainConfig field(s) {', '.join(unknown)}")
        return cls(**values)


# ---------------------------------------------------------------------- field checks
def annotation_type(annotation: Any) -> tuple[type, bool]:
    """(the field's scalar type, whether None is allowed) from a string or real annotation."""
    hint = _evaluated(annotation)
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        non_none = [a for a in args if a is not type(None)]
        return non_none[0], len(non_none) < len(args)
    return hint, False


def admits_list(annotation: Any) -> bool:
    """Whether a field's annotation also takes a list (``str | list[str] | None``: folders)."""
    return any(typing.get_origin(a) is list for a in typing.get_args(_evaluated(annotation)))


def _evaluated(annotation: Any) -> Any:
    """An annotation as a type: a string one (``from __future__ import annotations``) evaluated."""
    if isinstance(annotation, str):
        return eval(annotation, vars(typing))  # noqa: S307 (own literals)
    return annotation


def _check_type(f: dataclasses.Field, value: Any) -> None:
    base, optional = annotation_type(f.type)
    if admits_list(f.type) and is_several(value):
        if not all(isinstance(v, str) for v in value):
            raise UserError(f"{f.name} must be a folder, a list of folders or none; got {value!r}")
        return
    if value is None:
        if optional:
            return
        raise UserError(f"{f.name} must not be none")
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[base]
    if not ok:
        or_none = " or none" if optional else ""
        raise UserError(f"{f.name} must be a {base.__name__}{or_none}; got {value!r}")
    if base is float and not math.isfinite(value):
        raise UserError(f"{f.name} must be a finite number; got {value!r}")


def _positive(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise UserError(f"{name} must be a positive integer; got {value}")


def _non_negative(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value is not None and value < 0:
            raise UserError(f"{name} must be >= 0; got {value}")


# ---------------------------------------------------------------------- run directories
def check_run_dir(run_dir: str | Path, option: str = "--run") -> Path:
    """``run_dir`` as a Path if it is a folder; else a :class:`UserError` saying what it is instead
    (missing, or a file): the one check of every command that reads a run (``option``: its flag)."""
    path = Path(run_dir)
    way_out = f"give {option} a training run's folder (runs/NAME, holding config.json)"
    if not path.exists():
        raise UserError(f"run directory {path} does not exist; {way_out}")
    if not path.is_dir():
        raise UserError(f"{option} {path} is a file, not a run folder; {way_out}")
    return path


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` stored in ``run_dir/config.json`` (written by ``fit``)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{path} not found: is {run_dir} a training run directory?")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from exc
    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in data.items() if k in names}
    # a field added later, with a new default, keeps the behaviour the run was trained with
    later = [f for f in fields(TrainConfig) if "legacy" in f.metadata and f.name not in data]
    values.update({f.name: f.metadata["legacy"] for f in later})
    return TrainConfig.from_dict(values, source=str(path))


# ---------------------------------------------------------------------- command line
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_optional(base: type, name: str):
    def parse(text: str):
        if text.strip().lower() in ("none", "null", ""):
            return None
        try:
            return base(text)
        except ValueError:
            message = f"invalid {base.__name__} value: {text!r} (or 'none')"
            raise argparse.ArgumentTypeError(message) from None

    parse.__name__ = base.__name__
    return parse


def _default_text(f: dataclasses.Field) -> str:
    """A field's default as ``--help`` states it; a recipe field's is each preset's value."""
    if f.name in RECIPE_FIELDS:
        values = (f"{name} {recipe[f.name]:g}" for name, recipe in PRESET_RECIPES.items())
        return "the preset's: " + ", ".join(values)
    return "none" if f.default is None else str(f.default)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field, help from the field's metadata.

    Defaults are ``argparse.SUPPRESS`` so the namespace holds only what the user typed; that lets
    ``--resume`` tell an explicit override from a default.
    """
    group = parser.add_argument_group("training configuration (TrainConfig fields)")
    for f in fields(TrainConfig):
        base, optional = annotation_type(f.type)
        help_text = f"{f.metadata['help']} (default: {_default_text(f)})"
        kwargs: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=help_text)
        if admits_list(f.type):
            kwargs["nargs"] = "+"  # one value is that folder (TrainConfig unwraps it)
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _parse_optional(base, f.name) if optional else base
            kwargs["metavar"] = f.metadata.get("metavar") or (
                "DIR" if f.name.endswith("_dir") else {int: "N", float: "X"}.get(base, "TEXT"))
            if f.metadata.get("choices"):
                kwargs["choices"] = f.metadata["choices"]
                kwargs.pop("metavar")
        group.add_argument(_flag(f.name), **kwargs)


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields the user set on the command line."""
    names = [f.name for f in fields(TrainConfig)]
    values = {n: getattr(args, n) for n in names if hasattr(args, n)}
    if "data_dir" in values:
        values["data_dir"] = one_or_several(values["data_dir"])
    return values

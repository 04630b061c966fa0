"""Load published MAE weights from files the user points at (no network access).

Two sources, detected from what is on disk:

* the official MAE release: a ``.pth`` whose ``model`` entry holds our key names already, decoder
  included: ``mae_visualize_vit_base.pth`` or ``mae_visualize_vit_large.pth`` (the release's
  visualisation demo, trained on plain pixels, so their reconstructions are pictures; from
  ``https://dl.fbaipublicfiles.com/mae/visualize/``), or ``mae_pretrain_vit_base_full.pth``
  (trained on per-patch normalised pixels, to fine-tune from); ``mae_pretrain_vit_base.pth`` is the
  encoder alone and is refused (the decoder is needed to reconstruct);
* Hugging Face ``ViTMAEForPreTraining``: a directory (or a weights file beside its
  ``config.json``) with ``model.safetensors`` or ``pytorch_model.bin``. Three key layouts exist in
  the wild: the hub's (transformers 4.x, ``vit.encoder.layer.N.attention.attention.query``,
  ``decoder.decoder_layers.N``), what transformers 5 writes with ``save_pretrained``
  (``decoder.decoder_encoder.layer.N``), and transformers 5's in-memory names
  (``vit.layers.N.attention.q_proj``). All map to ours; separate q/k/v projections are stacked
  into one ``qkv``.

Everything is read without executing pickled code (``torch.load(weights_only=True)`` or
safetensors). When the requested ``img_size`` gives another patch grid, the fixed sin-cos tables
are recomputed.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .util import checkpoint as ckpt
from .util.checkpoint import check_finite, check_tensor_set, describe_tensors
from .util.errors import UserError
from .util.fileio import file_sha256
from .config import TrainConfig, check_run_dir, load_run_config
from .model import OPTION_DEFAULTS, PRESETS, MaskedAutoencoder, check_options

# Official releases do not store head counts. Known widths: the published ViT encoders'
# (Dosovitskiy et al.), the MAE decoder's (512 wide, 16 heads), and this project's presets. Any
# other width must be told (num_heads= / decoder_num_heads=): a wrong guess would load without
# error and give wrong outputs.
_PRESET_HEADS = {p["embed_dim"]: p["num_heads"] for p in PRESETS.values()}
_PRESET_DECODER_HEADS = {p["decoder_embed_dim"]: p["decoder_num_heads"] for p in PRESETS.values()}
_HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16} | _PRESET_HEADS
_DECODER_HEADS_BY_WIDTH = {512: 16} | _PRESET_DECODER_HEADS
_WIDTH_AND_HEADS = (("embed_dim", "num_heads"), ("decoder_embed_dim", "decoder_num_heads"))
_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


# ---------------------------------------------------------------------- this project's checkpoints


def _count_blocks(names: Iterable[str], prefix: str) -> int:
    """How many ``prefix.N.`` blocks the tensor names hold (the highest N plus one)."""
    ids = {int(m.group(1)) for k in names if (m := re.match(rf"^{prefix}\.(\d+)\.", k))}
    return max(ids) + 1 if ids else 0


def _expected_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of the model ``config`` describes, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = MaskedAutoencoder(**config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _set_img_size(model: MaskedAutoencoder, img_size: int | None) -> None:
    """Recompute the fixed position tables when ``img_size`` gives another patch grid."""
    if img_size is None or img_size == model.img_size:
        return
    if img_size % model.patch_size:
        raise UserError(
            f"img_size {img_size} is not divisible by the checkpoint's "
            f"patch_size {model.patch_size}"
        )
    model.set_grid(img_size // model.patch_size)


def _is_number(value: Any, kind: type) -> bool:
    """``value`` is an int (an int or a float where ``kind`` is float), and not a bool."""
    allowed = (int, float) if kind is float else int
    return isinstance(value, allowed) and not isinstance(value, bool)


def _kind_of(default: Any) -> type:
    """The type a constructor argument takes, read off its default: bool, float or int."""
    if isinstance(default, bool):
        return bool
    return float if isinstance(default, float) else int


def _check_config_values(
    config: dict[str, Any], params: Mapping[str, inspect.Parameter], source: str
) -> None:
    """Refuse unknown keys, model options the model rejects, and values of the wrong type."""
    unknown = sorted(set(config) - set(params) - {"self"})
    if unknown:
        raise UserError(f"{source}: mae_config has unknown key(s) {', '.join(unknown)}")
    options = {k: config[k] for k in OPTION_DEFAULTS if k in config}
    try:
        norm_pix_loss = config.get("norm_pix_loss", False)
        check_options(**{**OPTION_DEFAULTS, **options}, norm_pix_loss=norm_pix_loss)
    except UserError as exc:
        raise UserError(f"{source}: mae_config {exc}") from None
    for key, value in config.items():
        if key in options:
            continue
        kind = _kind_of(params[key].default)
        valid = isinstance(value, bool) if kind is bool else (_is_number(value, kind) and value > 0)
        if not valid:
            raise UserError(
                f"{source}: mae_config {key} must be a positive {kind.__name__}; got {value!r}"
            )


def _check_config_sizes(
    cfg: dict[str, Any], tensors: dict[str, tuple[str, tuple[int, ...]]], source: str
) -> None:
    """Every size in ``cfg`` (the full constructor arguments) equal to what the tensors imply."""
    _, in_chans, patch, _ = tensors["patch_embed.proj.weight"][1]
    implied = {
        "embed_dim": tensors["cls_token"][1][-1],
        "decoder_embed_dim": tensors["mask_token"][1][-1],
        "depth": _count_blocks(tensors, "blocks"),
        "decoder_depth": _count_blocks(tensors, "decoder_blocks"),
        "patch_size": patch,
        "in_chans": in_chans,
    }
    for key, value in implied.items():
        if cfg[key] != value:
            raise UserError(
                f"{source}: mae_config {key} is {cfg[key]} but the stored tensors imply {value}"
            )
    for width, heads in _WIDTH_AND_HEADS:
        if cfg[width] % cfg[heads]:
            raise UserError(
                f"{source}: mae_config {heads} {cfg[heads]} does not divide {width} {cfg[width]}"
            )
    grid = cfg["img_size"] // cfg["patch_size"]
    pos_embed = list(tensors["pos_embed"][1])
    if cfg["img_size"] % cfg["patch_size"] or grid * grid + 1 != pos_embed[1]:
        raise UserError(
            f"{source}: mae_config img_size {cfg['img_size']} does not match pos_embed {pos_embed}"
        )


def check_model_config(
    config: dict[str, Any], tensors: dict[str, tuple[str, tuple[int, ...]]], source: str
) -> None:
    """Refuse a ``mae_config`` that does not describe exactly the tensors stored beside it.

    Checked before any model is built, so an edited config (say ``embed_dim 16384, depth 64``) fails
    here instead of allocating hundreds of GB: known keys only, the right types, and every size
    equal to what the tensors' shapes imply.
    """
    params = inspect.signature(MaskedAutoencoder.__init__).parameters
    _check_config_values(config, params, source)
    needed = ("cls_token", "mask_token", "pos_embed", "patch_embed.proj.weight")
    missing = [k for k in needed if k not in tensors]
    if missing:
        raise UserError(f"{source}: missing tensor(s) {', '.join(missing)}")
    defaults = {name: p.default for name, p in params.items() if name != "self"}
    _check_config_sizes(defaults | config, tensors, source)
    # sizes are now bounded by the file: build the shapes, allocate nothing
    check_tensor_set(_expected_shapes(config), tensors, source)


def load_model(ckpt_dir: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the :class:`~mae_utils.model.MaskedAutoencoder` saved in ``ckpt_dir`` (eval mode)."""
    path = ckpt.resolve(ckpt_dir) / ckpt.MODEL_FILE
    config = ckpt.read_model_config(ckpt_dir)
    _, tensors = ckpt.read_header(path)
    check_model_config(config, tensors, str(path))
    model = MaskedAutoencoder(**config)
    ckpt.load_weights_into(model, ckpt_dir)
    return model.to(device).eval()


def load_model_from_run(
    run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu"
):
    """``(model, TrainConfig)`` of a training run; ``which`` is 'best' or 'last'."""
    if which not in ("best", "last"):
        raise UserError(f"which must be 'best' or 'last'; got {which!r}")
    check_run_dir(run_dir)
    ckpt.check_not_half_replaced(run_dir, which)
    config = load_run_config(run_dir)
    ckpt.check_run_files(run_dir, which)
    return load_model(Path(run_dir) / "checkpoints" / which, device), config


# ---------------------------------------------------------------------- published weights


def _heads(table: dict[int, int], width: int, name: str, source: str) -> int:
    """The head count of a standard ``width``; any other width asks for ``name=`` to be passed."""
    if width not in table:
        standard = ", ".join(map(str, sorted(table)))
        example = f"load_pretrained(path, {name}={max(1, width // 64)})"
        raise UserError(
            f"{source}: width {width} is not a standard one ({standard}), so its "
            f"attention head count is unknown; pass {name}= (e.g. {example})"
        )
    return table[width]


_HF_TOP_LEVEL = [
    (r"^vit\.embeddings\.cls_token$", "cls_token"),
    (r"^vit\.embeddings\.position_embeddings$", "pos_embed"),
    (r"^vit\.embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^vit\.layernorm\.", "norm."),
    (r"^decoder\.mask_token$", "mask_token"),
    (r"^decoder\.decoder_pos_embed$", "decoder_pos_embed"),
    (r"^decoder\.(decoder_embed|decoder_norm|decoder_pred)\.", r"\1."),
]
_HF_LAYER_PREFIX = [
    (r"^vit\.(?:encoder\.layer|layers)\.(\d+)\.", r"blocks.\1."),
    (r"^decoder\.(?:decoder_layers|decoder_encoder\.layer)\.(\d+)\.", r"decoder_blocks.\1."),
]
_HF_IN_LAYER = [
    (r"attention\.attention\.query\.|attention\.q_proj\.", "attn.q."),
    (r"attention\.attention\.key\.|attention\.k_proj\.", "attn.k."),
    (r"attention\.attention\.value\.|attention\.v_proj\.", "attn.v."),
    (r"attention\.output\.dense\.|attention\.o_proj\.", "attn.proj."),
    (r"intermediate\.dense\.|mlp\.fc1\.", "mlp.fc1."),
    (r"output\.dense\.|mlp\.fc2\.", "mlp.fc2."),
    (r"layernorm_before\.", "norm1."),
    (r"layernorm_after\.", "norm2."),
]


def hf_to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename any of the three Hugging Face ViTMAE layouts to ours and merge q/k/v into qkv."""
    renamed: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        new = _rename_hf_key(key)
        if new is None:
            unknown.append(key)
        else:
            renamed[new] = value
    if unknown:
        raise UserError(
            f"unrecognised Hugging Face ViTMAE keys: {unknown[:5]} ({len(unknown)} in all)"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in renamed.items():
        match = re.match(r"^(.*attn\.)([qkv])\.(weight|bias)$", key)
        if not match:
            out[key] = value
        elif match.group(2) == "q":
            prefix, kind = match.group(1), match.group(3)
            parts = [renamed.get(f"{prefix}{c}.{kind}") for c in "qkv"]
            if any(p is None for p in parts):
                raise UserError(f"checkpoint has an incomplete query/key/value set at {prefix}")
            out[f"{prefix}qkv.{kind}"] = torch.cat(parts, dim=0)
    return out


def _rename_hf_key(key: str) -> str | None:
    for pattern, repl in _HF_TOP_LEVEL:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    for pattern, repl in _HF_LAYER_PREFIX:
        match = re.match(pattern, key)
        if match:
            rest = key[match.end() :]
            for in_pattern, in_repl in _HF_IN_LAYER:
                if re.match(in_pattern, rest):
                    block = re.sub(pattern, repl, key[: match.end()])
                    return block + re.sub(in_pattern, in_repl, rest, count=1)
            return None
    return None


def infer_config(state: dict[str, torch.Tensor], source: str = "checkpoint", **known) -> dict:
    """Model constructor arguments read off an official-layout state dict (plus what is ``known``).

    Head counts are not stored in the tensors: they come from ``known``, else from the table of
    standard widths; an unknown width raises a :class:`UserError` asking for them.
    """
    required = [
        "cls_token", "pos_embed", "patch_embed.proj.weight", "mask_token", "decoder_pred.weight"
    ]
    missing = [k for k in required if k not in state]
    if missing:
        hint = ""
        if "mask_token" in missing:
            hint = " (an encoder-only release? the decoder is needed to reconstruct)"
        raise UserError(f"checkpoint lacks {missing}{hint}")
    embed_dim, decoder_dim = state["cls_token"].shape[-1], state["mask_token"].shape[-1]
    _, in_chans, patch_size, _ = state["patch_embed.proj.weight"].shape
    grid = round((state["pos_embed"].shape[1] - 1) ** 0.5)
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    num_heads = known.get("num_heads") or _heads(_HEADS_BY_WIDTH, embed_dim, "num_heads", source)
    decoder_num_heads = known.get("decoder_num_heads") or _heads(
        _DECODER_HEADS_BY_WIDTH, decoder_dim, "decoder_num_heads", source
    )
    config = dict(
        img_size=grid * patch_size,
        patch_size=patch_size,
        in_chans=in_chans,
        embed_dim=embed_dim,
        depth=_count_blocks(state, "blocks"),
        num_heads=num_heads,
        decoder_embed_dim=decoder_dim,
        decoder_depth=_count_blocks(state, "decoder_blocks"),
        decoder_num_heads=decoder_num_heads,
        mlp_ratio=fc1.shape[0] / embed_dim if fc1 is not None else 4.0,
    )
    config.update({k: v for k, v in known.items() if v is not None})
    return config


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise UserError(f"{path}: not a readable safetensors file: {exc}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle that needs code to run, or not a torch file at all
        raise UserError(f"cannot read {path} as plain tensors (weights_only): {exc}") from exc


def _hf_files(path: Path) -> tuple[Path, Path] | None:
    folder = path if path.is_dir() else path.parent
    config = folder / "config.json"
    if not config.is_file():
        return None
    if path.is_file():
        return config, path
    for name in _HF_WEIGHT_FILES:
        if (folder / name).is_file():
            return config, folder / name
    raise UserError(f"{folder} has config.json but neither model.safetensors nor pytorch_model.bin")


def _official_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an official-layout file (a ``model`` entry or a bare state dict)."""
    state = _read_weights(path)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} does not hold a state dict of tensors")
    if any(k.startswith(("vit.", "decoder.decoder")) for k in state):
        raise UserError(
            f"{path} holds Hugging Face ViTMAE weights but there is no config.json beside it; "
            f"put the model's config.json in {path.parent}"
        )
    return state


def _hf_known(hf_config: dict, config_path: Path, norm_pix_loss: bool) -> dict:
    """The constructor arguments a Hugging Face ``config.json`` gives, checked for type and sign."""
    def positive(key: str, kind: type) -> Any:
        value = hf_config.get(key)
        if value is None:
            return None
        if not (_is_number(value, kind) and math.isfinite(value) and value > 0):
            what = "a positive number" if kind is float else "a positive integer"
            raise UserError(f"{config_path}: {key} must be {what}; got {value!r}")
        return kind(value)

    norm = hf_config.get("norm_pix_loss", norm_pix_loss)
    if not isinstance(norm, bool):
        raise UserError(f"{config_path}: norm_pix_loss must be true or false; got {norm!r}")
    known = dict(
        num_heads=positive("num_attention_heads", int),
        decoder_num_heads=positive("decoder_num_attention_heads", int),
        layer_norm_eps=positive("layer_norm_eps", float),
        norm_pix_loss=norm,
    )
    return {k: v for k, v in known.items() if v is not None}


def _load_own_file(path: Path, img_size: int | None, norm_pix_loss: bool) -> MaskedAutoencoder:
    """A maskAE ``model.safetensors`` (any name): its metadata holds the constructor arguments."""
    config = ckpt.read_file_config(path)
    _, tensors = ckpt.read_header(path)
    check_model_config(config, tensors, str(path))
    model = MaskedAutoencoder(**config)
    state = ckpt.load_weights_file(path)
    check_finite(state, str(path))
    model.load_state_dict(state, strict=True)
    norm = bool(config.get("norm_pix_loss", norm_pix_loss))  # the file's own choice comes first
    model.norm_pix_loss = model.config["norm_pix_loss"] = norm
    _set_img_size(model, img_size)
    return model


def _read_hf_config(config_path: Path) -> dict[str, Any]:
    """A Hugging Face ``config.json``, refused unless it describes a ViTMAE this model can be."""
    try:
        hf_config = json.loads(config_path.read_text())
    except ValueError as exc:
        raise UserError(f"{config_path} is not valid JSON ({exc})") from None
    if not isinstance(hf_config, dict):
        raise UserError(f"{config_path} must hold a JSON object")
    model_type = hf_config.get("model_type")
    if model_type not in (None, "vit_mae"):
        raise UserError(f"{config_path} describes a {model_type!r} model, not ViTMAE")
    if hf_config.get("hidden_act", "gelu") != "gelu":
        activation = hf_config["hidden_act"]
        raise UserError(f"{config_path}: hidden_act {activation!r} is not supported (gelu only)")
    return hf_config


def _no_config_error(folder: Path) -> UserError:
    """Why a folder without ``config.json`` cannot be loaded, naming the weights file it holds."""
    held = [n for n in _HF_WEIGHT_FILES if (folder / n).is_file()]
    why = "not a Hugging Face ViTMAE folder"
    if held:
        why = f"it holds {held[0]}; put the model's config.json beside it"
    return UserError(f"{folder} is a folder without config.json: {why}")


def _build_checked(
    state: dict[str, torch.Tensor], config: dict[str, Any], source: str
) -> MaskedAutoencoder:
    """The model ``config`` describes, holding ``state``, once every size and value is checked."""
    for width, heads in _WIDTH_AND_HEADS:
        if not isinstance(config[heads], int) or config[heads] < 1 or config[width] % config[heads]:
            raise UserError(
                f"{source}: {heads} {config[heads]!r} does not divide {width} {config[width]}"
            )
    # every size comes from the tensors: compare shapes before allocating
    check_tensor_set(_expected_shapes(config), describe_tensors(state), source)
    check_finite(state, source)
    model = MaskedAutoencoder(**config)
    model.load_state_dict(state, strict=True)
    return model


def load_pretrained(
    path: str | Path,
    img_size: int | None = None,
    *,
    num_heads: int | None = None,
    decoder_num_heads: int | None = None,
    norm_pix_loss: bool = False,
) -> MaskedAutoencoder:
    """A :class:`MaskedAutoencoder` from an official MAE ``.pth`` or Hugging Face ViTMAE weights.

    ``path`` is the ``.pth``, a Hugging Face folder or weights file, or a maskAE weights file.
    ``img_size`` rebuilds the fixed position tables for another grid (e.g. 224 -> 256). Head counts
    come from the Hugging Face config, or from the standard ViT widths for official files; pass
    ``num_heads`` / ``decoder_num_heads`` for unusual official-layout checkpoints.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"no checkpoint at {path}")
    hf = _hf_files(path)
    if hf is not None:
        config_path, weights_path = hf
        hf_config = _read_hf_config(config_path)
        state = hf_to_official(_read_weights(weights_path))
        known = _hf_known(hf_config, config_path, norm_pix_loss)
        source = str(weights_path)
    else:
        if path.is_dir():
            raise _no_config_error(path)
        if path.suffix == ".safetensors" and "mae_config" in ckpt.read_header_metadata(path):
            return _load_own_file(path, img_size, norm_pix_loss)  # a maskAE weights file
        state = _official_state(path)
        known = dict(norm_pix_loss=norm_pix_loss)
        source = str(path)
    told = dict(num_heads=num_heads, decoder_num_heads=decoder_num_heads)
    known.update({k: v for k, v in told.items() if v})
    model = _build_checked(state, infer_config(state, source, **known), source)
    _set_img_size(model, img_size)
    return model


def init_source(
    path: str | Path, log: Callable[[str], None] | None = None
) -> tuple[Path, Path | None]:
    """(the path, the checkpoint folder to load or None) for ``init_from``.

    A run without ``best`` uses ``last``, and says so through ``log``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"init_from {path}: no such file or folder")
    if (path / "checkpoints").is_dir():
        for which in ("best", "last"):
            try:
                found = ckpt.resolve(path / "checkpoints" / which)
            except UserError:
                continue
            if which == "last" and log is not None:
                log(f"note: init_from {path}: no best checkpoint there; using checkpoints/last")
            return path, found
        raise UserError(
            f"init_from {path}: the run has no finished checkpoint in checkpoints/best or last"
        )
    if (path / ckpt.MODEL_FILE).is_file() and not (path / "config.json").is_file():
        return path, path
    return path, None


def init_record(path: str | Path) -> dict[str, Any]:
    """What ``init_from`` loaded, for the run's ``config.json``.

    The absolute path, the checkpoint folder (runs) and the SHA-256 of the weights file, so the run
    is traceable after the source moves.
    """
    path, ckpt_dir = init_source(path)
    if ckpt_dir is not None:
        weights = ckpt_dir / ckpt.MODEL_FILE
    else:
        hf = _hf_files(path)
        weights = hf[1] if hf is not None else path
    return {
        "path": str(path.resolve()),
        "checkpoint": None if ckpt_dir is None else str(ckpt_dir.resolve()),
        "weights": str(weights.resolve()),
        "sha256": file_sha256(weights),
    }


def load_for_inference(
    path: str | Path, log: Callable[[str], None] | None = None
) -> MaskedAutoencoder:
    """Weights to look at, not to train (``reconstruct`` / ``evaluate --init-from``): any source
    ``init_from`` takes (a run folder, a checkpoint folder, a maskAE ``.safetensors``, an official
    MAE ``.pth``, a Hugging Face ViTMAE folder), at the image size and with the pixel target
    (``norm_pix_loss``) the weights were made with, in eval mode."""
    path, ckpt_dir = init_source(path, log)
    model = load_model(ckpt_dir) if ckpt_dir is not None else load_pretrained(path)
    return model.eval()


def load_init_weights(
    path: str | Path,
    img_size: int,
    *,
    norm_pix_loss: bool = False,
    log: Callable[[str], None] | None = None,
) -> MaskedAutoencoder:
    """The model a run starts from (``TrainConfig.init_from``), sized for ``img_size`` images.

    ``path`` is a training run folder (its ``checkpoints/best``, else ``last``, said through
    ``log``), one checkpoint folder (``model.safetensors`` with its ``mae_config``), an official
    MAE ``.pth`` or a Hugging Face ViTMAE folder/file. The architecture is the weights'; the fixed
    position tables are recomputed when ``img_size`` gives another patch grid; ``norm_pix_loss``
    is the new run's choice.
    """
    path, ckpt_dir = init_source(path, log)
    if ckpt_dir is not None:
        model = load_model(ckpt_dir).train()
        if img_size % model.patch_size:
            raise UserError(
                f"image_size {img_size} is not divisible by the weights' "
                f"patch_size {model.patch_size}"
            )
        if img_size != model.img_size:
            model.set_grid(img_size // model.patch_size)
    else:
        model = load_pretrained(path, img_size=img_size)
    model.norm_pix_loss = norm_pix_loss
    model.config["norm_pix_loss"] = norm_pix_loss
    return model

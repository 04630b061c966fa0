"""maskAE: a Masked Autoencoder (He et al. 2021) for reconstructing faces.

The package holds the code the notebooks teach; the README maps its modules.
"""

from .util.errors import UserError
from .masking import make_mask, random_masking
from .model import PRESETS, MaskedAutoencoder, build_mae, patchify, unpatchify
from .config import TrainConfig
from .util.checkpoint import load_model_from_run
from .tools.pretrained import load_pretrained
from .train import fit

__all__ = [
    "MaskedAutoencoder",
    "PRESETS",
    "TrainConfig",
    "UserError",
    "build_mae",
    "fit",
    "load_model_from_run",
    "load_pretrained",
    "make_mask",
    "patchify",
    "random_masking",
    "unpatchify",
]
__version__ = "0.1.0"

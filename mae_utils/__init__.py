"""maskAE: a Masked Autoencoder (He et al. 2021) for reconstructing faces.

The package holds the code the notebooks teach; see DESIGN.md in the README for the map.
"""

from .errors import UserError
from .masking import make_mask, random_masking
from .model import PRESETS, MaskedAutoencoder, build_mae, patchify, unpatchify

__all__ = [
    "MaskedAutoencoder",
    "PRESETS",
    "UserError",
    "build_mae",
    "make_mask",
    "patchify",
    "random_masking",
    "unpatchify",
]
__version__ = "0.1.0"

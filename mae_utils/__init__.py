"""maskAE: a Masked Autoencoder (He et al. 2021) for reconstructing faces.

The top level is the algorithm that ``maskAE.ipynb`` teaches; read it in this order:

1. ``masking``    which patches the encoder sees (``masking_ids``: the noise-argsort trick)
2. ``pos_embed``  fixed 2-D sin-cos position tables
3. ``model``      ``MaskedAutoencoder``: patchify, encode visible patches, decode, loss; ``PRESETS``
4. ``transforms`` uint8 batch -> normalised, augmented model input (``batch_to_input``)
5. ``optim``      AdamW, the One-Cycle schedule and one training step
6. ``config``     ``TrainConfig``: every setting, shared by the notebook, papermill and the CLI
7. ``data``, ``splits``, ``synthetic``: photo folders, the uint8 cache, the split, synthetic faces
8. ``train``      ``fit()``: the loop, checkpoints, resume, DDP; the ``train`` command
9. ``metrics``, ``baselines``, ``viz``: masked-region PSNR/SSIM, classical inpainting, figures
10. ``pretrained`` a model from saved weights (run folders, official MAE, Hugging Face)

Four floors, each importing only its own and the ones below: ``util/`` (run machinery that knows
no model: run folders, checkpoint files, file IO, progress bars, device set-up, errors), this
teaching core, ``tools/`` (what you do with a trained model: evaluate, reconstruct, refine, probe,
fine-tune)
and ``app/`` (the command line and the notebooks' helpers).
"""

from .util.errors import UserError
from .config import TrainConfig
from .masking import make_mask, random_masking
from .model import PRESETS, MaskedAutoencoder, build_mae, patchify, unpatchify
from .pretrained import load_model_from_run, load_pretrained
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

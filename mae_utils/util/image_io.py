"""Decode one image file to RGB, correctly, whatever its mode; resize + center-crop it.

Photo folders hold every kind of file: grayscale scans, PNGs with transparency, palette GIF-style
PNGs, CMYK JPEGs from print workflows, 16-bit PNG/TIFF from cameras, phone photos whose pixels are
stored sideways with an EXIF orientation tag. :func:`load_rgb` turns each into an 8-bit RGB image
the way a viewer would show it; anything it cannot decode raises :class:`ImageDecodeError` with a
short reason, which the data module records and skips.

Transparency is composited on neutral grey (:data:`BACKGROUND`), not black: a black background
would put hard artificial edges around cut-out faces and drag the pixel mean down.

Huge files: JPEGs are decoded already scaled down (``draft``, DCT scaling) when a small size is
wanted, other formats are box-reduced (``reduce``) right after decoding, before any conversion
copies them; and an image that would still decode to more than :func:`max_pixels` pixels (40 MP by
default, ``MASKAE_MAX_PIXELS`` to change) is skipped with that reason instead of taking gigabytes of
memory.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import UserError

#: File extensions scanned as images (lower case; matching is case-insensitive).
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".pgm", ".ppm"
)

#: Colour that transparent pixels are composited on (mid grey).
BACKGROUND: tuple[int, int, int] = (128, 128, 128)

# A truncated file must fail loudly, never decode as a half-grey image.
ImageFile.LOAD_TRUNCATED_IMAGES = False

#: Environment variable holding the largest image (in pixels, after JPEG draft scaling) to decode.
MAX_PIXELS_ENV = "MASKAE_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: every phone photo; a 12000x12000 scan (144 MP) is refused


def max_pixels() -> int:
    """The pixel limit: ``$MASKAE_MAX_PIXELS`` if set (a
    positive integer), else :data:`DEFAULT_MAX_PIXELS`."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (math.isfinite(value) and value >= 1):
        raise UserError(
            f"{MAX_PIXELS_ENV} must be a positive number of pixels (e.g. 100000000 for 100 MP); "
            f"got {text!r}"
        )
    return int(value)


class ImageDecodeError(Exception):
    """A file could not be decoded as an image; ``str(err)`` is a short human-readable reason."""


def is_image_name(path: str | Path) -> bool:
    """True if the file name has one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scale a high-bit-depth single-channel array to 0..255."""
    arr = arr.astype(np.float64)
    if mode.startswith("I;16") or (mode == "I" and arr.size and arr.max() > 255):
        arr = arr / 257.0  # 16-bit range -> 8-bit (65535 / 257 = 255)
    elif mode == "F":
        hi = float(arr.max()) if arr.size else 1.0
        arr = arr * 255.0 if hi <= 1.0 else arr
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _composite(img: Image.Image) -> Image.Image:
    """RGBA (or LA/PA) -> RGB, composited over :data:`BACKGROUND`."""
    rgba = img.convert("RGBA")
    base = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    return Image.alpha_composite(base, rgba).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded PIL image of any mode to 8-bit RGB (alpha composited on grey)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _composite(img)
    if mode == "P":
        if "transparency" in img.info:
            return _composite(img.convert("RGBA"))
        return img.convert("RGB")
    if mode in ("I", "F") or mode.startswith("I;16"):
        gray = _to_uint8(np.asarray(img), mode)
        return Image.fromarray(gray, mode="L").convert("RGB")
    # L, 1, CMYK, YCbCr, LAB, HSV and friends: Pillow knows the conversion
    return img.convert("RGB")


def _reduce(img: Image.Image, factor: int) -> Image.Image:
    """Box-reduce by ``factor``; 16-bit images go through 32-bit integers (which ``reduce`` handles)
    and back, so the later 16 -> 8 bit scaling is unchanged. Modes it cannot reduce stay full
    size."""
    try:
        if img.mode.startswith("I;16"):
            return img.convert("I").reduce(factor).convert(img.mode)
        return img.reduce(factor)
    except (ValueError, NotImplementedError):
        return img


def load_rgb(
    path: str | Path, draft_size: int | None = None, limit: int | None = None
) -> Image.Image:
    """Fully decode ``path`` to an 8-bit RGB PIL image, upright (EXIF orientation applied).

    ``draft_size`` lets JPEG decoding use DCT scaling when the image is much larger than needed, and
    other formats a box reduction after decoding (both keep at least ``draft_size`` on each side, 4x
    for the reduction, so the final resize still sees the detail it needs). An image over ``limit``
    pixels (default :func:`max_pixels`) is refused before decoding. Raises
    :class:`ImageDecodeError`.
    """
    path = Path(path)
    # a bad setting is the user's error, not the photo's
    allowed = max_pixels() if limit is None else limit
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageDecodeError(f"cannot read file ({exc.strerror or exc})") from None
    if size == 0:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # e.g. "Palette images with Transparency expressed in bytes"
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                if draft_size and img.format == "JPEG":
                    img.draft(None, (draft_size, draft_size))
                w, h = img.size  # from the header (after draft scaling): nothing decoded yet
                _check_pixels(w, h, allowed)
                img.load()  # forces the full decode: truncated or corrupt data fails here
                factor = min(w, h) // (4 * draft_size) if draft_size else 0
                if factor >= 2:
                    img = _reduce(img, factor)
                img = ImageOps.exif_transpose(img)
                return to_rgb(img)
    except UnidentifiedImageError:
        raise ImageDecodeError("not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg.lower():
            msg = "truncated file (" + msg + ")"
        raise ImageDecodeError(f"corrupt or unreadable image: {msg}") from None


def _check_pixels(w: int, h: int, allowed: int) -> None:
    """Refuse a ``w`` x ``h`` image over ``allowed`` pixels before anything is decoded."""
    if w * h > allowed:
        size = f"{w}x{h} = {w * h / 1e6:.0f} MP"
        raise ImageDecodeError(
            f"image too large: {size}, over the {allowed / 1e6:g} MP limit "
            f"(set {MAX_PIXELS_ENV} to allow it)"
        )


def resize_center_crop(img: Image.Image, size: int) -> np.ndarray:
    """Scale the shorter side to ``size`` and cut the centered ``size`` x ``size`` square.

    Done in one antialiased bicubic resample from the centered square of the source (Pillow's
    ``box`` argument), which is the same as resizing then cropping but without a second rounding.
    Returns uint8 (size, size, 3).
    """
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) / 2.0, (h - side) / 2.0
    box = (left, top, left + side, top + side)
    out = img.resize((size, size), Image.Resampling.BICUBIC, box=box)
    arr = np.asarray(out, dtype=np.uint8)
    if arr.shape != (size, size, 3):  # defensive: to_rgb guarantees RGB
        raise ImageDecodeError(f"unexpected decoded shape {arr.shape}")
    return arr


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Decode ``path`` and return its resized, center-cropped uint8 (size, size, 3) RGB pixels."""
    return resize_center_crop(load_rgb(path, draft_size=size), size)

"""Size and format limits on prompt images (``prepare.images``), a pure bytes -> bytes function.

Engines differ on what they take: vLLM and transformers processors silently downscale past their
``max_pixels``, OpenAI-style APIs refuse images over 20 MiB or in formats other than PNG, JPEG,
WEBP and GIF. ``check_image`` settles it once, before generation: an image within the limits and in
an accepted format is kept byte for byte; an over-large one is scaled down (aspect ratio kept, never
upscaled) or rejected; another format PIL decodes (BMP, TIFF, ...) is re-encoded as PNG.

Safety: ``Image.open`` reads the header only, so the size is known before any pixel is decoded;
an image over ``DECODE_MAX_PIXELS`` (a decompression bomb, or just a huge scan) is never decoded
and becomes ``image_too_large`` in either mode.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import Any

from skycurate.schemas import cot as S

RESIZED, CONVERTED = "resized", "converted"      # the per-image notes the prepare step counts
RECOMPRESSED = "recompressed"                    # same size, re-encoded to fit images.max_bytes
DECODE_MAX_PIXELS = 89_478_485                   # PIL's default Image.MAX_IMAGE_PIXELS (~256 MiB as RGB)
FORMAT_ALIASES = {"MPO": "JPEG"}                 # phone JPEGs with a depth map open as MPO
_LOSSY = ("JPEG",)
_SHRINK_TRIES = 6                                # re-encodings tried to get under max_bytes
_ORIENTATION = 0x0112                            # the EXIF tag


class ImageRejected(ValueError):
    """An image the prompt cannot keep; ``reason`` is its quarantine reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    notes: tuple[str, ...] = ()


def _size_text(w: int, h: int) -> str:
    return f"{w}x{h} = {w * h:,} pixels"


def _open(data: bytes) -> Any:
    """The image with its header read and no pixel decoded."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():   # sizes are checked by the caller, against its own limit
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            raise ImageRejected(S.IMAGE_TOO_LARGE, f"not decoded, a possible decompression bomb: {e}") from None
        except UnidentifiedImageError:
            raise ImageRejected(S.BAD_IMAGE, "image does not decode: unsupported image format (PIL does "
                                             "not recognise it)") from None
        except Exception as e:  # noqa: BLE001 - any decoder failure is the row's problem
            raise ImageRejected(S.BAD_IMAGE, f"image does not decode: {type(e).__name__}") from None


def _decode(img: Any) -> None:
    try:
        img.load()
    except Exception as e:  # noqa: BLE001 - truncated or corrupt pixel data
        raise ImageRejected(S.BAD_IMAGE, f"image does not decode: {type(e).__name__}") from None


def fit_size(w: int, h: int, max_pixels: int) -> tuple[int, int]:
    """The largest size of ``w:h`` with at most ``max_pixels`` pixels (``(w, h)`` when it already fits)."""
    if w * h <= max_pixels:
        return w, h
    scale = math.sqrt(max_pixels / (w * h))
    return max(1, math.floor(w * scale)), max(1, math.floor(h * scale))


def _for_encoder(img: Any, fmt: str) -> Any:
    """A mode the target encoder writes (JPEG: L, RGB, CMYK; PNG here: L, LA, RGB, RGBA)."""
    if fmt == "JPEG":
        return img if img.mode in ("L", "RGB", "CMYK") else img.convert("RGB")
    if img.mode in ("L", "LA", "RGB", "RGBA"):
        return img
    alpha = "A" in img.mode or "transparency" in img.info
    return img.convert("RGBA" if alpha else "RGB")


def _encode(img: Any, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=95)
    else:
        img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _too_large(w: int, h: int, n_bytes: int, cfg: S.ImageCheckConfig) -> str | None:
    if w * h > cfg.max_pixels:
        return f"{_size_text(w, h)} > images.max_pixels {cfg.max_pixels:,}"
    if n_bytes > cfg.max_bytes:
        return f"{n_bytes:,} bytes > images.max_bytes {cfg.max_bytes:,}"
    return None


def _reencode(img: Any, fmt: str, pixels: int, cfg: S.ImageCheckConfig) -> tuple[bytes, int]:
    """(encoded, its pixels) at the largest size of ``img``'s shape within max_pixels (and the original's
    pixels), shrinking further until it is within max_bytes."""
    from PIL import Image

    budget = min(pixels, cfg.max_pixels)
    for _ in range(_SHRINK_TRIES):
        size = fit_size(*img.size, budget)
        out = _encode(img if size == img.size else img.resize(size, Image.Resampling.LANCZOS), fmt)
        if len(out) <= cfg.max_bytes:
            return out, size[0] * size[1]
        budget = max(1, int(size[0] * size[1] * cfg.max_bytes / len(out) * 0.9))
    raise ImageRejected(S.IMAGE_TOO_LARGE, f"{img.size[0]}x{img.size[1]}: still over images.max_bytes "
                                           f"{cfg.max_bytes:,} after {_SHRINK_TRIES} reductions")


def check_image(data: bytes, cfg: S.ImageCheckConfig) -> CheckedImage:
    """The image as the prompt keeps it, or ``ImageRejected`` (``bad_image`` / ``image_too_large``).
    A re-encoded animation keeps its first frame."""
    from PIL import ImageOps

    img = _open(data)
    with img:
        fmt = FORMAT_ALIASES.get(img.format or "", img.format or "")
        w, h = img.size
        if w * h > (limit := max(DECODE_MAX_PIXELS, cfg.max_pixels)):
            raise ImageRejected(S.IMAGE_TOO_LARGE, f"{_size_text(w, h)} in the header: over the safe decoding "
                                                   f"limit {limit:,} (not decoded; images.max_pixels "
                                                   f"{cfg.max_pixels:,})")
        over = _too_large(w, h, len(data), cfg)
        if over and cfg.too_large == "reject":
            raise ImageRejected(S.IMAGE_TOO_LARGE, over)
        accepted = fmt in cfg.formats
        if not over and accepted:
            _decode(img)
            return CheckedImage(data)
        target = "JPEG" if fmt in _LOSSY and "JPEG" in cfg.formats else "PNG"
        if fmt == "JPEG":   # decode at the smallest DCT scale that still covers the target size
            img.draft(img.mode, fit_size(w, h, cfg.max_pixels))
        _decode(img)
        if img.getexif().get(_ORIENTATION, 1) != 1:   # dropped with the metadata: turn the pixels as viewers do
            img = ImageOps.exif_transpose(img)
        out, kept = _reencode(_for_encoder(img, target), target, w * h, cfg)
    return CheckedImage(out, _notes(kept < w * h, accepted))


def _notes(resized: bool, accepted: bool) -> tuple[str, ...]:
    if not accepted:
        return (RESIZED, CONVERTED) if resized else (CONVERTED,)
    return (RESIZED,) if resized else (RECOMPRESSED,)

"""Prompt images as each engine takes them: a data URL for OpenAI-compatible chat endpoints, a
decoded RGB picture for local processors. Images arrive as the encoded bytes the prompt table
holds (validated when prompts were prepared)."""

from __future__ import annotations

import base64
import io
from typing import Any

_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp", "BMP": "image/bmp"}


def data_url(data: bytes) -> str:
    """``data:image/<type>;base64,...`` (formats a chat endpoint may not read are sent as PNG)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        mime = _MIME.get(img.format or "")
        if mime is None:
            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="PNG")
            data, mime = buf.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def to_rgb(data: bytes) -> Any:
    """The decoded picture (``PIL.Image`` in RGB), as processors expect it."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


def chat_content(text: str, images: list[bytes]) -> str | list[dict]:
    """An OpenAI user turn: the text alone, or the images in their order followed by the text."""
    if not images:
        return text
    return [*({"type": "image_url", "image_url": {"url": data_url(b)}} for b in images),
            {"type": "text", "text": text}]

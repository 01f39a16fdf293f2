"""SSD requests: one image (JPEG/PNG bytes, or base64 of them as the DCF example sends) or a JSON batch.

    raw or base64 image bytes            -> one image
    {"image": "<base64>", "threshold": t} -> one image, with options
    ["<base64>", ...] or {"images": [...], "threshold": t} -> a batch (the reply is a list per image)

Images are decoded straight to the network's input size: big JPEGs decode at a reduced scale
(Pillow's draft mode), so a 50-megapixel photo costs little; over MAX_PIXELS is refused.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_PIXELS = 100_000_000
MAX_BATCH = 64
DEFAULT_THRESHOLD = 0.5
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM", b"RIFF")
# Pillow refuses huge images with its own wording before we can look: MAX_PIXELS is the limit here.
Image.MAX_IMAGE_PIXELS = None


@dataclass
class Batch:
    """Decoded images at the network's size, their original (width, height), and the request's options."""

    pixels: np.ndarray  # uint8 [n, size, size, 3] RGB
    sizes: list[tuple[int, int]]
    threshold: float
    batched: bool


def _image_bytes(data: bytes) -> bytes:
    if data.startswith(_SIGNATURES):
        return data
    try:
        decoded = base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if decoded.startswith(_SIGNATURES):
        return decoded
    raise ValueError("the request is not a JPEG or PNG image, nor base64 of one")


def decode_image(data: bytes, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(RGB uint8 [size, size, 3], original (width, height)) of one image; ValueError if it is not one."""
    if not data:
        raise ValueError("empty request: send a JPEG or PNG image (or base64 of one)")
    raw = _image_bytes(data)
    try:
        with Image.open(io.BytesIO(raw)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ValueError(f"image too large: {width}x{height} ({width * height / 1e6:.0f} megapixels); "
                                 f"the limit is {MAX_PIXELS / 1e6:.0f}")
            image.draft("RGB", (2 * size, 2 * size))
            pixels = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
    except ValueError:
        raise
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"unreadable image: {exc}") from None
    return pixels, (width, height)


def decode_request(data: bytes, size: int) -> Batch:
    """Parse a request (see the module docstring) into a Batch."""
    threshold, batched = DEFAULT_THRESHOLD, False
    items: list[bytes] = [data]
    if data[:1] in (b"{", b"["):
        try:
            request = json.loads(data)
        except ValueError:
            raise ValueError("the request starts like JSON but is not valid JSON") from None
        if isinstance(request, dict):
            threshold = request.get("threshold", DEFAULT_THRESHOLD)
            if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
                raise ValueError(f"threshold must be a number from 0 to 1, got {threshold!r}")
            batched = "images" in request
            request = request.get("images") if batched else [request.get("image")]
        else:
            batched = True
        if not isinstance(request, list) or not all(isinstance(item, str) for item in request):
            raise ValueError('expected {"image": "<base64>"}, {"images": ["<base64>", ...]} or ["<base64>", ...]')
        if not 1 <= len(request) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} images, got {len(request)}")
        items = [item.encode("ascii", "replace") for item in request]
    decoded = [decode_image(item, size) for item in items]
    return Batch(np.stack([d[0] for d in decoded]), [d[1] for d in decoded], float(threshold), batched)

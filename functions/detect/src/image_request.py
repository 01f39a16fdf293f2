"""detect's requests (the same forms as ssd's): one image (JPEG/PNG bytes, or base64 of them) or a JSON batch.

    raw or base64 image bytes            -> one image
    {"image": "<base64>", "threshold": t, "size": s} -> one image, with options
    ["<base64>", ...] or {"images": [...], "threshold": t, "size": s} -> a batch (the reply is a list per image)

`size` is the longer side the network sees: 512 (what the model was trained at) unless $DETECT_SIZE sets
another default for the function; a multiple of 32 from 128 to 1024. Smaller is faster and misses small things
(416: ~1.6x faster, the same boxes on most photos), larger finds smaller things (640: traffic lights far away)
and is slower.

Each image is fitted to the network's input without distorting it: scaled so its longer side is `size`, placed
at the top-left corner of a canvas whose sides are that rounded up to a multiple of STRIDE (the network's), the
rest black: a 640x480 frame becomes 512x384 with no padding, a 500x375 photo 512x384 with one black row.
A box maps back by dividing by that scale (no offset).
Big JPEGs decode at a reduced scale (Pillow's draft mode); over MAX_PIXELS is refused.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_PIXELS = 100_000_000
MAX_BATCH = 64
DEFAULT_THRESHOLD = 0.3
STRIDE = 32
DEFAULT_SIZE, MIN_SIZE, MAX_SIZE = 512, 128, 1024
SIZE_VARIABLE = "DETECT_SIZE"
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM", b"RIFF")
Image.MAX_IMAGE_PIXELS = None  # MAX_PIXELS is the limit here, said in our words


@dataclass
class Fitted:
    """One image on the network's canvas, and how to map a box on it back to the original."""

    pixels: np.ndarray  # float32 [height, width, 3] RGB, 0-255; each side a multiple of STRIDE, at most `size`
    width: int
    height: int
    scale: float  # canvas pixels per original pixel


@dataclass
class Request:
    images: list[Fitted]
    threshold: float
    batched: bool


def image_bytes(data: bytes) -> bytes:
    """The image in `data`, which is an image or base64 of one; ValueError otherwise."""
    if data.startswith(_SIGNATURES):
        return data
    try:
        decoded = base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if decoded.startswith(_SIGNATURES):
        return decoded
    raise ValueError("the request is not a JPEG or PNG image, nor base64 of one")


def fit_image(data: bytes, size: int) -> Fitted:
    """Decode one image and fit it into a size x size canvas (see the module docstring)."""
    if not data:
        raise ValueError("empty request: send a JPEG or PNG image (or base64 of one)")
    try:
        with Image.open(io.BytesIO(image_bytes(data))) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ValueError(f"image too large: {width}x{height} ({width * height / 1e6:.0f} megapixels); "
                                 f"the limit is {MAX_PIXELS / 1e6:.0f}")
            scale = size / max(width, height)
            fitted = (max(1, round(width * scale)), max(1, round(height * scale)))
            image.draft("RGB", fitted)
            resized = np.asarray(image.convert("RGB").resize(fitted, Image.BILINEAR), dtype=np.float32)
    except ValueError:
        raise
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"unreadable image: {exc}") from None
    canvas = np.zeros((-(-fitted[1] // STRIDE) * STRIDE, -(-fitted[0] // STRIDE) * STRIDE, 3), np.float32)
    canvas[:fitted[1], :fitted[0]] = resized
    return Fitted(canvas, width, height, scale)


def checked_size(value: object, where: str) -> int:
    """`value` as the network's longer side; ValueError in a sentence naming `where` when it cannot be one."""
    number = int(value) if isinstance(value, str) and value.strip().isdigit() else value
    if isinstance(number, bool) or not isinstance(number, int) or not MIN_SIZE <= number <= MAX_SIZE \
            or number % STRIDE:
        raise ValueError(f"{where} must be a multiple of {STRIDE} from {MIN_SIZE} to {MAX_SIZE}, got {value!r}")
    return number


def default_size(environ: Mapping[str, str]) -> int:
    """The function's default `size`: ${SIZE_VARIABLE} (config.yaml's `environment:`), else DEFAULT_SIZE."""
    value = environ.get(SIZE_VARIABLE, "").strip()
    return checked_size(value, SIZE_VARIABLE) if value else DEFAULT_SIZE


def parse_request(data: bytes, size: int = DEFAULT_SIZE) -> Request:
    """Parse a request (see the module docstring; `size` unless it says one); ValueError in a sentence for
    anything else."""
    threshold, batched = DEFAULT_THRESHOLD, False
    items: list[bytes] = [data]
    if data[:1] in (b"{", b"["):
        try:
            request = json.loads(data)
        except ValueError:
            raise ValueError("the request starts like JSON but is not valid JSON") from None
        if isinstance(request, dict):
            threshold = request.get("threshold", DEFAULT_THRESHOLD)
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
                raise ValueError(f"threshold must be a number from 0 to 1, got {threshold!r}")
            if "size" in request:
                size = checked_size(request["size"], "size")
            batched = "images" in request
            request = request.get("images") if batched else [request.get("image")]
        else:
            batched = True
        if not isinstance(request, list) or not all(isinstance(item, str) for item in request):
            raise ValueError('expected {"image": "<base64>"}, {"images": ["<base64>", ...]} or ["<base64>", ...]')
        if not 1 <= len(request) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} images, got {len(request)}")
        items = [item.encode("ascii", "replace") for item in request]
    return Request([fit_image(item, size) for item in items], float(threshold), batched)

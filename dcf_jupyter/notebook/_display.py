"""Rich results in notebooks: images show as images, SSD boxes are drawn on their input, JSON shows as JSON.

Results keep working as the plain values they are (`str`, `bytes`, `list`,
`dict` subclasses); only their notebook display is richer.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import pprint
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..client import Reply
from ..protocol.names import BINARY, JSON

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_BASE64_PREFIXES = ("iVBORw0KGgo", "/9j/", "R0lGOD")  # PNG, JPEG, GIF once base64'd
BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")

# PASCAL VOC class ids, as DCF's SSD example numbers them (0 is background).
VOC_LABELS = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage


def sniff_image(data: bytes) -> str | None:
    """The image MIME type of `data` by its signature, or None."""
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            return mime
    return None


def image_bytes(value: Any) -> tuple[str, bytes] | None:
    """(mime, bytes) if `value` is image bytes or base64 text of an image (as DCF's STFT example returns)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        mime = sniff_image(data)
        if mime:
            return mime, data
        try:
            value = data.decode("ascii")
        except UnicodeDecodeError:
            return None
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith(_BASE64_PREFIXES):
            return None
        try:
            data = base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError):
            return None
        mime = sniff_image(data)
        return (mime, data) if mime else None
    return None


def is_boxes(value: Any) -> bool:
    """True for a non-empty list of dicts with xmin/ymin/xmax/ymax (DCF's SSD example reply)."""
    return isinstance(value, list) and bool(value) and all(
        isinstance(item, dict) and all(k in item for k in BOX_KEYS) for item in value
    )


def _pillow() -> Any:
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise ImportError("drawing boxes needs Pillow: pip install pillow (or dcf-jupyter[notebook])") from None
    return Image, ImageDraw


def _as_pil(image: Any) -> Any:
    Image, _ = _pillow()

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, Path)) and not image_bytes(image) and Path(image).exists():
        return Image.open(image).convert("RGB")
    found = image_bytes(image)
    if found:
        return Image.open(io.BytesIO(found[1])).convert("RGB")
    if hasattr(image, "__array__"):
        return Image.fromarray(image).convert("RGB")
    raise TypeError(f"cannot read an image from a {type(image).__name__}")


def _font(size: int) -> Any:
    """Pillow's default font at `size` pixels (older Pillow: its fixed bitmap font)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def box_color(class_id: str) -> tuple[int, int, int]:
    """A stable colour per class, the same in drawn images and in the stream widgets."""
    palette = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
               (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40))
    return palette[sum(class_id.encode()) % len(palette)]


def label_of(box: dict[str, Any]) -> str:
    """A box's name: its "label", else the VOC name of its "class", else the class id."""
    if box.get("label"):
        return str(box["label"])
    try:
        return VOC_LABELS[int(box.get("class", -1))]
    except (ValueError, IndexError):
        return str(box.get("class", "?"))


def caption_of(box: dict[str, Any]) -> str:
    """What a drawn box says: its name, and its confidence when it has one ("person 0.91")."""
    caption = label_of(box)
    if "confidence" in box:
        with contextlib.suppress(TypeError, ValueError):
            caption += f" {float(box['confidence']):.2f}"
    return caption


def boxes(image: Any, result: str | bytes | list[Any]) -> PILImage:
    """Draw SSD-style boxes (`class`, `confidence`, `xmin`... in pixels, strings or numbers) on `image`.

    `image`: JPEG/PNG bytes, base64 text of them, a path, a PIL image or an array;
    `result`: the list of boxes or its JSON text. Returns a PIL image (it displays itself in notebooks).
    """
    _, ImageDraw = _pillow()
    picture = _as_pil(image).copy()
    items = json.loads(result) if isinstance(result, (str, bytes)) else result
    if not isinstance(items, list):
        raise TypeError("expected a list of boxes like [{'class', 'confidence', 'xmin', 'ymin', 'xmax', 'ymax'}]")
    draw = ImageDraw.Draw(picture)
    width = max(2, round(min(picture.size) / 150))
    font = _font(max(11, round(min(picture.size) / 40)))
    for box in items:
        x0, y0, x1, y1 = (float(box[k]) for k in BOX_KEYS)
        color = box_color(str(box.get("class", "")))
        draw.rectangle((x0, y0, x1, y1), outline=color, width=width)
        caption = caption_of(box)
        left, top, right, bottom = draw.textbbox((x0, y0), caption, font=font)
        top_y = max(0.0, y0 - (bottom - top) - 6)
        draw.rectangle((x0, top_y, x0 + (right - left) + 6, top_y + (bottom - top) + 6), fill=color)
        draw.text((x0 + 3, top_y + 1 - (top - y0)), caption, fill=(0, 0, 0), font=font)
    return picture


def _png(picture: Any) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class _Rich:
    """Display behaviour shared by the result types; `_dcf_input` is the request, for drawing boxes on it."""

    _dcf_input: Any = None

    def _bundle(self, value: Any, plain: str) -> dict[str, Any] | None:
        image = image_bytes(value)
        if image:
            mime, data = image
            return {mime: base64.b64encode(data).decode("ascii"), "text/plain": f"<{mime}, {len(data)} bytes>"}
        parsed = value
        if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
            try:
                parsed = json.loads(value)
            except ValueError:
                return None
        if is_boxes(parsed) and self._dcf_input is not None and image_bytes(self._dcf_input):
            try:
                return {"image/png": _png(boxes(self._dcf_input, parsed)), "text/plain": plain}
            except Exception:  # noqa: BLE001 - fall back to showing the data
                pass
        if isinstance(parsed, (list, dict)):
            return {"application/json": parsed, "text/plain": plain}
        return None


class TextResult(_Rich, str):
    """A text reply (a str); base64 images display as images, JSON text as JSON."""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any] | None:
        return self._bundle(str(self), str.__repr__(self))


class BytesResult(_Rich, bytes):
    """A bytes reply; PNG/JPEG/GIF bytes display as images."""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any] | None:
        return self._bundle(bytes(self), f"<{len(self)} bytes>") if sniff_image(self) else None


class JsonList(_Rich, list):  # type: ignore[type-arg]
    """A JSON array reply; SSD boxes display drawn on the request image."""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any] | None:
        return self._bundle(list(self), pprint.pformat(list(self)))


class JsonDict(_Rich, dict):  # type: ignore[type-arg]
    """A JSON object reply."""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any] | None:
        return self._bundle(dict(self), pprint.pformat(dict(self)))


def as_result(reply: Reply, request: Any = None) -> Any:
    """The value of a reply for notebook users: text, bytes or parsed JSON, displaying richly."""
    result: Any
    if reply.content_type == JSON:
        value = reply.json()
        if isinstance(value, list):
            result = JsonList(value)
        elif isinstance(value, dict):
            result = JsonDict(value)
        else:
            return value
    elif reply.content_type == BINARY:
        result = BytesResult(reply.data)
    else:
        result = TextResult(reply.data.decode("utf-8", "replace"))
    result._dcf_input = request
    return result

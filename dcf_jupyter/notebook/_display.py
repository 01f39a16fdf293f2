"""Rich results in notebooks: images show as images, SSD boxes are drawn on their input, JSON shows as JSON.

Results keep working as the plain values they are (`str`, `bytes`, `list`,
`dict` subclasses); only their notebook display is richer.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
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


Rect = tuple[float, float, float, float]
DISPLAY_SIDE = 1024  # the longest side of a drawn image as a notebook shows and saves it


def _overlap(a: Rect, b: Rect) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return width * height if width > 0 and height > 0 else 0.0


def place_captions(boxes_xy: list[Rect], sizes: list[tuple[float, float]], bounds: tuple[float, float]) -> list[Rect]:
    """Where each box's caption of `sizes[i]` (width, height) goes: above the box, else inside its top, below it,
    inside its bottom, right-aligned the same ways, then stacked further above or below; the first spot that
    hides no caption placed before (the least hidden when all do), kept inside the image of `bounds` (width,
    height)."""
    placed: list[Rect] = []
    for (x0, y0, x1, y1), (w, h) in zip(boxes_xy, sizes, strict=True):
        rows = [y0 - h, y0, y1, y1 - h] + [y for k in (1, 2, 3) for y in (y0 - h * (k + 1), y1 + h * k)]
        spots = [(x, y) for y in rows for x in (x0, x1 - w)]
        best: Rect | None = None
        best_hidden = float("inf")
        for x, y in spots:
            x = min(max(0.0, x), max(0.0, bounds[0] - w))
            y = min(max(0.0, y), max(0.0, bounds[1] - h))
            spot = (x, y, x + w, y + h)
            hidden = sum(_overlap(spot, other) for other in placed)
            if hidden < best_hidden:
                best, best_hidden = spot, hidden
            if hidden == 0:
                break
        assert best is not None
        placed.append(best)
    return placed


def _jpeg_bytes(picture: Any, longest: int = DISPLAY_SIDE) -> bytes:
    if max(picture.size) > longest:
        picture = picture.copy()
        picture.thumbnail((longest, longest))
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@functools.cache
def _drawn_image_class() -> type:
    Image, _ = _pillow()

    class DrawnImage(Image.Image):  # type: ignore[misc,name-defined]
        """A PIL image that a notebook shows and saves once, as a JPEG of at most DISPLAY_SIDE pixels a side
        (Pillow's own image is saved twice, PNG and JPEG, at full size)."""

        def _repr_png_(self) -> None:
            return None

        def _repr_jpeg_(self) -> bytes:
            return _jpeg_bytes(self)

    return DrawnImage


def boxes(image: Any, result: str | bytes | list[Any]) -> PILImage:
    """Draw SSD-style boxes (`class`, `confidence`, `xmin`... in pixels, strings or numbers) on `image`.

    `image`: JPEG/PNG bytes, base64 text of them, a path, a PIL image or an array;
    `result`: the list of boxes or its JSON text. Returns a PIL image of the same size (a notebook shows it as
    one JPEG); captions are placed so that none hides another, the most confident first.
    """
    _, ImageDraw = _pillow()
    picture = _as_pil(image).copy()
    items = json.loads(result) if isinstance(result, (str, bytes)) else result
    if not isinstance(items, list):
        raise TypeError("expected a list of boxes like [{'class', 'confidence', 'xmin', 'ymin', 'xmax', 'ymax'}]")
    draw = ImageDraw.Draw(picture)
    width = max(2, round(min(picture.size) / 150))
    font = _font(max(11, round(min(picture.size) / 40)))
    ranked = sorted(items, key=confidence_of, reverse=True)  # as the camera widget gets them
    rects: list[Rect] = [tuple(float(box[k]) for k in BOX_KEYS) for box in ranked]  # type: ignore[misc]
    colors = [box_color(str(box.get("class", ""))) for box in ranked]
    for rect, color in zip(rects, colors, strict=True):
        draw.rectangle(rect, outline=color, width=width)
    captions = [caption_of(box) for box in ranked]
    extents = [draw.textbbox((0, 0), caption, font=font) for caption in captions]
    spots = place_captions(rects, [(right - left + 6, bottom - top + 6) for left, top, right, bottom in extents],
                           (float(picture.width), float(picture.height)))
    for caption, color, (left, top, _, _), spot in zip(captions, colors, extents, spots, strict=True):
        draw.rectangle(spot, fill=color)
        draw.text((spot[0] + 3 - left, spot[1] + 3 - top), caption, fill=(0, 0, 0), font=font)
    picture.__class__ = _drawn_image_class()
    return picture


def confidence_of(box: dict[str, Any]) -> float:
    """A box's confidence as a number (0 when it has none or it is not a number)."""
    try:
        return float(box.get("confidence", 0))
    except (TypeError, ValueError):
        return 0.0


def _image_caption(value: Any) -> str | None:
    """"<image/jpeg, 16706 bytes>" when `value` is an image (or base64 of one), else None."""
    image = image_bytes(value)
    return f"<{image[0]}, {len(image[1])} bytes>" if image else None


class _Rich:
    """Display behaviour shared by the result types; `_dcf_input` is the request, for drawing boxes on it."""

    _dcf_input: Any = None

    def _bundle(self, value: Any, plain: str) -> dict[str, Any] | None:
        image = image_bytes(value)
        if image:
            mime, data = image
            return {mime: base64.b64encode(data).decode("ascii"), "text/plain": _image_caption(data)}
        parsed = value
        if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
            try:
                parsed = json.loads(value)
            except ValueError:
                return None
        if is_boxes(parsed) and self._dcf_input is not None and image_bytes(self._dcf_input):
            try:
                drawn = _jpeg_bytes(boxes(self._dcf_input, parsed))
                return {"image/jpeg": base64.b64encode(drawn).decode("ascii"), "text/plain": plain}
            except Exception:  # noqa: BLE001 - fall back to showing the data
                pass
        if isinstance(parsed, (list, dict)):
            return {"application/json": parsed, "text/plain": plain}
        return None


class TextResult(_Rich, str):
    """A text reply (a str); base64 images display as images, JSON text as JSON."""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any] | None:
        return self._bundle(str(self), str.__repr__(self))

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Beside an image, its type and size (IPython would print str's repr of all its base64 text)."""
        printer.text(_image_caption(str(self)) or str.__repr__(self))


class BytesResult(_Rich, bytes):
    """A bytes reply; PNG/JPEG/GIF bytes display as images."""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any] | None:
        return self._bundle(bytes(self), f"<{len(self)} bytes>") if sniff_image(self) else None

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Beside an image, its type and size (IPython would print bytes' repr of every byte)."""
        printer.text(_image_caption(bytes(self)) or bytes.__repr__(self))


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

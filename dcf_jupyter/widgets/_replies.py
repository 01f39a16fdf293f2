"""What a streamed reply is, for drawing it: an image, SSD boxes over the sent frame, or text."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..notebook._display import BOX_KEYS, box_color, caption_of, confidence_of, image_bytes

OVERLAYS = ("auto", "image", "boxes", "text")
TEXT_LIMIT = 4000  # characters shown of a text reply; a widget is no place for megabytes of text


@dataclass
class Rendered:
    """A reply made ready for a front end: `kind` with its JSON-able fields and binary buffers."""

    kind: str  # "image" | "boxes" | "text"
    fields: dict[str, Any] = field(default_factory=dict)
    buffers: list[bytes] = field(default_factory=list)


def _boxes(value: Any) -> list[dict[str, Any]] | None:
    """Drawable boxes (x0, y0, x1, y1, caption, color) from a list in DCF's SSD example format, else None; the
    most confident first (its caption gets the first pick of the places, as `dcf_jupyter.boxes` gives it)."""
    if not isinstance(value, list) or not all(isinstance(b, dict) and all(k in b for k in BOX_KEYS) for b in value):
        return None
    drawn = []
    for box in sorted(value, key=confidence_of, reverse=True):
        try:
            x0, y0, x1, y1 = (float(box[k]) for k in BOX_KEYS)
        except (TypeError, ValueError):
            return None
        caption = caption_of(box)
        r, g, b = box_color(str(box.get("class", "")))
        drawn.append({"x0": x0, "y0": y0, "x1": x1, "y1": y1, "caption": caption, "color": f"rgb({r},{g},{b})"})
    return drawn


def _parse_json(reply: bytes) -> Any:
    stripped = reply.lstrip()
    if not stripped.startswith((b"[", b"{")):
        return None
    try:
        return json.loads(reply)
    except (UnicodeDecodeError, ValueError):
        return None


def _text(reply: bytes) -> Rendered:
    text = reply.decode("utf-8", errors="replace")
    if len(text) > TEXT_LIMIT:
        text = text[:TEXT_LIMIT] + f"… ({len(reply)} bytes)"
    return Rendered("text", {"text": text})


def render_reply(reply: bytes, overlay: str = "auto") -> Rendered:
    """How to show `reply`: `overlay` forces a kind; "auto" picks by content (image, boxes, else text)."""
    if overlay not in OVERLAYS:
        raise ValueError(f"overlay must be one of {', '.join(OVERLAYS)}, not {overlay!r}")
    if overlay in ("auto", "image"):
        found = image_bytes(reply)
        if found:
            mime, data = found
            return Rendered("image", {"mime": mime}, [data])
    if overlay in ("auto", "boxes"):
        drawn = _boxes(_parse_json(reply))
        if drawn is not None:
            return Rendered("boxes", {"boxes": drawn})
    return _text(reply)

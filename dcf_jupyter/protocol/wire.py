"""Just enough of the protobuf wire format for the hot path: read a request's Service, write replies.

The gateway forwards InvokeServiceRequest bytes to workers untouched (it may append
the caller's TimeLeft) and only reads the function name, TimeLeft and Depth;
workers build Message / Messages replies as a few
byte strings around the payload, sent scatter-gather (no copy of the payload
in user space). Everything else uses the generated classes.
"""

from __future__ import annotations

import struct

_SERVICE, _INPUT, _TIME_LEFT, _DEPTH, _CALLERS = 1, 2, 15, 16, 17  # InvokeServiceRequest field numbers
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MAX_FIELD_NUMBER = (1 << 29) - 1
_DOUBLE = struct.Struct("<d")
_TIME_LEFT_KEY = bytes([(_TIME_LEFT << 3) | _I64])
_SERVICE_KEY, _INPUT_KEY = (_SERVICE << 3) | _LEN, (_INPUT << 3) | _LEN


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def parse_call(data: bytes) -> tuple[str, memoryview, float | None, int, bytes]:
    """(Service, Input, TimeLeft or None, Depth, Callers) of a serialized InvokeServiceRequest; Input is a view into
    `data` (no copy), Callers the ids as packed little-endian 64-bit words (`callers_of` reads them).

    Follows protobuf rules: any field order, last value wins (a repeated field's values add up), unknown fields
    skipped.
    """
    plain = _plain_call(data)
    if plain is not None:
        return plain
    view = memoryview(data)
    service = b""
    payload = view[0:0]
    time_left: float | None = None
    depth = 0
    callers = b""
    pos, end = 0, len(view)
    while pos < end:
        key, pos = _varint(view, pos)
        number, kind = key >> 3, key & 7
        if not 0 < number <= _MAX_FIELD_NUMBER:
            raise WireError(f"invalid field number {number}")  # protobuf refuses these too
        if kind == _LEN:
            length, pos = _varint(view, pos)
            if pos + length > end:
                raise WireError("truncated field")
            if number == _SERVICE:
                service = bytes(view[pos:pos + length])
            elif number == _INPUT:
                payload = view[pos:pos + length]
            elif number == _CALLERS:
                callers += bytes(view[pos:pos + length - length % 8])
            pos += length
        elif kind == _VARINT:
            value, pos = _varint(view, pos)
            if number == _DEPTH:
                depth = value & 0xFFFFFFFF
        elif kind == _I64:
            if number == _TIME_LEFT and pos + 8 <= end:
                time_left = _DOUBLE.unpack_from(view, pos)[0]
            elif number == _CALLERS and pos + 8 <= end:  # unpacked, as a writer may send repeated fields
                callers += bytes(view[pos:pos + 8])
            pos += 8
        elif kind == _I32:
            pos += 4
        else:
            raise WireError(f"unsupported wire type {kind}")
        if pos > end:
            raise WireError("truncated field")
    try:
        return service.decode("utf-8"), payload, time_left, depth, callers
    except UnicodeDecodeError:
        raise WireError("Service is not UTF-8") from None


def _plain_call(data: bytes) -> tuple[str, memoryview, float | None, int, bytes] | None:
    """parse_call of the request every DCF client sends for a plain call, a short Service then Input and nothing
    else, in a few steps (this is every call's path); None for any other layout, which the general loop reads."""
    end = len(data)
    if end < 2 or data[0] != _SERVICE_KEY or data[1] >= 0x80:
        return None
    pos = 2 + data[1]
    if pos >= end or data[pos] != _INPUT_KEY:
        return None
    length, start = _varint(data, pos + 1)
    if start + length != end:
        return None
    try:
        service = data[2:pos].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return service, memoryview(data)[start:], None, 0, b""


def callers_of(packed: bytes) -> tuple[int, ...]:
    """The caller ids of parse_call's packed Callers."""
    return struct.unpack(f"<{len(packed) // 8}Q", packed)


def time_left_field(seconds: float) -> bytes:
    """InvokeServiceRequest.TimeLeft as bytes to append to a serialized request (the last value wins)."""
    return _TIME_LEFT_KEY + _DOUBLE.pack(seconds)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(number: int, length: int) -> bytes:
    return _encode_varint((number << 3) | _LEN) + _encode_varint(length)


def call_head(service: str, input_size: int) -> bytes:
    """What precedes an InvokeServiceRequest's Input of `input_size` bytes: its Service, then Input's key and length
    (head + input is the serialized request, made without copying the input into a message first)."""
    name = service.encode("utf-8")
    return _len_field(_SERVICE, len(name)) + name + _len_field(_INPUT, input_size)


def message_parts(text: str) -> list[bytes]:
    """pb.Message{Msg: text}, serialized, as parts to send in order."""
    data = text.encode("utf-8")
    return [_len_field(1, len(data)), data] if data else []


def messages_parts(output: bytes, content_type: str) -> list[bytes]:
    """pb.Messages{Output, ContentType}, serialized, as parts to send in order (the output is not copied)."""
    parts: list[bytes] = []
    if output:
        parts += [_len_field(1, len(output)), output]
    if content_type:
        ctype = content_type.encode("utf-8")
        parts += [_len_field(2, len(ctype)), ctype]
    return parts

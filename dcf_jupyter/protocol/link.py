"""The gateway <-> local worker link: length-prefixed frames over a Unix socket.

Every call crosses this hop, so it is kept lean: one long-lived connection per
worker, calls multiplexed by id, payloads forwarded as they are (the worker
replies with the serialized protobuf the gateway sends on unchanged).

Frame: ``<u32 payload length><u64 call id><u8 kind><u8 arg>`` then the payload.

gateway -> worker: CALL (arg = reply form; payload = the serialized
pb.InvokeServiceRequest as the client sent it), CANCEL, CREDIT (arg = how many
more ITEMs of that streamed call the worker may send).
worker -> gateway: REPLY (a serialized pb.Message / pb.Messages), ITEM (one
pb.Messages of a streamed reply), END (stream done), LAST (the one item of a
streamed call whose handler returned a single value: ITEM and END in one frame,
so a plain reply asked for as a stream costs one frame and no CREDIT), ERROR
(arg = gRPC status code, payload = UTF-8 message, NUL, traceback).

A streamed call starts with STREAM_WINDOW credits and the gateway returns one
per item its client has taken, so a generator handler runs at most that far
ahead of a slow reader instead of filling the gateway's memory; a CANCEL stops
the generator at its next item.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("<IQBB")

CALL, CANCEL, CREDIT = 1, 2, 3
REPLY, ITEM, END, ERROR, LAST = 16, 17, 18, 19, 20

FORM_MESSAGE = 0  # Invoke: one pb.Message (string reply)
FORM_MESSAGES = 1  # InvokeBytes, Invokes: one pb.Messages (bytes reply)
FORM_STREAM = 2  # InvokeStream: several pb.Messages, then END

STREAM_WINDOW = 32  # items of a streamed reply the worker may send before the gateway's client took them

# ERROR frames carry a status code: one of `names.Status` (gRPC's numbers, no grpc import needed).


class CallFailed(Exception):
    """A call ended with an error status: the handler raised, or the worker failed."""

    def __init__(self, code: int, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail  # the handler's traceback

    def encode(self) -> bytes:
        """The ERROR frame payload."""
        return self.message.encode("utf-8", "replace") + b"\0" + self.detail.encode("utf-8", "replace")

    @classmethod
    def decode(cls, code: int, payload: bytes) -> CallFailed:
        """Rebuild from an ERROR frame."""
        message, _, tb = payload.partition(b"\0")
        return cls(code, message.decode("utf-8", "replace"), tb.decode("utf-8", "replace"))


class LinkClosed(ConnectionError):
    """The worker's connection went away (it exited or crashed)."""

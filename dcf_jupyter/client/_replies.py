"""Replies and failures as a caller sees them: `Reply` (bytes and what the handler returned), requests as bytes,
and a failed RPC (or a failed item of a map) as the DcfError that says it in a sentence."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import grpc

from ..errors import (
    ClientTimeout,
    DcfError,
    DeployError,
    FunctionError,
    FunctionExists,
    FunctionNotFound,
    GatewayUnavailable,
    InvalidArgument,
    Overloaded,
    Unauthenticated,
)
from ..protocol.names import BINARY, JSON, ORIGIN_FUNCTION, ORIGIN_KEY, RETRY_AFTER_KEY, TEXT, TRACEBACK_KEY

MAX_BACKOFF_S = 10.0  # the longest wait between tries of a call refused for a full queue

Result: TypeAlias = "str | bytes | list[Any] | dict[str, Any] | int | float | bool | None"
"""What `call` returns: str when the handler returned text, bytes for bytes, the parsed value for JSON."""


@dataclass(frozen=True)
class Reply:
    """A function's reply with what the handler returned: text, JSON or bytes."""

    data: bytes
    content_type: str = BINARY

    @property
    def is_text(self) -> bool:
        """True when the handler returned a str."""
        return self.content_type == TEXT

    @property
    def is_json(self) -> bool:
        """True when the handler returned a JSON-able object."""
        return self.content_type == JSON

    def value(self) -> Result:
        """What the handler returned, as far as the wire carries it (what `call` returns, in a script and in a
        notebook alike): str for text, the parsed value for JSON, bytes otherwise."""
        if self.content_type == JSON:
            return self.json()  # type: ignore[no-any-return]
        return self.data.decode("utf-8", "replace") if self.content_type == TEXT else self.data

    def json(self) -> Any:
        """The reply parsed as JSON."""
        return json.loads(self.data)


def to_bytes(data: Any) -> bytes:
    """Request payload: bytes as is, str as UTF-8, other objects as JSON."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    if data is None:
        return b""
    return json.dumps(data).encode("utf-8")


_RELATIVE_FILE = re.compile(r'File "(?![/<])([^"]+)"')


def in_folder(traceback_text: str, folder: Path) -> str:
    """A gateway's traceback, whose paths are relative to the function folder, with `folder` in front."""
    def rooted(match: re.Match[str]) -> str:
        path = folder / match.group(1)
        return f'File "{path}"' if path.exists() else match.group(0)

    return _RELATIVE_FILE.sub(rooted, traceback_text)


_TOO_LARGE = re.compile(r"(Sent|Received) message larger than max \((\d+) vs\. (\d+)\)")


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.3g} MiB"


def _too_large_sentence(match: re.Match[str], details: str) -> str:
    """grpcio's "Sent message larger than max (N vs. M)" as a sentence naming the limit and how to raise it."""
    size, limit = int(match.group(2)), int(match.group(3))
    gateway_side = "SERVER" in details
    what = "reply" if match.group(1) == "Received" and not gateway_side else "request"
    whose = "the gateway's" if gateway_side else "this client's"
    return (f"the {what} is {_mib(size)}, more than {whose} limit of {_mib(limit)}: raise it with "
            f"$DCF_MAX_MESSAGE_SIZE (bytes; `dcf --max-message-size`) for clients and the gateway's "
            f"--max-message-size (both ends must allow it)")


def _seconds(text: str | bytes) -> float:
    """A Retry-After value in seconds (1 when it is not a number)."""
    try:
        return max(0.0, min(float(text), MAX_BACKOFF_S))
    except ValueError:
        return 1.0


def backoff_s(retry_after: float, attempt: int) -> float:
    """How long to wait before try `attempt` (1, 2, ...) after a full queue's refusal: what the gateway asked
    for, doubled each try and jittered so that refused callers do not come back together."""
    return min(MAX_BACKOFF_S, retry_after * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def rpc_error(exc: grpc.RpcError, address: str, subject: str = "", function: str = "") -> DcfError:
    """The DcfError for a failed RPC."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or str(code)
    trailing = dict(exc.trailing_metadata() or ()) if hasattr(exc, "trailing_metadata") else {}
    return error_of(code, details, trailing, address, subject, function)


def error_of(code: grpc.StatusCode, details: str, trailing: dict[str, str | bytes], address: str,
             subject: str = "", function: str = "") -> DcfError:
    """The DcfError for a call that ended with `code`, `details` and the trailing metadata `trailing` (of an RPC,
    or of one item of a map)."""
    origin = trailing.get(ORIGIN_KEY, "")
    remote_tb = trailing.get(TRACEBACK_KEY, b"")
    if isinstance(remote_tb, bytes):
        remote_tb = remote_tb.decode("utf-8", "replace")
    if origin == ORIGIN_FUNCTION:
        return FunctionError(details, code=code.name, detail=remote_tb, function=function)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:  # no origin: the deadline was this client's own
        return ClientTimeout(f"{subject or 'the call'}: no reply within the timeout this call was given "
                             f"({details}); the call may still be running there: give it a longer timeout "
                             "(timeout=, --timeout)", function=function)
    if code == grpc.StatusCode.UNAVAILABLE and not origin:
        return GatewayUnavailable(
            f"no DCF gateway answers at {address} ({details}); start one with `dcf gateway start --detach` "
            "or point DCF_GATEWAY / --gateway at a running one"
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return FunctionNotFound(details)
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return FunctionExists(details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and RETRY_AFTER_KEY in trailing:
        return Overloaded(details, retry_after=_seconds(trailing[RETRY_AFTER_KEY]), function=function)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and (too_large := _TOO_LARGE.search(details)):
        return InvalidArgument(_too_large_sentence(too_large, details))
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE):
        return InvalidArgument(details)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return DeployError(details, detail=remote_tb, function=function)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return Unauthenticated(details)
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return DcfError(f"the gateway at {address} does not implement {subject or 'this call'} "
                        f"(an original DCF gateway?): {details}")
    return FunctionError(details, code=code.name, detail=remote_tb, function=function) if origin else DcfError(
        f"{subject or 'the call'} failed: {code.name}: {details}")

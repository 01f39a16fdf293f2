"""What every RPC of the gateway shares: `Abort` (a status with its origin and detail), the decorators that
turn any failure into a status (never a bare traceback), and the timeout of one awaited call."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, Protocol

import grpc

from ..definition.secret_refs import validate_secret_name
from ..definition.spec import validate_name
from ..errors import InvalidArgument, InvalidName
from ..protocol.link import CallFailed
from ..protocol.names import ORIGIN_FUNCTION, ORIGIN_GATEWAY, ORIGIN_KEY, RETRY_AFTER_KEY, TRACEBACK_KEY, grpc_status

log = logging.getLogger("dcf.gateway")


class Deadline(Protocol):
    """What a call needs of its RPC's context: the time its caller has left (None: no deadline)."""

    def time_remaining(self) -> float | None: ...


class Abort(Exception):
    """Ends an RPC with a status; `origin` tells clients whether the gateway or the function failed."""

    def __init__(self, code: grpc.StatusCode, message: str, *, detail: str = "", origin: str = ORIGIN_GATEWAY,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        self.origin = origin
        self.retry_after = retry_after  # seconds after which trying again may succeed (a full queue)

    @classmethod
    def from_call(cls, failure: CallFailed) -> Abort:
        return cls(grpc_status(failure.code), failure.message,
                   detail=failure.detail, origin=ORIGIN_FUNCTION)

    def metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        md: tuple[tuple[str, str | bytes], ...] = ((ORIGIN_KEY, self.origin),)
        if self.detail:
            md += ((TRACEBACK_KEY, self.detail.encode("utf-8")),)
        if self.retry_after is not None:
            md += ((RETRY_AFTER_KEY, f"{self.retry_after:g}"),)
        return md


class ReplicaLost(Abort):
    """The replica died before it answered: the function never finished the call (a map tries it again)."""


def unexpected(exc: BaseException) -> Abort:
    """A failure no code path expected, logged with its traceback, as a one-line INTERNAL status."""
    log.exception("internal error")
    return Abort(grpc.StatusCode.INTERNAL, f"gateway error: {type(exc).__name__}: {exc}")


async def _end_rpc(context: grpc.aio.ServicerContext, exc: Exception) -> NoReturn:
    """End the RPC with the status of `exc`: an Abort as it says, anything else as INTERNAL with one line
    (never a bare traceback as a status)."""
    failure = exc if isinstance(exc, Abort) else unexpected(exc)
    await context.abort(failure.code, failure.message, trailing_metadata=failure.metadata())
    raise AssertionError("context.abort raises")


def unary_rpc(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status, see _end_rpc
            await _end_rpc(context, exc)

    return wrapper


def streaming_rpc(method: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in method(self, request, context):
                yield item
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status, see _end_rpc
            await _end_rpc(context, exc)

    return wrapper


if sys.version_info >= (3, 11):
    async def within(awaitable: Awaitable[Any], timeout: float) -> Any:
        """`awaitable`'s result, or TimeoutError after `timeout` s (no extra task per call, unlike wait_for)."""
        async with asyncio.timeout(timeout):
            return await awaitable
else:  # pragma: no cover - Python 3.10
    within = asyncio.wait_for


def _expire(reply: asyncio.Future[Any]) -> None:
    if not reply.done():
        reply.set_exception(asyncio.TimeoutError())


async def expiring(reply: asyncio.Future[Any], timeout: float) -> Any:
    """`reply`'s result, or TimeoutError once `timeout` s pass first. A plain future gets the TimeoutError from one
    timer handle (every call's path: asyncio.timeout's context costs twice that); a task is cancelled instead."""
    if isinstance(reply, asyncio.Task):
        return await within(reply, timeout)
    timer = reply.get_loop().call_later(timeout, _expire, reply)
    try:
        return await reply
    finally:
        timer.cancel()


def valid_name(name: str) -> str:
    try:
        return validate_name(name)
    except InvalidName as exc:
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None


def valid_secret_name(name: str) -> str:
    try:
        return validate_secret_name(name)
    except InvalidArgument as exc:
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None

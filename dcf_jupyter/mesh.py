"""Functions that call functions (DCF's `mesh_call`): in a Handler,

    from dcf_jupyter import mesh
    boxes = mesh.call("detect", jpeg)                  # str, bytes or the parsed JSON, as dcf_jupyter.call
    for reply in mesh.stream("detect", frames): ...    # one reply per input, in order
    boxes = await mesh.call_async("detect", jpeg)      # from async code

A call reaches the gateway that runs the calling replica (one hop: over a Unix socket on this machine), with the
invoke-only credential that gateway gave the replica. It gets no more time than the calling call has left (the
caller's deadline, within its function's `timeout`), so a chain of calls ends together; a chain deeper than 16
calls is refused in a sentence (a function calling itself by mistake); an unknown function is FunctionNotFound.

Outside a replica (a notebook trying a Handler in-process) the calls go to the notebook's or the user's gateway,
as dcf_jupyter.call does.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .client._core import Client
from .client._replies import Result, to_bytes
from .errors import ClientTimeout
from .protocol import gateway_pb2 as pb
from .protocol.names import ENV_MESH_ADDRESS, ENV_MESH_TOKEN_FILE
from .worker.call_context import current_call

__all__ = ["call", "call_async", "stream", "time_left"]


class _MeshClient(Client):
    """A replica's client: its gateway's replica token, and each request one deeper than the call it serves,
    naming the calls that wait on it (so a replica whose slots they hold lends it one: worker/slots.py)."""

    def _request(self, name: str, data: Any) -> pb.InvokeServiceRequest:
        request = super()._request(name, data)
        request.Depth, callers = _chain()
        request.Callers.extend(callers)
        left = time_left()
        if left is not None:  # exact: the gRPC deadline that carries it too is rounded up
            request.TimeLeft = max(left, 0.0)
        return request

    def _requests(self, name: str, inputs: Iterable[Any]) -> Iterator[pb.InvokeServiceRequest]:
        depth, callers = _chain()  # now, not in a generator: gRPC reads the requests on a thread outside the call
        return (pb.InvokeServiceRequest(Service=name, Input=to_bytes(item), Depth=depth, Callers=callers)
                for item in inputs)


def _chain() -> tuple[int, tuple[int, ...]]:
    """The depth of a call the current Handler call makes (one deeper than its own), and the calls that will wait
    on it: the current call and those waiting on it."""
    caller = current_call()
    if caller is None:
        return 1, ()
    return caller.depth + 1, (*caller.callers, caller.call_id)


_client: Client | None = None
_lock = threading.Lock()


def _mesh_client() -> Client:
    """This replica's client to its gateway (made once per process); the user's outside a replica."""
    global _client
    address = os.environ.get(ENV_MESH_ADDRESS)
    if not address:
        from .client._api import get_client  # not in a replica: the notebook's or the user's gateway

        return get_client()
    with _lock:
        if _client is None:
            token = Path(os.environ[ENV_MESH_TOKEN_FILE]).read_text(encoding="utf-8").strip()
            _client = _MeshClient(address, token=token)
        return _client


def _timeout(asked: float | None, name: str) -> float | None:
    """The timeout a call from the current Handler call may have: what was asked, within the time it has left."""
    caller = current_call()
    left = caller.time_left() if caller is not None else None
    if left is None:
        return asked
    if left <= 0:
        raise ClientTimeout(f"calling {name!r}: the call this Handler is answering has no time left (its caller's "
                            "deadline, or its function's `timeout`)", function=name)
    return left if asked is None else min(asked, left)


def time_left() -> float | None:
    """Seconds the call this Handler is answering has left (its caller's deadline, within its function's
    `timeout`); None outside a Handler's call, or when nothing limits it."""
    caller = current_call()
    return caller.time_left() if caller is not None else None


def call(name: str, data: Any = b"", *, timeout: float | None = None, retries: int = 0) -> Result:
    """Call function `name` once: str when its handler returned text, bytes for bytes, the parsed value for JSON;
    `retries`: tries again that many times, backing off, when its queue is full."""
    return _mesh_client().call(name, data, timeout=_timeout(timeout, name), retries=retries)


def stream(name: str, inputs: Iterable[Any], *, timeout: float | None = None) -> Iterator[bytes]:
    """Stream `inputs` to function `name` (DCF's Invokes): one reply's bytes per input, in order."""
    return _mesh_client().stream(name, inputs, timeout=_timeout(timeout, name))


async def call_async(name: str, data: Any = b"", *, timeout: float | None = None, retries: int = 0) -> Result:
    """`call` for async code: runs in a thread, so the event loop goes on meanwhile."""
    limit = _timeout(timeout, name)  # read here: the thread does not see this call's context
    return await asyncio.to_thread(_mesh_client().call, name, data, timeout=limit, retries=retries)

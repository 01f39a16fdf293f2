"""`.map`: a dataset through a function over one `Map` stream (gateway/mapping.py is the other end).

Inputs are read from the caller's iterable on gRPC's sending thread, a chunk at a time, and sent with their
index; at most WINDOW of them are between being read and being handed back to the caller, so a generator of
any length, or a caller that reads results slowly, holds memory flat: no thread or future per input. Results
come back as replicas finish them and are handed over in input order (`ordered=True`, holding those that come
early) or at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any

import grpc

from ..errors import DcfError
from ..protocol import gateway_pb2 as pb
from ..protocol.names import BINARY, ORIGIN_KEY, TRACEBACK_KEY
from ._map_progress import MapProgress, shown_by_default
from ._replies import Reply, error_of, rpc_error, to_bytes

WINDOW = 4096  # inputs read and not yet handed back (covers the gateway's window with room for the transport)
CHUNK_ITEMS = 256  # inputs sent in one message at most
CHUNK_BYTES = 1 << 20  # ... and no more bytes than this (an input larger goes alone)
CHUNK_S = 0.005  # a chunk waits no longer than this for more inputs from a slow iterable


class MapInputs:
    """The request side: the caller's inputs as MapRequests, run on gRPC's sending thread."""

    def __init__(self, name: str, inputs: Iterable[Any], retries: int, *, single: bool = False,
                 callback_url: str = "") -> None:
        self.name = name
        self.retries = retries
        self.single = single
        self.callback_url = callback_url
        self._inputs = iter(inputs)
        self.slots = threading.Semaphore(WINDOW)  # released as each result is handed back
        self.error: Exception | None = None  # the caller's iterable failed (raised in the caller's thread)
        self._stopped = False

    def stop(self) -> None:
        """The caller is done (or went away): send no more."""
        self._stopped = True
        self.slots.release()  # wakes the sending thread if it waits for a slot

    def requests(self, unpaced: bool = False) -> Iterator[pb.MapRequest]:
        """The MapRequests; `unpaced`: no window (a spawn, whose gateway keeps every input it is sent)."""
        index = 0
        first = True
        exhausted = False
        while not exhausted:
            items: list[pb.MapItem] = []
            size = 0
            began = 0.0
            while len(items) < CHUNK_ITEMS and size < CHUNK_BYTES:
                if not unpaced and not self.slots.acquire(blocking=not items):
                    break  # the window is full: send what there is
                if self._stopped:
                    return
                try:
                    payload = to_bytes(next(self._inputs))
                except StopIteration:
                    exhausted = True
                    break
                except Exception as exc:  # noqa: BLE001 - the caller's own iterable: handed to the caller
                    self.error = exc
                    exhausted = True
                    break
                items.append(pb.MapItem(Index=index, Input=payload))
                index += 1
                size += len(payload)
                if len(items) == 1:
                    began = time.monotonic()
                elif time.monotonic() - began > CHUNK_S:
                    break
            if items or first:
                yield pb.MapRequest(Service=self.name if first else "", Items=items,
                                    Retries=self.retries if first else 0, Single=first and self.single,
                                    CallbackUrl=self.callback_url if first else "")
                first = False


def result_value(result: pb.MapResult, address: str, name: str, *, replies: bool = False, single: bool = False
                 ) -> Any:
    """An item's result: what the handler returned (its Reply with `replies`), or its failure as a DcfError
    (naming the input unless it is a `single` call's only one)."""
    if not result.Code:
        reply = Reply(result.Reply.Output, result.Reply.ContentType or BINARY)
        return reply if replies else reply.value()
    trailing: dict[str, str | bytes] = {ORIGIN_KEY: result.Origin}
    if result.Traceback:
        trailing[TRACEBACK_KEY] = result.Traceback
    tries = f" ({result.Tries} tries)" if result.Tries > 1 else ""
    said = f"{result.Error}{tries}" if single else f"input {result.Index}{tries}: {result.Error}"
    return error_of(grpc.StatusCode[result.Code], said, trailing,
                    address, f"calling {name!r}" if name else "the call", name)


def _total(inputs: Iterable[Any]) -> int | None:
    """How many inputs there are, when that is known without reading them."""
    return len(inputs) if isinstance(inputs, Sized) else None


def map_results(open_map: Callable[..., Any], metadata: Any, address: str, name: str, inputs: Iterable[Any], *,
                ordered: bool = True, return_exceptions: bool = False, retries: int = 0,
                timeout: float | None = None, progress: bool | None = None, replies: bool = False) -> Iterator[Any]:
    """Each input's result (see Client.map), over a Map stream that `open_map` (the stub's) opens with
    `metadata`; its Reply with `replies`."""
    sender = MapInputs(name, inputs, retries)
    shown = shown_by_default() if progress is None else progress
    counter = MapProgress(name, _total(inputs), shown)

    def value(result: pb.MapResult) -> Any:
        return result_value(result, address, name, replies=replies)

    def handed(result: Any) -> Any:
        sender.slots.release()
        if isinstance(result, DcfError) and not return_exceptions:
            raise result
        return result

    stream = open_map(sender.requests(), timeout=timeout, metadata=metadata)
    early: dict[int, Any] = {}  # ordered: results that came before their turn
    turn = 0
    try:
        for message in stream:
            for result in message.Results:
                outcome = value(result)
                counter.advance(failed=isinstance(outcome, DcfError))
                if not ordered:
                    yield handed(outcome)
                    continue
                early[result.Index] = outcome
                while turn in early:
                    outcome = early.pop(turn)
                    turn += 1
                    yield handed(outcome)
    except grpc.RpcError as exc:
        raise rpc_error(exc, address, f"mapping over {name!r}", name) from None
    finally:
        sender.stop()
        stream.cancel()
        counter.close()
    if sender.error is not None:
        raise sender.error

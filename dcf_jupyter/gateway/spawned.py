"""Spawned calls: a call, or a whole map, that the gateway runs on its own and keeps in its state dir.

Each lives in `STATE/calls/ID/`: `call.json` (what it is and how it stands), `inputs` and `results` (one record
per item: a 4-byte length, then the MapItem or MapResult). Results are appended as they come, so a gateway that
stops mid-way runs only the items without one when it starts again. Kept KEEP_S after they finish; all of them
together within MAX_BYTES (the oldest finished go first; past that a new spawn is refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import shutil
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import urlsplit

import grpc
from google.protobuf.message import DecodeError

from ..backends.base import Deployment
from ..errors import brief
from ..host.credentials import write_private
from ..host.logfile import note
from ..protocol import gateway_pb2 as pb
from ..protocol.names import BINARY, JSON
from .mapping import Caller, Detached, MapRun
from .registry import FunctionRecord
from .rpc import Abort

log = logging.getLogger("dcf.gateway")

KEEP_S = 24 * 3600.0  # a finished call (input and result) is kept this long
MAX_BYTES = 1 << 30  # all spawned calls' inputs and results together
CALL_ID = re.compile(r"fc-[0-9a-f]{24}")
FINISHED = frozenset({"done", "failed", "cancelled"})
CHUNK_ITEMS = 256  # items handed to the map at a time when a call (re)starts
CALLBACK_TRIES = 3
CALLBACK_TIMEOUT_S = 30.0
_LENGTH = struct.Struct("<I")


class Router(Caller, Protocol):
    """What spawned calls need of the invoker: calls, and which deployment serves a name."""

    def route(self, service: str) -> tuple[FunctionRecord, Deployment]:
        """The record and deployment of a function."""
        ...


@dataclass
class SpawnedCall:
    """One spawned call: what call.json keeps."""

    id: str
    function: str
    single: bool
    retries: int
    created: float
    state: str = "queued"
    total: int = 0
    done: int = 0
    failed: int = 0
    finished: float = 0.0
    error: str = ""
    callback: str = ""
    folder: Path = field(default=Path(), repr=False)

    def info(self) -> pb.CallInfo:
        """How it stands, as GetCall answers."""
        return pb.CallInfo(Id=self.id, Function=self.function, State=self.state, Total=self.total, Done=self.done,
                           Failed=self.failed, Created=self.created, Finished=self.finished, Single=self.single,
                           Error=self.error)

    def save(self) -> None:
        """Write call.json (atomically)."""
        data = asdict(self)
        del data["folder"]
        write_private(self.folder / "call.json", json.dumps(data))

    @classmethod
    def load(cls, folder: Path) -> SpawnedCall:
        """The call saved in `folder` (ValueError when it cannot be read)."""
        try:
            data = json.loads((folder / "call.json").read_text())
            call = cls(**data, folder=folder)
        except (OSError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{folder.name}: {exc}") from None
        if call.id != folder.name:
            raise ValueError(f"{folder.name}: its call.json names {call.id}")
        return call

    @property
    def size(self) -> int:
        """Bytes it takes on disk."""
        return sum(path.stat().st_size for path in self.folder.iterdir() if path.is_file())


def framed(data: bytes) -> bytes:
    """One record of an inputs or results file."""
    return _LENGTH.pack(len(data)) + data


def read_records(handle: BinaryIO, count: int | None = None) -> list[bytes]:
    """Up to `count` (all: None) records from `handle`; a record cut short (a gateway killed mid-write) ends
    the file."""
    found: list[bytes] = []
    while count is None or len(found) < count:
        head = handle.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            break
        (length,) = _LENGTH.unpack(head)
        data = handle.read(length)
        if len(data) < length:
            break
        found.append(data)
    return found


def read_results(folder: Path) -> list[pb.MapResult]:
    """The results saved so far, one per item (the first of each index), in input order."""
    path = folder / "results"
    if not path.exists():
        return []
    with path.open("rb") as handle:
        results: dict[int, pb.MapResult] = {}
        for data in read_records(handle):
            with contextlib.suppress(DecodeError):
                result = pb.MapResult.FromString(data)
                results.setdefault(result.Index, result)
    return [results[index] for index in sorted(results)]


def resumable_results(folder: Path) -> list[pb.MapResult]:
    """The results saved so far, with the file cut back to its last whole record (a gateway killed mid-write
    leaves part of one, which the results appended after it would otherwise follow)."""
    path = folder / "results"
    if not path.exists():
        return []
    with path.open("rb") as handle:
        records = read_records(handle)
    whole = sum(_LENGTH.size + len(data) for data in records)
    if path.stat().st_size > whole:
        with path.open("r+b") as handle:
            handle.truncate(whole)
    return read_results(folder)


def check_callback(url: str) -> str:
    """A callback URL, refused in a sentence unless it is http(s) with a host."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                    f"the callback URL {brief(url)} is not an http:// or https:// URL with a host")
    return url


def valid_call_id(call_id: str) -> str:
    if not CALL_ID.fullmatch(call_id):
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                    f"{brief(call_id)} is not a call id (spawn gives ids like fc-0123456789abcdef01234567)")
    return call_id


class CallKeeper:
    """The spawned calls of one gateway: made, run, waited for, cancelled, swept."""

    def __init__(self, state_dir: Path, router: Router, *, keep_s: float = KEEP_S, max_bytes: int = MAX_BYTES
                 ) -> None:
        self.root = state_dir / "calls"
        self.router = router
        self.keep_s = keep_s
        self.max_bytes = max_bytes
        self.calls: dict[str, SpawnedCall] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._finished: dict[str, asyncio.Event] = {}
        self._log_path = lambda name: state_dir / "logs" / f"{name}.log"

    # --- keeping ---------------------------------------------------------------

    def load(self) -> list[str]:
        """Read the calls a previous run kept; a line for each that could not be read (and was removed)."""
        warnings: list[str] = []
        if not self.root.exists():
            return warnings
        for folder in sorted(self.root.iterdir()):
            if not (folder.is_dir() and CALL_ID.fullmatch(folder.name)):
                continue
            try:
                call = SpawnedCall.load(folder)
            except ValueError as exc:
                warnings.append(f"removed a spawned call that could not be read: {exc}")
                shutil.rmtree(folder, ignore_errors=True)
                continue
            self.calls[call.id] = call
        return warnings

    def resume(self) -> None:
        """Run again the calls a previous run did not finish (their items without a result)."""
        for call in list(self.calls.values()):
            if call.state not in FINISHED:
                self._start(call)

    def sweep(self, room_for: int = 0) -> None:
        """Remove finished calls older than keep_s, then the oldest finished ones until `room_for` more bytes
        fit within max_bytes; Abort (RESOURCE_EXHAUSTED) when unfinished calls alone leave no room."""
        now = time.time()
        for call in list(self.calls.values()):
            if call.state in FINISHED and now - call.finished > self.keep_s:
                self._remove(call)
        sizes = {call.id: call.size for call in self.calls.values()}
        used = sum(sizes.values())
        for call in sorted(self.calls.values(), key=lambda c: c.finished):
            if used + room_for <= self.max_bytes:
                return
            if call.state in FINISHED:
                used -= sizes[call.id]
                self._remove(call)
        if used + room_for > self.max_bytes:
            raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"spawned calls not finished yet hold {used / 2**20:.0f} MiB, and the gateway keeps at most "
                        f"{self.max_bytes / 2**20:.0f} MiB of them: wait for some to finish, or cancel some")

    def _remove(self, call: SpawnedCall) -> None:
        self.calls.pop(call.id, None)
        self._finished.pop(call.id, None)
        shutil.rmtree(call.folder, ignore_errors=True)

    # --- spawning ----------------------------------------------------------------

    async def spawn(self, first: pb.MapRequest, more: AsyncIterator[bytes] | None = None, *, why: str = "spawned"
                    ) -> SpawnedCall:
        """Keep the call whose items `first` and `more` (serialized MapRequests) carry, and start it; `why` starts
        its line in the function's log."""
        self.router.route(first.Service)  # refused now if nothing serves that name
        callback = check_callback(first.CallbackUrl)
        self.sweep()
        call_id = f"fc-{secrets.token_hex(12)}"
        folder = self.root / call_id
        folder.mkdir(mode=0o700, parents=True)
        self.root.chmod(0o700)
        call = SpawnedCall(call_id, first.Service, first.Single, first.Retries, time.time(), callback=callback,
                           folder=folder)
        try:
            with (folder / "inputs").open("wb") as inputs:
                call.total = await self._take_inputs(first, more, inputs)
            if call.single and call.total != 1:
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"a spawned call has one input, not {call.total}")
            call.save()
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.calls[call.id] = call
        note(self._log_path(call.function), f"{why}: call {call.id}, {call.total} input(s)")
        self._start(call)
        return call

    async def _take_inputs(self, first: pb.MapRequest, more: AsyncIterator[bytes] | None, inputs: BinaryIO) -> int:
        """Write the items to `inputs`, numbered in order (their own Index is ignored): how many."""
        total = size = 0
        message = first
        while True:
            data = b"".join(framed(pb.MapItem(Index=total + n, Input=item.Input).SerializeToString())
                            for n, item in enumerate(message.Items))
            size += len(data)
            self.sweep(room_for=size)
            await asyncio.to_thread(inputs.write, data)
            total += len(message.Items)
            raw = await anext(aiter(more), None) if more is not None else None
            if raw is None:
                return total
            try:
                message = pb.MapRequest.FromString(raw)
            except DecodeError as exc:
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed MapRequest: {exc}") from None
            if message.Service and message.Service != first.Service:
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"this call is to {first.Service!r}, not {brief(message.Service)}")

    # --- running -----------------------------------------------------------------

    def _start(self, call: SpawnedCall) -> None:
        self._finished.setdefault(call.id, asyncio.Event())
        task = asyncio.get_running_loop().create_task(self._run(call), name=f"spawned {call.id}")
        self._running[call.id] = task
        task.add_done_callback(lambda _: self._running.pop(call.id, None))

    async def _run(self, call: SpawnedCall) -> None:
        try:
            record, deployment = self.router.route(call.function)
        except Abort as exc:
            await self._finish(call, "failed", exc.message)
            return
        saved = await asyncio.to_thread(resumable_results, call.folder)
        call.done, call.failed = len(saved), sum(1 for result in saved if result.Code)
        call.state = "running"
        await asyncio.to_thread(call.save)
        run = MapRun(self.router, record, deployment, Detached(), call.retries)
        answered = {result.Index for result in saved}
        with (call.folder / "results").open("ab") as out:
            async for results in run.results(pb.MapRequest(Service=call.function),
                                             self._unanswered(call, answered)):
                data = b"".join(framed(result.SerializeToString()) for result in results)
                await asyncio.to_thread(_append, out, data)
                call.done += len(results)
                call.failed += sum(1 for result in results if result.Code)
        await self._finish(call, "done")

    async def _unanswered(self, call: SpawnedCall, answered: set[int]) -> AsyncIterator[bytes]:
        """The call's items without a result yet, as serialized MapRequests."""
        with (call.folder / "inputs").open("rb") as inputs:
            while chunk := await asyncio.to_thread(read_records, inputs, CHUNK_ITEMS):
                items = [item for item in map(pb.MapItem.FromString, chunk) if item.Index not in answered]
                if items:
                    yield pb.MapRequest(Items=items).SerializeToString()

    async def _finish(self, call: SpawnedCall, state: str, error: str = "") -> None:
        call.state, call.error, call.finished = state, error, time.time()
        await asyncio.to_thread(call.save)
        self._finished[call.id].set()
        said = f"{call.done} of {call.total} answered, {call.failed} failed" if state == "done" else error or state
        note(self._log_path(call.function), f"spawned call {call.id} {state}: {said}")
        if call.callback and state != "cancelled":
            asyncio.get_running_loop().create_task(self._post_result(call))

    # --- asking --------------------------------------------------------------------

    def get(self, call_id: str) -> SpawnedCall:
        """The call with this id; NOT_FOUND (or INVALID_ARGUMENT for what is no id) otherwise."""
        call = self.calls.get(valid_call_id(call_id))
        if call is None:
            raise Abort(grpc.StatusCode.NOT_FOUND,
                        f"no spawned call {call_id} here (a finished call is kept {self.keep_s / 3600:g} h)")
        return call

    async def wait(self, call: SpawnedCall, seconds: float) -> None:
        """Until the call finished, or `seconds` passed."""
        if call.state in FINISHED or seconds <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._finished.setdefault(call.id, asyncio.Event()).wait(), seconds)

    async def results(self, call: SpawnedCall) -> list[pb.MapResult]:
        """Its results so far, in input order."""
        return await asyncio.to_thread(read_results, call.folder)

    async def cancel(self, call: SpawnedCall) -> None:
        """Stop it: items not answered yet are not called (those running are told to stop)."""
        if call.state in FINISHED:
            return
        task = self._running.get(call.id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._finish(call, "cancelled")

    async def close(self) -> None:
        """Stop running calls without finishing them: the next gateway of this state dir runs them on."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- telling -------------------------------------------------------------------

    async def _post_result(self, call: SpawnedCall) -> None:
        """POST the result to the call's callback URL (a single call's reply as is; a map's or a failure's
        standing as JSON), trying again a few times; said in the function's log either way."""
        import aiohttp

        body, headers = await self._callback_body(call)
        said = ""
        for attempt in range(CALLBACK_TRIES):
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_S)) as session, \
                        session.post(call.callback, data=body, headers=headers) as response:
                    said = f"HTTP {response.status}"
                    if response.status < 500:
                        break
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                said = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(2 ** attempt)
        note(self._log_path(call.function), f"spawned call {call.id}: result sent to {call.callback} ({said})")

    async def _callback_body(self, call: SpawnedCall) -> tuple[bytes, dict[str, str]]:
        headers = {"X-Call-Id": call.id, "X-Call-State": call.state}
        results = await self.results(call)
        if call.single and call.state == "done" and results and not results[0].Code:
            reply = results[0].Reply
            return reply.Output, {**headers, "Content-Type": reply.ContentType or BINARY}
        standing: dict[str, Any] = {"id": call.id, "function": call.function, "state": call.state,
                                    "total": call.total, "done": call.done, "failed": call.failed}
        if call.error:
            standing["error"] = call.error
        if call.single and results and results[0].Code:
            standing["error"] = results[0].Error
        return json.dumps(standing).encode(), {**headers, "Content-Type": JSON}


def _append(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()


"""The worker (DCF's "watcher"): one process, one Handler instance, serving calls.

    python -m dcf_jupyter.worker FUNCTION_DIR --name NAME [--socket PATH] [--grpc HOST:PORT]

It builds `Handler()` once, then serves the gateway's framed link on a Unix
socket (`--socket`, local backend) and/or the DCF gRPC protocol (`--grpc`,
containers and `dcf function run`). Readiness is reported only after
`__init__` returned: a JSON line on `--status-fd`. A handler exception fails
that one call (INVALID_ARGUMENT for ValueError, INTERNAL otherwise) and the
worker keeps serving; the traceback goes to stderr, which is the function's log.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import select
import signal
import site
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, cast

from ..protocol.link import END, ERROR, FORM_MESSAGE, FORM_MESSAGES, FORM_STREAM, ITEM, LAST, REPLY, CallFailed
from ..protocol.names import (
    BATCH_KEY,
    HEALTHY,
    ORIGIN_FUNCTION,
    ORIGIN_KEY,
    SERVICE,
    TRACEBACK_KEY,
    Status,
    grpc_status,
)
from ..protocol.wire import WireError, callers_of, message_parts, messages_parts, parse_call
from ..settings import ENV_EXTRA_SITE, max_message_size
from .batcher import Batcher
from .call_context import CallContext, enter_call, leave_call, new_call_id
from .handler import (
    HandlerCallable,
    HandlerLoadError,
    Request,
    as_text,
    collect_results,
    encode_result,
    format_user_traceback,
    is_stream,
    iter_results,
    load_handler,
    serve_function_from,
)
from .link import Emit, LinkServer
from .slots import Slots

if TYPE_CHECKING:
    from ..definition.spec import Batching


class ReplicaLines(io.TextIOBase):
    """The worker's stdout and stderr when several replicas share one log file: whole lines only, each
    prefixed with the replica and written with one write() (O_APPEND keeps a write whole), so two replicas
    starting at once never interleave mid-line. Text and bytes (`.buffer`) alike."""

    def __init__(self, fd: int, replica: str, also: Callable[[bytes], None] | None = None) -> None:
        self._fd = fd
        self._also = also  # another place the same lines go (a Ray replica's log book)
        self._prefix = f"[r{replica}] ".encode()
        self._partial = b""
        self._lock = threading.Lock()
        self._bytes = _LinesOfBytes(self)

    @property
    def encoding(self) -> str:  # type: ignore[override]  # TextIOBase says None; handlers may read it
        return "utf-8"

    @property
    def buffer(self) -> _LinesOfBytes:
        """The binary side (`sys.stdout.buffer.write(b"...")`), into the same lines."""
        return self._bytes

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        self.write_bytes(text.encode("utf-8", "replace"))
        return len(text)

    def write_bytes(self, data: bytes) -> None:
        """Add `data`; every line it completes is written, prefixed."""
        with self._lock:
            *lines, self._partial = (self._partial + data).split(b"\n")
            if lines:
                self._emit(b"".join(self._prefix + line + b"\n" for line in lines))

    def flush(self) -> None:
        with self._lock:
            if self._partial:
                self._emit(self._prefix + self._partial + b"\n")
                self._partial = b""

    def _emit(self, data: bytes) -> None:
        os.write(self._fd, data)
        if self._also is not None:
            self._also(data)


class _LinesOfBytes:
    """ReplicaLines' `.buffer`."""

    def __init__(self, lines: ReplicaLines) -> None:
        self._lines = lines

    def write(self, data: bytes) -> int:
        self._lines.write_bytes(bytes(data))
        return len(data)

    def flush(self) -> None:
        self._lines.flush()


Encoded = tuple[str, bytes, int]  # a batched call's reply: content type, payload, its batch's size (or 0)


def _log(message: str) -> None:
    print(f"[dcf-worker] {message}", file=sys.stderr, flush=True)


class CallRunner:
    """Runs the handler for one call; takes the serialized request and returns wire-ready reply parts."""

    def __init__(self, handler: HandlerCallable, service: str, concurrency: int = 1,
                 timeout: float | None = None, batching: Batching | None = None) -> None:
        self._handler = handler
        self.service = service
        self.timeout = timeout  # a call's limit (config.yaml's `timeout`): the most its own calls may take
        # The Handler instance is shared: at most `concurrency` calls run in it at once (a chain of calls waiting
        # on itself borrows the slots of its waiting callers: slots.py).
        self._slots = Slots(concurrency)
        self.batcher: Batcher[tuple[Request, CallContext], Encoded] | None = None
        if batching is not None:
            self.batcher = Batcher(self._run_batch, max_size=batching.max_batch_size,
                                   max_wait_s=batching.max_wait_s, slots=self._slots, new_id=new_call_id,
                                   callers_of=lambda call: call[1].callers)
        # Threads that may bring calls to the Handler at once: one per call, and for batches one batch per Handler
        # slot plus the next one gathering meanwhile.
        self.callers = concurrency if batching is None else (concurrency + 1) * batching.max_batch_size

    def _request(self, raw: bytes, streamed: bool = False) -> tuple[Request, CallContext]:
        """The Handler's Request, and the call's context: its deadline is the caller's time left, within the
        function's own timeout (which for a generator bounds each item, not the whole)."""
        try:
            service, data, time_left, depth, callers = parse_call(raw)
        except WireError as exc:
            raise CallFailed(Status.INVALID_ARGUMENT, f"malformed InvokeServiceRequest: {exc}") from None
        limits = [t for t in (time_left, None if streamed else self.timeout) if t is not None]
        deadline = time.monotonic() + min(limits) if limits else None
        context = CallContext(deadline, depth, callers=callers_of(callers) if callers else ())
        return Request(bytes(data), service or self.service), context

    def waited_on_here(self, raw: bytes) -> bool:
        """Whether every slot is held and a call running here waits on this one (so it must not queue behind
        calls that cannot start either: the link runs it on a thread of its own)."""
        if not self._slots.full:
            return False
        try:
            callers = parse_call(raw)[4]
        except WireError:
            return False
        return bool(callers) and self._slots.waited_on_here(callers_of(callers))

    @contextlib.contextmanager
    def _slot(self, context: CallContext) -> Iterator[None]:
        lender = self._slots.acquire(context.call_id, context.callers)
        try:
            yield
        finally:
            self._slots.release(context.call_id, lender)

    def unary(self, form: int, raw: bytes) -> list[bytes]:
        """One call, one reply (a generator's items folded into it); raises CallFailed."""
        return self.unary_batched(form, raw)[0]

    def unary_batched(self, form: int, raw: bytes) -> tuple[list[bytes], int]:
        """`unary`, and the size of the batch it ran in for one call of each batch (0 for the others, and when
        the Handler is not batched), so that whoever counts batches counts each once."""
        request, context = self._request(raw)
        if self.batcher is not None:
            content_type, payload, batch = self.batcher.call((request, context))
            return (message_parts(as_text(content_type, payload)) if form == FORM_MESSAGE else
                    messages_parts(payload, content_type)), batch
        return self._unary(form, request, context), 0

    def _unary(self, form: int, request: Request, context: CallContext) -> list[bytes]:
        try:
            with self._slot(context):
                entered = enter_call(context)
                try:
                    result = self._handler(request)
                    content_type, payload = collect_results(result) if is_stream(result) else encode_result(result)
                finally:
                    leave_call(entered)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - whatever the handler raises fails this call only
            raise self._failure(exc) from None
        if form == FORM_MESSAGE:
            return message_parts(as_text(content_type, payload))
        return messages_parts(payload, content_type)

    def stream(self, raw: bytes) -> Iterator[list[bytes]]:
        """One call, a reply per generated item; raises CallFailed (possibly after some items)."""
        for kind, parts in self.frames(raw):
            if kind != END:
                yield parts

    def frames(self, raw: bytes) -> Iterator[tuple[int, list[bytes]]]:
        """One streamed call as link frames: (ITEM, parts) per generated item then (END, []), or one (LAST, parts)
        when the handler returned a single value; raises CallFailed (possibly after some items)."""
        request, context = self._request(raw, streamed=True)
        if self.batcher is not None:  # a batched Handler gives one reply per request: the stream's only item
            content_type, payload, _ = self.batcher.call((request, context))
            yield LAST, messages_parts(payload, content_type)
            yield END, []
            return
        with self._slot(context):
            entered = enter_call(context)
            try:
                result = self._handler(request)
                if not is_stream(result):
                    content_type, payload = encode_result(result)
                    yield LAST, messages_parts(payload, content_type)
                    return
                for content_type, payload in iter_results(result):
                    yield ITEM, messages_parts(payload, content_type)
                    enter_call(context)  # resumed: maybe in another thread (Ray steps a generator in worker threads)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - whatever the handler raises fails this call only
                raise self._failure(exc) from None
            finally:
                leave_call(entered)
        yield END, []

    def _run_batch(self, calls: list[tuple[Request, CallContext]], batch_id: int) -> list[Encoded | BaseException]:
        """The Handler on a batch's requests: one encoded reply (the first with the batch's size) or CallFailed
        per call, in order. Calls it makes to other functions carry the batch's earliest deadline, its deepest
        chain and all its callers."""
        contexts = [context for _, context in calls]
        deadlines = [context.deadline for context in contexts if context.deadline is not None]
        waiting = tuple(caller for context in contexts for caller in (*context.callers, context.call_id))
        batch = CallContext(min(deadlines) if deadlines else None, max(context.depth for context in contexts),
                            call_id=batch_id, callers=waiting)
        entered = enter_call(batch)
        try:
            replies = cast(Callable[[list[Request]], Any], self._handler)([request for request, _ in calls])
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the whole batch failed: each of its callers hears
            return [self._failure(exc)] * len(calls)
        finally:
            leave_call(entered)
        if is_stream(replies) or not isinstance(replies, (list, tuple)) or len(replies) != len(calls):
            said = (f"a {type(replies).__name__}" if not isinstance(replies, (list, tuple))
                    else f"{len(replies)} replies")
            failure = CallFailed(Status.INTERNAL, f"the batched Handler returned {said} for {len(calls)} requests "
                                                  "(with `batching:` it takes a list and returns a list of the "
                                                  "same length)")
            _log(f"{self.service}: {failure.message}")
            return [failure] * len(calls)
        return [self._encoded(reply, len(calls) if i == 0 else 0) for i, reply in enumerate(replies)]

    def _encoded(self, reply: Any, batch: int) -> Encoded | CallFailed:
        """One item of a batch's replies, encoded; an exception in its place fails its caller only."""
        if isinstance(reply, BaseException):
            return self._failure(reply)
        if is_stream(reply):
            return CallFailed(Status.INTERNAL, "a batched Handler returns one reply per request, not a generator "
                                               "(`batching:` and generators do not mix)")
        try:
            return (*encode_result(reply), batch)
        except TypeError as exc:
            return self._failure(exc)

    def _failure(self, exc: BaseException) -> CallFailed:
        tb = format_user_traceback(exc)
        _log(f"{self.service}: the handler raised {type(exc).__name__}: {exc}\n{tb.rstrip()}")
        code = Status.INVALID_ARGUMENT if isinstance(exc, ValueError) else Status.INTERNAL
        return CallFailed(code, f"{type(exc).__name__}: {exc}", tb)

    def dispatch(self, form: int, raw: bytes, emit: Emit) -> None:
        """Serve one link call through `emit` (the link's dispatch callback)."""
        try:
            if form == FORM_STREAM:
                for kind, parts in self.frames(raw):
                    emit(kind, 0, parts)
            else:
                parts, batch = self.unary_batched(form, raw)
                emit(REPLY, batch, parts)
        except CallFailed as failure:
            emit(ERROR, failure.code, (failure.encode(),))


# --- gRPC face (containers, `dcf function run`, DCF clients talking to a worker) ---


def grpc_server(runner: CallRunner, address: str, *, concurrency: int, max_message: int) -> tuple[Any, int]:
    """A started grpc.Server answering pb.Gateway's invoke RPCs with `runner`; returns (server, port)."""
    import grpc

    from ..protocol import gateway_pb2 as pb
    from ..settings import grpc_options

    def abort(context: grpc.ServicerContext, failure: CallFailed) -> NoReturn:
        context.set_trailing_metadata(
            ((TRACEBACK_KEY, failure.detail.encode("utf-8")), (ORIGIN_KEY, ORIGIN_FUNCTION))
        )
        context.abort(grpc_status(failure.code), failure.message)
        raise AssertionError("context.abort raises")  # for type checkers: abort never returns

    # Requests arrive and replies leave as bytes: the runner parses and encodes.
    def unary(form: int) -> Any:
        def handle(raw: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                parts, batch = runner.unary_batched(form, raw)
            except CallFailed as failure:
                abort(context, failure)
            if batch:
                context.set_trailing_metadata(((BATCH_KEY, str(batch)),))
            return b"".join(parts)

        return handle

    def invoke_stream(raw: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        try:
            for parts in runner.stream(raw):
                yield b"".join(parts)
        except CallFailed as failure:
            abort(context, failure)

    def invokes(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for raw in requests:
            try:
                yield b"".join(runner.unary(FORM_MESSAGES, raw))
            except CallFailed as failure:
                abort(context, failure)

    def health(request: pb.Empty, context: grpc.ServicerContext) -> pb.Message:
        return pb.Message(Msg=HEALTHY)

    def info(request: pb.Empty, context: grpc.ServicerContext) -> pb.Message:
        return pb.Message(Msg=json.dumps({"worker": runner.service, "pid": os.getpid()}))

    req = None  # raw bytes
    empty = pb.Empty.FromString
    reply = pb.Message.SerializeToString
    handlers = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Invoke": grpc.unary_unary_rpc_method_handler(unary(FORM_MESSAGE), req, None),
            "InvokeBytes": grpc.unary_unary_rpc_method_handler(unary(FORM_MESSAGES), req, None),
            "InvokeStream": grpc.unary_stream_rpc_method_handler(invoke_stream, req, None),
            "Invokes": grpc.stream_stream_rpc_method_handler(invokes, req, None),
            "HealthCheck": grpc.unary_unary_rpc_method_handler(health, empty, reply),
            "Info": grpc.unary_unary_rpc_method_handler(info, empty, reply),
        },
    )
    # Streams hold a thread each for their lifetime; keep spare threads so a
    # stream never starves health checks. The runner's gate bounds the handler.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=concurrency + 8, thread_name_prefix="dcf-grpc"),
        # One server per port: grpcio's default SO_REUSEPORT would let another server share it unnoticed.
        options=[*grpc_options(max_message), ("grpc.so_reuseport", 0)],
    )
    server.add_generic_rpc_handlers((handlers,))
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    server.start()
    return server, port


# --- process -------------------------------------------------------------------


def _report(fd: int | None, status: dict[str, Any]) -> None:
    if fd is None:
        return
    try:
        os.write(fd, (json.dumps(status) + "\n").encode())
        os.close(fd)
    except OSError:
        pass


def _die_with_parent(lifeline_fd: int) -> None:
    """Make sure this worker ends when the gateway that started it does, however the gateway ends.

    The gateway holds the lifeline's other end, so its EOF says the gateway is gone (checked by
    `_wait_for_stop`). On Linux the kernel also SIGKILLs the worker when the gateway dies, which holds
    even while the worker is busy loading its Handler or stuck in one.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if select.select([lifeline_fd], [], [], 0)[0]:
        os._exit(0)  # the gateway died before the line above took effect


def _stop_on_signals() -> int:
    """Route SIGTERM/SIGINT to a pipe the main thread waits on; returns the pipe's read end.

    A Python signal handler runs only when the main thread wakes, and a signal the kernel hands to
    another thread (the link's, or a framework's) does not wake a main thread blocked on a lock. The
    wakeup fd is written by the C-level handler in whichever thread takes the signal.
    """
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    # A mask inherited from whoever started the gateway must not keep the signals out.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    return wake_r


def _wait_for_stop(wake_fd: int, lifeline_fd: int | None) -> str:
    """Block until a stop signal arrives or the lifeline reaches EOF; says which."""
    watched = [wake_fd] + ([lifeline_fd] if lifeline_fd is not None else [])
    while True:
        ready, _, _ = select.select(watched, [], [])
        if wake_fd in ready:
            return "signal"
        if lifeline_fd in ready:
            try:
                if not os.read(lifeline_fd, 1):
                    return "the gateway is gone"
            except OSError:
                return "the gateway is gone"


class LoadedFunction(NamedTuple):
    """A function's Handler, loaded, with what its calls need of its config.yaml."""

    handler: HandlerCallable
    name: str
    concurrency: int
    timeout: float
    batching: Batching | None = None


def load_function_handler(function_dir: Path, name: str | None) -> LoadedFunction:
    """Read config.yaml in `function_dir` and load its Handler."""
    from ..definition.spec import load_config

    config = load_config(function_dir / "config.yaml")
    spec = config.function(name)
    for warning in config.warnings:
        _log(f"warning: {warning}")
    serve_function_from(function_dir)
    # Relative paths in handlers (DCF's example functions) resolve against src/.
    os.chdir(spec.handler_dir)
    handler = load_handler(spec.handler_dir, spec.handler.filename, spec.handler.name)
    return LoadedFunction(handler, spec.name, spec.concurrency, spec.call_timeout, spec.batching)


def use_extra_site() -> None:
    """Put the function's requirement folder ($DCF_EXTRA_SITE) first on sys.path, .pth files included: the
    packages the function asked for that the gateway's environment lacks (or has in another version)."""
    extra_site = os.environ.get(ENV_EXTRA_SITE)
    if extra_site and extra_site not in sys.path:
        before = list(sys.path)
        site.addsitedir(extra_site)
        sys.path[:] = [p for p in sys.path if p not in before] + before


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker process."""
    parser = argparse.ArgumentParser(prog="python -m dcf_jupyter.worker", description=__doc__.splitlines()[0])
    parser.add_argument("function_dir", type=Path, help="folder holding config.yaml")
    parser.add_argument("--name", help="function in config.yaml (needed when it defines several)")
    parser.add_argument("--socket", help="serve the framed link on this Unix socket path")
    parser.add_argument("--grpc", help="serve the DCF gRPC protocol on HOST:PORT (port 0 picks one)")
    parser.add_argument("--status-fd", type=int, help="write one JSON readiness line to this fd")
    parser.add_argument("--lifeline-fd", type=int, help="exit when this fd reaches EOF")
    parser.add_argument("--ready-file", type=Path, help="create this file once ready (container HEALTHCHECK)")
    parser.add_argument("--concurrency", type=int, help="calls run at once in the Handler (default: config)")
    parser.add_argument("--max-message-size", type=int, default=max_message_size())
    args = parser.parse_args(argv)
    replica = os.environ.get("DCF_REPLICA")
    if replica is not None and not os.isatty(2):
        sys.stdout = sys.stderr = ReplicaLines(2, replica)

    if args.lifeline_fd is not None:
        _die_with_parent(args.lifeline_fd)
    # Until the Handler is loaded, SIGTERM keeps its default action: the worker ends at once.

    use_extra_site()
    started = time.monotonic()
    _log(f"starting {args.name or args.function_dir.name} (pid {os.getpid()})")
    try:
        loaded = load_function_handler(args.function_dir.resolve(), args.name)
    except HandlerLoadError as exc:
        _log(f"cannot start: {exc}\n{exc.detail.rstrip()}")
        _report(args.status_fd, {"ready": False, "error": str(exc), "traceback": exc.detail})
        return 3
    except Exception as exc:  # noqa: BLE001 - config errors and the like: report, don't trace
        _log(f"cannot start: {exc}")
        _report(args.status_fd, {"ready": False, "error": str(exc), "traceback": ""})
        return 3
    concurrency = args.concurrency or loaded.concurrency
    runner = CallRunner(loaded.handler, loaded.name, concurrency, loaded.timeout, loaded.batching)

    link_server = grpc_srv = None
    port = None
    try:
        if args.socket:
            if os.path.exists(args.socket):
                os.unlink(args.socket)
            link_server = LinkServer(args.socket, runner.dispatch, max_frame=args.max_message_size + 1024,
                                     concurrency=runner.callers, waited_on=runner.waited_on_here)
            link_server.serve_in_background()
        if args.grpc:
            grpc_srv, port = grpc_server(
                runner, args.grpc, concurrency=runner.callers, max_message=args.max_message_size
            )
    except OSError as exc:
        _log(f"cannot listen: {exc}")
        _report(args.status_fd, {"ready": False, "error": f"cannot listen: {exc}", "traceback": ""})
        return 4
    wake_fd = _stop_on_signals()
    _log(f"ready in {time.monotonic() - started:.2f}s" + (f", gRPC on port {port}" if port else ""))
    _report(args.status_fd, {"ready": True, "pid": os.getpid(), "grpc_port": port})
    if args.ready_file is not None:
        args.ready_file.write_text(str(os.getpid()))

    reason = _wait_for_stop(wake_fd, args.lifeline_fd)
    _log("stopping" + ("" if reason == "signal" else f": {reason}"))
    if link_server is not None:
        link_server.close(drain_s=None)  # calls in the handler finish; the gateway's grace period bounds them
    if grpc_srv is not None:
        grpc_srv.stop(grace=2).wait()
    sys.stdout.flush()
    sys.stderr.flush()
    # Handlers may hold threads or native state (TensorFlow) that make a normal
    # interpreter shutdown hang or crash; nothing is left to clean up here.
    os._exit(0)


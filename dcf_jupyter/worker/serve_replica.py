"""A function's replica as a Ray Serve deployment: the same Handler loading and call running as a worker
process (`CallRunner`), inside a Serve replica actor on whichever node Ray placed it.

Imported only on Ray nodes (and by the ray backend, which names the class): the rest of the worker needs no
Ray. Replies travel as (status code, bytes): 0 and the serialized pb.Message(s) the gateway sends on
unchanged, or a failure's code and `CallFailed.encode()` payload, so a handler's exception reaches the
client as it does on the local backend instead of as a Ray task error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..protocol.link import FORM_STREAM, CallFailed
from .process import CallRunner, ReplicaLines, load_function_handler
from .replica_folder import folder_environment, write_replica_folder

NAMESPACE = "dcf"  # Ray namespace of dcf-jupyter's Serve applications and log books
LOG_LINES_KEPT = 5000
LOG_LINE_MAX = 16 * 1024  # characters of one line a log book keeps
REPLICA_DIR_PREFIX = "dcf-replica-"  # + the replica's pid: its secrets and mesh credential, on its node
LOG_BOOK_PREFIX = "dcf-log-"  # + the function's name: its log book actor (which also marks it a DCF function)
Reply = tuple[int, bytes]
_DONE = object()


class LogBook:
    """The last lines the replicas of one function printed, wherever they run: a small detached actor per
    function (no CPU), which the gateway reads for GetLog."""

    def __init__(self, keep: int = LOG_LINES_KEPT) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=keep)

    def add(self, data: bytes) -> None:
        """Keep these whole lines (a very long one shortened, so the book stays small whatever is printed)."""
        self._lines.extend(line if len(line) <= LOG_LINE_MAX else
                           f"{line[:LOG_LINE_MAX]} [... {len(line) - LOG_LINE_MAX} more characters left out]"
                           for line in data.decode("utf-8", "replace").splitlines())

    def tail(self, lines: int) -> str:
        """The last `lines` lines, newline-terminated."""
        kept = list(self._lines)[-lines:] if lines > 0 else []
        return "".join(line + "\n" for line in kept)


def log_book(function: str, *, create: bool = False) -> Any:
    """The log book actor of `function` (created when asked); ValueError when there is none."""
    import ray

    name = f"{LOG_BOOK_PREFIX}{function}"
    if not create:
        return ray.get_actor(name, namespace=NAMESPACE)
    return ray.remote(LogBook).options(name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                                       num_cpus=0).remote()


def _from_gateway(name: str, gateway: str, credential: str) -> Path:
    """Fetch the secrets function `name` names from its gateway (ReplicaSecrets, with the function's replica
    credential) into a private folder of this node (replica_folder's layout), and point the replica's environment
    at them and at the gateway for dcf_jupyter.mesh. The folder (returned) goes when the replica stops
    (`FunctionReplica.__del__`, or this process's exit); one a killed replica left is removed by the next replica
    that starts on the node (`_remove_left_folders`)."""
    import atexit
    import tempfile

    import grpc

    from ..definition.secret_refs import env_secret_keys
    from ..definition.spec import load_config
    from ..protocol import gateway_pb2 as pb
    from ..protocol import gateway_pb2_grpc as pb_grpc
    from ..protocol.names import authorization

    spec = load_config(Path.cwd() / "config.yaml").function(name)
    secrets: dict[str, dict[str, bytes]] = {}
    if spec.secrets:
        with grpc.insecure_channel(gateway) as channel:
            try:
                reply = pb_grpc.GatewayStub(channel).ReplicaSecrets(
                    pb.FunctionRequest(FunctionName=name), timeout=60, metadata=[authorization(credential)])
            except grpc.RpcError as exc:
                raise RuntimeError(f"could not fetch the secrets of {name} from its gateway at {gateway}: "
                                   f"{exc.details() or exc.code().name}") from None
        secrets = {secret.Name: dict(secret.Values) for secret in reply.Secrets}
    _remove_left_folders(Path(tempfile.gettempdir()))
    parent = Path(tempfile.mkdtemp(prefix=f"{REPLICA_DIR_PREFIX}{os.getpid()}-"))  # 0700
    atexit.register(shutil.rmtree, parent, ignore_errors=True)
    folder = parent / "replica"
    write_replica_folder(folder, secrets, credential)
    os.environ.update(folder_environment(folder, gateway))
    for secret in spec.env_secrets:
        os.environ.update(env_secret_keys(secrets.get(secret, {})))
    return parent


def _remove_left_folders(temp: Path) -> None:
    """Remove the secrets folders of this user's replicas whose process is gone (killed: no exit hook ran)."""
    from ..host.pids import pid_alive

    for folder in temp.glob(f"{REPLICA_DIR_PREFIX}*"):
        pid = folder.name.removeprefix(REPLICA_DIR_PREFIX).split("-", 1)[0]
        with contextlib.suppress(OSError):
            if pid.isdigit() and folder.stat().st_uid == os.getuid() and not pid_alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)


def replica_id() -> str:
    """Serve's id of the replica running this code ('' outside a replica)."""
    with contextlib.suppress(Exception):
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    return ""


class FunctionReplica:
    """One replica: builds the function's Handler once, then serves calls (`call`) and streamed calls
    (`stream`). Its working dir is the function folder Ray's runtime_env brought to this node."""

    def __init__(self, name: str, concurrency: int = 1, revision: int = 0, gateway: str = "",
                 credential: str = "") -> None:
        # `revision` is unused here: it makes each revision a new version to Serve (a rolling update).
        folder = Path.cwd()
        self._private: Path | None = None
        if gateway:  # before the Handler loads: its __init__ may read its secrets
            self._private = _from_gateway(name, gateway, credential)
        replica = replica_id()
        os.environ.setdefault("DCF_REPLICA", replica)  # handlers may say which replica answered
        # What the Handler prints (and its tracebacks) goes to Ray's log of this worker and, prefixed with the
        # replica, to the function's log book, so GetLog shows it whichever node this runs on.
        book = log_book(name, create=True)
        sys.stdout, sys.stderr = (ReplicaLines(fd, replica[:8], also=book.add.remote) for fd in (1, 2))
        _add_missing_requirements(folder, name)
        loaded = load_function_handler(folder, name)
        self._runner = CallRunner(loaded.handler, loaded.name, concurrency, loaded.timeout, loaded.batching)
        # A thread per call waiting in the replica (asyncio's default pool has cpus + 4: too few to fill a batch).
        self._threads = ThreadPoolExecutor(max_workers=self._runner.callers + 4, thread_name_prefix="dcf-call")

    def __del__(self) -> None:
        # Serve calls it when it stops the replica (a scale-in, a delete, an update): its secrets go with it.
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)

    async def call(self, form: int, raw: bytes) -> Reply | tuple[int, bytes, int]:
        """One call: (0, reply, the size of its batch on one call of each batch, else 0) or (status code, failure
        payload)."""
        if form == FORM_STREAM:
            return _failed(CallFailed(3, "a streamed call must use `stream`"))
        try:
            parts, batch = await asyncio.get_running_loop().run_in_executor(
                self._threads, self._runner.unary_batched, form, raw)
        except CallFailed as failure:
            return _failed(failure)
        return 0, b"".join(parts), batch

    async def stream(self, raw: bytes) -> AsyncIterator[Reply]:
        """A streamed call: (0, item) per generated item, a failure as its last element."""
        items: Iterator[list[bytes]] = self._runner.stream(raw)
        stop = threading.Event()  # the client went away: the generator stops at its next item

        def step() -> object:
            if stop.is_set():
                return _DONE
            try:
                return next(items)
            except StopIteration:
                return _DONE

        try:
            while True:
                try:
                    parts = await asyncio.to_thread(step)
                except CallFailed as failure:
                    yield _failed(failure)
                    return
                if parts is _DONE:
                    return
                yield 0, b"".join(parts)  # type: ignore[arg-type]  # parts is list[bytes] past the check
        finally:
            stop.set()


def _add_missing_requirements(folder: Path, name: str) -> None:
    """Put on sys.path what this node's Python still lacks after Ray's pip runtime_env installed
    requirements.txt: requirements-nodeps.txt (pip's --no-deps cannot be given per package in a runtime_env)
    and the runtime's own packages. Installed once per node and user, in the same cache as the local backend's
    (a file lock makes two replicas on one node install once)."""
    from ..definition.requirements import install_missing
    from ..definition.spec import load_config

    runtime = load_config(folder / "config.yaml").function(name).runtime
    with os.fdopen(os.dup(2), "w") as ray_log:  # pip's own output: this worker's log file, as Ray keeps it
        extra = install_missing(folder, runtime, python=sys.executable, output=ray_log, note=print)
    if extra is not None:
        sys.path.insert(0, str(extra))


def _failed(failure: CallFailed) -> Reply:
    return failure.code, failure.encode()

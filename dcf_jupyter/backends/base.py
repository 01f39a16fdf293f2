"""The Backend interface the gateway routes through: create a deployment, start, scale, pick a replica, stop."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol, TypeVar

from ..definition.secret_refs import env_secret_keys
from ..definition.spec import FunctionSpec
from .gpus.allocator import GpuAllocator, Grant, NoGpu

R = TypeVar("R")


class DeployFailed(Exception):
    """A deployment (or a scale-up) could not get its replicas ready."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail  # the Handler's traceback or the worker's last log lines


class NoReplica(Exception):
    """No ready replica to take a call within the wait allowed."""


class WorkerLink(Protocol):
    """How the gateway talks to one replica (see dcf_jupyter.link.AsyncLink)."""

    @property
    def is_open(self) -> bool: ...

    def submit(self, form: int, payload: bytes) -> tuple[int, object]: ...

    # Told the size of each batch its replica runs (a batched function's), once per batch; set by the gateway.
    on_batch: Callable[[int], None] | None

    def cancel(self, call_id: int) -> None: ...

    async def call(self, form: int, payload: bytes) -> bytes: ...

    def stream(self, payload: bytes) -> AsyncIterator[bytes]: ...


class TaskCalls:
    """`submit`/`cancel` for links whose calls are coroutines (gRPC, Ray Serve): each submitted call runs as a
    task of its own, so an `Invokes` stream can pipeline calls and cancel the ones left unanswered."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._calls: dict[int, asyncio.Task[bytes]] = {}
        self.on_batch: Callable[[int], None] | None = None

    async def call(self, form: int, payload: bytes) -> bytes:
        raise NotImplementedError

    def submit(self, form: int, payload: bytes) -> tuple[int, asyncio.Task[bytes]]:
        """Start a call now; its id and the task of its reply."""
        call_id = next(self._ids)
        task = asyncio.ensure_future(self.call(form, payload))
        self._calls[call_id] = task
        task.add_done_callback(lambda _: self._calls.pop(call_id, None))
        return call_id, task

    def cancel(self, call_id: int) -> None:
        """Cancel a submitted call (the cancellation reaches the replica)."""
        task = self._calls.pop(call_id, None)
        if task is not None:
            task.cancel()


@dataclass
class DeploymentSpec:
    """What a backend needs to run one revision of a function: the function as its config.yaml says (with the
    deploy's environment), and where this revision lives."""

    function: FunctionSpec
    revision: int
    source_dir: Path  # the unpacked function folder (config.yaml inside)
    log_path: Path
    image: str = ""
    replicas: int = 1
    # The values of the secrets the function names (secret -> key -> value), read from the gateway's store when
    # this revision starts; repr=False keeps them out of any log line that prints a spec.
    secrets: dict[str, dict[str, bytes]] = field(default_factory=dict, repr=False)
    mesh: MeshAccess | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The function's name."""
        return self.function.name

    def secret_environment(self) -> dict[str, str]:
        """The environment variables of the secrets the function asks for as variables (KEY=value; a key that
        cannot be one stays a file only)."""
        env: dict[str, str] = {}
        for name in self.function.env_secrets:
            env.update(env_secret_keys(self.secrets.get(name, {})))
        return env


@dataclass(frozen=True)
class MeshAccess:
    """How a replica reaches the gateway that runs it, to call other functions (`dcf_jupyter.mesh`): an address
    and the gateway's invoke-only replica credential."""

    address: str
    token: str = field(repr=False)


class Deployment(abc.ABC):
    """One revision of one function on a backend: its replicas and how to reach them.

    Subclasses keep their replicas and call `_replicas_changed()` whenever one becomes
    ready or goes away; picking a ready replica (the least busy, waiting if none) is shared.
    """

    def __init__(self, spec: DeploymentSpec) -> None:
        self.spec = spec
        self.last_error = ""
        self._ready: list[WorkerLink] = []
        self._next = 0
        self._changed = asyncio.Event()
        # Load, as an autoscaler reads it: calls (and open streams) each replica holds, and callers waiting for
        # one. Counted on the event loop, so a replica chosen for removal while idle has no call on its way.
        self._holds: dict[int, int] = {}
        self._held_calls = 0  # the sum of _holds, kept as it changes (read on every call's path)
        self.waiting = 0
        self.load_changed = asyncio.Event()
        # Whether a load (ongoing) matters to whoever waits on load_changed (an autoscaler: when it would change the
        # replicas it wants); None: every change is set. Asked on every call's hold and let_go, instead of waking
        # the waiter for each.
        self.load_matters: Callable[[int], bool] | None = None
        self.wakes_on_call = False  # at 0 replicas a call waits for one to start (an autoscaler starts it)
        self.restarts = 0  # replicas that died or were stuck and were started again

    @abc.abstractmethod
    def _ready_links(self) -> list[WorkerLink]:
        """Links of the replicas ready to take calls now."""

    def _replicas_changed(self) -> None:
        self._ready = self._ready_links()
        self._changed.set()

    async def pick(self, timeout: float) -> WorkerLink:
        """A ready replica's link (the least busy), waiting up to `timeout` seconds; NoReplica otherwise. The link
        is held for the caller until it calls `let_go(link)`."""
        link = self._least_held()
        if link is not None:  # the common case, kept short: it is every call's path
            self.hold(link)
            return link
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.add_waiting(1)
        try:
            while True:
                link = self._least_held()
                if link is not None:
                    self.hold(link)
                    return link
                if self.replicas == 0 and not self.wakes_on_call:
                    raise NoReplica(f"{self.spec.name} is scaled to 0 replicas")
                remaining = deadline - loop.time()
                if remaining <= 0:
                    detail = f" (last error: {self.last_error})" if self.last_error else ""
                    raise NoReplica(f"no replica of {self.spec.name} became ready within {timeout:g}s{detail}")
                self._changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)
        finally:
            self.add_waiting(-1)

    def _least_held(self) -> WorkerLink | None:
        """The open ready link holding the fewest calls, the next in turn among equals (so calls one at a time go
        round-robin, and a replica that just started takes the next calls of a busy function)."""
        ready = self._ready
        count = len(ready)
        best: WorkerLink | None = None
        fewest = chosen = 0
        for step in range(1, count + 1):
            link = ready[(self._next + step) % count]
            held = self._holds.get(id(link), 0)
            if link.is_open and (best is None or held < fewest):
                best, fewest, chosen = link, held, (self._next + step) % count
                if not held:
                    break
        if best is not None:
            self._next = chosen
        return best

    def add_waiting(self, count: int) -> None:
        """Count `count` more (fewer, when negative) callers waiting for a replica: a pick waiting, a map's items
        not yet called."""
        self.waiting += count
        self._load_moved()

    @property
    def queues_at_replicas(self) -> bool:
        """Whether a call picked now waits at the replica it was given (a Serve handle holds it until any replica
        is free instead)."""
        return True

    def has_room(self, per_replica: int) -> bool:
        """Whether its ready replicas hold fewer than `per_replica` calls each, on average."""
        return self._held_calls < self.ready_replicas * per_replica

    def hold(self, link: WorkerLink) -> None:
        """Count a call (or an open stream) on `link` until `let_go(link)`."""
        self._holds[id(link)] = self._holds.get(id(link), 0) + 1
        self._held_calls += 1
        self._load_moved()

    def let_go(self, link: WorkerLink) -> None:
        """A call (or stream) that `pick` or `hold` counted on `link` has ended."""
        held = self._holds.get(id(link), 0)
        if not held:
            return
        if held > 1:
            self._holds[id(link)] = held - 1
        else:
            del self._holds[id(link)]
        self._held_calls -= 1
        self._load_moved()

    def _load_moved(self) -> None:
        matters = self.load_matters
        if matters is None or matters(self._held_calls + self.waiting):
            self.load_changed.set()

    def holds(self, link: WorkerLink | None) -> int:
        """Calls and streams in flight on `link`."""
        return 0 if link is None else self._holds.get(id(link), 0)

    @property
    def ongoing(self) -> int:
        """Calls and streams in flight on all replicas, plus callers waiting for one."""
        return self._held_calls + self.waiting

    @property
    def queued(self) -> int:
        """Calls beyond those its ready replicas take in at once (a batch per Handler slot each): its queue."""
        return max(0, self.ongoing - self.ready_replicas * self.spec.function.calls_at_once)

    def refuses_more(self) -> bool:
        """Whether its queue is full (config.yaml's max_queued_requests; -1: never). With no replica ready, the
        one being started (a cold start, a restart) counts: the calls it will take in are not a queue, so even
        a function with no queue (0) at zero replicas takes the call that wakes it."""
        limit = self.spec.function.max_queued_requests
        # Not `queued` (floored at 0): with room in a replica the difference is negative and the call is taken.
        room = max(self.ready_replicas, 1) * self.spec.function.calls_at_once
        return limit >= 0 and self.ongoing - room >= limit

    @staticmethod
    def _free_indices(taken: Collection[int], count: int) -> list[int]:
        """The `count` smallest replica indices not in `taken` (a scale-down may leave gaps; an index names a
        replica's GPUs, container and log lines, so two replicas never share one)."""
        free: list[int] = []
        index = 0
        while len(free) < count:
            if index not in taken:
                free.append(index)
            index += 1
        return free

    def _take_out(self, replicas: list[R], count: int, link_of: Callable[[R], WorkerLink | None]) -> list[R]:
        """Take `count` replicas out of `replicas` for a scale-down, idle ones first (no call is cut short where
        that can be helped), the newest first among equals, and off the ready list, so that no new call reaches
        them; the caller stops them."""
        gone = sorted(reversed(replicas), key=lambda replica: self.holds(link_of(replica)) > 0)[:max(count, 0)]
        for replica in gone:
            replicas.remove(replica)
        if gone:
            self._replicas_changed()
        return gone

    @abc.abstractmethod
    def recycle(self, link: WorkerLink) -> str:
        """Replace the replica behind `link` (its worker is stuck in a call past the function's timeout); returns
        what was done, for the caller's error message."""

    allocates_gpus: ClassVar[bool] = False  # its replicas get GPUs from the gateway's allocator (not a cluster's)

    def gpu_grants(self) -> list[Grant]:
        """The GPUs its replicas hold on this machine (none where a cluster engine places them)."""
        return []

    def _book_gpus(self, allocator: GpuAllocator, index: int) -> Grant | None:
        """The GPUs `allocator` grants replica `index` (None: it asks for none); DeployFailed with the allocator's
        sentence when they are taken."""
        try:
            return allocator.grant(self.spec.name, self.spec.revision, index, self.spec.function.limits.gpu)
        except NoGpu as exc:
            raise DeployFailed(str(exc)) from None

    async def logs(self, lines: int) -> str | None:
        """The replicas' recent output, when the backend keeps it itself (None: read spec.log_path)."""
        return None

    @abc.abstractmethod
    async def start(self) -> None:
        """Start `spec.replicas` replicas and return once all are ready; DeployFailed if one cannot start."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop every replica."""

    async def resume(self) -> None:
        """Start again after a gateway restart (its registry says it deployed this revision): a cluster engine's
        replicas that kept serving are re-attached to, not replaced."""
        await self.start()

    async def release(self) -> None:
        """The gateway is stopping: stop the replicas it runs itself (a cluster engine's keep serving)."""
        await self.stop()

    @abc.abstractmethod
    async def scale(self, replicas: int) -> None:
        """Run `replicas` replicas (new ones ready before this returns); DeployFailed if one cannot start."""

    @property
    @abc.abstractmethod
    def replicas(self) -> int:
        """Replicas asked for (by the user, or by an autoscaler)."""

    @property
    @abc.abstractmethod
    def ready_replicas(self) -> int:
        """Replicas ready to take calls now."""


@dataclass
class OtherFunction:
    """A function on a shared backend (a cluster) that another gateway deployed: listed, never touched."""

    name: str
    replicas: int
    ready_replicas: int
    message: str = ""  # why replicas do not run, in the backend's words


class Backend(abc.ABC):
    """A place functions run: local processes, Docker containers, a cluster."""

    name: str = ""
    autoscales = False  # runs `autoscaling:` functions (else a fixed number of replicas)
    # Replicas run elsewhere (a cluster's nodes): they reach the gateway over TCP with their function's credential
    # and fetch their secrets themselves, instead of getting files from the gateway's machine.
    replicas_on_cluster = False

    @abc.abstractmethod
    def create(self, spec: DeploymentSpec) -> Deployment:
        """A not-yet-started deployment of `spec`."""

    async def others(self, mine: Collection[str]) -> list[OtherFunction]:
        """Functions other gateways run on this backend (names in `mine` are this gateway's): none here, as
        only a shared cluster has them."""
        return []

    def runs_others(self, name: str) -> bool:
        """Whether, as last seen, another gateway's function of this name runs on this backend."""
        return False

    async def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release what the backend holds (deployments are stopped by the gateway first)."""

"""GPUs for the replicas of the local and docker backends: distinct whole devices per replica, shares of one
packed up to 1.0, released when the replica stops.

Every gateway books its grants in a lease file of its own (gpu_leases.py), under a lock, and reads the others':
every user's gateways in one folder of the machine where it has one (two users' gateways never hand out one
device), else the user's own gateways in theirs (two notebooks' embedded gateways, or a notebook and a shared
gateway, never do). Processes no gateway booked show in status, from the driver.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ...definition.spec import GpuRequest
from ...host.ports import describe_user
from ...settings import ENV_GPU_SHARE
from .inventory import Gpu, GpuProcess, Inventory, processes
from .leases import LeaseBook, LeaseLockTimeout

FULL = 1.0
EPSILON = 1e-6  # shares are sums of decimals like 0.1: compare with room for rounding


class NoGpu(Exception):
    """A replica's GPU request does not fit; the message is the sentence for the user."""


@dataclass(frozen=True)
class Grant:
    """The devices one replica holds, and its share of each (1.0: whole)."""

    function: str
    revision: int
    replica: int
    devices: tuple[int, ...]
    share: float
    gateway: str = ""  # who booked it: "this gateway", a notebook, another gateway's address
    gateway_pid: int = 0
    pid: int = 0  # the replica's process, for its memory use (0: not started yet)
    uid: int = -1  # the user whose gateway booked it (-1: this one's, written before uids were kept)
    owner: str = ""  # that user's name, for another user's grant

    @property
    def another_users(self) -> bool:
        """Booked by another user's gateway."""
        return self.uid not in (-1, os.geteuid())

    @property
    def cuda_visible_devices(self) -> str:
        """CUDA_VISIBLE_DEVICES for the replica (indices in PCI bus order)."""
        return ",".join(str(i) for i in self.devices)

    def holder(self) -> str:
        """'echo replica 1 (0.5)' for sentences."""
        share = "" if self.share >= FULL - EPSILON else f" ({self.share:g})"
        return f"{self.function} replica {self.replica}{share}"


class GpuAllocator:
    """Hands out this gateway's inventory to replicas; thread-safe (docker starts replicas from threads)."""

    def __init__(self, inventory: Inventory, leases: LeaseBook | Path | None, label: str = "") -> None:
        self.inventory = inventory
        self.book = leases if isinstance(leases, LeaseBook) else LeaseBook(leases)  # a Path: the user's own
        self.label = label or f"gateway pid {os.getpid()}"
        self._mine: list[Grant] = []
        self._lock = threading.Lock()

    @property
    def devices(self) -> tuple[Gpu, ...]:
        """The devices this gateway hands out."""
        return self.inventory.devices

    # --- granting -------------------------------------------------------------------------------

    def grant(self, function: str, revision: int, replica: int, request: GpuRequest) -> Grant | None:
        """Book devices for one replica; None when it asks for none. NoGpu with a sentence naming what it asked
        and who holds each device when it does not fit."""
        if not request:
            return None
        try:
            with self._lock, self._leases() as others:
                held = self._held(others, function, revision)
                chosen = self._choose(request, held)
                if chosen is None:
                    raise NoGpu(self._refusal(function, replica, request, held))
                grant = Grant(function, revision, replica, chosen, request.share, self.label, os.getpid(),
                              uid=os.geteuid())
                self._mine.append(grant)
                self._save()
                return grant
        except LeaseLockTimeout as exc:
            raise NoGpu(f"{function} replica {replica} could not book its GPUs: {exc}") from None

    def started(self, grant: Grant, pid: int) -> Grant:
        """Record the process that holds `grant` (for its memory use); the grant as now booked."""
        with self._lock:
            updated = dataclasses.replace(grant, pid=pid)
            self._mine = [updated if g == grant else g for g in self._mine]
            self._save()
            return updated

    def release(self, grant: Grant | None) -> None:
        """Give a replica's devices back (it stopped)."""
        if grant is not None:
            self.release_all([grant])

    def release_all(self, grants: list[Grant]) -> None:
        """Give several replicas' devices back at once (they stopped)."""
        with self._lock:
            self._mine = [g for g in self._mine if not any(_same_holder(g, grant) for grant in grants)]
            self._save()

    def grants(self) -> list[Grant]:
        """Every booking on this gateway's devices: this gateway's and the user's other gateways'."""
        try:
            with self._lock, self._leases() as others:
                mine = list(self._mine)
        except LeaseLockTimeout:  # another gateway is stuck holding the lock: what this one holds is still known
            with self._lock:
                return list(self._mine)
        indices = {d.index for d in self.devices}
        return mine + [g for g in others if set(g.devices) & indices]

    def _held(self, others: list[Grant], function: str, revision: int) -> dict[int, list[Grant]]:
        """Bookings per device. The same function's other revisions do not count: during an update the new
        revision starts on the devices the old one serves from, and the old one retires once it is ready."""
        held: dict[int, list[Grant]] = {d.index: [] for d in self.devices}
        for grant in [*self._mine, *others]:
            if grant.function == function and grant.revision != revision and grant.gateway_pid == os.getpid():
                continue
            for index in grant.devices:
                if index in held:
                    held[index].append(grant)
        return held

    def _choose(self, request: GpuRequest, held: dict[int, list[Grant]]) -> tuple[int, ...] | None:
        kind = request.kind.lower()
        fits = [d for d in self.devices if not kind or kind in d.name.lower()]
        used = {index: sum(g.share for g in grants) for index, grants in held.items()}
        if request.is_whole:
            free = [d.index for d in fits if used[d.index] < EPSILON]
            return tuple(free[: request.devices]) if len(free) >= request.devices else None
        # A share goes where it fits most tightly: shares pack onto few devices and leave whole ones free.
        room = [d for d in fits if used[d.index] + request.share <= FULL + EPSILON]
        if not room:
            return None
        best = max(room, key=lambda d: (used[d.index], -d.index))
        return (best.index,)

    def _refusal(self, function: str, replica: int, request: GpuRequest, held: dict[int, list[Grant]]) -> str:
        kind = f"{request.kind} " if request.kind else ""
        if request.is_whole:
            asked = f"{request.devices} whole {kind}GPU{'s' if request.devices != 1 else ''}"
        else:
            asked = f"{request.share:g} of a {kind}GPU"
        if not self.devices:
            return f"{function} replica {replica} asks for {asked}, and this gateway has no GPU to give"
        if request.kind and not any(request.kind.lower() in d.name.lower() for d in self.devices):
            names = ", ".join(sorted({d.name for d in self.devices}))
            return f"{function} replica {replica} asks for {asked}, and this gateway has none of that kind ({names})"
        taken = []
        for device in self.devices:
            grants = held[device.index]
            if grants:
                whose = ", ".join(_holder_said(g) for g in grants)
                taken.append(f"GPU {device.index} held by {whose}")
            else:
                taken.append(f"GPU {device.index} free")
        return f"{function} replica {replica} asks for {asked}, which does not fit: {'; '.join(taken)}"

    # --- the lease files ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _leases(self) -> Iterator[list[Grant]]:
        """The other live gateways' grants, read under the book's lock (held until the block ends)."""
        with self.book.locked() as leases:
            grants = []
            for lease in leases:
                for raw in lease.grants:
                    with contextlib.suppress(TypeError, ValueError, KeyError):
                        # Whose it is, from the file's owner: never from what the file says.
                        grants.append(Grant(**{**raw, "devices": tuple(raw["devices"]), "gateway": lease.label,
                                               "uid": lease.uid, "owner": "" if lease.mine else lease.owner}))
            yield grants

    def _save(self) -> None:
        self.book.save(self.label, [{k: v for k, v in asdict(g).items() if k != "owner"} for g in self._mine])

    def close(self) -> None:
        """Drop every grant (the gateway stops)."""
        with self._lock:
            self._mine = []
            self._save()


def _same_holder(a: Grant, b: Grant) -> bool:
    return (a.function, a.revision, a.replica, a.devices) == (b.function, b.revision, b.replica, b.devices)


def _whose(grant: Grant) -> str:
    return "" if grant.gateway_pid == os.getpid() else f" [{grant.gateway}]"


def _holder_said(grant: Grant) -> str:
    """Who holds a grant, for a refusal: 'echo replica 1 (0.5)', with its gateway when it is another of this
    user's, or "alice's function detect (0.5)" when another user's gateway booked it."""
    if grant.another_users:
        share = "" if grant.share >= FULL - EPSILON else f" ({grant.share:g})"
        return f"{grant.owner or f'uid {grant.uid}'}'s function {grant.function}{share}"
    return f"{grant.holder()}{_whose(grant)}"


def gpu_environment(grant: Grant | None, *, in_container: bool = False) -> dict[str, str]:
    """A replica's environment for its grant. Without one, no GPU is visible (as in a container without a device
    request). A share of a device keeps frameworks inside it where they allow it: TensorFlow grows its memory
    instead of taking the device's, JAX preallocates only its share, and the worker caps PyTorch's caching
    allocator at the share (`DCF_GPU_SHARE`, see worker/gpu_share.py). Compute time is not divided: shares of one
    device run their kernels side by side."""
    if grant is None:
        return {"CUDA_VISIBLE_DEVICES": ""} if not in_container else {}
    env: dict[str, str] = {}
    if not in_container:  # in a container the runtime shows only its devices, numbered from 0
        env.update(CUDA_DEVICE_ORDER="PCI_BUS_ID", CUDA_VISIBLE_DEVICES=grant.cuda_visible_devices)
    if grant.share < FULL - EPSILON:
        env.update({ENV_GPU_SHARE: f"{grant.share:g}", "TF_FORCE_GPU_ALLOW_GROWTH": "true",
                    "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{grant.share:g}"})
    return env


def memory_by_holder(allocator: GpuAllocator, grants: list[Grant]) -> dict[int, int]:
    """Bytes each grant's process (or a child of it) uses on its devices, by that process's pid (blocking)."""
    if not grants:
        return {}
    pids = {g.pid for g in grants if g.pid}
    used: dict[int, int] = {}
    for device_processes in processes(allocator.devices).values():
        for holder, memory in _attributed(device_processes, pids)[0].items():
            used[holder] = used.get(holder, 0) + memory
    return used


def _attributed(device_processes: list[GpuProcess], pids: set[int]) -> tuple[dict[int, int], list[GpuProcess]]:
    """One device's processes: bytes used by each of `pids` (with its children), and the processes of no one
    of them."""
    by_holder: dict[int, int] = {}
    others = []
    for process in device_processes:
        holder = _ancestor_in(process.pid, pids)
        if holder:
            by_holder[holder] = by_holder.get(holder, 0) + process.memory_used
        else:
            others.append(process)
    return by_holder, others


def status(allocator: GpuAllocator) -> list[dict[str, Any]]:
    """Each device: name, memory, the replicas that hold it (function, replica, share, whose, memory used) and
    other processes on it that no gateway of this user booked (blocking: asks the driver)."""
    grants = allocator.grants()
    on = processes(allocator.devices)
    pids = {g.pid for g in grants if g.pid}
    report = []
    for device in allocator.devices:
        device_processes = on.get(device.index, [])
        by_holder, strangers = _attributed(device_processes, pids)
        others = [{"pid": p.pid, "memory_used": p.memory_used, "user": _user_of(p.pid)} for p in strangers]
        mine = [g for g in grants if device.index in g.devices]
        # Another user's grant shows as theirs, with its share, and nothing of what it runs.
        holders: list[dict[str, Any]] = [
            {"another_user": True, "function": "", "replica": 0, "revision": 0, "share": g.share, "gateway": "",
             "pid": 0, "memory_used": by_holder.get(g.pid, 0)} if g.another_users else
            {"function": g.function, "replica": g.replica, "revision": g.revision, "share": g.share,
             "gateway": "" if g.gateway_pid == os.getpid() else g.gateway, "pid": g.pid,
             "memory_used": by_holder.get(g.pid, 0)} for g in mine]
        report.append({"index": device.index, "name": device.name, "uuid": device.uuid,
                       "memory_total": device.memory_total,
                       "memory_used": sum(p.memory_used for p in device_processes),
                       "share_held": round(sum(g.share for g in mine), 4), "holders": holders,
                       "others": others})
    return report


def _ancestor_in(pid: int, wanted: set[int], depth: int = 8) -> int:
    """`pid` or the nearest of its ancestors in `wanted` (a handler may run its GPU work in a child), else 0."""
    for _ in range(depth):
        if pid in wanted:
            return pid
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return 0
        if pid <= 1:
            return 0
    return 0


def _user_of(pid: int) -> str:
    try:
        return describe_user(os.stat(f"/proc/{pid}").st_uid)
    except OSError:
        return ""

"""Functions that run on a schedule (config.yaml's `schedule:`): each run is a spawned call of the function with
`schedule_input`, kept like any other (spawned.py), so it wakes a function at zero replicas and is a line in its
log. A schedule counts from when its function was deployed (or the gateway started): runs missed while no gateway
ran are not made up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ..definition.cron import next_run
from ..host.logfile import note
from ..protocol import gateway_pb2 as pb
from .core import GatewayCore
from .rpc import Abort
from .spawned import CallKeeper

log = logging.getLogger("dcf.gateway")

LOOK_S = 1.0  # how often the deployed functions are looked at for a schedule added, changed or gone


class Scheduler:
    """Runs the gateway's scheduled functions when their time comes."""

    def __init__(self, core: GatewayCore, keeper: CallKeeper) -> None:
        self.core = core
        self.keeper = keeper
        self._next: dict[str, tuple[str, float]] = {}  # function -> (its schedule, its next run)
        self._runs: set[asyncio.Task[None]] = set()

    def next_run(self, name: str) -> float:
        """When `name` runs next (Unix seconds; 0: it has no schedule)."""
        deployment = self.core.deployments.get(name)
        if name not in self._next and deployment is not None and deployment.spec.function.schedule:
            self.look(time.time())  # deployed since the last look
        entry = self._next.get(name)
        return entry[1] if entry is not None else 0.0

    def look(self, now: float) -> None:
        """Follow the deployed functions' schedules, and start the runs that are due."""
        wanted = {name: deployment.spec.function.schedule for name, deployment in self.core.deployments.items()
                  if deployment.spec.function.schedule}
        for name in set(self._next) - set(wanted):
            del self._next[name]
        for name, schedule in wanted.items():
            entry = self._next.get(name)
            if entry is not None and entry[0] == schedule and entry[1] <= now:
                self._start(name, schedule)
            if entry is None or entry[0] != schedule or entry[1] <= now:
                self._next[name] = (schedule, next_run(schedule, now))

    def _start(self, name: str, schedule: str) -> None:
        run = asyncio.get_running_loop().create_task(self._run(name, schedule))
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)

    async def _run(self, name: str, schedule: str) -> None:
        deployment = self.core.deployments.get(name)
        if deployment is None:
            return
        data = deployment.spec.function.schedule_input.encode("utf-8")
        request = pb.MapRequest(Service=name, Items=[pb.MapItem(Input=data)], Single=True)
        try:
            await self.keeper.spawn(request, why=f"scheduled run ({schedule})")
        except Abort as exc:
            note(self.core.log_path(name), f"scheduled run ({schedule}) not started: {exc.message}")

    async def run(self) -> None:
        """Look at the schedules until cancelled, sleeping until the next run (or LOOK_S)."""
        while True:
            now = time.time()
            try:
                self.look(now)
            except Exception:
                log.exception("scheduling")
            due = min((when for _, when in self._next.values()), default=now + LOOK_S)
            await asyncio.sleep(max(0.0, min(due - time.time(), LOOK_S)))

    async def close(self) -> None:
        """Stop starting runs (those started are spawned calls: the call keeper runs them on)."""
        for run in list(self._runs):
            run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._runs, return_exceptions=True)

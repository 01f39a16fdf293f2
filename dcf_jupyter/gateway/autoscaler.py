"""The gateway's own autoscaler, for the backends that run replicas themselves (local processes, Docker).

It reads the load the invoker counts on each deployment (calls and streams in flight, callers waiting) and
follows config.yaml's `autoscaling:` with Ray Serve's meaning of its keys: replicas are added when load stays
above `target_ongoing_requests` per replica for `upscale_delay_s`, removed when it stays below for
`downscale_delay_s` (down to none with `min_replicas: 0`). A call that finds no replica at all does not wait
for a delay: it starts one at once (a cold start), and the calls arriving meanwhile wait for that same one.
The loop sleeps until load changes or a delay ends, so an idle function costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..backends.base import DeployFailed, Deployment
from ..definition.spec import Autoscaling

log = logging.getLogger("dcf.gateway")

FAILED_SCALE_RETRY_S = 5.0  # after a scale the backend refused (no GPU free, a start that failed)


@dataclass
class ColdStarts:
    """The replica starts that calls waited for: how many, the last one's length and end (Unix seconds)."""

    count: int = 0
    last_seconds: float = 0.0
    last_at: float = 0.0


def wanted(policy: Autoscaling, ongoing: int) -> int:
    """Replicas for `ongoing` calls in flight: about `target_ongoing_requests` each, within the bounds, and
    never none while a call is there."""
    replicas = policy.clamp(math.ceil(ongoing / policy.target))
    return max(replicas, 1) if ongoing else replicas


class Autoscaler:
    """Scales one deployment (one revision of a function) by its load; closed before the deployment stops."""

    def __init__(self, deployment: Deployment, policy: Autoscaling, *, cold_starts: ColdStarts | None = None,
                 on_change: Callable[[], None] = lambda: None, note: Callable[[str], None] = lambda _: None) -> None:
        self.deployment = deployment
        self.policy = policy
        self.cold_starts = cold_starts or ColdStarts()
        self._on_change = on_change  # the replica count or the cold starts changed: remember them
        self._note = note  # a line for the function's log
        self._lock = asyncio.Lock()  # one scale at a time
        self._waking: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._seen = (-1, -1)  # (replicas, replicas wanted) the loop last acted on: other loads need no wake
        deployment.wakes_on_call = policy.min_replicas == 0
        deployment.load_matters = self._matters

    def _matters(self, ongoing: int) -> bool:
        """Whether the load `ongoing` would change what the loop decides: the replicas it wants, or a count
        changed since (a scale by hand, a replica lost)."""
        return (self.deployment.replicas, wanted(self.policy, ongoing)) != self._seen

    @property
    def name(self) -> str:
        """The function's name."""
        return self.deployment.spec.name

    def start(self) -> None:
        """Begin following the deployment's load."""
        self._task = asyncio.create_task(self._run(), name=f"dcf-autoscale-{self.name}")

    async def close(self) -> None:
        """Stop scaling; a scale under way finishes first, so no replica starts after this returns."""
        self._closed = True
        self.deployment.load_changed.set()
        for task in (self._task, self._waking):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, DeployFailed):
                    await asyncio.gather(task)
        async with self._lock:
            pass

    def wake(self) -> asyncio.Future[None]:
        """Done once a replica runs or is starting: at 0 replicas, starts one (one for all the calls that wait
        meanwhile); DeployFailed in it when that replica cannot start."""
        if self.deployment.replicas > 0 or self._closed:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        if self._waking is None or self._waking.done():
            self._waking = asyncio.create_task(self._cold_start(), name=f"dcf-cold-start-{self.name}")
        return self._waking

    async def _cold_start(self) -> None:
        started = time.monotonic()
        async with self._lock:
            if self.deployment.replicas > 0 or self._closed:
                return
            replicas = max(1, self.policy.min_replicas)
            try:
                await self.deployment.scale(replicas)
            except DeployFailed as failure:
                self.deployment.last_error = failure.message
                self._note(f"a call arrived at 0 replicas, and starting one failed: {failure.message}")
                raise
        took = time.monotonic() - started
        self.cold_starts = ColdStarts(self.cold_starts.count + 1, took, time.time())
        self._note(f"a call arrived at 0 replicas: started {replicas} in {took:.2f}s (cold start)")
        log.info("%s: cold start in %.2fs", self.name, took)
        self._on_change()

    async def _scale(self, replicas: int, why: str) -> bool:
        """Scale to `replicas` (True), or say why it failed in the function's log (False)."""
        async with self._lock:
            current = self.deployment.replicas
            if self._closed or current == replicas:
                return True
            try:
                await self.deployment.scale(replicas)
            except DeployFailed as failure:
                self.deployment.last_error = failure.message
                self._note(f"{why}: scaling from {current} to {replicas} replicas failed: {failure.message}")
                return False
        self._note(f"{why}: scaled from {current} to {replicas} replica{'s' if replicas != 1 else ''}")
        log.info("%s: %s: %d -> %d replica(s)", self.name, why, current, replicas)
        self._on_change()
        return True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        policy, deployment = self.policy, self.deployment
        up_since: float | None = None  # since when load has wanted more replicas than run
        down_since: float | None = None  # ... fewer
        while not self._closed:
            now = loop.time()
            current, ongoing = deployment.replicas, deployment.ongoing
            desired = wanted(policy, ongoing)
            self._seen = (current, desired)
            sleep: float | None = None  # None: until load changes
            # At 0 replicas a waiting call starts one itself (wake); past that, load adds replicas after a delay.
            if desired > current > 0:
                up_since = now if up_since is None else up_since
                if now - up_since >= policy.upscale_delay:
                    up_since = None
                    if not await self._scale(desired, f"{ongoing} calls in flight (target {policy.target:g} per "
                                                      "replica)"):
                        await asyncio.sleep(FAILED_SCALE_RETRY_S)
                    continue
                sleep = up_since + policy.upscale_delay - now
            else:
                up_since = None
            if desired < current:
                down_since = now if down_since is None else down_since
                if now - down_since >= policy.downscale_delay:
                    down_since = None
                    why = (f"no call for {policy.downscale_delay:g}s" if not ongoing else
                           f"{ongoing} calls in flight (target {policy.target:g} per replica)")
                    await self._scale(desired, why)
                    continue
                left = down_since + policy.downscale_delay - now
                sleep = left if sleep is None else min(sleep, left)
            else:
                down_since = None
            deployment.load_changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(deployment.load_changed.wait(), sleep)

"""The bookkeeping on every call's path, kept cheap (#46), against what it replaced: the call metrics as plain
numbers expose what prometheus_client's own Counter, Gauge and Histogram would; the deployment's running count
of held calls; the one-timer reply timeout; an autoscaler woken only by loads that change what it wants."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dcf_jupyter.backends.base import Deployment, DeploymentSpec
from dcf_jupyter.definition.spec import Autoscaling, parse_config
from dcf_jupyter.gateway.autoscaler import Autoscaler
from dcf_jupyter.gateway.metrics import CALL_BUCKETS, GatewayMetrics
from dcf_jupyter.gateway.rpc import expiring

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: bytes, names: set[str]) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples
            if s.name in names}


def test_the_call_metrics_expose_what_prometheus_clients_own_types_would() -> None:
    metrics = GatewayMetrics()
    registry = CollectorRegistry()
    calls = Counter("dcf_calls", "", ["function", "backend", "status"], registry=registry)
    latency = Histogram("dcf_call_duration_seconds", "", ["function"], buckets=CALL_BUCKETS, registry=registry)
    flight = Gauge("dcf_calls_in_flight", "", ["function"], registry=registry)
    frames = Counter("dcf_stream_frames", "", ["function"], registry=registry)
    rng = random.Random(7)
    # Bounds themselves (a value on a bound belongs to its bucket), values between and past them, zero.
    durations = [*CALL_BUCKETS, 0.0, 1e-7, 301.0, *(rng.uniform(0, 400) for _ in range(300))]
    open_calls: list[str] = []
    for seconds in durations:
        function = rng.choice(["a", "b", "c"])
        status = rng.choice(["OK", "OK", "INTERNAL", "DEADLINE_EXCEEDED"])
        metrics.call_started(function)
        flight.labels(function).inc()
        if rng.random() < 0.2:
            open_calls.append(function)  # still in flight when scraped
            continue
        metrics.call_done(function, "local", status, seconds)
        flight.labels(function).dec()
        calls.labels(function, "local", status).inc()
        latency.labels(function).observe(seconds)
        if rng.random() < 0.3:
            metrics.frame(function)
            frames.labels(function).inc()
    metrics.call_done("", "", "NOT_FOUND", 0.0, started=False)  # a call routed nowhere: never in flight
    calls.labels("", "", "NOT_FOUND").inc()
    latency.labels("").observe(0.0)
    names = {"dcf_calls_total", "dcf_call_duration_seconds_bucket", "dcf_call_duration_seconds_count",
             "dcf_call_duration_seconds_sum", "dcf_calls_in_flight", "dcf_stream_frames_total"}
    ours, theirs = samples(metrics.exposition()[0], names), samples(generate_latest(registry), names)
    assert ours.keys() == theirs.keys() and len(ours) > 50
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=1e-9), key
    assert sum(v for (name, _), v in ours.items() if name == "dcf_calls_in_flight") == len(open_calls)


def test_no_metrics_counts_nothing() -> None:
    metrics = GatewayMetrics(enabled=False)
    metrics.call_started("a")
    metrics.call_done("a", "local", "OK", 0.1)
    metrics.frame("a")
    assert not samples(metrics.exposition()[0], {"dcf_calls_total", "dcf_stream_frames_total"})


class Replicas(Deployment):
    """A deployment whose replicas are plain objects: what the gateway's counting sees of a backend."""

    def __init__(self, spec: DeploymentSpec, count: int) -> None:
        super().__init__(spec)
        self.links = [_Link() for _ in range(count)]
        self._replicas_changed()

    def _ready_links(self) -> list:  # type: ignore[override]
        return list(self.links)

    def recycle(self, link: object) -> str:  # type: ignore[override]
        return ""

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def scale(self, replicas: int) -> None:
        self.links = [_Link() for _ in range(replicas)]
        self._replicas_changed()

    @property
    def replicas(self) -> int:
        return len(self.links)

    @property
    def ready_replicas(self) -> int:
        return len(self.links)


class _Link:
    is_open = True
    on_batch = None


def spec(tmp_path: Path) -> DeploymentSpec:
    config = parse_config("functions:\n  f:\n    handler: {dir: ./src}\n", root=tmp_path)
    return DeploymentSpec(config.functions["f"], 1, tmp_path, tmp_path / "log")


def test_the_count_of_held_calls_follows_holds_and_let_gos(tmp_path: Path) -> None:
    async def run() -> None:
        deployment = Replicas(spec(tmp_path), 3)
        rng = random.Random(3)
        held: list[object] = []
        for _ in range(2000):
            if held and rng.random() < 0.5:
                deployment.let_go(held.pop(rng.randrange(len(held))))
            elif rng.random() < 0.1:
                deployment.let_go(rng.choice(deployment.links))  # one never held, or held and let go already
                held = [link for link in held if deployment.holds(link)]  # what the counts now say
            else:
                held.append(await deployment.pick(1.0))
            assert deployment.ongoing == sum(deployment.holds(link) for link in deployment.links)
            assert all(deployment.holds(link) >= 0 for link in deployment.links)

    asyncio.run(run())


def test_a_replys_timeout_is_a_timeout_error_and_its_timer_goes_with_the_reply() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        late: asyncio.Future[bytes] = loop.create_future()
        with pytest.raises(asyncio.TimeoutError):
            await expiring(late, 0.01)
        answered: asyncio.Future[bytes] = loop.create_future()
        loop.call_soon(answered.set_result, b"ok")
        assert await expiring(answered, 0.05) == b"ok"
        await asyncio.sleep(0.1)  # past the timeout: the cancelled timer sets nothing on the answered future
        assert answered.result() == b"ok"
        running = asyncio.ensure_future(asyncio.sleep(10))  # a task (links whose calls are coroutines)
        with pytest.raises(asyncio.TimeoutError):
            await expiring(running, 0.01)
        assert running.cancelled()
        waiting: asyncio.Future[bytes] = loop.create_future()
        caller = asyncio.ensure_future(expiring(waiting, 10))
        await asyncio.sleep(0)
        caller.cancel()  # the caller went away: its reply is not waited for
        with contextlib.suppress(asyncio.CancelledError):
            await caller
        assert caller.cancelled() and waiting.cancelled()

    asyncio.run(run())


def test_the_autoscaler_wakes_only_for_loads_that_change_the_replicas_it_wants(tmp_path: Path) -> None:
    async def settled() -> None:
        for _ in range(5):
            await asyncio.sleep(0)  # the autoscaler's loop looks at the load and waits again

    async def run() -> None:
        deployment = Replicas(spec(tmp_path), 1)
        scaler = Autoscaler(deployment, Autoscaling(min_replicas=1, max_replicas=3, target_ongoing_requests=2,
                                                    upscale_delay_s=60, downscale_delay_s=60))
        scaler.start()
        try:
            await settled()
            woken = []
            links = []
            for _ in range(6):  # loads 1..6: it wants 1, 1, 2, 2, 3, 3 replicas
                links.append(await deployment.pick(1.0))
                woken.append(deployment.load_changed.is_set())
                await settled()
            assert woken == [False, False, True, False, True, False]
            for link in links:  # loads 5..0: it wants 3, 2, 2, 1, 1, 1
                deployment.let_go(link)
                woken.append(deployment.load_changed.is_set())
                await settled()
            assert woken[6:] == [False, True, False, True, False, False]
            await deployment.scale(2)  # by hand, or a replica lost: the next change of load says so
            deployment.hold(deployment.links[0])
            assert deployment.load_changed.is_set()
        finally:
            await scaler.close()

    asyncio.run(run())

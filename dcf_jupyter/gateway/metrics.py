"""The gateway's Prometheus metrics (prometheus_client, a registry of the gateway's own), served at the HTTP
face's GET /metrics.

Counted as calls happen: calls by function, backend and gRPC status, gateway-side latency, calls in flight and
stream frames (plain numbers on every call's path, turned into metrics when scraped), batch sizes, refusals,
deploys and their duration. Read from the gateway's state when scraped:
replicas wanted and ready, cold starts, GPU memory per device. Function labels are deployed names only (a call
naming an unknown function counts under function=""), so a caller cannot grow the label set.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ..backends.base import Deployment
from ..backends.gpus.allocator import GpuAllocator
from ..backends.gpus.inventory import processes
from .registry import Registry


class GatewayState(Protocol):
    """What a scrape reads of the gateway's state (core.GatewayCore has it)."""

    registry: Registry
    deployments: dict[str, Deployment]
    gpus: GpuAllocator | None

CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)  # batching.max_batch_size is at most 1024
DEPLOY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class _CallCounts(Collector):
    """Calls by function, backend and status, their latency, calls in flight and stream frames: plain numbers
    counted on the event loop (no lock, no label lookup: this is every call's path) and turned into metrics only
    when scraped (off the loop: it reads copies, made while holding the GIL)."""

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.done: dict[tuple[str, str, str], int] = {}
        self.latency: dict[str, list[float]] = {}  # per function: a count per bucket (+Inf last), then the sum
        self.frames: dict[str, int] = {}

    def observe(self, function: str, seconds: float) -> None:
        counts = self.latency.get(function)
        if counts is None:
            counts = self.latency[function] = [0.0] * (len(CALL_BUCKETS) + 2)
        counts[bisect.bisect_left(CALL_BUCKETS, seconds)] += 1  # Prometheus buckets hold values <= their bound
        counts[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily("dcf_calls", "Calls answered, by function, backend and gRPC status.",
                                    labels=["function", "backend", "status"])
        for key, count in list(self.done.items()):
            calls.add_metric(list(key), count)
        latency = HistogramMetricFamily("dcf_call_duration_seconds", "Seconds from a call's arrival at the gateway "
                                        "to its reply (a stream: to its end).", labels=["function"])
        for function, counts in [(function, list(counts)) for function, counts in list(self.latency.items())]:
            cumulative = list(itertools.accumulate(counts[:-1]))
            latency.add_metric([function], list(zip(_BUCKET_NAMES, cumulative, strict=True)), sum_value=counts[-1])
        in_flight = GaugeMetricFamily("dcf_calls_in_flight", "Calls and streams the gateway is serving now.",
                                      labels=["function"])
        for function, count in list(self.in_flight.items()):
            in_flight.add_metric([function], count)
        frames = CounterMetricFamily("dcf_stream_frames", "Requests sent over bidirectional (Invokes) streams.",
                                     labels=["function"])
        for function, count in list(self.frames.items()):
            frames.add_metric([function], count)
        yield from (calls, latency, in_flight, frames)


_BUCKET_NAMES = [*(floatToGoString(bound) for bound in CALL_BUCKETS), "+Inf"]


class GatewayMetrics:
    """The metrics of one gateway process."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled  # off (--no-metrics): nothing is counted, /metrics answers 404
        self.registry = CollectorRegistry(auto_describe=True)
        self._calls = _CallCounts()
        self.registry.register(self._calls)
        self.batches = Histogram("dcf_batch_size", "Batches a batched function's replicas ran, by how many calls "
                                 "each held.", ["function"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.refusals = Counter("dcf_calls_refused", "Calls refused at once because the function's queue was full "
                                "(its max_queued_requests).", ["function"], registry=self.registry)
        self.deploys = Counter("dcf_deploys", "Deploys and updates, by outcome (ok or failed).", ["outcome"],
                               registry=self.registry)
        self.deploy_seconds = Histogram("dcf_deploy_duration_seconds", "Seconds a deploy or update took.",
                                        buckets=DEPLOY_BUCKETS, registry=self.registry)

    def watch(self, core: GatewayState) -> None:
        """Read replicas, cold starts and GPUs from `core` at every scrape."""
        self.registry.register(_StateCollector(core))

    def call_started(self, function: str) -> None:
        """A call (or stream) began."""
        if self.enabled:
            in_flight = self._calls.in_flight
            in_flight[function] = in_flight.get(function, 0) + 1

    def call_done(self, function: str, backend: str, status: str, seconds: float, *, started: bool = True) -> None:
        """Count one finished call (`started`: it was counted in flight)."""
        if not self.enabled:
            return
        calls = self._calls
        if started:  # .get: a call's end never fails over a count (prometheus_client's dec() would not either)
            calls.in_flight[function] = calls.in_flight.get(function, 0) - 1
        key = (function, backend, status)
        calls.done[key] = calls.done.get(key, 0) + 1
        calls.observe(function, seconds)

    def batch_observer(self, function: str) -> Callable[[int], None]:
        """What a batched function's links call with each batch's size."""
        if not self.enabled:
            return lambda size: None
        return self.batches.labels(function).observe

    def refused(self, function: str) -> None:
        """Count a call refused for `function`'s full queue."""
        if self.enabled:
            self.refusals.labels(function).inc()

    def frame(self, function: str) -> None:
        """One request over a bidirectional stream."""
        if self.enabled:
            frames = self._calls.frames
            frames[function] = frames.get(function, 0) + 1

    def deployed(self, ok: bool, seconds: float) -> None:
        """Count one deploy or update."""
        if self.enabled:
            self.deploys.labels("ok" if ok else "failed").inc()
            self.deploy_seconds.observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The text format Prometheus scrapes, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _StateCollector(Collector):
    """What the gateway's state says at the moment of a scrape."""

    def __init__(self, core: GatewayState) -> None:
        self.core = core

    def collect(self) -> Iterator[Metric]:
        replicas = GaugeMetricFamily("dcf_replicas", "Replicas by function: wanted (asked for, by the user or "
                                     "an autoscaler) and ready.", labels=["function", "backend", "state"])
        cold = CounterMetricFamily("dcf_cold_starts", "Replica starts that a call at zero replicas waited for.",
                                   labels=["function"])
        restarts = CounterMetricFamily("dcf_worker_restarts", "Replicas started again after their worker died or "
                                       "was stuck past the function's timeout (this revision, this gateway run).",
                                       labels=["function"])
        queued = GaugeMetricFamily("dcf_queued_calls", "Calls waiting beyond those a function's ready replicas take "
                                   "in at once (what max_queued_requests bounds).", labels=["function"])
        for name, record in list(self.core.registry.records.items()):
            deployment = self.core.deployments.get(name)
            queued.add_metric([name], deployment.queued if deployment is not None else 0)
            wanted = deployment.replicas if deployment is not None else 0
            ready = deployment.ready_replicas if deployment is not None else 0
            replicas.add_metric([name, record.backend, "wanted"], wanted)
            replicas.add_metric([name, record.backend, "ready"], ready)
            cold.add_metric([name], record.cold_starts)
            restarts.add_metric([name], deployment.restarts if deployment is not None else 0)
        yield replicas
        yield queued
        yield cold
        yield restarts
        gpus = self.core.gpus
        if gpus is not None and gpus.devices:
            memory = GaugeMetricFamily("dcf_gpu_memory_used_bytes", "Memory in use on each GPU the gateway hands "
                                       "out, as the driver reports it.", labels=["gpu", "name"])
            on = processes(gpus.devices)  # asks the driver: exposition runs off the event loop
            for device in gpus.devices:
                memory.add_metric([str(device.index), device.name],
                                  sum(process.memory_used for process in on.get(device.index, [])))
            yield memory

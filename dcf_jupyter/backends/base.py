"""The Backend interface the gateway routes through: create a deployment, start, scale, pick a replica, stop."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from collections.abc import AsyncIterator

from ..spec import Resources


class DeployFailed(Exception):
    """A deployment (or a scale-up) could not get its replicas ready."""

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.traceback = traceback


class NoReplica(Exception):
    """No ready replica to take a call within the wait allowed."""


class WorkerLink(Protocol):
    """How the gateway talks to one replica (see dcf_jupyter.link.AsyncLink)."""

    @property
    def is_open(self) -> bool: ...

    def submit(self, form: int, payload: bytes) -> tuple[int, object]: ...

    def cancel(self, call_id: int) -> None: ...

    async def call(self, form: int, payload: bytes) -> bytes: ...

    def stream(self, payload: bytes) -> AsyncIterator[bytes]: ...


@dataclass
class DeploymentSpec:
    """What a backend needs to run one revision of a function."""

    name: str
    revision: int
    source_dir: Path  # the unpacked function folder (config.yaml inside)
    log_path: Path
    image: str = ""
    env: dict[str, str] = field(default_factory=dict)
    limits: Resources = field(default_factory=Resources)
    replicas: int = 1
    concurrency: int = 1


class Deployment(abc.ABC):
    """One revision of one function on a backend: its replicas and how to reach them."""

    def __init__(self, spec: DeploymentSpec) -> None:
        self.spec = spec
        self.last_error = ""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start `spec.replicas` replicas and return once all are ready; DeployFailed if one cannot start."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop every replica."""

    @abc.abstractmethod
    async def scale(self, replicas: int) -> None:
        """Run `replicas` replicas (new ones ready before this returns); DeployFailed if one cannot start."""

    @abc.abstractmethod
    async def pick(self, timeout: float) -> WorkerLink:
        """A ready replica's link (round-robin), waiting up to `timeout` seconds; NoReplica otherwise."""

    @property
    @abc.abstractmethod
    def replicas(self) -> int:
        """Replicas asked for."""

    @property
    @abc.abstractmethod
    def ready_replicas(self) -> int:
        """Replicas ready to take calls now."""


class Backend(abc.ABC):
    """A place functions run: local processes, Docker containers, a cluster."""

    name: str = ""

    @abc.abstractmethod
    def create(self, spec: DeploymentSpec) -> Deployment:
        """A not-yet-started deployment of `spec`."""

    async def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release what the backend holds (deployments are stopped by the gateway first)."""

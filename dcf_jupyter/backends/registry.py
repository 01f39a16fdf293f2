"""Which backends there are and what each one can do, said without importing any of them (Ray takes seconds to
import): the gateway makes them from here, the CLI and the notebook ask here whether a function's image must be
built or pushed, and the README's table of backends is drawn from here. Nothing outside backends/ compares a
backend's name with a string; adding a backend is a subpackage with a `make` and a line below."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..settings import DEFAULT_PLACE_TIMEOUT

if TYPE_CHECKING:
    from .base import Backend
    from .gpus.allocator import GpuAllocator

# When a gateway offers a backend: from its start (failing to start without it), from its start if it can be
# reached (else a deploy naming it says why not), or from the first deploy that names it (a cluster engine that
# takes seconds to join), unless it is the default or `eager_option` is set.
Starts = Literal["always", "if-reachable", "on-first-deploy"]


@dataclass(frozen=True)
class Surroundings:
    """What a gateway hands each backend it makes: where its state and sockets live, the largest message, the
    GPUs it hands out, and for a cluster backend the cluster to join and how long a replica may wait for room."""

    state_dir: Path
    socket_dir: Path
    max_message: int
    gpus: GpuAllocator
    cluster_address: str | None = None
    place_timeout: float = DEFAULT_PLACE_TIMEOUT


@dataclass(frozen=True)
class BackendKind:
    """One backend: its name, where its `make(Surroundings) -> Backend` lives, when a gateway offers it, and what
    it can do (for the tools that prepare a deploy, and for the README's table)."""

    name: str
    summary: str
    factory: str  # "module:function", imported when a gateway makes the backend
    starts: Starts
    runs_image: bool  # replicas run the function's image, built on this machine before a deploy
    pushes_image: bool  # a deploy pushes the image to config.yaml's docker_registry first (other hosts pull it)
    gpus: str
    secrets: str
    scale_to_zero: str
    off_option: str = ""  # the gateway option that, false, turns it off (`--no-docker`)
    eager_option: str = ""  # the gateway option that, set, makes an on-first-deploy backend start with the gateway
    prefers_asyncio: bool = False  # its calls are faster on asyncio's own loop than on uvloop (measured)

    def make(self, around: Surroundings) -> Backend:
        """The backend, made for a gateway (blocking: call it off the event loop)."""
        module, _, function = self.factory.partition(":")
        backend: Backend = getattr(importlib.import_module(module), function)(around)
        return backend


BACKENDS: tuple[BackendKind, ...] = (
    BackendKind(
        "local", "worker processes on this machine, one per replica", "dcf_jupyter.backends.local.backend:make",
        starts="always", runs_image=False, pushes_image=False,
        gpus="granted by the gateway: whole devices or an honest share, booked with every user's gateways",
        secrets="files in a 0700 folder of the gateway's (variables when asked)",
        scale_to_zero="yes: a process per replica, started again by the next call"),
    BackendKind(
        "docker", "a container per replica, from the function's image", "dcf_jupyter.backends.docker.backend:make",
        starts="if-reachable", runs_image=True, pushes_image=True, off_option="docker",
        gpus="granted by the gateway, as for local, passed to the container as its devices",
        secrets="a read-only mount at /run/dcf (variables when asked)",
        scale_to_zero="yes: the container is removed and started again by the next call"),
    BackendKind(
        "ray", "Ray Serve replicas on a Ray cluster (or a local Ray)", "dcf_jupyter.backends.ray.backend:make",
        starts="on-first-deploy", runs_image=False, pushes_image=True, eager_option="ray_address",
        prefers_asyncio=True,
        gpus="scheduled by Ray (num_gpus, whole or a share; a kind as a custom resource)",
        secrets="fetched by each replica from the gateway with its function's credential, never in runtime_env",
        scale_to_zero="yes: Serve's autoscaler (min_replicas: 0), a call waits in Serve's queue"),
)
NAMES: tuple[str, ...] = tuple(kind.name for kind in BACKENDS)


def backend_kind(name: str) -> BackendKind | None:
    """The backend called `name`, or None when there is none."""
    return next((kind for kind in BACKENDS if kind.name == name), None)


def runs_image(name: str) -> bool:
    """Whether replicas of backend `name` run the function's image ('' or an unknown name: no)."""
    kind = backend_kind(name)
    return kind is not None and kind.runs_image


def pushes_image(name: str) -> bool:
    """Whether a deploy to backend `name` pushes the image to docker_registry first (an unknown name: no, the
    gateway refuses it)."""
    kind = backend_kind(name)
    return kind is not None and kind.pushes_image


def backends_table() -> str:
    """The README's table of backends and what each does."""
    rows = ["| backend | replicas | offered | image | GPUs | secrets | scale to zero |",
            "|---|---|---|---|---|---|---|"]
    offered = {"always": "always", "if-reachable": "when its engine answers at the gateway's start",
               "on-first-deploy": "from the first deploy naming it (at start when it is the default)"}
    for kind in BACKENDS:
        image = "built here (`dcf function build`)" if kind.runs_image else "none"
        if kind.pushes_image:
            image += "; a deploy pushes it to `docker_registry` first when one is set"
        rows.append(f"| `{kind.name}` | {kind.summary} | {offered[kind.starts]} | {image} | {kind.gpus} | "
                    f"{kind.secrets} | {kind.scale_to_zero} |")
    return "\n".join(rows) + "\n"

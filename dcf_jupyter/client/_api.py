"""The module-level API (`dcf_jupyter.call`, `deploy`, ...) and `get_client`, the one way to a client.

In a notebook the kernel's session routes these to its gateway (the embedded one included), and deploys
show its progress display. Calls return the same values as in a script: how a reply looks is the
notebook's business (`dcf_jupyter.boxes`, `%%dcf_function`'s callable), not the return type's. This module
knows the session only through the `NotebookRoute` it registers: the client tier imports no notebook code.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from ..definition.spec import FunctionSpec, load_config
from ..settings import named_address
from ._calls import use_clients
from ._core import Client, DeployResult, FunctionInfo
from ._discovery import default_address
from ._replies import Result


class NotebookRoute(Protocol):
    """What a notebook session offers the module-level API."""

    def client(self) -> Client:
        """The session's client (starting its embedded gateway if none answers)."""
        ...

    def deploy(self, spec: FunctionSpec, client: Client, **options: Any) -> DeployResult:
        """Deploy with the notebook's progress display."""
        ...


_route: NotebookRoute | None = None
_clients: dict[str, Client] = {}
_clients_lock = threading.Lock()


def route_to_session(route: NotebookRoute | None) -> None:
    """Send calls that name no gateway to a notebook session (None: stop doing so)."""
    global _route
    _route = route


def get_client(gateway: str | None = None, config_gateway: str | None = None) -> Client:
    """The client for `gateway`; with none, the notebook session's, else $DCF_GATEWAY's, else a config's
    dcf.gateway, else your own gateway (`discovery.default_address`). Clients are shared: do not close them."""
    if gateway is None and _route is not None:
        return _route.client()
    address = named_address(gateway, config_gateway) or default_address()
    with _clients_lock:
        client = _clients.get(address)
        if client is None:
            client = _clients[address] = Client(address)
        return client


use_clients(get_client)  # FunctionCall.from_id(ID) finds the gateway as a call does


def call(name: str, data: Any = b"", *, gateway: str | None = None, timeout: float | None = None,
         retries: int = 0) -> Result:
    """Call a function once: str when the handler returned text, bytes for bytes, the parsed value for JSON;
    `retries`: tries again that many times, backing off, when the function's queue is full."""
    return get_client(gateway).call(name, data, timeout=timeout, retries=retries)


def stream(name: str, inputs: Iterable[Any], *, gateway: str | None = None,
           timeout: float | None = None) -> Iterator[bytes]:
    """Stream inputs to a function, yielding its replies in order (see Client.stream); `timeout`: seconds for the
    whole stream (ClientTimeout past it)."""
    return get_client(gateway).stream(name, inputs, timeout=timeout)


def deploy(function: str | Path | FunctionSpec, name: str | None = None, *, gateway: str | None = None,
           **options: Any) -> DeployResult:
    """Deploy a function folder (or its config.yaml, or a FunctionSpec) to `gateway`, else the notebook's,
    $DCF_GATEWAY's or the config's dcf.gateway; `options` as Client.deploy's. In a notebook, with its progress
    display."""
    if isinstance(function, FunctionSpec):
        spec, config_gateway = function, None
    else:
        config = load_config(function)
        spec, config_gateway = config.function(name), config.gateway
    if gateway is None and _route is not None:
        return _route.deploy(spec, _route.client(), **options)
    return get_client(gateway, config_gateway).deploy(spec, **options)


def list_functions(*, gateway: str | None = None) -> builtins.list[FunctionInfo]:
    """Deployed functions."""
    return get_client(gateway).list()


def logs(name: str, lines: int = 200, *, gateway: str | None = None) -> str:
    """A function's recent log lines."""
    return get_client(gateway).logs(name, lines)


def delete(name: str, *, gateway: str | None = None) -> None:
    """Stop and remove a function."""
    get_client(gateway).delete(name)

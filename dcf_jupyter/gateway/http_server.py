"""Serving the HTTP face (http.py) on its TCP port within the gateway's limits (limits.py): at most so many open
connections, and a connection that has no request in progress for IDLE_TIMEOUT_S (its headers not all sent, or
idle between requests) closed, whatever aiohttp version runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from .limits import IDLE_TIMEOUT_S, ConnectionLimits

log = logging.getLogger("dcf.gateway")
SWEEP_EVERY_S = 1.0
LINGER_S = 1.0  # how long a refused body is read and thrown away after the answer


class _Refused(asyncio.Protocol):
    """A connection past the limit: closed as soon as it is accepted (its descriptor is given back at once)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class OpenConnections:
    """The HTTP face's connections: how many may be open, and since when each has had no request in progress."""

    def __init__(self, limit: int, idle_timeout: float) -> None:
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.server: web.Server | None = None  # set once the runner is set up
        self.quiet_since: dict[RequestHandler, float] = {}  # absent: a request is in progress
        self.refused = 0
        self.closed_idle = 0

    def protocol(self) -> asyncio.BaseProtocol:
        """The protocol of a connection just accepted: aiohttp's, or a refusal past the limit."""
        assert self.server is not None
        if len(self.server.connections) >= self.limit:
            self.refused += 1
            if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
                log.warning("HTTP face: %d connection(s) refused so far: %d are open, the limit", self.refused,
                            self.limit)
            return _Refused()
        handler = self.server()
        self.quiet_since[handler] = asyncio.get_running_loop().time()
        return handler

    @web.middleware
    async def busy(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
        """Mark the connection busy while a request is handled (a WebSocket's for as long as it is open)."""
        protocol = request.protocol
        self.quiet_since.pop(protocol, None)
        try:
            return await handler(request)
        finally:
            if protocol.transport is not None:
                self.quiet_since[protocol] = asyncio.get_running_loop().time()

    async def sweep(self) -> None:
        """Close the connections that have been without a request for longer than the idle timeout."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            now = loop.time()
            for protocol, since in list(self.quiet_since.items()):
                if protocol.transport is None:
                    del self.quiet_since[protocol]
                elif now - since > self.idle_timeout:
                    del self.quiet_since[protocol]
                    self.closed_idle += 1
                    protocol.force_close()


class Face(Protocol):
    """What is served: an aiohttp application and the connections it keeps count of (http.HttpFace)."""

    connections: OpenConnections

    def app(self) -> web.Application: ...


class HttpServer:
    """The HTTP face, serving: stop it with `cleanup()`."""

    def __init__(self, runner: web.AppRunner, server: asyncio.Server, sweeping: asyncio.Task[None]) -> None:
        self.runner = runner
        self.server = server
        self.sweeping = sweeping

    async def cleanup(self) -> None:
        self.sweeping.cancel()
        self.server.close()
        await self.runner.cleanup()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.server.wait_closed(), 2.0)


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """HTTPS with the gateway's own certificate and key (the files gRPC's TLS uses)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


async def serve_http(face: Face, host: str, port: int, tls: ssl.SSLContext | None = None,
                     limits: ConnectionLimits | None = None) -> tuple[HttpServer, int]:
    """Serve `face` on host:port (0: a free port), over TLS when given a context, within `limits`; the server (to
    clean up) and the port bound. OSError when the port cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart may bind while old ones linger
        listener.bind((host.strip("[]"), port))  # no SO_REUSEPORT: one server per port, as for gRPC
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    connections = face.connections
    if limits is not None:
        connections.limit = limits.per_listener
    # A body the face refused before reading it is read and thrown away for a moment after the answer, never held:
    # clients that send all of a body before reading (http.client, requests, urllib) see the 413 or 404 instead of a
    # broken pipe, and one that keeps sending past LINGER_S is cut off.
    options: dict[str, Any] = {"keepalive_timeout": IDLE_TIMEOUT_S, "lingering_time": LINGER_S}
    runner = web.AppRunner(face.app(), access_log=None, handle_signals=False, **options)
    await runner.setup()
    connections.server = runner.server
    server = await asyncio.get_running_loop().create_server(connections.protocol, sock=listener, ssl=tls,
                                                            backlog=128)
    return HttpServer(runner, server, asyncio.create_task(connections.sweep())), int(listener.getsockname()[1])

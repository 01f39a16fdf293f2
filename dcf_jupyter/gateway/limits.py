"""What a client can cost the gateway, bounded: open files, connections, idle sockets, request bodies.

The gateway's owner reaches it over its Unix socket (its own listener, with its own connection count), so no
number of TCP connections from other accounts can lock them out. At start the gateway raises its soft limit of
open files to the hard one, keeps a quarter of it (at least 128) in reserve for its own files, workers and the
owner's connections, and shares the rest between the TCP listeners: gRPC and HTTP may each hold half. A TCP
connection that sends no request is closed after `IDLE_TIMEOUT_S`; an HTTP request's body is read only once its
token, route and function are known to be good, and the bodies being read at once are bounded in total
(`BodyBudget`): past it a request is refused at once with 503 and Retry-After, nothing read.
"""

from __future__ import annotations

import contextlib
import logging
import resource
from dataclasses import dataclass

log = logging.getLogger("dcf.gateway")

RESERVE_SHARE, RESERVE_MIN = 4, 128  # a quarter of the descriptors, at least 128, are never given to TCP clients
TCP_CONNECTIONS_MAX = 4096  # per listener, however high the limit: each costs memory too
IDLE_TIMEOUT_S = 15.0  # a connection with no request (headers not in, or idle between requests) is closed
GRPC_IDLE_S = 300.0  # a gRPC connection with no call open for this long gets GOAWAY (clients reconnect by themselves)
GRPC_STREAMS_PER_CONNECTION = 100  # HTTP/2's recommended minimum; further streams wait in the client
BODY_BUDGET_MESSAGES = 2  # request bodies read at once: twice the largest message in total


@dataclass(frozen=True)
class ConnectionLimits:
    """How many TCP connections each listener takes, from the open-file limit the gateway runs under."""

    open_files: int
    per_listener: int

    @classmethod
    def for_this_process(cls) -> ConnectionLimits:
        """Raise the soft open-file limit to the hard one (logged), then share it out."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        if wanted > soft:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
                log.info("open files: raised the soft limit from %d to %d (the hard limit)", soft, wanted)
                soft = wanted
        return cls.for_limit(soft)

    @classmethod
    def for_limit(cls, open_files: int) -> ConnectionLimits:
        """The share of `open_files` each TCP listener may hold."""
        reserve = max(RESERVE_MIN, open_files // RESERVE_SHARE)
        return cls(open_files, max(16, min(TCP_CONNECTIONS_MAX, (open_files - reserve) // 2)))

    def describe(self) -> str:
        """For the gateway's log."""
        return (f"at most {self.per_listener} connections on each TCP port (of {self.open_files} open files; "
                "your own tools use the Unix socket)")


def grpc_server_options(limits: ConnectionLimits) -> list[tuple[str, int]]:
    """The gRPC server's limits: connections per listener, a deadline for a new connection's HTTP/2 preface,
    idle connections closed, keepalive pings policed, concurrent streams per connection."""
    return [
        ("grpc.max_allowed_incoming_connections", limits.per_listener),
        ("grpc.server_handshake_timeout_ms", int(IDLE_TIMEOUT_S * 1000)),
        ("grpc.max_connection_idle_ms", int(GRPC_IDLE_S * 1000)),
        ("grpc.max_concurrent_streams", GRPC_STREAMS_PER_CONNECTION),
        # gRPC's defaults, said here because they are part of the bound: a client pinging more than every 5
        # minutes without calls is told to stop twice, then disconnected.
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 300_000),
        ("grpc.http2.max_ping_strikes", 2),
    ]


class BodyTooMuch(Exception):
    """Reading this body now would take the bodies in flight past the budget."""


class BodyBudget:
    """Bytes of request bodies the HTTP face holds at once. Taken before a body is read (its Content-Length, or
    chunk by chunk when it has none), given back when the request ends."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0
        self.refused = 0  # requests turned away, for the log and the tests

    def take(self, size: int) -> None:
        """Hold `size` more bytes; BodyTooMuch (nothing held) when they do not fit."""
        if self.held + size > self.total:
            self.refused += 1
            raise BodyTooMuch(size)
        self.held += size

    def give_back(self, size: int) -> None:
        self.held -= size

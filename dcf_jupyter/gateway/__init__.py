"""The DCF gateway: the gRPC service (`service`, run by `app` in its own process) and, importable without
the server, how to start, find and stop gateway processes (`control`)."""

from ..errors import GatewayStartError
from .control import (
    GatewayOptions,
    PendingGateway,
    RunningGateway,
    find_gateway,
    spawn_gateway,
    start_detached,
    stop_gateway,
)

__all__ = [
    "GatewayOptions",
    "GatewayStartError",
    "PendingGateway",
    "RunningGateway",
    "find_gateway",
    "spawn_gateway",
    "start_detached",
    "stop_gateway",
]

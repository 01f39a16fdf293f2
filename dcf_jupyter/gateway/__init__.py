"""The DCF gateway: gRPC service, registry, and gateway process management."""

from .app import GatewayOptions, GatewayStartError, run_gateway
from .process import PendingGateway, RunningGateway, find_gateway, spawn_gateway, start_detached, stop_gateway

__all__ = [
    "GatewayOptions",
    "GatewayStartError",
    "PendingGateway",
    "RunningGateway",
    "find_gateway",
    "run_gateway",
    "spawn_gateway",
    "start_detached",
    "stop_gateway",
]

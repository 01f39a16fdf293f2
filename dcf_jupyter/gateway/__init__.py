"""The DCF gateway: gRPC service, registry, and gateway process management."""

from .app import GatewayOptions, GatewayStartError, run_gateway
from .process import RunningGateway, find_gateway, start_detached, stop_gateway

__all__ = [
    "GatewayOptions",
    "GatewayStartError",
    "RunningGateway",
    "find_gateway",
    "run_gateway",
    "start_detached",
    "stop_gateway",
]

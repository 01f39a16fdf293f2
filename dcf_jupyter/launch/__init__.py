"""Starting gateways: what kernels, the CLI and the JupyterLab panel share to run one in the background, wait for
it, find it and stop it (`control`), and the gateway's command line (`command`). Above the gateway server, which
it loads only to serve in this process; importable without it."""

from ..errors import GatewayStartError
from ..host.running import RunningGateway, find_gateway
from .control import PendingGateway, spawn_gateway, start_detached, start_own_gateway, stop_gateway

__all__ = [
    "GatewayStartError",
    "PendingGateway",
    "RunningGateway",
    "find_gateway",
    "spawn_gateway",
    "start_detached",
    "start_own_gateway",
    "stop_gateway",
]

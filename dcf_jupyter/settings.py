"""Defaults and where they can be overridden: gateway address, state dir, message limits."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 32222
DEFAULT_ADDRESS = f"{DEFAULT_HOST}:{DEFAULT_PORT}"
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
DEFAULT_PLACE_TIMEOUT = 180.0  # seconds a Ray replica may wait for resources other replicas hold (--place-timeout)
DEFAULT_STREAM_WINDOW = 32  # calls in flight per Invokes stream before the gateway stops reading it

ENV_GATEWAY = "DCF_GATEWAY"
ENV_STATE_DIR = "DCF_STATE_DIR"
ENV_TOKEN = "DCF_TOKEN"
ENV_TLS_CA = "DCF_TLS_CA"  # PEM CA bundle: talk TLS to the gateway, trusting these roots
ENV_MAX_MESSAGE_SIZE = "DCF_MAX_MESSAGE_SIZE"
# Set by the local backend for a worker: a folder of packages to put first on sys.path.
ENV_EXTRA_SITE = "DCF_EXTRA_SITE"
# JSON from the kernel that starts an embedded gateway (its pid, kernel id, notebook): the gateway announces itself
# to the JupyterLab panel with it (gateway/announce.py).
ENV_ANNOUNCE = "DCF_ANNOUNCE"
ENV_GPU_SHARE = "DCF_GPU_SHARE"  # a replica's share of its GPU, when it holds part of one
ENV_HTTP_PORT = "DCF_HTTP_PORT"  # the gateway's HTTP face (as --http-port)
ENV_GPUS = "DCF_GPUS"  # the GPUs a gateway may hand out (as --gpus)


def normalize_address(address: str) -> str:
    """'host' -> 'host:32222'; strips a scheme such as 'grpc://' users sometimes paste. ConfigError for a port
    that is not one (grpc would quietly take 99999 modulo 65536). 'unix:PATH' (gRPC's name for a Unix socket, where
    a gateway serves the replicas on its machine) stays as it is."""
    given = address
    address = address.strip()
    if address.startswith("unix:"):
        return address
    for scheme in ("grpc://", "http://", "https://", "dns:///"):
        if address.startswith(scheme):
            address = address[len(scheme):]
    address = address.rstrip("/")
    if address.startswith("["):  # [::1]:port
        address = address if "]:" in address else f"{address}:{DEFAULT_PORT}"
    elif ":" not in address:
        address = f"{address}:{DEFAULT_PORT}"
    port = address.rsplit(":", 1)[1]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{given.strip()!r} is not a gateway address: its port must be a number from 1 to 65535")
    return address


def named_address(explicit: str | None = None, config_gateway: str | None = None) -> str | None:
    """The gateway the user named: explicit argument, then $DCF_GATEWAY, then config.yaml's dcf.gateway; None
    when they named none. A config's dcf.gateway of the default address names none: DCF's CLI writes it into every
    config.yaml, meaning "the gateway on this machine"."""
    if config_gateway and normalize_address(config_gateway) in (DEFAULT_ADDRESS, f"localhost:{DEFAULT_PORT}"):
        config_gateway = None
    for candidate in (explicit, os.environ.get(ENV_GATEWAY), config_gateway):
        if candidate and candidate.strip():
            return normalize_address(candidate)
    return None


def max_message_size() -> int:
    """Largest gRPC message sent or received: $DCF_MAX_MESSAGE_SIZE bytes, default 64 MiB."""
    raw = os.environ.get(ENV_MAX_MESSAGE_SIZE, "")
    try:
        return int(raw) if raw.strip() else DEFAULT_MAX_MESSAGE_SIZE
    except ValueError:
        return DEFAULT_MAX_MESSAGE_SIZE


def default_state_dir() -> Path:
    """Where a gateway keeps its registry, function sources and logs: $DCF_STATE_DIR or the user data dir."""
    explicit = os.environ.get(ENV_STATE_DIR)
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("dcf-jupyter", appauthor=False))


def grpc_options(max_message: int) -> list[tuple[str, int]]:
    """Channel/server options every dcf-jupyter endpoint uses."""
    return [
        ("grpc.max_send_message_length", max_message),
        ("grpc.max_receive_message_length", max_message),
    ]


def announce_dir() -> Path:
    """Where each kernel's embedded gateway announces itself to the JupyterLab panel: dcf/ in Jupyter's runtime
    dir, beside the kernels' connection files ($JUPYTER_RUNTIME_DIR, else Jupyter's default)."""
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        runtime = Path(jupyter_runtime_dir())
    except ImportError:  # a gateway host without Jupyter: the same place Jupyter would use
        data = os.environ.get("JUPYTER_DATA_DIR") or os.path.join(
            os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "jupyter")
        runtime = Path(os.environ.get("JUPYTER_RUNTIME_DIR") or os.path.join(data, "runtime"))
    return runtime / "dcf"

"""`dcf gateway start|stop|status`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from ..client import Client
from ..gateway import GatewayOptions, find_gateway, run_gateway, start_detached, stop_gateway
from ..gateway.__main__ import run_event_loop
from ..gateway.app import DEFAULT_FLOW_WINDOW, DEFAULT_STREAM_WINDOW
from ..gateway.process import GATEWAY_LOG
from ..settings import DEFAULT_HOST, DEFAULT_PORT, ENV_TOKEN, default_state_dir
from ..settings import max_message_size as default_max_message_size
from ._common import AliasedGroup, CliState, pass_state, reports_errors

state_dir_option = click.option(
    "--state-dir", type=click.Path(path_type=Path), default=None,
    help="registry, function sources and logs [default: $DCF_STATE_DIR or the user data dir]",
)


@click.group(cls=AliasedGroup)
def gateway() -> None:
    """Run the DCF gateway that deploys and serves functions."""


@gateway.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="0 picks a free port")
@state_dir_option
@click.option("--detach", "-d", is_flag=True, help="run in the background (logs in STATE_DIR/gateway.log)")
@click.option("--max-message-size", "max_message", type=int, default=None,
              help="largest request/reply in bytes [default: $DCF_MAX_MESSAGE_SIZE or 64 MiB]")
@click.option("--token", envvar="DCF_TOKEN", default=None, show_envvar=True,
              help="require this token for deploys/deletes (and every call beyond loopback); clients send $DCF_TOKEN")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM certificate: serve TLS (clients: --tls-ca or $DCF_TLS_CA)")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None, help="PEM key of --tls-cert")
@click.option("--stream-window", type=click.IntRange(1, 4096), default=DEFAULT_STREAM_WINDOW, show_default=True,
              help="calls in flight per Invokes stream before the gateway stops reading it")
@click.option("--flow-window", type=click.IntRange(0), default=DEFAULT_FLOW_WINDOW, show_default=True,
              help="bytes gRPC buffers per incoming stream (0: gRPC's adaptive windows, for high-latency links)")
@reports_errors
def start(host: str, port: int, state_dir: Path | None, detach: bool, max_message: int | None, token: str | None,
          tls_cert: str | None, tls_key: str | None, stream_window: int, flow_window: int) -> None:
    """Start a gateway (foreground unless --detach)."""
    state_dir = (state_dir or default_state_dir()).expanduser()
    limit = max_message or default_max_message_size()
    options = GatewayOptions(state_dir=state_dir, host=host, port=port, max_message=limit, token=token or None,
                             tls_cert=tls_cert, tls_key=tls_key, stream_window=stream_window,
                             flow_window=flow_window)
    if detach:
        running = find_gateway(state_dir.resolve())
        if running is not None:
            click.echo(f"A gateway is already running (pid {running.pid}) on {running.address}.")
            return
        tls = ["--tls-cert", str(Path(tls_cert).resolve()), "--tls-key", str(Path(tls_key).resolve())] \
            if tls_cert and tls_key else []
        tuning = ["--stream-window", str(stream_window), "--flow-window", str(flow_window)]
        running, _ = start_detached(state_dir, host, port, extra=["--max-message-size", str(limit), *tls, *tuning],
                                    env={ENV_TOKEN: token} if token else None)
        click.echo(f"DCF gateway started (pid {running.pid}) on {running.address}")
        click.echo(f"State: {running.state_dir}  Log: {running.state_dir / GATEWAY_LOG}")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        run_event_loop(run_gateway(options))
    except KeyboardInterrupt:
        pass


@gateway.command()
@state_dir_option
@reports_errors
def stop(state_dir: Path | None) -> None:
    """Stop the gateway of a state dir (its functions stop too, and start again with it)."""
    state_dir = (state_dir or default_state_dir()).expanduser().resolve()
    stopped = stop_gateway(state_dir)
    if stopped is None:
        click.echo(f"No gateway is running for {state_dir}.")
    else:
        click.echo(f"Stopped the gateway (pid {stopped.pid}) on {stopped.address}.")


@gateway.command()
@state_dir_option
@pass_state
@reports_errors
def status(state: CliState, state_dir: Path | None) -> None:
    """Say whether a gateway answers (at -g, else the one of the state dir, else the default address)."""
    address = state.gateway
    if address is None:
        running = find_gateway((state_dir or default_state_dir()).expanduser().resolve())
        address = running.address if running else None
    with Client(address, tls_ca=state.tls_ca) as client:
        if not client.health():
            click.echo(f"No gateway answers at {client.address}.")
            sys.exit(1)
        info = client.info()
    click.echo(f"Gateway at {client.address}: up {info.get('uptime_s', '?')}s, pid {info.get('pid', '?')}, "
               f"version {info.get('version', '?')}")
    click.echo(f"Functions: {info.get('functions', '?')}  Backends: {', '.join(info.get('backends', []))}  "
               f"State: {info.get('state_dir', '?')}")


"""`dcf gateway start|stop|status`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..client import Client
from ..client._gpu_report import gpu_lines
from ..host.credentials import read_owner_token, token_path
from ..launch import find_gateway, stop_gateway
from ..launch.command import gateway_command_line
from ..settings import ENV_TOKEN, default_state_dir
from ._common import AliasedGroup, CliState, pass_state, reports_errors

state_dir_option = click.option(
    "--state-dir", type=click.Path(path_type=Path), default=None,
    help="registry, function sources and logs [default: $DCF_STATE_DIR or the user data dir]",
)


@click.group(cls=AliasedGroup)
def gateway() -> None:
    """Run the DCF gateway that deploys and serves functions."""


@gateway.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                 add_help_option=False)
@click.pass_context
def start(ctx: click.Context) -> None:
    """Start a gateway (foreground unless --detach); `dcf gateway start --help` lists its flags."""
    # The same command as `python -m dcf_jupyter.gateway`: one parser, one set of flags.
    sys.exit(gateway_command_line(ctx.args, prog="dcf gateway start"))


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
@click.option("--http", is_flag=True, help="the HTTP face's HOST:PORT instead of the gRPC one")
@reports_errors
def address(state_dir: Path | None, http: bool) -> None:
    """Print the HOST:PORT of the gateway of a state dir, alone (export DCF_GATEWAY=$(dcf gateway address))."""
    state_dir = (state_dir or default_state_dir()).expanduser().resolve()
    running = find_gateway(state_dir)
    if running is None:
        click.echo(f"No gateway is running for {state_dir}: `dcf gateway start --detach` starts one.", err=True)
        sys.exit(1)
    if http and not running.http_address:
        click.echo(f"The gateway on {running.address} serves no HTTP (it was started with --http-port -1).", err=True)
        sys.exit(1)
    click.echo(running.http_address if http else running.address)


@gateway.command()
@reports_errors
def token() -> None:
    """Print the token your tools send your gateways, for a client that needs it by hand (curl -H "Authorization:
    Bearer $(dcf gateway token)"): $DCF_TOKEN when set, else yours."""
    given = os.environ.get(ENV_TOKEN) or read_owner_token()
    if not given:
        click.echo(f"You have no token yet: your first gateway start makes it (in {token_path()}).", err=True)
        sys.exit(1)
    click.echo(given)


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
    with Client(address, tls_ca=state.tls_ca, trust=state.trust) as client:
        if not client.health():
            click.echo(f"No gateway answers at {client.address}.")
            sys.exit(1)
        info = client.info()
        over = " (over its Unix socket: it is yours)" if client.via_own_socket else ""
    click.echo(f"Gateway at {client.address}{over}: up {info.get('uptime_s', '?')}s, pid {info.get('pid', '?')}, "
               f"version {info.get('version', '?')}")
    click.echo(f"Functions: {info.get('functions', '?')}  Backends: {', '.join(info.get('backends', []))}  "
               f"State: {info.get('state_dir', '?')}")
    if info.get("http_address"):
        click.echo(f"HTTP: http://{info['http_address']} (REST calls, /metrics, /openapi.json)")
    for line in gpu_lines(info):
        click.echo(line)


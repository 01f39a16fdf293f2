"""The `dcf` command line (also installed as `dcf-cli`, the DCF CLI's name)."""

from __future__ import annotations

import click

from .._version import __version__
from ._common import AliasedGroup, CliState
from .demo import demo
from .function import call, function
from .gateway import gateway
from .runtime import runtime
from .secret import secret
from .spawned import call_group


@click.group(cls=AliasedGroup,
             aliases={"fn": "function", "functions": "function", "runtimes": "runtime", "secrets": "secret"},
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-g", "--gateway", "gateway_address", default=None, envvar=None,
              help="gateway address host:port [default: $DCF_GATEWAY, config.yaml's dcf.gateway, else your own "
                   "gateway, else 127.0.0.1:32222]")
@click.option("--trust", is_flag=True,
              help="use the -g gateway even if another user of this machine runs it (never sent your own token)")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM CA bundle: talk TLS to the gateway [default: $DCF_TLS_CA]")
@click.option("--max-message-size", type=click.IntRange(1024), default=None,
              help="largest request/reply in bytes [default: $DCF_MAX_MESSAGE_SIZE or 64 MiB]")
@click.version_option(__version__, prog_name="dcf")
@click.pass_context
def cli(ctx: click.Context, gateway_address: str | None, trust: bool, tls_ca: str | None,
        max_message_size: int | None) -> None:
    """dcf-jupyter's DCF command line: serverless (GPU) functions on this machine or a gateway.

    Your own gateways' token is found by itself (your config dir); another gateway's comes from $DCF_TOKEN.
    A gateway on this machine is used only if it is yours (see --trust).
    """
    if trust and not gateway_address:
        raise click.UsageError("--trust needs -g/--gateway: name the gateway you trust")
    ctx.obj = CliState(gateway=gateway_address, tls_ca=tls_ca, trust=trust, max_message_size=max_message_size)


cli.add_command(function)
cli.add_command(gateway)
cli.add_command(runtime)
cli.add_command(secret)
cli.add_command(call_group)
cli.add_command(demo)
# The DCF CLI also had `dcf-cli invoke NAME` at the top level.
cli.add_command(call, name="invoke")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="dcf")


__all__ = ["cli", "main"]

"""`dcf demo`: the whole tour on a temporary gateway, ending with the function's reply."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from ..client import Client
from ..definition.scaffold import init_function
from ..launch import start_detached, stop_gateway
from ._common import reports_errors

HELLO_HANDLER = '''class Handler:
    def __init__(self):
        pass

    def __call__(self, req):
        return "Hello DCF"
'''


@click.command()
@reports_errors
def demo() -> None:
    """Start a temporary gateway, create and deploy hello-dcf, call it, print its reply, clean up."""
    with tempfile.TemporaryDirectory(prefix="dcf-demo-") as tmp:
        state_dir = Path(tmp) / "state"
        click.echo("Starting a temporary DCF gateway (embedded local backend) ...")
        running, _ = start_detached(state_dir, "127.0.0.1", 0)
        try:
            click.echo(f"Gateway listening on {running.address}\n")
            click.echo("$ dcf function init hello-dcf --runtime python   # then edit src/handler.py:")
            folder = init_function("hello-dcf", parent=tmp, handler_source=HELLO_HANDLER,
                                   gateway=running.address)
            click.echo("  " + HELLO_HANDLER.rstrip().replace("\n", "\n  "))
            click.echo("\n$ dcf function deploy -f hello-dcf/config.yaml")
            with Client(running.address) as client:
                click.echo(client.deploy(folder).message)
                click.echo("\n$ echo Hello | dcf function call hello-dcf")
                click.echo(client.call("hello-dcf", b"Hello\n"))
        finally:
            stop_gateway(state_dir)
    click.echo("\n(The demo gateway is stopped. Run your own with `dcf gateway start --detach`.)", err=True)

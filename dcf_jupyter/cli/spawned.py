"""`dcf call`: spawned calls (`dcf function spawn`, `.spawn()` in Python) by their id: get, status, cancel."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..client import FunctionCall, Reply
from ..errors import DcfError
from ._common import AliasedGroup, CliState, pass_state, reports_errors


@click.group(name="call", cls=AliasedGroup, aliases={"result": "get", "stop": "cancel"})
def call_group() -> None:
    """Spawned calls, by the id spawning gave (fc-...): their results, how they stand, stopping them."""


@call_group.command()
@click.argument("call_id", metavar="ID")
@click.option("--timeout", type=float, default=None, help="seconds to wait for it to finish (default: as long as "
                                                          "it runs)")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="write a call's reply bytes to this file")
@pass_state
@reports_errors
def get(state: CliState, call_id: str, timeout: float | None, output: Path | None) -> None:
    """Wait for a spawned call and print its result (a map's: one JSON line per input, in order)."""
    with state.client() as client:
        spawned = FunctionCall(client, call_id)
        status = spawned.status()
        if not status.is_finished:
            click.echo(f"waiting: {status.describe()}", err=True)
            status = spawned.wait(timeout)
        if status.state != "done":
            raise DcfError(status.describe(), function=status.function)
        replies = list(client.call_results(call_id, replies=True, single=status.single))
    if status.single:
        [reply] = replies
        if isinstance(reply, DcfError):
            raise reply
        assert isinstance(reply, Reply)
        if output is not None:
            output.write_bytes(reply.data)
            return
        sys.stdout.buffer.write(reply.data + (b"" if reply.data.endswith(b"\n") or not reply.is_text else b"\n"))
        return
    failed = 0
    for reply in replies:
        if isinstance(reply, DcfError):
            failed += 1
            click.echo(json.dumps({"error": str(reply)}))
        else:
            click.echo(json.dumps({"result": reply.value() if reply.is_text or reply.is_json else
                                   reply.data.hex()}))
    if failed:
        click.echo(f"{failed} of {len(replies)} inputs failed", err=True)
        sys.exit(1)


@call_group.command()
@click.argument("call_id", metavar="ID")
@pass_state
@reports_errors
def status(state: CliState, call_id: str) -> None:
    """How a spawned call stands: queued, running, done, failed or cancelled, and its counts."""
    with state.client() as client:
        click.echo(client.call_status(call_id).describe())


@call_group.command()
@click.argument("call_id", metavar="ID")
@pass_state
@reports_errors
def cancel(state: CliState, call_id: str) -> None:
    """Stop a spawned call: inputs not answered yet are not called."""
    with state.client() as client:
        click.echo(client.cancel_call(call_id).describe())

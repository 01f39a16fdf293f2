"""`dcf secret`: named secrets on the gateway (values go in, never out)."""

from __future__ import annotations

import time

import click

from ..definition.secret_refs import gather_values
from ..errors import InvalidArgument
from ._common import AliasedGroup, CliState, echo_table, pass_state, reports_errors


@click.group(cls=AliasedGroup, aliases={"ls": "list", "rm": "delete"})
def secret() -> None:
    """Named secrets (API keys, certificates) that functions get as files or variables."""


@secret.command()
@click.argument("name")
@click.option("--from-literal", "literals", multiple=True, metavar="KEY=VALUE",
              help="a key and its value (repeatable; beware: the shell's history keeps it)")
@click.option("--from-env-file", "env_files", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="every KEY=VALUE line of a .env file (repeatable)")
@click.option("--from-file", "files", multiple=True, metavar="[KEY=]PATH",
              help="a file's bytes as a key (default key: the file's name; repeatable)")
@pass_state
@reports_errors
def create(state: CliState, name: str, literals: tuple[str, ...], env_files: tuple[str, ...],
           files: tuple[str, ...]) -> None:
    """Create secret NAME, or replace its keys (functions that use it restart with the new values)."""
    values = gather_values(literals, env_files, files)
    if not values:
        raise InvalidArgument("give the secret's keys: --from-literal KEY=VALUE, --from-env-file FILE or "
                              "--from-file [KEY=]PATH")
    with state.client() as client:
        click.echo(client.create_secret(name, dict(values)))


@secret.command(name="list")
@pass_state
@reports_errors
def list_secrets(state: CliState) -> None:
    """List the gateway's secrets: names, keys and the functions that use them (never values)."""
    with state.client() as client:
        secrets = client.list_secrets()
    if not secrets:
        click.echo("(no secrets; `dcf secret create NAME --from-literal KEY=VALUE` stores one)")
        return
    rows: list[tuple[str, ...]] = [("Secret", "Keys", "Updated", "Used by")]
    for info in secrets:
        rows.append((info.name, ", ".join(info.keys), time.strftime("%Y-%m-%d %H:%M", time.localtime(info.updated)),
                     ", ".join(info.used_by) or "-"))
    echo_table(rows)


@secret.command()
@click.argument("name")
@pass_state
@reports_errors
def delete(state: CliState, name: str) -> None:
    """Delete secret NAME (refused while a deployed function uses it)."""
    with state.client() as client:
        click.echo(client.delete_secret(name))

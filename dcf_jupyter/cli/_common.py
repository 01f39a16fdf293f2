"""What every CLI command shares: the aliasing group, error reporting, the client for -g/--gateway."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from ..client import Client
from ..columns import aligned_lines
from ..definition.spec import ConfigFile, load_config
from ..errors import DcfError, explain

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    """Global options."""

    gateway: str | None = None
    tls_ca: str | None = None
    trust: bool = False
    max_message_size: int | None = None

    def client(self, config: ConfigFile | None = None) -> Client:
        """A client for -g, else $DCF_GATEWAY, else the config's dcf.gateway, else your own gateway."""
        return Client(self.gateway, config_gateway=config.gateway if config else None, tls_ca=self.tls_ca,
                      trust=self.trust, max_message_size=self.max_message_size)


pass_state = click.make_pass_decorator(CliState, ensure=True)


class AliasedGroup(click.Group):
    """A group whose commands have aliases (`fn` for `function`, `invoke` for `call`...)."""

    def __init__(self, *args: Any, aliases: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases = aliases or {}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        _, command, rest = super().resolve_command(ctx, args)
        return (command.name if command else None), command, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        reverse: dict[str, list[str]] = {}
        for alias, name in self.aliases.items():
            reverse.setdefault(name, []).append(alias)
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            label = name + (f" ({', '.join(sorted(reverse[name]))})" if name in reverse else "")
            rows.append((label, command.get_short_help_str(limit=300)))  # whole first sentences
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class WholeNumber(click.ParamType):
    """A whole number within bounds, said in one sentence when it is not (click's IntRange answers "'abc' is not a
    valid integer range")."""

    name = "N"

    def __init__(self, what: str, low: int, high: int) -> None:
        self.what, self.low, self.high = what, low, high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = self.low - 1
        if not self.low <= number <= self.high or isinstance(value, float):
            self.fail(f"{self.what} must be a whole number from {self.low} to {self.high}, got {value!r}", param, ctx)
        return number


def report_error(error: DcfError, *, verbose: bool = False) -> None:
    """Print a DcfError to stderr the one way: `Error: the sentence`, then its detail when that helps."""
    shown = explain(error, verbose=verbose)
    click.echo(f"Error: {shown.sentence}", err=True)
    if shown.detail:
        click.echo(f"{shown.title}:\n  " + shown.detail.replace("\n", "\n  "), err=True)
    if shown.hint:
        click.echo(shown.hint, err=True)


def reports_errors(fn: F) -> F:
    """Turn a DcfError into its sentence (and detail, see `report_error`) and exit 1; -v shows every detail."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DcfError as exc:
            report_error(exc, verbose=bool(kwargs.get("verbose")))
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def config_option(fn: F) -> F:
    """-f/--yaml: the config file (DCF's flag), default ./config.yaml."""
    return click.option(
        "-f", "--yaml", "config_path", type=click.Path(path_type=Path), default=Path("config.yaml"),
        show_default=True, help="the function's config file",
    )(fn)


def load(config_path: Path) -> ConfigFile:
    """Load a config and print its warnings to stderr."""
    config = load_config(config_path)
    for warning in config.warnings:
        click.echo(f"Warning: {warning}", err=True)
    return config


def human_bytes(size: float) -> str:
    """1234 -> '1.2 KB'."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def echo_table(rows: Sequence[tuple[str, ...]]) -> None:
    """Print rows (the first is the header) as left-aligned columns."""
    for line in aligned_lines(rows):
        click.echo(line)

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
from ..commands import AliasedGroup, WholeNumber
from ..definition.spec import ConfigFile, load_config
from ..errors import DcfError, explain

F = TypeVar("F", bound=Callable[..., Any])
__all__ = ["AliasedGroup", "CliState", "WholeNumber", "config_option", "echo_table", "human_bytes", "load",
           "pass_state", "report_error", "reports_errors"]


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

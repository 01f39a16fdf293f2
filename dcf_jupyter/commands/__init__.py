"""The commands `dcf function ...` and `%dcf ...` share, declared once: their arguments, options and help (click).

What a command does is its caller's: the CLI prints it (cli/function.py), the notebook shows it richly
(notebook/_magics.py), each with a callback of its own. The grammar (names, arguments, options, help, the
sentences for bad values) is this module's, as jupysql routes its magic to command modules:

    function.add_command(call_command(print_the_reply))       # dcf function call NAME [DATA]... [-d] [-f]
    magics_group.add_command(call_command(show_the_reply))    # %dcf call NAME [DATA]... [-d] [-f]
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..definition.spec import MAX_REPLICAS

Callback = Callable[..., Any]

__all__ = ["AliasedGroup", "WholeNumber", "call_command", "delete_command", "list_command", "log_command",
           "request_body", "scale_command"]


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


def _verbose() -> click.Option:
    return click.Option(["-v", "--verbose"], is_flag=True, help="show the function's traceback for bad-input errors "
                                                                 "too")


def call_command(callback: Callback, *, stdin: bool = False) -> click.Command:
    """`call NAME [DATA]... [-d TEXT] [-f FILE] [--timeout S] [-v]`; `stdin`: with no data given, the request is
    read from stdin (the CLI)."""
    where = "; with none, stdin" if stdin else ""
    return click.Command(
        "call", callback=callback,
        help=f"Call a deployed function: DATA words (or -d TEXT, or -f FILE's bytes) are the request{where}; "
             "the reply comes back unchanged (to stdout in a shell, shown in a notebook).",
        params=[click.Argument(["name"]),
                click.Argument(["words"], nargs=-1, metavar="[DATA]..."),
                click.Option(["-d", "--data"], default=None, help="the request, as text"),
                click.Option(["-f", "--file", "path"], type=click.Path(exists=True, dir_okay=False, path_type=Path),
                             default=None, help="send this file's bytes"),
                click.Option(["--timeout"], type=float, default=None, help="seconds to wait for the reply"),
                _verbose()])


def request_body(words: tuple[str, ...], data: str | None, path: Path | None) -> bytes | None:
    """The request `call` was given (words, -d or -f), or None when none was; a UsageError when more than one."""
    given = [what for what, value in (("DATA", words), ("-d", data), ("-f", path)) if value]
    if len(given) > 1:
        raise click.UsageError(f"give the request one way: {' or '.join(given)}, not both")
    if path is not None:
        return path.read_bytes()
    if data is not None:
        return data.encode("utf-8")
    return " ".join(words).encode("utf-8") if words else None


def list_command(callback: Callback) -> click.Command:
    """`list [--json] [-v]`."""
    return click.Command(
        "list", callback=callback, help="List deployed functions with invocations, replicas and status.",
        params=[click.Option(["--json", "as_json"], is_flag=True, help="JSON instead of a table"),
                click.Option(["-v", "--verbose"], is_flag=True,
                             help="each function's GPUs, cold starts and queue under it")])


def log_command(callback: Callback) -> click.Command:
    """`log NAME [-n LINES]`."""
    return click.Command(
        "log", callback=callback, help="Show the recent log of a function (its workers' output and errors).",
        params=[click.Argument(["name"]),
                click.Option(["-n", "--lines"], type=click.IntRange(1, 100_000), default=200, show_default=True,
                             help="how many of its last lines")])


def delete_command(callback: Callback) -> click.Command:
    """`delete NAME`."""
    return click.Command("delete", callback=callback, help="Stop and remove a deployed function (its folder stays).",
                         params=[click.Argument(["name"])])


def scale_command(callback: Callback) -> click.Command:
    """`scale NAME REPLICAS`."""
    return click.Command(
        "scale", callback=callback,
        help="Run REPLICAS replicas of a deployed function (each call goes to the least busy); 0: idle until "
             "called.",
        params=[click.Argument(["name"]), click.Argument(["replicas"], type=WholeNumber("replicas", 0, MAX_REPLICAS))],
        context_settings={"ignore_unknown_options": True})  # so "-1" reaches REPLICAS and its sentence

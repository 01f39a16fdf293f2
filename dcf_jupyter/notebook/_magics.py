"""IPython magics: `%%dcf_function NAME` turns a cell's Handler into a running function; `%dcf ...` manages them.

Thin on purpose: arguments are parsed here, the session does the work.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import getpass
import html
import importlib.util
import re
import shlex
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, TraitError, Unicode

from ..client import Client, FunctionInfo, SecretInfo
from ..client._gpu_report import gpu_lines
from ..columns import aligned_lines
from ..commands import (
    AliasedGroup,
    call_command,
    delete_command,
    list_command,
    log_command,
    request_body,
    scale_command,
)
from ..definition.secret_refs import gather_values, validate_secret_key
from ..definition.spec import flag_spelling, flagged_keys
from ..errors import ConfigError, DcfError, InvalidArgument, InvalidName, explain
from ._function import LogText, python_name
from ._session import DEFAULT_WORKSPACE, Session, set_default_session

CELL_LINE_OFFSET = 1  # the %%dcf_function line comes before the handler's first line


class _Table:
    """Rows as an HTML table in notebooks, aligned text elsewhere."""

    COLUMNS: tuple[str, ...] = ()
    NUMBERS: frozenset[str] = frozenset()  # columns of numbers, aligned right; text is aligned left
    EMPTY = ""

    def __init__(self, rows: list[tuple[str, ...]]) -> None:
        self.rows = rows

    def _repr_html_(self) -> str:
        # JupyterLab's stylesheet right-aligns table cells: names and words read better from the left.
        align = [f' style="text-align:{"right" if c in self.NUMBERS else "left"}"' for c in self.COLUMNS]
        head = "".join(f"<th{a}>{c}</th>" for c, a in zip(self.COLUMNS, align, strict=True))
        body = "".join("<tr>" + "".join(f"<td{a}>{html.escape(v)}</td>" for v, a in zip(row, align, strict=True))
                       + "</tr>" for row in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>" if self.rows else \
            f"<i>{html.escape(self.EMPTY)}</i>"

    def __repr__(self) -> str:
        if not self.rows:
            return self.EMPTY
        return "\n".join(aligned_lines([self.COLUMNS, *self.rows]))


class FunctionTable(_Table):
    """`%dcf list`."""

    COLUMNS: tuple[str, ...] = ("Function", "Status", "Replicas", "Invocations", "Queued", "Backend", "GPUs", "Image")
    NUMBERS = frozenset({"Invocations", "Queued"})
    EMPTY = "No functions deployed."

    def __init__(self, functions: list[FunctionInfo]) -> None:
        scheduled = any(f.schedule for f in functions)  # a column for the next runs only when something has them
        if scheduled:
            self.COLUMNS = (*self.COLUMNS, "Next run")
        super().__init__([(f.name, f.status, f.replicas_said, str(f.invocations), str(f.queued), f.backend,
                           "; ".join(f"{g.replica}: {g.describe()}" for g in f.gpus) or "-", f.image or "-")
                          + ((f.next_run_said.removeprefix("next run ") or "-",) if scheduled else ())
                          for f in functions])


class SecretTable(_Table):
    """`%dcf secret list`: names, keys and users, never values."""

    COLUMNS = ("Secret", "Keys", "Used by")
    EMPTY = "No secrets (%dcf secret create NAME KEY ... stores one)."

    def __init__(self, secrets: list[SecretInfo]) -> None:
        super().__init__([(s.name, ", ".join(s.keys), ", ".join(s.used_by) or "-") for s in secrets])


def _parse_with_suggestions(magic: Any, line: str) -> argparse.Namespace:
    """`parse_argstring`, whose "unrecognized arguments" names the option meant when one is close (--gpus: --gpu)."""
    try:
        return parse_argstring(magic, line)
    except UsageError as exc:
        unknown = re.search(r"unrecognized arguments: (\S+)", str(exc))
        if unknown is None:
            raise
        options = [option for action in magic.parser._actions for option in action.option_strings]
        close = difflib.get_close_matches(unknown.group(1), options, n=1)
        if not close:
            raise
        raise UsageError(f"%%{magic.__name__}: no option {unknown.group(1)} (did you mean {close[0]}?)") from None


def _dcf_group(magics: DcfMagics) -> AliasedGroup:
    """`%dcf`'s commands: call, list, log, delete and scale as `dcf function` declares them (dcf_jupyter.commands:
    one grammar, one help), shown the notebook's way; and the notebook's own."""
    group = AliasedGroup("%dcf", help="Manage DCF functions from the notebook.", aliases=MAGIC_ALIASES,
                         context_settings={"help_option_names": ["-h", "--help"]})
    for shared in (call_command(magics._call), list_command(magics._list), log_command(magics._logs),
                   delete_command(magics._delete), scale_command(magics._scale)):
        group.add_command(shared)
    group.add_command(click.Command(
        "result", callback=magics._result,
        help="A spawned call's result, waiting for it (`.spawn()`, `dcf function spawn`; `dcf call get` in a "
             "shell).",
        params=[click.Argument(["call_id"], metavar="ID"),
                click.Option(["--timeout"], type=float, help="seconds to wait for it to finish (default: as long as "
                                                             "it runs)"),
                click.Option(["--status"], is_flag=True, help="how it stands, without waiting"),
                click.Option(["--cancel"], is_flag=True, help="stop it")]))
    group.add_command(click.Command(
        "stream", callback=magics._stream, help="Stream frames through a function: --camera or --video PATH.",
        params=[click.Argument(["name"]),
                click.Option(["--camera"], is_flag=True, help="the browser's webcam"),
                click.Option(["--video"], metavar="PATH", help="a video file or URL, read in the kernel"),
                click.Option(["--overlay"], type=click.Choice(["auto", "image", "boxes", "text"]), default="auto"),
                click.Option(["--window"], type=int, default=2, help="frames in flight (default 2)"),
                click.Option(["--fps"], type=float, default=None, help="frame rate cap (camera default 30)"),
                click.Option(["--width"], type=int, default=640),
                click.Option(["--height"], type=int, default=480),
                click.Option(["--loop"], is_flag=True, help="replay the video when it ends"),
                click.Option(["--start"], is_flag=True, help="start streaming right away")]))
    group.add_command(click.Command(
        "secret", callback=magics._secret,
        help="Named secrets: create NAME KEY ... (each value is asked for, never shown) | list | delete NAME.",
        params=[click.Argument(["action"], type=click.Choice(["create", "list", "delete"])),
                click.Argument(["name"], required=False),
                click.Argument(["keys"], nargs=-1, metavar="[KEY]..."),
                click.Option(["--env-file"], metavar="FILE", help="every KEY=VALUE line of a .env file"),
                click.Option(["--file", "files"], multiple=True, metavar="[KEY=]PATH",
                             help="a file's bytes as a key (repeatable)")]))
    group.add_command(click.Command("status", callback=magics._status, help="Which gateway this notebook uses."))
    group.add_command(click.Command(
        "needs", callback=magics._needs,
        help="Stop here, saying which extra to install, unless this kernel can import every MODULE.",
        params=[click.Argument(["modules"], nargs=-1, required=True, metavar="MODULE..."),
                click.Option(["--extra"], default="tutorials", help="the dcf-jupyter extra that brings them")]))
    group.add_command(click.Command(
        "gateway", callback=magics._gateway, help="Use another gateway: HOST:PORT (none: say which is used).",
        params=[click.Argument(["address"], required=False),
                click.Option(["--trust"], is_flag=True,
                             help="use it even if another user of this machine runs it (your token is not sent)")]))
    return group


def _help(group: click.Group) -> str:
    """`%dcf --help`'s text."""
    return group.get_help(click.Context(group, info_name="%dcf"))


class _Unbound:
    """Stands for the magics where only the commands' help is wanted (the %dcf docstring)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda **_: None


MAGIC_ALIASES = {"logs": "log", "invoke": "call", "ls": "list", "rm": "delete", "remove": "delete"}


def _config_flags(magic: Callable[..., Any]) -> Callable[..., Any]:
    """%%dcf_function's flags for config.yaml's keys, as their declarations offer them (values stay text: the
    spec's reader checks them, naming the flag)."""
    # IPython's parser adds arguments in the reverse of the order their decorators were applied.
    for setting in reversed(flagged_keys()):
        magic = argument(setting.key.flag, dest=setting.path, default=None, help=setting.key.help,
                         metavar=setting.key.metavar or None, nargs="+" if setting.key.kind.many else None)(magic)
    return magic


StreamWidget = Callable[[argparse.Namespace, Client], Any]


@magics_class
class DcfMagics(Magics):
    """`%%dcf_function` and `%dcf`."""

    workspace = Unicode(DEFAULT_WORKSPACE, help="folder where %%dcf_function writes function folders").tag(config=True)
    gateway = Unicode("", help="gateway address (default: $DCF_GATEWAY, else your own gateway if one answers, "
                               "else an embedded gateway started for the kernel)").tag(config=True)
    verbose = Bool(False, help="show the function's traceback for bad-input errors (ValueError) too").tag(config=True)

    def __init__(self, shell: Any = None, stream_widget: StreamWidget | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        # `%dcf stream`'s widget: given by the extension (dcf_jupyter.load_ipython_extension), which sits above
        # both the notebook and the widgets; the widgets use this package, so it must not import them.
        self.stream_widget = stream_widget
        self.session = Session(self.workspace, self.gateway or None)
        self.verbose_error: DcfError | None = None  # raised by a command given -v: shown in full
        set_default_session(self.session)
        self.observe(self._settings_changed, names=["workspace", "gateway"])

    def _settings_changed(self, change: dict[str, Any]) -> None:
        if change["name"] == "workspace":
            self.session.workspace = Path(change["new"])
        elif change["new"]:
            self.session.connect(change["new"])

    @magic_arguments()
    @argument("name", help="function name: lowercase letters, digits and '-' (bound as a Python name, - -> _)")
    @_config_flags
    @argument("--requirements", nargs="+", default=[], metavar="PKG", help="pip requirements for its requirements.txt")
    @argument("--no-deploy", action="store_true", help="only write the function folder")
    @cell_magic
    def dcf_function(self, line: str, cell: str) -> None:
        """Turn this cell's `class Handler` into a DCF function: write its folder, deploy it, bind NAME.

        The folder (workspace/NAME with config.yaml, src/handler.py and requirements.txt) is a
        real DCF function: `dcf function build/deploy -f` work on it. Running the cell again
        redeploys in place. The cell is the worker's handler.py, as written (no IPython syntax).
        """
        args = _parse_with_suggestions(self.dcf_function, line)
        try:
            given = {path: getattr(args, path) for path in flag_spelling() if getattr(args, path) is not None}
            proxy = self.session.define(
                args.name, cell, settings=given, spelling=flag_spelling(), requirements=args.requirements,
                deploy=not args.no_deploy,
                line_offset=CELL_LINE_OFFSET, where=f"%%dcf_function {args.name} cell",
                bound_as=python_name(args.name),
            )
        except (InvalidName, ConfigError) as exc:
            raise UsageError(str(exc)) from None
        assert self.shell is not None  # a cell magic runs in a shell
        self.shell.user_ns[python_name(args.name)] = proxy

    @line_magic
    def dcf(self, line: str) -> Any:
        """Manage DCF functions: %dcf call|result|list|logs|delete|scale|stream|secret|status|gateway|needs ...
        (%dcf --help lists them; %dcf COMMAND --help says more)."""
        group = _dcf_group(self)
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%dcf: {exc}") from None
        if not words:
            raise UsageError(_help(group))
        try:
            with group.make_context("%dcf", words) as context:
                return group.invoke(context)
        except click.exceptions.Exit:  # --help: click printed it
            return None
        except click.UsageError as exc:
            where = f"{exc.ctx.command_path}: " if exc.ctx is not None else "%dcf: "
            raise UsageError(f"{where}{exc.format_message()}") from None

    def _call(self, name: str, words: tuple[str, ...], data: str | None, path: Path | None, timeout: float | None,
              verbose: bool) -> Any:
        from ._display import as_result

        request = request_body(words, data, path) or b""
        try:
            return as_result(self.session.client().call_reply(name, request, timeout=timeout), request=request)
        except DcfError as exc:
            if verbose:
                self.verbose_error = exc
            raise

    def _list(self, as_json: bool, verbose: bool) -> Any:
        functions = self.session.client().list()
        if as_json:
            return [asdict(function) for function in functions]
        if verbose:
            for function in functions:
                details = [held.describe() for held in function.gpus] + [
                    said for said in (function.cold_starts_said, function.queue_said, function.next_run_said) if said]
                if details:
                    print(f"{function.name}: {'; '.join(details)}")
        return FunctionTable(functions)

    def _logs(self, name: str, lines: int) -> Any:
        return LogText(self.session.client().logs(name, lines))

    def _delete(self, name: str) -> None:
        self.session.client().delete(name)
        print(f"Deleted: {name}")
        self.session.functions.pop(name, None)

    def _scale(self, name: str, replicas: int) -> None:
        print(self.session.client().scale(name, replicas).scaled())

    def _result(self, call_id: str, timeout: float | None, status: bool, cancel: bool) -> Any:
        from ..client import FunctionCall

        spawned = FunctionCall(self.session.client(), call_id)
        if status or cancel:
            print((spawned.cancel() if cancel else spawned.status()).describe())
            return None
        return spawned.get(timeout=timeout, return_exceptions=True)

    def _status(self) -> None:
        status = self.session.status()
        kind = "embedded gateway (stops with the kernel)" if status["embedded"] else "gateway"
        print(f"{kind} at {status['address']}, version {status['version']}, "
              f"{status['functions']} function(s), backends: {', '.join(status['backends'] or [])}")
        print(f"workspace: {status['workspace']}")
        print("\n".join(gpu_lines(status)))

    def _needs(self, modules: tuple[str, ...], extra: str) -> None:
        missing = [module for module in modules if importlib.util.find_spec(module) is None]
        if missing:
            raise UsageError(
                f"this notebook needs {', '.join(missing)}, which this kernel's Python ({sys.executable}) lacks: "
                f"pip install 'dcf-jupyter[{extra}]' into it (in a clone: pip install -e '.[{extra}]'), "
                "then restart the kernel")

    def _gateway(self, address: str | None, trust: bool) -> None:
        if address is None:
            print(self.session.address or "not connected yet (the first call connects)")
        else:
            print(f"Using the gateway at {self.session.connect(address, trust=trust)}.")

    def _secret(self, action: str, name: str | None, keys: tuple[str, ...], env_file: str | None,
                files: tuple[str, ...]) -> Any:
        client = self.session.client
        if action == "list":
            return SecretTable(client().list_secrets())
        if not name:
            raise UsageError(f"%dcf secret {action}: name the secret")
        if action == "delete":
            print(client().delete_secret(name))
            return None
        typed = [key for key in keys if "=" in key]
        if typed:  # never echo it: the line may be the value itself
            raise UsageError("%dcf secret create: give each KEY alone and type its value when asked: a value in "
                             "the line would stay in the notebook and its history")
        try:
            values: dict[str, str | bytes] = dict(gather_values(
                env_files=[env_file] if env_file else [], files=list(files)))
            for key in keys:
                validate_secret_key(key, name)
                values[key] = getpass.getpass(f"{name} {key}: ")
        except InvalidArgument as exc:
            raise UsageError(f"%dcf secret create: {exc}") from None
        if not values:
            raise UsageError("%dcf secret create NAME KEY ...: name at least one key (or --env-file / --file)")
        print(client().create_secret(name, values))
        return None

    def _stream(self, **options: Any) -> Any:
        if options["camera"] == bool(options["video"]):
            raise UsageError("%dcf stream: give --camera or --video PATH (one of them)")
        if self.stream_widget is None:
            raise UsageError("%dcf stream: load the extension with `%load_ext dcf_jupyter` (it brings the widgets)")
        try:
            return self.stream_widget(argparse.Namespace(**options), self.session.client())
        except (ImportError, OSError, ValueError, TraitError) as exc:
            raise UsageError(f"%dcf stream: {exc}") from None

    dcf.__doc__ = (dcf.__doc__ or "") + "\n\n" + _help(_dcf_group(_Unbound()))  # type: ignore[arg-type]


# --- errors ------------------------------------------------------------------------

_HANDLER_LINE = re.compile(r'File "[^"]*src/handler\.py", line (\d+)')


def cell_traceback(text: str, function: str, line_offset: int) -> str:
    """A worker's traceback with handler.py lines renamed to the lines of the cell they came from."""
    def rename(match: re.Match[str]) -> str:
        return f'File "<%%dcf_function {function} cell>", line {int(match.group(1)) + line_offset}'

    return _HANDLER_LINE.sub(rename, text)


def _show_dcf_error(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> None:
    """DcfErrors are ours to explain, as the CLI does: the sentence first, then the detail when it helps
    (a function's traceback with the cell's line numbers)."""
    assert isinstance(value, DcfError)
    magics = shell.magics_manager.registry.get("DcfMagics")
    verbose = magics is not None and (magics.verbose or magics.verbose_error is value)
    shown = explain(value, verbose=verbose, hint_verbose="-v to `%dcf call`, or `%config DcfMagics.verbose = True`")
    out = sys.stderr
    print(f"{etype.__name__}: {shown.sentence}", file=out)
    if shown.detail:
        detail = shown.detail
        proxy = magics.session.functions.get(value.function) if magics is not None and value.function else None
        if proxy is not None:
            detail = cell_traceback(detail, value.function, proxy.line_offset)
        whose = f" {value.function!r}" if value.function and shown.title == value.detail_title else ""
        print(f"{shown.title}{whose}:", file=out)
        print(detail, file=out)
    if shown.hint:
        print(shown.hint, file=out)
    return None


def load(shell: Any, stream_widget: StreamWidget | None = None) -> DcfMagics:
    """Register the magics and error display on `shell`, and warm up a gateway in the background; `stream_widget`
    makes `%dcf stream`'s widget."""
    existing = shell.magics_manager.registry.get("DcfMagics")
    if existing is not None:
        return existing  # loading twice is harmless
    magics = DcfMagics(shell, stream_widget=stream_widget)
    shell.register_magics(magics)
    if not shell.custom_exceptions:  # never displace another extension's handler
        shell.set_custom_exc((DcfError,), _show_dcf_error)
    threading.Thread(target=_quiet_warm_up, args=(magics.session,), name="dcf-warm-up", daemon=True).start()
    return magics


def _quiet_warm_up(session: Session) -> None:
    with contextlib.suppress(Exception):  # the first magic reports any real problem
        session.warm_up()


def unload(shell: Any) -> None:
    """Stop the embedded gateway, if one was started."""
    magics = shell.magics_manager.registry.get("DcfMagics")
    if magics is not None:
        magics.session.close()

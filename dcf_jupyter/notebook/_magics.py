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
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, TraitError, Unicode

from ..client import Client, FunctionInfo, SecretInfo
from ..client._gpu_report import gpu_lines
from ..columns import aligned_lines
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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        raise UsageError(message or self.format_usage())


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


def _dcf_parser() -> _Parser:
    parser = _Parser(prog="%dcf", add_help=False, description="Manage DCF functions from the notebook.")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    call = commands.add_parser("call", help="call a function: %%dcf call NAME [DATA | --file PATH]")
    call.add_argument("name")
    call.add_argument("data", nargs="*", help="request text (default: empty)")
    call.add_argument("--file", "-f", type=Path, help="send this file's bytes")
    call.add_argument("--timeout", type=float)
    call.add_argument("-v", "--verbose", action="store_true", help="show the function's traceback for bad input too")
    result = commands.add_parser("result", help="a spawned call's result: %%dcf result ID [--timeout S] "
                                                "[--status | --cancel]")
    result.add_argument("id")
    result.add_argument("--timeout", type=float, help="seconds to wait for it to finish (default: as long as it runs)")
    result.add_argument("--status", action="store_true", help="how it stands, without waiting")
    result.add_argument("--cancel", action="store_true", help="stop it")
    commands.add_parser("list", help="deployed functions")
    logs = commands.add_parser("logs", help="a function's recent log: %%dcf logs NAME [--lines N]")
    logs.add_argument("name")
    logs.add_argument("--lines", "-n", type=int, default=200)
    delete = commands.add_parser("delete", help="stop and remove a function: %%dcf delete NAME")
    delete.add_argument("name")
    scale = commands.add_parser("scale", help="run N replicas: %%dcf scale NAME N")
    scale.add_argument("name")
    scale.add_argument("replicas", type=int)
    stream = commands.add_parser("stream", help="stream frames through a function: "
                                               "%%dcf stream NAME --camera | --video PATH")
    stream.add_argument("name")
    source = stream.add_mutually_exclusive_group(required=True)
    source.add_argument("--camera", action="store_true", help="the browser's webcam")
    source.add_argument("--video", metavar="PATH", help="a video file or URL, read in the kernel")
    stream.add_argument("--overlay", choices=("auto", "image", "boxes", "text"), default="auto")
    stream.add_argument("--window", type=int, default=2, help="frames in flight (default 2)")
    stream.add_argument("--fps", type=float, default=None, help="frame rate cap (camera default 30)")
    stream.add_argument("--width", type=int, default=640)
    stream.add_argument("--height", type=int, default=480)
    stream.add_argument("--loop", action="store_true", help="replay the video when it ends")
    stream.add_argument("--start", action="store_true", help="start streaming right away")
    secret = commands.add_parser("secret", help="named secrets: %%dcf secret create NAME KEY ... (each value is "
                                                "asked for, never shown) | list | delete NAME")
    secret.add_argument("action", choices=("create", "list", "delete"))
    secret.add_argument("name", nargs="?")
    secret.add_argument("keys", nargs="*", metavar="KEY", help="keys whose values you type when asked")
    secret.add_argument("--env-file", metavar="FILE", help="every KEY=VALUE line of a .env file")
    secret.add_argument("--file", dest="files", action="append", default=[], metavar="[KEY=]PATH",
                        help="a file's bytes as a key (repeatable)")
    commands.add_parser("status", help="which gateway this notebook uses")
    needs = commands.add_parser("needs", help="stop here, saying which extra to install, unless this kernel can "
                                              "import every MODULE: %%dcf needs MODULE ... [--extra NAME]")
    needs.add_argument("modules", nargs="+", metavar="MODULE")
    needs.add_argument("--extra", default="tutorials", help="the dcf-jupyter extra that brings them")
    gateway = commands.add_parser("gateway", help="use another gateway: %%dcf gateway HOST:PORT")
    gateway.add_argument("address", nargs="?")
    gateway.add_argument("--trust", action="store_true",
                         help="use it even if another user of this machine runs it (your token is not sent)")
    return parser


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
        """Manage DCF functions: %dcf call|result|list|logs|delete|scale|stream|status|gateway|needs ... (%dcf?
        lists them)."""
        parser = _dcf_parser()
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%dcf: {exc}") from None
        if not words:
            raise UsageError(parser.format_help())
        args = parser.parse_args(words)
        command = args.command
        client = self.session.client
        if command == "call":
            from ._display import as_result

            if args.file is not None:
                try:
                    data: bytes = args.file.read_bytes()
                except OSError as exc:
                    raise UsageError(f"%dcf call: cannot read {args.file}: {exc.strerror}") from None
            else:
                data = " ".join(args.data).encode("utf-8")
            try:
                return as_result(client().call_reply(args.name, data, timeout=args.timeout), request=data)
            except DcfError as exc:
                if args.verbose:
                    self.verbose_error = exc
                raise
        if command == "result":
            from ..client import FunctionCall

            spawned = FunctionCall(client(), args.id)
            if args.status or args.cancel:
                print((spawned.cancel() if args.cancel else spawned.status()).describe())
                return None
            return spawned.get(timeout=args.timeout, return_exceptions=True)
        if command == "list":
            return FunctionTable(client().list())
        if command == "logs":
            return LogText(client().logs(args.name, args.lines))
        if command == "delete":
            client().delete(args.name)
            print(f"Deleted: {args.name}")
            self.session.functions.pop(args.name, None)
            return None
        if command == "scale":
            print(client().scale(args.name, args.replicas).scaled())
            return None
        if command == "stream":
            return self._stream(args)
        if command == "secret":
            return self._secret(args)
        if command == "status":
            status = self.session.status()
            kind = "embedded gateway (stops with the kernel)" if status["embedded"] else "gateway"
            print(f"{kind} at {status['address']}, version {status['version']}, "
                  f"{status['functions']} function(s), backends: {', '.join(status['backends'] or [])}")
            print(f"workspace: {status['workspace']}")
            print("\n".join(gpu_lines(status)))
            return None
        if command == "needs":
            missing = [module for module in args.modules if importlib.util.find_spec(module) is None]
            if missing:
                raise UsageError(
                    f"this notebook needs {', '.join(missing)}, which this kernel's Python ({sys.executable}) lacks: "
                    f"pip install 'dcf-jupyter[{args.extra}]' into it (in a clone: pip install -e '.[{args.extra}]'), "
                    "then restart the kernel")
            return None
        if command == "gateway":
            if args.address is None:
                print(self.session.address or "not connected yet (the first call connects)")
            else:
                print(f"Using the gateway at {self.session.connect(args.address, trust=args.trust)}.")
            return None
        raise UsageError(parser.format_help())

    def _secret(self, args: argparse.Namespace) -> Any:
        client = self.session.client
        if args.action == "list":
            return SecretTable(client().list_secrets())
        if not args.name:
            raise UsageError(f"%dcf secret {args.action}: name the secret")
        if args.action == "delete":
            print(client().delete_secret(args.name))
            return None
        typed = [key for key in args.keys if "=" in key]
        if typed:  # never echo it: the line may be the value itself
            raise UsageError("%dcf secret create: give each KEY alone and type its value when asked: a value in "
                             "the line would stay in the notebook and its history")
        try:
            values: dict[str, str | bytes] = dict(gather_values(
                env_files=[args.env_file] if args.env_file else [], files=args.files))
            for key in args.keys:
                validate_secret_key(key, args.name)
                values[key] = getpass.getpass(f"{args.name} {key}: ")
        except InvalidArgument as exc:
            raise UsageError(f"%dcf secret create: {exc}") from None
        if not values:
            raise UsageError("%dcf secret create NAME KEY ...: name at least one key (or --env-file / --file)")
        print(client().create_secret(args.name, values))
        return None

    def _stream(self, args: argparse.Namespace) -> Any:
        if self.stream_widget is None:
            raise UsageError("%dcf stream: load the extension with `%load_ext dcf_jupyter` (it brings the widgets)")
        try:
            return self.stream_widget(args, self.session.client())
        except (ImportError, OSError, ValueError, TraitError) as exc:
            raise UsageError(f"%dcf stream: {exc}") from None

    dcf.__doc__ = (dcf.__doc__ or "") + "\n\n" + _dcf_parser().format_help()


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

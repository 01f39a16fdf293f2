"""How to run a gateway, declared once: each option is a field of GatewayOptions whose metadata says its flag, its
gateway.yaml key, the environment variable that sets it, its help and what values it takes. The command line
(`python -m dcf_jupyter.gateway`, `dcf gateway start`), gateway.yaml, the flags a background gateway is given
(`options_argv`) and the README's table (`options_table`) all follow from it. Importable without the server (no
grpc): the CLI, kernels and the JupyterLab panel start gateways with it.

A value comes from the command line, else gateway.yaml, else the environment, else the field's default.

    # ~/.config/dcf-jupyter/gateway.yaml  ($DCF_CONFIG_DIR/gateway.yaml): flags by name, dashes or underscores
    open_loopback: true
    port: 32222
    max_message_size: 134217728
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.registry import NAMES, BackendKind
from ..errors import GatewayStartError
from ..host.credentials import config_dir
from ..host.logfile import DEFAULT_BACKUPS as DEFAULT_LOG_BACKUPS
from ..host.logfile import DEFAULT_MAX_BYTES as DEFAULT_LOG_MAX_BYTES
from ..host.ports import is_loopback
from ..settings import (
    DEFAULT_HOST,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_PLACE_TIMEOUT,
    DEFAULT_PORT,
    DEFAULT_STREAM_WINDOW,
    ENV_GPUS,
    ENV_HTTP_PORT,
    ENV_MAX_MESSAGE_SIZE,
    ENV_TOKEN,
    default_state_dir,
)

MIN_LOG_BYTES = 64 * 1024
DEFAULT_FLOW_WINDOW = 512 * 1024  # flat memory under many streams, full speed on loopback and LANs
GATEWAY_CONFIG = "gateway.yaml"
MAX_CONFIG_BYTES = 64 * 1024
LOOPS = ("auto", "asyncio", "uvloop")


def option(default: Any, help: str, *, flag: str = "", negative: bool = False, metavar: str = "",
           choices: tuple[str, ...] = (), env: str = "", yaml: bool = True, passed: bool = True, always: bool = False,
           path: bool = False, check: Callable[[Any], str] | None = None, repeat: str = "") -> Any:
    """A GatewayOptions field that is an option: `help` and how it is given. `flag` (default: --the-field-name);
    `negative`: a --no-... switch that turns a default-true field off; `env`: the environment variable that sets it
    when neither the command line nor gateway.yaml does; `yaml`: gateway.yaml may set it (not for what only makes
    sense for one start); `passed`: handed on to a background gateway when not the default (`always`: even then);
    `path`: made absolute; `check`: why a value is wrong ('' when it is not); `repeat`: the flag of a list, given
    once per item."""
    metadata = {"help": help, "flag": flag, "negative": negative, "metavar": metavar, "choices": choices, "env": env,
                "yaml": yaml, "passed": passed, "always": always, "path": path, "check": check, "repeat": repeat}
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata=metadata)
    return field(default=default, metadata=metadata)


def _within(low: float, high: float | None = None) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value < low or (high is not None and value > high):
            return f"must be within {low}..{high}" if high is not None else f"must be {low} or more"
        return ""

    return check


def _above_zero(value: float) -> str:
    return "" if value > 0 else "must be above 0"


def _http_port(value: int) -> str:
    return "" if -1 <= value <= 65535 else "must be within 0..65535 (or -1: no HTTP face)"


@dataclass
class GatewayOptions:
    """How to run a gateway: every option, declared once (see `option`)."""

    state_dir: Path = option(None, "registry, function sources and logs (default: $DCF_STATE_DIR or the user "
                                   "data dir)", metavar="DIR", yaml=False, passed=False, path=True)
    host: str = option(DEFAULT_HOST, "address to listen on", metavar="HOST", passed=False)
    port: int = option(DEFAULT_PORT, "0 picks a free port", metavar="PORT", passed=False, check=_within(0, 65535))
    max_message: int = option(DEFAULT_MAX_MESSAGE_SIZE, "largest request/reply in bytes", flag="--max-message-size",
                              metavar="BYTES", env=ENV_MAX_MESSAGE_SIZE, always=True, check=_within(1024))
    default_backend: str = option("local", "default backend for deploys that name none", flag="--backend",
                                  choices=NAMES)
    docker: bool = option(True, "do not offer the docker backend", negative=True)
    ray_address: str | None = option(None, "Ray cluster of the ray backend, as Ray takes it: auto, HOST:PORT or "
                                           "ray://HOST:10001 (default: a local Ray, started on the first ray deploy "
                                           "and stopped with the gateway)", metavar="ADDRESS")
    place_timeout: float = option(DEFAULT_PLACE_TIMEOUT, "seconds a Ray deploy waits for resources other replicas "
                                                         "hold before it fails, saying which", metavar="SECONDS",
                                  check=_above_zero)
    gpus: str | None = option(None, "the GPUs this gateway hands to local and docker replicas: indices like "
                                    "0,1,2,3, a count like 4 (0-3), or none (default: every GPU NVML or nvidia-smi "
                                    "lists that $CUDA_VISIBLE_DEVICES allows)", metavar="LIST", env=ENV_GPUS)
    token: str | None = field(default=None, repr=False)  # given (--token, --token-file, $DCF_TOKEN) or the owner's
    open_loopback: bool = option(False, "let clients on this machine call functions and read List, GetMeta, Info and "
                                        "/metrics without the token, as DCF's original clients (which send none) "
                                        "need; every local account may then use your functions (default: every RPC "
                                        "but HealthCheck needs the token, loopback included)")
    tls_cert: str | None = option(None, "PEM certificate: serve TLS (clients: --tls-ca or $DCF_TLS_CA)",
                                  metavar="FILE", path=True)
    tls_key: str | None = option(None, "PEM private key of --tls-cert", metavar="FILE", path=True)
    http_port: int | None = option(None, "the HTTP face's port (REST calls, /metrics): 0 picks a free one, -1 turns "
                                         "it off (default: the port after --port, e.g. 32223; a free one with "
                                         "--port 0)", metavar="PORT", env=ENV_HTTP_PORT, check=_http_port)
    cors_origins: tuple[str, ...] = option((), "let web pages of this origin (e.g. https://example.org) call the HTTP "
                                               "face from a browser; repeat for more", repeat="--cors-origin",
                                           metavar="ORIGIN")
    metrics: bool = option(True, "count nothing and serve no /metrics (they cost about a microsecond a call)",
                           negative=True)
    stream_window: int = option(DEFAULT_STREAM_WINDOW, "calls in flight per Invokes stream before the gateway stops "
                                                       "reading it", metavar="N", check=_within(1))
    flow_window: int = option(DEFAULT_FLOW_WINDOW, "bytes gRPC buffers per incoming stream (0: gRPC's adaptive "
                                                   "windows, for high-latency links)", metavar="BYTES",
                                check=_within(0))
    loop: str = option("auto", "event loop: asyncio's when the default backend is ray (faster with Ray's handles), "
                               "else uvloop when installed (faster hops to local workers)", choices=LOOPS)
    log_max_bytes: int = option(DEFAULT_LOG_MAX_BYTES, "each function's log, and the gateway's, starts a new file "
                                                       "at this size", metavar="BYTES", check=_within(MIN_LOG_BYTES))
    log_backups: int = option(DEFAULT_LOG_BACKUPS, "old files of each log kept: a log takes at most (N + 1) x "
                                                   "--log-max-bytes", metavar="N", check=_within(0))
    log_file: Path | None = option(None, "write the gateway's own output to this file, rotated as the "
                                         "functions' logs are (a detached gateway's is STATE_DIR/gateway.log)",
                                   metavar="FILE", yaml=False, passed=False, path=True)
    lifeline_fd: int | None = option(None, "stop when this inherited fd reaches EOF (the process that started us is "
                                           "gone)", metavar="FD", yaml=False, passed=False)
    ephemeral: bool = option(False, "remove the state dir when the gateway stops (for a temporary gateway)",
                             yaml=False)
    ready_timeout: float = 30.0  # seconds a call waits for a replica to become ready (not an option)

    def http_port_for(self, grpc_port: int) -> int | None:
        """The port the HTTP face binds once gRPC has `grpc_port` (None: no HTTP face)."""
        if self.http_port is None:
            return 0 if self.port == 0 else grpc_port + 1
        return None if self.http_port < 0 else self.http_port

    def starts_with_gateway(self, kind: BackendKind) -> bool:
        """Whether a backend offered from its first deploy joins as the gateway starts instead: it is the default,
        or the option it names is set (a Ray cluster's address)."""
        return self.default_backend == kind.name or bool(kind.eager_option and getattr(self, kind.eager_option))


@dataclass(frozen=True)
class Option:
    """One option as its field declares it."""

    name: str
    kind: type
    default: Any
    meta: dict[str, Any]

    @property
    def flag(self) -> str:
        """The command line's flag: --no-docker for `docker`, --backend for `default_backend`..."""
        given = self.meta["flag"] or self.meta["repeat"]
        return given or ("--no-" if self.meta["negative"] else "--") + self.name.replace("_", "-")

    @property
    def key(self) -> str:
        """Its gateway.yaml key: the flag in underscores (no_docker, backend...)."""
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def default_said(self) -> str:
        """The default as the table says it: whether a switch is given, sizes in MiB."""
        if self.kind is bool:
            return "on" if self.default != self.meta["negative"] else "off"
        if self.default in (None, ()):
            return ""
        if self.meta["metavar"] == "BYTES" and self.default >= 1 << 20 and not self.default % (1 << 20):
            return f"{self.default >> 20} MiB"
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    @property
    def metavar(self) -> str:
        """What its value is called: its choices, or its metavar, or its type."""
        choices = self.meta["choices"]
        return f"{{{','.join(choices)}}}" if choices else self.meta["metavar"] or self.kind.__name__.upper()


def _kind(hint: Any) -> type:
    """The type a field's values have: int for `int | None`, str for `tuple[str, ...]`..."""
    arguments = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return str
    return arguments[0] if arguments else hint  # type: ignore[no-any-return]


def options() -> Iterator[Option]:
    """Every declared option, in declaration order."""
    hints = typing.get_type_hints(GatewayOptions)
    for item in dataclasses.fields(GatewayOptions):
        if item.metadata.get("help"):
            factory: Any = item.default_factory
            default = item.default if item.default is not dataclasses.MISSING else factory()
            yield Option(item.name, _kind(hints[item.name]), default, dict(item.metadata))


# --- the command line -------------------------------------------------------------------------------------

def gateway_parser(prog: str = "python -m dcf_jupyter.gateway") -> argparse.ArgumentParser:
    """The gateway's flags: every option (None when not given, so gateway.yaml and the environment can fill it)
    and the few that only the command line has."""
    parser = argparse.ArgumentParser(prog=prog, description="Run a DCF gateway (foreground unless --detach).")
    parser.add_argument("--detach", "-d", action="store_true",
                        help="run in the background (its log: STATE_DIR/gateway.log)")
    for spec in options():
        said = spec.default_said
        help_ = spec.meta["help"] + (f" (default {said})" if said and spec.kind is not bool else "")
        if spec.meta["env"]:
            help_ += f"; ${spec.meta['env']} too"
        common: dict[str, Any] = {"dest": spec.name, "default": None, "help": help_}
        if spec.meta["metavar"]:
            common["metavar"] = spec.meta["metavar"]
        if spec.kind is bool:
            common.pop("metavar", None)
            parser.add_argument(spec.flag, action="store_const", const=not spec.meta["negative"], **common)
        elif spec.meta["repeat"]:
            parser.add_argument(spec.flag, action="append", **common)
        else:
            parser.add_argument(spec.flag, type=spec.kind, choices=spec.meta["choices"] or None, **common)
    parser.add_argument("--token", default=None,
                        help="the token clients must send (default: $DCF_TOKEN, else your own token, made at your "
                             "first gateway start and kept in your config dir); a token on a command line is "
                             "visible to every user in `ps`: prefer --token-file")
    parser.add_argument("--token-file", default=None, help="read the token from this file (its first line)")
    parser.add_argument("--token-fd", type=int, default=None, help=argparse.SUPPRESS)  # from spawn_gateway
    parser.add_argument("--private", action="store_true",
                        help="the token for every RPC but HealthCheck: the default (kept for older scripts)")
    return parser


def _from_environment(spec: Option) -> Any:
    raw = os.environ.get(spec.meta["env"], "").strip() if spec.meta["env"] else ""
    if not raw:
        return None
    if spec.kind in (int, float):
        try:
            return spec.kind(raw)
        except ValueError:
            raise GatewayStartError(f"${spec.meta['env']} must be a number, got {raw[:40]!r}") from None
    return raw


def options_from(args: argparse.Namespace, config: dict[str, Any] | None = None) -> GatewayOptions:
    """GatewayOptions from parsed `gateway_parser()` flags, then `config` (gateway.yaml's values, `read_config`),
    then the environment; GatewayStartError with a sentence for a value an option does not take."""
    config = config or {}
    values: dict[str, Any] = {}
    for spec in options():
        value = getattr(args, spec.name, None)
        if value is None:
            value = config.get(spec.key)
        if value is None:
            value = _from_environment(spec)
        if value is None:
            continue
        if spec.meta["repeat"]:
            value = tuple(value)
        if spec.meta["path"]:
            where = Path(str(value)).expanduser()
            value = str(where.resolve()) if spec.kind is str else where
        check = spec.meta["check"]
        problem = check(value) if check is not None else ""
        if problem:
            raise GatewayStartError(f"{spec.flag} {problem}, got {value:g}" if isinstance(value, float)
                                    else f"{spec.flag} {problem}, got {value}")
        values[spec.name] = value
    values["token"] = given_token(args, config.get("token_file"))
    values["state_dir"] = Path(values.get("state_dir") or default_state_dir()).expanduser()
    return GatewayOptions(**values)


def given_token(args: argparse.Namespace, token_file: str | None = None) -> str | None:
    """The token the user gave: an inherited fd (a parent's), --token-file (or gateway.yaml's token_file),
    --token, then $DCF_TOKEN; None when none was (the gateway then uses its owner's)."""
    if args.token_fd is not None:
        with os.fdopen(args.token_fd, encoding="utf-8") as pipe:
            return pipe.read().strip() or None
    token_file = args.token_file or token_file
    if token_file:
        try:
            token = Path(token_file).expanduser().read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise GatewayStartError(f"--token-file: cannot read {token_file} ({exc})") from None
        if not token or not token[0].strip():
            raise GatewayStartError(f"--token-file: {token_file} is empty")
        return token[0].strip()
    return args.token or os.environ.get(ENV_TOKEN) or None


def options_argv(values: GatewayOptions) -> list[str]:
    """The flags beyond host, port and state dir (`spawn_gateway` gives those) that give `values` to a gateway
    process, less the token (`spawn_gateway` hands it over a pipe: never on a command line or in an environment)
    and what only its starter can give (the lifeline's fd, the log file)."""
    argv: list[str] = []
    for spec in options():
        value = getattr(values, spec.name)
        if not spec.meta["passed"] or (value == spec.default and not spec.meta["always"]):
            continue
        if spec.kind is bool:
            argv.append(spec.flag)
        elif spec.meta["repeat"]:
            for item in value:
                argv += [spec.flag, str(item)]
        else:
            argv += [spec.flag, str(value)]
    return argv


def check_options(values: GatewayOptions) -> None:
    """Refuse what no gateway may do, before anything is created: listen beyond loopback without a token the
    user chose (and gave clients), or half a TLS configuration."""
    if not values.token and not is_loopback(values.host):
        raise GatewayStartError(
            f"refusing to listen on {values.host} without a token: anyone who reaches it could deploy code. "
            "Pass --token-file (or set DCF_TOKEN) and give clients the same token, or listen on 127.0.0.1")
    if bool(values.tls_cert) != bool(values.tls_key):
        raise GatewayStartError("TLS needs both --tls-cert and --tls-key")


# --- gateway.yaml -----------------------------------------------------------------------------------------

# Keys of gateway.yaml besides the options': a token kept in a file, and the old name of what is now the default.
EXTRA_CONFIG_KEYS = {"token_file": str, "private": bool}


def config_path() -> Path:
    """Where the gateway's config file is read from."""
    return config_dir() / GATEWAY_CONFIG


def _load(path: Path) -> dict[Any, Any]:
    import yaml  # only a process that starts a gateway reads gateway.yaml

    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise GatewayStartError(f"{path}: the file is larger than {MAX_CONFIG_BYTES // 1024} KiB")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise GatewayStartError(f"{path}: cannot read it ({exc})") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise GatewayStartError(f"{path}: not valid YAML ({str(exc).splitlines()[0] if str(exc) else 'too deep'})") \
            from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GatewayStartError(f"{path}: expected a mapping of flag names to values, got {type(data).__name__}")
    return data


def _checked(kind: type, key: str, raw: Any, path: Path, choices: tuple[str, ...] = (), many: bool = False) -> Any:
    """`raw` as an option of `kind` takes it, or a sentence naming the key and the file."""
    def wrong(expected: str) -> GatewayStartError:
        return GatewayStartError(f"{path}: {key} must be {expected}, got {raw!r}")

    if many:
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise wrong("a string or a list of strings")
        return tuple(items)
    if kind is bool:
        if not isinstance(raw, bool):
            raise wrong("true or false")
        return raw
    if kind is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise wrong("a whole number")
        return raw
    if kind is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise wrong("a number")
        return float(raw)
    if isinstance(raw, (dict, list, bool)) or raw is None:
        raise wrong("a string")
    if choices and str(raw) not in choices:
        raise wrong(f"one of {', '.join(choices)}")
    return str(raw)


def read_config(path: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """gateway.yaml's values by key (a negative switch's as the field's value: `no_docker: true` -> False), and
    warnings to show; GatewayStartError for a value an option does not take."""
    path = path or config_path()
    by_key = {spec.key: spec for spec in options() if spec.meta["yaml"]}
    values: dict[str, Any] = {}
    warnings = []
    for raw_key, raw in _load(path).items():
        key = str(raw_key).replace("-", "_")
        spec = by_key.get(key)
        if spec is not None:
            value = _checked(spec.kind, key, raw, path, spec.meta["choices"], bool(spec.meta["repeat"]))
            values[key] = (not value) if spec.meta["negative"] else value
        elif key in EXTRA_CONFIG_KEYS:
            values[key] = _checked(EXTRA_CONFIG_KEYS[key], key, raw, path)
        else:
            known = ", ".join(sorted([*by_key, *EXTRA_CONFIG_KEYS]))
            warnings.append(f"{path}: unknown key {raw_key!r} ignored (keys: {known})")
    return values, warnings


# --- the README's table -----------------------------------------------------------------------------------

def options_table() -> str:
    """Every option as a Markdown table: flag, gateway.yaml key, environment variable, default, what it does (the
    README carries it; a test keeps them equal)."""
    rows = ["| flag | gateway.yaml | environment | default | what it does |", "| --- | --- | --- | --- | --- |"]
    for spec in options():
        key = f"`{spec.key}`" if spec.meta["yaml"] else ""
        env = f"`${spec.meta['env']}`" if spec.meta["env"] else ""
        default = f"`{spec.default_said}`" if spec.default_said else ""
        flag = f"`{spec.flag} {spec.metavar}`" if spec.kind is not bool else f"`{spec.flag}`"
        rows.append(f"| {flag} | {key} | {env} | {default} | {spec.meta['help'].replace('|', '/')} |")
    return "\n".join(rows)

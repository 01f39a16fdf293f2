"""Gateway processes seen from outside: how to run one (GatewayOptions), start it in the background, find it,
stop it. Importable without the gateway server (no grpc): notebooks and the CLI use it."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..credentials import PRIVATE_FILE_MODE
from ..errors import GatewayStartError
from ..logfile import DEFAULT_BACKUPS as DEFAULT_LOG_BACKUPS
from ..logfile import DEFAULT_MAX_BYTES as DEFAULT_LOG_MAX_BYTES
from ..logfile import tail_text
from ..pids import pid_alive
from ..ports import is_loopback
from ..running import RunningGateway, find_gateway, read_gateway_file
from ..settings import (
    DEFAULT_HOST,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_PLACE_TIMEOUT,
    DEFAULT_PORT,
    DEFAULT_STREAM_WINDOW,
    ENV_HTTP_PORT,
    ENV_TOKEN,
    default_state_dir,
    max_message_size,
)

GATEWAY_LOG = "gateway.log"
LOCK_FILE = "gateway.lock"
SOCKET_DIR_FILE = "sockets.path"
SOCKET_DIR_PREFIX = "dcf-"


MIN_LOG_BYTES = 64 * 1024
DEFAULT_FLOW_WINDOW = 512 * 1024  # flat memory under many streams, full speed on loopback and LANs


@dataclass
class GatewayOptions:
    """How to run a gateway."""

    state_dir: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_message: int = DEFAULT_MAX_MESSAGE_SIZE
    default_backend: str = "local"
    ready_timeout: float = 30.0
    stream_window: int = DEFAULT_STREAM_WINDOW
    flow_window: int = DEFAULT_FLOW_WINDOW  # bytes gRPC buffers per stream; 0: gRPC's adaptive (BDP) windows
    lifeline_fd: int | None = None  # stop when it reaches EOF (an embedded gateway dies with its kernel)
    ephemeral: bool = False  # remove the state dir on the way out (an embedded gateway's temporary one)
    docker: bool = True  # offer the docker backend when a Docker daemon answers
    ray_address: str | None = None  # the ray backend's cluster (None: a local Ray, started on first use)
    place_timeout: float = DEFAULT_PLACE_TIMEOUT  # how long a Ray replica may wait for resources others hold
    gpus: str | None = None  # the GPUs the local and docker backends hand out (--gpus; None: $DCF_GPUS, else all)
    token: str | None = None  # given by the user; None: the owner's token (credentials.py). See auth.py
    open_loopback: bool = False  # on loopback, invoking, List, GetMeta, Info and /metrics without the token
    tls_cert: str | None = None  # PEM files: serve TLS instead of plaintext
    tls_key: str | None = None
    http_port: int | None = None  # the HTTP face's port: None for the one after `port` (a free one with port 0),
    # 0 for a free one, -1 for none (see http_port_for)
    cors_origins: tuple[str, ...] = ()  # web pages of these origins may call the HTTP face from a browser
    metrics: bool = True  # count calls and deploys for /metrics
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES  # each function's log, and the gateway's, rotates at this size
    log_backups: int = DEFAULT_LOG_BACKUPS  # old files of each log kept
    log_file: Path | None = None  # the gateway's own output goes here, rotated (a detached gateway's gateway.log)

    def http_port_for(self, grpc_port: int) -> int | None:
        """The port the HTTP face binds once gRPC has `grpc_port` (None: no HTTP face)."""
        if self.http_port is None:
            return 0 if self.port == 0 else grpc_port + 1
        return None if self.http_port < 0 else self.http_port

    @property
    def ray_from_start(self) -> bool:
        """Whether the gateway joins Ray as it starts (Ray is its default, or a cluster was named), not on the
        first deploy that asks for it."""
        return self.default_backend == "ray" or bool(self.ray_address)


def gateway_parser(prog: str = "python -m dcf_jupyter.gateway") -> argparse.ArgumentParser:
    """The gateway's one set of flags: `python -m dcf_jupyter.gateway` and `dcf gateway start` parse with it."""
    parser = argparse.ArgumentParser(prog=prog, description="Run a DCF gateway (foreground unless --detach).")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"0 picks a free port (default {DEFAULT_PORT})")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="registry, function sources and logs (default: $DCF_STATE_DIR or the user data dir)")
    parser.add_argument("--detach", "-d", action="store_true",
                        help="run in the background (its log: STATE_DIR/gateway.log)")
    parser.add_argument("--max-message-size", type=int, default=None,
                        help="largest request/reply in bytes (default: $DCF_MAX_MESSAGE_SIZE or 64 MiB)")
    parser.add_argument("--backend", default="local", choices=("local", "docker", "ray"),
                        help="default backend for deploys that name none (default: local)")
    parser.add_argument("--no-docker", action="store_true", help="do not offer the docker backend")
    parser.add_argument("--ray-address", default=None,
                        help="Ray cluster of the ray backend, as Ray takes it: auto, HOST:PORT or ray://HOST:10001 "
                             "(default: a local Ray, started on the first ray deploy and stopped with the gateway)")
    parser.add_argument("--place-timeout", type=float, default=DEFAULT_PLACE_TIMEOUT,
                        help="seconds a Ray deploy waits for resources other replicas hold before it fails, saying "
                             f"which (default {DEFAULT_PLACE_TIMEOUT:g})")
    parser.add_argument("--gpus", default=None, metavar="LIST",
                        help="the GPUs this gateway hands to local and docker replicas: indices like 0,1,2,3, a count "
                             "like 4 (0-3), or none (default: $DCF_GPUS, else every GPU NVML or nvidia-smi lists "
                             "that $CUDA_VISIBLE_DEVICES allows)")
    parser.add_argument("--token", default=None,
                        help="the token clients must send (default: $DCF_TOKEN, else your own token, made at your "
                             "first gateway start and kept in your config dir); a token on a command line is "
                             "visible to every user in `ps`: prefer --token-file")
    parser.add_argument("--token-file", default=None,
                        help="read the token from this file (its first line)")
    parser.add_argument("--token-fd", type=int, default=None, help=argparse.SUPPRESS)  # from spawn_gateway
    parser.add_argument("--open-loopback", action="store_true",
                        help="let clients on this machine call functions and read List, GetMeta, Info and /metrics "
                             "without the token, as DCF's original clients (which send none) need; every local "
                             "account may then use your functions (default: every RPC but HealthCheck needs the "
                             "token, loopback included)")
    parser.add_argument("--private", action="store_true",
                        help="the token for every RPC but HealthCheck: the default (kept for older scripts)")
    parser.add_argument("--tls-cert", default=None,
                        help="PEM certificate: serve TLS (clients: --tls-ca or $DCF_TLS_CA)")
    parser.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    parser.add_argument("--http-port", type=int, default=None,
                        help="the HTTP face's port (REST calls, /metrics): 0 picks a free one, -1 turns it off "
                             "(default: $DCF_HTTP_PORT, else the port after --port, e.g. 32223; a free one with "
                             "--port 0)")
    parser.add_argument("--cors-origin", action="append", default=None, metavar="ORIGIN",
                        help="let web pages of this origin (e.g. https://example.org) call the HTTP face from a "
                             "browser; repeat for more (default: none)")
    parser.add_argument("--no-metrics", action="store_true",
                        help="count nothing and serve no /metrics (they cost about a microsecond a call)")
    parser.add_argument("--stream-window", type=int, default=DEFAULT_STREAM_WINDOW,
                        help=f"calls in flight per Invokes stream before the gateway stops reading it "
                             f"(default {DEFAULT_STREAM_WINDOW})")
    parser.add_argument("--flow-window", type=int, default=DEFAULT_FLOW_WINDOW,
                        help="bytes gRPC buffers per incoming stream (0: gRPC's adaptive windows, for high-latency "
                             f"links; default {DEFAULT_FLOW_WINDOW})")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                        help="event loop (default auto: asyncio's when the default backend is ray, faster with Ray's "
                             "handles; else uvloop, faster hops to local workers, when installed)")
    parser.add_argument("--log-max-bytes", type=int, default=DEFAULT_LOG_MAX_BYTES, metavar="BYTES",
                        help="each function's log, and the gateway's, starts a new file at this size "
                             f"(default {DEFAULT_LOG_MAX_BYTES >> 20} MiB)")
    parser.add_argument("--log-backups", type=int, default=DEFAULT_LOG_BACKUPS, metavar="N",
                        help=f"old files of each log kept (default {DEFAULT_LOG_BACKUPS}): a log takes at most "
                             "(N + 1) x --log-max-bytes")
    parser.add_argument("--log-file", type=Path, default=None,
                        help="write the gateway's own output to this file, rotated as the functions' logs are "
                             "(a detached gateway's is STATE_DIR/gateway.log)")
    parser.add_argument("--lifeline-fd", type=int, default=None,
                        help="stop when this inherited fd reaches EOF (the process that started us is gone)")
    parser.add_argument("--ephemeral", action="store_true",
                        help="remove the state dir when the gateway stops (for a temporary gateway)")
    return parser


def given_token(args: argparse.Namespace) -> str | None:
    """The token the user gave: an inherited fd (a parent's), --token-file, --token, then $DCF_TOKEN; None when
    none was (the gateway then uses its owner's)."""
    if args.token_fd is not None:
        with os.fdopen(args.token_fd, encoding="utf-8") as pipe:
            return pipe.read().strip() or None
    if args.token_file:
        try:
            token = Path(args.token_file).expanduser().read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise GatewayStartError(f"--token-file: cannot read {args.token_file} ({exc})") from None
        if not token or not token[0].strip():
            raise GatewayStartError(f"--token-file: {args.token_file} is empty")
        return token[0].strip()
    return args.token or os.environ.get(ENV_TOKEN) or None


def options_from(args: argparse.Namespace) -> GatewayOptions:
    """GatewayOptions from parsed `gateway_parser()` flags (the environment fills what they leave out)."""
    for wrong, message in ((not 0 <= args.port <= 65535, f"--port must be within 0..65535, got {args.port}"),
                           (args.stream_window < 1, f"--stream-window must be at least 1, got {args.stream_window}"),
                           (args.flow_window < 0, f"--flow-window must be 0 or more, got {args.flow_window}"),
                           (args.place_timeout <= 0, f"--place-timeout must be above 0, got {args.place_timeout:g}"),
                           (args.log_max_bytes < MIN_LOG_BYTES,
                            f"--log-max-bytes must be at least {MIN_LOG_BYTES}, got {args.log_max_bytes}"),
                           (args.log_backups < 0, f"--log-backups must be 0 or more, got {args.log_backups}")):
        if wrong:
            raise GatewayStartError(message)
    token = given_token(args)
    http_port = args.http_port
    if http_port is None and os.environ.get(ENV_HTTP_PORT, "").strip():
        try:
            http_port = int(os.environ[ENV_HTTP_PORT])
        except ValueError:
            raise GatewayStartError(f"${ENV_HTTP_PORT} must be a port number, got "
                                    f"{os.environ[ENV_HTTP_PORT][:40]!r}") from None
    if http_port is not None and not -1 <= http_port <= 65535:
        raise GatewayStartError(f"--http-port must be within 0..65535 (or -1: no HTTP face), got {http_port}")
    origins = tuple(args.cors_origin or ())
    return GatewayOptions(
        state_dir=(args.state_dir or default_state_dir()).expanduser(),
        host=args.host,
        port=args.port,
        max_message=args.max_message_size or max_message_size(),
        default_backend=args.backend,
        stream_window=args.stream_window,
        flow_window=args.flow_window,
        lifeline_fd=args.lifeline_fd,
        ephemeral=args.ephemeral,
        docker=not args.no_docker,
        ray_address=args.ray_address or None,
        place_timeout=args.place_timeout,
        gpus=args.gpus,
        token=token,
        open_loopback=args.open_loopback,
        tls_cert=str(Path(args.tls_cert).resolve()) if args.tls_cert else None,
        tls_key=str(Path(args.tls_key).resolve()) if args.tls_key else None,
        http_port=http_port,
        cors_origins=origins,
        metrics=not args.no_metrics,
        log_max_bytes=args.log_max_bytes,
        log_backups=args.log_backups,
        log_file=args.log_file.expanduser() if args.log_file else None,
    )


def options_argv(options: GatewayOptions) -> list[str]:
    """The flags beyond host, port and state dir (`spawn_gateway` gives those) that give `options` to a gateway
    process, less the token (`spawn_gateway` hands it over a pipe: never on a command line or in an environment)
    and the lifeline (an fd only its parent can pass)."""
    default = GatewayOptions(state_dir=options.state_dir)
    argv = ["--max-message-size", str(options.max_message)]
    for flag, field in (("--backend", "default_backend"), ("--stream-window", "stream_window"),
                        ("--flow-window", "flow_window"), ("--tls-cert", "tls_cert"), ("--tls-key", "tls_key"),
                        ("--ray-address", "ray_address"), ("--place-timeout", "place_timeout"),
                        ("--gpus", "gpus"), ("--http-port", "http_port"), ("--log-max-bytes", "log_max_bytes"),
                        ("--log-backups", "log_backups")):
        if getattr(options, field) != getattr(default, field):
            argv += [flag, str(getattr(options, field))]
    for origin in options.cors_origins:
        argv += ["--cors-origin", origin]
    argv += ["--no-docker"] * (not options.docker) + ["--ephemeral"] * options.ephemeral
    argv += ["--open-loopback"] * options.open_loopback + ["--no-metrics"] * (not options.metrics)
    return argv


def start_own_gateway(*, default_port_taken: bool = False) -> RunningGateway:
    """Start the user's gateway in the background, in their default state dir: on 127.0.0.1:32222, or on a free
    port when another user's process holds that one (clients find it through the state dir). GatewayStartError
    when the gateway of that state dir runs but does not answer."""
    state_dir = default_state_dir()
    running = find_gateway(state_dir)
    if running is not None:
        raise GatewayStartError(f"your gateway (pid {running.pid}) at {running.address} does not answer; see "
                                f"{state_dir / GATEWAY_LOG}, or restart it with `dcf gateway stop` and "
                                "`dcf gateway start --detach`")
    return start_detached(state_dir, DEFAULT_HOST, 0 if default_port_taken else DEFAULT_PORT)[0]


def remove_left_socket_dir(state_dir: Path) -> None:
    """Remove the worker-socket temp dir the gateway of `state_dir` recorded and did not remove itself (it was
    SIGKILLed); call it only when that gateway is gone. Only a dir of ours in the temp dir is touched."""
    record = state_dir / SOCKET_DIR_FILE
    with contextlib.suppress(OSError):
        left = Path(record.read_text().strip())
        if left.parent == Path(tempfile.gettempdir()) and left.name.startswith(SOCKET_DIR_PREFIX):
            shutil.rmtree(left, ignore_errors=True)
        record.unlink()


def format_address(host: str, port: int) -> str:
    """host:port, with IPv6 hosts bracketed."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def gateway_command(state_dir: Path, host: str, port: int, extra: list[str] | None = None) -> list[str]:
    """The command line of a gateway process running in the background (its output: STATE_DIR/gateway.log)."""
    return [sys.executable, "-m", "dcf_jupyter.gateway", "--host", host, "--port", str(port),
            "--state-dir", str(state_dir), "--log-file", str(state_dir / GATEWAY_LOG), *(extra or [])]


class PendingGateway:
    """A gateway process that was spawned and may not be listening yet."""

    def __init__(self, process: subprocess.Popen[bytes], state_dir: Path, *, created: bool = False) -> None:
        self.process = process
        self.state_dir = state_dir
        self.created = created  # the state dir is new: a start that fails leaves nothing behind

    def wait(self, timeout: float = 30.0) -> RunningGateway:
        """Block until the gateway listens (it writes gateway.json) and return it; GatewayStartError otherwise."""
        log_path = self.state_dir / GATEWAY_LOG
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                tail = tail_text(log_path, 5).strip()
                last = tail.splitlines()[-1] if tail else "no output"
                self._forget()
                raise GatewayStartError(f"the gateway exited with code {code} while starting: "
                                        f"{last.removeprefix('Error: ')}")
            info = read_gateway_file(self.state_dir)
            if info and int(str(info.get("pid") or 0)) == self.process.pid:
                return RunningGateway.from_record(info, self.state_dir)
            time.sleep(0.02)
        self.process.terminate()
        raise GatewayStartError(f"the gateway did not start within {timeout:g}s; see {log_path}")

    def _forget(self) -> None:
        if self.created:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def spawn_gateway(
    state_dir: Path, host: str, port: int, *, extra: list[str] | None = None, new_session: bool = True,
    pass_fds: tuple[int, ...] = (), env: dict[str, str] | None = None, token: str | None = None,
) -> PendingGateway:
    """Start a gateway process (output in state_dir/gateway.log) without waiting for it. Its token (`token`, else
    $DCF_TOKEN of `env` or of this process; none: the gateway uses its owner's) goes over a pipe, never on its
    command line or in its environment, where the functions it runs could read it."""
    state_dir = state_dir.expanduser().resolve()
    running = find_gateway(state_dir)
    if running is not None:
        raise GatewayStartError(f"a gateway (pid {running.pid}) already serves {state_dir} at {running.address}")
    created = not state_dir.exists()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # an older, looser one: the gateway tightens and says so
    child_env = {**os.environ, **(env or {})}
    token = token or child_env.pop(ENV_TOKEN, None) or None
    child_env.pop(ENV_TOKEN, None)
    extra = list(extra or [])
    token_r = None
    if token:
        token_r, token_w = os.pipe()
        os.write(token_w, token.encode())  # a few bytes: fits the pipe's buffer, so this never blocks
        os.close(token_w)
        extra += ["--token-fd", str(token_r)]
    try:
        log_fd = os.open(state_dir / GATEWAY_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
        with os.fdopen(log_fd, "ab") as log:
            process = subprocess.Popen(
                gateway_command(state_dir, host, port, extra),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=new_session, close_fds=True,
                pass_fds=(*pass_fds, *([token_r] if token_r is not None else [])), env=child_env,
            )
    finally:
        if token_r is not None:
            os.close(token_r)
    return PendingGateway(process, state_dir, created=created)


def start_detached(
    state_dir: Path, host: str, port: int, *, extra: list[str] | None = None, timeout: float = 30.0,
    env: dict[str, str] | None = None, token: str | None = None,
) -> tuple[RunningGateway, subprocess.Popen[bytes]]:
    """Start a gateway in the background and wait until it listens (see `spawn_gateway` for `token`)."""
    pending = spawn_gateway(state_dir, host, port, extra=extra, env=env, token=token)
    return pending.wait(timeout), pending.process


def stop_gateway(state_dir: Path, timeout: float = 15.0) -> RunningGateway | None:
    """SIGTERM the gateway of `state_dir` and wait for it to exit (SIGKILL after `timeout`); None if none ran."""
    running = find_gateway(state_dir)
    if running is None:
        return None
    os.kill(running.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(running.pid):
            return running
        time.sleep(0.05)
    os.kill(running.pid, signal.SIGKILL)
    return running


def check_options(options: GatewayOptions) -> None:
    """Refuse what no gateway may do, before anything is created: listen beyond loopback without a token the
    user chose (and gave clients), or half a TLS configuration."""
    if not options.token and not is_loopback(options.host):
        raise GatewayStartError(
            f"refusing to listen on {options.host} without a token: anyone who reaches it could deploy code. "
            "Pass --token-file (or set DCF_TOKEN) and give clients the same token, or listen on 127.0.0.1")
    if bool(options.tls_cert) != bool(options.tls_key):
        raise GatewayStartError("TLS needs both --tls-cert and --tls-key")

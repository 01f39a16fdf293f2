"""Running a gateway process: bind, lock the state dir, restore functions, serve until signalled."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import IO, Any, TypeVar

import grpc

from .._version import __version__
from ..backends.base import Backend, MeshAccess
from ..backends.gpus.allocator import GpuAllocator
from ..backends.gpus.inventory import inventory as gpu_inventory
from ..backends.gpus.leases import LeaseBook
from ..backends.registry import BACKENDS, Surroundings
from ..definition.requirements import cache_root
from ..errors import ConfigError, DcfError, GatewayStartError
from ..host import logfile
from ..host.credentials import config_dir, owner_token, private_dir, tighten, token_path, write_private
from ..host.ports import format_address, port_holder
from ..host.running import (
    GATEWAY_FILE,
    LOCK_FILE,
    SOCKET_DIR_FILE,
    SOCKET_DIR_PREFIX,
    read_gateway_file,
    record_gateway,
    remove_left_socket_dir,
    withdraw_record,
)
from ..settings import grpc_options
from .announce import ENV_ANNOUNCE, announce, withdraw
from .auth import OPEN_RPCS, TokenGuard, TokenPolicy, is_loopback, server_credentials
from .core import GatewayCore
from .limits import ConnectionLimits, grpc_server_options
from .options import GatewayOptions, check_options
from .service import Gateway

GPU_LEASES = "gpu-leases"  # in the user's config dir, where the machine has no shared one (gpu_leases.py)
REPLICA_TOKEN_FILE = "replica-token"  # in the state dir
OWN_SOCKET = "gateway.sock"  # in the 0700 socket folder: the owner's tools and replicas on this machine
log = logging.getLogger("dcf.gateway")
T = TypeVar("T")
FLUSH_EVERY_S = 2.0

def _lock_state_dir(state_dir: Path) -> IO[str]:
    handle = open(state_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held open: the lock lasts as long as the gateway
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        other = read_gateway_file(state_dir) or {}
        raise GatewayStartError(
            f"another gateway (pid {other.get('pid', '?')}, {other.get('address', '?')}) is using {state_dir}; "
            "stop it with `dcf gateway stop` or pass another --state-dir"
        ) from None
    return handle


def _fresh_socket_dir(state_dir: Path) -> Path:
    """A new temp dir for worker sockets, after removing the one a killed gateway of this state dir left."""
    # Sockets live in the temp dir, not the state dir, because a Unix socket path is capped at 107 bytes.
    # A gateway that was SIGKILLed never ran its cleanup; the state-dir lock proves it is gone.
    remove_left_socket_dir(state_dir)
    socket_dir = Path(tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX))
    (state_dir / SOCKET_DIR_FILE).write_text(str(socket_dir))
    return socket_dir


def _reachable(address: str) -> str:
    """`address` as a client dials it: a wildcard host (0.0.0.0, ::) becomes this machine's loopback."""
    host, _, port = address.rpartition(":")
    return f"127.0.0.1:{port}" if host.strip("[]") in ("0.0.0.0", "::", "") else address


def _replica_token(state_dir: Path) -> str:
    """The gateway's replica token (invoke-only: auth.py), made once per state dir and kept there (0600), so
    replicas that outlive a gateway restart, containers say, still reach the next one."""
    path = state_dir / REPLICA_TOKEN_FILE
    with contextlib.suppress(OSError, UnicodeDecodeError):
        found = path.read_text(encoding="utf-8").strip()
        if found:
            return found
    made = secrets.token_urlsafe(32)
    write_private(path, made + "\n")
    return made


def _watch_lifeline(loop: asyncio.AbstractEventLoop, fd: int, stop: asyncio.Event) -> None:
    """Set `stop` when the other end of the pipe `fd` closes."""

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            log.info("the process that started this gateway is gone")
            stop.set()

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)


def _gpu_allocator(options: GatewayOptions) -> GpuAllocator:
    """This machine's GPUs as `--gpus`/$DCF_GPUS and $CUDA_VISIBLE_DEVICES leave them to this gateway, booked in
    the machine's lease folder beside every user's gateways' (else in the user's own, which the log says);
    GatewayStartError for a list that names none of them."""
    try:
        devices = gpu_inventory(options.gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
    except ConfigError as exc:
        raise GatewayStartError(str(exc)) from None
    if not devices.devices:
        return GpuAllocator(devices, None)  # nothing to book
    book, problem = LeaseBook.for_this_machine(config_dir() / GPU_LEASES)
    if problem:
        log.warning("GPU grants are booked among your own gateways only, not other users': %s", problem)
    else:
        log.info("GPU grants are booked with every user's gateways in %s", book.folder)
    return GpuAllocator(devices, book)


async def _make_backends(options: GatewayOptions, state_dir: Path, socket_dir: Path,
                         gpus: GpuAllocator) -> tuple[dict[str, Backend], dict[str, Callable[[], Backend]],
                                                      dict[str, str]]:
    """Each backend of the registry, as it says: made now (one that may be unreachable, such as Docker, is
    missing with the reason a deploy naming it will give), or on the first deploy that names it unless the
    gateway starts with it. Returns those made, those to make on demand, and why each missing one is."""
    around = Surroundings(state_dir, socket_dir, options.max_message, gpus, cluster_address=options.ray_address,
                          place_timeout=options.place_timeout)
    backends: dict[str, Backend] = {}
    on_demand: dict[str, Callable[[], Backend]] = {}
    missing: dict[str, str] = {}
    for kind in BACKENDS:
        if kind.off_option and not getattr(options, kind.off_option):
            missing[kind.name] = f"it was started with --no-{kind.off_option.replace('_', '-')}"
            continue
        if kind.starts == "on-first-deploy" and not options.starts_with_gateway(kind):
            on_demand[kind.name] = functools.partial(kind.make, around)
            continue
        try:
            backends[kind.name] = await asyncio.to_thread(kind.make, around)
        except DcfError as exc:
            if kind.starts != "if-reachable":
                raise
            log.info("%s backend unavailable: %s", kind.name, exc)
            missing[kind.name] = f"when it started, {exc}"
    if options.default_backend not in backends:
        raise GatewayStartError(f"the default backend {options.default_backend!r} is not available "
                                f"(available: {', '.join(backends)})")
    return backends, on_demand, missing


def _server(options: GatewayOptions, limits: ConnectionLimits) -> tuple[grpc.aio.Server, grpc.ServerCredentials | None]:
    """A gRPC server (the token check goes with its handlers: `TokenGuard`), and TLS credentials when asked for."""
    credentials = None
    if options.tls_cert and options.tls_key:
        try:
            credentials = server_credentials(options.tls_cert, options.tls_key)
        except ValueError as exc:
            raise GatewayStartError(f"TLS: {exc}") from None
    # One gateway per port: grpcio turns SO_REUSEPORT on by default, and a second server on the port would then
    # share its calls without a word.
    server_options = [*grpc_options(options.max_message), ("grpc.so_reuseport", 0), *grpc_server_options(limits)]
    if options.flow_window > 0:
        # gRPC grows each stream's receive window with its bandwidth estimate (BDP probing), so
        # fast senders park megabytes per stream in the gateway; a fixed window keeps memory flat.
        server_options += [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", options.flow_window)]
    return grpc.aio.server(options=server_options), credentials


def _cannot_listen(options: GatewayOptions) -> GatewayStartError:
    """Why the port could not be bound, naming who holds it when this machine says."""
    address = format_address(options.host, options.port)
    holder = port_holder(options.host, options.port) if options.port else ""
    if holder:
        return GatewayStartError(f"cannot listen on {address}: port {options.port} is held by {holder}; pick "
                                 "another with --port (0 picks a free one), or stop that process")
    return GatewayStartError(f"cannot listen on {address}: the port is in use or the address is not this "
                             "machine's (is a gateway already running? try `dcf gateway status`)")


def _private_state(state_dir: Path) -> list[str]:
    """Make the state dir and the caches owner-only (tightening what an older version left looser); returns
    what was tightened."""
    notes = private_dir(state_dir)
    for child in (*state_dir.iterdir(), *(state_dir / "logs").glob("*")):
        notes += tighten(child)
    cache = cache_root().parent  # requirement installs and model caches of this user's functions
    notes += private_dir(cache)
    for child in cache.iterdir():
        notes += tighten(child)
    return notes


async def run_gateway(options: GatewayOptions) -> None:
    """Serve until SIGTERM/SIGINT, the lifeline closing, or the task being cancelled."""
    os.umask(0o077)  # everything this process and its workers write is its owner's alone
    check_options(options)  # refuse a bad configuration before touching the state dir
    logfile.configure(options.log_max_bytes, options.log_backups)
    try:
        token = options.token or owner_token()
    except OSError as exc:
        raise GatewayStartError(f"cannot make or read your token in {token_path().parent}: {exc}") from None
    gpus = _gpu_allocator(options)
    limits = ConnectionLimits.for_this_process()
    server, credentials = _server(options, limits)
    state_dir = options.state_dir.expanduser().resolve()
    tightened = _private_state(state_dir)
    lock = _lock_state_dir(state_dir)
    socket_dir = _fresh_socket_dir(state_dir)
    try:
        backends, on_demand, missing = await _make_backends(options, state_dir, socket_dir, gpus)
        gateway = Gateway(GatewayCore(
            state_dir,
            backends,
            missing=missing,
            default_backend=options.default_backend,
            on_demand=on_demand,
            max_message=options.max_message,
            ready_timeout=options.ready_timeout,
            stream_window=options.stream_window,
            gpus=gpus,
            metrics=options.metrics,
        ))
        replica_token = _replica_token(state_dir)
        policy = TokenPolicy(token, options.open_loopback, replica_token, loopback=is_loopback(options.host))
        server.add_generic_rpc_handlers((TokenGuard(gateway.rpc_handlers(), policy),))
        bind = format_address(options.host, options.port)
        try:
            port = server.add_secure_port(bind, credentials) if credentials else server.add_insecure_port(bind)
        except RuntimeError:
            port = 0
        if port == 0:
            raise _cannot_listen(options)
        # The owner's tools (found through this gateway's record) and the replicas on this machine reach it over a
        # Unix socket in its 0700 socket folder: nobody else can connect there or stand in its place, and it needs
        # no TLS; the same policy guards it.
        own_socket = socket_dir / OWN_SOCKET
        if server.add_insecure_port(f"unix:{own_socket}") == 0:
            raise GatewayStartError(f"cannot listen on {own_socket}")
        gateway.core.mesh = MeshAccess(f"unix:{own_socket}", replica_token)
        gateway.core.policy = policy
        for note in tightened:
            log.warning("%s", note)
        for warning in gateway.registry.load():
            log.warning("%s", warning)
        await server.start()
        address = format_address(options.host, port)
        gateway.core.address = address
        if credentials is None:  # cluster replicas reach it over TCP (a TLS gateway: not yet, they lack its CA)
            gateway.core.cluster_mesh = MeshAccess(_reachable(address), replica_token)
        http_runner, http_address = await _http_face(gateway, policy, options, port, limits)
        gateway.core.http_address = http_address
        info = {"pid": os.getpid(), "address": address, "state_dir": str(state_dir),
                "started": time.time(), "version": __version__, "tls": credentials is not None,
                "private": not options.open_loopback, "http_address": http_address, "socket": str(own_socket)}
        write_private(state_dir / GATEWAY_FILE, json.dumps(info))
        record = record_gateway(info)
        announced = _announce(address, token, state_dir)
        gpus.label = _gpu_label(address)
        log.info("GPUs: %s", gpus.inventory.describe())
        log.info("Limits: %s", limits.describe())
        log.info("DCF gateway %s listening on %s%s%s, %s (state dir %s)", __version__, address,
                 " with TLS" if credentials else "", f", HTTP on {http_address}" if http_address else "",
                 "calls, List, GetMeta, Info and /metrics open to this machine (--open-loopback)"
                 if policy.open != OPEN_RPCS else "the token required for every call",
                 state_dir)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if options.lifeline_fd is not None:
            _watch_lifeline(loop, options.lifeline_fd, stop)

        async def flush_counters() -> None:
            while True:
                await asyncio.sleep(FLUSH_EVERY_S)
                await gateway.registry.flush_off_loop()

        restoring = asyncio.create_task(gateway.restore())
        flushing = asyncio.create_task(flush_counters())
        try:
            await stop.wait()
        finally:
            log.info("stopping")
            for task in (restoring, flushing):
                task.cancel()
            if http_runner is not None:
                await http_runner.cleanup()
            await server.stop(grace=1.0)
            await gateway.close()
            with contextlib.suppress(FileNotFoundError):
                (state_dir / GATEWAY_FILE).unlink()
            withdraw_record(record)
            if announced is not None:
                withdraw(announced)
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (state_dir / SOCKET_DIR_FILE).unlink()
        lock.close()
        if options.ephemeral:
            shutil.rmtree(state_dir, ignore_errors=True)


async def _http_face(gateway: Gateway, policy: TokenPolicy, options: GatewayOptions, grpc_port: int,
                     limits: ConnectionLimits) -> tuple[Any, str]:
    """Start the HTTP face beside the gRPC port (see http.py): its runner and address, (None, "") without one.
    A port taken is one sentence when it was asked for; the default one falls back to a free port."""
    port = options.http_port_for(grpc_port)
    if port is None:
        return None, ""
    from .http import HttpFace
    from .http_server import serve_http, tls_context

    # A TLS gateway serves HTTPS with the same certificate (check_options has read both files already).
    tls = tls_context(options.tls_cert, options.tls_key) if options.tls_cert and options.tls_key else None

    face = HttpFace(gateway, policy, gateway.core.metrics, max_message=options.max_message,
                    cors_origins=options.cors_origins, loopback=is_loopback(options.host))
    try:
        runner, bound = await serve_http(face, options.host, port, tls, limits)
    except OSError as exc:
        if options.http_port is not None and options.http_port > 0:
            holder = port_holder(options.host, port)
            raise GatewayStartError(f"cannot serve HTTP on {format_address(options.host, port)}: "
                                    f"{(holder and f'held by {holder}') or exc.strerror}; pick another with "
                                    "--http-port (0: a free one, -1: none)") from None
        runner, bound = await serve_http(face, options.host, 0, tls, limits)
        log.warning("HTTP port %d is taken; the HTTP face listens on %s instead", port,
                    format_address(options.host, bound))
    return runner, format_address(options.host, bound)


def _gpu_label(address: str) -> str:
    """Who holds a GPU this gateway granted, as the user's other gateways name it: a kernel's notebook, else the
    gateway's address."""
    with contextlib.suppress(ValueError, TypeError):
        notebook = dict(json.loads(os.environ.get(ENV_ANNOUNCE) or "{}")).get("notebook")
        if notebook:
            return f"notebook {notebook}"
    return f"gateway {address} (pid {os.getpid()})"


def _announce(address: str, token: str, state_dir: Path) -> Path | None:
    """Announce this gateway to the JupyterLab panel when a kernel started it to ($DCF_ANNOUNCE says whose)."""
    about = os.environ.get(ENV_ANNOUNCE)
    if not about:
        return None
    try:
        return announce(address, token, state_dir, dict(json.loads(about)))
    except (OSError, ValueError, TypeError) as exc:  # the panel will not list it; the kernel still has it
        log.warning("could not announce this gateway to JupyterLab: %s", exc)
        return None


def loop_for(options: GatewayOptions) -> str:
    """The event loop a gateway runs on: with "auto", asyncio's for a gateway that serves Ray (a call through
    Serve's handle took ~0.15 ms less on it than on uvloop: 3.41 vs 3.57 ms p50, alternating, same cluster),
    else uvloop when installed (its hops to local workers took ~0.05 ms less: 0.78 vs 0.83 ms)."""
    if options.loop == "auto" and any(kind.prefers_asyncio and options.starts_with_gateway(kind)
                                      for kind in BACKENDS):
        return "asyncio"
    return options.loop


def run_event_loop(coro: Coroutine[Any, Any, T], loop: str = "auto") -> T:
    """Run `coro` on uvloop when asked (or, with "auto", when installed), else on asyncio's loop; its result."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop in ("auto", "uvloop"):
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            if loop == "uvloop":
                raise GatewayStartError("--loop uvloop asked for, but uvloop is not installed") from None
    if factory is None:
        return asyncio.run(coro)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)
    loop_ = factory()
    try:
        asyncio.set_event_loop(loop_)
        return loop_.run_until_complete(coro)
    finally:
        loop_.close()

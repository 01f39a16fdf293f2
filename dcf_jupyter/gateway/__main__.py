"""python -m dcf_jupyter.gateway: run a gateway in the foreground (what `dcf gateway start` runs)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any
from collections.abc import Callable, Coroutine

from ..settings import ENV_TOKEN, DEFAULT_HOST, DEFAULT_PORT, default_state_dir, max_message_size
from .app import DEFAULT_FLOW_WINDOW, DEFAULT_STREAM_WINDOW, GatewayOptions, GatewayStartError, run_gateway


def run_event_loop(coro: Coroutine[Any, Any, None], loop: str = "auto") -> None:
    """Run `coro` on uvloop when asked (or, with "auto", when installed), else on asyncio's loop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop in ("auto", "uvloop"):
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            if loop == "uvloop":
                raise GatewayStartError("--loop uvloop asked for, but uvloop is not installed") from None
    if factory is None:
        asyncio.run(coro)
    elif sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(coro)
    else:
        loop_ = factory()
        try:
            asyncio.set_event_loop(loop_)
            loop_.run_until_complete(coro)
        finally:
            loop_.close()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m dcf_jupyter.gateway", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--max-message-size", type=int, default=max_message_size())
    parser.add_argument("--backend", default="local", help="default backend for deploys that name none")
    parser.add_argument("--stream-window", type=int, default=DEFAULT_STREAM_WINDOW,
                        help="calls in flight per Invokes stream before the gateway stops reading it")
    parser.add_argument("--flow-window", type=int, default=DEFAULT_FLOW_WINDOW,
                        help="bytes gRPC buffers per incoming stream (0: gRPC's adaptive windows, for slow links)")
    parser.add_argument("--lifeline-fd", type=int, default=None,
                        help="stop when this inherited fd reaches EOF (the process that started us is gone)")
    parser.add_argument("--ephemeral", action="store_true",
                        help="remove the state dir when the gateway stops (for a temporary gateway)")
    parser.add_argument("--no-docker", action="store_true", help="do not offer the docker backend")
    parser.add_argument("--token", default=None,
                        help="require this token (default: $DCF_TOKEN); needed to listen beyond loopback")
    parser.add_argument("--tls-cert", default=None, help="PEM certificate: serve TLS (with --tls-key)")
    parser.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                        help="event loop: uvloop (faster hops) when installed, else asyncio")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    options = GatewayOptions(
        state_dir=args.state_dir or default_state_dir(),
        host=args.host,
        port=args.port,
        max_message=args.max_message_size,
        default_backend=args.backend,
        stream_window=args.stream_window,
        flow_window=args.flow_window,
        lifeline_fd=args.lifeline_fd,
        ephemeral=args.ephemeral,
        docker=not args.no_docker,
        token=args.token or os.environ.get(ENV_TOKEN) or None,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
    try:
        run_event_loop(run_gateway(options), args.loop)
    except GatewayStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

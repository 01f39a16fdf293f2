"""The gateway's command line (`python -m dcf_jupyter.gateway`, `dcf gateway start`): parse its options (flags,
gateway.yaml, the environment: `gateway.options`), then start one in the background or serve in this process."""

from __future__ import annotations

import logging
import sys

from ..errors import GatewayStartError
from ..gateway.options import (
    GatewayOptions,
    check_options,
    gateway_parser,
    options_argv,
    options_from,
    read_config,
)
from ..host import logfile
from ..host.running import GATEWAY_LOG, find_gateway
from .control import start_detached


def gateway_command_line(argv: list[str] | None = None, prog: str = "python -m dcf_jupyter.gateway") -> int:
    """Parse the gateway's flags (gateway.yaml and the environment fill what they leave out); serve until
    SIGTERM/SIGINT, or with --detach start one in the background."""
    parser = gateway_parser(prog)
    try:
        args = parser.parse_args(argv)
        config, warnings = read_config()
        for warning in warnings:
            print(f"Warning: {warning}", file=sys.stderr)
        given = sys.argv[1:] if argv is None else argv
        if args.token and any(flag == "--token" or flag.startswith("--token=") for flag in given):
            print("Warning: --token on the command line is visible to every user of this machine (ps); "
                  "use --token-file FILE or $DCF_TOKEN", file=sys.stderr)
        options = options_from(args, config)
        if args.detach:
            return _detach(options)
    except GatewayStartError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    logfile.configure(options.log_max_bytes, options.log_backups)
    finish = logfile.capture_output(options.log_file) if options.log_file else None
    try:
        return _serve(options)
    finally:
        if finish is not None:
            finish()


def _serve(options: GatewayOptions) -> int:
    """Serve in this process until stopped; 1 (said on stderr) when the gateway cannot start."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    from ..gateway.app import loop_for, run_event_loop, run_gateway  # the server: loaded only to serve

    try:
        run_event_loop(run_gateway(options), loop_for(options))
    except GatewayStartError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _moved_http(options: GatewayOptions, address: str, http_address: str) -> str:
    """A line saying where the HTTP face listens when it is not where it was asked to (its port was taken), or
    '' when it is."""
    port = int(address.rsplit(":", 1)[1])
    asked = options.http_port_for(port)
    if not http_address or not asked or http_address.endswith(f":{asked}"):
        return ""
    return (f"HTTP on {http_address}: port {asked} was taken (`dcf gateway address --http` prints the address, "
            "for scripts)")


def _detach(options: GatewayOptions) -> int:
    running = find_gateway(options.state_dir.resolve())
    if running is not None:
        print(f"A gateway is already running (pid {running.pid}) on {running.address}.")
        return 0
    check_options(options)  # a start refused for its flags creates nothing
    running, _ = start_detached(options.state_dir, options.host, options.port, extra=options_argv(options),
                                token=options.token)
    print(f"DCF gateway started (pid {running.pid}) on {running.address}")
    moved = _moved_http(options, running.address, running.http_address)
    if moved:
        print(moved)
    print(f"State: {running.state_dir}  Log: {running.state_dir / GATEWAY_LOG}")
    return 0

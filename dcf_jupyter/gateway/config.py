"""gateway.yaml: the owner's standing choices for every gateway they start, as defaults of the gateway's flags.

    # ~/.config/dcf-jupyter/gateway.yaml  ($DCF_CONFIG_DIR/gateway.yaml)
    open_loopback: true    # --open-loopback: DCF's original clients (no token) may call functions on loopback
    port: 32222
    max_message_size: 134217728

A key is a flag's name (dashes or underscores); flags on the command line win. Keys that only make sense for one
start (--detach, --state-dir, --ephemeral, the inherited fds) and --token (a secret: use token_file) are not
accepted. Unknown keys warn; a wrong type stops the start with a sentence naming the key and the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from ..credentials import config_dir
from ..errors import GatewayStartError

GATEWAY_CONFIG = "gateway.yaml"
MAX_CONFIG_BYTES = 64 * 1024
CONFIG_KEYS = frozenset({"host", "port", "max_message_size", "backend", "no_docker", "ray_address", "tls_cert",
                         "tls_key", "stream_window", "flow_window", "loop", "private", "token_file", "place_timeout",
                         "gpus", "http_port", "no_metrics", "open_loopback", "log_max_bytes", "log_backups"})


def config_path() -> Path:
    """Where the gateway's config file is read from."""
    return config_dir() / GATEWAY_CONFIG


def _load(path: Path) -> dict[str, Any]:
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


def _value(action: argparse.Action, key: str, raw: Any, path: Path) -> Any:
    def wrong(expected: str) -> GatewayStartError:
        return GatewayStartError(f"{path}: {key} must be {expected}, got {raw!r}")

    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(raw, bool):
            raise wrong("true or false")
        return raw
    if action.type is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise wrong("a whole number")
        return raw
    if action.type is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise wrong("a number")
        return float(raw)
    if isinstance(raw, (dict, list, bool)) or raw is None:
        raise wrong("a string")
    value = str(raw)
    if action.choices and value not in action.choices:
        raise wrong(f"one of {', '.join(map(str, action.choices))}")
    return value


def apply_config(parser: argparse.ArgumentParser, path: Path | None = None) -> list[str]:
    """Set `parser`'s defaults from the config file (if there is one); returns warnings to show."""
    path = path or config_path()
    data = _load(path)
    actions = {action.dest: action for action in parser._actions}
    defaults, warnings = {}, []
    for raw_key, raw in data.items():
        key = str(raw_key).replace("-", "_")
        if key not in CONFIG_KEYS or key not in actions:
            warnings.append(f"{path}: unknown key {raw_key!r} ignored (keys: {', '.join(sorted(CONFIG_KEYS))})")
            continue
        defaults[key] = _value(actions[key], key, raw, path)
    parser.set_defaults(**defaults)
    return warnings

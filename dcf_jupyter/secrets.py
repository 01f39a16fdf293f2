"""Named secrets on the gateway, from Python (the CLI's `dcf secret`, the notebook's `%dcf secret`).

    from dcf_jupyter import secrets
    secrets.create("openai-key", {"OPENAI_API_KEY": key})      # or env_file=".env", files=["cert.pem"]
    secrets.list()                                             # names, keys and users, never values
    secrets.delete("openai-key")

A function names them in its config.yaml (`secrets: [openai-key]`); its replicas read
$DCF_SECRETS_DIR/openai-key/OPENAI_API_KEY, or the variable too with `secrets_as_env: true`.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from pathlib import Path

from .client._api import get_client
from .client._core import SecretInfo
from .definition.secret_refs import gather_values

__all__ = ["SecretInfo", "create", "delete", "list"]


def create(name: str, values: dict[str, str | bytes] | None = None, *, env_file: str | Path | None = None,
           files: Iterable[str] = (), gateway: str | None = None) -> str:
    """Create or replace secret `name` from `values`, a .env file and/or files (KEY=PATH or PATH); what the
    gateway did, in a line (a replaced secret restarts the functions that use it)."""
    gathered: dict[str, str | bytes] = dict(gather_values(env_files=[env_file] if env_file else [], files=files))
    gathered.update(values or {})
    return get_client(gateway).create_secret(name, gathered)


def list(*, gateway: str | None = None) -> builtins.list[SecretInfo]:
    """The gateway's secrets: names, keys and the functions that use them, never values."""
    return get_client(gateway).list_secrets()


def delete(name: str, *, gateway: str | None = None) -> str:
    """Delete secret `name` (refused while a deployed function uses it)."""
    return get_client(gateway).delete_secret(name)

"""Named secrets, kept by the gateway: one owner-only file per secret in `state_dir/secrets/` (0700 folder, 0600
files, written atomically). Values are read back only to hand them to the replicas of functions that name them;
nothing else (registry.json, logs, List, GetMeta, the panel) ever holds more than a secret's name and keys."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..definition.secret_refs import validate_secret_name, validate_secret_values
from ..host.credentials import private_dir, write_private

SECRETS_DIR = "secrets"


class SecretMissing(KeyError):
    """A function names a secret the gateway does not hold."""


@dataclass(frozen=True)
class SecretSummary:
    """What may be shown of a secret: its name, keys and when it was last written, never its values."""

    name: str
    keys: tuple[str, ...]
    updated: float


class SecretStore:
    """The gateway's secrets on disk."""

    def __init__(self, state_dir: Path) -> None:
        self.folder = state_dir / SECRETS_DIR

    def _path(self, name: str) -> Path:
        return self.folder / f"{validate_secret_name(name)}.json"

    def put(self, name: str, values: dict[str, bytes]) -> bool:
        """Create or replace secret `name` with exactly `values`; True when it replaced one (a rotation)."""
        validate_secret_values(name, values)
        private_dir(self.folder)
        path = self._path(name)
        existed = path.exists()
        document = {"name": name, "updated": time.time(),
                    "values": {k: base64.b64encode(v).decode("ascii") for k, v in sorted(values.items())}}
        write_private(path, json.dumps(document))
        return existed

    def get(self, name: str) -> dict[str, bytes]:
        """Secret `name`'s keys and values; SecretMissing if there is none."""
        document = self._read(self._path(name))
        if document is None:
            raise SecretMissing(name)
        return {k: base64.b64decode(v) for k, v in document["values"].items()}

    def delete(self, name: str) -> bool:
        """Remove secret `name`; False if there was none."""
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            return False
        return True

    def summaries(self) -> list[SecretSummary]:
        """Every secret, as may be shown: names, keys and times, by name."""
        if not self.folder.is_dir():
            return []
        found = []
        for path in sorted(self.folder.glob("*.json")):
            document = self._read(path)
            if document is not None:
                found.append(SecretSummary(document["name"], tuple(sorted(document["values"])),
                                           float(document.get("updated", 0.0))))
        return found

    @staticmethod
    def _read(path: Path) -> dict | None:
        """A secret's document, None if missing or unreadable (a damaged file is skipped, never half-used)."""
        with contextlib.suppress(FileNotFoundError):
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
                for value in document["values"].values():
                    base64.b64decode(value, validate=True)
                return document if isinstance(document.get("name"), str) else None
            except (OSError, ValueError, KeyError, TypeError, AttributeError, binascii.Error):
                return None
        return None

"""The gateway's persistent record of deployed functions (registry.json in the state dir)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REGISTRY_FILE = "registry.json"
FORMAT_VERSION = 1


@dataclass
class FunctionRecord:
    """What the gateway remembers of a deployed function besides its config.yaml (which stays in the revision's
    folder and is read again at a restart): the deploy's own choices, and its counters."""

    name: str
    backend: str
    revision: int
    replicas: int = 1
    image: str = ""
    env: dict[str, str] = field(default_factory=dict)  # the deploy request's EnvVars, over config.yaml's
    secrets: list[str] = field(default_factory=list)  # the deploy request's Secrets (names), beside config.yaml's
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    invocations: int = 0
    cold_starts: int = 0  # replica starts that a call at 0 replicas waited for (autoscaling)
    last_cold_start_s: float = 0.0
    last_cold_start_at: float = 0.0
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FunctionRecord:
        """Rebuild from registry.json, ignoring fields this version does not know."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


class Registry:
    """Function records, loaded from and saved to `state_dir/registry.json` (atomically)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / REGISTRY_FILE
        self.records: dict[str, FunctionRecord] = {}
        self._dirty = False
        # Snapshots are numbered as they are taken (on the event loop); a write never replaces a newer one's, so
        # a periodic flush written in a thread cannot undo a deploy's save that overtook it.
        self._taken = 0
        self._written = 0
        self._write_lock = threading.Lock()

    def load(self) -> list[str]:
        """Read the file if there is one; returns warnings about records that could not be read."""
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            broken = self.path.with_suffix(f".broken-{int(time.time())}.json")
            self.path.replace(broken)
            return [f"{self.path} was unreadable ({exc}); moved it to {broken.name} and started empty"]
        warnings = []
        for name, raw in (data.get("functions") or {}).items():
            try:
                self.records[name] = FunctionRecord.from_dict(raw)
            except TypeError as exc:
                warnings.append(f"skipped function {name!r} in {self.path.name}: {exc}")
        return warnings

    def save(self) -> None:
        """Write every record now (a deploy's, delete's or scale's change: before its reply goes out)."""
        self.write(*self.snapshot())

    def snapshot(self) -> tuple[int, str]:
        """Every record as registry.json's text, numbered (cheap: take it on the event loop, `write` it in a
        thread)."""
        data = {"version": FORMAT_VERSION, "functions": {n: asdict(r) for n, r in sorted(self.records.items())}}
        self._taken += 1
        self._dirty = False
        return self._taken, json.dumps(data, indent=1, sort_keys=True)

    def write(self, number: int, text: str) -> None:
        """Write a snapshot (from any thread), unless a newer one was written already."""
        with self._write_lock:
            if number < self._written:
                return
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(self.path)
            self._written = number

    def put(self, record: FunctionRecord) -> None:
        """Add or replace a record and save."""
        record.updated = time.time()
        self.records[record.name] = record
        self.save()

    def remove(self, name: str) -> None:
        """Forget a function and save."""
        if self.records.pop(name, None) is not None:
            self.save()

    def count(self, record: FunctionRecord, calls: int = 1) -> None:
        """Add invocations; saved by the next `flush` (not per call: that is the hot path)."""
        record.invocations += calls
        self._dirty = True

    def flush(self) -> None:
        """Save if counters changed since the last save."""
        if self._dirty:
            self.save()

    async def flush_off_loop(self) -> None:
        """`flush`, its file written in a thread: the event loop does not wait on the disk every few seconds."""
        if self._dirty:
            number, text = self.snapshot()
            await asyncio.to_thread(self.write, number, text)

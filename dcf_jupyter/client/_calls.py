"""Spawned calls as a caller holds them: `FunctionCall` (an id, whose result the gateway keeps) and `CallStatus`.

    job = client.spawn("detect", photo)          # returns at once; the gateway runs it
    job.id                                      # 'fc-...': keep it, the kernel may restart
    FunctionCall.from_id(job.id).get(timeout=60)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ClientTimeout, DcfError
from ..protocol import gateway_pb2 as pb

WAIT_STEP_S = 30.0  # one GetCall waits at most this long (the gateway answers sooner when the call finishes)
FINISHED = frozenset({"done", "failed", "cancelled"})


class CallsClient(Protocol):
    """What a FunctionCall asks of its client (_core's Client)."""

    def call_status(self, call_id: str, *, wait: float = 0.0) -> CallStatus: ...

    def call_results(self, call_id: str, *, single: bool = False) -> Iterator[Any]: ...

    def cancel_call(self, call_id: str) -> CallStatus: ...


_client_for: Callable[[str | None], CallsClient] | None = None


def use_clients(client_for: Callable[[str | None], CallsClient]) -> None:
    """How `FunctionCall.from_id` finds a gateway's client when given none (_api's get_client: shared clients)."""
    global _client_for
    _client_for = client_for


@dataclass(frozen=True)
class CallStatus:
    """How a spawned call stands: its state ("queued", "running", "done", "failed", "cancelled") and counts."""

    id: str
    function: str
    state: str
    total: int
    done: int
    failed: int
    created: float
    finished: float
    single: bool
    error: str = ""

    @property
    def is_finished(self) -> bool:
        """Whether it will not change any more."""
        return self.state in FINISHED

    def describe(self) -> str:
        """One line: 'fc-… (detect): running, 40 of 100 done, 2 failed'."""
        counts = f"{self.done} of {self.total} done" + (f", {self.failed} failed" if self.failed else "")
        why = f": {self.error}" if self.error else ""
        return f"{self.id} ({self.function}): {self.state}, {counts}{why}"

    @classmethod
    def from_pb(cls, info: pb.CallInfo) -> CallStatus:
        return cls(info.Id, info.Function, info.State, info.Total, info.Done, info.Failed, info.Created,
                   info.Finished, info.Single, info.Error)


class FunctionCall:
    """A call the gateway runs on its own (`spawn`, `spawn_map`): it goes on when the kernel that spawned it
    stops, and its result is kept (24 h) for whoever holds its id."""

    def __init__(self, client: CallsClient, call_id: str) -> None:
        self.client = client
        self.id = call_id

    @classmethod
    def from_id(cls, call_id: str, *, gateway: str | None = None, client: CallsClient | None = None
                ) -> FunctionCall:
        """The spawned call with this id, on `client` (else the gateway resolved as for `call`)."""
        if client is None:
            assert _client_for is not None, "dcf_jupyter.client sets it on import"
            client = _client_for(gateway)
        return cls(client, call_id)

    def status(self, wait: float = 0.0) -> CallStatus:
        """How it stands now (or once it finished, waiting up to `wait` seconds)."""
        return self.client.call_status(self.id, wait=wait)

    def wait(self, timeout: float | None = None) -> CallStatus:
        """Until it finished (its final standing), or ClientTimeout after `timeout` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = WAIT_STEP_S if deadline is None else min(WAIT_STEP_S, deadline - time.monotonic())
            status = self.status(wait=max(left, 0.0))
            if status.is_finished:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise ClientTimeout(f"{status.describe()}: not finished within {timeout:g} s; ask again later "
                                    f"(`.get()`, FunctionCall.from_id({self.id!r}) after a restart, `dcf call get "
                                    f"{self.id}`)", function=status.function)

    def get(self, timeout: float | None = None, *, return_exceptions: bool = False) -> Any:
        """Its result, waiting up to `timeout` seconds (None: as long as it runs): a spawned call's value (its
        failure raised), a spawned map's list of values in input order (a failed input raised, or in its place
        with `return_exceptions=True`). ClientTimeout when it is still running then."""
        status = self.wait(timeout)
        if status.state in ("failed", "cancelled"):
            raise DcfError(status.describe(), function=status.function)
        results = list(self.client.call_results(self.id, single=status.single))
        if status.single:
            [result] = results
            if isinstance(result, DcfError):
                raise result
            return result
        for result in results:
            if isinstance(result, DcfError) and not return_exceptions:
                raise result
        return results

    def cancel(self) -> CallStatus:
        """Stop it: inputs not answered yet are not called."""
        return self.client.cancel_call(self.id)

    def __repr__(self) -> str:
        return f"FunctionCall({self.id!r})"

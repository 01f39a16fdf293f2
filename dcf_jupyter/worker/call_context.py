"""The call a replica's Handler is answering now, as far as calls it makes to other functions need to know
(`dcf_jupyter.mesh`): the deadline it must answer by, how deep it is in a chain of function calls, and which
calls wait on it."""

from __future__ import annotations

import contextvars
import itertools
import secrets
import time
from dataclasses import dataclass, field

# Ids of the calls this process answers: random per process, so two replicas' ids do not meet.
_ids = itertools.count(secrets.randbits(62))


def new_call_id() -> int:
    """An id for a call this process starts answering (unique among the calls of a chain)."""
    return next(_ids)


@dataclass(frozen=True)
class CallContext:
    """When the current call must be answered (time.monotonic(); None: no limit), its depth in a chain of
    function-to-function calls (0: a client's call), its id, and the ids of the calls waiting on it (outermost
    first)."""

    deadline: float | None
    depth: int
    call_id: int = field(default_factory=new_call_id)
    callers: tuple[int, ...] = ()

    def time_left(self) -> float | None:
        """Seconds left until the deadline (None: no limit)."""
        return None if self.deadline is None else self.deadline - time.monotonic()


_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar("dcf_call", default=None)


def current_call() -> CallContext | None:
    """The call the Handler is answering in this thread (None outside a Handler's call)."""
    return _current.get()


def enter_call(context: CallContext) -> CallContext | None:
    """Make `context` the current call of this thread; give what it returns (the one before) to `leave_call`.
    Plain values, not contextvars tokens: a generator Handler's steps may each run in another thread's context
    (the ray backend steps it in worker threads), where a token would not reset."""
    previous = _current.get()
    _current.set(context)
    return previous


def leave_call(previous: CallContext | None) -> None:
    """End the call `enter_call` began."""
    _current.set(previous)

"""The call a replica's Handler is answering now, as far as calls it makes to other functions need to know
(`dcf_jupyter.mesh`): the deadline it must answer by and how deep it is in a chain of function calls."""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class CallContext:
    """When the current call must be answered (time.monotonic(); None: no limit) and its depth in a chain of
    function-to-function calls (0: a client's call)."""

    deadline: float | None
    depth: int

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

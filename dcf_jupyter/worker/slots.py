"""The Handler's slots: at most `concurrency` calls in it at once, and no chain of calls that waits on itself.

A function that calls itself (or a function that calls one back) through `dcf_jupyter.mesh` would otherwise wedge:
with `concurrency: 4`, four calls of one chain hold the four slots, each waiting on the next, and the fifth waits
for a slot forever. A call that finds every slot held borrows the slot of one of the calls waiting on it (its
callers, as the request says): that call is blocked until this one answers, so the slot is free in all but name.
Each slot is lent to one call at a time, so the calls running in the Handler never outnumber `concurrency`
(the callers lending theirs are waiting, not running); calls of other chains still queue as before. This is what
Ray does with a task blocked in `ray.get`: its resources go to the tasks it waits on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

NOT_LENT = -1  # call ids are unsigned


class Slots:
    """`size` slots for calls named by id; thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._changed = threading.Condition()
        # Calls holding a slot (their own or a borrowed one) -> the call their slot is lent to (NOT_LENT: none).
        self._running: dict[int, int] = {}

    @property
    def full(self) -> bool:
        """Every slot is held (a lock-free read: a hint for where a new call should wait)."""
        return self._free <= 0

    def waited_on_here(self, callers: Iterable[int]) -> bool:
        """Whether a call of these callers would be waited on by a call running here (a hint, without the lock)."""
        running = self._running
        return any(caller in running for caller in callers)

    def acquire(self, call_id: int, callers: tuple[int, ...] = ()) -> int | None:
        """Wait for a slot for call `call_id`; returns None for a slot of its own, or the id of the caller whose
        slot it borrowed (give it to `release`)."""
        with self._changed:
            while True:
                if self._free > 0:
                    self._free -= 1
                    self._running[call_id] = NOT_LENT
                    return None
                lender = self._lender(callers)
                if lender is not None:
                    self._running[lender] = call_id
                    self._running[call_id] = NOT_LENT
                    return lender
                self._changed.wait()

    def _lender(self, callers: tuple[int, ...]) -> int | None:
        """The nearest caller running here whose slot is not lent already."""
        for caller in reversed(callers):
            if self._running.get(caller) == NOT_LENT:
                return caller
        return None

    def release(self, call_id: int, lender: int | None) -> None:
        """Call `call_id` left the Handler: its slot goes back (to its lender, when it borrowed one)."""
        with self._changed:
            self._running.pop(call_id, None)
            if lender is None:
                self._free += 1
            elif lender in self._running:
                self._running[lender] = NOT_LENT
            self._changed.notify_all()

"""Dynamic batching (config.yaml's `batching:`): calls that arrive together run as one list in the Handler.

Callers block in `Batcher.call` on whatever thread brought their call (the link's, gRPC's, Ray's). No thread of
the batcher's own sits between them and the Handler: the first caller to find no batch being gathered leads, that
is, it waits for the Handler (`Slots`, so `concurrency` batches may run at once), takes what has queued behind it
and runs the batch on its own thread; the call first in line after that batch leads the next one. A call on an
idle replica therefore runs at once as a batch of one, with a lock and a deque between it and the Handler.

Under load a batch waits, up to `max_wait_s` after its oldest call arrived, for as many calls as were in flight
around the batch before (that batch's size and the calls that queued while it ran): two webcams whose frames
alternate fill batches of two, while a lone caller is never held back once a quiet batch has shown that nobody
else is calling.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from .slots import Slots

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class _Waiting(Generic[Item, Outcome]):
    """One call in line: woken when its outcome is in, or when it is its turn to lead."""

    __slots__ = ("arrived", "item", "leads", "outcome", "woken")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.arrived = time.monotonic()
        self.woken: threading.Event | None = None  # made for a call that waits (a leader does not)
        self.outcome: Outcome | BaseException | None = None
        self.leads = False


class Batcher(Generic[Item, Outcome]):
    """Runs `run(items)`, which returns one outcome (or exception) per item in order, on batches of concurrent
    `call`s: at most `max_size` items, gathered for at most `max_wait_s`; thread-safe."""

    def __init__(self, run: Callable[[list[Item], int], Sequence[Outcome | BaseException]], *, max_size: int,
                 max_wait_s: float, slots: Slots, new_id: Callable[[], int],
                 callers_of: Callable[[Item], tuple[int, ...]] = lambda item: ()) -> None:
        self._run = run  # (items, the batch's id): as a call, it holds a slot and other calls may wait on it
        self._callers_of = callers_of
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._slots = slots
        self._new_id = new_id
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._line: collections.deque[_Waiting[Item, Outcome]] = collections.deque()
        self._gathering = False  # a leader is in line (waiting for the Handler or gathering its batch)
        self._expected = 1  # calls in flight around the last batch: how many the next one waits for
        self.sizes: collections.Counter[int] = collections.Counter()  # batches run, by size

    def call(self, item: Item) -> Outcome:
        """Run `item` in a batch and return its outcome; raises the exception given in its place."""
        waiting: _Waiting[Item, Outcome] = _Waiting(item)
        with self._lock:
            self._line.append(waiting)
            leads = not self._gathering
            if leads:
                self._gathering = True
            else:
                waiting.woken = woken = threading.Event()
                self._arrived.notify()  # a leader may be waiting for this one to fill its batch
        if not leads:
            woken.wait()
            leads = waiting.leads
        if leads:
            self._lead(waiting)
        outcome = waiting.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]  # set by the batch that held it

    def _lead(self, own: _Waiting[Item, Outcome]) -> None:
        """Wait for the Handler, gather a batch (this thread's own call first), hand the lead on, run it."""
        batch_id = self._new_id()
        # A call that a batch running here waits on (a Handler calling its own function) borrows that batch's slot.
        lender = self._slots.acquire(batch_id, self._callers_of(own.item))
        try:
            with self._lock:
                batch = self._gather()
                if self._line:
                    following = self._line[0]
                    following.leads = True
                    following.woken.set()  # type: ignore[union-attr]  # a call in line behind a leader waits
                else:
                    self._gathering = False
            outcomes = self._outcomes(batch, batch_id)
            with self._lock:
                self._expected = min(self.max_size, len(batch) + len(self._line))
                self.sizes[len(batch)] += 1
        finally:
            self._slots.release(batch_id, lender)
        for waiting, outcome in zip(batch, outcomes, strict=True):
            waiting.outcome = outcome
            if waiting.woken is not None:
                waiting.woken.set()

    def _gather(self) -> list[_Waiting[Item, Outcome]]:
        """The calls at the front of the line, up to max_size; waits (lock held, released while waiting) for
        as many as the last batch saw in flight, until max_wait_s after the oldest arrived."""
        wanted = min(self.max_size, self._expected)
        if len(self._line) < wanted:
            deadline = self._line[0].arrived + self.max_wait_s
            while len(self._line) < wanted and (left := deadline - time.monotonic()) > 0:
                self._arrived.wait(left)
        return [self._line.popleft() for _ in range(min(self.max_size, len(self._line)))]

    def _outcomes(self, batch: list[_Waiting[Item, Outcome]], batch_id: int) -> Sequence[Outcome | BaseException]:
        """`run` on the batch's items; an exception of the whole batch (or of `run` itself) is each call's."""
        try:
            outcomes = self._run([waiting.item for waiting in batch], batch_id)
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch hears of it
            return [exc] * len(batch)
        if len(outcomes) != len(batch):
            return [RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(batch)}")] * len(batch)
        return outcomes

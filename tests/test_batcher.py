"""The worker's batcher on its own: real threads calling it as the link's, gRPC's and Ray's threads do."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence

import pytest
from support import at_once

from dcf_jupyter.worker.batcher import Batcher
from dcf_jupyter.worker.slots import Slots

_ids = itertools.count(1)


class Recorder:
    """A batch function that doubles numbers (an exception stays in its place), sleeping `work_s` per batch and
    recording each batch and how many ran at once."""

    def __init__(self, work_s: float = 0.0) -> None:
        self.work_s = work_s
        self.batches: list[list[int]] = []
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self, items: list[int], batch_id: int) -> Sequence[int | BaseException]:
        with self._lock:
            self.batches.append(list(items))
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.work_s)
        with self._lock:
            self.running -= 1
        return [ValueError(f"no {item}") if item < 0 else item * 2 for item in items]


def batcher(run: Callable[[list[int], int], Sequence[int | BaseException]], *, max_size: int = 8,
            max_wait_s: float = 0.05, concurrency: int = 1) -> Batcher[int, int]:
    return Batcher(run, max_size=max_size, max_wait_s=max_wait_s, slots=Slots(concurrency), new_id=lambda: next(_ids))


def test_a_lone_call_runs_at_once_as_a_batch_of_one() -> None:
    run = Recorder()
    lone = batcher(run, max_wait_s=2.0)
    started = time.monotonic()
    assert lone.call(21) == 42
    assert time.monotonic() - started < 0.5  # not held back for max_wait_s
    assert run.batches == [[21]] and lone.sizes == {1: 1}


def test_concurrent_calls_share_batches_and_each_gets_its_own_reply() -> None:
    run = Recorder(work_s=0.05)
    shared = batcher(run, max_size=8)
    results = at_once(20, shared.call)
    assert results == [i * 2 for i in range(20)]
    sizes = [len(batch) for batch in run.batches]
    assert sum(sizes) == 20 and max(sizes) > 1 and max(sizes) <= 8, sizes
    assert sorted(item for batch in run.batches for item in batch) == list(range(20))


def test_callers_that_call_again_at_once_keep_filling_batches_of_their_number() -> None:
    """Four callers in closed loop (a reply, then the next call: webcams' frames): once the first batch has shown
    four calls in flight, each batch waits for four, not for max_wait_s more after that."""
    run = Recorder(work_s=0.005)
    looped = batcher(run, max_size=16, max_wait_s=0.5)

    def caller(i: int) -> list[int]:
        return [looped.call(i * 100 + n) for n in range(15)]

    started = time.monotonic()
    results = at_once(4, caller)
    took = time.monotonic() - started
    assert results == [[(i * 100 + n) * 2 for n in range(15)] for i in range(4)]
    sizes = [len(batch) for batch in run.batches]
    assert sizes.count(4) >= len(sizes) - 3, sizes  # the first one or two are smaller
    assert took < 5.0, took  # batches filled by their callers, not by waiting out max_wait_s each time


def test_an_item_fails_alone_and_a_failing_batch_fails_each_of_its_calls() -> None:
    run = Recorder(work_s=0.05)
    shared = batcher(run)
    results = at_once(6, lambda i: shared.call(-1 if i == 3 else i))
    assert [r for i, r in enumerate(results) if i != 3] == [0, 2, 4, 8, 10]
    assert isinstance(results[3], ValueError) and str(results[3]) == "no -1"

    def broken(items: list[int], batch_id: int) -> Sequence[int]:
        raise RuntimeError(f"the model is gone ({len(items)} items)")

    failing = batcher(broken)
    for result in at_once(4, failing.call):
        assert isinstance(result, RuntimeError) and "the model is gone" in str(result)


def test_a_run_returning_the_wrong_number_of_outcomes_fails_each_call() -> None:
    short = batcher(lambda items, batch_id: items[:-1])
    with pytest.raises(RuntimeError, match="0 outcomes for a batch of 1"):
        short.call(1)


def test_concurrency_bounds_the_batches_running_at_once() -> None:
    run = Recorder(work_s=0.05)
    two = batcher(run, max_size=2, concurrency=2)
    assert at_once(12, two.call) == [i * 2 for i in range(12)]
    assert run.most_at_once == 2 and max(len(batch) for batch in run.batches) <= 2

"""However a gateway dies (SIGTERM; SIGTERM then SIGKILL; SIGKILL), its workers go within 2 s, even under load.

A few rounds here (CI); benchmarks/orphans.py runs 20.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from gateway_death import WAYS, rounds

pytestmark = [pytest.mark.load, pytest.mark.slow]


def test_no_worker_outlives_its_gateway_however_it_dies() -> None:
    results = rounds(len(WAYS) * 2, calls=300, frames=150, seed=1)
    for result in results:
        print(f"{result.way:22} {result.workers} workers gone after {result.gone_after_s * 1000:.0f} ms")
    assert all(r.workers == 2 for r in results), "echo was deployed with 2 replicas"
    assert [r for r in results if r.left] == [], "workers outlived their gateway"

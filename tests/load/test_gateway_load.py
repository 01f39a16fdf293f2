"""The gateway under concurrent unary clients and streams: no errors, nothing lost or reordered, flat memory.

Small counts here (CI); benchmarks/load.py runs the full 50 x 200 calls and 8 x 1,250 frames.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from gateway_load import stream_load, unary_load

pytestmark = [pytest.mark.load, pytest.mark.slow]
SCALE = float(os.environ.get("DCF_LOAD_SCALE", "0.25"))


def test_concurrent_unary_clients(gateway) -> None:
    result = unary_load(gateway.address, gateway.running.pid, clients=50, calls=max(20, int(200 * SCALE)))
    print(result.summary("unary"))
    assert result.errors == [] and result.wrong == 0
    assert result.calls == 50 * max(20, int(200 * SCALE))
    assert result.rss_growth < 0.10, result.rss


def test_concurrent_streams(gateway) -> None:
    frames = max(200, int(1250 * SCALE))
    result = stream_load(gateway.address, gateway.running.pid, streams=8, frames=frames)
    print(result.summary("streams"))
    assert result.errors == [] and result.wrong == 0
    assert result.calls == 8 * frames
    assert result.rss_growth < 0.10, result.rss

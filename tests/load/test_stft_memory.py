"""1,000 spectrograms in one worker: memory stays flat (no matplotlib state kept between calls)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytestmark = [pytest.mark.load, pytest.mark.slow]
CALLS = int(os.environ.get("DCF_STFT_MEMORY_CALLS", "1000"))


def test_a_thousand_calls_keep_memory_flat() -> None:
    probe = Path(__file__).with_name("stft_memory.py")
    result = subprocess.run([sys.executable, str(probe), str(CALLS)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    samples = json.loads(result.stdout)
    quarter = len(samples) // 4
    first, last = samples[quarter:2 * quarter], samples[-quarter:]
    growth = (sum(last) / len(last)) / (sum(first) / len(first)) - 1
    print(f"RSS over {CALLS} calls: {samples[0]} -> {samples[-1]} KiB; second vs last quarter growth {growth:.1%}")
    assert growth < 0.03, samples

"""Run the stft Handler N times in this process and print RSS (KiB) samples as JSON: a memory-leak probe.

    python tests/load/stft_memory.py CALLS
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE.parents[2] / "functions" / "stft" / "src"))

from wavs import tone, wav_bytes  # noqa: E402 - after the sys.path or importorskip set-up above

from dcf_jupyter.worker.handler import Request, load_handler  # noqa: E402 - after the sys.path or importorskip set-up above


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


calls = int(sys.argv[1])
handler = load_handler(HERE.parents[2] / "functions" / "stft" / "src")
request = Request(wav_bytes(tone(0.2, 8000), 8000, "int16"))
samples = []
for i in range(calls):
    handler(request)
    if i % max(1, calls // 40) == 0:
        samples.append(rss_kib())
print(json.dumps(samples))

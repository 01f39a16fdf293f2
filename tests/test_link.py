"""The gateway's end of the worker link cuts frames out of whatever the socket hands it: whole, split at any byte,
several in one read."""

from __future__ import annotations

import asyncio
import random

from dcf_jupyter.backends.local.link import AsyncLink
from dcf_jupyter.protocol.link import HEADER, REPLY


def frame(call_id: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), call_id, REPLY, 0) + payload


def test_replies_split_anywhere_or_run_together_reach_their_calls() -> None:
    payloads = [b"", b"x", bytes(range(256)) * 240, b"tail" * 10, b"y" * 65_536]
    stream = b"".join(frame(i + 1, payload) for i, payload in enumerate(payloads))
    rng = random.Random(7)

    async def feed(cuts: list[int]) -> list[bytes]:
        link = AsyncLink(max_frame=1 << 20)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in payloads]
        link._pending.update({i + 1: future for i, future in enumerate(futures)})
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            link.data_received(stream[start:end])
        assert not link._buf  # nothing left over
        return [future.result() for future in futures]

    chunkings = [[], list(range(1, 3000)),  # all at once; a byte at a time through the first frames
                 [HEADER.size - 1, HEADER.size + 1, len(stream) - 3]]  # inside a header, inside a payload
    chunkings += [sorted(rng.sample(range(1, len(stream)), 12)) for _ in range(20)]
    for cuts in chunkings:
        assert asyncio.run(feed(cuts)) == payloads

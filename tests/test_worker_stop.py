"""A worker stops at once when idle, after its current call when busy, and a redeploy never waits for it."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import eventually

from dcf_jupyter.backends.local.backend import STOP_GRACE_S

THREADED_HANDLER = """
import threading, time

class Handler:
    def __init__(self):
        # Threads of the handler's own (as frameworks start): a signal may be handed to any of them.
        for _ in range(16):
            threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()

    def __call__(self, req):
        return "ok"
"""

SLOW_HANDLER = """
import time

class Handler:
    def __call__(self, req):
        if req.input == b"slow":
            time.sleep(1.5)
        return "VERSION slow" if req.input == b"slow" else "VERSION"
"""


def _block_sigterm() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def test_an_idle_worker_exits_at_once_on_sigterm_even_if_started_with_it_blocked(make_function, tmp_path) -> None:
    folder = make_function("threads", THREADED_HANDLER)
    ready = tmp_path / "ready"
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        # A parent that blocks SIGTERM (some launchers do) passes the mask on through exec.
        worker = subprocess.Popen(
            [sys.executable, "-m", "dcf_jupyter.worker", str(folder), "--socket", str(tmp_path / "w.sock"),
             "--ready-file", str(ready)],
            stdout=out, stderr=subprocess.STDOUT, preexec_fn=_block_sigterm,
        )
    try:
        def started() -> bool:
            if worker.poll() is not None:
                pytest.fail(f"the worker exited:\n{log.read_text()}")
            return ready.exists()

        eventually(started, 30, "the worker ready", every=0.01, show=log.read_text)
        start = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(10)
        took = time.monotonic() - start
    finally:
        if worker.poll() is None:
            worker.kill()
    print(f"exited {took * 1000:.1f} ms after SIGTERM")
    assert code == 0 and "[dcf-worker] stopping" in log.read_text()
    assert took < 1.0, f"an idle worker took {took:.2f} s to stop"


def test_a_redeploy_returns_while_the_old_revision_finishes_its_call(fresh_gateway, make_function) -> None:
    client = fresh_gateway.client
    folder = make_function("slow", SLOW_HANDLER.replace("VERSION", "v1"))
    client.deploy(folder)
    replies: list[object] = []
    caller = threading.Thread(target=lambda: replies.append(client.call("slow", b"slow")))
    caller.start()
    time.sleep(0.3)  # the slow call is in v1's handler now
    handler = Path(folder) / "src" / "handler.py"
    handler.write_text(SLOW_HANDLER.replace("VERSION", "v2"))
    client.deploy(folder)
    assert caller.is_alive(), "the deploy waited for the old revision's call to end"
    assert client.call("slow") == "v2"
    caller.join(10)
    assert replies == ["v1 slow"], "the call in the old revision's handler must still get its reply"
    logs = client.logs("slow")
    assert logs.count("[dcf-worker] stopping") == 1, logs


def test_a_delete_does_not_wait_out_the_grace_period(fresh_gateway, make_function) -> None:
    client = fresh_gateway.client
    client.deploy(make_function("gone", THREADED_HANDLER), replicas=2)
    start = time.monotonic()
    client.delete("gone")
    took = time.monotonic() - start
    print(f"delete of 2 replicas took {took * 1000:.0f} ms")
    assert took < STOP_GRACE_S, "delete waited out the grace period: a worker ignored SIGTERM"


CHATTY = """
import sys

class Handler:
    def __init__(self):
        for i in range(200):
            print("line", i, "x" * 200, "end")  # print() writes its pieces one by one
            print("err", i, file=sys.stderr)
        sys.stdout.buffer.write(b"bytes too\\n")  # what libraries writing binary to stdout do
        print("encoding", sys.stdout.encoding)

    def __call__(self, req):
        return "ok"
"""


def test_replicas_starting_at_once_write_whole_prefixed_lines(fresh_gateway, make_function) -> None:
    client = fresh_gateway.client
    client.deploy(make_function("chatty", CHATTY), replicas=2)
    lines = client.logs("chatty", 5000).splitlines()
    worker_lines = [line for line in lines if not line.startswith("[dcf-gateway]")]
    assert len(worker_lines) >= 800
    assert sum(line.endswith("] bytes too") for line in worker_lines) == 2
    for line in worker_lines:
        assert line.startswith(("[r0] ", "[r1] ")), line
        body = line[5:]
        assert body.startswith(("line ", "err ", "[dcf-worker]", "bytes too", "encoding utf-8")), line
        if body.startswith("line "):
            assert body.endswith(" end") and len(body.split()) == 4, line

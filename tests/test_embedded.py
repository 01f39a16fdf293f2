"""An embedded gateway's temp state dir always goes: with its kernel, when the kernel dies, or on the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from support import eventually

from dcf_jupyter.notebook._embedded import OWNER_FILE, STATE_PREFIX, remove_stale_state_dirs

KERNEL = textwrap.dedent("""
    import sys, time
    from dcf_jupyter.notebook._embedded import EmbeddedGateway
    gateway = EmbeddedGateway()
    gateway.wait()
    print(gateway.state_dir, gateway._pending.process.pid, flush=True)
    time.sleep(3600)
""")


def test_a_killed_kernels_gateway_removes_its_state_dir(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    kernel = subprocess.Popen([sys.executable, "-c", KERNEL], stdout=subprocess.PIPE, text=True, env=env)
    try:
        state_dir, _gateway_pid = kernel.stdout.readline().split()  # type: ignore[union-attr]
        state = Path(state_dir)
        assert state.parent == tmp_path and (state / OWNER_FILE).read_text() == str(kernel.pid)
        kernel.send_signal(signal.SIGKILL)  # no atexit: the gateway sees its lifeline close
        kernel.wait(10)
        eventually(lambda: not state.exists(), 10, f"{state} goes with its kernel",
                   show=lambda: list(state.iterdir()) if state.exists() else [])
    finally:
        if kernel.poll() is None:
            kernel.kill()


def test_the_next_start_removes_the_dirs_of_dead_kernels_only(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{STATE_PREFIX}stale"
    (stale / "functions").mkdir(parents=True)
    (stale / OWNER_FILE).write_text(dead.stdout.strip())
    live = tmp_path / f"{STATE_PREFIX}live"
    live.mkdir()
    (live / OWNER_FILE).write_text(str(os.getpid()))
    fresh_without_owner = tmp_path / f"{STATE_PREFIX}starting"  # a kernel between mkdtemp and writing its pid
    fresh_without_owner.mkdir()
    unrelated = tmp_path / "dcf-demo-keep"
    unrelated.mkdir()
    assert remove_stale_state_dirs(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and fresh_without_owner.exists() and unrelated.exists()

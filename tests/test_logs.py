"""Logs stay within their size: a log rotates at its limit and keeps so many old files, replicas' output comes in
whole lines through a pipe each, and reading a log's tail goes across its rotations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import eventually

from dcf_jupyter.host.logfile import RotatingLog, rotations, tail_text


def sizes(path: Path) -> list[int]:
    return [file.stat().st_size for file in rotations(path, 5) if file.exists()]


def test_a_log_rotates_at_its_size_and_keeps_its_backups_only(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "f.log", max_bytes=4096, backups=2)
    for i in range(200):
        log.write(f"line {i:04d} ".encode() + b"x" * 80 + b"\n")
    log.write(b"y" * 10_000 + b"\n")  # larger than a whole file: split, the cap still holds
    log.write(b"last line\n")
    log.close()
    assert len(sizes(tmp_path / "f.log")) == 3 and all(size <= 4096 for size in sizes(tmp_path / "f.log"))
    assert not (tmp_path / "f.log.3").exists()
    assert tail_text(tmp_path / "f.log", 1) == "last line\n"


def test_the_tail_is_read_across_rotations(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "f.log", max_bytes=1024, backups=3)
    for i in range(60):
        log.write(f"line {i:02d} {'.' * 40}\n".encode())
    log.close()
    assert (tmp_path / "f.log.1").exists()
    wanted = [f"line {i:02d} {'.' * 40}" for i in range(40, 60)]
    assert tail_text(tmp_path / "f.log", 20).splitlines() == wanted  # more lines than the current file holds
    assert tail_text(tmp_path / "f.log", 0).splitlines()[-1] == wanted[-1]


def test_processes_write_through_a_pipe_in_whole_lines(tmp_path: Path) -> None:
    """Two processes printing long lines at once: every line arrives whole, none lost (the cap is the test
    above's: here it is large enough to keep everything)."""
    log = RotatingLog(tmp_path / "p.log", max_bytes=64 << 20, backups=1)
    printer = ("import sys\nfor i in range(300):\n"
               "    sys.stdout.write(sys.argv[1] * 20000 + ' ' + str(i) + '\\n')\n    sys.stdout.flush()\n")
    processes = []
    for letter in "ab":
        with log.pipe() as fd:
            processes.append(subprocess.Popen([sys.executable, "-c", printer, letter], stdout=fd))
    for process in processes:
        assert process.wait(60) == 0
    def copied() -> list[str]:  # by a thread each
        lines = tail_text(tmp_path / "p.log", 0, max_bytes=64 << 20).splitlines()
        assert len(lines) >= 600, f"{len(lines)} of 600 lines arrived"
        return lines

    lines = eventually(copied, 20, "every line copied")
    seen: dict[str, list[int]] = {"a": [], "b": []}
    for line in lines:
        body, _, number = line.rpartition(" ")
        assert number.isdigit() and body in ("a" * 20000, "b" * 20000), line[:40]
        seen[body[0]].append(int(number))
    assert seen == {"a": list(range(300)), "b": list(range(300))}  # each process's lines whole and in order

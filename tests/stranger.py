"""A second local user for shared-machine tests: a login-less account with a venv of its own holding this project,
run with `runuser` (root only; tests skip, saying why, elsewhere). Removed, with its files, when done."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
# The packages `dcf` needs (pyproject's dependencies), at the versions this test process runs.
RUNTIME_PACKAGES = ("grpcio", "protobuf", "pyyaml", "click", "platformdirs", "packaging", "aiohttp",
                    "prometheus_client", "tqdm", "croniter")


def why_not() -> str | None:
    """Why no second user can be made here, or None when one can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return f"creating a second local user needs root (tests run as uid {os.getuid()})"
    for tool in ("useradd", "userdel", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON} for the second user's venv (root's Python is unreadable to others)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import sys, venv, ensurepip; assert sys.version_info >= (3, 10)"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"{SYSTEM_PYTHON} cannot make a venv of Python >= 3.10 (apt-get install python3-venv)"
    return None


@dataclass
class Stranger:
    """Another user of this machine, with `dcf_jupyter` importable by its Python."""

    name: str
    uid: int
    home: Path

    @property
    def python(self) -> str:
        return str(self.home / "venv" / "bin" / "python")

    def command(self, *args: str, env: dict[str, str] | None = None) -> list[str]:
        """`args` as this user, with a clean environment (only what `env` adds)."""
        base = {"PATH": f"{self.home / 'venv' / 'bin'}:/usr/bin:/bin", "HOME": str(self.home),
                "PYTHONPATH": str(self.home / "src"), "LANG": "C.UTF-8"}
        return ["runuser", "-u", self.name, "--", "env", "-i",
                *(f"{key}={value}" for key, value in {**base, **(env or {})}.items()), *args]

    def run(self, *args: str, env: dict[str, str] | None = None, input: bytes | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `args` as this user in its home and wait."""
        return subprocess.run(self.command(*args, env=env), input=input.decode() if input else None, text=True,
                              capture_output=True, timeout=timeout, cwd=self.home)

    def dcf(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run `dcf ARGS` as this user."""
        return self.run(self.python, "-m", "dcf_jupyter.cli", *args, env=env)

    def popen(self, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
        """Start `args` as this user (stopped by the caller, by its pid)."""
        return subprocess.Popen(self.command(*args), cwd=self.home, **kwargs)  # type: ignore[call-overload]

    def write(self, relative: str, text: str) -> Path:
        """A file of this user's, in its home."""
        path = self.home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        shutil.chown(path, self.name, self.name)
        for parent in path.relative_to(self.home).parents:
            if str(parent) != ".":
                shutil.chown(self.home / parent, self.name, self.name)
        return path


def make_stranger() -> Stranger:
    """Create the user, its home (world-readable, so the tests can read what it wrote) and its venv."""
    name = f"dcfstr{secrets.token_hex(3)}"
    home = Path(tempfile.mkdtemp(prefix="dcf-stranger-"))
    subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/usr/sbin/nologin", "-U", name], check=True,
                   capture_output=True)
    try:
        venv = home / "venv"
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True, capture_output=True)
        pins = [f"{package}=={metadata.version(package)}" for package in RUNTIME_PACKAGES]
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        *pins], check=True, capture_output=True, timeout=600)
        shutil.copytree(ROOT / "dcf_jupyter", home / "src" / "dcf_jupyter",
                        ignore=shutil.ignore_patterns("__pycache__", "labextension"))
        for path in (home, *home.rglob("*")):
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o555 if path.is_dir() else path.stat().st_mode | 0o444)
        shutil.chown(home, name, name)
        return Stranger(name, pwd.getpwnam(name).pw_uid, home)
    except BaseException:
        remove_stranger_named(name, home)
        raise


def _pids_of(uid: int) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if proc.stat().st_uid == uid:
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def remove_user(name: str, *, with_home: bool = True) -> None:
    """Remove a local user a test made. Its processes were stopped by their handles; any one left (a test that
    failed midway, a server's kernel) is killed by pid first, and userdel is tried again until those are gone:
    it refuses a user whose processes still run (one hub user was left behind that way)."""
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    command = ["userdel", "-r", name] if with_home else ["userdel", name]
    deadline = time.monotonic() + 20
    while True:
        for pid in _pids_of(uid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        done = subprocess.run(command, capture_output=True, text=True)
        gone = done.returncode == 0 or _user_gone(name)
        if gone or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not gone:
        print(f"could not remove the test user {name}: {done.stderr.strip()}", file=sys.stderr)


def _user_gone(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return True
    return False


def remove_stranger_named(name: str, home: Path) -> None:
    """Remove the user and its home."""
    remove_user(name, with_home=False)
    shutil.rmtree(home, ignore_errors=True)


def remove_stranger(stranger: Stranger) -> None:
    remove_stranger_named(stranger.name, stranger.home)


if __name__ == "__main__":  # a manual check: make one, show it works, remove it
    made = make_stranger()
    try:
        print(made, made.run("id").stdout, made.dcf("--version").stdout, file=sys.stderr)
    finally:
        remove_stranger(made)

"""Warm templates for the local backend's replicas (see dcf_jupyter.worker.template): which modules a function's
replicas would import anyway, one template process per set of them (and per interpreter, requirement folder
and import-time environment), and a replica forked from it that the backend handles like a started process.

Templates serve autoscaled functions, whose replicas start while calls wait; a template lives while a
deployment uses it. Set DCF_TEMPLATES=0 to start every replica as a fresh process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...definition.requirements import REQUIREMENTS
from ...settings import ENV_EXTRA_SITE
from ..launcher import LaunchFailed, StartedWorker, WorkerProcess, end_process

log = logging.getLogger("dcf.gateway")

ENV_TEMPLATES = "DCF_TEMPLATES"
TEMPLATE_START_TIMEOUT_S = 120.0

# Import names of the packages worth importing ahead: slow to import, and safe to fork after importing (they
# start no thread of ours and touch no GPU until used). Anything else the Handler imports itself.
PRELOADABLE = {
    "numpy": "numpy", "scipy": "scipy", "pillow": "PIL", "opencv-python": "cv2", "opencv-python-headless": "cv2",
    "tensorflow": "tensorflow", "tensorflow-cpu": "tensorflow", "torch": "torch", "scikit-learn": "sklearn",
    "pandas": "pandas",
}
RUNTIME_PRELOADS = {"tensorflow-gpu": ["tensorflow"], "pytorch": ["torch"], "pytorch-gpu": ["torch"]}


def templates_enabled() -> bool:
    """Whether replicas may be forked from templates ($DCF_TEMPLATES, default on)."""
    return os.environ.get(ENV_TEMPLATES, "1").strip().lower() not in ("0", "false", "no", "off")


def preloads_for(runtime: str, source_dir: Path) -> tuple[str, ...]:
    """Modules a function's replicas import anyway: its runtime's framework and the known heavy packages of its
    requirements.txt."""
    modules = list(RUNTIME_PRELOADS.get(runtime, []))
    with contextlib.suppress(OSError):
        for line in (source_dir / REQUIREMENTS).read_text(encoding="utf-8").splitlines():
            match = re.match(r"\s*([A-Za-z0-9_.\-]+)", line)
            if match and not line.lstrip().startswith(("#", "-")):
                module = PRELOADABLE.get(match.group(1).lower().replace("_", "-"))
                if module and module not in modules:
                    modules.append(module)
    return tuple(modules)


@dataclass(frozen=True)
class TemplateKey:
    """What makes two functions' templates interchangeable."""

    python: str
    preloads: tuple[str, ...]
    extra_site: str  # the requirement folder on sys.path ('' for none)
    environment: tuple[tuple[str, str], ...]  # the function's own environment: some is read at import


class ForkedProcess:
    """A replica forked by a template, with what the local backend uses of subprocess.Popen."""

    def __init__(self, pid: int, connection: socket.socket) -> None:
        self.pid = pid
        self._connection = connection
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def wait(self) -> int:
        """Block until the template reports this replica's end; its exit code."""
        from ...worker.template import receive_message

        with self._lock:
            if self.returncode is None:
                try:
                    self._connection.settimeout(None)
                    message, _ = receive_message(self._connection)
                except (OSError, ValueError):
                    message = None
                self.returncode = int(message["exit"]) if message and "exit" in message else self._gone()
                self._connection.close()
            return self.returncode

    def _gone(self) -> int:
        """The template went away first: wait for the replica itself (it dies with the template)."""
        while True:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return -1
            threading.Event().wait(0.05)

    def send_signal(self, sig: int) -> None:
        """Signal the replica."""
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the replica."""
        self.send_signal(signal.SIGKILL)


class Template:
    """One template process, and how to fork replicas from it."""

    def __init__(self, key: TemplateKey, process: subprocess.Popen[bytes], socket_path: Path, lifeline: int,
                 preloaded: list[str]) -> None:
        self.key = key
        self.process = process
        self.socket_path = socket_path
        self._lifeline = lifeline
        self.preloaded = preloaded
        self.users = 0

    @classmethod
    def start(cls, key: TemplateKey, socket_path: Path, env: dict[str, str], output: Any) -> Template:
        """Start a template and wait until it has imported its modules (blocking); LaunchFailed if it cannot."""
        status_r, status_w = os.pipe()
        life_r, life_w = os.pipe()
        if key.extra_site:
            env = {**env, ENV_EXTRA_SITE: key.extra_site}
        command = [key.python, "-u", "-m", "dcf_jupyter.worker.template", "--socket", str(socket_path),
                   "--status-fd", str(status_w), "--lifeline-fd", str(life_r), "--preload", ",".join(key.preloads)]
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                       pass_fds=(status_w, life_r), env=env, start_new_session=True)
        except OSError as exc:
            for fd in (status_r, status_w, life_r, life_w):
                os.close(fd)
            raise LaunchFailed(f"cannot start a template process: {exc}") from None
        os.close(status_w)
        os.close(life_r)
        status = StartedWorker(process, status_r, life_w).read_status(TEMPLATE_START_TIMEOUT_S)
        if not status.get("ready"):
            os.close(life_w)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
            raise LaunchFailed(str(status.get("error") or "the template did not start"))
        return cls(key, process, socket_path, life_w, list(status.get("preloaded", [])))

    def fork(self, worker: WorkerProcess, log_fd: int, cwd: Path) -> StartedWorker[ForkedProcess]:
        """A replica forked from this template, as `WorkerProcess.start` would have started it (blocking)."""
        from ...worker.template import receive_message, send_message

        status_r, status_w = os.pipe()
        life_r, life_w = os.pipe()
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.settimeout(30)
            connection.connect(str(self.socket_path))
            send_message(connection, {"argv": worker.arguments(), "env": worker.env, "cwd": str(cwd)},
                         [status_w, log_fd, life_r])
            reply, _ = receive_message(connection)
        except (OSError, ValueError) as exc:
            connection.close()
            for fd in (status_r, life_w):
                os.close(fd)
            raise LaunchFailed(f"the template did not fork a replica: {exc}") from None
        finally:
            os.close(status_w)
            os.close(life_r)
        if not reply or "pid" not in reply:
            connection.close()
            for fd in (status_r, life_w):
                os.close(fd)
            raise LaunchFailed(f"the template did not fork a replica: {(reply or {}).get('error', 'no answer')}")
        return StartedWorker(ForkedProcess(int(reply["pid"]), connection), status_r, life_w)

    def stop(self) -> None:
        """End the template (its replicas are stopped by their deployments first)."""
        with contextlib.suppress(OSError):
            os.close(self._lifeline)
        end_process(self.process)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()


class Templates:
    """The local backend's templates, shared by the deployments whose keys match, started on first use."""

    def __init__(self, socket_dir: Path) -> None:
        self.socket_dir = socket_dir
        self._templates: dict[TemplateKey, Template] = {}
        self._failed: dict[TemplateKey, str] = {}
        self._lock = asyncio.Lock()
        self._started = 0

    async def acquire(self, key: TemplateKey, env: dict[str, str]) -> Template | None:
        """The template of `key` (started now if none runs), counted as used until `release`; None when it
        cannot start (said once in the gateway's log). A template's own output goes to the gateway's log: it
        serves every function of its kind, none of whose logs it belongs in."""
        async with self._lock:
            template = self._templates.get(key)
            if template is None and key not in self._failed:
                self._started += 1
                socket_path = self.socket_dir / f"template-{self._started}.sock"

                def start() -> Template:
                    return Template.start(key, socket_path, env, None)  # the gateway's own stdout

                try:
                    template = await asyncio.to_thread(start)
                except LaunchFailed as failure:
                    self._failed[key] = failure.message
                    log.warning("no template for %s: %s", ",".join(key.preloads) or "python", failure.message)
                    return None
                self._templates[key] = template
                log.info("template %d started (%s)", template.process.pid, ", ".join(template.preloaded))
            if template is not None:
                template.users += 1
            return template

    async def release(self, template: Template) -> None:
        """A deployment no longer needs `template`: the last one out stops it."""
        async with self._lock:
            template.users -= 1
            if template.users <= 0 and self._templates.get(template.key) is template:
                del self._templates[template.key]
                await asyncio.to_thread(template.stop)

    async def close(self) -> None:
        """Stop every template."""
        async with self._lock:
            templates, self._templates = list(self._templates.values()), {}
        await asyncio.gather(*(asyncio.to_thread(t.stop) for t in templates))

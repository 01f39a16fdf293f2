"""A real JupyterHub for tests: its own venv (Debian's Python, readable by every user, with this project installed
as a user installs it), system users made for the test, the LocalProcessSpawner running each user's server as
that user, bound to 127.0.0.1 on free ports. Code runs in a user's kernel through the server's REST API and its
kernel websocket, as a browser would. Everything is stopped by its pid and the users removed when done (root
only: `why_not` says why it cannot run elsewhere)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stranger import SYSTEM_PYTHON, remove_user
from stranger import why_not as why_no_second_user
from support import eventually

from dcf_jupyter.host.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
PROXY = "configurable-http-proxy"
HUB_PACKAGES = ("jupyterhub>=6", "jupyterlab>=4")


def why_not() -> str | None:
    """Why no hub can run here, or None."""
    reason = why_no_second_user()
    if reason:
        return reason
    if shutil.which(PROXY) is None:
        return f"{PROXY} is not installed (npm install -g configurable-http-proxy)"
    return None


@dataclass
class HubUser:
    """A system user of the hub, with an API token of their own."""

    name: str
    token: str
    uid: int = 0

    @property
    def home(self) -> Path:
        return Path(pwd.getpwnam(self.name).pw_dir)


@dataclass
class Hub:
    """A running hub: where it answers, its users, its processes."""

    url: str
    users: dict[str, HubUser]
    process: subprocess.Popen[bytes]
    folder: Path
    venv: Path
    log: Path
    kernels: dict[str, str] = field(default_factory=dict)  # user -> kernel id

    def request(self, method: str, path: str, user: HubUser, body: Any = None,
                timeout: float = 60) -> tuple[int, Any]:
        """(status, JSON or text) of a request through the hub's proxy, with `user`'s token."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Authorization": f"token {user.token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            text, status = error.read(), error.code
        try:
            return status, json.loads(text or b"null")
        except ValueError:
            return status, text.decode(errors="replace")

    def start_server(self, user: HubUser, timeout: float = 120) -> None:
        """Spawn `user`'s single-user server and wait until it answers through the proxy."""
        status, said = self.request("POST", f"/hub/api/users/{user.name}/server", user)
        assert status in (201, 202), (status, said, self.log.read_text()[-3000:])
        eventually(lambda: self.request("GET", f"/user/{user.name}/api/status", user)[0] == 200, timeout,
                   f"{user.name}'s server answers", every=0.5, show=lambda: self.log.read_text()[-3000:])

    def run(self, user: HubUser, code: str, timeout: float = 300) -> str:
        """Run `code` in `user`'s kernel (one per user, started on first use); its output: streams, results
        and errors as text."""
        if user.name not in self.kernels:
            status, kernel = self.request("POST", f"/user/{user.name}/api/kernels", user, {"name": "python3"})
            assert status == 201, (status, kernel)
            self.kernels[user.name] = kernel["id"]
        url = (self.url.replace("http://", "ws://") +
               f"/user/{user.name}/api/kernels/{self.kernels[user.name]}/channels")
        return asyncio.run(_execute(url, user.token, code, timeout))


async def _execute(url: str, token: str, code: str, timeout: float) -> str:
    """Execute `code` over a kernel's websocket (Jupyter's JSON protocol); what it printed, showed or raised."""
    import aiohttp

    msg_id = uuid.uuid4().hex
    message = {"header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                          "msg_type": "execute_request", "version": "5.3"},
               "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
               "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                           "allow_stdin": False, "stop_on_error": True}}
    out: list[str] = []
    async with aiohttp.ClientSession(headers={"Authorization": f"token {token}"}) as session, \
            session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=10)) as socket:
        await socket.send_str(json.dumps(message))

        async def until_done() -> None:
            idle = replied = False
            while not (idle and replied):
                reply = json.loads((await socket.receive()).data)
                if reply.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = reply["msg_type"], reply["content"]
                if kind == "stream":
                    out.append(content["text"])
                elif kind in ("execute_result", "display_data"):
                    out.append(str(content["data"].get("text/plain", "")) + "\n")
                elif kind == "error":
                    out.append(f"{content['ename']}: {content['evalue']}\n")
                elif kind == "status" and content["execution_state"] == "idle":
                    idle = True
                elif kind == "execute_reply":
                    replied = True

        await asyncio.wait_for(until_done(), timeout)
    return "".join(out)


def _venv(folder: Path) -> Path:
    """A venv of Debian's Python with the hub, JupyterLab and this project (as a wheel, so the panel's server
    extension is enabled as a user's install enables it), readable by every user."""
    venv = folder / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True, capture_output=True)
    source = folder / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "__pycache__", "node_modules", "tests",
                                                                "notebooks", "benchmarks", "*.egg-info", "lib"))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    done = subprocess.run([*pip, *HUB_PACKAGES, str(source)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    for path in (folder, *folder.rglob("*")):
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))
    return venv


@contextlib.contextmanager
def running_hub(names: tuple[str, ...], environment: dict[str, str]) -> Iterator[Hub]:
    """A hub with these users (made now, removed after) whose servers get `environment`."""
    folder = Path(tempfile.mkdtemp(prefix="dcf-hub-"))
    folder.chmod(0o755)
    users = {name: HubUser(f"{name}{secrets.token_hex(2)}", secrets.token_hex(16)) for name in names}
    process: subprocess.Popen[bytes] | None = None
    try:
        venv = _venv(folder)
        for user in users.values():
            subprocess.run(["useradd", "-m", "-s", "/bin/bash", "-U", user.name], check=True, capture_output=True)
            user.uid = pwd.getpwnam(user.name).pw_uid
        port, hub_port, api_port = free_port(), free_port(), free_port()
        config = folder / "jupyterhub_config.py"
        config.write_text("\n".join([
            f"c.JupyterHub.bind_url = 'http://127.0.0.1:{port}'",
            f"c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{hub_port}'",
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{api_port}'",
            f"c.ConfigurableHTTPProxy.pid_file = {str(folder / 'proxy.pid')!r}",
            "c.JupyterHub.authenticator_class = 'dummy'",
            f"c.Authenticator.allowed_users = {set(u.name for u in users.values())!r}",
            f"c.JupyterHub.api_tokens = {({u.token: u.name for u in users.values()})!r}",
            f"c.JupyterHub.db_url = 'sqlite:///{folder / 'hub.sqlite'}'",
            f"c.JupyterHub.cookie_secret_file = {str(folder / 'cookie_secret')!r}",
            f"c.Spawner.cmd = [{str(venv / 'bin' / 'jupyterhub-singleuser')!r}]",
            "c.Spawner.default_url = '/lab'",
            "c.Spawner.start_timeout = 120",
            f"c.Spawner.environment = {environment!r}",
            "c.Spawner.args = ['--ServerApp.ip=127.0.0.1']",
        ]) + "\n")
        log = folder / "hub.log"
        with open(log, "wb") as out:
            process = subprocess.Popen([str(venv / "bin" / "jupyterhub"), "-f", str(config)], cwd=folder,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                       env={**os.environ, "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}"})
        hub = Hub(f"http://127.0.0.1:{port}", users, process, folder, venv, log)
        def answers() -> bool:
            if process.poll() is not None:  # not a reason to wait on
                raise RuntimeError(f"the hub exited:\n{log.read_text()[-3000:]}")
            with urllib.request.urlopen(f"{hub.url}/hub/api/", timeout=2):
                return True

        eventually(answers, 60, "the hub answers", every=0.3, show=lambda: log.read_text()[-3000:],
                   ignoring=(urllib.error.URLError, ConnectionError, TimeoutError))
        yield hub
    finally:
        _stop(process, folder)
        for user in users.values():
            if user.uid:  # their servers, kernels and gateways, by pid, then the user and its home
                remove_user(user.name)
        shutil.rmtree(folder, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes] | None, folder: Path) -> None:
    """Stop the hub (it stops the servers it spawned) and its proxy, by their pids."""
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(OSError, ValueError):
        os.kill(int((folder / "proxy.pid").read_text().strip()), signal.SIGTERM)

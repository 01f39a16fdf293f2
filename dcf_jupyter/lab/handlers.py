"""The REST API of the JupyterLab DCF panel, under {base_url}dcf/: Jupyter's own auth and XSRF guard every
request; the handlers reach gateways through `client.Client`, so gateway tokens stay on the server.

    GET    dcf/gateways                                   every gateway, its health and its functions
    GET    dcf/gateways/ID/functions/NAME/logs?lines=N    the tail of a function's log
    POST   dcf/gateways/ID/functions/NAME/scale           {"replicas": n}
    POST   dcf/gateways/ID/functions/NAME/call            {"input": "text"} or {"input_base64": "..."}
    DELETE dcf/gateways/ID/functions/NAME
    POST   dcf/gateways/ID/deploy                         {"path": "a function folder or config.yaml"}
    POST   dcf/gateways/shared/start                      start your own gateway when none answers
    GET    dcf/function-folders?path=DIR                  the entries of DIR that are functions (to deploy)

Errors are JSON {"message": one sentence} with a 4xx/5xx status, never a traceback. Who may do what is the Jupyter
Server's Authorizer's to say (resource "dcf"; GETs "read", calls "execute", the rest "write"): see DcfHandler.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from ..client._core import Client, FunctionInfo
from ..client._discovery import SHARED_ID, GatewayEntry, all_gateways
from ..client._replies import Reply
from ..definition.source import iter_source_files
from ..definition.spec import load_config
from ..errors import (
    ConfigError,
    DcfError,
    DeployError,
    ForeignGateway,
    FunctionError,
    FunctionNotFound,
    GatewayStartError,
    GatewayUnavailable,
    InvalidArgument,
    InvalidName,
    Unauthenticated,
)
from ..launch import start_own_gateway
from ..settings import named_address

T = TypeVar("T")
AUTH_RESOURCE = "dcf"  # what a Jupyter Server Authorizer (a JupyterHub's) is asked about: read / execute / write
HEALTH_TIMEOUT_S = 1.0
MAX_LOG_LINES = 5000
# How each error reads over HTTP (the sentence is the same as in the CLI).
STATUS = ((FunctionNotFound, 404), (InvalidName, 400), (InvalidArgument, 400), (ConfigError, 400),
          (DeployError, 422), (Unauthenticated, 403), (GatewayUnavailable, 502), (ForeignGateway, 502),
          (FunctionError, 502), (GatewayStartError, 500),
          (DcfError, 500))


class Problem(Exception):
    """A request the handler refuses, with its HTTP status and sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def status_of(error: DcfError) -> int:
    return next(code for kind, code in STATUS if isinstance(error, kind))


def function_json(info: FunctionInfo) -> dict[str, Any]:
    """A function as the panel shows it; `managed` is false for another gateway's (listed, not ours to change)."""
    scaling = "; ".join(part for part in (
        f"autoscaled {info.autoscaling[0]}-{info.autoscaling[1]}" if info.autoscaling else "",
        info.cold_starts_said,
        # A narrow sidebar row: the queue only when something waits or it batches (list -v always says it).
        info.queue_said if info.queued or info.max_batch_size else "",
        info.next_run_at) if part)  # its schedule goes in the row's tooltip
    ready = "idle" if info.idle else f"{info.available_replicas}/{info.replicas}"  # idle: the next call starts one
    return {**asdict(info), "ready": ready, "scaling": scaling, "managed": not info.deployed_elsewhere}


def reply_json(reply: Reply) -> dict[str, Any]:
    """A reply for the browser: text as text, JSON also parsed, bytes as base64 (and as text when they are)."""
    out: dict[str, Any] = {"content_type": reply.content_type, "size": len(reply.data)}
    if reply.is_text or reply.is_json:
        out["text"] = reply.data.decode("utf-8", "replace")
        if reply.is_json:
            out["json"] = reply.json()
    else:
        out["base64"] = base64.b64encode(reply.data).decode("ascii")
        with contextlib.suppress(UnicodeDecodeError):  # bytes that are text (an echo of typed text) read as text
            out["text"] = reply.data.decode("utf-8")
    return out


class DcfHandler(APIHandler):
    """Shared: finding the gateway of a URL, running blocking client calls off the event loop, errors.

    Every route is authenticated by Jupyter Server and then authorized on the resource "dcf" (jupyter-server's
    `@authorized`): reading (the gateways, their functions and GPUs, logs, which folders hold functions) is "read",
    calling a function "execute", deploying, scaling, deleting and starting a gateway "write". A JupyterHub (or
    any Authorizer) decides who may do which: read-only access lists and reads logs but changes nothing.
    """

    auth_resource = AUTH_RESOURCE

    def gateway(self, gateway_id: str) -> GatewayEntry:
        for entry in all_gateways():
            if entry.id == gateway_id:
                return entry
        raise Problem(404, f"no gateway {gateway_id!r} (it may have stopped with its kernel)")

    def served_root(self) -> Path:
        """The folder this Jupyter server serves (its file browser's root)."""
        return Path(self.settings["server_root_dir"]).expanduser().resolve()

    async def with_client(self, gateway_id: str, work: Callable[[Client], T]) -> T:
        return await self.on(self.gateway(gateway_id), work)

    @staticmethod
    async def on(entry: GatewayEntry, work: Callable[[Client], T]) -> T:
        """Run `work` with a client of `entry`, off the event loop (the client blocks)."""
        def run() -> T:
            with Client(entry.address, token=entry.token) as client:
                return work(client)

        return await asyncio.to_thread(run)

    def body(self) -> dict[str, Any]:
        try:
            value = json.loads(self.request.body or b"{}")
        except ValueError:
            raise Problem(400, "the request body is not JSON") from None
        if not isinstance(value, dict):
            raise Problem(400, "the request body must be a JSON object")
        return value

    def answer(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value))

    async def guarded(self, work: Callable[[], Any]) -> None:
        """Run `work` (a coroutine function) and answer its value, or the error's sentence: a failure of ours too
        (its traceback goes to the server's log, never to the browser)."""
        try:
            self.answer(await work())
        except Problem as problem:
            self.answer({"message": problem.message}, problem.status)
        except DcfError as error:
            self.answer({"message": str(error).split("\n", 1)[0], "detail": error.detail}, status_of(error))
        except Exception as error:
            self.log.exception("the DCF panel's %s %s failed", self.request.method, self.request.path)
            self.answer({"message": f"the DCF panel's server failed ({type(error).__name__}: {error}); the Jupyter "
                                    "server's log has the traceback"}, 500)


class GatewaysHandler(DcfHandler):
    @tornado.web.authenticated
    @authorized("read")
    async def get(self) -> None:
        async def work() -> list[dict[str, Any]]:
            return list(await asyncio.gather(*(self._describe(entry) for entry in all_gateways())))

        await self.guarded(work)

    async def _describe(self, entry: GatewayEntry) -> dict[str, Any]:
        def look(client: Client) -> dict[str, Any]:
            try:
                if not client.health(timeout=HEALTH_TIMEOUT_S):
                    return {"healthy": False, "error": f"no gateway answers at {entry.address}", "functions": []}
            except ForeignGateway as error:  # another user's: not asked anything
                return {"healthy": False, "error": str(error), "functions": []}
            try:
                info = client.info()
                functions = [function_json(f) for f in client.list()]
            except DcfError as error:
                return {"healthy": True, "error": str(error).split("\n", 1)[0], "functions": []}
            return {"healthy": True, "error": None, "backends": info.get("backends", []),
                    "version": info.get("version", ""), "gpus": info.get("gpus", []), "functions": functions}

        public = entry.public()
        if entry.notebook:  # Jupyter gives kernels the notebook's absolute path: show it as the file browser does
            public["notebook"] = public["label"] = self.relative(entry.notebook)
        return {**public, **await self.on(entry, look)}

    def relative(self, path: str) -> str:
        root = self.served_root()
        with contextlib.suppress(ValueError, OSError):
            return str(Path(path).resolve().relative_to(root))
        return path


class LogsHandler(DcfHandler):
    @tornado.web.authenticated
    @authorized("read")
    async def get(self, gateway_id: str, name: str) -> None:
        async def work() -> dict[str, Any]:
            try:
                lines = int(self.get_argument("lines", "200"))
            except ValueError:
                raise Problem(400, "lines must be a whole number") from None
            lines = max(1, min(lines, MAX_LOG_LINES))
            return {"name": name, "text": await self.with_client(gateway_id, lambda c: c.logs(name, lines))}

        await self.guarded(work)


class ScaleHandler(DcfHandler):
    @tornado.web.authenticated
    @authorized("write")
    async def post(self, gateway_id: str, name: str) -> None:
        async def work() -> dict[str, Any]:
            replicas = self.body().get("replicas")
            if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
                raise Problem(400, f"replicas must be a whole number, 0 or more, got {replicas!r}")
            info = await self.with_client(gateway_id, lambda c: c.scale(name, replicas))
            return {"message": info.scaled(), "function": function_json(info)}

        await self.guarded(work)


class CallHandler(DcfHandler):
    @tornado.web.authenticated
    @authorized("execute")
    async def post(self, gateway_id: str, name: str) -> None:
        async def work() -> dict[str, Any]:
            body = self.body()
            if "input_base64" in body:
                try:
                    data = base64.b64decode(str(body["input_base64"]), validate=True)
                except (binascii.Error, ValueError):
                    raise Problem(400, "input_base64 is not base64") from None
            else:
                data = str(body.get("input", "")).encode("utf-8")
            return reply_json(await self.with_client(gateway_id, lambda c: c.call_reply(name, data)))

        await self.guarded(work)


class FunctionHandler(DcfHandler):
    @tornado.web.authenticated
    @authorized("write")
    async def delete(self, gateway_id: str, name: str) -> None:
        async def work() -> dict[str, Any]:
            await self.with_client(gateway_id, lambda c: c.delete(name))
            return {"message": f"Deleted: {name}"}

        await self.guarded(work)


class DeployHandler(DcfHandler):
    @tornado.web.authenticated
    @authorized("write")
    async def post(self, gateway_id: str) -> None:
        async def work() -> dict[str, Any]:
            folder = self.function_folder(str(self.body().get("path", "")))
            result = await self.with_client(gateway_id, lambda c: c.deploy(folder))
            return {"message": result.message, "function": function_json(result.function)}

        await self.guarded(work)

    def function_folder(self, path: str) -> Path:
        """The server-root-relative `path` (a function folder or its config.yaml) on disk; nothing outside the
        root the server serves."""
        if not path.strip():
            raise Problem(400, "say which function to deploy: the path of its folder or config.yaml")
        if "\0" in path:
            raise Problem(400, "the path holds a NUL character, which no file name can")
        root = self.served_root()
        target = (root / path.lstrip("/")).resolve()
        if not target.is_relative_to(root):
            raise Problem(403, f"{path} is outside the folder this Jupyter server serves")
        if not target.exists():
            raise Problem(404, f"{path} does not exist")
        folder = target.parent if target.is_file() else target
        # The browser may only deploy what it could open: no link in the folder may lead out of the root.
        for name in iter_source_files(folder):
            if not name.resolve().is_relative_to(root):
                raise Problem(403, f"{path}: {_shown(name, folder)} leads outside the folder this Jupyter server "
                                   "serves (a link); copy what it points to in instead")
        return target


def _shown(path: Path, folder: Path) -> str:
    """`path` as the user sees it in `folder` (links not followed)."""
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)


CONFIG_NAMES = ("config.yaml", "config.yml")


def is_function(path: Path) -> bool:
    """A folder holding a config.yaml that defines functions, or such a config.yaml itself."""
    config = path if path.name in CONFIG_NAMES else next((path / n for n in CONFIG_NAMES if (path / n).is_file()), None)
    if config is None or not config.is_file():
        return False
    try:
        load_config(config)
    except DcfError:
        return False
    return True


class FunctionFoldersHandler(DcfHandler):
    """Which entries of a folder the file browser may offer to deploy (its context menu asks as it lists them)."""

    @tornado.web.authenticated
    @authorized("read")
    async def get(self) -> None:
        async def work() -> dict[str, Any]:
            path = self.get_argument("path", "")
            if "\0" in path:
                raise Problem(400, "the path holds a NUL character, which no file name can")

            def scan() -> list[str]:
                root = self.served_root()
                folder = (root / path.lstrip("/")).resolve()
                if not folder.is_relative_to(root) or not folder.is_dir():
                    raise Problem(404, f"{path or '/'} is no folder this Jupyter server serves")
                return sorted(entry.name for entry in folder.iterdir()
                              if (entry.is_dir() or entry.name in CONFIG_NAMES) and is_function(entry))

            return {"path": path, "names": await asyncio.to_thread(scan)}

        await self.guarded(work)


class StartHandler(DcfHandler):
    """Start the shared gateway (the user's own, as `dcf function deploy` would) when none answers."""

    @tornado.web.authenticated
    @authorized("write")
    async def post(self, gateway_id: str) -> None:
        async def work() -> dict[str, Any]:
            if gateway_id != SHARED_ID:
                raise Problem(400, "only the shared gateway starts from here; a notebook's kernel starts its own")
            named = named_address()
            if named is not None:
                raise Problem(409, f"this Jupyter server uses the gateway at {named} ($DCF_GATEWAY): start it where "
                                   "it runs")

            def start() -> str:
                taken = False
                with Client() as probe:
                    try:
                        if probe.health(timeout=HEALTH_TIMEOUT_S):
                            return f"a gateway of yours already answers at {probe.address}"
                    except ForeignGateway:
                        taken = True
                running = start_own_gateway(default_port_taken=taken)
                return f"started your gateway on {running.address} (stop it with `dcf gateway stop`)"

            return {"message": await asyncio.to_thread(start)}

        await self.guarded(work)


def setup_handlers(web_app: Any) -> None:
    """Route {base_url}dcf/... to the handlers above."""
    base = url_path_join(web_app.settings["base_url"], "dcf")
    gateway, function = r"/gateways/([\w.-]+)", r"/functions/([^/]+)"
    web_app.add_handlers(".*$", [
        (url_path_join(base, "gateways"), GatewaysHandler),
        (base + gateway + function + "/logs", LogsHandler),
        (base + gateway + function + "/scale", ScaleHandler),
        (base + gateway + function + "/call", CallHandler),
        (base + gateway + function, FunctionHandler),
        (base + gateway + "/deploy", DeployHandler),
        (base + gateway + "/start", StartHandler),
        (url_path_join(base, "function-folders"), FunctionFoldersHandler),
    ])

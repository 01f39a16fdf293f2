"""A notebook session: the gateway it talks to (an embedded one if none answers), its workspace, its functions.

The magics and `dcf_jupyter.function()` share one session per kernel.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import inspect
import linecache
import os
import textwrap
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends.registry import runs_image
from ..client import Client, DeployResult, get_client
from ..client._api import route_to_session  # the notebook's hook: not part of the public face
from ..definition.check import check_handler_source
from ..definition.scaffold import template_text
from ..definition.spec import (
    ConfigFile,
    FunctionSpec,
    keyword_help,
    keyword_paths,
    load_config,
    spec_from_settings,
    validate_name,
    write_config,
)
from ..errors import ConfigError, DcfError, ForeignGateway, FunctionNotFound, GatewayUnavailable
from ..host.ports import describe_user
from ..settings import ENV_GATEWAY
from ._embedded import EmbeddedGateway
from ._function import FunctionProxy
from ._progress import Progress, make_progress

DEFAULT_WORKSPACE = "dcf-functions"
LOG_POLL_S = 0.5


class Session:
    """Where functions are written (`workspace/NAME`) and which gateway deploys them."""

    def __init__(self, workspace: str | Path = DEFAULT_WORKSPACE, gateway: str | None = None,
                 announce: Callable[[str], None] = print) -> None:
        self.workspace = Path(workspace)
        self.announce = announce
        # A gateway named by the user ($DCF_GATEWAY, %dcf gateway) must answer: no embedded stand-in for it.
        self._explicit = gateway or os.environ.get(ENV_GATEWAY) or None
        self._trust = False  # whether the named gateway may be another user's (`%dcf gateway ADDR --trust`)
        self._not_used = ""  # why the default gateway was passed over, if it was
        self._embedded: EmbeddedGateway | None = None
        self._client: Client | None = None
        self._lock = threading.RLock()
        self.functions: dict[str, FunctionProxy] = {}

    # --- the gateway ----------------------------------------------------------------

    def warm_up(self) -> None:
        """Start the embedded gateway in the background now if no gateway of the user's answers (first use then
        waits less)."""
        with self._lock:
            if self._client is None and self._embedded is None and self._explicit is None:
                with Client() as probe:
                    if not self._answers(probe, timeout=1.0):
                        self._embedded = EmbeddedGateway()

    def client(self) -> Client:
        """The client of this session's gateway, starting the embedded one if none of the user's answers."""
        with self._lock:
            if self._embedded is not None and self._embedded.exited.is_set():
                self._disconnect()  # it was killed: its functions are gone with it
                self.announce("This kernel's embedded DCF gateway had stopped; starting a new one (run the cells "
                              "that deploy your functions again).")
            if self._client is not None:
                return self._client
            if self._embedded is None:
                with Client(self._explicit, trust=self._trust) as probe:
                    # A gateway the user named must be theirs (or trusted): another user's raises ForeignGateway.
                    named = self._explicit is not None
                    if probe.health(timeout=2.0) if named else self._answers(probe, timeout=2.0):
                        self._client = Client(probe.address, trust=self._trust)
                        return self._client
                    address = probe.address
                if self._explicit is not None:
                    raise GatewayUnavailable(
                        f"no DCF gateway answers at {address}; start it, or unset DCF_GATEWAY to let this "
                        "notebook start its own")
                self._embedded = EmbeddedGateway()
            address = self._embedded.wait()
            self.announce(f"Started an embedded DCF gateway on {address} for this kernel "
                          f"(local backend; it stops with the kernel){self._not_used}.")
            self._client = Client(address)
            return self._client

    def _answers(self, probe: Client, timeout: float) -> bool:
        """Whether a gateway of the user's answers at the default address (another user's does not count: it
        is noted, for the message that says why this kernel runs its own)."""
        try:
            return probe.health(timeout=timeout)
        except ForeignGateway as exc:
            self._not_used = f" ({probe.address} is another user's gateway, {describe_user(exc.uid)}: not used)"
            return False

    @property
    def address(self) -> str | None:
        """The gateway address in use, if connected."""
        return self._client.address if self._client is not None else None

    @property
    def embedded(self) -> bool:
        """True when this session runs its own gateway."""
        return self._embedded is not None

    def connect(self, address: str, *, trust: bool = False) -> str:
        """Use the gateway at `address` from now on (stopping the embedded one, if any); `trust` uses it even if
        another user of this machine runs it."""
        with Client(address, trust=trust) as probe:
            if not probe.health(timeout=3.0):
                raise GatewayUnavailable(f"no DCF gateway answers at {probe.address}")
        with self._lock:
            self._disconnect()
            self._explicit = address
            self._trust = trust
            self._client = Client(address, trust=trust)
            return self._client.address

    def close(self) -> None:
        """Drop the connection and stop the embedded gateway (its functions stop with it)."""
        if _default is self:
            route_to_session(None)  # a closed session must not restart a gateway for dcf_jupyter.call()
        self._disconnect()

    def _disconnect(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._embedded is not None:
                self._embedded.stop()
                self._embedded = None

    def status(self) -> dict[str, Any]:
        """Where this session deploys, and what the gateway says about itself."""
        client = self.client()
        info = client.info()
        return {"address": client.address, "embedded": self.embedded, "workspace": str(self.workspace.resolve()),
                "functions": info.get("functions"), "version": info.get("version"), "backends": info.get("backends"),
                "gpus": info.get("gpus") or [], "gpu_source": info.get("gpu_source", "none")}

    # --- functions ------------------------------------------------------------------

    def define(
        self,
        name: str,
        source: str,
        *,
        settings: Mapping[str, Any] | None = None,
        spelling: Mapping[str, str] | None = None,
        requirements: Sequence[str] = (),
        deploy: bool = True,
        line_offset: int = 0,
        where: str = "the handler source",
        progress: Progress | None = None,
        bound_as: str | None = None,
    ) -> FunctionProxy:
        """Write `workspace/name` from handler `source`, deploy it (unless `deploy` is False), return its proxy.

        Deploying a name again updates it in place: the old replicas serve until the new ones are ready.
        `settings` are config.yaml's keys by path (`limits.gpu`, `autoscaling`), checked as config.yaml is, and
        named in sentences as `spelling` writes them (the magic's flags, `function()`'s keywords).
        `bound_as`: the variable the caller binds the proxy to (`%%dcf_function` binds one), which its
        messages then name; without one they name the `dcf_jupyter.function(...)` call.
        """
        validate_name(name)
        title = f"%%dcf_function {name}" if bound_as else f"dcf_jupyter.function({name!r})"  # what was run
        # Every setting is checked before anything is written or started.
        spec = spec_from_settings(name, settings or {}, source=title, spelling=spelling or {},
                                  root=(self.workspace / name).resolve())
        check_handler_source(source, where, "Handler", line_offset=line_offset, batched=spec.batching is not None)

        def write() -> FunctionSpec:
            return self.write_folder(spec, source, requirements)

        if not deploy:  # a moment's work with nothing to watch: no progress display
            write()
            proxy = self._proxy(name, line_offset, bound_as)
            if bound_as:  # a cell that would otherwise show nothing (a call of function() returns the proxy)
                print(f"Wrote {proxy.folder} (not deployed): `{bound_as}.deploy()` deploys it, as `dcf function "
                      f"deploy -f {proxy.folder}/config.yaml` does from a shell")
            return proxy
        # Connect first: starting the embedded gateway says so, and that line belongs above the progress display.
        client = self.client()
        self._say_if_replacing(client, name)
        progress = progress or make_progress(title)
        try:
            progress.step("writing the function folder", 0.1)
            spec = write()
            proxy = self._proxy(name, line_offset, bound_as)
            if runs_image(spec.backend):
                self._build_image(spec, progress)
            progress.step(f"deploying to {client.address}", 0.6)
            result = self._deploy_with_logs(client, name, progress, lambda: client.deploy(spec))
            message, info = result.message, result.function
            where_runs = "the embedded gateway" if self.embedded else "gateway"
            # The gateway's message ends with where GPUs went ("...; replica 0 on GPU 1)"): keep that part.
            gpus = f" ({message.partition('; ')[2].rstrip(')')})" if "; " in message else ""
            call = f"; call {bound_as}(data)" if bound_as else ""
            progress.done(f"{message.split(':')[0]} {name}: {info.ready_said} "
                          f"on the {info.backend} backend of {where_runs} {client.address}{gpus}{call}")
            return proxy
        except DcfError:
            progress.fail()
            raise

    def _say_if_replacing(self, client: Client, name: str) -> None:
        """Say, before it happens, that a deploy replaces a function of that name deployed from another folder (a
        shell's `dcf function deploy`, another notebook): the user may not know the name was taken."""
        try:
            deployed = client.get(name)
        except FunctionNotFound:
            return
        folder = str((self.workspace / name).resolve())
        if deployed.folder == folder or deployed.deployed_elsewhere:
            return
        where = f"from {deployed.folder}" if deployed.folder else "by a client that does not say from where"
        print(f"{name} is deployed on this gateway already, {where}: this deploy replaces it with {folder} (give "
              "the cell another name to keep both)")

    def _proxy(self, name: str, line_offset: int, bound_as: str | None) -> FunctionProxy:
        proxy = FunctionProxy(self, name, self.workspace / name, line_offset=line_offset, bound_as=bound_as)
        self.functions[name] = proxy
        return proxy

    def write_folder(self, spec: FunctionSpec, source: str, requirements: Sequence[str] = ()) -> FunctionSpec:
        """Write (or rewrite) `workspace/NAME`'s config.yaml, src/handler.py and requirements.txt (other files in
        the folder stay); the function as the CLI will read it back."""
        folder = self.workspace / spec.name
        (folder / "src").mkdir(parents=True, exist_ok=True)
        (folder / "src" / "handler.py").write_text(source if source.endswith("\n") else source + "\n", encoding="utf-8")
        reqs = template_text(spec.runtime, "requirements.txt") + "".join(f"{r}\n" for r in requirements)
        (folder / "requirements.txt").write_text(reqs, encoding="utf-8")
        write_config(ConfigFile(functions={spec.name: spec}), folder / "config.yaml")
        return load_config(folder / "config.yaml").function(spec.name)  # what the CLI will read back must be valid

    def _build_image(self, spec: FunctionSpec, progress: Progress) -> None:
        """Build the function's image on this machine's Docker, showing the build log as it goes."""
        from ..build.image import BuildOptions, base_image_for, build_image

        options = BuildOptions.from_env()
        progress.step(f"building image {spec.image_ref} from {base_image_for(spec, options)}", 0.2)
        lines: list[str] = []

        def on_log(line: str) -> None:
            lines.append(line)
            progress.log("\n".join(lines[-15:]))

        build_image(spec, options, on_log=on_log)

    def deploy(self, spec: FunctionSpec, client: Client, **options: Any) -> DeployResult:
        """`dcf_jupyter.deploy()` in a notebook: the progress display `%%dcf_function` shows."""
        progress = make_progress(f"deploy {spec.name}")
        try:
            progress.step(f"deploying to {client.address}", 0.3)
            result = self._deploy_with_logs(client, spec.name, progress, lambda: client.deploy(spec, **options))
        except DcfError:
            progress.fail()
            raise
        progress.done(result.message)
        return AnnouncedDeploy(result.function, result.message, result.updated, cell=_cell_number())

    def _deploy_with_logs(self, client: Client, name: str, progress: Progress,
                          deploy: Callable[[], DeployResult]) -> DeployResult:
        """Run `deploy` while showing the function's latest log lines (requirement installs can take minutes)."""
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = deploy()
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                outcome["error"] = exc

        worker = threading.Thread(target=run, name=f"dcf-deploy-{name}", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(LOG_POLL_S)
            if worker.is_alive():
                with contextlib.suppress(FunctionNotFound, DcfError):
                    progress.log(client.logs(name, 15))
        if "error" in outcome:
            raise outcome["error"]
        result: DeployResult = outcome["result"]
        return result


def _cell_number() -> int | None:
    """The number of the cell running now, or None outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return None if shell is None else int(shell.execution_count)


@dataclass(frozen=True)
class AnnouncedDeploy(DeployResult):
    """A deploy whose sentence the progress display has just shown: as the result of that same cell it shows
    nothing more (not the sentence twice); displayed in a later cell, it is the sentence."""

    cell: int | None = None

    def _ipython_display_(self) -> None:
        if self.cell is not None and _cell_number() == self.cell:
            return
        from IPython.display import display

        display({"text/plain": self.message}, raw=True)


def source_of(obj: str | type) -> str:
    """Handler source from a string, or from a class: its definition plus the imports of the cell or module
    it was defined in, so the worker can rebuild it."""
    if isinstance(obj, str):
        return textwrap.dedent(obj)
    if not isinstance(obj, type):
        raise TypeError(f"expected handler source text or a class, got {type(obj).__name__}")
    filename = _defining_file(obj)
    text = "".join(linecache.getlines(filename)) if filename else ""
    if not text:
        try:
            text = inspect.getsource(inspect.getmodule(obj))  # type: ignore[arg-type]
        except (OSError, TypeError):
            raise ConfigError(f"cannot find the source of class {obj.__name__}; pass its source text instead") from None
    tree = ast.parse(text)
    imports = [ast.get_source_segment(text, n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == obj.__name__]
    if not classes:
        raise ConfigError(f"cannot find `class {obj.__name__}` in {filename}; pass its source text instead")
    body = ast.get_source_segment(text, classes[-1]) or ""
    # The worker looks for `Handler`: alias the class when it has another name.
    alias = "" if obj.__name__ == "Handler" else f"\n\nHandler = {obj.__name__}\n"
    return "\n".join(i for i in imports if i) + ("\n\n\n" if imports else "") + body + "\n" + alias


def _defining_file(cls: type) -> str | None:
    """The file (or IPython cell) a class was defined in, found through its methods' code objects."""
    for value in vars(cls).values():
        code = getattr(value, "__code__", None)
        if code is not None:
            return str(code.co_filename)
    return None


_default: Session | None = None


def default_session() -> Session:
    """The kernel's session (the magics use the same one)."""
    if _default is None:
        set_default_session(Session())
    assert _default is not None
    return _default


def client_for(gateway: str | None = None) -> Client:
    """The client the widgets use: for `gateway`, else the kernel session's (made on first use, with an
    embedded gateway if none answers)."""
    return get_client(gateway) if gateway else default_session().client()


def set_default_session(session: Session) -> None:
    """Make `session` the one `dcf_jupyter.function()`, the widgets and `dcf_jupyter.call()` & co. use."""
    global _default
    _default = session
    route_to_session(session)


def function(name: str, source_or_class: str | type, *, requirements: Sequence[str] = (), deploy: bool = True,
             **keys: Any) -> FunctionProxy:
    """Turn handler source (or a Handler class) into a deployed function and return its callable proxy."""
    paths = keyword_paths()
    for keyword in keys:
        if keyword not in paths:
            close = difflib.get_close_matches(keyword, paths, n=1)
            hint = f" (did you mean {close[0]}=?)" if close else ""
            raise TypeError(f"dcf_jupyter.function() takes no keyword {keyword}={hint}; it takes "
                            f"{', '.join(sorted(paths))}, requirements and deploy")
    return default_session().define(
        name, source_of(source_or_class), settings={paths[k]: v for k, v in keys.items() if v is not None},
        spelling={path: keyword for keyword, path in paths.items()}, requirements=requirements, deploy=deploy,
    )


def _declare_keywords() -> None:
    """Show function()'s keywords (config.yaml's keys it takes, as declared) in its signature and help."""
    signature = inspect.signature(function)
    fixed = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    declared = [inspect.Parameter(keyword, inspect.Parameter.KEYWORD_ONLY, default=None)
                for keyword in keyword_paths()]
    function.__signature__ = signature.replace(parameters=fixed + declared)  # type: ignore[attr-defined]
    function.__doc__ = (function.__doc__ or "") + "\n\nKeywords (config.yaml's keys; None: its default):\n" + "".join(
        f"    {keyword}: {help}\n" for keyword, help in keyword_help().items())


_declare_keywords()

"""The layout's promises: a kernel loads no gateway server, backend or worker code; the public face is typed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

KERNEL_SIDE = textwrap.dedent("""
    import json, sys
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "dcf_jupyter")
    shell.run_line_magic("dcf", "gateway " + sys.argv[1])
    shell.run_line_magic("config", "DcfMagics.workspace = " + repr(sys.argv[2]))
    cell = "%%dcf_function layout-probe\\nclass Handler:\\n    def __call__(self, req):\\n        return 'ok'\\n"
    result = shell.run_cell(cell)
    assert result.success, result.error_in_exec
    assert shell.run_cell("layout_probe()").result == "ok"
    shell.run_line_magic("dcf", "delete layout-probe")
    print(json.dumps(sorted(m for m in sys.modules if m.startswith("dcf_jupyter"))))
""")


def test_a_kernel_loads_no_gateway_server_backend_or_worker_module(gateway, tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    result = subprocess.run([sys.executable, "-c", KERNEL_SIDE, gateway.address, str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    print("\n".join(loaded))
    assert "dcf_jupyter.notebook._magics" in loaded and "dcf_jupyter.client._core" in loaded
    # The backends' registry is a table (what each can do, made only by a gateway): the notebook asks it whether
    # a function's image is built before its deploy.
    server_side = [m for m in loaded if (m.startswith("dcf_jupyter.backends")
                                         and m not in ("dcf_jupyter.backends", "dcf_jupyter.backends.registry"))
                   or m.startswith("dcf_jupyter.worker")
                   or (m.startswith("dcf_jupyter.gateway") and m not in ("dcf_jupyter.gateway",
                                                                          "dcf_jupyter.gateway.options"))]
    assert server_side == [], "the kernel imported gateway-side code"


PUBLIC_MODULES = ["dcf_jupyter", "dcf_jupyter.client", "dcf_jupyter.widgets", "dcf_jupyter.errors", "dcf_jupyter.mesh",
                  "dcf_jupyter.secrets"]
PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "dcf_jupyter"
README = Path(__file__).resolve().parents[1] / "README.md"


def readme_map() -> str:
    """The tree block of README's "How it is built"."""
    text = README.read_text(encoding="utf-8")
    start = text.index("```\ndcf_jupyter/", text.index("## How it is built"))
    return text[start:text.index("```", start + 3)]


def unmapped(tree: str, package: Path = PACKAGE_ROOT) -> list[str]:
    """The package's modules that the map does not name."""

    missing = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if path.name in ("__init__.py", "__main__.py") or relative.parts[:2] == ("definition", "templates") or \
                path.name.startswith("gateway_pb2"):  # entry points, a function's template, generated stubs
            continue
        if not re.search(rf"(?<![\w.]){re.escape(path.stem)}(\.py)?(?!\w)", tree):
            missing.append(str(relative))
    return missing


def test_the_readme_maps_every_module_and_names_every_public_one(tmp_path: Path) -> None:
    """README's "How it is built" names every module of the package, so the map cannot fall behind the code (a
    module planted without a line fails this), and its public-API sentence names every public module."""
    assert unmapped(readme_map()) == []
    planted = tmp_path / "dcf_jupyter"
    (planted / "gateway").mkdir(parents=True)
    (planted / "gateway" / "brand_new_room.py").write_text("")
    assert unmapped(readme_map(), planted) == ["gateway/brand_new_room.py"]
    public = README.read_text(encoding="utf-8").split("* **The public API** is", 1)[1].split("\n* ", 1)[0]
    for name in PUBLIC_MODULES:
        assert f"`{name}`" in public, f"README's public API sentence does not name {name}"


def test_every_error_a_user_can_cause_is_declared_and_exported_in_errors() -> None:
    """Every DcfError subclass is declared in errors.py (a class elsewhere deriving from one of them fails this)
    and listed in its __all__, what callers may catch."""
    import ast
    import inspect

    from dcf_jupyter import errors

    declared = {name for name, cls in vars(errors).items()
                if inspect.isclass(cls) and issubclass(cls, errors.DcfError) and cls.__module__ == errors.__name__}
    elsewhere = []
    for path in PACKAGE_ROOT.rglob("*.py"):
        if path.name == "errors.py" or path.name.startswith("gateway_pb2"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id in declared for b in node.bases):
                elsewhere.append(f"{path.relative_to(PACKAGE_ROOT)}: {node.name}")
    assert elsewhere == []
    assert sorted(declared - {"DcfError"}) == sorted(set(errors.__all__) - {"DcfError"})



def test_public_packages_keep_their_code_in_private_modules_behind_a_documented_all() -> None:
    import importlib
    import inspect

    package = Path(__file__).resolve().parents[1] / "dcf_jupyter"
    for folder in ("client", "widgets"):
        public_files = [p.name for p in (package / folder).glob("*.py") if not p.name.startswith("_")]
        assert public_files == [], f"{folder}/ should keep its code in _-prefixed modules: {public_files}"
    unimportable = []
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        exported = module.__all__
        assert len(exported) == len(set(exported)), name
        for attribute in exported:
            try:
                value = getattr(module, attribute)  # every listed name resolves (lazy ones included)
            except ModuleNotFoundError as exc:  # a light venv: the widgets need the [widgets] extra
                unimportable.append(f"{name}.{attribute} (needs {exc.name}: pip install 'dcf-jupyter[widgets]')")
                continue
            if inspect.isclass(value) or inspect.isfunction(value):
                assert inspect.getdoc(value), f"{name}.{attribute} has no docstring"
                assert value.__module__.startswith("dcf_jupyter"), (name, attribute)
    assert "Session" not in importlib.import_module("dcf_jupyter").__all__  # the kernel's session is internal
    if unimportable:  # everything else was checked above
        pytest.skip(f"not checked here: {', '.join(unimportable)}")


PUBLIC_API = textwrap.dedent("""
    import dcf_jupyter
    from dcf_jupyter import client

    reveal_type(dcf_jupyter.call)
    reveal_type(dcf_jupyter.call("f", b"x"))
    reveal_type(dcf_jupyter.deploy)
    reveal_type(dcf_jupyter.list_functions())
    reveal_type(dcf_jupyter.function)
    reveal_type(dcf_jupyter.Client("127.0.0.1:32222").call_reply("f"))
    reveal_type(dcf_jupyter.FunctionError("x").detail)
    reveal_type(dcf_jupyter.get_client())
    reveal_type(client.stream("f", [b"a"]))
    reveal_type(dcf_jupyter.boxes)
    reveal_type(dcf_jupyter.deploy("functions/echo"))
    reveal_type(dcf_jupyter.Client("127.0.0.1:32222").scale("f", 2))
    reveal_type(dcf_jupyter.Client("127.0.0.1:32222").delete("f"))
""")


def test_the_public_api_is_typed_not_any(tmp_path: Path) -> None:
    mypy = pytest.importorskip("mypy.api")
    snippet = tmp_path / "uses_api.py"
    snippet.write_text(PUBLIC_API)
    out, err, _ = mypy.run([str(snippet), "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
                            "--python-executable", sys.executable])
    revealed = [line.split("Revealed type is ", 1)[1] for line in out.splitlines() if "Revealed type is" in line]
    print("\n".join(revealed))
    assert len(revealed) == PUBLIC_API.count("reveal_type"), out + err
    assert not [r for r in revealed if r.strip('"') == "Any"], out
    assert revealed[0].startswith('"def (name: str, data: Any =') and "-> str | bytes" in revealed[0]
    assert revealed[3] == '"list[dcf_jupyter.client._core.FunctionInfo]"'
    assert "FunctionProxy" in revealed[4] and revealed[5] == '"dcf_jupyter.client._replies.Reply"'
    assert revealed[6] == '"str"' and revealed[7] == '"dcf_jupyter.client._core.Client"'
    assert revealed[9].endswith('-> PIL.Image.Image"')
    # Management calls return typed results, not prose.
    assert revealed[10:] == ['"dcf_jupyter.client._core.DeployResult"', '"dcf_jupyter.client._core.FunctionInfo"',
                             '"None"']


def test_a_deploy_reads_the_functions_config_once_on_each_side(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """One FunctionSpec travels: the client parses the folder's config.yaml once, the gateway the tarball's copy
    once, and the backend gets the gateway's value (an in-process gateway, so both sides are counted)."""
    import asyncio
    import contextlib
    import shutil
    import threading
    import traceback

    from dcf_jupyter.client import Client
    from dcf_jupyter.definition import spec as spec_module
    from dcf_jupyter.gateway.app import run_gateway
    from dcf_jupyter.gateway.options import GatewayOptions
    from dcf_jupyter.host.running import find_gateway

    parses: list[str] = []
    real_parse = spec_module.parse_config

    def counting_parse(text: str, **options: object) -> spec_module.ConfigFile:
        stack = [frame.filename.replace("\\", "/") for frame in traceback.extract_stack()]
        parses.append("gateway" if any("/dcf_jupyter/gateway/" in name for name in stack) else "client")
        return real_parse(text, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(spec_module, "parse_config", counting_parse)
    folder = tmp_path / "echo"
    shutil.copytree(Path(__file__).parent.parent / "functions" / "echo", folder)
    state = tmp_path / "state"
    loop = asyncio.new_event_loop()
    task = loop.create_task(run_gateway(GatewayOptions(state_dir=state, host="127.0.0.1", port=0, docker=False)))

    def serve() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            running = find_gateway(state)
            if running is not None or not thread.is_alive():
                break
            threading.Event().wait(0.05)
        assert running is not None, "the in-process gateway did not start"
        with Client(running.address) as client:
            client.deploy(folder)
            assert client.call("echo", b"once") == b"once"
            client.scale("echo", 2)
            client.delete("echo")
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(30)
        loop.close()
    assert parses == ["client", "gateway"], parses


PACKAGE = Path(__file__).resolve().parent.parent / "dcf_jupyter"
# Tiers, highest first: a module may import its own tier and those below it. `top` is the public face at the
# package's root: __init__.py and the API modules beside it (secrets, mesh); `bottom` the other modules beside it
# (errors, settings, credentials...); protocol/ imports nothing of ours.
TIERS = ["top", "lab", "cli", "widgets", "notebook", "commands", "client", "launch", "gateway", "backends", "worker",
         "build", "definition", "bottom", "host", "protocol"]


TOP_MODULES = {"dcf_jupyter", "dcf_jupyter.secrets", "dcf_jupyter.mesh"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _tier(module: str) -> str:
    parts = module.split(".")
    if module in TOP_MODULES or parts[-1] == "__main__":  # an entry point: run, never imported
        return "top"
    if parts[1] in TIERS and (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return "bottom"


def import_graph() -> dict[str, set[str]]:
    """Every import of a dcf_jupyter module by another, at module level or inside functions (lazy ones too), by
    AST; `if TYPE_CHECKING:` imports count as well."""
    import ast

    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle_and_tiers_import_only_downward() -> None:
    graph = import_graph()
    # A lazy import (inside a function) is seen: the command line loads the server only to serve.
    assert len(graph) > 60 and "dcf_jupyter.gateway.app" in graph["dcf_jupyter.launch.command"]
    assert _cycles(graph) == []
    upward = sorted(f"{source} -> {target}" for source, targets in graph.items() for target in targets
                    if TIERS.index(_tier(target)) < TIERS.index(_tier(source)))
    assert upward == []


def _wire_literals() -> set[str]:
    """What only protocol/ may spell out: method paths, metadata keys, status names, the service."""
    from dcf_jupyter.protocol import names

    return {names.SERVICE, names.ORIGIN_KEY, names.TRACEBACK_KEY, names.AUTHORIZATION_KEY, names.HEALTHY,
            *(status.name for status in names.Status)}


def test_wire_names_are_spelled_only_in_protocol() -> None:
    """A method path ("/pb.Gateway/..."), metadata key, status name or the service as a string literal outside
    protocol/ (docstrings aside) fails: each is defined once in protocol/names.py."""
    import ast

    wire = _wire_literals()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name == "protocol":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                text = node.value
                if text in wire or text.startswith(("/pb.", "pb.Gateway/")) or "dcf-traceback" in text:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {text!r}")
    assert found == []


def test_rays_private_api_is_used_in_one_module_for_a_stated_range() -> None:
    """Ray's private API is reached only from backends/ray/internals.py; the `ray` extra pins the range it states,
    and a Ray outside it is one sentence when the ray backend starts."""

    from dcf_jupyter.backends.ray import internals as ray_internals
    from dcf_jupyter.errors import GatewayStartError

    # Ray's private modules, and any private name reached on a Ray object (a handle, the serve or ray module).
    private = r"ray\._private|ray\.serve\.api import _|serve\._private|\b(handle|serve|ray)\._(?!_)\w"
    users = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                   if re.search(private, path.read_text(encoding="utf-8")))
    assert users == ["backends/ray/internals.py"]
    pinned = re.findall(r'"ray\[serve\]([^";]+)', (PACKAGE.parent / "pyproject.toml").read_text())
    assert pinned == [ray_internals.SUPPORTED_RAY]
    ray_internals.check_version("2.60.0")
    for unsupported in ("2.40.0", "3.0.0", "nightly"):
        with pytest.raises(GatewayStartError) as refused:
            ray_internals.check_version(unsupported)
        assert str(refused.value) == (f"the ray backend supports Ray >=2.50,<2.61, and this Python has Ray "
                                      f"{unsupported}: pip install 'ray[serve]>=2.50,<2.61' (or 'dcf-jupyter[ray]')")


def test_the_readme_lists_every_gateway_option_as_declared() -> None:
    """The README's table of the gateway's options is the one `options_table()` makes from their declaration."""
    from dcf_jupyter.gateway.options import options_table

    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- gateway options:")
    table = text[text.index("\n", start) + 1:text.index("<!-- end of gateway options -->")].strip()
    assert table == options_table(), "README's table of gateway options is stale: paste options_table()'s"


def test_the_readme_table_of_backends_is_the_registrys() -> None:
    """README's table of backends is the one `backends_table()` draws from the registry the gateway makes them by."""
    from dcf_jupyter.backends.registry import backends_table

    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- backends:")
    table = text[text.index("\n", start) + 1:text.index("<!-- end of backends -->")]
    assert table == backends_table(), "README's table of backends is stale: paste backends_table()'s"

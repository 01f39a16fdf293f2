"""A shared machine, tried as another local user would: that user cannot call, deploy through, manage or read your
gateway and its state (unless you open calls with --open-loopback); a server of theirs on your gateway's address,
in any spelling of it, gets nothing from your CLI, client, kernel or JupyterLab; your tools reach your gateway
over its own Unix socket; one gateway per port. The second user is made for these tests (root only; elsewhere they skip,
saying why, and the same checks run against an anonymous client of one's own in test_security.py)."""

from __future__ import annotations

import contextlib
import json
import re
import stat
import subprocess
import sys
import tempfile
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from stranger import Stranger
from support import FUNCTIONS, eventually, run_cli, start_gateway, with_keys

import dcf_jupyter
from dcf_jupyter.client import Client
from dcf_jupyter.definition.scaffold import init_function
from dcf_jupyter.errors import ForeignGateway, GatewayStartError, GatewayUnavailable
from dcf_jupyter.host.credentials import token_path
from dcf_jupyter.host.ports import describe_user, listeners
from dcf_jupyter.launch import start_detached
from dcf_jupyter.settings import DEFAULT_PORT

pytestmark = pytest.mark.slow  # makes a second Unix user with a venv of its own

TALKER = """
class Handler:
    def __call__(self, req):
        print("got request", req.input, flush=True)
        return "ok"
"""

EVIL_CONFIG = """functions:
  evil:
    runtime: python
    handler: {dir: ./src, file: handler.py, name: Handler}
"""
EVIL_HANDLER = """
import os
class Handler:
    def __init__(self):
        self.loot = os.popen("id").read() + open("/etc/shadow").read()
    def __call__(self, req):
        return self.loot
"""

# What a stranger's raw client (compiled from DCF's proto, no client-side checks) tries; prints one line per RPC.
RAW_ATTEMPTS = """
import json, sys, grpc
from dcf_jupyter.protocol import gateway_pb2 as pb, gateway_pb2_grpc as pbg
stub = pbg.GatewayStub(grpc.insecure_channel(sys.argv[1]))
metadata = (("authorization", "Bearer " + sys.argv[2]),) if len(sys.argv) > 2 else None
attempts = {
    "Deploy": lambda: stub.Deploy(pb.CreateFunctionRequest(Service="evil", Source=b"x"), metadata=metadata),
    "Update": lambda: stub.Update(pb.CreateFunctionRequest(Service="talker", Source=b"x"), metadata=metadata),
    "Delete": lambda: stub.Delete(pb.DeleteFunctionRequest(FunctionName="talker"), metadata=metadata),
    "ReplicaUpdate": lambda: stub.ReplicaUpdate(pb.ScaleServiceRequest(ServiceName="talker", Replicas=3),
                                                metadata=metadata),
    "GetLog": lambda: stub.GetLog(pb.FunctionRequest(FunctionName="talker"), metadata=metadata),
    "Invoke": lambda: stub.Invoke(pb.InvokeServiceRequest(Service="talker", Input=b"hi"), metadata=metadata),
    "List": lambda: stub.List(pb.Empty(), metadata=metadata),
}
for name, attempt in attempts.items():
    try:
        reply = attempt()
        print(json.dumps([name, "OK", str(reply)[:200]]))
    except grpc.RpcError as error:
        print(json.dumps([name, error.code().name, error.details()]))
"""

# A stranger's server posing as a gateway: it records every call's method and metadata, answers "OK".
FAKE_GATEWAY = """
import json, sys, grpc
from concurrent import futures
record = open(sys.argv[2], "a")
class Everything(grpc.GenericRpcHandler):
    def service(self, details):
        record.write(json.dumps([details.method, [list(m) for m in details.invocation_metadata]]) + "\\n")
        record.flush()
        return grpc.unary_unary_rpc_method_handler(lambda request, context: b"\\n\\x02OK")
server = grpc.server(futures.ThreadPoolExecutor(4), options=[("grpc.so_reuseport", 0)])
server.add_generic_rpc_handlers((Everything(),))
print(server.add_insecure_port(sys.argv[1]), flush=True)
server.start()
sys.stdin.read()  # until the test closes it
server.stop(0)
"""

# A kernel's cell, as %%dcf_function runs it; prints what became of it.
KERNEL_CELL = textwrap.dedent("""
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "dcf_jupyter")
    result = shell.run_cell("%%dcf_function squatted\\nclass Handler:\\n    def __call__(self, req):\\n"
                            "        return 'mine'\\n")
    if result.error_in_exec is not None:
        print("ERROR", type(result.error_in_exec).__name__, result.error_in_exec)
    else:
        print("CALLED", shell.run_cell("squatted()").result)
    from dcf_jupyter.notebook._session import default_session
    default_session().close()
""")


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A folder others may enter (as a home or /srv is), so what guards the state is the state dir's own mode."""
    base = Path(tempfile.mkdtemp(prefix="dcf-owner-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def fake_gateway(stranger: Stranger, address: str) -> Iterator[tuple[str, Path]]:
    """The stranger's fake gateway on `address` (port 0: a free one); yields its address and its record."""
    record = stranger.write("calls.jsonl", "")
    server = stranger.popen(stranger.python, "-c", FAKE_GATEWAY, address, str(record),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        assert port, "the fake gateway could not listen"
        yield f"127.0.0.1:{port}", record
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def recorded(record: Path) -> list[list[object]]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def run_kernel_cell(env: dict[str, str]) -> str:
    """Run the %%dcf_function cell in a fresh IPython (as a kernel runs it); its output."""
    pytest.importorskip("IPython")
    result = subprocess.run([sys.executable, "-c", KERNEL_CELL], capture_output=True, text=True, timeout=120,
                            env={**dict(__import__("os").environ), **env})
    return result.stdout + result.stderr


def test_a_stranger_cannot_deploy_manage_or_read_your_gateway(stranger: Stranger, open_parent: Path) -> None:
    owner = start_gateway(open_parent / "state")
    try:
        folder = Path(tempfile.mkdtemp(prefix="dcf-talker-"))
        owner.client.deploy(init_function("talker", parent=folder, handler_source=TALKER))
        assert owner.client.call("talker", b"Hello secret-payload-123") == "ok"
        stranger.write("evil/config.yaml", EVIL_CONFIG)
        stranger.write("evil/src/handler.py", EVIL_HANDLER)
        address = owner.address

        # Their own dcf refuses to hand anything to a gateway of someone else's...
        refused = stranger.dcf("-g", address, "function", "deploy", "-f", "evil/config.yaml")
        assert refused.returncode == 1 and f"belongs to another user of this machine ({describe_user(0)})" in \
            refused.stderr, refused.stderr
        # ...and with --trust (or any client of their own) the gateway refuses whatever needs its owner's token.
        # (A deploy asks the gateway's Info first, for its default backend: now that needs the token too.)
        for args, rpc in ((("function", "deploy", "-f", "evil/config.yaml"), "Info"),
                          (("function", "log", "talker"), "GetLog"), (("function", "delete", "talker"), "Delete"),
                          (("function", "scale", "talker", "3"), "ReplicaUpdate")):
            for env in ({}, {"DCF_TOKEN": "a-guess"}):
                result = stranger.dcf("-g", address, "--trust", *args, env=env)
                assert result.returncode == 1 and f"{rpc} needs the gateway's token" in result.stderr, result.stderr
                assert "secret-payload" not in result.stdout + result.stderr
        answers = {}
        for line in stranger.run(stranger.python, "-c", RAW_ATTEMPTS, address).stdout.splitlines():
            name, code, _ = json.loads(line)
            answers[name] = code
        assert set(answers.values()) == {"UNAUTHENTICATED"}, answers  # a default gateway answers its owner only
        # The state dir and the owner's token are the owner's alone.
        for path in (owner.state_dir / "registry.json", owner.state_dir / "logs" / "talker.log", token_path()):
            looked = stranger.run("cat", str(path))
            assert looked.returncode != 0 and "Permission denied" in looked.stderr, (path, looked)
        assert stranger.run("ls", str(owner.state_dir)).returncode != 0
        assert [f.name for f in owner.client.list()] == ["talker"]
        assert "got request b'Hello secret-payload-123'" in owner.client.logs("talker")
    finally:
        owner.stop()


CONNECT = textwrap.dedent("""
    import json, socket, sys

    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(sys.argv[1])
        print(json.dumps({"connect": "ok"}))
    except OSError as exc:
        print(json.dumps({"connect": type(exc).__name__}))
""")


def test_a_stranger_cannot_touch_your_secrets_or_reach_your_replicas_socket(stranger: Stranger,
                                                                            open_parent: Path) -> None:
    owner = start_gateway(open_parent / "state")
    try:
        owner.client.create_secret("mine", {"KEY": "stranger-must-not-see"})
        (before,) = owner.client.list_secrets()
        for args, rpc in ((("secret", "list"), "ListSecrets"),
                          (("secret", "create", "mine", "--from-literal", "KEY=theirs"), "CreateSecret"),
                          (("secret", "delete", "mine"), "DeleteSecret")):
            result = stranger.dcf("-g", owner.address, "--trust", *args, env={"DCF_TOKEN": "a-guess"})
            assert result.returncode == 1 and f"{rpc} needs the gateway's token" in result.stderr, result.stderr
        assert owner.client.list_secrets() == [before]
        looked = stranger.run("cat", str(owner.state_dir / "secrets" / "mine.json"))
        assert looked.returncode != 0 and "Permission denied" in looked.stderr, looked
        sockets = Path((owner.state_dir / "sockets.path").read_text().strip())
        ran = stranger.run(stranger.python, "-c", CONNECT, str(sockets / "gateway.sock"))
        assert json.loads(ran.stdout.strip() or "null") == {"connect": "PermissionError"}, ran
    finally:
        owner.stop()


FORK_ME = textwrap.dedent("""
    import json, os, socket, sys
    from dcf_jupyter.worker.template import receive_message, send_message

    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(sys.argv[1])
    except OSError as exc:
        print(json.dumps({"connect": type(exc).__name__}))
        sys.exit(0)
    fds = [os.pipe()[1], os.open(os.devnull, os.O_WRONLY), os.pipe()[0]]
    try:
        send_message(connection, {"argv": ["/tmp", "--name", "x"], "env": {}, "cwd": "/"}, fds)
    except BrokenPipeError:
        pass  # refused before it read a byte: its answer is waiting all the same
    print(json.dumps(receive_message(connection)[0]))
""")


def test_a_stranger_cannot_have_your_warm_template_fork_their_code(stranger: Stranger, open_parent: Path,
                                                                   make_function) -> None:
    """A template forks replicas as its owner: its socket is in the gateway's owner-only folder, and even where
    that folder is opened up, it asks the kernel who connects and serves its owner only."""
    owner = start_gateway(open_parent / "state")
    try:
        folder = with_keys(make_function("warm", "class Handler:\n    def __call__(self, req):\n        return 'ok'\n"),
                           autoscaling={"min_replicas": 0, "max_replicas": 1})
        owner.client.deploy(folder)
        sockets = Path((owner.state_dir / "sockets.path").read_text().strip())
        (template,) = sockets.glob("template-*.sock")
        assert modes_of(sockets) == {}
        ran = stranger.run(stranger.python, "-c", FORK_ME, str(template))
        assert json.loads(ran.stdout.strip() or "null") == {"connect": "PermissionError"}, ran
        sockets.chmod(0o755)  # as if someone opened the folder up
        template.chmod(0o777)
        ran = stranger.run(stranger.python, "-c", FORK_ME, str(template))
        assert json.loads(ran.stdout.strip() or "null") == {  # refused, unforked
            "error": "only the gateway's own user may ask for replicas"}, ran
        assert owner.client.call("warm") == "ok"
    finally:
        owner.stop()


def raw_attempts(stranger: Stranger, address: str) -> dict[str, str]:
    """What each RPC of RAW_ATTEMPTS answered the stranger: OK or the status code."""
    answers = {}
    for line in stranger.run(stranger.python, "-c", RAW_ATTEMPTS, address).stdout.splitlines():
        name, code, _ = json.loads(line)
        answers[name] = code
    return answers


def test_a_default_gateway_answers_strangers_only_health_and_open_loopback_opens_calls(stranger: Stranger,
                                                                                        tmp_path: Path) -> None:
    owner = start_gateway(tmp_path / "state")
    opened = start_gateway(tmp_path / "opened", "--open-loopback")
    try:
        folder = init_function("talker", parent=Path(tempfile.mkdtemp(prefix="dcf-talker-")), handler_source=TALKER)
        for handle in (owner, opened):
            handle.client.deploy(folder)
            assert handle.client.call("talker", b"mine") == "ok"  # the owner's client sends the token by itself
        assert set(raw_attempts(stranger, owner.address).values()) == {"UNAUTHENTICATED"}
        status = stranger.dcf("-g", owner.address, "--trust", "gateway", "status")  # HealthCheck answers, Info not
        assert status.returncode == 1 and "Info needs the gateway's token" in status.stderr, status.stderr
        refused = stranger.dcf("-g", owner.address, "--trust", "function", "call", "talker", "-d", "x")
        assert refused.returncode == 1 and "--open-loopback" in refused.stderr, refused.stderr  # says how to open
        # --open-loopback: DCF's original clients, which send no token, may call and list; nothing more.
        assert raw_attempts(stranger, opened.address) == {
            "Deploy": "UNAUTHENTICATED", "Update": "UNAUTHENTICATED", "Delete": "UNAUTHENTICATED",
            "ReplicaUpdate": "UNAUTHENTICATED", "GetLog": "UNAUTHENTICATED", "Invoke": "OK", "List": "OK"}
    finally:
        owner.stop()
        opened.stop()


def lab_gateways(env: dict[str, str], root: Path) -> list[dict[str, object]]:
    """GET /dcf/gateways of a JupyterLab started with `env`."""
    pytest.importorskip("jupyterlab", reason="the panel runs in JupyterLab: pip install -e '.[notebook]'")
    from labdriver import jupyter_lab

    with jupyter_lab(root, env=env) as lab:
        request = urllib.request.Request(f"http://127.0.0.1:{lab.port}/dcf/gateways",
                                         headers={"Authorization": f"token {lab.token}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return list(json.loads(response.read()))


def test_a_strangers_server_on_your_gateways_address_gets_nothing(stranger: Stranger, tmp_path: Path) -> None:
    with fake_gateway(stranger, "127.0.0.1:0") as (address, record):
        secret = {"DCF_TOKEN": "owner-secret-token"}
        whose = f"belongs to another user of this machine ({describe_user(stranger.uid)})"
        for args, kwargs in ((("function", "deploy", "-f", str(FUNCTIONS / "echo" / "config.yaml")), {}),
                             (("function", "call", "echo"), {"input": b"private data"}),
                             (("function", "list"), {}), (("gateway", "status"), {})):
            result = run_cli("-g", address, *args, env=secret, **kwargs)
            assert result.returncode == 1 and whose in result.stderr.decode(), result.stderr
        with pytest.raises(ForeignGateway) as caught:
            Client(address, token="owner-secret-token").call("echo", b"private data")
        assert caught.value.uid == stranger.uid and "--trust" in str(caught.value)
        with pytest.raises(ForeignGateway):
            Client(address).health()
        output = run_kernel_cell({"DCF_GATEWAY": address, **secret})
        assert "ERROR ForeignGateway" in output and whose in output, output
        gateways = lab_gateways({"DCF_GATEWAY": address, **secret}, tmp_path)
        assert not gateways[0]["healthy"] and whose in str(gateways[0]["error"]), gateways[0]
        assert recorded(record) == [], "the stranger's server heard from us"

        # A gateway start on their port says whose it is; a trusted call gets there without your token.
        port = int(address.rsplit(":", 1)[1])
        with pytest.raises(GatewayStartError, match=f"port {port} is held by another user, "
                                                     f"{re.escape(describe_user(stranger.uid))}"):
            start_detached(tmp_path / "refused", "127.0.0.1", port)
        assert not (tmp_path / "refused").exists(), "a refused start leaves nothing behind"
        trusted = run_cli("-g", address, "--trust", "function", "call", "echo", "-d", "x")
        assert trusted.returncode == 0 and trusted.stdout == b"OK", trusted.stderr
        calls = recorded(record)
        assert [method for method, _ in calls] == ["/pb.Gateway/InvokeBytes"]
        assert not [key for key, _ in calls[0][1] if key == "authorization"], "your own token went to a stranger"


def test_no_spelling_of_a_squatted_address_sends_it_anything(stranger: Stranger, tmp_path: Path) -> None:
    """0.0.0.0, [::], IPv4-mapped, localhost, 127.1: each reaches the stranger's server on 127.0.0.1 (or nothing),
    and each is checked before a byte leaves: no token, no deploy's tarball, no secret's value."""
    with fake_gateway(stranger, "127.0.0.1:0") as (address, record):
        port = int(address.rsplit(":", 1)[1])
        secret = {"DCF_TOKEN": "owner-secret-token"}
        whose = f"belongs to another user of this machine ({describe_user(stranger.uid)})"
        for spelled in (f"0.0.0.0:{port}", f"[::ffff:127.0.0.1]:{port}", f"localhost:{port}", f"127.1:{port}",
                        f"[0:0:0:0:0:ffff:7f00:1]:{port}", f"[::]:{port}"):
            said = whose if spelled != f"[::]:{port}" else "no DCF gateway answers"  # [::] is ::1, not 127.0.0.1
            for args, env, kwargs in (
                    (("-g", spelled, "function", "deploy", "-f", str(FUNCTIONS / "echo" / "config.yaml")), {}, {}),
                    (("-g", spelled, "secret", "create", "key", "--from-literal", "KEY=value-123"), {}, {}),
                    (("function", "call", "echo"), {"DCF_GATEWAY": spelled}, {"input": b"private data"})):
                result = run_cli(*args, env={**secret, **env}, **kwargs)
                assert result.returncode == 1 and said in result.stderr.decode(), (spelled, result.stderr)
            with pytest.raises(ForeignGateway if said == whose else GatewayUnavailable):
                dcf_jupyter.call("echo", b"private data", gateway=spelled)
        assert recorded(record) == [], "the stranger's server heard from us"


def test_your_tools_reach_your_gateway_over_its_socket_past_a_squatter(stranger: Stranger, tmp_path: Path) -> None:
    """Your gateway on 127.0.0.1:P, a stranger's server on [::1]:P: `localhost:P` may reach either over TCP, so
    your tools go over your gateway's Unix socket, and the stranger hears nothing."""
    owner = start_gateway(tmp_path / "state")
    try:
        owner.client.deploy(FUNCTIONS / "echo")
        port = int(owner.address.rsplit(":", 1)[1])
        try:
            squatter = fake_gateway(stranger, f"[::1]:{port}")
            held = squatter.__enter__()
        except (AssertionError, ValueError):  # its server could not bind [::1]
            pytest.skip("no IPv6 loopback here to squat on")
        try:
            _, record = held
            called = run_cli("-g", f"localhost:{port}", "function", "call", "echo", input=b"over my socket")
            assert called.returncode == 0 and called.stdout == b"over my socket", called.stderr
            client = Client(f"localhost:{port}")
            assert client.via_own_socket and client.call("echo", b"mine") == b"mine"
            assert recorded(record) == [], "the stranger's server heard from us"
        finally:
            squatter.__exit__(None, None, None)
    finally:
        owner.stop()


def test_when_a_stranger_holds_the_default_port_your_tools_start_your_own(stranger: Stranger,
                                                                          tmp_path: Path) -> None:
    held = listeners(DEFAULT_PORT)
    if held:
        pytest.skip(f"127.0.0.1:{DEFAULT_PORT} is in use on this machine ({describe_user(held[0].uid)}): this test "
                    "needs the default port free to squat on it")
    with fake_gateway(stranger, f"127.0.0.1:{DEFAULT_PORT}") as (_, record):
        env = {"DCF_STATE_DIR": str(tmp_path / "cli-state")}
        try:
            deployed = run_cli("function", "deploy", "-f", str(FUNCTIONS / "echo" / "config.yaml"), env=env)
            said = deployed.stderr.decode()
            assert deployed.returncode == 0, said
            assert f"127.0.0.1:{DEFAULT_PORT} is another user's gateway ({describe_user(stranger.uid)}), so dcf " \
                "started your own on 127.0.0.1:" in said, said
            called = run_cli("function", "call", "echo", "-d", "found it", env=env)
            assert called.returncode == 0 and called.stdout == b"found it", called.stderr
        finally:
            run_cli("gateway", "stop", env=env)
        output = run_kernel_cell({})
        assert "Started an embedded DCF gateway" in output and \
            f"(127.0.0.1:{DEFAULT_PORT} is another user's gateway" in output and "CALLED mine" in output, output
        # The Python API naming no gateway, in a fresh Python (this one may hold a notebook session of other tests).
        api = subprocess.run([sys.executable, "-c", "import dcf_jupyter; dcf_jupyter.call('echo', b'private data')"],
                             capture_output=True, text=True, timeout=60)
        assert api.returncode == 1 and "ForeignGateway: the gateway at 127.0.0.1:32222 belongs to another user" in \
            api.stderr, api.stderr
        gateways = lab_gateways({"DCF_TOKEN": "owner-secret-token"}, tmp_path)
        assert gateways[0]["address"] == f"127.0.0.1:{DEFAULT_PORT}" and not gateways[0]["healthy"]
        assert "belongs to another user of this machine" in str(gateways[0]["error"]), gateways[0]
        assert recorded(record) == [], "the stranger's server heard from us"


def test_a_second_gateway_on_a_busy_port_fails_naming_the_first(tmp_path: Path) -> None:
    first = start_gateway(tmp_path / "a")
    try:
        port = int(first.address.rsplit(":", 1)[1])
        with pytest.raises(GatewayStartError, match=rf"cannot listen on 127\.0\.0\.1:{port}: port {port} is held by "
                                                     rf"a process of yours \(pid {first.running.pid}: .*dcf_jupyter"):
            start_detached(tmp_path / "b", "127.0.0.1", port)
        assert not (tmp_path / "b").exists()
        refused = run_cli("gateway", "start", "--port", str(port), "--state-dir", str(tmp_path / "c"))
        assert refused.returncode == 1 and f"port {port} is held by a process of yours" in refused.stderr.decode()
        assert first.client.health()
    finally:
        first.stop()


def modes_of(folder: Path) -> dict[str, str]:
    """Every path under `folder` (itself included) whose mode lets group or others in."""
    loose = {}
    for path in (folder, *folder.rglob("*")):
        mode = path.lstat().st_mode & 0o777
        if mode & 0o077:
            loose[str(path.relative_to(folder.parent))] = f"{mode:04o}"
    return loose


def test_state_sockets_logs_and_caches_are_owner_only(open_parent: Path, make_function) -> None:
    import os

    from test_requirements import build_wheel

    owner = start_gateway(open_parent / "state")
    try:
        folder = make_function("cached", "import dcfmodepkg\nclass Handler:\n    def __call__(self, req):\n"
                                         "        return dcfmodepkg.VALUE\n",
                               requirements=["--no-index", "--find-links ./wheels", "dcfmodepkg==1.0"])
        build_wheel(folder / "wheels", "dcfmodepkg", "1.0", 'VALUE = "installed"\n')
        owner.client.deploy(folder)
        owner.client.deploy(FUNCTIONS / "echo")
        assert owner.client.call("cached") == "installed" and owner.client.call("echo", b"x") == b"x"
        assert owner.client.logs("echo") is not None
        sockets = Path((owner.state_dir / "sockets.path").read_text().strip())
        assert list(sockets.glob("*.sock")), "the local backend's worker sockets"
        cache = Path(os.environ["DCF_CACHE_DIR"])
        installed = [path.parent for path in cache.glob("requirements/*/dcfmodepkg")]
        assert installed, "the requirement went to the cache"
        for place in (owner.state_dir, sockets, *installed, token_path().parent):
            assert modes_of(place) == {}, f"{place} lets others in"
        assert cache.stat().st_mode & 0o077 == 0 and (cache / "requirements").stat().st_mode & 0o077 == 0
    finally:
        owner.stop()


def test_a_looser_state_dir_is_tightened_at_start_and_the_log_says_so(open_parent: Path) -> None:
    state = open_parent / "state"
    (state / "logs").mkdir(parents=True)
    for path, text in ((state / "registry.json", '{"version": 1, "functions": {}}'),
                       (state / "logs" / "old.log", "got request b'secret'\n")):
        path.write_text(text)
        path.chmod(0o644)
    state.chmod(0o755)
    (state / "logs").chmod(0o755)
    owner = start_gateway(state)
    try:
        assert modes_of(state) == {}
        log = (state / "gateway.log").read_text()
        assert f"tightened {state} from 0755 to 0700 (owner-only)" in log
        assert f"tightened {state / 'registry.json'} from 0644 to 0600" in log
    finally:
        owner.stop()


def test_the_owners_token_is_made_once_owner_only_and_never_shown(tmp_path: Path) -> None:
    first = start_gateway(tmp_path / "one")
    second = start_gateway(tmp_path / "two")
    try:
        token = token_path().read_text().strip()
        assert len(token) >= 32 and token_path().stat().st_mode & 0o777 == 0o600
        assert token_path().parent.stat().st_mode & 0o777 == 0o700
        for handle in (first, second):  # one token for all of the owner's gateways, found by the client itself
            assert "Deployed" in handle.client.deploy(FUNCTIONS / "echo").message
            for place in (handle.state_dir / "gateway.log", handle.state_dir / "registry.json",
                          handle.state_dir / "gateway.json", Path(f"/proc/{handle.running.pid}/cmdline"),
                          Path(f"/proc/{handle.running.pid}/environ")):
                assert token.encode() not in place.read_bytes(), place
    finally:
        first.stop()
        second.stop()


SEES_ITS_GPU = """
import os
class Handler:
    def __call__(self, req):
        return os.environ.get("CUDA_VISIBLE_DEVICES", "")
"""
GPU_CONFIG = """functions:
  {name}:
    runtime: python
    handler: {{dir: ./src, file: handler.py, name: Handler}}
    limits: {{gpu: '{gpu}'}}
"""


def test_two_users_gateways_never_hand_out_one_gpu_and_cannot_touch_each_others_leases(
        stranger: Stranger, tmp_path: Path, make_function, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both users' gateways declare GPUs 0 and 1 and book in one machine-wide folder (sticky, as /tmp): each gets
    its own device, the refusal names the other user, status shows their grant as "another user" with its share,
    and the stranger can neither remove nor rewrite the owner's lease (test_gpus.py: nor pass one off as his)."""
    leases = Path(tempfile.mkdtemp(prefix="dcf-gpu-leases-"))  # where the stranger can reach it, unlike tmp_path
    leases.chmod(0o1777)
    monkeypatch.setenv("DCF_GPU_LEASES", str(leases))
    owner = start_gateway(tmp_path / "state", "--gpus", "0,1", "--no-docker")
    state = stranger.home / "gpu-state"
    theirs = subprocess.Popen(stranger.command(stranger.python, "-m", "dcf_jupyter.gateway", "--port", "0",
                                               "--state-dir", str(state), "--gpus", "0,1", "--no-docker",
                                               env={"DCF_GPU_LEASES": str(leases)}),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=stranger.home)
    try:
        def started() -> bool:
            if theirs.poll() is not None:
                pytest.fail("their gateway exited")
            return (state / "gateway.json").exists()

        eventually(started, 60, "their gateway started", every=0.1)
        their_address = json.loads((state / "gateway.json").read_text())["address"]
        owner.client.deploy(with_keys(make_function("mine", SEES_ITS_GPU), limits={"gpu": "1"}))
        assert owner.client.call("mine") == "0"
        for name in ("theirs", "more"):
            stranger.write(f"{name}/config.yaml", GPU_CONFIG.format(name=name, gpu="1"))
            stranger.write(f"{name}/src/handler.py", SEES_ITS_GPU)
        deployed = stranger.dcf("-g", their_address, "function", "deploy", "-f", "theirs/config.yaml")
        assert deployed.returncode == 0, deployed.stderr
        assert stranger.dcf("-g", their_address, "function", "call", "theirs").stdout.strip() == "1"  # not 0
        refused = stranger.dcf("-g", their_address, "function", "deploy", "-f", "more/config.yaml")
        assert refused.returncode == 1 and "GPU 0 held by root's function mine" in refused.stderr, refused.stderr
        shown = run_cli("-g", owner.address, "gateway", "status").stdout.decode()
        assert "GPU 1 declared GPU: held" in shown and "    another user" in shown and "theirs" not in shown, shown

        (mine,) = [path for path in leases.glob("gateway-*.json") if path.stat().st_uid == 0]
        assert stat.S_IMODE(mine.stat().st_mode) == 0o644
        for attempt in (["rm", "-f", str(mine)], ["sh", "-c", f"echo '{{}}' > {mine}"],
                        ["mv", str(leases / "forged.json"), str(mine)]):
            stranger.run("sh", "-c", f"echo '{{}}' > {leases / 'forged.json'}")
            tried = stranger.run(*attempt)
            assert tried.returncode != 0, (attempt, tried)
        assert json.loads(mine.read_text())["grants"], "the owner's lease is as it was"
    finally:
        owner.stop()
        theirs.terminate()
        theirs.wait(30)
        subprocess.run(["rm", "-rf", str(leases)], check=False)


def test_a_config_dir_you_cannot_read_is_a_sentence_not_a_traceback(stranger: Stranger, tmp_path: Path) -> None:
    """$DCF_CONFIG_DIR naming another user's folder (an environment inherited by mistake, as `runuser` keeps it):
    your tools find no gateway of yours recorded there and say what they can, with no traceback."""
    private = tmp_path / "owners-config"
    private.mkdir(mode=0o700)
    listed = stranger.dcf("-g", "127.0.0.1:1", "function", "list", env={"DCF_CONFIG_DIR": str(private)})
    assert listed.returncode == 1 and "Traceback" not in listed.stderr, listed.stderr
    assert "no DCF gateway answers at 127.0.0.1:1" in listed.stderr, listed.stderr

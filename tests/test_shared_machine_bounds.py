"""What another local user can cost your gateway, tried as they would: request bodies, idle sockets under the
usual `ulimit -n 1024`, a log grown by printing, a function wedged by calling itself. Each stays within a bound
while your own calls, made the default way (no address named: over your gateway's Unix socket), answer within a
second. The second user is made for these tests (root only; elsewhere they skip, saying why)."""

from __future__ import annotations

import json
import resource
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from stranger import Stranger
from support import FUNCTIONS, GatewayHandle, with_keys

from dcf_jupyter.client import Client
from dcf_jupyter.definition.scaffold import init_function
from dcf_jupyter.host.logfile import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES
from dcf_jupyter.host.running import GATEWAY_LOG
from dcf_jupyter.launch.control import PendingGateway, gateway_command

MIB = 1 << 20
pytestmark = pytest.mark.slow  # floods a gateway as a second Unix user
MESSAGE_LIMIT = 64 * MIB  # the gateway's default --max-message-size: bodies in flight are bounded by twice it

# The stranger's load: idle sockets on both ports, then (those closed) 60 MiB bodies posted at once; one JSON line
# per phase.
ATTACK = textwrap.dedent("""
    import http.client, json, resource, socket, sys, threading, time

    grpc_address, http_address, idle, bodies = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held = []
    for address in (grpc_address, http_address):
        host, port = address.rsplit(":", 1)
        for _ in range(idle):
            try:
                held.append(socket.create_connection((host, int(port)), timeout=10))
            except OSError as exc:
                print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
                break
    print(json.dumps({"idle": len(held)}), flush=True)
    sys.stdin.readline()  # the owner has called while they are held: let them go (past its cap, the HTTP face
    for connection in held:  # takes no more connections, bodies or not)
        connection.close()
    time.sleep(1)

    host, port = http_address.rsplit(":", 1)
    statuses = []
    def post(path):
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            connection.putrequest("POST", path)
            connection.putheader("Content-Length", str(60 << 20))
            connection.endheaders()
            chunk = b"x" * (1 << 20)
            for _ in range(60):
                connection.send(chunk)
            statuses.append(connection.getresponse().status)
        except OSError as exc:  # refused before reading: the gateway closed the connection after its answer
            try:
                statuses.append(connection.getresponse().status)
            except Exception:
                statuses.append(type(exc).__name__)
        finally:
            connection.close()
    threads = [threading.Thread(target=post, args=(f"/function/{'hello-dcf' if i % 2 else 'nothing-here'}",))
               for i in range(bodies)]
    for thread in threads:
        thread.start()
    print(json.dumps({"posting": bodies}), flush=True)
    for thread in threads:
        thread.join()
    print(json.dumps({"statuses": statuses}), flush=True)
    sys.stdin.readline()
""")

# The stranger's raw DCF client: call FUNCTION with INPUT (a size in MiB of 'x', or text) COUNT times, no token.
RAW_CALLS = textwrap.dedent("""
    import json, sys, time, grpc
    from dcf_jupyter.protocol import gateway_pb2 as pb, gateway_pb2_grpc as pbg

    address, function, given, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    data = b"x" * (int(given[:-3]) << 20) if given.endswith("MiB") else given.encode()
    stub = pbg.GatewayStub(grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)]))
    for _ in range(count):
        started = time.monotonic()
        try:
            reply = stub.InvokeBytes(pb.InvokeServiceRequest(Service=function, Input=data), timeout=60)
            said = ["OK", reply.Output.decode(errors="replace")[:200]]
        except grpc.RpcError as error:
            said = [error.code().name, error.details()]
        print(json.dumps([*said, round(time.monotonic() - started, 3)]), flush=True)
""")

PRINTS = """
class Handler:
    def __call__(self, req):
        print("got", len(req.input), "bytes:", req.input, flush=True)
        return "printed"
"""
CHAIN = """
from dcf_jupyter import mesh


class Handler:
    def __call__(self, req):
        left = int(req.input)
        return "bottom" if left == 0 else mesh.call("chain", str(left - 1))
"""


def limited_gateway(state_dir: Path, *extra: str, open_files: int = 1024) -> GatewayHandle:
    """A gateway started as `bash -c 'ulimit -n 1024; exec dcf gateway start ...'` would be."""
    state_dir.mkdir(parents=True, mode=0o700)
    with open(state_dir / GATEWAY_LOG, "ab") as log:
        process = subprocess.Popen(
            gateway_command(state_dir, "127.0.0.1", 0, list(extra)), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files)))
    return GatewayHandle(PendingGateway(process, state_dir).wait(), process)


@pytest.fixture
def opened_gateway(tmp_path: Path) -> Iterator[GatewayHandle]:
    """A gateway whose owner opened calls to every local user (--open-loopback): the worst case, as strangers may
    then call its functions."""
    handle = limited_gateway(tmp_path / "state", "--no-docker", "--open-loopback")
    try:
        handle.client.deploy(FUNCTIONS / "hello-dcf")
        yield handle
    finally:
        handle.stop()


def memory_of(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak) of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def own_calls(count: int = 5) -> list[float]:
    """Seconds each of `count` calls took, made the default way (no address named)."""
    client = Client()
    assert client.via_own_socket, client.target
    times = []
    for i in range(count):
        started = time.monotonic()
        assert client.call("hello-dcf", f"{i}".encode(), timeout=10) == "Hello DCF"
        times.append(time.monotonic() - started)
    client.close()
    return times


def test_bodies_and_idle_sockets_leave_the_owner_served_and_memory_bounded(
        stranger: Stranger, opened_gateway: GatewayHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    """1,100 idle sockets on each port under `ulimit -n 1024`, then 24 bodies of 60 MiB at once (to a function and
    to none): the owner's calls answer within a second throughout, and the gateway's peak memory stays within
    three times its body budget (twice --max-message-size) above what it used before."""
    monkeypatch.setenv("DCF_STATE_DIR", str(opened_gateway.state_dir))  # "the default way" finds this gateway
    pid = opened_gateway.running.pid
    before = memory_of(pid)["VmRSS"]
    attack = stranger.popen(stranger.python, "-c", ATTACK, opened_gateway.address,
                            opened_gateway.running.http_address, "1100", "24",
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        said = json.loads(attack.stdout.readline())  # type: ignore[union-attr]
        assert said.get("idle", 0) >= 2000, said  # the stranger holds them (the gateway closed those past its cap)
        held = own_calls()
        attack.stdin.write("go\n")  # type: ignore[union-attr]
        attack.stdin.flush()  # type: ignore[union-attr]
        assert "posting" in json.loads(attack.stdout.readline())  # type: ignore[union-attr]
        during: list[float] = []
        done = threading.Event()

        def keep_calling() -> None:
            while not done.is_set():
                during.extend(own_calls(1))

        caller = threading.Thread(target=keep_calling)
        caller.start()
        statuses = json.loads(attack.stdout.readline())["statuses"]  # type: ignore[union-attr]
        done.set()
        caller.join(30)
    finally:
        if attack.stdin is not None:
            attack.stdin.close()
        attack.wait(60)
    peak = memory_of(pid)["VmHWM"]
    budget = 2 * MESSAGE_LIMIT
    print(f"\nowner's calls: {max(held) * 1000:.0f} ms at most while 2,200 sockets were held, "
          f"{max(during) * 1000:.0f} ms at most ({len(during)} calls) while 24 x 60 MiB were posted; gateway memory "
          f"{before / MIB:.0f} MiB before, peak {peak / MIB:.0f} MiB (+{(peak - before) / MIB:.0f} MiB); "
          f"answers: {sorted(map(str, statuses))}")
    assert max(held) < 1.0 and during and max(during) < 1.0, (held, during)
    assert statuses.count(404) == 12, statuses  # the unknown function: refused before a byte of its body was read
    assert 503 in statuses, statuses  # past the budget: refused at once
    assert peak - before < 3 * budget, (before, peak)
    assert own_calls(1)[0] < 1.0


def test_a_strangers_prints_leave_the_log_within_its_cap(stranger: Stranger, opened_gateway: GatewayHandle,
                                                         tmp_path: Path) -> None:
    """Ten 16 MiB inputs to a function that prints its input: its log stays within (backups + 1) x its size,
    and the owner still reads its last lines."""
    opened_gateway.client.deploy(init_function("prints", parent=tmp_path, handler_source=PRINTS))
    ran = stranger.run(stranger.python, "-c", RAW_CALLS, opened_gateway.address, "prints", "16MiB", "10",
                       timeout=300)
    answers = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [answer[:2] for answer in answers] == [["OK", "printed"]] * 10, ran.stderr or answers
    logs = sorted((opened_gateway.state_dir / "logs").glob("prints.log*"))
    total = sum(path.stat().st_size for path in logs)
    print(f"\nten 16 MiB prints: {len(logs)} log files, {total / MIB:.1f} MiB in all")
    assert len(logs) <= DEFAULT_BACKUPS + 1 and total <= (DEFAULT_BACKUPS + 1) * DEFAULT_MAX_BYTES, logs
    assert all(path.stat().st_size <= DEFAULT_MAX_BYTES for path in logs)
    tail = opened_gateway.client.logs("prints", 3)
    assert "got 16777216 bytes" in tail or "xxxx" in tail, tail[-300:]


def test_one_strangers_call_cannot_wedge_a_function_calling_itself(stranger: Stranger,
                                                                    opened_gateway: GatewayHandle,
                                                                    tmp_path: Path) -> None:
    """`concurrency: 4` and a self-call 20 deep: answered (refused at the depth limit) within a second, and the
    function free for the next caller."""
    opened_gateway.client.deploy(with_keys(init_function("chain", parent=tmp_path, handler_source=CHAIN),
                                           concurrency=4, timeout=60))
    ran = stranger.run(stranger.python, "-c", RAW_CALLS, opened_gateway.address, "chain", "20", "1")
    (code, said, seconds), = [json.loads(line) for line in ran.stdout.splitlines()]
    assert code != "OK" and "a chain of 17 function-to-function calls reached 'chain': at most 16" in said, said
    assert seconds < 1.0, seconds
    assert opened_gateway.client.call("chain", b"5", timeout=10) == "bottom"

"""The ray backend on a real Ray cluster: nodes started by `ray.cluster_utils.Cluster` (and only those stopped:
never `ray stop`), a gateway joined to it with --ray-address, functions as Ray Serve applications."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

ray = pytest.importorskip("ray", reason="the ray backend needs Ray: pip install -e '.[ray]'")
pytest.importorskip("ray.serve", reason="the ray backend needs Ray Serve: pip install -e '.[ray]'")

from ray.cluster_utils import Cluster  # noqa: E402 - after the importorskips
from support import (  # noqa: E402
    BATCHED,
    FUNCTIONS,
    GatewayHandle,
    at_once,
    eventually,
    run_cli,
    split,
    with_keys,
    with_timeout,
)
from test_requirements import build_wheel  # noqa: E402

from dcf_jupyter.errors import (  # noqa: E402
    ConfigError,
    DcfError,
    DeployError,
    FunctionError,
    FunctionNotFound,
    InvalidArgument,
)
from dcf_jupyter.host.pids import session_members  # noqa: E402
from dcf_jupyter.launch import start_detached  # noqa: E402
from dcf_jupyter.protocol import gateway_pb2 as pb  # noqa: E402
from dcf_jupyter.protocol import gateway_pb2_grpc as pb_grpc  # noqa: E402

# Which replica answered, and a revision mark an update changes.
pytestmark = pytest.mark.slow  # starts Ray clusters

WHO = """
import os

MARK = "v1"


class Handler:
    def __call__(self, req):
        return f"{MARK} {os.environ['DCF_REPLICA']} {req.text}"
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """One Ray node with 2 CPUs, started for these tests and shut down after them. Its GCS gives a node that
    stops answering health checks about two minutes (6 checks of 20 s; Ray's default, 5 of 10 s, about one)
    before it calls it dead: on a busy 2-core machine a node added by a test was once marked dead for missed
    health checks during the test."""
    patient = {"health_check_timeout_ms": 20_000, "health_check_failure_threshold": 6}
    # Its sessions in a directory of its own (the nodes added later use the head's), removed after: Ray's default,
    # /tmp/ray, keeps every session's logs and sockets, and piled up by hundreds across test runs.
    temp_dir = tempfile.mkdtemp(prefix="dcf-test-ray-")  # short: Ray's Unix sockets live under it
    nodes = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "include_dashboard": False, "_system_config": patient, "temp_dir": temp_dir})
    try:
        yield nodes
    finally:
        ray.shutdown()  # this process's own connection (serve_applications), before its head node goes
        nodes.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_gateway(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    """A gateway whose default backend is the ray one, on `cluster`."""
    state = tmp_path_factory.mktemp("ray-gateway") / "state"
    running, process = start_detached(state, "127.0.0.1", 0, timeout=120,
                                      extra=["--backend", "ray", "--ray-address", cluster.address, "--no-docker"])
    handle = GatewayHandle(running, process)
    try:
        yield handle
    finally:
        handle.stop()


def replies(gateway: GatewayHandle, count: int) -> list[str]:
    return [str(gateway.client.call("who", f"{i}")) for i in range(count)]


@pytest.mark.timeout(600)
def test_a_function_is_a_serve_application_with_replicas(ray_gateway: GatewayHandle, make_function) -> None:
    folder = make_function("who", WHO)
    result = ray_gateway.client.deploy(folder, replicas=2)
    assert result.message == "Deployed: who (2 replicas on the ray backend)" and not result.updated
    [info] = ray_gateway.client.list()
    assert (info.backend, info.status, info.replicas, info.available_replicas) == ("ray", "Ready", 2, 2)

    answered = replies(ray_gateway, 200)
    assert all(reply.startswith("v1 ") and reply.endswith(f" {i}") for i, reply in enumerate(answered))
    assert len({reply.split()[1] for reply in answered}) == 2, "Serve spreads calls over both replicas"

    frames = [f"{i}".encode() for i in range(500)]
    streamed = [reply.decode() for reply in ray_gateway.client.stream("who", frames)]
    assert [reply.split()[-1] for reply in streamed] == [f"{i}" for i in range(500)], "in request order"

    assert ray_gateway.client.scale("who", 1).replicas == 1
    eventually(lambda: ray_gateway.client.get("who").available_replicas == 1, 30, "who scaled in to one replica",
               every=0.2)
    left = {reply.split()[1] for reply in replies(ray_gateway, 20)}
    assert len(left) == 1 and left <= {reply.split()[1] for reply in answered}, "scaled in place: one stays"


@pytest.mark.timeout(600)
def test_an_update_rolls_out_without_a_failed_call(ray_gateway: GatewayHandle, cluster: Cluster,
                                                   make_function) -> None:
    folder = make_function("who", WHO)
    ray_gateway.client.deploy(folder, replicas=1)
    seen: list[str] = []
    failures: list[Exception] = []
    stop = threading.Event()

    def keep_calling() -> None:
        while not stop.is_set():
            try:
                seen.append(str(ray_gateway.client.call("who", "x")))
            except Exception as exc:  # noqa: BLE001 - every failure is what this test counts
                failures.append(exc)

    caller = threading.Thread(target=keep_calling)
    caller.start()
    try:
        (folder / "src" / "handler.py").write_text(WHO.replace('MARK = "v1"', 'MARK = "v2"'))
        assert ray_gateway.client.deploy(folder).message.startswith("Updated: who")
        eventually(lambda: seen and seen[-1].startswith("v2"), 30, "v2 answers", every=0.1, show=lambda: seen[-3:])
    finally:
        stop.set()
        caller.join()
    assert not failures, failures[:3]
    assert seen[0].startswith("v1") and seen[-1].startswith("v2")
    ray_gateway.client.delete("who")
    assert "who" not in {f.name for f in ray_gateway.client.list()}
    assert ray_gateway.client.list() == []
    assert "who" not in serve_applications(cluster)


# Busy for 0.3 s a call, saying which replica answered.
BUSY = """
import os
import time


class Handler:
    def __call__(self, req):
        time.sleep(0.3)
        return os.environ["DCF_REPLICA"]
"""


@pytest.mark.timeout(600)
def test_an_autoscaled_function_gets_a_replica_under_load_and_gives_it_back(ray_gateway: GatewayHandle,
                                                                            make_function) -> None:
    """config.yaml's `autoscaling:` is Serve's autoscaling_config: calls piling up add a replica (up to
    max_replicas), and when they stop Serve goes back to min_replicas. A fixed count cannot be set on it."""
    folder = with_keys(make_function("busy", BUSY), limits={"cpu": "0.5"}, autoscaling={
        "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1, "upscale_delay_s": 0,
        "downscale_delay_s": 1})
    said = ray_gateway.client.deploy(folder).message
    assert said == "Deployed: busy (1-2 replicas, autoscaled, on the ray backend)"
    try:
        info = ray_gateway.client.get("busy")
        assert (info.replicas, info.available_replicas) == (1, 1)
        with pytest.raises(DcfError, match="autoscales between 1 and 2 replicas"):
            ray_gateway.client.scale("busy", 2)

        answered: set[str] = set()
        stop = threading.Event()

        def keep_calling() -> None:
            while not stop.is_set():
                answered.add(str(ray_gateway.client.call("busy", b"")))

        callers = [threading.Thread(target=keep_calling) for _ in range(6)]
        for caller in callers:
            caller.start()
        try:
            eventually(lambda: ray_gateway.client.get("busy").available_replicas == 2, 90,
                       "a second replica under load", every=0.5, show=lambda: ray_gateway.client.get("busy"))
            # The calls in flight when the second replica came were all routed to the first: call on a while.
            eventually(lambda: len(answered) == 2, 30, "both replicas answered", every=0.5, show=lambda: answered)
        finally:
            stop.set()
            for caller in callers:
                caller.join()
        eventually(lambda: ray_gateway.client.get("busy").replicas == 1, 120, "back to one replica once idle",
                   every=0.5, show=lambda: ray_gateway.client.get("busy"))
    finally:
        ray_gateway.client.delete("busy")


@pytest.mark.timeout(600)
def test_an_idle_function_goes_to_zero_replicas_and_a_call_waits_for_serve_to_start_one(
        ray_gateway: GatewayHandle, make_function) -> None:
    """`min_replicas: 0` on Ray: the deploy still starts one (Serve's initial_replicas), Serve removes it when
    idle, and a call then waits in Serve's queue for the replica Serve starts for it."""
    folder = with_keys(make_function("dozy", BUSY), limits={"cpu": "0.5"}, autoscaling={
        "min_replicas": 0, "max_replicas": 1, "downscale_delay_s": 1})
    said = ray_gateway.client.deploy(folder).message
    assert said == "Deployed: dozy (0-1 replicas, autoscaled, on the ray backend)"
    try:
        assert ray_gateway.client.get("dozy").available_replicas == 1
        eventually(lambda: ray_gateway.client.get("dozy").idle, 180, "dozy idle", every=0.5,
                   show=lambda: ray_gateway.client.get("dozy"))
        started = time.monotonic()
        assert ray_gateway.client.call("dozy", b"", timeout=180)  # the replica's id, Serve's name for it
        print(f"Ray: a call at 0 replicas answered after {time.monotonic() - started:.1f} s")
    finally:
        ray_gateway.client.delete("dozy")


@pytest.mark.timeout(300)
def test_bad_input_is_answered_as_on_the_local_backend(ray_gateway: GatewayHandle, tmp_path: Path) -> None:
    """Unknown function, a message over the limit, a config that is not YAML: the same sentences as on the
    local backend; a 20 MB message goes through Ray (its object store) and back unchanged."""
    ray_gateway.client.deploy(FUNCTIONS / "echo")
    try:
        big = os.urandom(20 * 1024 * 1024)
        assert ray_gateway.client.call("echo", big) == big
        with pytest.raises(InvalidArgument, match="the request is 64 MiB, more than this client's limit of 64 MiB"):
            ray_gateway.client.call("echo", bytes(ray_gateway.client.max_message_size + 1))
        with pytest.raises(FunctionNotFound, match=r"function 'nobody' is not deployed \(deployed: echo\)"):
            ray_gateway.client.call("nobody", b"x")
        junk = tmp_path / "junk"
        (junk / "src").mkdir(parents=True)
        (junk / "src" / "handler.py").write_text("class Handler:\n    def __call__(self, req):\n        return 1\n")
        (junk / "config.yaml").write_text("functions: [\n")
        with pytest.raises(ConfigError, match="not valid YAML"):
            ray_gateway.client.deploy(junk, name="junk", backend="ray")
        assert [info.name for info in ray_gateway.client.list()] == ["echo"]
    finally:
        ray_gateway.client.delete("echo")


RAY_SECRETS_AND_MESH = """
import os
from pathlib import Path

from dcf_jupyter import mesh


class Handler:
    def __init__(self):
        self.key = (Path(os.environ["DCF_SECRETS_DIR"]) / "ray-api" / "TOKEN").read_text()  # at load, already there

    def __call__(self, req):
        return {"file": self.key, "env": os.environ.get("TOKEN"), "echo": mesh.call("echo", b"from Ray").decode(),
                "folder": os.environ["DCF_SECRETS_DIR"]}
"""


def test_a_ray_replica_fetches_its_secrets_and_calls_functions_through_the_gateway(
        ray_gateway: GatewayHandle, cluster: Cluster, make_function) -> None:
    """Secrets never travel in runtime_env: the replica fetches them (ReplicaSecrets) with its function's credential,
    which also calls other functions; another function's credential cannot fetch them. They leave the node with
    the replica (it once left them, and the credential, in /tmp), and a killed replica's are removed by the next
    replica that starts there."""
    client = ray_gateway.client
    value = "sk-ray-0b8d1e27"
    client.create_secret("ray-api", {"TOKEN": value})
    client.deploy(FUNCTIONS / "echo", backend="local")
    folder = with_keys(make_function("ray-secrets", RAY_SECRETS_AND_MESH), secrets=["ray-api"],
                       secrets_as_env=True)
    try:
        client.deploy(folder, backend="ray")
        answer = client.call("ray-secrets", timeout=60)
        secrets_dir = Path(answer.pop("folder"))
        assert answer == {"file": value, "env": value, "echo": "from Ray"}
        assert (secrets_dir / "ray-api" / "TOKEN").read_text() == value and secrets_dir.stat().st_mode & 0o077 == 0
        left = Path(tempfile.gettempdir()) / "dcf-replica-999999999-planted"  # a killed replica's, long gone
        left.mkdir()
        from ray import serve

        ray.init(address=cluster.address, namespace="dcf", ignore_reinit_error=True, log_to_driver=False)
        assert value not in str(serve.status().applications["ray-secrets"])
        from dcf_jupyter.gateway.auth import function_credential

        token = (ray_gateway.state_dir / "replica-token").read_text().strip()
        with grpc.insecure_channel(ray_gateway.address) as channel:
            stub = pb_grpc.GatewayStub(channel)
            for credential in (function_credential(token, "echo"), owner_token_of()):
                with pytest.raises(grpc.RpcError) as refused:
                    stub.ReplicaSecrets(pb.FunctionRequest(FunctionName="ray-secrets"), timeout=10,
                                        metadata=[("authorization", f"Bearer {credential}")])
                assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        client.scale("ray-secrets", 2)  # a second replica starts on this node: it removes what the dead one left
        eventually(lambda: not left.exists(), 60, "a dead replica's folder removed")
        client.delete("ray-secrets")
        eventually(lambda: not secrets_dir.exists(), 60, "the secrets leave the node with the replica")
    finally:
        with contextlib.suppress(FunctionNotFound):
            client.delete("ray-secrets")
        client.delete("echo")
        client.delete_secret("ray-api")


def owner_token_of() -> str:
    from dcf_jupyter.host.credentials import read_owner_token

    token = read_owner_token()
    assert token
    return token


def serve_applications(cluster: Cluster) -> set[str]:
    """The Serve applications on the cluster, asked of it directly (not through the gateway)."""
    from ray import serve

    ray.init(address=cluster.address, namespace="dcf", ignore_reinit_error=True, log_to_driver=False)
    return set(serve.status().applications)


@pytest.mark.timeout(300)
def test_a_handler_error_and_its_log_come_back_as_on_the_local_backend(ray_gateway: GatewayHandle,
                                                                        make_function) -> None:
    folder = with_timeout(make_function("picky", """
        import time


        class Handler:
            def __init__(self):
                print("picky is ready")

            def __call__(self, req):
                if req.input == b"slow":
                    time.sleep(10)
                if not req.input:
                    raise ValueError("send me some bytes")
                return len(req.input)
    """), 1.0)
    ray_gateway.client.deploy(folder)
    try:
        assert ray_gateway.client.call("picky", b"four") == 4  # len() comes back as the JSON number it is
        with pytest.raises(Exception) as failure:
            ray_gateway.client.call("picky", b"")
        assert "ValueError: send me some bytes" in str(failure.value)
        assert getattr(failure.value, "code", None) is not None
        # The replica's output and the handler's traceback, from whichever node it runs on.
        def logged() -> str:
            text = ray_gateway.client.logs("picky")
            return text if "send me some bytes" in text else ""

        logs = eventually(logged, 10, "the traceback in picky's log", every=0.2,
                          show=lambda: ray_gateway.client.logs("picky"))
        assert "picky is ready" in logs and "ValueError: send me some bytes" in logs, logs
        assert 'raise ValueError("send me some bytes")' in logs, logs
        with pytest.raises(FunctionError) as late:  # what the gateway says of it is what Ray does
            ray_gateway.client.call("picky", b"slow")
        assert late.value.code == "DEADLINE_EXCEEDED" and "did not answer within 1s" in str(late.value)
        assert "the replica stays busy until the handler returns" in str(late.value), str(late.value)
    finally:
        ray_gateway.client.delete("picky")


@pytest.mark.timeout(300)
def test_a_function_no_node_can_place_fails_in_a_sentence(ray_gateway: GatewayHandle, make_function,
                                                          tmp_path: Path) -> None:
    """No node has two GPUs; the one node's 2 CPUs hold two 1-CPU replicas, not three. Both deploys (at once:
    each waits 25 s for an autoscaler first) fail in a sentence saying what is asked and what the nodes have."""
    never = "class Handler:\n    def __call__(self, req):\n        return 'never'\n"
    greedy = with_keys(make_function("greedy", never), limits={"gpu": "2"})
    crowd = with_keys(make_function("crowd", never), limits={"cpu": "1"})
    failures: dict[str, BaseException] = {}

    def deploy(folder: Path, **options: int) -> None:
        try:
            ray_gateway.client.deploy(folder, **options)
        except DeployError as exc:
            failures[folder.name] = exc

    started = time.monotonic()
    both = [threading.Thread(target=deploy, args=(greedy,)),
            threading.Thread(target=deploy, args=(crowd,), kwargs={"replicas": 3})]
    for thread in both:
        thread.start()
    for thread in both:
        thread.join()
    assert time.monotonic() - started < 60
    assert sorted(failures) == ["crowd", "greedy"], failures
    assert "no node of the Ray cluster can place a replica (each replica needs GPU 2; the nodes have: GPU 0" \
        in str(failures["greedy"])
    assert "room for 2 of the 3 asked" in str(failures["crowd"]), str(failures["crowd"])
    assert ray_gateway.client.list() == []


@pytest.mark.timeout(300)
def test_requirements_nodeps_are_installed_without_their_dependencies_on_the_node(ray_gateway: GatewayHandle,
                                                                                   make_function) -> None:
    """requirements-nodeps.txt on Ray: installed by the replica (Ray's pip runtime_env has no per-package
    --no-deps) without the dependency the package declares, which exists nowhere."""
    folder = make_function("nodeps", """
        import dcfnodeps


        class Handler:
            def __call__(self, req):
                return dcfnodeps.VALUE
    """)
    (folder / "requirements-nodeps.txt").write_text("--no-index\n--find-links ./wheels\ndcfnodeps==1.0\n")
    build_wheel(folder / "wheels", "dcfnodeps", "1.0", 'VALUE = "installed without its dependencies"\n',
                requires=("no-such-dependency-xyz>=1",))
    ray_gateway.client.deploy(folder)
    try:
        assert ray_gateway.client.call("nodeps") == "installed without its dependencies"
        eventually(lambda: "installing requirements missing here: --no-index" in ray_gateway.client.logs("nodeps"),
                   10, "the log says what it installed", every=0.5, show=lambda: ray_gateway.client.logs("nodeps"))
    finally:
        ray_gateway.client.delete("nodeps")


WHERE = """
import os

import ray


class Handler:
    def __call__(self, req):
        return f"{os.environ.get('CUDA_VISIBLE_DEVICES', '-')} {ray.get_runtime_context().get_node_id()}"
"""


# Ray's own worker set-up, started SLOW_START_S late while the flag file exists: a worker that starts slowly,
# as on a busy machine (on this 2-core one a worker was seen to take over 30 s under load).
SLOW_SETUP_WORKER = """
import os
import runpy
import time

import ray

if os.path.exists({flag!r}):
    time.sleep({delay})
runpy.run_path(os.path.join(os.path.dirname(ray.__file__), "_private", "workers", "setup_worker.py"),
               run_name="__main__")
"""
SLOW_START_S = 40  # past Serve's 30 s after which it says the replica waits "to be scheduled"


@pytest.mark.timeout(600)
def test_a_gpu_function_lands_on_the_gpu_node(ray_gateway: GatewayHandle, cluster: Cluster, make_function,
                                              tmp_path: Path) -> None:
    """A second node declaring one GPU (Ray trusts the declared count): `gpu: 1` lands there, with the GPU
    Ray gave it in CUDA_VISIBLE_DEVICES, also when its worker takes 40 s to start (Serve then says the replica
    waits to be scheduled; the node has room for it, so the deploy waits); when that node goes, the function is
    reported unavailable, and when a node with a GPU joins, it serves again."""
    flag = tmp_path / "slow"
    flag.touch()
    setup_worker = tmp_path / "slow_setup_worker.py"
    setup_worker.write_text(SLOW_SETUP_WORKER.format(flag=str(flag), delay=SLOW_START_S))
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1, setup_worker_path=str(setup_worker))
    folder = with_keys(make_function("where", WHERE), limits={"gpu": "1"})
    try:
        started = time.monotonic()
        ray_gateway.client.deploy(folder)
        assert time.monotonic() - started > SLOW_START_S - 5, "the replica's worker started slowly"
        flag.unlink()
        devices, node = str(ray_gateway.client.call("where", b"")).split()
        assert devices == "0" and node == gpu_node.node_id
    finally:
        cluster.remove_node(gpu_node)
    eventually(lambda: not ray_gateway.client.get("where").available_replicas, 60, "no replica without a GPU node",
               every=0.5, show=lambda: ray_gateway.client.get("where"))
    info = ray_gateway.client.get("where")
    assert (info.available_replicas, info.status) == (0, "Not Ready"), info
    # A node with a GPU joins again: Serve places the replica there and the function serves again.
    rejoined = cluster.add_node(num_cpus=1, num_gpus=1)
    try:
        eventually(lambda: ray_gateway.client.get("where").available_replicas == 1, 90, "where placed on the new "
                   "GPU node", every=0.5, show=lambda: ray_gateway.client.get("where"))
        devices, node = str(ray_gateway.client.call("where", b"")).split()
        assert devices == "0" and node == rejoined.node_id
        assert ray_gateway.client.get("where").status == "Ready"
    finally:
        ray_gateway.client.delete("where")
        cluster.remove_node(rejoined)


NEVER = "class Handler:\n    def __call__(self, req):\n        return 'x'\n"
# The node that answered, after a little work (so that a map's calls overlap).
NODE = """
import time

import ray


class Handler:
    def __call__(self, req):
        time.sleep(0.05)
        return ray.get_runtime_context().get_node_id()
"""


@pytest.mark.timeout(600)
def test_cpu_replicas_that_take_every_cpu_leave_a_gpu_function_placeable(ray_gateway: GatewayHandle, cluster: Cluster,
                                                                         make_function) -> None:
    """The order that used to starve GPUs: CPU-only replicas take every CPU, the GPU node's one included; then a
    `gpu: 1` function deploys. Its replica asks for no CPU (only `limits.cpu` would), so it lands on the GPU.
    A map over the CPU function spreads over its replicas on both nodes."""
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1)
    fill = with_keys(make_function("fill", NODE), limits={"cpu": "1"})
    where = with_keys(make_function("where", WHERE), limits={"gpu": "1"})
    try:
        ray_gateway.client.deploy(fill, replicas=3)  # 2 CPUs of the head, 1 of the GPU node
        assert ray_gateway.client.get("fill").available_replicas == 3
        nodes = list(ray_gateway.client.map("fill", [b""] * 60, timeout=120))
        assert set(nodes) == {cluster.head_node.node_id, gpu_node.node_id}, nodes
        started = time.monotonic()
        ray_gateway.client.deploy(where)
        assert time.monotonic() - started < 60
        devices, node = str(ray_gateway.client.call("where", b"")).split()
        assert devices == "0" and node == gpu_node.node_id
    finally:
        for name in ("where", "fill"):
            with contextlib.suppress(FunctionNotFound):
                ray_gateway.client.delete(name)
        cluster.remove_node(gpu_node)


@pytest.mark.timeout(600)
def test_a_deploy_waiting_for_held_resources_says_so_and_gives_up_at_its_limit(cluster: Cluster, make_function,
                                                                               tmp_path: Path) -> None:
    """The one GPU is held by another function's replica: the second `gpu: 1` deploy says so within 30 s (on the
    CLI, from the function's log: what it needs, which node, held by whom) and fails at the gateway's
    --place-timeout, leaving no application, folder or log behind; the first keeps serving."""
    import subprocess
    import sys

    state = tmp_path / "state"
    extra = ["--backend", "ray", "--ray-address", cluster.address, "--no-docker", "--place-timeout", "45"]
    gateway = GatewayHandle(*start_detached(state, "127.0.0.1", 0, timeout=120, extra=extra))
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1)
    holder = with_keys(make_function("holder", WHERE), limits={"gpu": "1"})
    waiter = with_keys(make_function("waiter", NEVER), limits={"gpu": "1"})
    try:
        gateway.client.deploy(holder)
        command = [sys.executable, "-m", "dcf_jupyter.cli", "-g", gateway.address, "function", "deploy", "-f",
                   str(waiter / "config.yaml")]
        started = time.monotonic()
        deploy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        said_at, lines = None, []
        assert deploy.stderr is not None
        for line in deploy.stderr:
            lines.append(line)
            if "waiting for room on the Ray cluster" in line and said_at is None:
                said_at = time.monotonic() - started
        deploy.wait(30)
        failed_at = time.monotonic() - started
        text = "".join(lines)
        print(text, f"said at {said_at} s, failed at {failed_at:.1f} s")
        node = gpu_node.node_id[:8]
        assert said_at is not None and said_at < 30, text
        assert f"waiting for room on the Ray cluster: each replica needs GPU 1, and every node that has it is " \
               f"taken: node {node} (GPU 1) runs 1 replica of holder; the deploy fails after 45 s" in text
        assert deploy.returncode == 1 and 45 <= failed_at < 90, text
        assert "Error: waiter did not start: no room on the Ray cluster within 45 s: each replica " \
               f"needs GPU 1, and every node that has it is taken: node {node} (GPU 1) runs 1 replica of holder " \
               "(free those resources, or give the gateway a longer --place-timeout)" in text
        assert [f.name for f in gateway.client.list()] == ["holder"]
        assert "waiter" not in serve_applications(cluster)
        assert not (state / "functions" / "waiter").exists() and not (state / "logs" / "waiter.log").exists()
        assert str(gateway.client.call("holder", b"")).split()[1] == gpu_node.node_id
    finally:
        gateway.client.delete("holder")
        gateway.stop()
        cluster.remove_node(gpu_node)


@pytest.mark.timeout(600)
def test_a_restarted_gateway_reattaches_and_serve_heals_a_killed_replica(cluster: Cluster, make_function,
                                                                          tmp_path: Path) -> None:
    """The gateway stops: the application keeps serving on the cluster; the next gateway of the same state dir
    re-attaches to the same replicas instead of redeploying them. When a replica's process is killed, calls
    succeed again within 10 s and Serve replaces it."""
    folder = make_function("pids", "import os\n\n\nclass Handler:\n    def __call__(self, req):\n"
                                    "        return f\"{os.getpid()} {os.environ['DCF_REPLICA']}\"\n")
    state = tmp_path / "state"
    extra = ["--backend", "ray", "--ray-address", cluster.address, "--no-docker"]
    first = GatewayHandle(*start_detached(state, "127.0.0.1", 0, timeout=120, extra=extra))
    try:
        first.client.deploy(folder)
        before = str(first.client.call("pids", b""))
    finally:
        first.stop()
    assert "pids" in serve_applications(cluster), "a stopped gateway leaves the application serving"
    second = GatewayHandle(*start_detached(state, "127.0.0.1", 0, timeout=120, extra=extra))
    try:
        eventually(lambda: second.client.get("pids").status == "Ready", 60, "pids ready again", every=0.2,
                   show=lambda: second.client.get("pids"))
        assert str(second.client.call("pids", b"")) == before, "the same replica answers: nothing was redeployed"

        # Kill one of two replicas: calls succeed again within 10 s (the other serves), and Serve starts a
        # replacement (a third process answers) without anyone asking.
        second.client.scale("pids", 2)
        pids = {str(second.client.call("pids", b"")).split()[0] for _ in range(40)}
        assert len(pids) == 2, pids
        victim = int(before.split()[0])
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        answer, failures = None, []
        while time.monotonic() - killed < 10:
            try:
                answer = str(second.client.call("pids", b"", timeout=3))
                break
            except DcfError as exc:
                failures.append(f"{time.monotonic() - killed:.1f}s {exc}")
        assert answer is not None, f"no answer within 10 s of the kill: {failures[-3:]}"
        seen: set[str] = set()

        def a_new_replica_answers() -> set[str]:
            seen.add(str(second.client.call("pids", b"", timeout=3)).split()[0])
            return seen - pids

        eventually(a_new_replica_answers, 60, "Serve started a replica in place of the killed one", every=0.2,
                   ignoring=(DcfError,))
        second.client.delete("pids")
    finally:
        second.stop()



STREAMER = """
import time


class Handler:
    def __call__(self, req):
        for word in req.text.split():
            time.sleep(0.05)
            yield word.upper()
"""


@pytest.mark.timeout(600)
def test_generator_streams_and_another_gateways_function_is_not_clobbered(
        ray_gateway: GatewayHandle, cluster: Cluster, make_function, tmp_path: Path) -> None:
    folder = make_function("shout", STREAMER)
    ray_gateway.client.deploy(folder)
    try:
        items = [reply.value() for reply in ray_gateway.client.call_stream("shout", "one two three")]
        assert items == ["ONE", "TWO", "THREE"], "InvokeStream: a reply per generated item, in order"
        other = GatewayHandle(*start_detached(tmp_path / "other", "127.0.0.1", 0, timeout=120, extra=[
            "--backend", "ray", "--ray-address", cluster.address, "--no-docker"]))
        try:
            with pytest.raises(DeployError) as refused:
                other.client.deploy(folder)
            assert "a Serve application named 'shout' already runs on this Ray cluster" in str(refused.value)
            # Listed by the other gateway as what it is; a Serve application that is no DCF function is not.
            plain_serve_application(cluster)
            [listed] = other.client.list()
            assert (listed.name, listed.backend, listed.status, listed.replicas, listed.available_replicas,
                    listed.deployed_elsewhere) == ("shout", "ray", "Ready", 1, 1, True)
            assert other.client.get("shout") == listed
            assert [info.name for info in ray_gateway.client.list()] == ["shout"]
            assert not ray_gateway.client.get("shout").deployed_elsewhere
            for manage in (lambda: other.client.delete("shout"), lambda: other.client.call("shout", "hi")):
                with pytest.raises(DcfError, match="function 'shout' was deployed by another gateway on the "
                                                   "ray backend's cluster: this gateway lists it but leaves it alone"):
                    manage()
        finally:
            other.stop()
            from ray import serve

            serve.delete("plain")
        assert [r.value() for r in ray_gateway.client.call_stream("shout", "still here")] == ["STILL", "HERE"]
    finally:
        ray_gateway.client.delete("shout")


@pytest.mark.timeout(600)
def test_a_batched_handler_on_ray_gets_concurrent_calls_and_stream_frames_as_batches(
        ray_gateway: GatewayHandle, make_function) -> None:
    ray_gateway.client.deploy(with_keys(make_function("batched-serve", BATCHED),
                                        batching={"max_batch_size": 8, "max_wait_ms": 100}))
    try:
        client = ray_gateway.client
        asked = [split(reply) for reply in at_once(12, lambda i: client.call("batched-serve", f"c{i}", timeout=60))]
        assert [ask for ask, _ in asked] == [f"c{i}" for i in range(12)], asked
        frames = [split(reply.decode()) for reply in client.stream("batched-serve", (f"f{i}" for i in range(16)),
                                                                    timeout=60)]
        assert [ask for ask, _ in frames] == [f"f{i}" for i in range(16)], frames
        assert max(size for _, size in asked + frames) > 1, (asked, frames)  # in the Serve replica, batched
    finally:
        client.delete("batched-serve")


def plain_serve_application(cluster: Cluster) -> None:
    """A Serve application named 'plain' on `cluster` that no gateway deployed (no DCF function)."""
    from ray import serve

    serve_applications(cluster)  # joins the cluster

    def plain(request: object) -> str:
        return "not a DCF function"

    serve.run(serve.deployment(plain).bind(), name="plain", route_prefix=None)


def ray_heads_of(pid: int) -> list[int]:
    """The `ray start --head` children of process `pid`."""
    heads = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"ray.scripts.scripts" in command and b"--head" in command:
            heads.append(int(stat.parent.name))
    return heads


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the head's processes in Linux's /proc")
@pytest.mark.timeout(600)
def test_a_gateway_without_a_cluster_starts_a_local_ray_and_stops_all_of_it(make_function, tmp_path: Path) -> None:
    """No --ray-address: the gateway starts a Ray head of its own (a child, by pid), serves on it, and stopping
    the gateway stops every process of that head; nothing is left listening."""
    folder = make_function("who", WHO)
    gateway = GatewayHandle(*start_detached(tmp_path / "state", "127.0.0.1", 0, timeout=120,
                                            extra=["--backend", "ray", "--no-docker"]))
    try:
        assert gateway.client.deploy(folder).message.startswith("Deployed: who (1 replica on the ray backend)")
        mark, _, text = str(gateway.client.call("who", "hi")).split()
        assert (mark, text) == ("v1", "hi")
        heads = ray_heads_of(gateway.process.pid)
        assert len(heads) == 1, "one Ray head, the gateway's child"
        assert len(session_members(heads[0])) >= 3, "the head runs its GCS and raylet in its own session"
        # Ray's temp dir (logs, sockets, the replicas' output), which Ray opens to all, sits in a directory only
        # this user may enter: not in the shared /tmp/ray.
        argv = Path(f"/proc/{heads[0]}/cmdline").read_bytes().decode().split("\0")
        ray_temp = Path(next(arg for arg in argv if arg.startswith("--temp-dir=")).split("=", 1)[1])
        private = ray_temp.parent
        assert (private.stat().st_mode & 0o777, private.stat().st_uid) == (0o700, os.getuid()), private
        assert (ray_temp / "session_latest" / "logs").is_dir(), "Ray's session is there"
        # `dcf gateway stop` returns once the gateway is gone, and the gateway goes once its Ray has.
        started = time.monotonic()
        stopped = run_cli("gateway", "stop", "--state-dir", str(gateway.state_dir))
        took = time.monotonic() - started
        left = session_members(heads[0])
    finally:
        gateway.stop()
    assert stopped.returncode == 0 and b"Stopped the gateway" in stopped.stdout, stopped.stderr
    assert left == [], "every process of the gateway's Ray stopped before `dcf gateway stop` returned"
    assert took < 15, f"stopping took {took:.1f} s"
    assert not private.exists(), "the head's private directory goes with it"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the head's processes in Linux's /proc")
def test_a_local_ray_that_does_not_start_is_tried_again_then_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    from dcf_jupyter.backends.ray.head import LocalRayHead
    from dcf_jupyter.errors import GatewayStartError

    launched: list[LocalRayHead] = []
    launch = LocalRayHead._launch.__func__  # type: ignore[attr-defined]

    def counted(cls: type[LocalRayHead]) -> LocalRayHead:
        launched.append(launch(cls))
        return launched[-1]

    monkeypatch.setattr(LocalRayHead, "_launch", classmethod(counted))
    with pytest.raises(GatewayStartError, match=r"a local Ray did not start in 2 attempts: not running after 0.5 s"):
        LocalRayHead.start(attempts=2, timeout=0.5)
    assert len(launched) == 2
    for head in launched:
        assert head.process.returncode is not None and session_members(head.process.pid) == []
        assert not head.output.exists()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the head's processes in Linux's /proc")
@pytest.mark.timeout(300)
def test_a_local_ray_stops_when_its_gateway_is_killed() -> None:
    """The head's supervisor holds a pipe from the gateway: a gateway killed with SIGKILL (no clean-up of its
    own) still leaves no Ray processes behind."""
    import subprocess
    import sys

    owner = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom dcf_jupyter.backends.ray.head import LocalRayHead\n"
        "head = LocalRayHead.start()\nprint(head.process.pid, flush=True)\ntime.sleep(600)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        head = int(owner.stdout.readline())
        assert session_members(head), "the head runs"
    finally:
        owner.kill()
        owner.wait()
    eventually(lambda: session_members(head) == [], 5, "the killed owner's Ray stopped by itself", every=0.1,
               show=lambda: session_members(head))


@pytest.mark.timeout(400)
def test_the_clusters_token_is_found_where_rays_cli_looks_and_a_wrong_or_missing_one_is_a_sentence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster with Ray's token authentication (a head of our own, with its own token): a gateway given the
    token in a file named by $RAY_AUTH_TOKEN_PATH joins it; a wrong token, or none at all (nothing in the
    environment, no ~/.ray/auth_token), is one sentence saying where Ray looks for it."""
    from dcf_jupyter.backends.ray.head import LocalRayHead
    from dcf_jupyter.errors import GatewayStartError

    head = LocalRayHead.start()
    try:
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token of this machine's user
        monkeypatch.setenv("RAY_AUTH_MODE", "token")
        monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
        monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
        join = ["--backend", "ray", "--ray-address", head.address, "--no-docker"]
        where = r"\(\$RAY_AUTH_TOKEN, a file named by \$RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token\)"
        with pytest.raises(GatewayStartError, match=where) as missing:
            start_detached(tmp_path / "none", "127.0.0.1", 0, timeout=120, extra=join)
        monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-clusters-token")
        monkeypatch.setenv("RAY_gcs_server_port_wait_time_s", "5")  # Ray retries a refused token 45 s otherwise
        with pytest.raises(GatewayStartError, match=where) as wrong:
            start_detached(tmp_path / "wrong", "127.0.0.1", 0, timeout=120, extra=join)
        for failure in (missing, wrong):
            assert "\n" not in str(failure.value) and "Traceback" not in str(failure.value), failure.value
        monkeypatch.delenv("RAY_AUTH_TOKEN")
        monkeypatch.delenv("RAY_gcs_server_port_wait_time_s")
        (tmp_path / "token").write_text(head.token)
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "token"))
        joined = GatewayHandle(*start_detached(tmp_path / "right", "127.0.0.1", 0, timeout=120, extra=join))
        try:
            assert joined.client.info()["backends"], joined.client.info()
        finally:
            joined.stop()
    finally:
        head.stop()

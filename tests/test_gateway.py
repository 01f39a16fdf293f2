"""The gateway with real worker processes on loopback: routing, streams, faults, replicas, registry."""

from __future__ import annotations

import base64
import os
import signal
import time
from pathlib import Path

import grpc
import pytest
from support import (
    FUNCTIONS,
    HANGS_ON_REQUEST,
    call_until_answered,
    eventually,
    owner_channel,
    start_gateway,
    with_timeout,
)

import dcf_jupyter
from dcf_jupyter.client import Client
from dcf_jupyter.definition.source import pack_folder
from dcf_jupyter.errors import (
    ClientTimeout,
    ConfigError,
    DeployError,
    FunctionError,
    FunctionExists,
    FunctionNotFound,
    GatewayStartError,
    InvalidArgument,
)
from dcf_jupyter.host.pids import pid_alive
from dcf_jupyter.protocol import gateway_pb2 as pb
from dcf_jupyter.protocol import gateway_pb2_grpc as pb_grpc

PID_HANDLER = """
    import os
    class Handler:
        def __call__(self, req):
            if req.input == b"die":
                os._exit(1)
            return str(os.getpid())
"""


@pytest.fixture
def stub(gateway):
    with owner_channel(gateway.address) as channel:
        yield pb_grpc.GatewayStub(channel)


def test_invoke_bytes_and_classic_invoke(gateway, stub) -> None:
    assert stub.Invoke(pb.InvokeServiceRequest(Service="hello-dcf", Input=b"x")).Msg == "Hello DCF"
    assert gateway.client.call("echo", b"\x00\x01binary") == b"\x00\x01binary"
    assert gateway.client.call("hello-dcf") == "Hello DCF"
    # DCF's Message.Msg is a string: binary that is not UTF-8 arrives base64'd instead of breaking the call.
    binary = stub.Invoke(pb.InvokeServiceRequest(Service="echo", Input=b"\xff\xfe")).Msg
    assert binary == base64.b64encode(b"\xff\xfe").decode()


def test_a_thousand_frame_stream_arrives_in_order_byte_identical(gateway) -> None:
    frames = [os.urandom(17) + i.to_bytes(4, "big") * (i % 50) for i in range(1000)]
    replies = list(gateway.client.stream("echo", iter(frames)))
    assert len(replies) == 1000
    assert replies == frames


def test_large_messages_pass_and_oversized_ones_say_the_limit(gateway) -> None:
    big = os.urandom(20 * 1024 * 1024)
    assert gateway.client.call("echo", big) == big
    with pytest.raises(InvalidArgument, match=r"the request is 64 MiB, more than this client's limit of 64 MiB: "
                                              r"raise it with \$DCF_MAX_MESSAGE_SIZE"):
        gateway.client.call("echo", bytes(gateway.client.max_message_size + 1))
    # A request larger than the gateway takes names the gateway's limit.
    with pytest.raises(InvalidArgument, match="the request is 64 MiB, more than the gateway's limit of 64 MiB"):
        Client(gateway.address, max_message_size=128 << 20).call("echo", bytes((64 << 20) + 16))
    # A client with a larger limit of its own is stopped by the gateway, which names its limit.
    limit = gateway.client.info()["max_message_size"]
    options = [("grpc.max_send_message_length", 2 * limit)]
    with owner_channel(gateway.address, options=options) as channel, pytest.raises(grpc.RpcError) as info:
        pb_grpc.GatewayStub(channel).InvokeBytes(pb.InvokeServiceRequest(Service="echo", Input=bytes(limit + 1)))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and str(limit) in info.value.details()


def test_handler_exception_becomes_a_status_and_the_worker_keeps_serving(gateway, make_function) -> None:
    folder = make_function("flaky", """
        class Handler:
            def __call__(self, req):
                if req.input == b"bad":
                    raise RuntimeError("the model choked on this input")
                if req.input == b"value":
                    raise ValueError("expected a JPEG image")
                return "fine"
    """)
    gateway.client.deploy(folder)
    try:
        with pytest.raises(FunctionError) as info:
            gateway.client.call("flaky", b"bad")
        assert info.value.code == "INTERNAL"
        assert "RuntimeError: the model choked on this input" in str(info.value)
        assert 'handler.py", line 5, in __call__' in info.value.detail
        with pytest.raises(FunctionError) as info:
            gateway.client.call("flaky", b"value")
        assert info.value.code == "INVALID_ARGUMENT"
        assert gateway.client.call("flaky", b"ok") == "fine"
        assert "the model choked on this input" in gateway.client.logs("flaky")
    finally:
        gateway.client.delete("flaky")


def test_killed_worker_is_restarted_and_serves_again_within_5s(gateway, make_function) -> None:
    gateway.client.deploy(make_function("pid-a", PID_HANDLER))
    try:
        pid = int(gateway.client.call("pid-a"))
        os.kill(pid, signal.SIGKILL)
        start = time.monotonic()
        new_pid = int(call_until_answered(gateway.client, "pid-a", within=5))
        assert new_pid != pid
        assert time.monotonic() - start < 5
        assert "exited with code -9; restarting" in gateway.client.logs("pid-a")
    finally:
        gateway.client.delete("pid-a")


def test_worker_dying_mid_call_fails_that_call_as_unavailable(gateway, make_function) -> None:
    gateway.client.deploy(make_function("pid-b", PID_HANDLER))
    try:
        with pytest.raises(FunctionError) as info:
            gateway.client.call("pid-b", b"die")
        assert info.value.code == "UNAVAILABLE"
        assert "stopped during the call" in str(info.value)
    finally:
        gateway.client.delete("pid-b")


@pytest.mark.parametrize("name", ["../x", "UPPER", "a_b"])
def test_invalid_names_are_invalid_argument(gateway, stub, name: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Invoke(pb.InvokeServiceRequest(Service=name, Input=b""))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid function name" in info.value.details()


def test_empty_name_is_invalid_argument(stub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Invoke(pb.InvokeServiceRequest(Service="", Input=b""))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_function_is_not_found_naming_it(gateway, stub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Invoke(pb.InvokeServiceRequest(Service="no-such-fn", Input=b""))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'no-such-fn'" in info.value.details()
    with pytest.raises(FunctionNotFound):
        list(gateway.client.stream("no-such-fn", [b"a"]))
    for call in (gateway.client.logs, gateway.client.delete, gateway.client.get):
        with pytest.raises(FunctionNotFound):
            call("no-such-fn")


def test_deploy_without_handler_is_failed_precondition_with_the_import_error(gateway, stub, make_function) -> None:
    folder = make_function("no-handler", "class Other:\n    pass\n")
    # A client that checks nothing first gets it from the gateway...
    with pytest.raises(grpc.RpcError) as info:
        stub.Deploy(pb.CreateFunctionRequest(Service="no-handler", Source=pack_folder(folder, limit=1 << 20)))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "defines no 'Handler'" in info.value.details()
    # ...ours says the same before uploading anything, as `dcf function build` does.
    with pytest.raises(ConfigError, match="defines no 'Handler'"):
        gateway.client.deploy(folder)
    assert "no-handler" not in {f.name for f in gateway.client.list()}


def test_deploy_checks_the_handler_path_before_uploading(gateway, make_function) -> None:
    folder = make_function("misplaced", "class Handler:\n    def __call__(self, req):\n        return 'x'\n")
    config = folder / "config.yaml"
    config.write_text(config.read_text().replace("dir: ./src", "dir: ./scr"))
    with pytest.raises(ConfigError) as info:
        gateway.client.deploy(folder)
    assert str(info.value) == "functions.misplaced.handler: no handler file at scr/handler.py " \
        "(set handler.dir / handler.file)"


def test_deploy_with_a_crashing_init_reports_its_traceback(gateway, make_function) -> None:
    folder = make_function("bad-init", "class Handler:\n    def __init__(self):\n        open('/no/model.bin')\n")
    with pytest.raises(DeployError) as info:
        gateway.client.deploy(folder)
    assert "FileNotFoundError" in str(info.value)
    assert "line 3, in __init__" in info.value.detail


def test_deploy_of_an_image_only_request_explains_itself(stub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.Deploy(pb.CreateFunctionRequest(Service="imgonly", Image="registry/imgonly"))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no function source" in info.value.details()


def test_deploy_twice_is_already_exists_and_update_replaces_in_place(gateway, make_function, tmp_path: Path) -> None:
    folder = make_function("versioned", "class Handler:\n    def __call__(self, req):\n        return 'v1'\n")
    gateway.client.deploy(folder)
    try:
        with pytest.raises(FunctionExists):
            gateway.client.deploy(folder, update=False)
        (folder / "src" / "handler.py").write_text(
            "class Handler:\n    def __call__(self, req):\n        return 'v2'\n")
        updated = gateway.client.deploy(folder)
        assert updated.message.startswith("Updated: versioned") and updated.updated
        assert gateway.client.call("versioned") == "v2"
        info = gateway.client.get("versioned")
        assert info.replicas == info.available_replicas == 1  # no duplicate workers left behind
    finally:
        gateway.client.delete("versioned")


def test_replicas_share_calls_round_robin(gateway, make_function) -> None:
    gateway.client.deploy(make_function("spread", PID_HANDLER))
    try:
        assert gateway.client.scale("spread", 3).available_replicas == 3
        pids = [gateway.client.call("spread") for _ in range(9)]
        assert len(set(pids)) == 3 and all(pids.count(p) == 3 for p in set(pids))
        gateway.client.scale("spread", 1)
        assert len({gateway.client.call("spread") for _ in range(4)}) == 1
    finally:
        gateway.client.delete("spread")


def test_generator_handler_streams_with_invoke_stream_and_folds_for_unary(gateway, make_function) -> None:
    gateway.client.deploy(make_function("counter", """
        class Handler:
            def __call__(self, req):
                for i in range(int(req.input)):
                    yield {"i": i}
    """))
    try:
        items = [r.json() for r in gateway.client.call_stream("counter", b"4")]
        assert items == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]
        assert gateway.client.call_reply("counter", b"2").json() == [{"i": 0}, {"i": 1}]
    finally:
        gateway.client.delete("counter")


def test_list_counts_invocations_and_reports_status(gateway) -> None:
    before = {f.name: f for f in gateway.client.list()}["hello-dcf"].invocations
    for _ in range(3):
        gateway.client.call("hello-dcf")
    info = gateway.client.get("hello-dcf")
    assert info.invocations == before + 3
    assert info.status == "Ready" and info.backend == "local" and info.available_replicas == 1
    assert "local" in gateway.client.info()["backends"]


def test_stream_naming_another_function_midway_is_refused(gateway, stub) -> None:
    requests = iter([pb.InvokeServiceRequest(Service="echo", Input=b"a"),
                     pb.InvokeServiceRequest(Service="hello-dcf", Input=b"b")])
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Invokes(requests))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


ENDLESS_GENERATOR = """
    import os
    class Handler:
        def __call__(self, req):
            progress = req.input.decode()
            made = 0
            try:
                while True:
                    made += 1
                    with open(progress + ".new", "w") as f:
                        f.write(str(made))
                    os.replace(progress + ".new", progress)  # the test reads it meanwhile
                    yield bytes(256 * 1024)
            finally:
                with open(progress + ".closed", "w") as f:
                    f.write(str(made))
"""


def test_a_slow_invoke_stream_reader_holds_the_generator_back_and_cancelling_closes_it(
        gateway, stub, make_function, tmp_path) -> None:
    from dcf_jupyter.protocol.link import STREAM_WINDOW

    gateway.client.deploy(make_function("endless", ENDLESS_GENERATOR))
    progress = tmp_path / "made"
    try:
        replies = stub.InvokeStream(pb.InvokeServiceRequest(Service="endless", Input=str(progress).encode()),
                                    timeout=60)  # a stall fails as DEADLINE_EXCEEDED instead of hanging
        assert len(next(replies).Output) == 256 * 1024
        time.sleep(1.0)
        made_after_1s = int(progress.read_text())
        time.sleep(1.0)
        made_after_2s = int(progress.read_text())
        # Without credits the generator runs on at memory speed (gigabytes a second into the gateway).
        assert made_after_1s == made_after_2s, "the generator ran on while nobody read"
        # The credit window, plus what gRPC's HTTP/2 windows and buffers hold between gateway and client.
        assert made_after_2s <= STREAM_WINDOW + 64, f"{made_after_2s} items made for 1 read"
        for _ in range(2 * made_after_2s):  # past what was made: reading returns credits, so it goes on
            next(replies)
        replies.cancel()
        closed = progress.with_name("made.closed")
        eventually(closed.exists, 5, "cancelling the call stopped the handler's generator")
        assert gateway.client.call("echo", b"still fine") == b"still fine"
    finally:
        gateway.client.delete("endless")


def test_registry_survives_a_gateway_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = start_gateway(state)
    try:
        first.client.deploy(FUNCTIONS / "hello-dcf")
        for _ in range(5):
            first.client.call("hello-dcf")
    finally:
        first.stop()
    second = start_gateway(state)
    try:
        eventually(lambda: second.client.get("hello-dcf").status == "Ready", 20, "hello-dcf came back", every=0.1)
        assert second.client.call("hello-dcf") == "Hello DCF"
        assert second.client.get("hello-dcf").invocations == 6
    finally:
        second.stop()


def test_a_second_gateway_on_the_same_state_dir_is_refused(fresh_gateway) -> None:
    from dcf_jupyter.launch import GatewayStartError

    with pytest.raises(GatewayStartError, match="already serves"):
        start_gateway(fresh_gateway.state_dir)


def test_workers_exit_when_the_gateway_is_killed(fresh_gateway, make_function) -> None:
    fresh_gateway.client.deploy(make_function("orphan", PID_HANDLER))
    pid = int(fresh_gateway.client.call("orphan"))
    os.kill(fresh_gateway.running.pid, signal.SIGKILL)
    eventually(lambda: not pid_alive(pid), 10, "the worker exits with its gateway")


def test_a_killed_gateways_socket_dir_is_removed_by_the_next_one(fresh_gateway, make_function) -> None:
    fresh_gateway.client.deploy(make_function("sockets", PID_HANDLER))
    left = Path((fresh_gateway.state_dir / "sockets.path").read_text())
    assert any(left.glob("sockets.*.sock"))
    os.kill(fresh_gateway.running.pid, signal.SIGKILL)
    fresh_gateway.process.wait(timeout=10)
    assert left.is_dir(), "SIGKILL runs no cleanup: the dir is still there"
    second = start_gateway(fresh_gateway.state_dir)
    try:
        assert not left.exists()
        assert Path((fresh_gateway.state_dir / "sockets.path").read_text()).is_dir()
    finally:
        second.stop()
    assert not (fresh_gateway.state_dir / "sockets.path").exists()


def test_health_and_info(gateway, stub) -> None:
    assert stub.HealthCheck(pb.Empty()).Msg == "OK"
    info = gateway.client.info()
    assert info["address"] == gateway.address and info["functions"] >= 2


def test_module_level_api_resolves_the_address_like_the_cli(gateway, make_function, monkeypatch) -> None:
    from dcf_jupyter import client as api

    folder = make_function("via-config", "class Handler:\n    def __call__(self, req):\n        return 'cfg'\n")
    config = folder / "config.yaml"
    config.write_text(config.read_text() + f"dcf:\n  gateway: {gateway.address}\n")
    assert api.deploy(folder).message.startswith("Deployed: via-config")  # found through dcf.gateway
    monkeypatch.setenv("DCF_GATEWAY", gateway.address)
    assert api.call("via-config") == "cfg"
    assert "via-config" in {f.name for f in api.list_functions()}
    assert not hasattr(api, "list"), "no alias shadows the builtin"
    assert list(api.stream("echo", [b"a", b"b"])) == [b"a", b"b"]
    assert "ready" in api.logs("via-config")
    assert api.delete("via-config") is None
    assert "via-config" not in {f.name for f in api.list_functions()}


def test_a_stuck_handler_times_out_as_deadline_exceeded_and_its_worker_is_recycled(gateway, make_function) -> None:
    gateway.client.deploy(with_timeout(make_function("stuck", HANGS_ON_REQUEST), 0.5))
    try:
        boot = gateway.client.call("stuck")
        start = time.monotonic()
        with pytest.raises(FunctionError) as info:
            gateway.client.call("stuck", b"hang")
        assert info.value.code == "DEADLINE_EXCEEDED"
        assert "did not answer within 0.5s" in str(info.value) and "restarted" in str(info.value)
        assert time.monotonic() - start < 3
        assert call_until_answered(gateway.client, "stuck") != boot  # a fresh worker serves
        # In a stream: the frames before the stuck one are answered, then the stream ends with the status.
        replies = []
        with pytest.raises(FunctionError) as info:
            for reply in gateway.client.stream("stuck", [b"a", b"hang", b"b"]):
                replies.append(reply)
        assert len(replies) == 1 and info.value.code == "DEADLINE_EXCEEDED"
        assert len(call_until_answered(gateway.client, "stuck")) == 32
    finally:
        gateway.client.delete("stuck")


def test_the_callers_timeout_is_a_client_timeout_not_the_functions(gateway, make_function) -> None:
    """The function's own `timeout` ends the call on the gateway (FunctionError DEADLINE_EXCEEDED, above); a
    caller's shorter timeout is ClientTimeout, for calls and streams alike, and the function keeps serving."""
    gateway.client.deploy(with_timeout(make_function("slow-to-answer", HANGS_ON_REQUEST), 2))
    try:
        boot = gateway.client.call("slow-to-answer")
        with pytest.raises(ClientTimeout) as info:
            gateway.client.call("slow-to-answer", b"hang", timeout=0.5)
        assert not isinstance(info.value, FunctionError) and isinstance(info.value, TimeoutError)
        assert str(info.value).startswith("calling 'slow-to-answer': no reply within the timeout this call was "
                                          "given")
        with pytest.raises(ClientTimeout):
            list(dcf_jupyter.stream("slow-to-answer", [b"hang"], gateway=gateway.address, timeout=0.5))
        # The abandoned calls still hold the worker: the next call's own timeout (2 s) recycles it, then it serves.
        assert len(call_until_answered(gateway.client, "slow-to-answer", within=15)) == len(boot) == 32
    finally:
        gateway.client.delete("slow-to-answer")


SLOW_RECORDER = """
    import time
    class Handler:
        def __call__(self, req):
            with open({log!r}, "ab") as log:
                log.write(req.input + b"\\n")
            time.sleep(0.3)
            return req.input
"""


def test_a_cancelled_stream_cancels_the_calls_its_worker_has_not_started(gateway, make_function, tmp_path) -> None:
    ran = tmp_path / "ran.log"
    gateway.client.deploy(make_function("slow", SLOW_RECORDER.format(log=str(ran))))
    try:
        replies = gateway.client.stream("slow", (f"frame{i}".encode() for i in range(12)))
        assert next(replies) == b"frame0"  # by now all 12 frames are in the gateway's window
        replies.close()  # the client cancels the stream
        start = time.monotonic()
        assert gateway.client.call("slow", b"probe") == b"probe"
        # At most the frame running at the cancel (and one starting meanwhile) comes before the probe.
        assert time.monotonic() - start < 1.5
        ran_lines = ran.read_bytes().split()
        assert ran_lines[-1] == b"probe" and len(ran_lines) <= 4, ran_lines
    finally:
        gateway.client.delete("slow")


def test_a_call_whose_deadline_passes_in_the_queue_never_runs(gateway, make_function, tmp_path) -> None:
    import threading

    ran = tmp_path / "ran.log"
    gateway.client.deploy(make_function("slow", SLOW_RECORDER.format(log=str(ran))))
    try:
        first = threading.Thread(target=gateway.client.call, args=("slow", b"first"))
        first.start()
        time.sleep(0.1)  # "first" is running in the only worker thread
        with pytest.raises(ClientTimeout):  # the caller's deadline, not the function's timeout
            gateway.client.call("slow", b"late", timeout=0.1)
        first.join()
        assert gateway.client.call("slow", b"probe") == b"probe"
        assert ran.read_bytes().split() == [b"first", b"probe"]
    finally:
        gateway.client.delete("slow")


def test_a_worker_killed_mid_stream_ends_the_stream_as_unavailable(gateway, make_function) -> None:
    gateway.client.deploy(make_function("pid-c", """
        import os, time
        class Handler:
            def __call__(self, req):
                time.sleep(0.02)
                return str(os.getpid())
    """))
    try:
        replies: list[bytes] = []
        with pytest.raises(FunctionError) as info:
            for reply in gateway.client.stream("pid-c", (b"x" for _ in range(500))):
                replies.append(reply)
                if len(replies) == 3:
                    os.kill(int(reply), signal.SIGKILL)
        assert info.value.code == "UNAVAILABLE" and "stopped during the call" in str(info.value)
        assert 3 <= len(replies) < 500 and len(set(replies)) == 1
        # The restarted worker takes new streams.
        assert call_until_answered(gateway.client, "pid-c") != replies[0].decode()
        assert len(list(gateway.client.stream("pid-c", [b"a", b"b"]))) == 2
    finally:
        gateway.client.delete("pid-c")


def test_a_crash_looping_worker_is_restarted_with_growing_back_off(gateway, make_function) -> None:
    gateway.client.deploy(make_function("pid-d", PID_HANDLER))
    try:
        for _ in range(3):
            call_until_answered(gateway.client, "pid-d")
            with pytest.raises(FunctionError):
                gateway.client.call("pid-d", b"die")
        call_until_answered(gateway.client, "pid-d")
        delays = [line.rsplit("restarting in ", 1)[1] for line in gateway.client.logs("pid-d").splitlines()
                  if "restarting in" in line]
        assert delays == ["0.1s", "0.2s", "0.4s"]
    finally:
        gateway.client.delete("pid-d")


def test_a_stream_stops_reading_when_its_window_is_full(tmp_path, make_function) -> None:
    handle = start_gateway(tmp_path / "state", "--stream-window", "4")
    try:
        handle.client.deploy(make_function("slow-len", """
            import time
            class Handler:
                def __call__(self, req):
                    time.sleep(0.2)
                    return str(len(req.input))
        """))
        pulled = 0

        def frames():
            nonlocal pulled
            for _ in range(300):
                pulled += 1
                yield bytes(256 * 1024)

        replies = handle.client.stream("slow-len", frames())
        assert next(replies) == str(256 * 1024).encode()
        time.sleep(1.5)
        # 300 frames (75 MB) are ready to go; the sender is held back to the ~8 answered, the window of 4,
        # the gateway's 512 KiB flow-control window and the client's own buffers.
        assert pulled < 40, pulled
        replies.close()
    finally:
        handle.stop()


def test_the_ray_backend_without_ray_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without Ray: the gateway still starts and offers the ray backend, and a deploy that asks for it
    says how to install Ray (nothing is registered, nothing else breaks)."""
    shadow = tmp_path / "no-ray" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('Ray is not installed here')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(shadow.parent),
                                                                   os.environ.get("PYTHONPATH")])))
    handle = start_gateway(tmp_path / "state", "--no-docker")
    try:
        with pytest.raises(DeployError) as failure:
            handle.client.deploy(FUNCTIONS / "echo", backend="ray")
        assert str(failure.value).startswith(
            "echo was not deployed: the ray backend needs Ray: pip install 'dcf-jupyter[ray]'"), failure.value
        assert handle.client.list() == []
        assert handle.client.deploy(FUNCTIONS / "echo").message.startswith("Deployed: echo (1 replica on the local")
    finally:
        handle.stop()
    with pytest.raises(GatewayStartError, match=r"the ray backend needs Ray: pip install 'dcf-jupyter\[ray\]'"):
        start_gateway(tmp_path / "state2", "--backend", "ray")


def test_a_deploy_to_a_missing_docker_backend_says_why_it_is_missing(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    handle = start_gateway(tmp_path / "state")
    try:
        with pytest.raises(DeployError) as failure:
            handle.client.deploy(FUNCTIONS / "echo", backend="docker")
        said = str(failure.value)  # without the docker SDK installed, that is the reason given instead
        assert "this gateway has no docker backend: when it started, " in said and (
            "no Docker daemon answers" in said or "the docker backend needs the docker SDK" in said), said
    finally:
        handle.stop()
    handle = start_gateway(tmp_path / "state2", "--no-docker")
    try:
        with pytest.raises(DeployError, match="no docker backend: it was started with --no-docker"):
            handle.client.deploy(FUNCTIONS / "echo", backend="docker")
        with pytest.raises(InvalidArgument, match="unknown backend 'kubernetes'"):
            handle.client.deploy(FUNCTIONS / "echo", backend="kubernetes")
    finally:
        handle.stop()


@pytest.mark.parametrize(("flags", "loop"), [
    ([], "auto"),                                                 # uvloop when installed, else asyncio
    (["--backend", "ray"], "asyncio"),                            # Ray's handles answer faster on asyncio's loop
    (["--ray-address", "127.0.0.1:6379"], "asyncio"),
    (["--backend", "ray", "--loop", "uvloop"], "uvloop"),         # what was asked for is kept
    (["--loop", "asyncio"], "asyncio"),
])
def test_the_event_loop_follows_the_backend_unless_one_is_asked_for(flags: list[str], loop: str) -> None:
    from dcf_jupyter.gateway.app import loop_for
    from dcf_jupyter.gateway.options import gateway_parser, options_from

    args = gateway_parser().parse_args(flags)
    assert loop_for(options_from(args)) == loop


def test_an_older_registry_snapshot_never_replaces_a_newer_one(tmp_path: Path) -> None:
    """Counters are flushed in a thread while a deploy saves on the loop: whichever write comes last on disk, the
    newest snapshot stays."""
    import json

    from dcf_jupyter.gateway.registry import FunctionRecord, Registry

    registry = Registry(tmp_path)
    registry.records["old"] = FunctionRecord("old", "local", 1)
    older = registry.snapshot()
    registry.records["new"] = FunctionRecord("new", "local", 1)
    newer = registry.snapshot()
    registry.write(*newer)
    registry.write(*older)  # the periodic flush's thread, late
    assert set(json.loads((tmp_path / "registry.json").read_text())["functions"]) == {"old", "new"}

"""Functions calling functions through `dcf_jupyter.mesh`, on a real gateway (local backend): a pipeline, a
stream, the caller's deadline carried into the callee, the depth limit, a function calling itself with every slot
held by its own chain, unknown functions, and the replicas' credential, which may call functions and nothing else
(on a default gateway, where every other call needs the owner's token)."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import FUNCTIONS, GatewayHandle, start_gateway, with_keys

from dcf_jupyter.definition.scaffold import init_function
from dcf_jupyter.errors import FunctionError

CALLER = """
import json
import os
from pathlib import Path

from dcf_jupyter import mesh
from dcf_jupyter.errors import DcfError, FunctionNotFound


class Handler:
    def __call__(self, req):
        ask = json.loads(req.input)
        if ask["do"] == "echo":
            return mesh.call("echo", ask["data"])
        if ask["do"] == "stream":
            return [reply.decode() for reply in mesh.stream("echo", ask["items"])]
        if ask["do"] == "time-left":
            return {"mine": mesh.time_left(), "callee": mesh.call("tells-time-left", b"")}
        if ask["do"] == "unknown":
            try:
                mesh.call("nowhere-to-be-found")
            except FunctionNotFound as exc:
                return "FunctionNotFound: " + str(exc)
        if ask["do"] == "credential":
            from dcf_jupyter.client import Client

            token_file = Path(os.environ["DCF_MESH_TOKEN_FILE"])
            said = {"mode": oct(token_file.stat().st_mode & 0o777), "in_env": any(
                token_file.read_text().strip() in value for value in os.environ.values())}
            import grpc
            from dcf_jupyter.protocol import gateway_pb2 as pb, gateway_pb2_grpc as pb_grpc

            token = token_file.read_text().strip()
            client = Client(os.environ["DCF_MESH_ADDRESS"], token=token)
            for what, attempt in [("logs", lambda: client.logs("echo")), ("delete", lambda: client.delete("echo")),
                                  ("secrets", client.list_secrets)]:
                try:
                    attempt()
                    said[what] = "allowed"
                except DcfError as exc:
                    said[what] = str(exc)
            with grpc.insecure_channel(os.environ["DCF_MESH_ADDRESS"]) as channel:  # as a raw DCF client would
                try:
                    pb_grpc.GatewayStub(channel).Deploy(pb.CreateFunctionRequest(Service="planted"), timeout=10,
                                                        metadata=[("authorization", f"Bearer {token}")])
                    said["deploy"] = "allowed"
                except grpc.RpcError as exc:
                    said["deploy"] = f"{exc.code().name}: {exc.details()}"
            return said
        raise ValueError(ask)
"""
TELLS_TIME_LEFT = """
from dcf_jupyter import mesh


class Handler:
    def __call__(self, req):
        return mesh.time_left()
"""
LOOPS = """
from dcf_jupyter import mesh


class Handler:
    def __call__(self, req):
        return mesh.call("loops", b"again")
"""
# Calls itself N deep; each level waits in its Handler for the next one.
CHAIN = """
from dcf_jupyter import mesh


class Handler:
    def __call__(self, req):
        left = int(req.input)
        return "bottom" if left == 0 else mesh.call("chain", str(left - 1))
"""


def deploy_pipeline(handle: GatewayHandle, parent: Path) -> None:
    handle.client.deploy(FUNCTIONS / "echo")
    handle.client.deploy(init_function("tells-time-left", parent=parent, handler_source=TELLS_TIME_LEFT))
    handle.client.deploy(with_keys(init_function("caller", parent=parent, handler_source=CALLER), timeout=20))


@pytest.fixture(scope="module")
def mesh_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    parent = tmp_path_factory.mktemp("mesh")
    handle = start_gateway(parent / "state", "--no-docker")
    try:
        deploy_pipeline(handle, parent)
        yield handle
    finally:
        handle.stop()


def ask(handle: GatewayHandle, do: str, timeout: float | None = None, **more: object) -> object:
    import json

    return handle.client.call("caller", json.dumps({"do": do, **more}), timeout=timeout)


def test_a_function_calls_another_and_streams_to_it(mesh_gateway: GatewayHandle) -> None:
    assert ask(mesh_gateway, "echo", data="through the mesh") == b"through the mesh"  # echo returns bytes
    assert ask(mesh_gateway, "stream", items=["a", "b", "c"]) == ["a", "b", "c"]


def test_the_callee_gets_no_more_time_than_the_caller_has_left(mesh_gateway: GatewayHandle) -> None:
    # gRPC rounds a deadline it passes on up by a few milliseconds: "at most" allows for that much.
    seen = ask(mesh_gateway, "time-left", timeout=5.0)
    assert isinstance(seen, dict)
    assert 4.0 < seen["mine"] <= 5.05, seen  # the client's deadline, not the function's timeout of 20 s
    assert 3.5 < seen["callee"] <= seen["mine"] + 0.05, seen
    unhurried = ask(mesh_gateway, "time-left")  # no client deadline: the caller's own `timeout: 20`
    assert isinstance(unhurried, dict) and 15 < unhurried["mine"] <= 20, unhurried
    assert 15 < unhurried["callee"] <= unhurried["mine"] + 0.05, unhurried


def test_an_unknown_function_is_function_not_found_naming_it(mesh_gateway: GatewayHandle) -> None:
    said = ask(mesh_gateway, "unknown")
    assert isinstance(said, str) and said.startswith("FunctionNotFound: ") and "nowhere-to-be-found" in said


def test_a_replicas_credential_calls_functions_and_nothing_else(mesh_gateway: GatewayHandle) -> None:
    said = ask(mesh_gateway, "credential")
    assert isinstance(said, dict)
    assert said["mode"] == "0o600" and said["in_env"] is False, said
    for what in ("logs", "delete", "secrets", "deploy"):
        assert "a replica's credential may only call functions" in said[what], said
    assert said["deploy"].startswith("UNAUTHENTICATED"), said
    assert mesh_gateway.client.call("echo", b"still here") == b"still here"


def test_a_call_chain_deeper_than_16_is_refused_in_a_sentence(mesh_gateway: GatewayHandle, tmp_path: Path) -> None:
    # Every level waits in its Handler for the next: the replica runs enough calls at once for the whole chain.
    mesh_gateway.client.deploy(with_keys(init_function("loops", parent=tmp_path, handler_source=LOOPS),
                                         concurrency=20, timeout=60))
    with pytest.raises(FunctionError) as failure:
        mesh_gateway.client.call("loops", b"go", timeout=60)
    assert "a chain of 17 function-to-function calls reached 'loops': at most 16" in str(failure.value)
    mesh_gateway.client.delete("loops")


def test_a_function_calling_itself_is_not_wedged_by_its_own_chain(mesh_gateway: GatewayHandle,
                                                                   tmp_path: Path) -> None:
    """`concurrency: 4`, a self-call 20 deep: the fifth level finds the four slots held by its own callers, who
    wait on it, and borrows one (worker/slots.py); the chain ends at the depth limit, in a sentence, at once."""
    import time

    mesh_gateway.client.deploy(with_keys(init_function("chain", parent=tmp_path, handler_source=CHAIN),
                                         concurrency=4, timeout=60))
    try:
        started = time.monotonic()
        assert mesh_gateway.client.call("chain", b"12", timeout=30) == "bottom"  # 13 levels on 4 slots
        answered = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(FunctionError) as failure:
            mesh_gateway.client.call("chain", b"20", timeout=30)
        refused = time.monotonic() - started
        assert "a chain of 17 function-to-function calls reached 'chain': at most 16" in str(failure.value)
        assert answered < 1.0 and refused < 1.0, (answered, refused)
        assert mesh_gateway.client.call("chain", b"3") == "bottom"  # every slot came back
    finally:
        mesh_gateway.client.delete("chain")


def test_slots_are_lent_to_the_calls_their_holders_wait_on_one_at_a_time() -> None:
    """A caller's slot goes to one call of its chain at a time; calls of other chains wait for a free slot."""
    import threading

    from dcf_jupyter.worker.slots import Slots

    slots = Slots(1)
    assert slots.acquire(1) is None and slots.full  # call 1 holds the only slot
    assert slots.acquire(2, (1,)) == 1  # called by 1: borrows its slot
    assert slots.acquire(3, (1, 2)) == 2  # called by 2 (called by 1): borrows 2's
    order: list[str] = []

    def wait_for(call: int, callers: tuple[int, ...], name: str) -> threading.Thread:
        def run() -> None:
            lender = slots.acquire(call, callers)
            order.append(name)
            slots.release(call, lender)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    sibling = wait_for(4, (1, 2), "sibling of 3")  # 2's slot is lent to 3 already: waits for it
    stranger = wait_for(5, (), "another chain")  # waits for a free slot
    time.sleep(0.2)
    assert order == []
    slots.release(3, 2)  # 3 answered: 2's slot is free to lend again
    sibling.join(5)
    assert order == ["sibling of 3"]
    slots.release(2, 1)
    slots.release(1, None)
    stranger.join(5)
    assert order == ["sibling of 3", "another chain"] and not slots.full


def test_mesh_imports_with_only_the_packages_images_have() -> None:
    """A container's image holds the worker's packages only (grpcio, protobuf, pyyaml): a Handler's
    `from dcf_jupyter import mesh` must not need the rest."""
    blocked = ["click", "platformdirs", "packaging", "pynvml", "uvloop", "aiohttp", "prometheus_client", "docker"]
    code = (f"import sys\nfor name in {blocked!r}: sys.modules[name] = None\n"
            "from dcf_jupyter import mesh\nprint(mesh.time_left())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "None\n"), result.stderr


def test_mesh_calls_work_on_a_gateway_that_answers_only_its_owner(tmp_path: Path) -> None:
    """There every call needs a credential (the default; --private says so too): the replicas' own is enough to
    invoke."""
    handle = start_gateway(tmp_path / "state", "--no-docker", "--private")
    try:
        deploy_pipeline(handle, tmp_path)
        assert ask(handle, "echo", data="private") == b"private"
        token = (handle.state_dir / "replica-token")
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
    finally:
        handle.stop()


def test_a_generator_keeps_its_call_across_steps_run_in_other_threads() -> None:
    """The ray backend steps a generator Handler in worker threads, each in a copy of the event loop's context:
    every step still sees the call it serves (what mesh reads for deadlines and depth)."""
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    from dcf_jupyter.protocol import gateway_pb2 as pb
    from dcf_jupyter.worker.call_context import current_call
    from dcf_jupyter.worker.process import CallRunner

    def handler(req):
        for _ in range(3):
            call = current_call()
            yield str(call.depth if call is not None else None)

    runner = CallRunner(handler, "steps")
    items = runner.stream(pb.InvokeServiceRequest(Service="steps", Depth=2).SerializeToString())
    with ThreadPoolExecutor(max_workers=3) as pool:
        steps = [pool.submit(contextvars.copy_context().run, next, items).result() for _ in range(3)]
    assert [pb.Messages.FromString(b"".join(parts)).Output for parts in steps] == [b"2", b"2", b"2"]
    assert current_call() is None

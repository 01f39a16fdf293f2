"""Autoscaling on the local backend with the gateway's own autoscaler: idle functions go down to zero replicas
(their processes and GPUs released), the next call starts one and waits for it (unary and streams alike, one
replica for many first calls), load adds replicas up to max_replicas and idleness removes them, and a restart
keeps the count. Docker's replicas go through the same autoscaler (test_docker); Ray's through Serve's
(test_ray)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support import GatewayHandle, eventually, start_gateway, with_keys

from dcf_jupyter.client import Client, FunctionInfo
from dcf_jupyter.definition.spec import Autoscaling
from dcf_jupyter.gateway.autoscaler import wanted
from dcf_jupyter.host.pids import pid_alive

PID = """
import os
import time


class Handler:
    def __call__(self, req):
        if req.input.startswith(b"sleep "):
            time.sleep(float(req.input.split()[1]))
        return os.getpid()
"""


def info(client: Client, name: str) -> FunctionInfo:
    return next(f for f in client.list() if f.name == name)


def scale_to_zero(make_function, name: str, **keys: object) -> Path:
    return with_keys(make_function(name, PID), autoscaling={"min_replicas": 0, "max_replicas": 3,
                                                            "downscale_delay_s": 0.5, **keys})


@pytest.fixture()
def own_gateway(tmp_path: Path):
    handle = start_gateway(tmp_path / "state", "--no-docker", "--gpus", "0,1")
    try:
        yield handle
    finally:
        handle.stop()


def test_the_autoscaler_wants_replicas_for_the_load_within_its_bounds() -> None:
    policy = Autoscaling(min_replicas=0, max_replicas=3, target_ongoing_requests=2)
    assert [wanted(policy, ongoing) for ongoing in (0, 1, 2, 3, 4, 5, 6, 50)] == [0, 1, 1, 2, 2, 3, 3, 3]
    assert wanted(Autoscaling(min_replicas=2, max_replicas=4), 0) == 2  # Serve's default target: 2 per replica


def test_an_idle_function_goes_to_zero_and_the_next_call_starts_a_replica(own_gateway: GatewayHandle,
                                                                          make_function) -> None:
    client = own_gateway.client
    said = client.deploy(scale_to_zero(make_function, "sleepy")).message
    assert said == "Deployed: sleepy (0-3 replicas, autoscaled, on the local backend)"
    first = client.call("sleepy")  # the deploy started one replica: it proved the Handler loads
    assert isinstance(first, int) and pid_alive(first)
    eventually(lambda: info(client, "sleepy").idle, 10, "sleepy idle after 0.5 s without a call")
    listed = info(client, "sleepy")
    assert (listed.status, listed.replicas, listed.replicas_said) == ("Idle", 0, "idle (0 replicas)")
    eventually(lambda: not pid_alive(first), 5, "the idle replica's process gone")

    started = time.perf_counter()
    second = client.call("sleepy")  # no error, no retry: the call waits for the replica it starts
    print(f"cold start on the local backend, call to reply: {time.perf_counter() - started:.2f} s")
    assert second != first and pid_alive(second)
    listed = info(client, "sleepy")
    assert listed.cold_starts == 1 and 0 < listed.last_cold_start_s < 30 and listed.last_cold_start_at > 0
    assert listed.replicas_said == "1/1 (autoscaled 0-3)" and listed.status == "Ready"
    log = client.logs("sleepy")
    assert "no call for 0.5s: scaled from 1 to 0 replicas" in log, log
    assert "a call arrived at 0 replicas: started 1 in " in log, log


def test_a_function_scaled_to_zero_by_hand_is_idle_until_called(own_gateway: GatewayHandle,
                                                                 make_function) -> None:
    """`scale NAME 0` means idle until called: listed as idle, never "Not Ready"; the next calls (several at once)
    start one replica and wait for it, and it stays, as after `scale NAME 1`."""
    client = own_gateway.client
    client.deploy(make_function("gray", PID))
    scaled = client.scale("gray", 0)
    assert scaled.scaled() == "Scaled: gray to 0 replicas: idle until called (the next call starts one)"
    idle = info(client, "gray")
    assert (idle.status, idle.replicas_said) == ("Idle", "idle (0 replicas)"), idle
    with ThreadPoolExecutor(5) as pool:
        pids = set(pool.map(lambda _: client.call("gray", timeout=30), range(5)))
    woken = info(client, "gray")
    assert len(pids) == 1 and (woken.status, woken.replicas, woken.cold_starts) == ("Ready", 1, 1), woken
    assert "a call arrived at 0 replicas (scaled there by hand): started 1 in" in client.logs("gray", 20)
    assert client.call("gray") in pids


def test_twenty_first_calls_start_one_replica_and_all_get_replies(own_gateway: GatewayHandle,
                                                                 make_function) -> None:
    client = own_gateway.client
    client.deploy(scale_to_zero(make_function, "crowd"))  # upscale_delay_s: Serve's 30 s, so load adds none
    eventually(lambda: info(client, "crowd").idle, 10, "crowd idle")
    barrier = threading.Barrier(20)

    def first_call(_: int) -> object:
        barrier.wait()
        return client.call("crowd", b"sleep 0.05", timeout=60)

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(first_call, range(20)))
    assert len(replies) == 20 and len(set(replies)) == 1, replies  # one replica answered them all
    assert info(client, "crowd").cold_starts == 1


def test_a_stream_to_a_function_at_zero_replicas_loses_no_frame(own_gateway: GatewayHandle, make_function) -> None:
    client = own_gateway.client
    client.deploy(with_keys(make_function("flow", "class Handler:\n    def __call__(self, req):\n"
                                                  "        return req.input\n"),
                            autoscaling={"min_replicas": 0, "max_replicas": 1, "downscale_delay_s": 0.3}))
    eventually(lambda: info(client, "flow").idle, 10, "flow idle")
    frames = [f"frame {i}".encode() for i in range(200)]
    assert list(client.stream("flow", frames, timeout=60)) == frames
    # An open stream holds its replica: no scale-down under it, even past the delay.
    def slowly() -> Iterator[bytes]:
        for frame in frames[:10]:
            time.sleep(0.1)
            yield frame

    assert list(client.stream("flow", slowly(), timeout=60)) == frames[:10]
    assert info(client, "flow").cold_starts == 1  # the first stream's replica served the second too


def test_load_adds_replicas_up_to_max_and_idleness_takes_them_back(own_gateway: GatewayHandle,
                                                                   make_function) -> None:
    client = own_gateway.client
    client.deploy(with_keys(make_function("busy", PID), autoscaling={
        "min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 1, "upscale_delay_s": 0,
        "downscale_delay_s": 1}))
    stop = threading.Event()
    answered_by: set[int] = set()

    def caller() -> None:
        while not stop.is_set():
            answered_by.add(int(client.call("busy", b"sleep 0.3", timeout=60)))

    callers = [threading.Thread(target=caller) for _ in range(6)]
    for thread in callers:
        thread.start()
    try:
        started = time.monotonic()
        eventually(lambda: info(client, "busy").available_replicas == 3, 30, "3 replicas under 6 callers")
        print(f"6 callers of a 0.3 s function: 3 replicas ready after {time.monotonic() - started:.2f} s")
        assert info(client, "busy").replicas == 3  # never past max_replicas
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in callers:
            thread.join()
    assert len(answered_by) == 3, answered_by  # every replica took calls
    eventually(lambda: info(client, "busy").replicas == 1, 15, "back to min_replicas once idle")
    assert "scaled from 3 to 1 replica" in client.logs("busy") or "to 1 replica" in client.logs("busy")


def test_a_restart_keeps_the_scaling_state_and_zero_gives_gpus_back(tmp_path: Path, make_function) -> None:
    state = tmp_path / "state"
    handle = start_gateway(state, "--no-docker", "--gpus", "0,1")
    try:
        folder = scale_to_zero(make_function, "gpu-sleepy")
        config = folder / "config.yaml"
        config.write_text(config.read_text().replace("gpu: ''", "gpu: '1'"))
        handle.client.deploy(folder)
        assert [g.devices for g in info(handle.client, "gpu-sleepy").gpus] == [(0,)]
        eventually(lambda: info(handle.client, "gpu-sleepy").idle, 10, "idle")
        assert info(handle.client, "gpu-sleepy").gpus == []  # its GPU went back with its replica
        handle.client.call("gpu-sleepy")
        eventually(lambda: info(handle.client, "gpu-sleepy").idle, 10, "idle again")
    finally:
        handle.stop()
    handle = start_gateway(state, "--no-docker", "--gpus", "0,1")
    try:
        eventually(lambda: info(handle.client, "gpu-sleepy").idle, 30, "restored, idle")  # restores run after start
        listed = info(handle.client, "gpu-sleepy")
        assert listed.cold_starts == 1 and listed.gpus == [], listed  # restarted at 0 replicas, its count kept
        handle.client.call("gpu-sleepy")
        listed = info(handle.client, "gpu-sleepy")
        assert listed.cold_starts == 2 and [g.devices for g in listed.gpus] == [(0,)]
    finally:
        handle.stop()


def test_listings_say_idle_autoscaling_bounds_and_cold_starts() -> None:
    pytest.importorskip("jupyter_server", reason="the panel's REST side runs in Jupyter Server")
    from dcf_jupyter.lab.handlers import function_json

    at = time.mktime((2026, 12, 4, 14, 2, 11, 0, 0, -1))
    idle = FunctionInfo("f", "", 7, 0, 0, "Idle", "local", autoscaling=(0, 3), cold_starts=2,
                        last_cold_start_s=0.414, last_cold_start_at=at)
    assert idle.idle and idle.replicas_said == "idle (0 replicas)"
    assert idle.cold_starts_said == "2 cold starts, the last 0.41 s at 14:02:11"
    shown = function_json(idle)
    assert shown["ready"] == "idle" and shown["scaling"] == "autoscaled 0-3; 2 cold starts, the last 0.41 s at 14:02:11"
    fixed = FunctionInfo("g", "", 0, 2, 1, "Ready", "local")
    assert fixed.replicas_said == "1/2" and fixed.cold_starts_said == "" and function_json(fixed)["scaling"] == ""


SHOWS_ITSELF = """
import os
import sys

PRELOADED = "numpy" in sys.modules  # imported by the template before the fork (requirements.txt names it)

import numpy as np


class Handler:
    def __init__(self):
        self.draw = float(np.random.rand())

    def __call__(self, req):
        return {"pid": os.getpid(), "parent": os.getppid(), "replica": os.environ.get("DCF_REPLICA"),
                "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "draw": self.draw, "preloaded": PRELOADED}
"""


def replicas_seen(client: Client, name: str, replicas: int) -> dict[str, dict[str, object]]:
    seen: dict[str, dict[str, object]] = {}
    for _ in range(replicas * 4):
        reply = client.call(name)
        assert isinstance(reply, dict)
        seen[str(reply["replica"])] = reply
    return seen


def two_gpu_replicas(make_function, name: str) -> Path:
    folder = with_keys(make_function(name, SHOWS_ITSELF, requirements=["numpy"]),
                       autoscaling={"min_replicas": 2, "max_replicas": 2})
    config = folder / "config.yaml"
    config.write_text(config.read_text().replace("gpu: ''", "gpu: '1'"))
    return folder


def test_replicas_fork_from_a_template_with_their_own_environment_devices_and_random_numbers(
        own_gateway: GatewayHandle, make_function) -> None:
    """An autoscaled function's replicas are forked from a warm template (their parent, not the gateway): each
    gets its own GPUs and DCF_REPLICA (set after the fork, before the Handler) and its own NumPy random state."""
    client = own_gateway.client
    client.deploy(two_gpu_replicas(make_function, "forked"))
    seen = replicas_seen(client, "forked", 2)
    assert sorted(seen) == ["0", "1"]
    parents = {reply["parent"] for reply in seen.values()}
    assert len(parents) == 1 and own_gateway.running.pid not in parents, seen  # one template, not the gateway
    assert sorted(str(reply["cuda"]) for reply in seen.values()) == ["0", "1"]
    assert seen["0"]["draw"] != seen["1"]["draw"], "forked replicas share NumPy's random state"
    assert all(reply["preloaded"] for reply in seen.values())


def test_without_templates_replicas_are_the_gateways_children(tmp_path: Path, make_function,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCF_TEMPLATES", "0")
    handle = start_gateway(tmp_path / "state", "--no-docker", "--gpus", "0,1")
    try:
        handle.client.deploy(two_gpu_replicas(make_function, "spawned"))
        seen = replicas_seen(handle.client, "spawned", 2)
        assert {reply["parent"] for reply in seen.values()} == {handle.running.pid}
        assert seen["0"]["draw"] != seen["1"]["draw"] and not any(reply["preloaded"] for reply in seen.values())
    finally:
        handle.stop()


def test_killing_the_gateway_ends_its_template_and_the_replicas_forked_from_it(tmp_path: Path,
                                                                              make_function) -> None:
    handle = start_gateway(tmp_path / "state", "--no-docker", "--gpus", "0,1")
    try:
        handle.client.deploy(two_gpu_replicas(make_function, "orphans"))
        seen = replicas_seen(handle.client, "orphans", 2)
        pids = [int(str(reply["pid"])) for reply in seen.values()] + [int(str(seen["0"]["parent"]))]
        assert all(pid_alive(pid) for pid in pids)
        os.kill(handle.running.pid, signal.SIGKILL)
        eventually(lambda: not any(pid_alive(pid) for pid in pids), 10, "template and replicas gone with the gateway")
    finally:
        handle.stop()


def test_calls_that_race_a_replica_going_to_zero_are_never_lost(own_gateway: GatewayHandle, make_function) -> None:
    """With no downscale delay the replica goes the moment a call ends, so the next call arrives while it stops
    or just after: each one either reaches it before it is taken out, or waits for the next cold start."""
    client = own_gateway.client
    client.deploy(with_keys(make_function("flicker", PID), autoscaling={"min_replicas": 0, "max_replicas": 1,
                                                                        "downscale_delay_s": 0}))
    replies = [client.call("flicker", timeout=60) for _ in range(60)]
    assert all(isinstance(reply, int) for reply in replies)
    listed = info(client, "flicker")
    print(f"60 calls in a row, {listed.cold_starts} cold starts among them")
    assert listed.cold_starts >= 1 and listed.invocations == 60
    sockets = Path((own_gateway.state_dir / "sockets.path").read_text().strip())
    eventually(lambda: info(client, "flicker").idle, 10, "idle")
    eventually(lambda: not list(sockets.glob("flicker.*.sock")), 10, "the stopped replicas' sockets removed")


def test_a_template_serves_a_function_whose_requirements_went_to_the_cache(own_gateway: GatewayHandle,
                                                                          make_function) -> None:
    """Packages the gateway's environment lacks are installed into the requirement cache; the template puts that
    folder on its path as a fresh worker does, so a forked replica imports them."""
    from test_requirements import build_wheel

    folder = make_function("cached-pkg", "import dcftplpkg\n\n\nclass Handler:\n    def __call__(self, req):\n"
                                         "        return dcftplpkg.VALUE\n",
                           requirements=["--no-index", "--find-links ./wheels", "dcftplpkg==1.0"])
    build_wheel(folder / "wheels", "dcftplpkg", "1.0", 'VALUE = "from the cache"\n')
    with_keys(folder, autoscaling={"min_replicas": 0, "max_replicas": 1, "downscale_delay_s": 0.3})
    client = own_gateway.client
    client.deploy(folder)
    eventually(lambda: info(client, "cached-pkg").idle, 10, "idle")
    assert client.call("cached-pkg") == "from the cache"
    assert info(client, "cached-pkg").cold_starts == 1

"""Spawned calls through a real gateway: `.spawn` and `.spawn_map` return at once and their results outlive the
process that spawned them and a gateway restart (an unfinished map runs its unanswered inputs only); HTTP's
/async-function with a callback that receives the result; cancelling; bad ids and callback URLs in one
sentence; the state dir's bounds by age and size."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import grpc
import pytest
from support import GatewayHandle, eventually, run_cli, start_gateway, with_keys

from dcf_jupyter import ConfigError, DcfError, FunctionError, FunctionNotFound, InvalidArgument
from dcf_jupyter.client import FunctionCall
from dcf_jupyter.definition.scaffold import init_function
from dcf_jupyter.definition.spec import load_config
from dcf_jupyter.gateway.rpc import Abort
from dcf_jupyter.gateway.spawned import CallKeeper, SpawnedCall, framed, read_results, resumable_results
from dcf_jupyter.host.credentials import read_owner_token
from dcf_jupyter.protocol import gateway_pb2 as pb

# Upper-cases its input after `pause` seconds (a file beside the runs' log sets it); "bad" fails. Every run is a
# line in RUNS, so a test can tell which inputs ran twice.
HANDLER = """
import os
import time
from pathlib import Path

RUNS = Path(os.environ["SPAWN_TEST_RUNS"])


class Handler:
    def __call__(self, req):
        text = req.input.decode()
        pause = RUNS.with_name("pause")
        time.sleep(float(pause.read_text()) if pause.exists() else 0.0)
        if text == "bad":
            raise ValueError("bad input")
        with RUNS.open("a") as runs:
            runs.write(text + "\\n")
        return text.upper()
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("runs") / "runs"
    os.environ["SPAWN_TEST_RUNS"] = str(path)  # the gateways' workers inherit it
    yield path
    os.environ.pop("SPAWN_TEST_RUNS", None)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, runs: Path) -> Iterator[GatewayHandle]:
    parent = tmp_path_factory.mktemp("spawn")
    handle = start_gateway(parent / "state")
    try:
        handle.client.deploy(init_function("upper", parent=parent, handler_source=HANDLER))
        yield handle
    finally:
        handle.stop()


def pause(runs: Path, seconds: float) -> None:
    runs.with_name("pause").write_text(str(seconds))


def test_a_spawned_call_returns_at_once_and_its_result_outlives_the_spawner(gateway, runs: Path) -> None:
    pause(runs, 0.5)
    started = time.monotonic()
    done = run_cli("-g", gateway.address, "function", "spawn", "upper", "-d", "hello")
    assert done.returncode == 0, done.stderr
    call_id = done.stdout.decode().strip()
    assert call_id.startswith("fc-")
    # The process that spawned it has exited; the call goes on, and anyone holding the id gets its result.
    job = FunctionCall.from_id(call_id, client=gateway.client)
    assert job.status().state in ("queued", "running")
    assert job.get(timeout=30) == "HELLO"
    assert time.monotonic() - started >= 0.5
    printed = run_cli("-g", gateway.address, "call", "get", call_id)
    assert printed.returncode == 0 and printed.stdout == b"HELLO\n", printed.stderr
    assert "done, 1 of 1 done" in run_cli("-g", gateway.address, "call", "status", call_id).stdout.decode()
    pause(runs, 0)


def test_a_spawned_map_gives_every_result_in_input_order(gateway) -> None:
    job = gateway.client.spawn_map("upper", ["a", "bad", "c"])
    assert job.get(timeout=30, return_exceptions=True)[::2] == ["A", "C"]
    with pytest.raises(FunctionError, match="input 1: ValueError: bad input"):
        job.get(timeout=30)
    assert job.status().describe().endswith("done, 3 of 3 done, 1 failed")
    with pytest.raises(FunctionError, match=r"^ValueError: bad input"):  # one call: no input number to name
        gateway.client.spawn("upper", "bad").get(timeout=30)


def test_a_call_not_finished_in_time_says_how_it_stands(gateway, runs: Path) -> None:
    pause(runs, 1.0)
    job = gateway.client.spawn("upper", "slow")
    with pytest.raises(DcfError, match=r"(queued|running), 0 of 1 done: not finished within 0.2 s; ask again"):
        job.get(timeout=0.2)
    assert job.get(timeout=30) == "SLOW"
    pause(runs, 0)


def test_cancelling_stops_the_inputs_not_answered_yet(gateway, runs: Path) -> None:
    pause(runs, 0.3)
    job = gateway.client.spawn_map("upper", [f"c{i}" for i in range(20)])
    eventually(lambda: job.status().done >= 1, 30, "the map got going")
    status = job.cancel()
    assert status.state == "cancelled" and status.done < 20
    with pytest.raises(DcfError, match="cancelled"):
        job.get(timeout=5)
    pause(runs, 0)


def test_ids_and_callback_urls_that_cannot_be_are_one_sentence(gateway) -> None:
    client = gateway.client
    with pytest.raises(FunctionNotFound, match=r"^no spawned call fc-0{24} here \(a finished call is kept 24 h\)$"):
        client.call_status("fc-" + "0" * 24)
    with pytest.raises(InvalidArgument, match=r"^'../calls' is not a call id \(spawn gives ids like fc-"):
        client.call_status("../calls")
    with pytest.raises(InvalidArgument, match=r"^the callback URL 'file:///etc/passwd' is not an http:// or https://"):
        client.spawn("upper", "x", callback_url="file:///etc/passwd")
    with pytest.raises(FunctionNotFound, match="'nowhere' is not deployed"):
        client.spawn("nowhere", "x")


class Receiver(http.server.BaseHTTPRequestHandler):
    """Keeps what is POSTed to it."""

    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((self.path, dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def http_request(gateway: GatewayHandle, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None, token: bool = True) -> tuple[int, dict[str, str], bytes]:
    auth = {"Authorization": f"Bearer {read_owner_token()}"} if token else {}
    request = urllib.request.Request(f"http://{gateway.running.http_address}{path}", data=body, method=method,
                                     headers={**auth, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_http_async_function_answers_202_and_posts_the_result_to_the_callback(gateway, receiver: str) -> None:
    status, headers, body = http_request(gateway, "POST", "/async-function/upper", b"over http",
                                         {"X-Callback-Url": f"{receiver}/done"})
    assert status == 202, body
    call_id = headers["X-Call-Id"]
    assert json.loads(body)["Id"] == call_id and headers["Location"] == f"/system/call/{call_id}"
    eventually(lambda: Receiver.received, 30, "the callback received the result")
    [(path, sent, result)] = Receiver.received
    assert (path, result, sent["X-Call-Id"], sent["X-Call-State"]) == ("/done", b"OVER HTTP", call_id, "done")
    assert sent["Content-Type"].startswith("text/plain")
    status, _, body = http_request(gateway, "GET", f"/system/call/{call_id}?wait=5")
    standing = json.loads(body)
    assert status == 200 and (standing["State"], standing["result"]) == ("done", "OVER HTTP"), standing


def test_http_refuses_a_bad_callback_an_unknown_call_and_a_stranger(gateway) -> None:
    status, _, body = http_request(gateway, "POST", "/async-function/upper", b"x", {"X-Callback-Url": "gopher://x"})
    assert status == 400 and "is not an http:// or https:// URL" in json.loads(body)["message"]
    status, _, body = http_request(gateway, "GET", "/system/call/fc-" + "1" * 24)
    assert status == 404 and json.loads(body)["message"].startswith("no spawned call fc-111")
    assert http_request(gateway, "POST", "/async-function/upper", b"x", token=False)[0] == 401
    assert http_request(gateway, "GET", "/system/call/fc-" + "1" * 24, token=False)[0] == 401


def test_a_spawned_map_survives_a_gateway_restart_running_only_its_unanswered_inputs(
        tmp_path: Path, runs: Path) -> None:
    runs_before = runs.read_text() if runs.exists() else ""
    handle = start_gateway(tmp_path / "state")
    try:
        handle.client.deploy(init_function("upper", parent=tmp_path, handler_source=HANDLER))
        pause(runs, 0.2)
        inputs = [f"r{i}" for i in range(12)]
        job = handle.client.spawn_map("upper", inputs)
        eventually(lambda: job.status().done >= 3, 30, "some inputs answered")
    finally:
        handle.stop()  # mid-map
    pause(runs, 0)
    again = start_gateway(tmp_path / "state")
    try:
        assert FunctionCall.from_id(job.id, client=again.client).get(timeout=60) == [text.upper() for text in inputs]
    finally:
        again.stop()
    # Only this map's inputs: an input of the cancelling test above may still be finishing in the module's gateway.
    ran = [text for text in runs.read_text()[len(runs_before):].split() if text in inputs]
    assert sorted(set(ran)) == sorted(inputs)
    assert len(ran) - len(inputs) <= 1, ran  # only the input running when it stopped may have run twice


def kept_call(root: Path, name: str, *, state: str, finished: float, size: int) -> SpawnedCall:
    folder = root / "calls" / name
    folder.mkdir(parents=True)
    call = SpawnedCall(name, "upper", False, 0, finished - 1, state=state, finished=finished, folder=folder)
    call.save()
    (folder / "inputs").write_bytes(framed(b"x" * size))
    return call


def test_kept_calls_are_bounded_by_age_and_size(tmp_path: Path) -> None:
    now = time.time()
    old = kept_call(tmp_path, "fc-" + "a" * 24, state="done", finished=now - 100, size=10)
    older_finished = kept_call(tmp_path, "fc-" + "b" * 24, state="done", finished=now - 10, size=400)
    newer_finished = kept_call(tmp_path, "fc-" + "c" * 24, state="done", finished=now - 5, size=400)
    running = kept_call(tmp_path, "fc-" + "d" * 24, state="running", finished=0, size=400)
    (tmp_path / "calls" / ("fc-" + "e" * 24)).mkdir()  # no call.json: removed with a warning
    room = older_finished.size + newer_finished.size + running.size + 100  # all but the old one fit
    keeper = CallKeeper(tmp_path, router=None, keep_s=60, max_bytes=room)  # type: ignore[arg-type]
    warnings = keeper.load()
    assert len(warnings) == 1 and "could not be read" in warnings[0]
    keeper.sweep()
    assert old.id not in keeper.calls and not old.folder.exists()  # past its age
    assert {older_finished.id, newer_finished.id, running.id} <= set(keeper.calls)
    keeper.sweep(room_for=300)  # the oldest finished goes to make room
    assert older_finished.id not in keeper.calls and newer_finished.id in keeper.calls
    with pytest.raises(Abort, match="spawned calls not finished yet hold") as refused:
        keeper.sweep(room_for=room)  # unfinished calls alone leave no room: refused, nothing of theirs removed
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and running.folder.exists()


def test_a_scheduled_function_runs_on_its_schedule_waking_from_zero_replicas(tmp_path: Path, runs: Path) -> None:
    """Every 2 s (a seconds field), with its schedule_input; at zero replicas between runs: each run wakes it.
    Each run is a spawned call and a line in the function's log; the listings show the next run."""
    handle = start_gateway(tmp_path / "state")
    try:
        folder = with_keys(init_function("ticks", parent=tmp_path, handler_source=HANDLER),
                           schedule="*/2 * * * * *", schedule_input="tick",
                           autoscaling={"min_replicas": 0, "max_replicas": 1, "downscale_delay_s": 0.3})
        before = runs.read_text().count("tick\n") if runs.exists() else 0
        handle.client.deploy(folder)
        info = handle.client.get("ticks")
        assert info.schedule == "*/2 * * * * *" and time.time() < info.next_run <= time.time() + 2.5
        assert info.next_run_said.startswith("next run ") and info.next_run_said.endswith("(*/2 * * * * *)")
        eventually(lambda: runs.read_text().count("tick\n") - before >= 2, 20, "two scheduled runs")
        assert handle.client.get("ticks").cold_starts >= 1  # woken from zero replicas for a run
        log = handle.client.logs("ticks")
        assert log.count("scheduled run (*/2 * * * * *): call fc-") >= 2, log
        listed = run_cli("-g", handle.address, "function", "list")
        assert "Next run" in listed.stdout.decode() and "(*/2 * * * * *)" in listed.stdout.decode()
        handle.client.delete("ticks")  # no more runs
        stopped_at = runs.read_text().count("tick\n")
        time.sleep(2.5)
        assert runs.read_text().count("tick\n") == stopped_at
    finally:
        handle.stop()


def test_a_schedule_that_does_not_parse_is_one_sentence(tmp_path: Path) -> None:
    folder = with_keys(init_function("badcron", parent=tmp_path, handler_source=HANDLER), schedule="every 5 minutes")
    with pytest.raises(ConfigError, match=r"schedule: 'every 5 minutes' is not a cron schedule \(3 fields\): write "
                                          r"five fields, or six with seconds first"):
        load_config(folder / "config.yaml")


def test_a_result_cut_short_by_a_killed_gateway_is_dropped_before_more_are_appended(tmp_path: Path) -> None:
    results = tmp_path / "results"
    whole = [framed(pb.MapResult(Index=i, Reply=pb.Messages(Output=b"ok")).SerializeToString()) for i in range(2)]
    cut = framed(pb.MapResult(Index=2, Reply=pb.Messages(Output=b"x" * 100)).SerializeToString())[:20]
    results.write_bytes(b"".join(whole) + cut)
    assert [result.Index for result in resumable_results(tmp_path)] == [0, 1]
    assert results.stat().st_size == sum(map(len, whole))
    with results.open("ab") as out:  # what a resumed call appends next is read back
        out.write(framed(pb.MapResult(Index=2, Reply=pb.Messages(Output=b"again")).SerializeToString()))
    assert [result.Reply.Output for result in read_results(tmp_path)] == [b"ok", b"ok", b"again"]

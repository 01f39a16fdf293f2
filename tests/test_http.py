"""The gateway's HTTP face, against a real gateway: invoking (text, JSON, bytes, a generator's items as they
come, server-sent events), management routes mirroring the RPCs, the same credential rules, errors as one JSON
sentence with the matching status, the OpenAPI description matching the routes, /metrics that Prometheus' own
parser reads, with counts that match the calls made, and bodies read only within their budget. Most tests use a
gateway started with --open-loopback, as OpenFaaS-style tools that send no token need; a default one asks every
request but /healthz for the token."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import FUNCTIONS, GatewayHandle, eventually, run_cli, start_gateway, with_keys, with_timeout

from dcf_jupyter.definition.source import pack_folder
from dcf_jupyter.host.credentials import read_owner_token

pytest.importorskip("aiohttp", reason="the HTTP face runs on aiohttp (a core dependency)")

GENERATOR = """
import time


class Handler:
    def __call__(self, req):
        for word in ("one", "two", "three"):
            if req.input == b"fail" and word == "three":
                raise RuntimeError("the camera went away")
            yield word
            time.sleep(0.3)
"""
FACES = """
import time


class Handler:
    def __call__(self, req):
        ask = req.input.decode()
        if ask == "json":
            return {"answer": 42, "items": [1, 2]}
        if ask == "bytes":
            return bytes(range(256))
        if ask == "bad":
            raise ValueError("not a picture")
        if ask.startswith("sleep "):
            time.sleep(float(ask.split()[1]))
        return "text: " + ask
"""


class Http:
    """Requests to one HTTP face, as curl would send them."""

    def __init__(self, address: str, token: str | None = None) -> None:
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.token = token

    def request(self, method: str, path: str, body: bytes | str | None = None, headers: dict[str, str] | None = None,
                token: bool = False) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            sent = dict(headers or {})
            if token and self.token:
                sent["Authorization"] = f"Bearer {self.token}"
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def json(self, method: str, path: str, payload: object | None = None, token: bool = False
             ) -> tuple[int, object]:
        status, _, body = self.request(method, path, json.dumps(payload) if payload is not None else None,
                                       {"Content-Type": "application/json"}, token=token)
        return status, json.loads(body) if body else None

    def chunks(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> Iterator[tuple[float, bytes]]:
        """The response body's pieces as they arrive, each with seconds since the request."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        started = time.monotonic()
        try:
            connection.request("POST", path, body=body, headers=headers or {})
            response = connection.getresponse()
            assert response.status == 200, response.read()
            while True:
                piece = response.read1(65536)
                if not piece:
                    return
                yield time.monotonic() - started, piece
        finally:
            connection.close()


@pytest.fixture(scope="module")
def http_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayHandle, Http]]:
    parent = tmp_path_factory.mktemp("http")
    handle = start_gateway(parent / "state", "--no-docker", "--max-message-size", str(1024 * 1024), "--open-loopback")
    try:
        assert handle.running.http_address, "the gateway says where its HTTP face is"
        from dcf_jupyter.definition.scaffold import init_function

        handle.client.deploy(FUNCTIONS / "hello-dcf")
        handle.client.deploy(FUNCTIONS / "echo")
        handle.client.deploy(with_timeout(init_function("faces", parent=parent, handler_source=FACES), 1.0))
        handle.client.deploy(init_function("words", parent=parent, handler_source=GENERATOR))
        yield handle, Http(handle.running.http_address, read_owner_token())
    finally:
        handle.stop()


def test_invoking_returns_the_handlers_bytes_with_its_content_type(http_gateway) -> None:
    _, web = http_gateway
    status, headers, body = web.request("POST", "/function/hello-dcf", b"Hello")
    assert (status, body) == (200, b"Hello DCF") and headers["content-type"].startswith("text/plain")
    status, headers, body = web.request("POST", "/function/faces", b"json")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"answer": 42, "items": [1, 2]}
    status, headers, body = web.request("POST", "/function/faces", b"bytes")
    assert (status, body, headers["content-type"]) == (200, bytes(range(256)), "application/octet-stream")
    payload = bytes(range(256)) * 1000
    assert web.request("POST", "/function/echo", payload)[2] == payload


def test_a_generators_items_arrive_as_they_are_yielded_chunked_or_as_events(http_gateway) -> None:
    _, web = http_gateway
    pieces = list(web.chunks("/function/words", b""))
    assert b"".join(p for _, p in pieces) == b"onetwothree"
    assert pieces[-1][0] - pieces[0][0] > 0.25, pieces  # streamed, not collected at the end
    events = b"".join(p for _, p in web.chunks("/function/words", b"", {"Accept": "text/event-stream"}))
    assert events == b"data: one\n\ndata: two\n\ndata: three\n\n"


def test_a_generator_failing_midway_is_not_a_complete_reply(http_gateway) -> None:
    """Its headers said 200 already: a chunked reply is cut off (no final chunk, so no client takes the items
    for the whole reply), events end with an error event saying why."""
    handle, web = http_gateway
    received = []
    with pytest.raises(http.client.IncompleteRead):
        for _, piece in web.chunks("/function/words", b"fail"):
            received.append(piece)
    assert b"".join(received) == b"onetwo"
    events = b"".join(p for _, p in web.chunks("/function/words", b"fail", {"Accept": "text/event-stream"}))
    head, _, error = events.partition(b"event: error\n")
    assert head == b"data: one\n\ndata: two\n\n"
    said = json.loads(error.removeprefix(b"data: "))
    assert said["code"] == "INTERNAL" and "RuntimeError: the camera went away" in said["message"], said
    status, _, body = web.request("POST", "/function/hello-dcf", b"Hello")  # the gateway is fine afterwards
    assert (status, body) == (200, b"Hello DCF")
    said = (handle.state_dir / "gateway.log").read_text()
    assert "ended early: RuntimeError: the camera went away" in said and "Traceback" not in said


def test_errors_are_one_sentence_with_the_matching_status(http_gateway) -> None:
    _, web = http_gateway
    cases = {
        ("POST", "/function/nowhere", b""): (404, "NOT_FOUND", "function 'nowhere' is not deployed"),
        ("POST", "/function/faces", b"bad"): (400, "INVALID_ARGUMENT", "ValueError: not a picture"),
        ("POST", "/function/echo", b"x" * (2 * 1024 * 1024)): (413, "RESOURCE_EXHAUSTED", "larger than the gateway's"),
        ("POST", "/function/faces", b"sleep 3"): (504, "DEADLINE_EXCEEDED", "did not answer within 1s"),
        ("GET", "/no/such/route", None): (404, "NOT_FOUND", "no route GET /no/such/route"),
        ("DELETE", "/healthz", None): (405, "UNIMPLEMENTED", "allowed: GET, HEAD"),
        ("PUT", "/system/scale-function", b"{not json"): (401, "UNAUTHENTICATED", "needs the gateway's token"),
    }
    for (method, path, body), (status, code, words) in cases.items():
        got, headers, raw = web.request(method, path, body)
        assert raw.startswith(b"{"), (method, path, got, headers, raw[:300])
        answer = json.loads(raw)
        assert (got, answer["code"]) == (status, code) and words in answer["message"], (method, path, got, answer)
        assert "Traceback" not in answer["message"] and headers["content-type"].startswith("application/json")
    status, headers, _ = web.request("POST", "/function/faces", b"bad")
    assert headers.get("x-dcf-origin") == "function"  # the handler failed, not the gateway
    status, _, raw = web.request("POST", "/function/faces", b"sleep 0.5", {"X-Dcf-Timeout": "0.1"})
    assert status == 504 and json.loads(raw)["code"] == "DEADLINE_EXCEEDED"  # the caller's own deadline
    status, _, raw = web.request("PUT", "/system/scale-function", b"{not json", token=True)
    assert status == 400 and "not a ScaleServiceRequest in JSON" in json.loads(raw)["message"]
    status, headers, raw = web.request("HEAD", "/healthz")
    assert (status, raw) == (200, b"")


def test_a_client_still_sending_a_refused_body_reads_the_answer_not_a_broken_pipe(http_gateway) -> None:
    """The gateway answers 413 from Content-Length before reading the body; a client that sends all of it before
    reading (http.client, requests) must still get that answer, so the rest is read and thrown away."""
    _, web = http_gateway
    for path, status in (("/function/echo", 413), ("/function/nowhere", 404)):
        connection = http.client.HTTPConnection(web.host, web.port, timeout=30)
        try:
            size = 2 * 1024 * 1024 if status == 413 else 512 * 1024
            connection.putrequest("POST", path)
            connection.putheader("Content-Length", str(size))
            connection.endheaders()
            connection.send(b"x" * (size // 2))
            time.sleep(0.3)  # the answer is written by now: the other half arrives after it
            connection.send(b"x" * (size - size // 2))
            response = connection.getresponse()
            assert response.status == status, (path, response.status)
            assert json.loads(response.read())["code"] in ("RESOURCE_EXHAUSTED", "NOT_FOUND")
        finally:
            connection.close()


def test_management_routes_mirror_the_rpcs_behind_the_same_credential(http_gateway, tmp_path: Path,
                                                                      make_function) -> None:
    handle, web = http_gateway
    status, listed = web.json("GET", "/system/functions")
    assert status == 200 and {"echo", "faces", "hello-dcf", "words"} <= {f["Name"] for f in listed}  # type: ignore[union-attr]
    status, meta = web.json("GET", "/system/function/echo")
    assert status == 200 and meta["Name"] == "echo" and meta["Status"] == "Ready"  # type: ignore[index]
    status, info = web.json("GET", "/system/info")
    assert status == 200 and info["http_address"] == handle.running.http_address  # type: ignore[index]
    assert web.request("GET", "/healthz")[2] == b"OK"

    folder = with_keys(make_function("via-http", "class Handler:\n    def __call__(self, req):\n"
                                                 "        return 'deployed over HTTP'\n"))
    request = {"Service": "via-http", "Source": base64.b64encode(pack_folder(folder, limit=1 << 20)).decode()}
    for method, path, payload in (("POST", "/system/functions", request),
                                  ("PUT", "/system/scale-function", {"ServiceName": "echo", "Replicas": 2}),
                                  ("DELETE", "/system/function/echo", None),
                                  ("GET", "/system/function-log/echo", None)):
        status, answer = web.json(method, path, payload)
        assert status == 401 and "needs the gateway's token" in answer["message"], (method, path, answer)  # type: ignore[index]
    status, answer = web.json("POST", "/system/functions", request, token=True)
    assert status == 200 and answer == {"Msg": "Deployed: via-http (1 replica on the local backend)"}, answer
    assert web.request("POST", "/function/via-http")[2] == b"deployed over HTTP"
    status, answer = web.json("POST", "/system/functions", request, token=True)
    assert status == 409 and "already deployed" in answer["message"]  # type: ignore[index]
    status, answer = web.json("PUT", "/system/scale-function", {"ServiceName": "via-http", "Replicas": 2}, token=True)
    assert status == 200 and answer == {"Msg": "Scaled: via-http to 2 replicas"}, answer
    status, _, log = web.request("GET", "/system/function-log/via-http?lines=5", token=True)
    assert status == 200 and b"ready in" in log
    status, answer = web.json("DELETE", "/system/function/via-http", token=True)
    assert status == 200 and answer == {"Msg": "Deleted: via-http"}
    assert web.json("GET", "/system/function/via-http")[0] == 404


def test_a_default_gateway_asks_the_token_for_everything_but_health(tmp_path: Path) -> None:
    handle = start_gateway(tmp_path / "state", "--no-docker", "--private")  # --private: the default, still accepted
    try:
        handle.client.deploy(FUNCTIONS / "echo")
        web = Http(handle.running.http_address, read_owner_token())
        status, _, raw = web.request("POST", "/function/echo", b"x")
        said = json.loads(raw)["message"]
        assert status == 401 and "InvokeStream needs the gateway's token" in said and "--open-loopback" in said
        assert web.request("POST", "/function/echo", b"x", token=True)[2] == b"x"
        assert web.request("GET", "/system/functions")[0] == 401 and web.request("GET", "/metrics")[0] == 401
        assert web.request("GET", "/healthz")[0] == 200  # liveness probes carry no credential
        wrong = Http(handle.running.http_address, "a-guess")
        assert wrong.request("POST", "/function/echo", b"x", token=True)[0] == 401
    finally:
        handle.stop()


def test_no_metrics_and_no_http_face_when_asked(tmp_path: Path) -> None:
    quiet = start_gateway(tmp_path / "quiet", "--no-docker", "--no-metrics")
    none = start_gateway(tmp_path / "none", "--no-docker", "--http-port", "-1")
    try:
        status, _, raw = Http(quiet.running.http_address, read_owner_token()).request("GET", "/metrics", token=True)
        assert status == 404 and "--no-metrics" in json.loads(raw)["message"]
        assert none.running.http_address == "" and none.client.info()["http_address"] == ""
    finally:
        quiet.stop()
        none.stop()


def test_a_taken_http_port_moves_the_face_and_the_start_says_where(tmp_path: Path) -> None:
    """`dcf gateway start --detach --port P` when P+1 is taken: the face listens on a free port, and the start
    prints that address (the README tells users to find it with `dcf gateway address --http`)."""
    import socket

    for _ in range(20):  # a free port P whose P+1 someone holds: hold P+1 ourselves
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1] - 1
        holder = socket.socket()
        try:
            holder.bind(("127.0.0.1", port + 1))
            holder.listen(1)
        except OSError:
            holder.close()
            continue
        break
    state = tmp_path / "state"
    try:
        started = run_cli("gateway", "start", "--detach", "--no-docker", "--port", str(port), "--state-dir",
                          str(state))
        said = started.stdout.decode()
        assert started.returncode == 0, started.stderr
        assert f"on 127.0.0.1:{port}" in said and f"port {port + 1} was taken" in said, said
        http = run_cli("gateway", "address", "--http", "--state-dir", str(state)).stdout.decode().strip()
        assert http.startswith("127.0.0.1:") and f"HTTP on {http}:" in said, (http, said)
    finally:
        holder.close()
        run_cli("gateway", "stop", "--state-dir", str(state))


def test_the_openapi_description_lists_exactly_the_routes(http_gateway) -> None:
    _, web = http_gateway
    status, described = web.json("GET", "/openapi.json")
    assert status == 200 and described["openapi"].startswith("3.")  # type: ignore[index]
    from dcf_jupyter.gateway.http import HttpFace

    app = HttpFace(None, None, None, max_message=1).app()  # type: ignore[arg-type]
    served = {(route.method, route.resource.canonical) for route in app.router.routes()  # type: ignore[union-attr]
              if route.method != "HEAD"}
    listed = {(method.upper(), path) for path, methods in described["paths"].items()  # type: ignore[index]
              for method in methods}
    assert served == listed


def test_metrics_parse_as_prometheus_text_and_count_the_calls_made(http_gateway) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    handle, web = http_gateway

    def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, headers, body = web.request("GET", "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(body.decode()) for s in family.samples}

    def calls(function: str, status: str = "OK") -> float:
        return before_or(samples(), "dcf_calls_total", function=function, backend="local", status=status)

    ok_before, bad_before = calls("hello-dcf"), calls("faces", "INVALID_ARGUMENT")
    for _ in range(5):
        handle.client.call("hello-dcf")  # gRPC
    for _ in range(3):
        web.request("POST", "/function/hello-dcf")  # HTTP
    web.request("POST", "/function/faces", b"bad")
    assert calls("hello-dcf") - ok_before == 8 and calls("faces", "INVALID_ARGUMENT") - bad_before == 1
    seen = samples()
    assert before_or(seen, "dcf_replicas", function="echo", backend="local", state="ready") >= 1
    assert before_or(seen, "dcf_call_duration_seconds_count", function="hello-dcf") >= 8
    assert before_or(seen, "dcf_deploys_total", outcome="ok") >= 4
    assert ("dcf_calls_in_flight", (("function", "hello-dcf"),)) in seen
    names = {name for name, _ in seen}
    assert {"dcf_cold_starts_total", "dcf_deploy_duration_seconds_bucket", "dcf_calls_total",
            "dcf_worker_restarts_total"} <= names, names
    list(handle.client.stream("echo", [b"a", b"b", b"c"]))
    assert before_or(samples(), "dcf_stream_frames_total", function="echo") >= 3


def before_or(seen: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """A sample's value (0 when it is not there yet)."""
    return seen.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_body_is_read_only_once_its_call_may_go_ahead_and_within_the_budget(http_gateway) -> None:
    """The token, the route and the function are checked before a byte of a body is read; bodies being read are
    bounded in total (twice --max-message-size, 1 MiB here): past it a request is refused at once, 503 with
    Retry-After, nothing read; a body larger than a message is refused by its Content-Length."""
    _, web = http_gateway
    limit = 1024 * 1024

    def announce(path: str, size: int) -> http.client.HTTPConnection:
        """A request whose headers promise `size` bytes and whose body is not sent (yet)."""
        connection = http.client.HTTPConnection(web.host, web.port, timeout=30)
        connection.putrequest("POST", path)
        connection.putheader("Content-Length", str(size))
        connection.endheaders()
        return connection

    def answer(connection: http.client.HTTPConnection) -> tuple[int, dict[str, str], dict[str, str]]:
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(response.read())

    for path, status, said in (("/function/nothing-here", 404, "is not deployed"),
                               ("/function/echo", 413, "larger than the gateway's limit")):
        connection = announce(path, 60 * limit if status == 413 else limit)
        try:  # answered with no body sent
            got, _, body = answer(connection)
            assert got == status and said in body["message"], body
        finally:
            connection.close()
    held = [announce("/function/echo", limit) for _ in range(2)]  # the budget: two bodies of a message each
    try:
        for connection in held:
            connection.send(b"x" * 1000)  # begun, so the gateway holds their budget while it waits for the rest
        time.sleep(0.5)
        refused = announce("/function/echo", 1000)
        status, headers, body = answer(refused)
        refused.close()
        assert status == 503 and headers["retry-after"] == "1" and "request bodies" in body["message"], body
    finally:
        for connection in held:
            connection.close()
    eventually(lambda: web.request("POST", "/function/echo", b"fits again")[2] == b"fits again", 10,
               "their budget came back", every=0.2)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed here")
def test_curl_itself(http_gateway) -> None:
    _, web = http_gateway
    base = f"http://{web.host}:{web.port}"
    said = subprocess.run(["curl", "-sS", "--data-binary", "Hello", f"{base}/function/hello-dcf"],
                          capture_output=True, timeout=60)
    assert said.stdout == b"Hello DCF", said
    listed = subprocess.run(["curl", "-sS", f"{base}/system/functions"], capture_output=True, timeout=60)
    assert "hello-dcf" in {f["Name"] for f in json.loads(listed.stdout)}
    streamed = subprocess.run(["curl", "-sSN", "-H", "Accept: text/event-stream", "-d", "",
                               f"{base}/function/words"], capture_output=True, timeout=60)
    assert streamed.stdout == b"data: one\n\ndata: two\n\ndata: three\n\n"
    cut = subprocess.run(["curl", "-sSN", "--data-binary", "fail", f"{base}/function/words"], capture_output=True,
                         timeout=60)
    assert (cut.returncode, cut.stdout) == (18, b"onetwo"), cut  # 18: "transfer closed with data remaining"


def test_browsers_of_listed_origins_only(tmp_path: Path) -> None:
    handle = start_gateway(tmp_path / "state", "--no-docker", "--open-loopback", "--cors-origin", "https://example.org")
    try:
        handle.client.deploy(FUNCTIONS / "hello-dcf")
        web = Http(handle.running.http_address)
        status, headers, _ = web.request("OPTIONS", "/function/hello-dcf", headers={
            "Origin": "https://example.org", "Access-Control-Request-Method": "POST"})
        assert status == 204 and headers["access-control-allow-origin"] == "https://example.org"
        assert "Authorization" in headers["access-control-allow-headers"]
        status, headers, body = web.request("POST", "/function/hello-dcf", headers={"Origin": "https://example.org"})
        assert body == b"Hello DCF" and headers["access-control-allow-origin"] == "https://example.org"
        # Any page can make a browser POST to 127.0.0.1 without asking first: one of another origin is refused
        # before its call runs, as is one that renamed its own host to this address (DNS rebinding).
        # A page's request that says it comes from another site, and no Origin, is refused too.
        for headers_sent in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                             {"Host": f"evil.example:{web.port}"}, {"Sec-Fetch-Site": "cross-site"},
                             {"Sec-Fetch-Site": "same-site"}):
            status, headers, raw = web.request("POST", "/function/hello-dcf", b"x", headers=headers_sent)
            assert status == 403 and "access-control-allow-origin" not in headers, (headers_sent, raw)
            assert json.loads(raw)["code"] == "PERMISSION_DENIED"
        status, headers, _ = web.request("OPTIONS", "/function/hello-dcf", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert status == 403 and "access-control-allow-origin" not in headers
        # This machine's names are fine, IPv6 ones bracketed with or without a port; a request from the page's own
        # origin, or typed in the address bar, too.
        for headers_sent in ({"Host": f"localhost:{web.port}"}, {"Host": f"127.0.0.1:{web.port}"}, {"Host": "[::1]"},
                             {"Host": f"[::1]:{web.port}"}, {"Sec-Fetch-Site": "same-origin"},
                             {"Sec-Fetch-Site": "none"}):
            assert web.request("POST", "/function/hello-dcf", b"x", headers=headers_sent)[2] == b"Hello DCF"
        calls = handle.client.get("hello-dcf").invocations
        assert calls == 7, calls  # the refused requests ran nothing
    finally:
        handle.stop()


def test_a_websocket_stream_carries_500_frames_in_order_and_ends_with_a_failure_said(http_gateway) -> None:
    import asyncio

    import aiohttp

    _, web = http_gateway
    frames = [f"frame {i}".encode() * 100 for i in range(500)]

    async def talk() -> tuple[list[bytes], list[str], object]:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://{web.host}:{web.port}/function/echo/stream") as ws:
                async def send() -> None:
                    for frame in frames:
                        await ws.send_bytes(frame)

                sending = asyncio.create_task(send())
                replies = [await ws.receive_bytes(timeout=30) for _ in frames]
                await sending
                await ws.close()
            async with session.ws_connect(f"http://{web.host}:{web.port}/function/faces/stream") as ws:
                await ws.send_str("one")
                await ws.send_str("bad")
                said = [await ws.receive_str(timeout=30)]
                failure = await ws.receive_json(timeout=30)
                closed = await ws.receive(timeout=30)
                return replies, said, (failure, closed.type, ws.close_code)

    replies, said, (failure, kind, code) = asyncio.run(talk())
    assert replies == frames  # every frame, in order
    assert said == ["text: one"]
    assert failure == {"message": "ValueError: not a picture", "code": "INVALID_ARGUMENT"}
    assert kind == aiohttp.WSMsgType.CLOSE and code == 1011


def test_the_grafana_dashboard_asks_for_metrics_the_gateway_exports(http_gateway) -> None:
    import re

    from prometheus_client.parser import text_string_to_metric_families

    handle, web = http_gateway
    list(handle.client.stream("echo", [b"a"]))
    exported = {sample.name for family in text_string_to_metric_families(web.request("GET", "/metrics")[2].decode())
                for sample in family.samples}
    exported.add("dcf_gpu_memory_used_bytes")  # only where the gateway hands out GPUs (none here)
    dashboard = json.loads((Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dcf.json").read_text())
    asked = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"\bdcf_[a-z_]+", target["expr"])}
    assert asked and asked <= exported, asked - exported

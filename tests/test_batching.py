"""Batches and bounded queues through a real gateway and real workers on the local backend: calls and stream
frames share a batched Handler's batches, each caller gets its own reply, and a function whose queue is full
refuses at once on gRPC and HTTP."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import BATCHED, GatewayHandle, at_once, eventually, run_cli, split, start_gateway, with_keys

from dcf_jupyter import ConfigError, FunctionError, Overloaded
from dcf_jupyter.definition.check import check_handler, check_handler_source
from dcf_jupyter.definition.scaffold import init_function
from dcf_jupyter.definition.spec import load_config
from dcf_jupyter.host.credentials import read_owner_token

MISCOUNTS = """
class Handler:
    def __call__(self, reqs):
        return [req.input.decode() for req in reqs][1:]
"""
GENERATES = """
class Handler:
    def __call__(self, reqs):
        return [iter(["one", "two"]) for _ in reqs]
"""
SLOW = """
import time


class Handler:
    def __call__(self, req):
        time.sleep(0.3)
        return "done " + req.input.decode()
"""


@pytest.fixture(scope="module")
def batching_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    parent = tmp_path_factory.mktemp("batching")
    handle = start_gateway(parent / "state")
    try:
        def deploy(name: str, source: str, **keys: object) -> None:
            handle.client.deploy(with_keys(init_function(name, parent=parent, handler_source=source), **keys))

        deploy("batched", BATCHED, batching={"max_batch_size": 8, "max_wait_ms": 200})
        deploy("miscounts", MISCOUNTS, batching={"max_batch_size": 4})
        deploy("generates", GENERATES, batching={"max_batch_size": 4})
        deploy("queued", SLOW, max_queued_requests=2)
        deploy("no-queue", SLOW, max_queued_requests=0)
        deploy("no-queue-idle", SLOW, max_queued_requests=0,
               autoscaling={"min_replicas": 0, "max_replicas": 1, "downscale_delay_s": 0.3})
        yield handle
    finally:
        handle.stop()


def test_concurrent_calls_run_in_shared_batches_each_caller_getting_its_reply(batching_gateway) -> None:
    client = batching_gateway.client
    replies = at_once(16, lambda i: client.call("batched", f"call-{i}", timeout=30))
    asked = [split(reply) for reply in replies]
    assert [ask for ask, _ in asked] == [f"call-{i}" for i in range(16)], replies
    sizes = [size for _, size in asked]
    assert max(sizes) > 1 and max(sizes) <= 8, sizes


def test_a_lone_call_is_not_held_for_the_batch_to_fill(batching_gateway) -> None:
    client = batching_gateway.client
    client.call("batched", "settle", timeout=30)  # after a busy test, one batch may wait out max_wait_ms
    started = time.monotonic()
    assert split(client.call("batched", "alone", timeout=30)) == ("alone", 1)
    # 50 ms of work; max_wait_ms is 200: a lone call on an idle replica does not wait for others.
    assert time.monotonic() - started < 0.2


def test_streams_and_calls_share_batches_and_each_stream_keeps_its_order(batching_gateway) -> None:
    client = batching_gateway.client
    results: dict[str, list[str]] = {}

    def stream(tag: str) -> None:
        results[tag] = [reply.decode() for reply in client.stream("batched", (f"{tag}{i}" for i in range(20)),
                                                                    timeout=60)]

    def calls() -> None:
        results["u"] = [str(client.call("batched", f"u{i}", timeout=30)) for i in range(10)]

    workers = [threading.Thread(target=stream, args=("a",)), threading.Thread(target=stream, args=("b",)),
               threading.Thread(target=calls)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    for tag, count in (("a", 20), ("b", 20), ("u", 10)):
        assert [split(reply)[0] for reply in results[tag]] == [f"{tag}{i}" for i in range(count)], results[tag]
    sizes = [split(reply)[1] for replies in results.values() for reply in replies]
    assert max(sizes) > 2, sizes  # frames of both streams (and calls) in one batch


def test_an_item_that_fails_fails_only_its_caller(batching_gateway) -> None:
    client = batching_gateway.client
    results = at_once(6, lambda i: client.call("batched", "bad-input" if i == 2 else f"fine-{i}", timeout=30))
    failed = results.pop(2)
    assert isinstance(failed, FunctionError) and failed.is_bad_input and "ValueError: not bad-input" in str(failed)
    assert [split(reply)[0] for reply in results] == [f"fine-{i}" for i in (0, 1, 3, 4, 5)], results


def test_a_batched_handler_that_miscounts_or_generates_fails_each_call_in_a_sentence(batching_gateway) -> None:
    client = batching_gateway.client
    with pytest.raises(FunctionError, match=r"the batched Handler returned 0 replies for 1 requests \(with "
                                            r"`batching:` it takes a list and returns a list of the same length\)"):
        client.call("miscounts", "x", timeout=30)
    with pytest.raises(FunctionError, match="a batched Handler returns one reply per request, not a generator"):
        client.call("generates", "x", timeout=30)
    streamed = [reply.value() for reply in client.call_stream("batched", "once", timeout=30)]
    assert streamed == ["once|1"]  # a streamed call to a batched Handler is one item


def test_a_full_queue_refuses_at_once_on_grpc_and_http_and_every_accepted_call_is_answered(
        batching_gateway) -> None:
    client = batching_gateway.client
    started = time.monotonic()
    results = at_once(8, lambda i: client.call("queued", str(i), timeout=30))
    answered = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, Overloaded)]
    assert len(answered) + len(refused) == 8, results
    assert answered and all(reply.startswith("done ") for reply in answered)
    # One running in the replica and two queued: the others are refused without waiting for them.
    assert 3 <= len(answered) <= 4 and refused, results
    said = str(refused[0])
    assert "queued has" in said and "max_queued_requests 2" in said and "\n" not in said, said
    assert refused[0].retry_after > 0 and time.monotonic() - started < 10

    address = batching_gateway.running.http_address
    assert address
    host, port = address.rsplit(":", 1)
    token = read_owner_token()
    statuses: list[tuple[int, str, str]] = []

    def post(i: int) -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            connection.request("POST", "/function/queued", body=str(i).encode(),
                               headers={"Authorization": f"Bearer {token}"} if token else {})
            response = connection.getresponse()
            statuses.append((response.status, response.getheader("Retry-After") or "", response.read().decode()))
        finally:
            connection.close()

    at_once(8, post)
    too_many = [s for s in statuses if s[0] == 429]
    assert too_many and {s[0] for s in statuses} <= {200, 429}, statuses
    assert too_many[0][1] == "1" and json.loads(too_many[0][2])["code"] == "RESOURCE_EXHAUSTED", too_many[0]


def test_a_function_with_no_queue_takes_a_call_its_replica_has_room_for(batching_gateway) -> None:
    assert batching_gateway.client.call("no-queue", "alone", timeout=30) == "done alone"


def test_a_function_with_no_queue_at_zero_replicas_takes_the_call_that_wakes_it(batching_gateway) -> None:
    client = batching_gateway.client
    eventually(lambda: client.get("no-queue-idle").replicas == 0, 30, "no-queue-idle scaled to zero")
    assert client.call("no-queue-idle", "wake", timeout=60) == "done wake"  # was refused: 0 ready, limit 0


def test_retries_back_off_until_the_queue_has_room(batching_gateway) -> None:
    client = batching_gateway.client
    results = at_once(8, lambda i: client.call("queued", str(i), timeout=60, retries=20))
    assert sorted(map(str, results)) == sorted(f"done {i}" for i in range(8)), results


def test_metrics_show_the_queue_and_the_refusals(batching_gateway) -> None:
    address = batching_gateway.running.http_address
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    token = read_owner_token()
    connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
    text = connection.getresponse().read().decode()
    connection.close()
    assert 'dcf_queued_calls{function="queued"} 0.0' in text
    refused = [line for line in text.splitlines() if line.startswith('dcf_calls_refused_total{function="queued"}')]
    assert refused and float(refused[0].split()[-1]) >= 1, refused

    def sample(name: str) -> float:
        [line] = [line for line in text.splitlines() if line.startswith(f'{name}{{function="batched"}}')]
        return float(line.split()[-1])

    batches, calls = sample("dcf_batch_size_count"), sample("dcf_batch_size_sum")
    assert batches >= 1 and calls > batches, (batches, calls)  # each batch counted once, with its calls


def test_listings_show_the_queue_and_the_batches(batching_gateway) -> None:
    info = batching_gateway.client.get("batched")
    assert (info.queued, info.max_queued, info.max_batch_size) == (0, 256, 8)
    assert batching_gateway.client.get("queued").queue_said == "0 queued (limit 2)"
    listed = run_cli("function", "list", "-v", env={"DCF_GATEWAY": batching_gateway.address})
    assert listed.returncode == 0, listed.stderr
    assert "    0 queued (limit 256), batches of up to 8" in listed.stdout.decode()


def test_a_batched_handler_that_yields_is_refused_before_anything_is_deployed(tmp_path: Path, make_function) -> None:
    source = "class Handler:\n    def __call__(self, reqs):\n        for req in reqs:\n            yield req.input\n"
    folder = with_keys(make_function("yields", source), batching={"max_batch_size": 4})
    with pytest.raises(ConfigError, match=r"^src/handler.py, line 4: Handler.__call__ yields, but with `batching:` "
                                          r"it takes a list of requests and returns a list of replies"):
        check_handler(load_config(folder / "config.yaml").function())
    check_handler(load_config(with_keys(folder, batching=None) / "config.yaml").function())  # a generator is fine
    nested = ("class Handler:\n    def __call__(self, reqs):\n        def each():\n            yield 1\n"
              "        return [list(each()) for _ in reqs]\n")
    check_handler_source(nested, "handler.py", "Handler", batched=True)  # a generator inside it is its own


def test_the_readme_says_how_a_batched_handler_looks() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "batching:" in readme and "max_queued_requests" in readme

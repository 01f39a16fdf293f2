"""`.map` through a real gateway and real workers on the local backend: ordered and unordered results,
failures, retries and `return_exceptions`, a replica killed mid-way (no item lost or doubled), inputs
streamed with back-pressure, the autoscaler bringing replicas up for a map, the progress bar and the CLI."""

from __future__ import annotations

import http.client
import itertools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import GatewayHandle, run_cli, start_gateway, with_keys

from dcf_jupyter import FunctionError, FunctionNotFound, InvalidArgument
from dcf_jupyter.client import _map
from dcf_jupyter.definition.scaffold import init_function
from dcf_jupyter.host.credentials import read_owner_token

# Each reply: the input, upper-cased, and the worker's pid. "slow..." sleeps; "bad" fails; "flaky-N-TAG" fails
# until it has been tried N times (tries are counted in files, across workers).
HANDLER = """
import os
import time
from pathlib import Path

TRIES = Path(os.environ["MAP_TEST_TRIES"])


class Handler:
    def __call__(self, req):
        text = req.input.decode()
        if text.startswith("slow"):
            time.sleep(float(text.split("-")[1]))
        if text == "bad":
            raise ValueError("bad input")
        if text.startswith("flaky"):
            _, fails, tag = text.split("-")
            mark = TRIES / tag
            with mark.open("a") as seen:
                seen.write("x")
            if len(mark.read_text()) <= int(fails):
                raise RuntimeError(f"flaky {tag} failed on try {len(mark.read_text())}")
        return f"{text.upper()}|{os.getpid()}"
"""


@pytest.fixture(scope="module")
def tries_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tries")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, tries_dir: Path) -> Iterator[GatewayHandle]:
    parent = tmp_path_factory.mktemp("map")
    os.environ["MAP_TEST_TRIES"] = str(tries_dir)  # the gateway's workers inherit it
    handle = start_gateway(parent / "state")
    try:
        handle.client.deploy(init_function("upper", parent=parent, handler_source=HANDLER), replicas=2)
        handle.client.deploy(with_keys(init_function("scaled", parent=parent, handler_source=HANDLER),
                                       autoscaling={"min_replicas": 1, "max_replicas": 3, "upscale_delay_s": 0,
                                                    "downscale_delay_s": 600}))
        yield handle
    finally:
        handle.stop()
        os.environ.pop("MAP_TEST_TRIES", None)


def texts(results: list[object]) -> list[str]:
    return [str(result).split("|")[0] for result in results]


def test_an_ordered_map_hands_results_back_in_input_order(gateway) -> None:
    inputs = ["slow-0.5", *(f"item{i}" for i in range(30))]
    assert texts(list(gateway.client.map("upper", inputs, timeout=60))) == [text.upper() for text in inputs]


def test_an_unordered_map_hands_each_result_back_as_it_comes(gateway) -> None:
    inputs = ["slow-0.5", *(f"item{i}" for i in range(30))]
    results = texts(list(gateway.client.map("upper", inputs, ordered=False, timeout=60)))
    assert sorted(results) == sorted(text.upper() for text in inputs)
    # The other replica answered most of the rest meanwhile (a few were queued behind the slow one).
    assert results.index("SLOW-0.5") > 20, results


def test_the_work_is_spread_over_the_replicas(gateway) -> None:
    results = list(gateway.client.map("upper", [f"slow-0.05-{i}" for i in range(20)], timeout=60))
    assert len({str(result).split("|")[1] for result in results}) == 2, results


def test_a_failed_input_is_raised_naming_it_or_handed_back_in_its_place(gateway) -> None:
    client = gateway.client
    with pytest.raises(FunctionError, match=r"^input 1: ValueError: bad input"):
        list(client.map("upper", ["a", "bad", "c"]))
    results = list(client.map("upper", ["a", "bad", "c"], return_exceptions=True))
    assert texts([results[0], results[2]]) == ["A", "C"]
    assert isinstance(results[1], FunctionError) and "ValueError: bad input" in str(results[1])
    assert "raise ValueError" in results[1].detail  # the handler's traceback comes along


def test_retries_try_a_failed_input_again(gateway, tries_dir: Path) -> None:
    client = gateway.client
    assert texts(list(client.map("upper", ["flaky-2-r1", "ok"], retries=2))) == ["FLAKY-2-R1", "OK"]
    assert (tries_dir / "r1").read_text() == "xxx"
    with pytest.raises(FunctionError, match=r"input 0 \(2 tries\): RuntimeError: flaky r2 failed on try 2"):
        list(client.map("upper", ["flaky-5-r2"], retries=1))
    with pytest.raises(InvalidArgument, match="retries=-1"):
        client.map("upper", ["x"], retries=-1)


def test_a_replica_killed_mid_map_loses_and_doubles_nothing(gateway, tries_dir: Path) -> None:
    inputs = [f"slow-0.02-k{i}" for i in range(150)]
    results: list[str] = []
    killed = None
    for result in gateway.client.map("upper", inputs, timeout=120):
        results.append(str(result))
        if len(results) == 20:
            killed = int(str(result).split("|")[1])
            os.kill(killed, signal.SIGKILL)
    assert texts(results) == [text.upper() for text in inputs]
    after = [int(result.split("|")[1]) for result in results[40:]]
    assert killed not in after  # the items it held were answered by the other replica (or its successor)
    assert calls_counted(gateway, "upper", "UNAVAILABLE") >= 1  # it did hold some: their tries failed there


def calls_counted(gateway: GatewayHandle, function: str, status: str) -> float:
    """The gateway's dcf_calls_total for `function` ending with `status` (tries of map items included)."""
    host, port = gateway.running.http_address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {read_owner_token()}"})
    text = connection.getresponse().read().decode()
    connection.close()
    start = f'dcf_calls_total{{backend="local",function="{function}",status="{status}"}}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(start))


def test_inputs_are_read_only_as_fast_as_results_are_taken(gateway) -> None:
    read = 0

    def endless() -> Iterator[str]:
        nonlocal read
        while True:
            read += 1
            yield f"n{read}"

    results = gateway.client.map("upper", endless(), timeout=60)
    taken = [next(results) for _ in range(10)]
    time.sleep(1.0)  # a caller that reads slowly: the map waits for it
    assert texts(taken) == [f"N{i}" for i in range(1, 11)]
    assert read <= _map.WINDOW + 10 + _map.CHUNK_ITEMS, read
    results.close()  # stops the map: the generator is not read further
    stopped_at = read
    time.sleep(0.3)
    assert read == stopped_at


def test_an_iterable_that_fails_raises_its_error_after_the_results_before_it(gateway) -> None:
    def broken() -> Iterator[str]:
        yield "one"
        yield "two"
        raise OSError("the disk went away")

    results = gateway.client.map("upper", broken(), timeout=30)
    assert texts([next(results), next(results)]) == ["ONE", "TWO"]
    with pytest.raises(OSError, match="the disk went away"):
        next(results)


def test_an_empty_map_and_an_unknown_function(gateway) -> None:
    assert list(gateway.client.map("upper", [])) == []
    with pytest.raises(FunctionNotFound, match="'nowhere' is not deployed"):
        list(gateway.client.map("nowhere", ["x"]))


def test_a_map_brings_the_autoscaled_replicas_up(gateway) -> None:
    results = list(gateway.client.map("scaled", [f"slow-0.2-{i}" for i in range(60)], timeout=120))
    assert len({str(result).split("|")[1] for result in results}) == 3, results
    assert gateway.client.get("scaled").replicas == 3


def test_the_progress_bar_counts_results_and_failures(gateway, capsys: pytest.CaptureFixture[str]) -> None:
    results = list(gateway.client.map("upper", ["a", "bad", "c"], return_exceptions=True, progress=True))
    assert len(results) == 3
    bar = capsys.readouterr().err
    assert "upper: 100%" in bar and "3/3" in bar and "1 failed" in bar, bar


def test_dcf_function_map_writes_a_result_file_per_input(gateway, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    (photos / "more").mkdir(parents=True)
    (photos / "a.txt").write_text("first")
    (photos / "more" / "b.txt").write_text("second")
    (photos / ".hidden").write_text("skipped")
    (tmp_path / "c.txt").write_text("bad")
    out = tmp_path / "out"
    done = run_cli("-g", gateway.address, "function", "map", "upper", str(photos), str(tmp_path / "c.txt"),
                   "-o", str(out))
    assert done.returncode == 1, done.stderr
    assert (out / "a.txt.txt").read_text().startswith("FIRST|")
    assert (out / "more" / "b.txt.txt").read_text().startswith("SECOND|")
    assert sorted(path.name for path in out.rglob("*") if path.is_file()) == ["a.txt.txt", "b.txt.txt"]
    err = done.stderr.decode()
    assert "c.txt: input 2: ValueError: bad input" in err and "2 of 3 results in" in err and "1 failed" in err


def test_the_progress_widget_updates_in_a_real_kernel_while_the_cell_runs(gateway) -> None:
    """In a Jupyter kernel the bar is an ipywidgets widget: its updates reach the front end while the cell is
    still running (at least 5 a second), not only when it ends."""
    pytest.importorskip("ipywidgets", reason="the notebook progress bar needs ipywidgets (pip install "
                                             "'dcf-jupyter[notebook]')")
    pytest.importorskip("ipykernel", reason="a real kernel needs ipykernel (pip install 'dcf-jupyter[notebook]')")
    from jupyter_client.manager import start_new_kernel

    manager, kernel = start_new_kernel(kernel_name="python3", env={**os.environ, "DCF_GATEWAY": gateway.address})
    updates: list[tuple[float, float]] = []  # (when, the bar's value)
    opened: list[str] = []

    def watch(message: dict[str, object]) -> None:
        content = message["content"]
        assert isinstance(content, dict)
        if message["msg_type"] == "comm_open":
            opened.append(content.get("data", {}).get("state", {}).get("_model_name", ""))
        state = content.get("data", {}).get("state", {}) if message["msg_type"] == "comm_msg" else {}
        if "value" in state and isinstance(state["value"], (int, float)):
            updates.append((time.monotonic(), state["value"]))

    try:
        code = ("from dcf_jupyter.client import Client\n"
                "results = list(Client().map('upper', [f'slow-0.1-{i}' for i in range(30)]))\n"
                "print(len(results))")
        started = time.monotonic()
        reply = kernel.execute_interactive(code, timeout=120, output_hook=watch)
        ended = time.monotonic()
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert "FloatProgressModel" in opened or "IntProgressModel" in opened, opened
    values = [value for _, value in updates]
    assert values[-1] == 30 and len(set(values)) >= 5, values
    times = [when for when, _ in updates]
    assert times[0] < ended - 1.0, (started, ended, updates)  # seen well before the cell ended
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(gaps) < 0.35, updates  # redrawn at least 5 times a second as results come

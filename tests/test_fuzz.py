"""Hypothesis against config parsing and a live gateway: random names, inputs, sources and configs.

Whatever arrives, the gateway answers with a status a client can act on (never INTERNAL or UNKNOWN, never a
Python traceback as the message) and keeps serving. Examples are derandomized so CI runs the same ones.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

import grpc
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import FUNCTIONS, GatewayHandle, owner_channel, start_gateway

from dcf_jupyter.definition.spec import _FUNCTION_KEYS, ConfigFile, parse_config
from dcf_jupyter.errors import ConfigError
from dcf_jupyter.protocol import gateway_pb2 as pb
from dcf_jupyter.protocol import gateway_pb2_grpc as pb_grpc

FUZZ = settings(derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CODE = grpc.StatusCode

# Names as users and attackers write them: DNS-ish, path-ish, unicode, huge.
names = st.one_of(
    st.text(max_size=80),
    st.from_regex(r"[a-z0-9][-a-z0-9]{0,70}", fullmatch=True),
    st.sampled_from(["echo", "../echo", "echo/../../etc", "/etc/passwd", ".", "..", "ECHO", "echo\x00", "-a", "a-"]),
    st.integers(0, 5).map(lambda n: "a" * (10 ** n)),
)
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
function_bodies = st.dictionaries(st.sampled_from(sorted(_FUNCTION_KEYS)) | st.text(max_size=8), yaml_values,
                                  max_size=6)


def assert_sensible(error: grpc.RpcError, allowed: set[grpc.StatusCode]) -> None:
    """A status a client can act on, with a sentence (not a traceback, not a megabyte) as its message."""
    assert error.code() in allowed, (error.code(), error.details())
    details = error.details() or ""
    assert "Traceback (most recent call last)" not in details and 'File "' not in details, details
    assert not details.startswith("gateway error"), details
    assert len(details) < 2000, len(details)


# --- config.yaml -------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=400))
def test_any_text_as_config_loads_or_is_refused_with_one_sentence(text: str) -> None:
    try:
        assert isinstance(parse_config(text), ConfigFile)
    except ConfigError as exc:
        assert str(exc).startswith("config.yaml: ") and "\n" not in str(exc)


@FUZZ
@given(function_bodies)
def test_any_yaml_function_body_loads_or_names_the_bad_key(body: dict) -> None:
    text = yaml.safe_dump({"functions": {"fuzzed": body}})
    try:
        spec = parse_config(text).function("fuzzed")
    except ConfigError as exc:
        assert str(exc).startswith("config.yaml: functions.fuzzed") and "\n" not in str(exc), str(exc)
    else:
        assert spec.replicas >= 1 and spec.concurrency >= 1 and not spec.handler.dir.startswith("/")


# --- a live gateway --------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayHandle, grpc.Channel]]:
    """A gateway of this module's own with echo deployed, and a raw channel to it (no client-side checks)."""
    handle = start_gateway(tmp_path_factory.mktemp("fuzz") / "state")
    channel = owner_channel(handle.address, options=[("grpc.max_receive_message_length", 64 << 20)])
    try:
        handle.client.deploy(FUNCTIONS / "echo")
        pid = handle.client.info()["pid"]
        yield handle, channel
        # After everything below: the same process, still serving.
        assert handle.client.info()["pid"] == pid
        assert handle.client.call("echo", b"still here") == b"still here"
    finally:
        channel.close()
        handle.stop()


def raw_method(channel: grpc.Channel, name: str, *, stream: bool = False):
    path = f"/pb.Gateway/{name}"
    return channel.stream_stream(path) if stream else channel.unary_unary(path)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_any_bytes_as_an_invoke_request(fuzzed, raw: bytes) -> None:
    _, channel = fuzzed
    for method in ("Invoke", "InvokeBytes"):
        try:
            raw_method(channel, method)(raw, timeout=10)
        except grpc.RpcError as error:
            assert_sensible(error, {CODE.INVALID_ARGUMENT, CODE.NOT_FOUND})


@FUZZ
@given(name=names, data=st.binary(max_size=200))
def test_any_name_and_input(fuzzed, name: str, data: bytes) -> None:
    _, channel = fuzzed
    stub = pb_grpc.GatewayStub(channel)
    try:
        reply = stub.InvokeBytes(pb.InvokeServiceRequest(Service=name, Input=data), timeout=10)
    except grpc.RpcError as error:
        assert name != "echo"
        assert_sensible(error, {CODE.INVALID_ARGUMENT, CODE.NOT_FOUND})
    else:
        assert name == "echo" and reply.Output == data


@FUZZ
@given(frames=st.lists(st.tuples(st.sampled_from(["echo", "echo", "", "hello-dcf", "NOPE"]), st.binary(max_size=50)),
                       max_size=8),
       garbage=st.none() | st.binary(max_size=40))
def test_any_sequence_on_a_stream(fuzzed, frames: list[tuple[str, bytes]], garbage: bytes | None) -> None:
    _, channel = fuzzed
    messages = [pb.InvokeServiceRequest(Service=s, Input=d).SerializeToString() for s, d in frames]
    if garbage is not None:
        messages.append(garbage)
    replies: list[bytes] = []
    try:
        replies.extend(raw_method(channel, "Invokes", stream=True)(iter(messages), timeout=10))
    except grpc.RpcError as error:
        assert_sensible(error, {CODE.INVALID_ARGUMENT, CODE.NOT_FOUND})
    # Whatever ended the stream, every reply that came was the right echo, in order.
    expected = [pb.Messages(Output=d).Output for _, d in frames]
    assert [pb.Messages.FromString(r).Output for r in replies] == expected[: len(replies)]


@FUZZ
@given(name=names, lines=st.integers(0, 2**31 - 1), replicas=st.integers(0, 2**64 - 1))
def test_any_name_on_the_management_rpcs(fuzzed, name: str, lines: int, replicas: int) -> None:
    _handle, channel = fuzzed
    stub = pb_grpc.GatewayStub(channel)
    metadata = None
    calls = [
        lambda: stub.GetMeta(pb.FunctionRequest(FunctionName=name), timeout=10),
        lambda: stub.GetLog(pb.FunctionRequest(FunctionName=name, Lines=lines), timeout=10),
    ]
    if name != "echo":  # keep the function every other example relies on
        calls += [
            lambda: stub.Delete(pb.DeleteFunctionRequest(FunctionName=name), timeout=10, metadata=metadata),
            lambda: stub.ReplicaUpdate(pb.ScaleServiceRequest(ServiceName=name, Replicas=replicas), timeout=10),
        ]
    for call in calls:
        try:
            call()
        except grpc.RpcError as error:
            assert_sensible(error, {CODE.INVALID_ARGUMENT, CODE.NOT_FOUND})


# Answers "ok" whether a fuzzed config batches its calls (a list in, a list out) or not.
OK_HANDLER = ("class Handler:\n    def __call__(self, req):\n"
              "        return ['ok'] * len(req) if isinstance(req, list) else 'ok'\n")


def _source(config_text: str | bytes, handler: str = OK_HANDLER
            ) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in (("config.yaml", config_text), ("src/handler.py", handler)):
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


DEPLOY_REFUSALS = {CODE.INVALID_ARGUMENT, CODE.FAILED_PRECONDITION, CODE.ALREADY_EXISTS}


@settings(FUZZ, max_examples=60)
@given(name=names, source=st.binary(max_size=200), replicas=st.integers(0, 2**64 - 1))
def test_any_bytes_as_a_deploy(fuzzed, name: str, source: bytes, replicas: int) -> None:
    _, channel = fuzzed
    request = pb.CreateFunctionRequest(Service=name, Source=source, Replicas=replicas)
    with pytest.raises(grpc.RpcError) as info:
        pb_grpc.GatewayStub(channel).Deploy(request, timeout=30)
    assert_sensible(info.value, DEPLOY_REFUSALS)


@settings(FUZZ, max_examples=40)
@given(body=function_bodies, text=st.none() | st.binary(max_size=120))
def test_any_config_in_a_deployed_folder(fuzzed, body: dict, text: bytes | None) -> None:
    handle, channel = fuzzed
    config = yaml.safe_dump({"functions": {"fuzzed": body}}) if text is None else text
    request = pb.CreateFunctionRequest(Service="fuzzed", Source=_source(config))
    try:
        pb_grpc.GatewayStub(channel).Deploy(request, timeout=60)
    except grpc.RpcError as error:
        assert_sensible(error, DEPLOY_REFUSALS)
    else:  # a config that happens to be valid deploys and serves
        try:
            assert handle.client.call("fuzzed") == "ok"
        finally:
            handle.client.delete("fuzzed")

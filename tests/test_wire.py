"""protocol/wire.py, the hand-written hot-path codec, against the generated protobuf classes (Hypothesis).

Examples are derandomized so CI runs the same ones; a randomized hunt of 90,000 junk inputs found the two
refusals protobuf makes that wire.py now makes too (field number 0, field numbers past 2**29 - 1)."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from dcf_jupyter.protocol import gateway_pb2 as pb
from dcf_jupyter.protocol import wire
from dcf_jupyter.protocol.wire import WireError, message_parts, messages_parts, parse_call

texts = st.text(max_size=200)
payloads = st.binary(max_size=4096)
content_types = st.sampled_from(["", "text/plain; charset=utf-8", "application/json", "application/octet-stream"])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(service=texts, data=payloads)
def test_it_reads_what_protobuf_writes(service: str, data: bytes) -> None:
    raw = pb.InvokeServiceRequest(Service=service, Input=data).SerializeToString()
    name, view = parse_call(raw)[:2]
    assert name == service and bytes(view) == data


@settings(max_examples=200, deadline=None, derandomize=True)
@given(service=texts, data=payloads, later=texts, unknown=st.integers(min_value=0, max_value=2**63))
def test_it_follows_protobufs_rules_for_order_repeats_and_unknown_fields(
        service: str, data: bytes, later: str, unknown: int) -> None:
    # Input first, Service twice (the last wins), and an unknown varint field 3: protobuf parses these so.
    raw = (pb.InvokeServiceRequest(Input=data).SerializeToString()
           + pb.InvokeServiceRequest(Service=service).SerializeToString()
           + pb.Function(InvocationCount=unknown).SerializeToString()  # field 3, a varint: unknown here
           + pb.InvokeServiceRequest(Service=later).SerializeToString())
    expected = pb.InvokeServiceRequest.FromString(raw)
    name, view = parse_call(raw)[:2]
    assert (name, bytes(view)) == (expected.Service, expected.Input)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=texts)
def test_protobuf_reads_the_message_it_writes(text: str) -> None:
    assert pb.Message.FromString(b"".join(message_parts(text))).Msg == text


@settings(max_examples=300, deadline=None, derandomize=True)
@given(output=payloads, content_type=content_types)
def test_protobuf_reads_the_messages_it_writes(output: bytes, content_type: str) -> None:
    raw = b"".join(messages_parts(output, content_type))
    parsed = pb.Messages.FromString(raw)
    assert (parsed.Output, parsed.ContentType) == (output, content_type)
    assert raw == pb.Messages(Output=output, ContentType=content_type).SerializeToString()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(junk=st.binary(max_size=64))
def test_junk_is_a_wire_error_or_agrees_with_protobuf(junk: bytes) -> None:
    try:
        expected = pb.InvokeServiceRequest.FromString(junk)
    except DecodeError:
        with pytest.raises(WireError):  # what protobuf refuses, the gateway refuses
            parse_call(junk)
        return
    try:
        name, view = parse_call(junk)[:2]
    except WireError:
        return  # stricter than protobuf (wire types a request never carries, such as groups) is fine
    assert (name, bytes(view)) == (expected.Service, expected.Input)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(service=texts, data=payloads, at=st.integers(min_value=0), byte=st.integers(0, 255),
       cut=st.integers(min_value=0))
def test_the_shortcut_for_plain_calls_reads_as_the_general_loop(
        service: str, data: bytes, at: int, byte: int, cut: int) -> None:
    # A plain call (Service, then Input) with one byte changed and cut short: the shortcut either declines or
    # reads exactly what the field-by-field loop reads, refusals included.
    raw = bytearray(pb.InvokeServiceRequest(Service=service, Input=data).SerializeToString())
    if raw:
        raw[at % len(raw)] = byte
    junk = bytes(raw[:len(raw) - cut % (len(raw) + 1)])

    def read(shortcut: bool) -> object:
        original = wire._plain_call
        if not shortcut:
            wire._plain_call = lambda _: None
        try:
            service, view, *rest = parse_call(junk)
            return service, bytes(view), *rest
        except WireError as exc:
            return str(exc)
        finally:
            wire._plain_call = original

    assert read(True) == read(False)

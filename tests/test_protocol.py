"""The wire contract: committed stubs match proto/, and clients built from the original DCF proto work."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support import FUNCTIONS, ROOT, start_gateway

from dcf_jupyter.host.credentials import read_owner_token

DATA = Path(__file__).parent / "data"


def test_committed_stubs_match_the_proto() -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) regenerates the stubs")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_additions_keep_every_original_name_and_number() -> None:
    """Parse both protos' descriptors: every original message field keeps its name, number and type."""
    pytest.importorskip("grpc_tools")
    from google.protobuf import descriptor_pb2

    from dcf_jupyter.protocol import gateway_pb2 as ours

    with tempfile.TemporaryDirectory() as tmp:
        descriptor_file = Path(tmp) / "original.pb"
        # protoc runs in a process of its own: its C++ once crashed inside a long test session (a segfault
        # takes the whole run down; a failed subprocess is one failed test).
        result = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{DATA}",
                                 f"--descriptor_set_out={descriptor_file}", str(DATA / "dcf_original_gateway.proto")],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        original = descriptor_pb2.FileDescriptorSet.FromString(descriptor_file.read_bytes()).file[0]
    assert original.package == ours.DESCRIPTOR.package == "pb"
    for message in original.message_type:
        mine = ours.DESCRIPTOR.message_types_by_name[message.name]
        for field in message.field:
            their = mine.fields_by_name[field.name]
            assert their.number == field.number, (message.name, field.name)
            assert their.type == field.type, (message.name, field.name)
    service = ours.DESCRIPTOR.services_by_name["Gateway"]
    for method in original.service[0].method:
        mine_method = service.methods_by_name[method.name]
        assert mine_method.input_type.name == method.input_type.split(".")[-1]
        assert mine_method.output_type.name == method.output_type.split(".")[-1]


def _original_client(stubs: Path, address: str, *token: str) -> subprocess.CompletedProcess[str]:
    """DCF's own client code on stubs compiled from the original proto, in a process of its own (the original
    stubs register the same `pb.*` names as ours)."""
    return subprocess.run([sys.executable, str(DATA / "original_client.py"), str(stubs), address, *token],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def original_stubs(tmp_path: Path) -> Path:
    pytest.importorskip("grpc_tools")
    proto = tmp_path / "gateway.proto"
    proto.write_text((DATA / "dcf_original_gateway.proto").read_text())
    compiled = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path}", f"--python_out={tmp_path}",
                               f"--grpc_python_out={tmp_path}", str(proto)], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    return tmp_path


def test_client_compiled_from_the_original_proto_works_given_the_token(gateway, original_stubs: Path) -> None:
    """A default gateway asks every client for its token; DCF's client code given it works unchanged."""
    refused = _original_client(original_stubs, gateway.address)
    assert refused.returncode != 0 and "--open-loopback" in refused.stderr, refused.stderr
    result = _original_client(original_stubs, gateway.address, read_owner_token() or "")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "original DCF client OK" in result.stdout


def test_client_compiled_from_the_original_proto_works_without_a_token_on_open_loopback(
        tmp_path: Path, original_stubs: Path) -> None:
    """A gateway started with --open-loopback serves DCF's original clients, which send no token, on loopback."""
    handle = start_gateway(tmp_path / "state", "--no-docker", "--open-loopback")
    try:
        handle.client.deploy(FUNCTIONS / "echo")
        handle.client.deploy(FUNCTIONS / "hello-dcf")
        result = _original_client(original_stubs, handle.address)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "original DCF client OK" in result.stdout
    finally:
        handle.stop()

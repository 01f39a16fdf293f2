"""Tokens, TLS and bind rules of the gateway, with real gateway processes."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import grpc
import pytest
from conftest import FUNCTIONS, GatewayHandle, run_cli, start_gateway

from dcf_jupyter.client import Client
from dcf_jupyter.errors import GatewayUnavailable, Unauthenticated
from dcf_jupyter.gateway import GatewayStartError, start_detached
from dcf_jupyter.gateway.auth import TokenPolicy, bearer_token, is_loopback
from dcf_jupyter.protocol import gateway_pb2 as pb
from dcf_jupyter.protocol import gateway_pb2_grpc as pb_grpc

TOKEN = "s3cret-token"


@pytest.fixture
def token_gateway(tmp_path: Path):
    running, process = start_detached(tmp_path / "state", "127.0.0.1", 0, env={"DCF_TOKEN": TOKEN})
    handle = GatewayHandle(running, process)
    handle.client = Client(running.address, token=TOKEN)
    try:
        handle.client.deploy(FUNCTIONS / "echo")
        yield handle
    finally:
        handle.stop()


def test_policy_and_helpers() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("gpu-box.example")
    assert bearer_token((("authorization", "Bearer abc"),)) == "abc"
    assert bearer_token((("authorization", "bearer abc"),)) == "abc"
    assert bearer_token((("authorization", "Basic abc"),)) is None and bearer_token(None) is None
    local, remote = TokenPolicy("t", loopback=True), TokenPolicy("t", loopback=False)
    assert local.needs_token("/pb.Gateway/Deploy") and local.needs_token("/pb.Gateway/ReplicaUpdate")
    assert not local.needs_token("/pb.Gateway/Invoke") and not local.needs_token("/pb.Gateway/Invokes")
    assert remote.needs_token("/pb.Gateway/Invoke") and remote.needs_token("/pb.Gateway/List")
    assert not remote.needs_token("/pb.Gateway/HealthCheck")
    assert remote.allows("/pb.Gateway/Invoke", (("authorization", "Bearer t"),))
    assert not remote.allows("/pb.Gateway/Invoke", (("authorization", "Bearer T"),))
    with pytest.raises(ValueError):
        TokenPolicy("", loopback=True)


def test_management_needs_the_token_and_dcf_clients_still_invoke(token_gateway: GatewayHandle) -> None:
    anonymous = Client(token_gateway.address, token="")
    with pytest.raises(Unauthenticated, match="Deploy needs the gateway's token"):
        anonymous.deploy(FUNCTIONS / "hello-dcf")
    for attempt in (lambda c: c.delete("echo"), lambda c: c.scale("echo", 2)):
        with pytest.raises(Unauthenticated):
            attempt(anonymous)
    with pytest.raises(Unauthenticated):
        Client(token_gateway.address, token="wrong").delete("echo")
    # A plaintext client compiled from DCF's gateway.proto, no metadata at all, on loopback:
    with grpc.insecure_channel(token_gateway.address) as channel:
        stub = pb_grpc.GatewayStub(channel)
        assert stub.Invoke(pb.InvokeServiceRequest(Service="echo", Input=b"hi")).Msg == "hi"
        frames = [pb.InvokeServiceRequest(Service="echo", Input=b"%d" % i) for i in range(3)]
        assert [m.Output for m in stub.Invokes(iter(frames))] == [b"0", b"1", b"2"]
        assert [f.Name for f in stub.List(pb.Empty()).Functions] == ["echo"]
        with pytest.raises(grpc.RpcError) as caught:
            stub.Delete(pb.DeleteFunctionRequest(FunctionName="echo"))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert token_gateway.client.scale("echo", 1).startswith("Scaled")
    assert token_gateway.client.call("echo", b"still here") == b"still here"


def test_refuses_a_non_loopback_address_without_a_token(tmp_path: Path) -> None:
    with pytest.raises(GatewayStartError, match=r"refusing to listen on 0\.0\.0\.0 without a token"):
        start_detached(tmp_path / "state", "0.0.0.0", 0, env={"DCF_TOKEN": ""})


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files (made here: nothing downloads)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dcf test gateway")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_tls_gateway_serves_tls_clients_only(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    cert, key = self_signed(tmp_path)
    handle = start_gateway(tmp_path / "state", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        secure = Client(handle.address, tls_ca=cert)
        assert "Deployed" in secure.deploy(FUNCTIONS / "echo")
        assert secure.call("echo", b"over tls") == b"over tls"
        with pytest.raises(GatewayUnavailable):
            Client(handle.address).call("echo", b"plaintext", timeout=5)
        result = run_cli("--tls-ca", str(cert), "-g", handle.address, "function", "call", "echo", input=b"cli tls")
        assert result.returncode == 0 and result.stdout == b"cli tls", result.stderr
    finally:
        Client(handle.address, tls_ca=cert).close()
        from dcf_jupyter.gateway import stop_gateway

        stop_gateway(handle.state_dir)


def test_tls_needs_both_files(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    with pytest.raises(GatewayStartError, match="TLS needs both --tls-cert and --tls-key"):
        start_detached(tmp_path / "state", "127.0.0.1", 0, extra=["--tls-cert", str(cert)])
    with pytest.raises(GatewayStartError, match="holds no PEM private key"):
        start_detached(tmp_path / "state2", "127.0.0.1", 0, extra=["--tls-cert", str(cert), "--tls-key", str(cert)])


def test_embedded_gateway_keeps_a_token_in_the_kernel(tmp_path: Path) -> None:
    from dcf_jupyter.notebook.session import Session

    session = Session(tmp_path / "workspace", announce=lambda _: None)
    try:
        client = session.client()
        assert session.embedded and client.address.startswith("127.0.0.1:")
        proxy = session.define("guarded", "class Handler:\n    def __call__(self, req):\n        return 'mine'\n")
        assert proxy() == "mine"
        outsider = Client(client.address, token="")
        assert outsider.call("guarded") == "mine"  # loopback invocation stays open, as for DCF's clients
        with pytest.raises(Unauthenticated):
            outsider.delete("guarded")
        with pytest.raises(Unauthenticated):
            outsider.deploy(FUNCTIONS / "echo")
    finally:
        session.close()

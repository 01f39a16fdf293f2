"""Tokens, TLS and bind rules of the gateway, with real gateway processes."""

from __future__ import annotations

import datetime
import io
import ipaddress
import os
import re
import signal
import tarfile
from pathlib import Path

import grpc
import pytest
from support import FUNCTIONS, GatewayHandle, eventually, owner_channel, run_cli, start_gateway

from dcf_jupyter.client import Client
from dcf_jupyter.errors import DeployError, InvalidArgument, Unauthenticated
from dcf_jupyter.gateway.auth import TokenPolicy, bearer_token, is_loopback
from dcf_jupyter.host.credentials import ENV_CONFIG_DIR, read_owner_token
from dcf_jupyter.launch import GatewayStartError, start_detached
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
    default, opened = TokenPolicy("t"), TokenPolicy("t", open_loopback=True)
    remote = TokenPolicy("t", open_loopback=True, loopback=False)  # the flag opens nothing off loopback
    for rpc in ("Deploy", "ReplicaUpdate", "GetLog", "CreateSecret"):
        assert default.needs_token(f"/pb.Gateway/{rpc}") and opened.needs_token(f"/pb.Gateway/{rpc}")
    for rpc in ("Invoke", "Invokes", "InvokeBytes", "InvokeStream", "Map", "List", "GetMeta", "Info"):
        assert default.needs_token(f"/pb.Gateway/{rpc}") and remote.needs_token(f"/pb.Gateway/{rpc}")
        assert not opened.needs_token(f"/pb.Gateway/{rpc}")
    # Spawned calls keep data on the owner's disk and POST it where a callback says: never opened to strangers.
    for rpc in ("Spawn", "GetCall", "CallResults", "CancelCall"):
        assert opened.needs_token(f"/pb.Gateway/{rpc}") and "--open-loopback" not in opened.refusal(
            f"/pb.Gateway/{rpc}", ())
    for policy in (default, opened, remote):
        assert not policy.needs_token("/pb.Gateway/HealthCheck")
    # A tokenless client refused by a default gateway is told how its owner opens it; one refused anyway is not.
    assert "--open-loopback" in default.refusal("/pb.Gateway/Invoke", ())
    assert "--open-loopback" not in default.refusal("/pb.Gateway/Deploy", ())
    assert "--open-loopback" not in remote.refusal("/pb.Gateway/Invoke", ())
    assert remote.allows("/pb.Gateway/Invoke", (("authorization", "Bearer t"),))
    assert not remote.allows("/pb.Gateway/Invoke", (("authorization", "Bearer T"),))
    with pytest.raises(ValueError):
        TokenPolicy("")


def test_every_rpc_but_health_needs_the_token_by_default(token_gateway: GatewayHandle) -> None:
    anonymous = Client(token_gateway.address, token="")
    with pytest.raises(Unauthenticated, match="Deploy needs the gateway's token"):
        anonymous.deploy(FUNCTIONS / "hello-dcf")
    for attempt in (lambda c: c.delete("echo"), lambda c: c.scale("echo", 2)):
        with pytest.raises(Unauthenticated):
            attempt(anonymous)
    with pytest.raises(Unauthenticated):
        Client(token_gateway.address, token="wrong").delete("echo")
    # A plaintext client compiled from DCF's gateway.proto, no metadata at all, on loopback: health only (the
    # same client on an --open-loopback gateway: test_protocol.py).
    with grpc.insecure_channel(token_gateway.address) as channel:
        stub = pb_grpc.GatewayStub(channel)
        frames = [pb.InvokeServiceRequest(Service="echo", Input=b"%d" % i) for i in range(3)]
        for attempt in (lambda: stub.Invoke(pb.InvokeServiceRequest(Service="echo", Input=b"hi")),
                        lambda: list(stub.Invokes(iter(frames))), lambda: stub.List(pb.Empty()),
                        lambda: stub.Delete(pb.DeleteFunctionRequest(FunctionName="echo"))):
            with pytest.raises(grpc.RpcError) as caught:
                attempt()
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert stub.HealthCheck(pb.Empty()).Msg == "OK"
    assert token_gateway.client.scale("echo", 1).replicas == 1
    assert token_gateway.client.call("echo", b"still here") == b"still here"


def test_refuses_a_non_loopback_address_without_a_token_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(GatewayStartError, match=r"refusing to listen on 0\.0\.0\.0 without a token"):
        start_detached(tmp_path / "state", "0.0.0.0", 0, env={"DCF_TOKEN": ""})
    refused = run_cli("gateway", "start", "--detach", "--host", "0.0.0.0", "--state-dir", str(tmp_path / "cli"))
    assert refused.returncode == 1 and b"refusing to listen on 0.0.0.0 without a token" in refused.stderr
    assert not (tmp_path / "state").exists() and not (tmp_path / "cli").exists(), "a refused start leaves nothing"


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
        assert "Deployed" in secure.deploy(FUNCTIONS / "echo").message
        assert secure.call("echo", b"over tls") == b"over tls"
        # Its TCP port speaks TLS only; its owner's own tools, over its Unix socket, need no certificate.
        with grpc.insecure_channel(handle.address) as channel, pytest.raises(grpc.RpcError) as plaintext:
            pb_grpc.GatewayStub(channel).HealthCheck(pb.Empty(), timeout=5)
        assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
        own = Client(handle.address)
        assert own.via_own_socket and own.call("echo", b"own socket") == b"own socket"
        result = run_cli("--tls-ca", str(cert), "-g", handle.address, "function", "call", "echo", input=b"cli tls")
        assert result.returncode == 0 and result.stdout == b"cli tls", result.stderr
        # Its HTTP face speaks HTTPS with the same certificate, and nothing in plaintext.
        import http.client
        import ssl

        host, port = handle.running.http_address.rsplit(":", 1)
        https = http.client.HTTPSConnection(host, int(port), timeout=30,
                                            context=ssl.create_default_context(cafile=str(cert)))
        https.request("POST", "/function/echo", body=b"over https",
                      headers={"Authorization": f"Bearer {read_owner_token()}"})
        assert https.getresponse().read() == b"over https"
        https.close()
        plain = http.client.HTTPConnection(host, int(port), timeout=10)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            plain.request("POST", "/function/echo", body=b"plaintext")
            plain.getresponse().read()
        plain.close()
    finally:
        Client(handle.address, tls_ca=cert).close()
        from dcf_jupyter.launch import stop_gateway

        stop_gateway(handle.state_dir)


def test_tls_needs_both_files(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    with pytest.raises(GatewayStartError, match="TLS needs both --tls-cert and --tls-key"):
        start_detached(tmp_path / "state", "127.0.0.1", 0, extra=["--tls-cert", str(cert)])
    with pytest.raises(GatewayStartError, match="holds no PEM private key"):
        start_detached(tmp_path / "state2", "127.0.0.1", 0, extra=["--tls-cert", str(cert), "--tls-key", str(cert)])


def test_embedded_gateway_keeps_a_token_in_the_kernel(tmp_path: Path) -> None:
    from dcf_jupyter.notebook._session import Session

    session = Session(tmp_path / "workspace", announce=lambda _: None)
    try:
        client = session.client()
        assert session.embedded and client.address.startswith("127.0.0.1:")
        proxy = session.define("guarded", "class Handler:\n    def __call__(self, req):\n        return 'mine'\n")
        assert proxy() == "mine"
        assert client.via_own_socket  # the kernel reaches its gateway over the gateway's Unix socket
        outsider = Client(client.address, token="")
        with pytest.raises(Unauthenticated, match="needs the gateway's token"):
            outsider.call("guarded")  # the kernel's gateway answers only its owner
        with pytest.raises(Unauthenticated):
            outsider.delete("guarded")
        with pytest.raises(Unauthenticated):
            outsider.deploy(FUNCTIONS / "echo")
    finally:
        session.close()


# --- hostile deploys: each one sentence, the gateway still serving, nothing left on disk ------------------------

def packed(files: dict[str, bytes]) -> bytes:
    """A function source as a deploy carries it, with exactly these files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


CONFIG = b"functions:\n  hostile:\n    runtime: python\n    handler: {dir: ./src, file: handler.py, name: Handler}\n"
HANDLER = b"class Handler:\n    def __call__(self, req):\n        return 'ok'\n"


def raw_deploy(handle: GatewayHandle, source: bytes) -> grpc.RpcError:
    """Deploy `source` as 'hostile' with the owner's token but none of our client's checks; the refusal."""
    with owner_channel(handle.address) as channel, pytest.raises(grpc.RpcError) as refused:
        pb_grpc.GatewayStub(channel).Deploy(pb.CreateFunctionRequest(Service="hostile", Source=source), timeout=120)
    return refused.value


def left_behind(handle: GatewayHandle, name: str = "hostile") -> list[str]:
    return [str(path) for path in (handle.state_dir / "functions" / name, handle.state_dir / "logs" / f"{name}.log")
            if path.exists()]


@pytest.mark.parametrize("line, option", [("-e /", "-e"), ("-r /etc/shadow", "-r"), ("-c constraints.txt", "-c"),
                                          ("--editable=./pkg", "--editable"), ("--user", "--user")])
def test_requirement_lines_pip_would_take_as_options_are_refused(fresh_gateway: GatewayHandle, make_function,
                                                                 line: str, option: str) -> None:
    folder = make_function("hostile", HANDLER.decode(), requirements=["pyyaml", line])
    with pytest.raises(InvalidArgument) as refused:
        fresh_gateway.client.deploy(folder)
    assert re.match(rf"requirements\.txt: line \d \({re.escape(repr(line))}\): the pip option {option} is not taken "
                    r"in a function's requirements \(only where packages come from: ", str(refused.value))
    assert left_behind(fresh_gateway) == [] and fresh_gateway.client.list() == []


def test_index_options_are_honoured_not_dropped(fresh_gateway: GatewayHandle, make_function) -> None:
    # pyyaml is installed here, so pip never runs: the index lines are kept for when it must.
    folder = make_function("indexed", HANDLER.decode(), requirements=[
        "--index-url https://pypi.example.invalid/simple", "--extra-index-url=https://mirror.example.invalid",
        "--trusted-host mirror.example.invalid", "-f ./wheels", "pyyaml"])
    assert "Deployed" in fresh_gateway.client.deploy(folder).message
    assert fresh_gateway.client.call("indexed") == "ok"


def test_a_deep_yaml_a_bomb_and_a_crashing_init_leave_nothing_behind(fresh_gateway: GatewayHandle,
                                                                     make_function) -> None:
    deep = raw_deploy(fresh_gateway, packed({"config.yaml": CONFIG + b"    labels: " + b"[" * 50_000,
                                             "src/handler.py": HANDLER}))
    assert deep.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert deep.details() == "config.yaml: nested too deeply to be a config file"
    assert left_behind(fresh_gateway) == []
    # 300 MB of zeros pack to 0.3 MB; refused at the entry's header, before anything is written.
    bomb = io.BytesIO()
    with tarfile.open(fileobj=bomb, mode="w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("weights.bin")
        info.size = 300 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    refused = raw_deploy(fresh_gateway, bomb.getvalue())
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.details() == "the function source unpacks to more than 256 MiB, the gateway's limit (4 times its " \
                                "--max-message-size)"
    assert left_behind(fresh_gateway) == []
    folder = make_function("crashes", "class Handler:\n    def __init__(self):\n        raise RuntimeError('no')\n")
    with pytest.raises(DeployError, match="crashes did not start"):
        fresh_gateway.client.deploy(folder)
    assert left_behind(fresh_gateway, "crashes") == []
    log = (fresh_gateway.state_dir / "gateway.log").read_text()
    assert "RecursionError" not in log and "Traceback" not in log
    assert fresh_gateway.client.health() and fresh_gateway.client.list() == []


def test_a_failed_update_keeps_the_serving_revision_and_its_log(fresh_gateway: GatewayHandle, make_function) -> None:
    folder = make_function("kept", HANDLER.decode())
    fresh_gateway.client.deploy(folder)
    (folder / "src" / "handler.py").write_text("class Handler:\n    def __init__(self):\n        raise OSError('x')\n")
    with pytest.raises(DeployError):
        fresh_gateway.client.deploy(folder)
    assert fresh_gateway.client.call("kept") == "ok"
    assert sorted(p.name for p in (fresh_gateway.state_dir / "functions" / "kept").iterdir()) == ["rev-1"]
    assert "OSError: x" in fresh_gateway.client.logs("kept")


def test_the_cli_names_the_message_limit_and_how_to_raise_it(gateway: GatewayHandle) -> None:
    result = run_cli("--max-message-size", str(1 << 20), "-g", gateway.address, "function", "call", "echo",
                     input=bytes(2 << 20))
    assert result.returncode == 1
    assert result.stderr.decode().startswith("Error: the request is 2 MiB, more than this client's limit of 1 MiB: "
                                             "raise it with $DCF_MAX_MESSAGE_SIZE")


def test_a_killed_embedded_gateway_is_reaped_and_its_files_removed(tmp_path: Path) -> None:
    from dcf_jupyter.host.pids import pid_alive
    from dcf_jupyter.notebook._session import Session

    session = Session(tmp_path / "workspace", announce=lambda _: None)
    try:
        session.client().list()
        embedded = session._embedded
        assert embedded is not None and embedded.running is not None
        state, pid = embedded.state_dir, embedded.running.pid
        sockets = Path((state / "sockets.path").read_text().strip())
        os.kill(pid, signal.SIGKILL)
        assert embedded.exited.wait(10), "the kernel reaps its gateway"
        eventually(lambda: not (state.exists() or sockets.exists()), 10, "its state and socket dirs removed")
        assert not pid_alive(pid)
        said: list[str] = []
        session.announce = said.append
        assert session.client().list() == [] and session._embedded is not embedded  # a new one, said so
        assert said[0].startswith("This kernel's embedded DCF gateway had stopped; starting a new one")
    finally:
        session.close()


def test_gateway_yaml_sets_flag_defaults_and_says_what_is_wrong(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    monkeypatch.setenv(ENV_CONFIG_DIR, str(config))
    config.mkdir()
    (config / "gateway.yaml").write_text("private: true\nstream-window: 8\nfavourite_colour: blue\n")
    handle = start_gateway(tmp_path / "state")
    try:
        handle.client.deploy(FUNCTIONS / "echo")
        assert handle.client.call("echo", b"mine") == b"mine"
        with pytest.raises(Unauthenticated, match="InvokeBytes needs the gateway's token"):
            Client(handle.address, token="").call("echo", b"anyone")
        log = (handle.state_dir / "gateway.log").read_text()
        assert "unknown key 'favourite_colour' ignored" in log
    finally:
        handle.stop()
    (config / "gateway.yaml").write_text("private: 'yes'\n")
    refused = run_cli("gateway", "start", "--state-dir", str(tmp_path / "state2"))
    assert refused.returncode == 1
    assert f"{config / 'gateway.yaml'}: private must be true or false, got 'yes'" in refused.stderr.decode()

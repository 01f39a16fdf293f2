"""Named secrets on a real gateway (local backend): created from the CLI's three sources, read by a replica as
owner-only files and, where asked, variables; nowhere else (state dir, logs, List, GetMeta, command lines);
rotation restarts the functions that use them; a missing secret is one sentence; only the owner may touch them."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support import GatewayHandle, owner_channel, owner_metadata, run_cli, start_gateway, with_keys

from dcf_jupyter.definition.scaffold import init_function
from dcf_jupyter.definition.source import pack_folder
from dcf_jupyter.errors import DeployError, InvalidArgument
from dcf_jupyter.protocol import gateway_pb2 as pb
from dcf_jupyter.protocol import gateway_pb2_grpc as pb_grpc

VALUE = "sk-test-8c1e7d52f0a94b36"  # a value to look for everywhere it must not be
READS_SECRETS = """
import os
import stat
from pathlib import Path


class Handler:
    def __call__(self, req):
        folder = Path(os.environ["DCF_SECRETS_DIR"])
        seen = {}
        for secret in sorted(folder.iterdir()):
            for key in sorted(secret.iterdir()):
                seen[f"{secret.name}/{key.name}"] = [key.read_text(), oct(stat.S_IMODE(key.stat().st_mode))]
        return {"files": seen, "env": os.environ.get("TOKEN"), "folder": str(folder),
                "folder_mode": oct(stat.S_IMODE(folder.parent.stat().st_mode))}
"""


@pytest.fixture(scope="module")
def secret_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    handle = start_gateway(tmp_path_factory.mktemp("secrets") / "state", "--no-docker")
    try:
        yield handle
    finally:
        handle.stop()


def dcf(handle: GatewayHandle, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run_cli("-g", handle.address, *args)


def test_a_secret_reaches_the_handler_as_files_and_variables_and_nowhere_else(
        secret_gateway: GatewayHandle, tmp_path: Path) -> None:
    env_file = tmp_path / "api.env"
    env_file.write_text(f"# the service's key\nexport TOKEN='{VALUE}'\n\nREGION=eu\n")
    (tmp_path / "cert.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    made = dcf(secret_gateway, "secret", "create", "api", "--from-env-file", str(env_file),
               "--from-file", str(tmp_path / "cert.pem"), "--from-literal", "USER=robot")
    assert made.returncode == 0, made.stderr
    assert made.stdout.decode().strip() == "Created: secret api (4 keys)"
    folder = with_keys(init_function("uses-api", parent=tmp_path, handler_source=READS_SECRETS),
                       secrets=["api"], secrets_as_env=True)
    secret_gateway.client.deploy(folder)
    seen = secret_gateway.client.call("uses-api")
    assert seen["files"] == {"api/REGION": ["eu", "0o600"], "api/TOKEN": [VALUE, "0o600"],
                             "api/USER": ["robot", "0o600"], "api/cert.pem": ["-----BEGIN CERTIFICATE-----\n", "0o600"]}
    assert seen["env"] == VALUE and seen["folder_mode"] == "0o700"

    listed = dcf(secret_gateway, "secret", "list").stdout.decode()
    assert "REGION, TOKEN, USER, cert.pem" in listed and "uses-api" in listed and VALUE not in listed
    shown = [json.dumps(dict(f.annotations)) + repr(f) for f in secret_gateway.client.list()]
    shown.append(repr(secret_gateway.client.get("uses-api")))
    shown.append(secret_gateway.client.logs("uses-api", 1000))
    assert not any(VALUE in text for text in shown)
    commands = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert VALUE not in commands
    store = secret_gateway.state_dir / "secrets"
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert stat.S_IMODE((store / "api.json").stat().st_mode) == 0o600
    for path in secret_gateway.state_dir.rglob("*"):  # the store keeps it base64: not even there in plain text
        if path.is_file():
            assert VALUE.encode() not in path.read_bytes(), path

    secret_gateway.client.delete("uses-api")
    assert not Path(seen["folder"]).parent.exists(), "a stopped replica's secret files are removed"


def test_rotation_restarts_the_functions_that_use_it(secret_gateway: GatewayHandle, tmp_path: Path) -> None:
    client = secret_gateway.client
    client.create_secret("rotating", {"TOKEN": "first"})
    folder = with_keys(init_function("rotates", parent=tmp_path, handler_source=READS_SECRETS),
                       secrets=["rotating"], secrets_as_env=["rotating"])
    client.deploy(folder)
    assert client.call("rotates")["env"] == "first"
    said = client.create_secret("rotating", {"TOKEN": "second"})
    assert said == "Updated: secret rotating (1 key); restarted rotates with the new values"
    seen = client.call("rotates")
    assert seen["env"] == "second" and seen["files"] == {"rotating/TOKEN": ["second", "0o600"]}
    assert client.get("rotates").status == "Ready"
    with pytest.raises(InvalidArgument, match="secret 'rotating' is used by rotates"):
        client.delete_secret("rotating")
    client.delete("rotates")
    assert client.delete_secret("rotating") == "Deleted: secret rotating"
    assert "rotating" not in {s.name for s in client.list_secrets()}


def test_a_missing_secret_fails_the_deploy_in_one_sentence(secret_gateway: GatewayHandle, tmp_path: Path) -> None:
    folder = with_keys(init_function("lacks-secret", parent=tmp_path, handler_source=READS_SECRETS),
                       secrets=["nowhere"])
    with pytest.raises(DeployError) as failure:
        secret_gateway.client.deploy(folder)
    said = str(failure.value)
    assert "needs the secret 'nowhere', which this gateway does not hold" in said, said
    assert "dcf secret create nowhere" in said and "Traceback" not in said
    assert "lacks-secret" not in {f.name for f in secret_gateway.client.list()}


def test_dcf_clients_name_secrets_in_the_deploy_request(secret_gateway: GatewayHandle, tmp_path: Path) -> None:
    """DCF's CreateFunctionRequest.Secrets (field 7) works as config.yaml's `secrets:`."""
    secret_gateway.client.create_secret("dcf-style", {"TOKEN": "from-request"})
    folder = init_function("named-in-request", parent=tmp_path, handler_source=READS_SECRETS)
    request = pb.CreateFunctionRequest(Service="named-in-request", Source=pack_folder(folder, limit=1 << 24),
                                       Secrets=["dcf-style"])
    with owner_channel(secret_gateway.address) as channel:
        pb_grpc.GatewayStub(channel).Deploy(request, metadata=owner_metadata(), timeout=60)
    assert secret_gateway.client.call("named-in-request")["files"] == {"dcf-style/TOKEN": ["from-request", "0o600"]}
    secret_gateway.client.delete("named-in-request")


def test_bad_input_is_one_sentence(secret_gateway: GatewayHandle, tmp_path: Path) -> None:
    for args, said in [
        (["create", "Bad_Name", "--from-literal", "A=1"], "invalid secret name 'Bad_Name'"),
        (["create", "ok", "--from-literal", "../escape=1"], "invalid key '../escape'"),
        (["create", "ok", "--from-literal", VALUE], "expected KEY=VALUE"),
        (["create", "ok"], "give the secret's keys"),
        (["create", "ok", "--from-file", str(tmp_path)], "a folder; give one file per key"),
        (["delete", "never-made"], "there is no secret 'never-made'"),
    ]:
        result = dcf(secret_gateway, "secret", *args)
        text = result.stderr.decode() + result.stdout.decode()
        assert result.returncode != 0 and said in text and "Traceback" not in text, (args, text)
        assert VALUE not in text  # a value typed in the wrong place is never echoed


def test_secrets_need_the_token_even_on_loopback(secret_gateway: GatewayHandle) -> None:
    with grpc.insecure_channel(secret_gateway.address) as channel:
        stub = pb_grpc.GatewayStub(channel)
        for rpc, request in [("CreateSecret", pb.SecretRequest(Name="x", Values={"A": b"1"})),
                             ("ListSecrets", pb.Empty()), ("DeleteSecret", pb.SecretRequest(Name="x"))]:
            with pytest.raises(grpc.RpcError) as refused:
                getattr(stub, rpc)(request, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, rpc

"""dcf-jupyter under a real JupyterHub, the usual face of a shared GPU server: two system users, each with their own
single-user server (the LocalProcessSpawner runs it as them) and, from a `%%dcf_function` cell, their own
kernel's gateway; both declared GPUs 0 and 1 (the spawner's environment), booked in one machine-wide folder, so
each gets their own device and the refusal names the other user; neither user's kernel, CLI or panel reaches the
other's gateway, and the hub lets each at their own panel only. Root only, with configurable-http-proxy (npm);
elsewhere it skips, saying why."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hubdriver import Hub, HubUser, running_hub, why_not

pytestmark = pytest.mark.slow  # runs a JupyterHub with two users

SEES_ITS_GPU = """%%dcf_function {name} --gpu 1
import os


class Handler:
    def __call__(self, req):
        return os.environ.get("CUDA_VISIBLE_DEVICES", "")
"""


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    reason = why_not()
    if reason:
        print(f"\nJupyterHub test skipped: {reason}")
        pytest.skip(f"needs a JupyterHub here: {reason}")
    leases = Path(tempfile.mkdtemp(prefix="dcf-hub-leases-"))
    leases.chmod(0o1777)  # the machine's lease folder, as root makes it
    try:
        with running_hub(("alice", "bob"), {"DCF_GPUS": "0,1", "DCF_GPU_LEASES": str(leases)}) as running:
            for user in running.users.values():
                running.start_server(user)
            yield running
    finally:
        subprocess.run(["rm", "-rf", str(leases)], check=False)


def cell(hub: Hub, user: HubUser, code: str) -> str:
    return hub.run(user, code)


def test_each_user_deploys_on_their_own_gateway_with_their_own_gpu(hub: Hub) -> None:
    alice, bob = hub.users["alice"], hub.users["bob"]
    for user in (alice, bob):
        said = cell(hub, user, "%load_ext dcf_jupyter")
        assert "Error" not in said, said
    out = cell(hub, alice, SEES_ITS_GPU.format(name="first"))
    assert "Deployed first" in out, out
    assert cell(hub, alice, "print(first(b''))").strip() == "0"
    out = cell(hub, bob, SEES_ITS_GPU.format(name="second"))
    assert "Deployed second" in out, out
    assert cell(hub, bob, "print(second(b''))").strip() == "1"  # not alice's GPU 0
    refused = cell(hub, alice, SEES_ITS_GPU.format(name="third"))
    assert f"GPU 1 held by {bob.name}'s function second" in refused, refused
    status = cell(hub, alice, "%dcf status")
    assert "another user" in status and "second" not in status, status


def test_neither_users_kernel_cli_or_panel_reaches_the_others_gateway(hub: Hub) -> None:
    alice, bob = hub.users["alice"], hub.users["bob"]
    cell(hub, bob, "%load_ext dcf_jupyter")
    cell(hub, bob, SEES_ITS_GPU.format(name="bobs").replace(" --gpu 1", ""))
    bobs = cell(hub, bob, "import dcf_jupyter\nprint(dcf_jupyter.get_client().address)").strip().splitlines()[-1]
    assert bobs.startswith("127.0.0.1:"), bobs
    cell(hub, alice, "%load_ext dcf_jupyter")
    tried = cell(hub, alice, f"from dcf_jupyter.client import Client\nClient({bobs!r}).list()")
    assert "ForeignGateway" in tried and "belongs to another user of this machine" in tried, tried
    cli = subprocess.run(["runuser", "-u", alice.name, "--", "env", "-i", f"HOME={alice.home}", "PATH=/usr/bin:/bin",
                          str(hub.venv / "bin" / "dcf"), "-g", bobs, "function", "list"],
                         capture_output=True, text=True, timeout=60, cwd=alice.home)
    assert cli.returncode == 1 and "belongs to another user" in cli.stderr, cli.stderr
    status, gateways = hub.request("GET", f"/user/{alice.name}/dcf/gateways", alice)
    assert status == 200, gateways
    listed = {f["name"] for g in gateways for f in g.get("functions", [])}
    assert "bobs" not in listed and all(g["address"] != bobs for g in gateways), gateways
    status, _ = hub.request("GET", f"/user/{bob.name}/dcf/gateways", alice)
    assert status in (302, 403, 404), status  # the hub keeps alice out of bob's server
    status, said = hub.request("POST", f"/user/{bob.name}/dcf/gateways/shared/deploy", alice, {"path": "x"})
    assert status in (302, 403, 404), (status, said)
    status, gateways = hub.request("GET", f"/user/{bob.name}/dcf/gateways", bob)
    assert status == 200 and "bobs" in {f["name"] for g in gateways for f in g.get("functions", [])}, gateways

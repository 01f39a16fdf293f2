"""The JupyterLab panel's server extension: its REST API in a real JupyterLab (enabled by installing the package,
nothing passed on its command line) against real gateways; embedded gateways a real kernel announces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from support import PANEL_TOKEN, ROOT, GatewayHandle, eventually

pytest.importorskip("jupyterlab", reason="the panel runs in JupyterLab: pip install -e '.[notebook]'")

from labdriver import Lab

from dcf_jupyter.gateway.announce import announce
from dcf_jupyter.host.ports import free_port


def api(lab: Lab, method: str, path: str, body: dict[str, Any] | None = None, *,
        auth: bool = True) -> tuple[int, Any]:
    """(status, JSON) of a request to the server's dcf/ API, authenticated as the browser would be."""
    request = urllib.request.Request(f"http://127.0.0.1:{lab.port}/dcf/{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
    if auth:
        request.add_header("Authorization", f"token {lab.token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text.decode(errors="replace")


@pytest.fixture(scope="module")
def lab(panel_lab: Lab) -> Lab:
    return panel_lab


def runtime_dir(lab: Lab) -> Path:
    return lab.root / ".jupyter-state" / "jupyter_runtime_dir"


def shared(lab: Lab) -> dict[str, Any]:
    status, gateways = api(lab, "GET", "gateways")
    assert status == 200, gateways
    assert gateways[0]["id"] == "shared"
    return gateways[0]


def test_the_api_needs_jupyters_auth(lab: Lab) -> None:
    status, _ = api(lab, "GET", "gateways", auth=False)
    assert status == 403
    status, _ = api(lab, "DELETE", "gateways/shared/functions/echo", auth=False)
    assert status == 403
    enabled = subprocess.run([sys.executable, "-m", "jupyter", "server", "extension", "list"],
                             capture_output=True, text=True, timeout=60)
    assert "dcf_jupyter.lab" in enabled.stdout + enabled.stderr, "installing the package enables the extension"
    listed = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"],
                            capture_output=True, text=True, timeout=60)
    line = next((ln for ln in (listed.stdout + listed.stderr).splitlines() if "dcf-jupyter" in ln), "")
    assert "enabled" in line and "OK" in line, "the prebuilt panel is installed with the package"


def test_deploy_list_call_logs_scale_delete_through_the_panel_api(lab: Lab, panel_gateway: GatewayHandle) -> None:
    status, deployed = api(lab, "POST", "gateways/shared/deploy", {"path": "echo/config.yaml"})
    assert status == 200 and deployed["message"].startswith("Deployed: echo"), deployed
    gateway = shared(lab)
    assert gateway["healthy"] and gateway["address"] == panel_gateway.address and "token" not in gateway
    assert "local" in gateway["backends"]
    row = next(f for f in gateway["functions"] if f["name"] == "echo")
    assert row["ready"] == "1/1" and row["backend"] == "local"
    status, reply = api(lab, "POST", "gateways/shared/functions/echo/call", {"input": "hello panel"})
    assert status == 200 and reply["text"] == "hello panel", reply
    status, reply = api(lab, "POST", "gateways/shared/functions/echo/call", {"input_base64": "AAEC"})
    assert status == 200 and reply["base64"] == "AAEC" and reply["size"] == 3
    status, scaled = api(lab, "POST", "gateways/shared/functions/echo/scale", {"replicas": 2})
    assert status == 200, scaled
    eventually(lambda: next(f for f in shared(lab)["functions"] if f["name"] == "echo")["ready"] == "2/2", 30,
               "scaled to 2, shown as 2/2", every=0.3)
    status, logs = api(lab, "GET", "gateways/shared/functions/echo/logs?lines=50")
    assert status == 200 and isinstance(logs["text"], str)
    status, deleted = api(lab, "DELETE", "gateways/shared/functions/echo")
    assert status == 200 and deleted["message"] == "Deleted: echo"
    assert [f["name"] for f in shared(lab)["functions"]] == []


@pytest.mark.parametrize("method, path, body, code, sentence", [
    ("GET", "gateways/shared/functions/nothing/logs", None, 404, "'nothing' is not deployed"),
    ("POST", "gateways/shared/functions/nothing/call", {"input": "x"}, 404, "'nothing'"),
    ("POST", "gateways/shared/functions/echo/scale", {"replicas": -1}, 400, "replicas must be a whole number"),
    ("POST", "gateways/shared/functions/echo/scale", {"replicas": "two"}, 400, "replicas must be a whole number"),
    ("POST", "gateways/shared/deploy", {"path": "../../etc"}, 403, "outside the folder this Jupyter server serves"),
    ("POST", "gateways/shared/deploy", {"path": "/etc/passwd"}, 404, "does not exist"),
    ("POST", "gateways/shared/deploy", {"path": ""}, 400, "say which function to deploy"),
    ("POST", "gateways/shared/deploy", {"path": "echo/src"}, 400, "config.yaml"),
    ("POST", "gateways/kernel-1/deploy", {"path": "echo"}, 404, "no gateway 'kernel-1'"),
])
def test_bad_requests_are_sentences_not_tracebacks(lab: Lab, method: str, path: str, body: dict[str, Any] | None,
                                                    code: int, sentence: str) -> None:
    status, answer = api(lab, method, path, body)
    assert status == code, answer
    assert sentence in answer["message"] and "Traceback" not in json.dumps(answer), answer


def test_unreachable_wrong_token_and_stale_gateways(lab: Lab, panel_gateway: GatewayHandle,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Announcements as kernels write them: one whose gateway does not answer, one with a wrong token, one of a
    dead process (ignored and removed)."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime_dir(lab)))
    alive = panel_gateway.process.pid  # any live pid of ours will do as "the gateway's"
    written = []
    for pid, address, token in ((alive, f"127.0.0.1:{free_port()}", PANEL_TOKEN),
                                (os.getpid(), panel_gateway.address, "wrong")):
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        written.append(announce(address, token, lab.root, {"kernel_id": f"k{pid}", "notebook": f"nb-{pid}.ipynb"}))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    monkeypatch.setattr(os, "getpid", lambda: dead.pid)
    stale = announce(panel_gateway.address, PANEL_TOKEN, lab.root, {"kernel_id": "gone", "notebook": "gone.ipynb"})
    monkeypatch.undo()
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in [*written, stale])
    status, gateways = api(lab, "GET", "gateways")
    assert status == 200
    by_id = {g["id"]: g for g in gateways}
    assert f"kernel-{dead.pid}" not in by_id and not stale.exists(), "a dead gateway's announcement is cleaned"
    down = by_id[f"kernel-{alive}"]
    assert not down["healthy"] and "no gateway answers at" in down["error"] and down["label"] == f"nb-{alive}.ipynb"
    status, refused = api(lab, "POST", f"gateways/kernel-{os.getpid()}/deploy", {"path": "echo"})
    assert status == 403 and "token" in refused["message"].lower(), refused
    for path in written:
        path.unlink()


def test_a_kernels_embedded_gateway_is_listed_under_its_notebook(lab: Lab) -> None:
    """A real kernel (as JupyterLab starts one: $JPY_SESSION_NAME, its connection file in the runtime dir)
    deploys a function on its embedded gateway; the panel lists that gateway under the notebook, with the
    function; when the kernel stops, the gateway and its announcement go."""
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime_dir(lab)), "JPY_SESSION_NAME": "work/demo.ipynb"}
    env.pop("DCF_GATEWAY", None)
    manager, client = start_new_kernel(kernel_name="python3", env=env)
    try:
        reply = client.execute_interactive(
            "import dcf_jupyter\nhi = dcf_jupyter.function('hi', 'class Handler:\\n    def __call__(self, req):\\n"
            "        return \"hi\"\\n')\nprint(hi(b''))", timeout=120)
        assert reply["content"]["status"] == "ok", reply["content"]
        status, gateways = api(lab, "GET", "gateways")
        kernels = [g for g in gateways if g["kind"] == "kernel" and g["notebook"] == "work/demo.ipynb"]
        assert len(kernels) == 1 and kernels[0]["healthy"], gateways
        assert [f["name"] for f in kernels[0]["functions"]] == ["hi"]
        assert kernels[0]["kernel_id"] and kernels[0]["label"] == "work/demo.ipynb"
        status, reply = api(lab, "POST", f"gateways/{kernels[0]['id']}/functions/hi/call", {"input": ""})
        assert status == 200 and reply["text"] == "hi"
        files = list((runtime_dir(lab) / "dcf").glob(f"gateway-{kernels[0]['pid']}.json"))
        assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=False)
    eventually(lambda: not files[0].exists(), 20, "the announcement goes with the gateway", every=0.2)
    assert all(g["notebook"] != "work/demo.ipynb" for g in api(lab, "GET", "gateways")[1])


def test_another_gateways_function_is_shown_but_not_managed() -> None:
    """A function another gateway deployed on a shared Ray cluster (listed with `dcf.deployed-by`): the panel
    gets `managed: false` and offers no scale or delete for it."""
    from dcf_jupyter.client import FunctionInfo
    from dcf_jupyter.lab.handlers import function_json
    from dcf_jupyter.protocol.names import DEPLOYED_BY

    ours = FunctionInfo("echo", "echo", 3, 2, 1, "Ready", "ray")
    theirs = FunctionInfo("shout", "", 0, 1, 1, "Ready", "ray", annotations={DEPLOYED_BY: "another gateway"})
    assert function_json(ours)["managed"] is True and function_json(ours)["ready"] == "1/2"
    assert function_json(theirs)["managed"] is False
    built = "".join(path.read_text() for path in (ROOT / "dcf_jupyter" / "labextension" / "static").glob("*.js"))
    assert "(another gateway's)" in built, "the committed panel build shows it"


def test_deploy_follows_no_link_out_of_the_served_folder(lab: Lab, tmp_path: Path) -> None:
    import shutil

    outside = tmp_path / "outside-src"
    shutil.copytree(lab.root / "echo" / "src", outside)
    cases = {"leaky": lambda folder: (folder / "src" / "secret.txt").symlink_to("/etc/hostname"),
             "linked": lambda folder: (shutil.rmtree(folder / "src"), (folder / "src").symlink_to(outside)),
             "inside": lambda folder: (shutil.rmtree(folder / "src"), (folder / "src").symlink_to("../echo/src"))}
    for name, make_link in cases.items():
        shutil.copytree(lab.root / "echo", lab.root / name)
        make_link(lab.root / name)
    try:
        for name, leaked in (("leaky", "src/secret.txt"), ("linked", "src/handler.py")):
            status, answer = api(lab, "POST", "gateways/shared/deploy", {"path": f"{name}/config.yaml"})
            assert status == 403 and answer["message"] == f"{name}/config.yaml: {leaked} leads outside the folder " \
                "this Jupyter server serves (a link); copy what it points to in instead", answer
        status, answer = api(lab, "POST", "gateways/shared/deploy", {"path": "echo\u0000/config.yaml"})
        assert status == 400 and "NUL" in answer["message"], answer
        status, answer = api(lab, "POST", "gateways/shared/deploy", {"path": "inside"})  # a link within is fine
        assert status == 200 and answer["message"].startswith("Deployed: echo"), answer
        assert api(lab, "DELETE", "gateways/shared/functions/echo")[0] == 200
    finally:
        for name in cases:
            shutil.rmtree(lab.root / name, ignore_errors=True)


def test_which_entries_the_file_browser_may_deploy(lab: Lab) -> None:
    status, listing = api(lab, "GET", "function-folders?path=")
    assert status == 200 and "echo" in listing["names"], listing
    assert api(lab, "GET", "function-folders?path=echo")[1]["names"] == ["config.yaml"]
    assert api(lab, "GET", "function-folders?path=echo/src")[1]["names"] == []
    status, refused = api(lab, "GET", "function-folders?path=../..")
    assert status == 404 and "no folder this Jupyter server serves" in refused["message"]


def test_the_panel_starts_your_gateway_when_none_answers(tmp_path: Path) -> None:
    from labdriver import jupyter_lab

    from dcf_jupyter.launch import stop_gateway

    state = tmp_path / "state"
    (tmp_path / "root").mkdir()
    with jupyter_lab(tmp_path / "root", env={"DCF_STATE_DIR": str(state), "DCF_GATEWAY": ""}) as quiet:
        shared = api(quiet, "GET", "gateways")[1][0]
        if shared["healthy"]:
            pytest.skip(f"a gateway of yours already answers at {shared['address']}: nothing for the panel to start")
        assert "no gateway answers" in shared["error"] or "another user" in shared["error"], shared
        try:
            status, started = api(quiet, "POST", "gateways/shared/start", {})
            assert status == 200 and started["message"].startswith("started your gateway on 127.0.0.1:"), started
            shared = api(quiet, "GET", "gateways")[1][0]
            assert shared["healthy"] and started["message"].split()[4] == shared["address"], (started, shared)
            assert api(quiet, "POST", "gateways/shared/start", {})[1]["message"].startswith(
                "a gateway of yours already answers at")
        finally:
            stop_gateway(state)


def test_a_kernels_gateway_is_not_started_from_the_panel(lab: Lab) -> None:
    status, refused = api(lab, "POST", "gateways/kernel-1/start", {})
    assert status == 400 and "a notebook's kernel starts its own" in refused["message"]
    status, refused = api(lab, "POST", "gateways/shared/start", {})
    assert status == 409 and "($DCF_GATEWAY): start it where it runs" in refused["message"], refused


READ_ONLY = """
from jupyter_server.auth import Authorizer


class ReadOnly(Authorizer):
    \"\"\"As a JupyterHub's scopes may say for a shared user: look, do not touch.\"\"\"

    def is_authorized(self, handler, user, action, resource):
        return action == "read"
"""


def test_the_servers_authorizer_decides_who_may_deploy_call_or_only_look(panel_gateway: GatewayHandle,
                                                                           tmp_path: Path) -> None:
    """With an Authorizer that allows reading only (a hub's read-only scope), the panel lists and reads logs but
    refuses deploys, calls, scaling, deletes and starts (403), and the gateway is left as it was."""
    from labdriver import jupyter_lab

    (tmp_path / "authz.py").write_text(READ_ONLY)
    import shutil

    shutil.copytree(ROOT / "functions" / "echo", tmp_path / "echo")
    panel_gateway.client.deploy(ROOT / "functions" / "echo")
    env = {"DCF_GATEWAY": panel_gateway.address, "DCF_TOKEN": PANEL_TOKEN, "PYTHONPATH": str(tmp_path)}
    try:
        with jupyter_lab(tmp_path, env=env, args=["--ServerApp.authorizer_class=authz.ReadOnly"]) as lab:
            status, gateways = api(lab, "GET", "gateways")
            assert status == 200 and "echo" in {f["name"] for f in gateways[0]["functions"]}, gateways
            assert api(lab, "GET", "gateways/shared/functions/echo/logs?lines=5")[0] == 200
            assert api(lab, "GET", "function-folders?path=")[0] == 200
            for method, path, body in (("POST", "gateways/shared/deploy", {"path": "echo"}),
                                       ("POST", "gateways/shared/functions/echo/call", {"input": "x"}),
                                       ("POST", "gateways/shared/functions/echo/scale", {"replicas": 2}),
                                       ("DELETE", "gateways/shared/functions/echo", None),
                                       ("POST", "gateways/shared/start", {})):
                status, said = api(lab, method, path, body)
                assert status == 403, (method, path, status, said)
        echo = panel_gateway.client.get("echo")
        assert (echo.replicas, echo.invocations) == (1, 0), echo  # nothing was changed or called
    finally:
        panel_gateway.client.delete("echo")

"""GPUs on one machine: each local replica gets its own devices, shares pack onto one, a request that does not fit
is one sentence naming who holds what, and devices come back when replicas stop. Run with a declared inventory
(`--gpus 0,1,2,3`) where the machine has no GPU: the allocation and the replicas' environment are the same code
either way; on a GPU machine the device check (benchmarks/gpu_share_check.py) proves the real thing."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import GatewayHandle, run_cli, start_gateway

from dcf_jupyter.backends.gpus.allocator import GpuAllocator, NoGpu, gpu_environment
from dcf_jupyter.backends.gpus.inventory import Gpu, Inventory, inventory, parse_gpu_list
from dcf_jupyter.definition.spec import GpuRequest
from dcf_jupyter.errors import ConfigError, DeployError

SHOWS_DEVICES = """
import os


class Handler:
    def __call__(self, req):
        keys = ("DCF_REPLICA", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "DCF_GPU_SHARE",
                "TF_FORCE_GPU_ALLOW_GROWTH", "XLA_PYTHON_CLIENT_MEM_FRACTION")
        return {key: os.environ.get(key) for key in keys}
"""


def gpu_function(make_function, name: str, gpu: str, replicas: int = 1) -> Path:
    folder = make_function(name, SHOWS_DEVICES)
    config = folder / "config.yaml"
    text = config.read_text().replace("gpu: ''", f"gpu: '{gpu}'")
    if replicas != 1:
        text = text.replace("    build_args:", f"    replicas: {replicas}\n    build_args:")
    config.write_text(text)
    return folder


def devices_of(gateway: GatewayHandle, name: str, replicas: int) -> list[dict[str, str | None]]:
    """What each replica sees, by calling until every replica answered (round-robin)."""
    seen: dict[str, dict[str, str | None]] = {}
    for _ in range(replicas * 4):
        reply = gateway.client.call(name, b"")
        seen[str(reply)] = reply
    return list(seen.values())


@pytest.fixture()
def gpu_gateway(tmp_path: Path):
    handle = start_gateway(tmp_path / "state", "--gpus", "0,1,2,3", "--no-docker")
    try:
        yield handle
    finally:
        handle.stop()


def test_replicas_get_distinct_devices_shares_pack_and_a_request_that_does_not_fit_names_the_holders(
        gpu_gateway: GatewayHandle, make_function) -> None:
    client = gpu_gateway.client
    said = client.deploy(gpu_function(make_function, "one-each", "1", replicas=2)).message
    assert said.startswith("Deployed: one-each (2 replicas on the local backend; replica 0 on GPU ")
    assert client.deploy(gpu_function(make_function, "two-each", "2")).message.endswith("replica 0 on GPUs 2,3)")
    one = devices_of(gpu_gateway, "one-each", 2)
    two = devices_of(gpu_gateway, "two-each", 1)
    held = [r["CUDA_VISIBLE_DEVICES"] for r in one] + [two[0]["CUDA_VISIBLE_DEVICES"]]
    print("one-each:", [r["CUDA_VISIBLE_DEVICES"] for r in one], "two-each:", two[0]["CUDA_VISIBLE_DEVICES"])
    devices = [d for cuda in held for d in str(cuda).split(",")]
    assert sorted(devices) == ["0", "1", "2", "3"]  # disjoint, and all four used
    assert all(r["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" and r["DCF_GPU_SHARE"] is None for r in one + two)

    # Every device is taken: one more whole GPU is refused at once, naming each device's holder.
    with pytest.raises(DeployError) as refused:
        client.deploy(gpu_function(make_function, "no-room", "1"))
    sentence = str(refused.value).splitlines()[0]
    print(sentence)
    assert "no-room replica 0 asks for 1 whole GPU, which does not fit" in sentence
    assert "one-each replica 0" in sentence and "one-each replica 1" in sentence and "two-each replica 0" in sentence
    assert "no-room" not in {f.name for f in client.list()}  # nothing half-started stays

    # Scaling down gives a device back; the listing says which replica holds what.
    client.scale("one-each", 1)
    info = client.get("one-each")
    assert [(g.replica, len(g.devices), g.share) for g in info.gpus] == [(0, 1, 1.0)]
    client.delete("two-each")

    # Three devices are free now: four half shares pack onto two of them.
    client.deploy(gpu_function(make_function, "halves", "0.5", replicas=4))
    halves = devices_of(gpu_gateway, "halves", 4)
    assert len(halves) == 4
    assert len({r["CUDA_VISIBLE_DEVICES"] for r in halves}) == 2
    assert all(r["DCF_GPU_SHARE"] == "0.5" and r["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
               and r["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.5" for r in halves)
    status = run_cli("-g", gpu_gateway.address, "gateway", "status")
    text = status.stdout.decode()
    print(text)
    assert status.returncode == 0 and "GPUs (declared):" in text and "halves replica 3 (0.5)" in text
    listing = run_cli("-g", gpu_gateway.address, "function", "list", "-v").stdout.decode()
    assert "replica 3: GPU " in listing and "(0.5)" in listing

    # A whole GPU still fits (one device is free), a second does not; a delete frees the halves' two.
    client.deploy(gpu_function(make_function, "last-whole", "1"))
    with pytest.raises(DeployError, match="asks for 1 whole GPU, which does not fit"):
        client.scale("last-whole", 2)
    assert client.get("last-whole").replicas == 1
    client.delete("halves")
    client.scale("last-whole", 3)
    assert len({str(g.devices) for g in client.get("last-whole").gpus}) == 3


def test_a_restarted_gateway_books_its_functions_again_without_double_booking(tmp_path: Path,
                                                                              make_function) -> None:
    state = tmp_path / "state"
    gateway = start_gateway(state, "--gpus", "2", "--no-docker")
    try:
        gateway.client.deploy(gpu_function(make_function, "kept", "1", replicas=2))
        before = sorted(g.devices for g in gateway.client.get("kept").gpus)
    finally:
        gateway.stop()
    gateway = start_gateway(state, "--gpus", "2", "--no-docker")
    try:
        for _ in range(100):
            info = gateway.client.get("kept")
            if info.available_replicas == 2:
                break
            time.sleep(0.1)
        assert sorted(g.devices for g in info.gpus) == before == [(0,), (1,)]
        with pytest.raises(DeployError, match="does not fit"):
            gateway.client.deploy(gpu_function(make_function, "third", "1"))
    finally:
        gateway.stop()


def test_two_gateways_of_one_user_never_hand_out_one_device_twice(tmp_path: Path, make_function) -> None:
    first = start_gateway(tmp_path / "one", "--gpus", "0,1", "--no-docker")
    second = start_gateway(tmp_path / "two", "--gpus", "0,1", "--no-docker")
    try:
        first.client.deploy(gpu_function(make_function, "mine", "1"))
        second.client.deploy(gpu_function(make_function, "yours", "1"))
        assert {first.client.get("mine").gpus[0].devices, second.client.get("yours").gpus[0].devices} == {(0,), (1,)}
        more = gpu_function(make_function, "more", "0.5")
        with pytest.raises(DeployError) as refused:
            second.client.deploy(more)
        sentence = str(refused.value)
        print(sentence)
        assert f"mine replica 0 [gateway {first.address}" in sentence  # the other gateway's, named
        text = run_cli("-g", second.address, "gateway", "status").stdout.decode()
        assert f"mine replica 0 [gateway {first.address}" in text
    finally:
        first.stop()
    try:  # the first gateway is gone: its device is free again
        second.client.deploy(more)
        assert second.client.get("more").gpus[0].devices == (0,)
    finally:
        second.stop()


def test_without_any_gpu_a_gpu_function_runs_on_the_cpu_saying_so_and_cpu_functions_are_unchanged(
        gateway: GatewayHandle, make_function) -> None:
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has a GPU: the CPU fallback is for machines without one")
    said = gateway.client.deploy(gpu_function(make_function, "wants-gpu", "1")).message
    try:
        assert said == "Deployed: wants-gpu (1 replica on the local backend; no GPU to give here, so on the CPU)"
        (reply,) = devices_of(gateway, "wants-gpu", 1)
        assert reply["CUDA_VISIBLE_DEVICES"] == ""
        assert "asks for 1 GPU, and this machine has none that the gateway can give: it runs on the CPU" in \
            gateway.client.logs("wants-gpu")
        assert gateway.client.get("wants-gpu").gpus == []
    finally:
        gateway.client.delete("wants-gpu")
    assert gateway.client.call("echo", b"cpu") == b"cpu"  # a CPU function, as before


def test_the_gpu_list_and_the_gateways_cuda_visible_devices_restrict_the_inventory() -> None:
    found = Inventory(tuple(Gpu(i, "NVIDIA H100 80GB HBM3", f"GPU-{i}aaaa") for i in range(4)), "nvml")
    assert parse_gpu_list("4") == [0, 1, 2, 3] and parse_gpu_list("2,0") == [0, 2]
    assert parse_gpu_list("none") == [] and parse_gpu_list("all") is None
    assert [d.index for d in inventory("1,3", None, found).devices] == [1, 3]
    assert [d.index for d in inventory(None, "2,GPU-0", found).devices] == [2, 0]
    assert inventory(None, "", found).devices == ()
    assert [d.index for d in inventory("2", "1,7,0", found).devices] == [1]  # CUDA stops at an unknown entry
    with pytest.raises(ConfigError, match="names GPU 5, which this machine lacks"):
        inventory("0,5", None, found)
    with pytest.raises(ConfigError, match="expected GPU indices"):
        parse_gpu_list("first")
    declared = inventory("0,1", None, Inventory((), "none"))
    assert declared.source == "declared" and [d.index for d in declared.devices] == [0, 1]


def test_kinds_and_shares_are_chosen_from_the_inventory(tmp_path: Path) -> None:
    devices = (Gpu(0, "NVIDIA A100-SXM4-40GB"), Gpu(1, "NVIDIA H100 80GB HBM3"), Gpu(2, "NVIDIA H100 80GB HBM3"))
    allocator = GpuAllocator(Inventory(devices, "nvml"), tmp_path / "leases")
    h100 = allocator.grant("big", 1, 0, GpuRequest.parse("H100:1"))
    assert h100 is not None and h100.devices == (1,)
    quarter = allocator.grant("small", 1, 0, GpuRequest.parse("0.25"))
    assert quarter is not None and quarter.devices == (0,)  # no device is shared yet: the lowest free one
    again = allocator.grant("small", 1, 1, GpuRequest.parse("0.5"))
    assert again is not None and again.devices == (0,)  # packed where a share is already
    with pytest.raises(NoGpu, match="has none of that kind"):
        allocator.grant("odd", 1, 0, GpuRequest.parse("V100:1"))
    with pytest.raises(NoGpu, match="asks for 2 whole H100 GPUs"):
        allocator.grant("pair", 1, 0, GpuRequest.parse("H100:2"))
    # An update's new revision starts on the devices the old one serves from.
    assert allocator.grant("big", 2, 0, GpuRequest.parse("H100:1")) is not None
    env = gpu_environment(quarter)
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["DCF_GPU_SHARE"] == "0.25"
    assert "CUDA_VISIBLE_DEVICES" not in gpu_environment(quarter, in_container=True)
    assert gpu_environment(None) == {"CUDA_VISIBLE_DEVICES": ""}
    lease_files = list((tmp_path / "leases").glob("gateway-*.json"))
    assert [oct(p.stat().st_mode & 0o777) for p in lease_files] == ["0o600"]
    assert (tmp_path / "leases").stat().st_mode & 0o777 == 0o700
    allocator.close()
    assert not list((tmp_path / "leases").glob("gateway-*.json"))


FAKE_TORCH = '''
class _Cuda:
    capped = []

    def is_available(self):
        return True

    def device_count(self):
        return 2

    def set_per_process_memory_fraction(self, fraction, device):
        self.capped.append((fraction, device))


cuda = _Cuda()
'''


def test_a_replica_holding_a_share_caps_pytorch_when_its_handler_imports_it(tmp_path: Path) -> None:
    """The worker's hook, with a stand-in `torch` module (this machine has no CUDA): set before the handler is
    imported, it caps torch's allocator at the share on every visible device once torch is imported. The real
    cap is proven on a GPU by benchmarks/gpu_share_check.py."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(FAKE_TORCH)
    (tmp_path / "handler.py").write_text("import torch\n\nclass Handler:\n    def __call__(self, req):\n"
                                         "        return str(torch.cuda.capped)\n")
    probe = ("import sys; sys.path.insert(0, sys.argv[1])\n"
             "from dcf_jupyter.worker.handler import load_handler\n"
             "load_handler(sys.argv[1])\n"
             "import torch; print(torch.cuda.capped)\n")
    shared = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True,
                            env={**os.environ, "DCF_GPU_SHARE": "0.25"}, timeout=60)
    assert shared.returncode == 0, shared.stderr
    assert shared.stdout.strip() == "[(0.25, 0), (0.25, 1)]"
    whole = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if k != "DCF_GPU_SHARE"}, timeout=60)
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout.strip() == "[]"  # whole devices (or none): no cap


def test_the_machines_lease_folder_is_used_only_when_root_made_it_sticky(tmp_path: Path) -> None:
    """A folder anyone could have made (not root's, or not sticky) is not shared: its owner could remove others'
    leases. Then the gateway books among its user's own gateways, and says why."""
    from dcf_jupyter.backends.gpus.leases import LeaseBook, shared_problem

    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    loose.chmod(0o777)
    said = shared_problem(loose)
    assert said and ("not 1777" in said or "not root" in said), said
    book, why = LeaseBook.for_this_machine(tmp_path / "own", loose)
    assert not book.shared and book.folder == tmp_path / "own" and why == said
    if os.geteuid() != 0:
        print("\nthe shared lease folder's happy path needs root (tests run as uid", os.geteuid(), ")")
        return
    made = tmp_path / "run" / "gpu-leases"
    assert shared_problem(made) == "" and stat.S_IMODE(made.stat().st_mode) == 0o1777  # root makes it sticky
    book, why = LeaseBook.for_this_machine(tmp_path / "own", made)
    assert book.shared and why == ""


def test_a_lease_is_whoever_owns_its_file(tmp_path: Path) -> None:
    """A lease file claiming to be another user's counts as its owner's: a stranger cannot pose as you."""
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    from dcf_jupyter.backends.gpus.leases import LeaseBook

    folder = tmp_path / "leases"
    folder.mkdir()
    folder.chmod(0o1777)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        claim = {"pid": sleeper.pid, "uid": 0, "label": "root's gateway", "grants": [
            {"function": "posing", "revision": 1, "replica": 0, "devices": [0], "share": 1.0}]}
        forged = folder / f"gateway-0-{sleeper.pid}.json"
        forged.write_text(json.dumps(claim))
        os.chown(forged, 65534, 65534)  # nobody's file, claiming uid 0
        with LeaseBook(folder, shared=True).locked() as leases:
            (lease,) = leases
        assert lease.uid == 65534 and not lease.mine and lease.grants[0]["function"] == "posing"
    finally:
        sleeper.kill()
        sleeper.wait()

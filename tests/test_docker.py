"""Images and the docker backend on a real Docker Engine (no registry: the base image is made offline).

Skipped, with the reason printed, only where no daemon runs or can be started here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import (
    BATCHED,
    FUNCTIONS,
    HANGS_ON_REQUEST,
    ROOT,
    at_once,
    call_until_answered,
    eventually,
    run_cli,
    split,
    start_gateway,
    with_keys,
    with_timeout,
)

from dcf_jupyter.backends.launcher import WorkerContainer
from dcf_jupyter.build.image import (
    BuildError,
    BuildOptions,
    DockerUnavailable,
    build_args_for,
    build_image,
    cuda_base_image,
    docker_client,
    dockerfile_for,
    worker_requirements,
)
from dcf_jupyter.definition.spec import load_config
from dcf_jupyter.errors import DeployError, FunctionError

pytestmark = [pytest.mark.docker, pytest.mark.slow]  # builds images and runs containers
BASE = os.environ.get("DCF_TEST_BASE_IMAGE", "dcf-test/python-base:bookworm")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _skip(reason: str) -> None:
    print(f"\nSKIP docker tests: {reason}", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker():
    """A Docker daemon: the running one, or one started here (as root) and stopped afterwards."""
    try:
        yield docker_client(timeout=60)
        return
    except DockerUnavailable as exc:
        reason = str(exc)
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        _skip(f"{reason} (and no dockerd to start as root)")
    log = open("/tmp/dcf-test-dockerd.log", "ab")  # noqa: SIM115 - the daemon writes to it for the whole session
    daemon = subprocess.Popen([dockerd, "--iptables=false", "--ip6tables=false", "--storage-driver=overlay2"],
                              stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    client = None
    while client is None and time.monotonic() < deadline and daemon.poll() is None:
        try:
            client = docker_client(timeout=60)
        except DockerUnavailable:
            time.sleep(0.5)
    if client is None:
        daemon.terminate()
        _skip("dockerd did not start here (see /tmp/dcf-test-dockerd.log)")
    try:
        yield client
    finally:
        daemon.terminate()
        daemon.wait(30)


@pytest.fixture(scope="session")
def base_image(docker) -> str:
    """A Python base image made offline once per machine (debootstrap + docker import), cached by tag."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_base_image.py"), "--tag", BASE],
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        _skip(f"could not make the offline base image {BASE}: {result.stderr.strip()[-300:]}")
    return BASE


@pytest.fixture(scope="session")
def build_options(base_image) -> BuildOptions:
    # This machine's default bridge has no way out and its TLS goes through a proxy whose CA is in
    # the host bundle: the same options a user behind such a network passes.
    return BuildOptions(base_image=base_image, network="host", ca_bundle=CA_BUNDLE if CA_BUNDLE.exists() else None)


def cli_build_flags(options: BuildOptions) -> list[str]:
    flags = ["--base-image", str(options.base_image), "--network", str(options.network)]
    return flags + (["--ca-bundle", str(options.ca_bundle)] if options.ca_bundle else [])


@pytest.fixture(scope="session")
def docker_gateway(docker, tmp_path_factory):
    handle = start_gateway(tmp_path_factory.mktemp("docker-gateway") / "state")
    try:
        yield handle
    finally:
        handle.stop()


def test_build_runs_and_serves_hello_dcf(docker, build_options) -> None:
    result = run_cli("function", "build", "-f", str(FUNCTIONS / "hello-dcf" / "config.yaml"), "-v",
                     *cli_build_flags(build_options), timeout=900)
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert out.startswith("Building function (hello-dcf) ...")
    assert "Step 1/" in out and "Image hello-dcf" in out
    image = docker.images.get("hello-dcf")
    assert image.labels["dcf.function"] == "hello-dcf"
    # Built from this very folder, so `run` picks the image by itself.
    run = run_cli("function", "run", "hello-dcf", "-f", str(FUNCTIONS / "hello-dcf" / "config.yaml"),
                  input=b"Hello\n")
    assert run.returncode == 0, run.stderr.decode()
    text = run.stdout.decode()
    assert "Running image (hello-dcf) in local" in text
    assert "Checking GPU...\nNo GPU visible in the container." in text
    assert "Handler request: Hello\n\nHandler reply: Hello DCF" in text


def test_gateway_deploys_calls_logs_and_deletes_containers(docker, docker_gateway, build_options) -> None:
    spec = load_config(FUNCTIONS / "echo").function()
    build_image(spec, build_options, client=docker)
    client = docker_gateway.client
    assert "docker" in client.info()["backends"]
    assert "docker backend" in client.deploy(FUNCTIONS / "echo", backend="docker").message
    try:
        assert client.call("echo", b"\x00through a container") == b"\x00through a container"
        assert list(client.stream("echo", [b"a", b"b"])) == [b"a", b"b"]
        info = client.get("echo")
        assert info.backend == "docker" and info.available_replicas == 1 and info.image == "echo"
        assert "ready in" in client.logs("echo")
        labelled = docker.containers.list(filters={"label": "dcf.function=echo"})
        assert len(labelled) == 1
    finally:
        client.delete("echo")
    assert docker.containers.list(all=True, filters={"label": "dcf.function=echo"}) == []


def test_a_stuck_container_times_out_and_is_restarted(docker, docker_gateway, build_options, make_function) -> None:
    folder = with_timeout(make_function("stuck-box", HANGS_ON_REQUEST), 1)
    build_image(load_config(folder).function(), build_options, client=docker)
    client = docker_gateway.client
    client.deploy(folder, backend="docker")
    try:
        boot = client.call("stuck-box")
        with pytest.raises(FunctionError) as info:
            client.call("stuck-box", b"hang")
        assert info.value.code == "DEADLINE_EXCEEDED" and "restarted" in str(info.value)
        # The same container, restarted: a fresh worker process answers.
        assert call_until_answered(client, "stuck-box", within=30) != boot
        assert len(docker.containers.list(filters={"label": "dcf.function=stuck-box"})) == 1
    finally:
        client.delete("stuck-box")


def test_a_batched_handler_in_a_container_gets_concurrent_calls_as_batches(docker, docker_gateway, build_options,
                                                                           make_function) -> None:
    folder = with_keys(make_function("batched-box", BATCHED), batching={"max_batch_size": 8, "max_wait_ms": 100})
    build_image(load_config(folder).function(), build_options, client=docker)
    client = docker_gateway.client
    client.deploy(folder, backend="docker")
    try:
        asked = [split(reply) for reply in at_once(12, lambda i: client.call("batched-box", f"c{i}", timeout=60))]
        assert [ask for ask, _ in asked] == [f"c{i}" for i in range(12)], asked
        assert max(size for _, size in asked) > 1, asked  # through the container's gRPC face, batched
    finally:
        client.delete("batched-box")


def test_limits_become_container_limits_and_a_missing_gpu_says_so(docker, docker_gateway, build_options,
                                                                  make_function) -> None:
    folder = make_function("limited", "class Handler:\n    def __call__(self, req):\n        return 'ok'\n")
    config = folder / "config.yaml"
    config.write_text(config.read_text().replace("memory: ''", "memory: 256M").replace("cpu: ''", "cpu: '0.5'"))
    spec = load_config(config).function()
    build_image(spec, build_options, client=docker)
    client = docker_gateway.client
    client.deploy(folder, backend="docker")
    try:
        assert client.call("limited") == "ok"
        (container,) = docker.containers.list(filters={"label": "dcf.function=limited"})
        host = container.attrs["HostConfig"]
        assert host["Memory"] == 256 * 1000**2 and host["NanoCpus"] == 500_000_000
    finally:
        client.delete("limited")
    config.write_text(config.read_text().replace("gpu: ''", "gpu: '1'"))
    if shutil.which("nvidia-smi"):
        return  # on a GPU machine the request succeeds; the GPU path is proven there
    with pytest.raises(DeployError, match="limited replica 0 asks for 1 whole GPU, and this gateway has no GPU to "
                                          "give"):
        client.deploy(folder, backend="docker")
    assert "limited" not in {f.name for f in client.list()}


def test_an_idle_container_goes_to_zero_and_the_next_call_starts_one(docker, docker_gateway, build_options,
                                                                     make_function) -> None:
    """The gateway's autoscaler on the docker backend: the container is removed after downscale_delay_s without
    a call, and the next call waits for a new one (a stream's first frame too)."""
    folder = with_keys(make_function("napper", "class Handler:\n    def __call__(self, req):\n"
                                               "        return req.input or b'awake'\n"),
                       autoscaling={"min_replicas": 0, "max_replicas": 2, "downscale_delay_s": 0.5})
    build_image(load_config(folder).function(), build_options, client=docker)
    client = docker_gateway.client
    assert client.deploy(folder, backend="docker").message == \
        "Deployed: napper (0-2 replicas, autoscaled, on the docker backend)"
    try:
        labelled = {"label": "dcf.function=napper"}
        assert len(docker.containers.list(filters=labelled)) == 1
        eventually(lambda: not docker.containers.list(filters=labelled, all=True), 30, "the idle container removed",
                   every=0.1)
        assert next(f for f in client.list() if f.name == "napper").idle
        started = time.perf_counter()
        assert client.call("napper", timeout=120) == b"awake"
        print(f"cold start on the docker backend, call to reply: {time.perf_counter() - started:.2f} s")
        assert len(docker.containers.list(filters=labelled)) == 1
        assert list(client.stream("napper", [b"a", b"b", b"c"], timeout=120)) == [b"a", b"b", b"c"]
        assert next(f for f in client.list() if f.name == "napper").cold_starts >= 1
    finally:
        client.delete("napper")


CONTAINER_SECRETS_AND_MESH = """
import os
from pathlib import Path

from dcf_jupyter import mesh


class Handler:
    def __call__(self, req):
        folder = Path(os.environ["DCF_SECRETS_DIR"])
        return {"file": (folder / "docker-api" / "TOKEN").read_text(), "env": os.environ.get("TOKEN"),
                "echo": mesh.call("echo", b"from a container").decode()}
"""


def test_a_container_gets_its_secrets_mounted_and_calls_functions_through_the_mesh(
        docker, docker_gateway, build_options, make_function) -> None:
    """Secrets as files in a read-only mount, never in the container's environment unless asked; `mesh.call` from
    the container reaches a function of the same gateway on the local backend through its mounted socket."""
    client = docker_gateway.client
    value = "sk-docker-5f3a9c0e"
    client.create_secret("docker-api", {"TOKEN": value})
    client.deploy(FUNCTIONS / "echo", backend="local")
    folder = with_keys(make_function("in-a-container", CONTAINER_SECRETS_AND_MESH), secrets=["docker-api"])
    build_image(load_config(folder).function(), build_options, client=docker)
    client.deploy(folder, backend="docker")
    try:
        assert client.call("in-a-container", timeout=120) == {"file": value, "env": None, "echo": "from a container"}
        container = docker.containers.list(filters={"label": "dcf.function=in-a-container"})[0]
        container.reload()
        assert value not in str(container.attrs["Config"]["Env"])
        mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
        assert mounts["/run/dcf"]["RW"] is False
        assert value not in str(container.image.attrs)  # nor in the image
    finally:
        client.delete("in-a-container")
        client.delete("echo")
        client.delete_secret("docker-api")


def test_a_handler_that_cannot_start_fails_the_deploy_at_once(docker, docker_gateway, build_options,
                                                              make_function) -> None:
    """Docker restarts the container (restart policy on-failure): its first restart ends the wait with the log."""
    folder = make_function("cannot-start", "import not_a_module_anywhere\n\nclass Handler:\n"
                                           "    def __call__(self, req):\n        return 'never'\n")
    build_image(load_config(folder).function(), build_options, client=docker)
    started = time.monotonic()
    with pytest.raises(DeployError) as failure:
        docker_gateway.client.deploy(folder, backend="docker")
    assert time.monotonic() - started < 60, "a crash-looping container was waited on"
    said = str(failure.value) + failure.value.detail
    assert "did not become ready" in said and "not_a_module_anywhere" in said, said
    assert not docker.containers.list(all=True, filters={"label": "dcf.function=cannot-start"})


def test_a_failing_build_names_the_step_and_shows_the_log(docker, build_options, make_function) -> None:
    folder = make_function("unbuildable", "class Handler:\n    def __call__(self, req):\n        return 1\n",
                           requirements=["--no-index", "no-such-package-xyz==1.0"])
    with pytest.raises(BuildError) as info:
        build_image(load_config(folder).function(), build_options, client=docker)
    assert "failed at Step" in str(info.value) and "pip install -r requirements.txt" in str(info.value)
    assert "no-such-package-xyz" in info.value.detail


def test_handler_only_change_rebuilds_from_cache(docker, build_options, make_function) -> None:
    folder = make_function("cached", "class Handler:\n    def __call__(self, req):\n        return 'v1'\n")
    spec = load_config(folder).function()
    build_image(spec, build_options, client=docker)
    (folder / "src" / "handler.py").write_text("class Handler:\n    def __call__(self, req):\n        return 'v2'\n")
    lines: list[str] = []
    build_image(spec, build_options, on_log=lines.append, client=docker)
    steps = [i for i, line in enumerate(lines) if line.startswith("Step ")]
    copy_step = next(i for i in steps if "COPY function/ " in lines[i])
    # Every step before the function's source came from the cache.
    rebuilt = [lines[i] for i in steps if i < copy_step and "Using cache" not in lines[i + 1]
               and not lines[i].startswith(("Step 1/", "Step 2/"))]
    assert rebuilt == [], rebuilt


def test_no_daemon_is_one_sentence(tmp_path: Path) -> None:
    result = run_cli("function", "build", "--image", "-f", str(FUNCTIONS / "hello-dcf" / "config.yaml"),
                     env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "no Docker daemon answers" in lines[0] and "local backend" in lines[0]
    # Without --image, a machine with no Docker still checks the function and says no image was built.
    result = run_cli("function", "build", "-f", str(FUNCTIONS / "hello-dcf" / "config.yaml"),
                     env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert result.returncode == 0 and b"no image was built" in result.stdout


def test_templates_pick_bases_from_dcf_build_args(tmp_path: Path) -> None:
    """The GPU templates, checked without pulling CUDA images (no registry here; proven on GPU machines)."""
    from dcf_jupyter.definition.spec import parse_config

    dcf_example = parse_config("functions:\n  ssd-gpu:\n    limits: {gpu: '1'}\n    build_args: [CUDA_VERSION=9.0, "
                        "CUDNN_VERSION=7.4.1.5, UBUNTU_VERSION=16.04]\n", root=tmp_path).function()
    assert build_args_for(dcf_example, BuildOptions())["BASE_IMAGE"] == "nvidia/cuda:9.0-cudnn7-runtime-ubuntu16.04"
    assert cuda_base_image({}) == "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04"
    assert "apt-get install" in dockerfile_for(dcf_example) and "NVIDIA_VISIBLE_DEVICES" in dockerfile_for(dcf_example)
    tf = parse_config("functions:\n  tf:\n    runtime: tensorflow-gpu\n", root=tmp_path).function()
    assert build_args_for(tf, BuildOptions())["EXTRA_PIP"].startswith("tensorflow[and-cuda]")
    cpu = parse_config("functions:\n  cpu:\n    build_packages: [libgomp1]\n", root=tmp_path).function()
    args = build_args_for(cpu, BuildOptions())
    assert args["BASE_IMAGE"] == "python:3.11-slim" and args["BUILD_PACKAGES"] == "libgomp1"
    assert build_args_for(cpu, BuildOptions(base_image="mirror/python:3.12"))["BASE_IMAGE"] == "mirror/python:3.12"
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    assert dockerfile_for(cpu) == "FROM scratch\n"  # the function's own Dockerfile wins
    assert "grpcio" in worker_requirements() and "protobuf" in worker_requirements()


def test_deploy_pushes_to_docker_registry_after_asking(docker, docker_gateway, build_options, make_function) -> None:
    folder = make_function("pushed", "class Handler:\n    def __call__(self, req):\n        return 'p'\n")
    config = folder / "config.yaml"
    # A registry address where nothing listens: the push is really attempted, and fails readably.
    config.write_text(config.read_text().replace("docker_registry: ''", "docker_registry: 127.0.0.1:1")
                      .replace("image: pushed", "image: 127.0.0.1:1/pushed"))
    build_image(load_config(config).function(), build_options, client=docker)
    g = ("-g", docker_gateway.address)
    asked = run_cli(*g, "function", "deploy", "-f", str(config), "--backend", "docker")
    assert asked.returncode == 1 and b"pass --yes to push without asking" in asked.stderr
    pushed = run_cli(*g, "function", "deploy", "-f", str(config), "--backend", "docker", "--yes")
    assert pushed.returncode == 1
    assert b"Pushing: pushed, Image: 127.0.0.1:1/pushed in Registry: 127.0.0.1:1 ..." in pushed.stdout
    assert b"pushing 127.0.0.1:1/pushed failed" in pushed.stderr


def test_magic_session_builds_then_deploys_on_docker(docker_gateway, build_options, tmp_path, monkeypatch) -> None:
    from dcf_jupyter.notebook._session import Session

    monkeypatch.setenv("DCF_BUILD_BASE_IMAGE", str(build_options.base_image))
    monkeypatch.setenv("DCF_BUILD_NETWORK", str(build_options.network))
    if build_options.ca_bundle:
        monkeypatch.setenv("DCF_BUILD_CA_BUNDLE", str(build_options.ca_bundle))
    session = Session(tmp_path / "ws", gateway=docker_gateway.address)
    try:
        proxy = session.define("in-a-box", "import os\nclass Handler:\n    def __call__(self, req):\n"
                               "        return 'pid ' + str(os.getpid())\n", settings={"backend": "docker"})
        assert proxy() == "pid 1"  # the worker is the container's first process
        assert proxy.info.backend == "docker"
    finally:
        session.client().delete("in-a-box")
        session.close()


def test_run_uses_the_image_only_when_built_from_this_folder(docker, build_options, make_function) -> None:
    folder = make_function("fresh-or-stale", "class Handler:\n    def __call__(self, req):\n        return 'image'\n")
    build_image(load_config(folder).function(), build_options, client=docker)
    ran = run_cli("function", "run", "fresh-or-stale", input=b"x", cwd=folder)
    assert b"Running image (fresh-or-stale)" in ran.stdout and b"Handler reply: image" in ran.stdout
    (folder / "src" / "handler.py").write_text(
        "class Handler:\n    def __call__(self, req):\n        return 'folder'\n")
    ran = run_cli("function", "run", "fresh-or-stale", input=b"x", cwd=folder)
    assert b"was not built from this folder" in ran.stderr and b", built 20" in ran.stderr  # and when it was
    assert b"Handler reply: folder" in ran.stdout
    forced = run_cli("function", "run", "fresh-or-stale", "--image", input=b"x", cwd=folder)
    assert b"Handler reply: image" in forced.stdout


def test_a_gpu_replica_asks_docker_for_the_devices_it_was_granted(docker, build_options, make_function,
                                                                  tmp_path: Path) -> None:
    """The device request names the granted ids (not a count): checked in the container's view where the runtime
    exposes GPUs, else in the request dockerd recorded; a container that cannot start is removed and its
    devices are free again."""
    folder = make_function("granted", "import os\nclass Handler:\n    def __call__(self, req):\n"
                                      "        return os.environ.get('NVIDIA_VISIBLE_DEVICES', '')\n")
    config = folder / "config.yaml"
    config.write_text(config.read_text().replace("gpu: ''", "gpu: '1'"))
    spec = load_config(config).function()
    build_image(spec, build_options, client=docker)
    request = WorkerContainer(spec.image_ref, 0, gpu_ids=("1",)).create_options()["device_requests"][0]
    created = docker.containers.create(spec.image_ref, device_requests=[request])
    try:
        (recorded,) = created.attrs["HostConfig"]["DeviceRequests"]
        assert recorded["DeviceIDs"] == ["1"] and not recorded.get("Count") and recorded["Capabilities"] == [["gpu"]]
    finally:
        created.remove(force=True)
    gateway = start_gateway(tmp_path / "state", "--gpus", "0,1")
    try:
        gateway.client.deploy(FUNCTIONS / "echo")  # holds nothing: echo asks for no GPU
        outcome = gpu_function_on_device_one(gateway, folder)
        if shutil.which("nvidia-smi"):
            assert outcome == "1"  # the container sees the device it was granted
            return
        assert "is the NVIDIA Container Toolkit installed?" in outcome
        assert not docker.containers.list(all=True, filters={"label": "dcf.function=granted"})
        zero, one = gateway.client.info()["gpus"]
        assert [h["function"] for h in zero["holders"]] == ["holds-zero"] and one["holders"] == []
    finally:
        gateway.stop()


def gpu_function_on_device_one(gateway, folder: Path) -> str:
    """Deploy `folder` on the docker backend after a local replica took GPU 0: its reply, or the refusal."""
    hold = folder.parent / "holds-zero"
    shutil.copytree(folder, hold)
    config = hold / "config.yaml"
    config.write_text(config.read_text().replace("granted:", "holds-zero:"))
    gateway.client.deploy(hold, backend="local")
    try:
        gateway.client.deploy(folder, backend="docker")
    except DeployError as exc:
        return str(exc)
    try:
        return str(gateway.client.call("granted"))
    finally:
        gateway.client.delete("granted")

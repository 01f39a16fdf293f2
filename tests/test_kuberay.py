"""deploy/kuberay: the manifests, the image they run and the README agree (no Kubernetes here: the manifests are
parsed, and the gateway's command line is parsed by the gateway's own flag parser)."""

from __future__ import annotations

import re

import pytest
import yaml
from support import ROOT

from dcf_jupyter.gateway.auth import is_loopback
from dcf_jupyter.gateway.options import gateway_parser, options_from

pytestmark = pytest.mark.slow  # a Kubernetes-shaped Ray cluster


KUBERAY = ROOT / "deploy" / "kuberay"


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all((KUBERAY / "raycluster.yaml").read_text())}


def containers(cluster: dict) -> list[dict]:
    groups = [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]
    return [c for group in groups for c in group["template"]["spec"]["containers"]]


def test_one_image_built_from_the_ray_version_the_cluster_declares(manifests: dict[str, dict]) -> None:
    cluster = manifests["RayCluster"]
    images = {c["image"] for c in containers(cluster)}
    assert len(images) == 1, images
    [image] = images
    dockerfile = (KUBERAY / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM rayproject/ray:(\S+)", dockerfile, re.M)
    assert base.startswith(f"{cluster['spec']['rayVersion']}-"), (base, cluster["spec"]["rayVersion"])
    assert f"-t {image} ." in dockerfile and "[ray]" in dockerfile
    readme = (ROOT / "README.md").read_text()
    assert image in readme and "deploy/kuberay/raycluster.yaml" in readme


def test_the_gateway_beside_the_head_joins_ray_and_is_reachable(manifests: dict[str, dict]) -> None:
    head = manifests["RayCluster"]["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    ray_head = next(c for c in head if c["name"] == "ray-head")
    gateway = next(c for c in head if c["name"] == "dcf-gateway")
    command = gateway["command"]
    assert command[:3] == ["dcf", "gateway", "start"], command
    options = options_from(gateway_parser().parse_args(command[3:]))
    assert options.default_backend == "ray" and options.ray_address is not None
    ray_port = int(options.ray_address.rsplit(":", 1)[1])
    assert ray_port in {p["containerPort"] for p in ray_head["ports"]}, "the gateway joins the head's GCS port"
    assert options.port in {p["containerPort"] for p in gateway["ports"]}
    [service_port] = manifests["Service"]["spec"]["ports"]
    assert service_port["port"] == service_port["targetPort"] == options.port == 32222
    assert manifests["Service"]["spec"]["selector"]["ray.io/cluster"] == manifests["RayCluster"]["metadata"]["name"]
    # Off loopback the gateway refuses to start without a token: it must get one, from a Secret.
    token = [e for e in gateway.get("env", []) if e["name"] == "DCF_TOKEN"]
    assert is_loopback(options.host) or (token and "secretKeyRef" in token[0]["valueFrom"])
    readme = (ROOT / "README.md").read_text()
    assert "32222" in readme and "6379" in readme


def test_the_gpu_worker_group_declares_to_ray_the_gpus_kubernetes_gives_it(manifests: dict[str, dict]) -> None:
    groups = {g["groupName"]: g for g in manifests["RayCluster"]["spec"]["workerGroupSpecs"]}
    gpu = groups["gpu"]
    [worker] = gpu["template"]["spec"]["containers"]
    limits, requests = worker["resources"]["limits"], worker["resources"]["requests"]
    assert limits["nvidia.com/gpu"] == requests["nvidia.com/gpu"] == gpu["rayStartParams"]["num-gpus"] == "1"
    assert all("nvidia.com/gpu" not in c["resources"]["limits"] for name, g in groups.items() if name != "gpu"
               for c in g["template"]["spec"]["containers"])
    assert "nvidia.com/gpu" in (ROOT / "README.md").read_text()

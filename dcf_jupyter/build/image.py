"""Building a function into a container image with the Docker Engine (docker SDK).

The Dockerfile is the runtime's head (base image) plus a shared tail that installs
the worker, the function's requirements.txt and then its source, in that order,
so a handler-only change rebuilds in seconds. A `Dockerfile` in the function
folder replaces the template (the build context has the same layout).
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import IO, Any

from ..definition.requirements import NODEPS_REQUIREMENTS, REQUIREMENTS
from ..definition.runtimes import canonical_runtime
from ..definition.source import add_normalized, iter_source_files, source_digest
from ..definition.spec import FunctionSpec
from ..errors import BuildError, DcfError, DockerUnavailable

DEFAULT_PYTHON_BASE = "python:3.11-slim"
DEFAULT_CUDA_VERSION = "12.4.1"
DEFAULT_CUDNN_VERSION = "9"
DEFAULT_UBUNTU_VERSION = "22.04"
TENSORFLOW_PIP = "tensorflow[and-cuda]>=2.16"
WORKER_PACKAGES = ("grpcio", "protobuf", "pyyaml")  # what the worker imports inside the image
WORKER_PORT = 50051
SOURCE_LABEL = "dcf.source"  # the digest of the function folder an image was built from


@dataclass
class BuildOptions:
    """How to build: every field has a sensible default for a machine with internet access."""

    base_image: str | None = None  # overrides the runtime's (or config's base_image)
    nocache: bool = False
    network: str | None = None  # e.g. "host" where the bridge network has no way out
    ca_bundle: Path | None = None  # extra CA certificates pip should trust (TLS-intercepting proxies)
    pull: bool = False
    extra_build_args: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> BuildOptions:
        """Options from $DCF_BUILD_BASE_IMAGE, $DCF_BUILD_NETWORK and $DCF_BUILD_CA_BUNDLE (for notebooks)."""
        ca_bundle = os.environ.get("DCF_BUILD_CA_BUNDLE")
        return cls(base_image=os.environ.get("DCF_BUILD_BASE_IMAGE") or None,
                   network=os.environ.get("DCF_BUILD_NETWORK") or None,
                   ca_bundle=Path(ca_bundle) if ca_bundle else None)


def docker_client(timeout: float = 600) -> Any:
    """A docker SDK client whose daemon answers, or DockerUnavailable saying what to do."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        raise DockerUnavailable("the docker backend needs the docker SDK: pip install docker "
                                "(or dcf-jupyter[docker]), or use the local backend") from None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise DockerUnavailable(
            f"no Docker daemon answers ({str(exc).splitlines()[0][:160]}); start one (`sudo systemctl start docker` "
            "or `dockerd &`) or use the local backend (`--backend local`)"
        ) from None
    return client


def cuda_base_image(build_args: dict[str, str]) -> str:
    """The nvidia/cuda runtime image for DCF's CUDA_VERSION / CUDNN_VERSION / UBUNTU_VERSION build args."""
    cuda = build_args.get("CUDA_VERSION") or DEFAULT_CUDA_VERSION
    cudnn = (build_args.get("CUDNN_VERSION") or DEFAULT_CUDNN_VERSION).split(".")[0]
    ubuntu = build_args.get("UBUNTU_VERSION") or DEFAULT_UBUNTU_VERSION
    # NVIDIA names cuDNN 9 images "-cudnn-" and older ones "-cudnn8-", "-cudnn7-".
    flavour = "cudnn" if cudnn == "9" else f"cudnn{cudnn}"
    return f"nvidia/cuda:{cuda}-{flavour}-runtime-ubuntu{ubuntu}"


def base_image_for(spec: FunctionSpec, options: BuildOptions) -> str:
    """The FROM image: --base-image, else config.yaml's base_image, else the runtime's default."""
    if options.base_image:
        return options.base_image
    if spec.base_image:
        return spec.base_image
    if spec.wants_cuda:
        return cuda_base_image(spec.build_arg_map)
    return DEFAULT_PYTHON_BASE


def template_dockerfile(spec: FunctionSpec) -> str:
    """The runtime template: its head and the shared tail."""
    head_dir = "python-gpu" if spec.wants_cuda else "python"
    # One joinpath step at a time: Traversable.joinpath takes several parts only from Python 3.11.
    templates = resources.files("dcf_jupyter.build") / "templates"
    return (templates / head_dir / "Dockerfile.head").read_text() + (templates / "Dockerfile.tail").read_text()


def dockerfile_for(spec: FunctionSpec) -> str:
    """The function folder's own Dockerfile if it has one, else the runtime template."""
    own = (spec.root or Path.cwd()) / "Dockerfile"
    return own.read_text(encoding="utf-8") if own.is_file() else template_dockerfile(spec)


def build_args_for(spec: FunctionSpec, options: BuildOptions) -> dict[str, str]:
    """Docker build args: DCF's build_args, plus what the template reads."""
    args = dict(spec.build_arg_map)
    args["BASE_IMAGE"] = base_image_for(spec, options)
    args["FUNCTION_NAME"] = spec.name
    args["BUILD_PACKAGES"] = " ".join(spec.build_packages)
    if canonical_runtime(spec.runtime) == "tensorflow-gpu":
        args["EXTRA_PIP"] = TENSORFLOW_PIP
    args.update(options.extra_build_args)
    return args


def worker_requirements() -> str:
    """requirements.txt for the worker inside images: this installation's own pins for what it imports."""
    lines = []
    for requirement in metadata.requires("dcf-jupyter") or []:
        name = re.split(r"[ ;<>=!~\[]", requirement, maxsplit=1)[0].lower()
        if name in WORKER_PACKAGES and "extra ==" not in requirement:
            lines.append(requirement.split(";")[0].strip())
    return "\n".join(lines) + "\n"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def build_context(spec: FunctionSpec, options: BuildOptions) -> IO[bytes]:
    """The build context as a tar file: Dockerfile, _dcf/ (worker runtime, certs) and function/."""
    if spec.root is None:
        raise DcfError(f"{spec.name}: no function folder to build")
    context = tempfile.SpooledTemporaryFile(max_size=64 << 20)  # noqa: SIM115 - returned open, for the build
    with tarfile.open(fileobj=context, mode="w") as tar:
        _add_bytes(tar, "Dockerfile", dockerfile_for(spec).encode())
        _add_bytes(tar, "_dcf/worker-requirements.txt", worker_requirements().encode())
        _add_bytes(tar, "_dcf/certs/.keep", b"")
        if options.ca_bundle is not None:
            try:
                _add_bytes(tar, "_dcf/certs/ca.pem", Path(options.ca_bundle).read_bytes())
            except OSError as exc:
                raise DcfError(f"cannot read the CA bundle {options.ca_bundle}: {exc.strerror}") from None
        package = Path(str(resources.files("dcf_jupyter")))
        for path in iter_source_files(package):
            add_normalized(tar, path, f"_dcf/runtime/dcf_jupyter/{path.relative_to(package).as_posix()}")
        files = iter_source_files(spec.root)
        for path in files:
            add_normalized(tar, path, f"function/{path.relative_to(spec.root).as_posix()}")
        for optional in (REQUIREMENTS, NODEPS_REQUIREMENTS):  # the Dockerfile copies both
            if not (spec.root / optional).is_file():
                _add_bytes(tar, f"function/{optional}", b"")
    context.seek(0)
    return context


def _log_lines(chunks: Iterator[dict[str, Any]], on_log: Callable[[str], None]) -> tuple[str | None, list[str], str]:
    """Follow the build's JSON stream: (image id, log lines, error message)."""
    image_id, lines, error = None, [], ""
    for chunk in chunks:
        if "stream" in chunk:
            for line in str(chunk["stream"]).splitlines():
                if line.strip():
                    lines.append(line)
                    on_log(line)
        if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
        if "error" in chunk:
            error = str(chunk.get("errorDetail", {}).get("message") or chunk["error"]).strip()
            lines.append(error)
            on_log(error)
    return image_id, lines, error


def build_image(spec: FunctionSpec, options: BuildOptions | None = None,
                on_log: Callable[[str], None] = lambda line: None, client: Any = None) -> str:
    """Build `spec` into the image `spec.image_ref`; returns the image id. BuildError names the failing step."""
    options = options or BuildOptions()
    client = client or docker_client()
    from docker.errors import APIError

    context = build_context(spec, options)
    try:
        stream = client.api.build(
            fileobj=context, custom_context=True, tag=spec.image_ref, buildargs=build_args_for(spec, options),
            nocache=options.nocache, network_mode=options.network, pull=options.pull, rm=True, forcerm=True,
            decode=True, labels={"dcf.function": spec.name, "dcf.runtime": spec.runtime,
                                 SOURCE_LABEL: source_digest(spec.root or Path.cwd())},
        )
        image_id, lines, error = _log_lines(stream, on_log)
    except APIError as exc:
        raise BuildError(f"building {spec.image_ref} failed: {exc.explanation or exc}") from None
    finally:
        context.close()
    if error or image_id is None:
        steps = [line for line in lines if line.startswith("Step ")]
        failing = f" at {steps[-1]}" if steps else ""
        raise BuildError(f"building {spec.image_ref} failed{failing}: {error or 'no image was produced'}",
                         detail="\n".join(lines[-15:]))
    return str(image_id)


@dataclass(frozen=True)
class BuiltImage:
    """What Docker knows of a function's image: the source digest it was built from ("" if it carries none) and
    when it was built (Docker's `Created`, ISO 8601 UTC)."""

    source: str
    created: str


def built_image(reference: str, client: Any = None) -> BuiltImage | None:
    """The image `reference` as Docker has it, or None if there is no such image."""
    from docker.errors import ImageNotFound

    try:
        image = (client or docker_client()).images.get(reference)
    except ImageNotFound:
        return None
    return BuiltImage(str((image.labels or {}).get(SOURCE_LABEL, "")), str(image.attrs.get("Created", "")))


def push_image(reference: str, on_log: Callable[[str], None] = lambda line: None, client: Any = None) -> None:
    """Push `reference` to its registry, reporting each layer's status; BuildError if the push fails."""
    client = client or docker_client()
    repository, _, tag = reference.rpartition(":") if ":" in reference.split("/")[-1] else (reference, "", "latest")
    error = ""
    for chunk in client.api.push(repository, tag=tag or "latest", stream=True, decode=True):
        if "error" in chunk:
            error = str(chunk["error"])
            on_log(error)
        elif "status" in chunk:
            on_log(" ".join(str(chunk[k]) for k in ("id", "status", "progress") if chunk.get(k)))
    if error:
        raise BuildError(f"pushing {reference} failed: {error}")

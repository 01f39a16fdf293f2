"""`dcf function ...` (alias `fn`): init, build, run, deploy, call, map, spawn, list, log, delete, scale."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import click

from ..backends.registry import pushes_image, runs_image
from ..build import check_function
from ..build.image import (
    BuildOptions,
    base_image_for,
    build_image,
    built_image,
    docker_client,
    push_image,
)
from ..client import Client, Reply
from ..columns import aligned_lines
from ..commands import (
    call_command,
    delete_command,
    list_command,
    log_command,
    request_body,
    scale_command,
)
from ..definition.runtimes import RUNTIMES
from ..definition.scaffold import init_function
from ..definition.source import source_digest
from ..definition.spec import SCHEMA_PATH, ConfigFile, FunctionSpec
from ..errors import DcfError, DockerUnavailable, ForeignGateway, GatewayUnavailable
from ..host.ports import describe_user
from ..launch import start_own_gateway
from ..protocol.names import BINARY, DEPLOYED_BY
from ..settings import DEFAULT_ADDRESS, max_message_size, named_address
from ._common import (
    AliasedGroup,
    CliState,
    config_option,
    human_bytes,
    load,
    pass_state,
    reports_errors,
)
from .local_run import ImageRun, LocalRun


@click.group(
    cls=AliasedGroup,
    aliases={"invoke": "call", "logs": "log", "ls": "list", "rm": "delete", "remove": "delete"},
)
def function() -> None:
    """Create, build, test, deploy and call functions."""


def read_stdin() -> bytes:
    """The request body: all of stdin, or nothing when stdin is a terminal."""
    if sys.stdin is None or sys.stdin.isatty():
        return b""
    return sys.stdin.buffer.read()


def write_reply(reply: Reply) -> None:
    """Reply bytes to stdout as they are; text gets a final newline when it has none."""
    out = sys.stdout.buffer
    out.write(reply.data)
    if reply.content_type != BINARY and not reply.data.endswith(b"\n"):
        out.write(b"\n")
    out.flush()


def describe_bytes(data: bytes, limit: int = 200) -> str:
    """Printable view of a request or reply: its text, shortened, or a byte count for binary data."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(data)} bytes of binary data>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(data)} bytes; -o FILE saves them all)"


@function.command()
@click.option("--path", "show_path", is_flag=True, help="print where the installed package keeps it instead")
def schema(show_path: bool) -> None:
    """Print the JSON Schema of config.yaml, for an editor to complete and check it with."""
    click.echo(str(SCHEMA_PATH) if show_path else SCHEMA_PATH.read_text(encoding="utf-8"), nl=show_path)


@function.command()
@click.argument("name")
@click.option("--runtime", default="python", show_default=True, help=f"one of: {', '.join(RUNTIMES)}")
@click.option("-f", "--yaml", "config_name", default="config.yaml", show_default=True, help="config file name to write")
@click.option("--gateway", "gateway_address", default="", help="gateway address to record in the config (dcf.gateway)")
@reports_errors
def init(name: str, runtime: str, config_name: str, gateway_address: str) -> None:
    """Create NAME/ with config.yaml, src/handler.py and requirements.txt."""
    folder = init_function(name, runtime=runtime, config_name=config_name, gateway=gateway_address)
    click.echo(f"Directory: {folder} is created.")
    click.echo(f"Function handler created in directory: {folder / 'src'}")
    click.echo(f"Rewrite the function handler code in {folder / 'src'} directory")
    click.echo(f"Config file written: {folder / config_name}")


@function.command()
@config_option
@click.option("-v", "--verbose", is_flag=True, help="show every file, requirement and build step")
@click.option("--nocache", is_flag=True, help="build every image layer anew")
@click.option("--image/--no-image", default=None,
              help="build a container image [default: when a Docker daemon answers]")
@click.option("--base-image", default=None, envvar="DCF_BUILD_BASE_IMAGE",
              help="FROM image (default: the runtime's, or config base_image)")
@click.option("--network", default=None, envvar="DCF_BUILD_NETWORK",
              help='network for build steps, e.g. "host" when the bridge has no way out')
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              envvar="DCF_BUILD_CA_BUNDLE", help="extra CA certificates for pip inside the build (TLS proxies)")
@click.argument("names", nargs=-1)
@pass_state
@reports_errors
def build(state: CliState, config_path: Path, verbose: bool, nocache: bool, image: bool | None,
          base_image: str | None, network: str | None, ca_bundle: Path | None, names: tuple[str, ...]) -> None:
    """Check the functions of a config file and build their container images."""
    config = load(config_path)
    limit = state.max_message_size or max_message_size()
    options = BuildOptions(base_image=base_image, nocache=nocache, network=network, ca_bundle=ca_bundle)
    for name in names or tuple(config.functions):
        spec = config.function(name)
        click.echo(f"Building function ({spec.name}) ...")
        report = check_function(spec, max_bytes=limit)
        if verbose:
            for path in report.files:
                click.echo(f"  {path.relative_to(spec.root or Path.cwd())}")
        click.echo(f"Checked {spec.handler_path.relative_to(spec.root or Path.cwd())} (defines {spec.handler.name}); "
                   f"{len(report.files)} files, {human_bytes(report.packed_bytes)} packed")
        if report.requirements and report.missing:
            click.echo("requirements.txt not installed here (the local backend installs them at deploy): "
                       + ", ".join(report.missing))
        if verbose:
            click.echo(f"Base image: {base_image_for(spec, options)}" + (" (no image built: --no-image)"
                                                                        if image is False else ""))
        if image is False:
            continue
        try:
            docker = docker_client()
        except DockerUnavailable:
            if image or runs_image(spec.backend):
                raise
            click.echo("No Docker daemon answers, so no image was built (the local backend needs none).")
            continue
        build_one_image(spec, options, docker, verbose)


def build_one_image(spec: FunctionSpec, options: BuildOptions, docker: object, verbose: bool) -> None:
    """Build and report one image: every line with -v, else one updating progress line on a terminal."""
    tty = sys.stdout.isatty()
    started = time.monotonic()

    def show(line: str) -> None:
        if verbose:
            click.echo(line)
        elif tty and line.startswith("Step "):
            click.echo("\r\033[K" + line[:100], nl=False)

    if verbose:
        click.echo(f"Building image {spec.image_ref}")
    image_id = build_image(spec, options, on_log=show, client=docker)
    if tty and not verbose:
        click.echo("\r\033[K", nl=False)
    click.echo(f"Image {spec.image_ref} ({image_id.split(':')[-1][:12]}) built in {time.monotonic() - started:.1f}s")


@function.command()
@click.argument("name")
@config_option
@click.option("--image", "mode", flag_value="image", help="run the built image (needs Docker)")
@click.option("--local", "mode", flag_value="local", help="run the function folder with this Python")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="also write the reply's bytes to this file")
@click.option("--timeout", type=float, default=None, help="seconds to wait for the reply")
@click.option("-v", "--verbose", is_flag=True, help="show the function's traceback for bad-input errors too")
@reports_errors
def run(name: str, config_path: Path, mode: str | None, output: Path | None, timeout: float | None,
        verbose: bool) -> None:
    """Run a function on this machine, no gateway: stdin is the request, the reply is printed.

    Runs its built image when Docker has it (checking the GPU inside), else the folder itself.
    """
    if not config_path.exists() and (Path(name) / config_path.name).exists():
        config_path = Path(name) / config_path.name
    spec = load(config_path).function(name)
    data = read_stdin()
    if mode is None:
        mode = _pick_run_mode(spec)
    if mode == "image":
        runner: LocalRun | ImageRun = ImageRun(spec)
        click.echo(f"Running image ({spec.image_ref}) in local")
    else:
        if spec.limits.gpu:
            click.echo("Checking GPU...")
            click.echo(gpu_report())
        runner = LocalRun(spec)
        click.echo(f"Running function ({spec.name}) from {spec.handler_dir} in local")
    click.echo("Starting [dcf-watcher] server ...")
    sys.stdout.flush()
    with runner:
        if isinstance(runner, ImageRun):
            click.echo("Checking GPU...")
            click.echo(runner.gpu_report())
        click.echo(f"Call {spec.name} in user's local")
        click.echo(f"Handler request: {describe_bytes(data)}")
        reply = runner.call(data, timeout=timeout)
        # Before the runner stops: its worker's "stopping" line comes after the reply, as it happens.
        click.echo(f"Handler reply: {describe_bytes(reply.data, limit=4000)}")
        sys.stdout.flush()
    if output is not None:
        output.write_bytes(reply.data)
        click.echo(f"Reply written to {output} ({len(reply.data)} bytes)")


def _pick_run_mode(spec: FunctionSpec) -> str:
    """The built image when Docker has one made from this very folder, else the folder itself (saying why)."""
    try:
        image = built_image(spec.image_ref, docker_client(timeout=10))
    except DockerUnavailable:
        return "local"
    if image is None:
        return "local"
    if image.source != source_digest(spec.root or Path.cwd()):
        created = image.created
        when = f", built {created[:10]} {created[11:16]} UTC," if len(created) >= 16 else ""
        click.echo(f"(An image {spec.image_ref} exists{when} but was not built from this folder as it is now "
                   "(another folder of that name, or an earlier version of this one): running the folder. "
                   "`dcf function build` rebuilds the image from it; --image runs the old one anyway.)", err=True)
        return "local"
    return "image"


def gpu_report() -> str:
    """nvidia-smi's GPU list, or a sentence saying none is visible."""
    if shutil.which("nvidia-smi") is None:
        return "No NVIDIA GPU visible (nvidia-smi not found); the function runs on the CPU."
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi failed: {exc}"
    return (result.stdout or result.stderr).strip() or "nvidia-smi listed no GPU."


def push(spec: FunctionSpec, *, yes: bool, verbose: bool) -> None:
    """Push the function's image to its docker_registry, asking first as the DCF CLI did."""
    if not yes:
        if not sys.stdin.isatty():
            raise DcfError(f"{spec.name} is pushed to {spec.docker_registry} first: pass --yes to push without asking")
        click.confirm(f"Is docker registry(registry: {spec.docker_registry}) correct ?", abort=True)
    click.echo(f"Pushing: {spec.name}, Image: {spec.image_ref} in Registry: {spec.docker_registry} ...")
    push_image(spec.image_ref, on_log=click.echo if verbose else lambda line: None)


NOTE_PREFIX = "[dcf-gateway] "
NOTES_EVERY_S = 2.0


def _notes(client: Client, name: str) -> list[str]:
    """The gateway's own lines in a function's log (installs, restarts, waits for room)."""
    try:
        text = client.logs(name, 50)
    except DcfError:
        return []  # not deployed yet, or not now: nothing to say
    return [line for line in text.splitlines() if line.startswith(NOTE_PREFIX)]


@contextlib.contextmanager
def gateway_notes(client: Client, name: str) -> Iterator[None]:
    """While a deploy runs, print what the gateway notes about it (a long install, a wait for room on Ray) as it
    says it, so a slow deploy says why instead of nothing."""
    seen = set(_notes(client, name))  # said before this deploy
    done = threading.Event()

    def follow() -> None:
        while not done.wait(NOTES_EVERY_S):
            for line in _notes(client, name):
                if line not in seen:
                    seen.add(line)
                    click.echo(f"  {line.removeprefix(NOTE_PREFIX)}", err=True)

    thread = threading.Thread(target=follow, name=f"dcf-notes-{name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(NOTES_EVERY_S + 5)


def ensure_gateway(state: CliState, config: ConfigFile) -> None:
    """Start the user's own gateway in the background when none of theirs answers and they named none: on
    127.0.0.1:32222, or on a free port when another user holds that one (clients then find it by its state
    dir). A gateway the user named must answer (and be theirs, or trusted)."""
    named = named_address(state.gateway, config.gateway) is not None
    foreign: ForeignGateway | None = None
    with state.client(config) as probe:
        try:
            if probe.health():
                return
        except ForeignGateway as exc:
            if named:
                raise
            foreign = exc
        address = probe.address
    if named:
        raise GatewayUnavailable(f"no DCF gateway answers at {address}; start one with `dcf gateway start --detach`")
    running = start_own_gateway(default_port_taken=foreign is not None)
    if foreign is not None:
        click.echo(f"{DEFAULT_ADDRESS} is another user's gateway ({describe_user(foreign.uid)}), so dcf started "
                   f"your own on {running.address} (dcf finds it there; stop it with `dcf gateway stop`).", err=True)
    else:
        click.echo(f"Started a local gateway on {running.address} (stop it with `dcf gateway stop`).", err=True)


@function.command()
@config_option
@click.argument("names", nargs=-1)
@click.option("--update/--no-update", default=True, show_default=True,
              help="update an already deployed function in place (its old replicas serve until the new ones are ready)")
@click.option("--replace", is_flag=True, help="delete an already deployed function first, then deploy it")
@click.option("--replicas", type=click.IntRange(1, 64), default=None, help="replicas to run (default: config or 1)")
@click.option("--backend", default=None, help="backend to run on (default: config, else the gateway's default)")
@click.option("-v", "--verbose", is_flag=True, help="say more (push progress too)")
@click.option("-y", "--yes", is_flag=True, help="push to docker_registry without asking")
@pass_state
@reports_errors
def deploy(state: CliState, config_path: Path, names: tuple[str, ...], update: bool, replace: bool,
           replicas: int | None, backend: str | None, verbose: bool, yes: bool) -> None:
    """Deploy the functions of a config file to the gateway (pushing images to docker_registry first)."""
    config = load(config_path)
    ensure_gateway(state, config)
    with state.client(config) as client:
        for name in names or tuple(config.functions):
            spec = config.function(name)
            target = backend or spec.backend or str(client.info().get("default_backend", "local"))
            if spec.docker_registry and pushes_image(target):
                push(spec, yes=yes, verbose=verbose)
            click.echo(f"Deploying: {spec.name} to {client.address} ...")
            with gateway_notes(client, spec.name):
                result = client.deploy(spec, update=update, replace=replace, backend=backend, replicas=replicas)
            click.echo(result.message)
            if verbose:
                info = result.function
                click.echo(f"  status {info.status}, {info.available_replicas}/{info.replicas} replicas ready")


@pass_state
@reports_errors
def _call(state: CliState, name: str, words: tuple[str, ...], data: str | None, path: Path | None,
          timeout: float | None, verbose: bool) -> None:
    """The reply's bytes to stdout as they are (binary-safe); the request from the words, -d, -f, else stdin."""
    body = request_body(words, data, path)
    with state.client() as client:
        write_reply(client.call_reply(name, read_stdin() if body is None else body, timeout=timeout))


call = call_command(_call, stdin=True)
function.add_command(call)


@function.command()
@click.argument("name")
@click.option("-d", "--data", default=None, help="request body (default: read stdin)")
@click.option("--callback-url", default="", help="the gateway POSTs the result here when it is done")
@pass_state
@reports_errors
def spawn(state: CliState, name: str, data: str | None, callback_url: str) -> None:
    """Start a call the gateway runs on its own and keeps; prints its id (`dcf call get ID` for the result)."""
    body = data.encode("utf-8") if data is not None else read_stdin()
    with state.client() as client:
        click.echo(client.spawn(name, body, callback_url=callback_url).id)


def _map_inputs(paths: tuple[Path, ...]) -> list[tuple[Path, str]]:
    """The files to map over, each with the name its result is saved under: a file as itself, a folder's files
    (hidden ones skipped) by their path inside it."""
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            found += [(file, file.relative_to(path).as_posix()) for file in sorted(path.rglob("*"))
                      if file.is_file() and not any(part.startswith(".") for part in file.relative_to(path).parts)]
        else:
            found.append((path, path.name))
    seen: dict[str, Path] = {}
    for file, name in found:
        if name in seen:
            raise click.UsageError(f"{seen[name]} and {file} would both save their result as {name}: map them "
                                   "one at a time, or put them in one folder")
        seen[name] = file
    return found


def result_suffix(reply: Reply) -> str:
    """The file suffix for a result: .txt for text, .json for JSON, the format's own for images, else .out."""
    if reply.is_json:
        return ".json"
    if reply.is_text:
        return ".txt"
    for magic, suffix in ((b"\x89PNG", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"), (b"%PDF", ".pdf")):
        if reply.data.startswith(magic):
            return suffix
    return ".out"


@function.command(name="map")
@click.argument("name")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder for the results (default: NAME-results)")
@click.option("--retries", type=click.IntRange(0, 100), default=0, show_default=True,
              help="tries again of an input that failed")
@click.option("--timeout", type=float, default=None, help="seconds the whole map may take")
@click.option("--progress/--no-progress", default=None, help="a progress bar (default: on a terminal)")
@pass_state
@reports_errors
def map_(state: CliState, name: str, paths: tuple[Path, ...], output: Path | None, retries: int,
         timeout: float | None, progress: bool | None) -> None:
    """Call a function once per file (files, or folders of them), spread over its replicas; one result file per
    input in --output, named after it (photo.jpg -> photo.jpg.json)."""
    inputs = _map_inputs(paths)
    folder = output or Path(f"{name}-results")
    folder.mkdir(parents=True, exist_ok=True)
    failed = 0
    with state.client() as client:
        replies = client.map_replies(name, (file.read_bytes() for file, _ in inputs), retries=retries,
                                     timeout=timeout, progress=progress, return_exceptions=True)
        for (file, saved_as), reply in zip(inputs, replies, strict=True):
            if isinstance(reply, DcfError):
                failed += 1
                click.echo(f"{file}: {reply}", err=True)
                continue
            target = folder / f"{saved_as}{result_suffix(reply)}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(reply.data)
    done = len(inputs) - failed
    click.echo(f"{done} of {len(inputs)} results in {folder}" + (f"; {failed} failed" if failed else ""),
               err=True)
    if failed:
        sys.exit(1)


@pass_state
@reports_errors
def list_(state: CliState, as_json: bool, verbose: bool) -> None:
    """A table of the functions (JSON with --json; details under each with -v)."""
    with state.client() as client:
        functions = client.list()
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(f) for f in functions], indent=2))
        return
    scheduled = any(f.schedule for f in functions)  # a column for the next runs only when something has them
    rows = [("Function", "Image", "Maintainer", "Invocations", "Replicas", "Status", "Backend", "Description")
            + (("Next run",) if scheduled else ())]
    for f in functions:
        rows.append((f.name, f.image or "-", f.annotations.get("dcf.maintainer", ""), str(f.invocations),
                     f.replicas_said,
                     f"{f.status} ({f.annotations[DEPLOYED_BY]}'s)" if f.deployed_elsewhere else f.status,
                     f.backend, f.annotations.get("dcf.desc", ""))
                    + ((f.next_run_said.removeprefix("next run ") or "-",) if scheduled else ()))
    for index, line in enumerate(aligned_lines(rows)):  # not echo_table: -v puts each function's details under it
        click.echo(line)
        if verbose and index > 0:
            listed = functions[index - 1]
            for held in listed.gpus:
                click.echo(f"    replica {held.replica}: {held.describe()}")
            if listed.cold_starts:
                click.echo(f"    {listed.cold_starts_said}")
            if listed.queue_said:
                click.echo(f"    {listed.queue_said}")
    if not functions:
        click.echo("(no functions deployed; `dcf function deploy -f config.yaml` deploys one)")


@pass_state
@reports_errors
def log(state: CliState, name: str, lines: int) -> None:
    """The log's last lines, or a line saying it is empty."""
    with state.client() as client:
        text = client.logs(name, lines)
    click.echo(text.rstrip("\n") if text else f"(the log of {name} is empty)")


@pass_state
@reports_errors
def delete(state: CliState, name: str) -> None:
    """Delete it and say so."""
    with state.client() as client:
        client.delete(name)
    click.echo(f"Deleted: {name}")


@pass_state
@reports_errors
def scale(state: CliState, name: str, replicas: int) -> None:
    """Scale it and say what was done."""
    with state.client() as client:
        click.echo(client.scale(name, replicas).scaled())


for shared in (list_command(list_), log_command(log), delete_command(delete), scale_command(scale)):
    function.add_command(shared)

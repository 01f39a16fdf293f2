"""The Python client: everything the CLI, the magics and the widgets do goes through here.

    from dcf_jupyter import client
    client.call("hello-dcf", b"hi")            # -> "Hello DCF"
    for out in client.stream("echo", frames):  # bidi stream, replies in order
        ...

Module-level functions use a shared `Client` for the resolved address
(argument, then $DCF_GATEWAY, then config.yaml's dcf.gateway, then 127.0.0.1:32222).
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from ..errors import (
    ConfigError,
    DcfError,
    DeployError,
    ForeignGateway,
    FunctionExists,
    FunctionNotFound,
    GatewayUnavailable,
    InvalidArgument,
    Overloaded,
)
from ..host.credentials import read_owner_token
from ..host.ports import describe_user, on_this_machine, serving_uids, split_address
from ..host.running import is_own_socket, own_socket
from ..protocol import gateway_pb2 as pb
from ..protocol import gateway_pb2_grpc as pb_grpc
from ..protocol.names import (
    BINARY,
    DEPLOYED_BY,
    HEALTHY,
    INVOKE_BYTES,
    SOURCE_FOLDER,
    authorization,
)
from ..settings import ENV_TLS_CA, ENV_TOKEN, grpc_options, named_address
from ..settings import max_message_size as default_max_message_size
from ._calls import CallStatus, FunctionCall
from ._discovery import default_address
from ._map import MapInputs, map_results, result_value
from ._replies import Reply, Result, backoff_s, in_folder, rpc_error, to_bytes

if TYPE_CHECKING:
    from ..definition.spec import FunctionSpec

MANAGEMENT_TIMEOUT_S = 30.0
_READY = 2  # grpc_connectivity_state GRPC_CHANNEL_READY

__all__ = ["Client", "FunctionInfo", "Reply", "Result"]

@dataclass(frozen=True)
class ReplicaGpus:
    """The GPUs one replica holds on the gateway's machine."""

    replica: int
    devices: tuple[int, ...]
    share: float = 1.0  # of each device: 1.0 for whole devices
    memory_used: int = 0  # bytes its process uses on them, 0 when the driver does not say

    def describe(self) -> str:
        """'GPU 0 (0.5, 1.2 GiB)'."""
        which = f"GPU{'s' if len(self.devices) != 1 else ''} {','.join(map(str, self.devices))}"
        parts = ([f"{self.share:g}"] if self.share < 1 else []) + (
            [f"{self.memory_used / 2**30:.1f} GiB"] if self.memory_used else [])
        return f"{which} ({', '.join(parts)})" if parts else which


@dataclass(frozen=True)
class FunctionInfo:
    """A deployed function as the gateway reports it."""

    name: str
    image: str
    invocations: int
    replicas: int
    available_replicas: int
    status: str
    backend: str
    error: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    gpus: list[ReplicaGpus] = field(default_factory=list)  # per replica, on the local and docker backends
    autoscaling: tuple[int, int] | None = None  # (min_replicas, max_replicas) when config.yaml autoscales it
    cold_starts: int = 0  # replica starts that a call at 0 replicas waited for
    last_cold_start_s: float = 0.0  # how long the last one took
    last_cold_start_at: float = 0.0  # when it ended (Unix seconds; 0: never)
    queued: int = 0  # calls waiting beyond those its ready replicas take in at once
    max_queued: int = 0  # config.yaml's max_queued_requests (-1: no limit; 0 from a gateway that does not say)
    max_batch_size: int = 0  # config.yaml's batching.max_batch_size (0: not batched)
    schedule: str = ""  # config.yaml's schedule (cron)
    next_run: float = 0.0  # when the schedule runs it next (Unix seconds; 0: no schedule)

    @property
    def idle(self) -> bool:
        """Scaled to zero while no call comes: the next call starts a replica."""
        return self.status == "Idle"

    @property
    def replicas_said(self) -> str:
        """Its replicas in words: '2/3', 'idle (0 replicas)', '1/1 (autoscaled 0-3)'."""
        if self.idle:
            return "idle (0 replicas)"
        said = f"{self.available_replicas}/{self.replicas}"
        return said if self.autoscaling is None else f"{said} (autoscaled {self.autoscaling[0]}-{self.autoscaling[1]})"

    @property
    def ready_said(self) -> str:
        """Its replicas in a phrase: '1 replica', '3 replicas', '1 of 2 replicas ready', 'idle (0 replicas)'."""
        if self.idle:
            return "idle (0 replicas)"
        plural = "s" if self.replicas != 1 else ""
        if self.available_replicas == self.replicas:
            return f"{self.replicas} replica{plural}"
        return f"{self.available_replicas} of {self.replicas} replica{plural} ready"

    @property
    def cold_starts_said(self) -> str:
        """'3 cold starts, the last 0.41 s at 14:02:11' ('' when there was none)."""
        if not self.cold_starts:
            return ""
        when = time.strftime("%H:%M:%S", time.localtime(self.last_cold_start_at))
        return (f"{self.cold_starts} cold start{'s' if self.cold_starts != 1 else ''}, the last "
                f"{self.last_cold_start_s:.2f} s at {when}")

    @property
    def queue_said(self) -> str:
        """'2 queued (limit 256), batches of up to 16' ('' when the gateway says nothing of it)."""
        if not (self.queued or self.max_queued or self.max_batch_size):
            return ""
        limit = "no limit" if self.max_queued < 0 else f"limit {self.max_queued}"
        batches = f", batches of up to {self.max_batch_size}" if self.max_batch_size else ""
        return f"{self.queued} queued ({limit}){batches}"

    @property
    def next_run_said(self) -> str:
        """'next run 14:05:00 (*/5 * * * *)' ('' without a schedule)."""
        return f"{self.next_run_at} ({self.schedule})" if self.schedule else ""

    @property
    def next_run_at(self) -> str:
        """'next run 14:05:00', without the schedule, for where room is short ('' without a schedule)."""
        if not self.schedule:
            return ""
        return f"next run {time.strftime('%H:%M:%S', time.localtime(self.next_run)) if self.next_run else 'soon'}"

    def scaled(self) -> str:
        """What a scale did, in one sentence: 'Scaled: echo to 2 replicas (2 ready)', or for 0 'Scaled: echo to 0
        replicas: idle until called (the next call starts one)'."""
        if self.idle:
            return f"Scaled: {self.name} to 0 replicas: idle until called (the next call starts one)"
        return (f"Scaled: {self.name} to {self.replicas} replica{'s' if self.replicas != 1 else ''} "
                f"({self.available_replicas} ready)")

    @property
    def folder(self) -> str:
        """The folder it was deployed from, as the client that deployed it said ('' when it did not say)."""
        return self.annotations.get(SOURCE_FOLDER, "")

    @property
    def deployed_elsewhere(self) -> bool:
        """Another gateway deployed it on a shared cluster: this gateway lists it but does not manage it."""
        return DEPLOYED_BY in self.annotations

    @classmethod
    def from_pb(cls, fn: pb.Function) -> FunctionInfo:
        """Convert the wire message."""
        return cls(
            name=fn.Name, image=fn.Image, invocations=fn.InvocationCount, replicas=fn.Replicas,
            available_replicas=fn.AvailableReplicas, status=fn.Status or "Ready", backend=fn.Backend,
            error=fn.Error, annotations=dict(fn.Annotations), labels=dict(fn.Labels),
            gpus=[ReplicaGpus(g.Replica, tuple(g.Devices), g.Share or 1.0, g.MemoryUsed) for g in fn.Gpus],
            autoscaling=(fn.MinReplicas, fn.MaxReplicas) if fn.Autoscaled else None,
            cold_starts=fn.ColdStarts, last_cold_start_s=fn.LastColdStartSeconds,
            last_cold_start_at=fn.LastColdStartAt, queued=fn.Queued, max_queued=fn.MaxQueued,
            max_batch_size=fn.MaxBatchSize, schedule=fn.Schedule, next_run=fn.NextRun,
        )


@dataclass(frozen=True)
class SecretInfo:
    """A secret as the gateway shows it: name, keys, when it was last written and who uses it (never values)."""

    name: str
    keys: tuple[str, ...]
    updated: float
    used_by: tuple[str, ...]

    @classmethod
    def from_pb(cls, info: pb.SecretInfo) -> SecretInfo:
        """From the gateway's SecretInfo message."""
        return cls(info.Name, tuple(info.Keys), info.UpdatedAt, tuple(info.UsedBy))


@dataclass(frozen=True)
class DeployResult:
    """What a deploy did: the function as the gateway reports it afterwards, the gateway's sentence, and whether
    it updated a deployed function (else it deployed a new one). `str()` is the sentence."""

    function: FunctionInfo
    message: str
    updated: bool = False

    @property
    def name(self) -> str:
        """The function's name."""
        return self.function.name

    def __str__(self) -> str:
        return self.message

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """As a notebook cell's result: the sentence (its fields stay attributes)."""
        printer.text(self.message)


def _check_retries(retries: int) -> None:
    if retries < 0:
        raise InvalidArgument(f"retries={retries}: give 0 or more")


class Client:
    """A connection to one gateway; thread-safe, cheap to keep, close when done (or use `with`).

    A gateway of this user's is reached over its Unix socket, in a folder only this user may enter, whatever TCP
    address names it (`running.own_socket`): nobody else can stand in its way there. Any other gateway on this
    machine (loopback in any spelling, one of its own addresses, a name that resolves to one) is used only if its
    socket belongs to this user: before the first call, and again after every reconnect, the client checks who
    listens there (`ports`); another user's gateway gets nothing, not even a health check, unless `trust=True`,
    and an address nobody listens on gets nothing either. The token sent is `token`, else $DCF_TOKEN, else (to
    this user's own gateways only) the owner's token (`credentials`); `token=""` sends none.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        token: str | None = None,
        max_message_size: int | None = None,
        config_gateway: str | None = None,
        tls_ca: str | Path | None = None,
        trust: bool = False,
    ) -> None:
        self.address = named_address(address, config_gateway) or default_address()
        self.max_message_size = max_message_size or default_max_message_size()
        self._given_token = token if token is not None else os.environ.get(ENV_TOKEN) or None
        self._anonymous = token == ""
        self._trust = trust
        self._lock = threading.Lock()
        tls_ca = tls_ca if tls_ca is not None else os.environ.get(ENV_TLS_CA) or None
        try:
            self._tls_roots = Path(tls_ca).expanduser().read_bytes() if tls_ca else None
        except OSError as exc:
            raise ConfigError(f"cannot read the TLS CA bundle {tls_ca}: {exc.strerror}") from None
        where = split_address(self.address)
        # A TCP address on this machine: checked (and mapped to the gateway's own socket when it is the user's)
        # before the first call and after every reconnect.
        self._here = where if where is not None and on_this_machine(where[0]) else None
        self._checked = self._here is None
        if self._here is not None:
            self._token: str | None = None  # decided by the check
        elif self._unix_socket_of_ours():
            self._token = None if self._anonymous else self._given_token or read_owner_token()
        else:  # elsewhere: its TLS certificate is what proves it
            self._token = self._given_token
        own = own_socket(self.address) if self._here is not None else None
        self._bind(f"unix:{own}" if own else self.address)

    def _bind(self, target: str) -> None:
        """Open the channel (and its stubs) to `target`, closing the one before."""
        old = getattr(self, "_channel", None)
        self.target = target  # what the channel dials: the address, or the user's gateway's own Unix socket
        options = grpc_options(self.max_message_size)
        if self._tls_roots and not target.startswith("unix:"):  # a socket of one's own never leaves this machine
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(self._tls_roots), options=options)
        else:
            channel = grpc.insecure_channel(target, options=options)
        self._channel = channel
        self._stub = pb_grpc.GatewayStub(channel)
        self._raw_invoke = channel.unary_unary(
            INVOKE_BYTES,
            request_serializer=pb.InvokeServiceRequest.SerializeToString,
            response_deserializer=pb.Messages.FromString,
        )
        if old is not None:
            old.close()

    def _unix_socket_of_ours(self) -> str | None:
        """The path of a `unix:` address when the socket is this user's in a folder only they may enter."""
        path = self.address.removeprefix("unix:") if self.address.startswith("unix:") else ""
        return path if path and is_own_socket(path) else None

    @property
    def via_own_socket(self) -> bool:
        """Whether the calls go over the Unix socket of a gateway of this user's."""
        return self.target.startswith("unix:") and self.target != self.address

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __repr__(self) -> str:
        return f"Client({self.address!r})"

    def _connected(self) -> bool:
        """Whether the channel holds a live connection now (one made after an owner check: a dropped connection
        goes idle and waits for the next call, which checks again first)."""
        # grpcio's public API only offers a polling thread per channel (subscribe); the Cython channel answers
        # synchronously, in a microsecond.
        try:
            return bool(self._channel._channel.check_connectivity_state(False) == _READY)  # type: ignore[attr-defined]
        except AttributeError:  # another grpcio layout: check every call
            return False

    def check_owner(self) -> None:
        """Before a call to a TCP address on this machine: go over the Unix socket of the user's own gateway there
        (which may have been restarted since), else make sure whoever listens there is this user (ForeignGateway
        otherwise, unless trusted; GatewayUnavailable when nothing listens) and pick the token to send. Free
        while the connection it checked lasts."""
        if self._here is None or (self._checked and self._connected()):
            return
        with self._lock:
            own = own_socket(self.address)
            target = f"unix:{own}" if own else self.address
            if target != self.target:
                self._bind(target)
            if own:
                self._token = None if self._anonymous else self._given_token or read_owner_token()
            else:
                self._token = self._tcp_token(*self._here)
            self._checked = True

    def _tcp_token(self, host: str, port: int) -> str | None:
        """The token to send over TCP to host:port on this machine, once its listener is known to be the user's
        (or trusted)."""
        uids = serving_uids(host, port)
        if uids is not None and not uids:
            # Nothing is sent to an address nobody listens on: whoever binds it before the connection would get it.
            raise GatewayUnavailable(f"no DCF gateway answers at {self.address} (nothing listens there); start one "
                                     "with `dcf gateway start --detach` or point DCF_GATEWAY / --gateway at a "
                                     "running one")
        strangers = sorted((uids or set()) - {os.geteuid()})
        if strangers and not self._trust:
            raise ForeignGateway(
                f"the gateway at {self.address} belongs to another user of this machine "
                f"({describe_user(strangers[0])}), so nothing was sent to it: start your own (`dcf gateway start "
                f"--detach --port 0`), or, if you trust that user's gateway, name it with trust (`dcf -g "
                f"{self.address} --trust`, `Client({self.address!r}, trust=True)`, `%dcf gateway {self.address} "
                "--trust`)", uid=strangers[0])
        if self._anonymous:
            return None
        if strangers:  # trusted, but not ours: only a token the user gave, never their own
            return self._given_token
        return self._given_token or read_owner_token()

    @property
    def _metadata(self) -> tuple[tuple[str, str], ...] | None:
        self.check_owner()
        return (authorization(self._token),) if self._token else None

    # --- invoking ---------------------------------------------------------------

    def _request(self, name: str, data: Any) -> pb.InvokeServiceRequest:
        """The request that calls `name` with `data` (dcf_jupyter.mesh's client adds the call chain's depth)."""
        return pb.InvokeServiceRequest(Service=name, Input=to_bytes(data))

    def _requests(self, name: str, inputs: Iterable[Any]) -> Iterator[pb.InvokeServiceRequest]:
        """The requests of a stream (gRPC reads them on a thread of its own)."""
        for item in inputs:
            yield self._request(name, item)

    def call_reply(self, name: str, data: Any = b"", *, timeout: float | None = None, retries: int = 0) -> Reply:
        """Call a function once; the reply with its content type. A refusal for a full queue (Overloaded) is
        tried again up to `retries` times, backing off, within `timeout`."""
        request = self._request(name, data)
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            try:
                metadata = self._metadata  # first: the check may open a new channel
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                reply = self._raw_invoke(request, timeout=left, metadata=metadata)
                return Reply(reply.Output, reply.ContentType or BINARY)
            except grpc.RpcError as exc:
                error = rpc_error(exc, self.address, f"calling {name!r}", name)
            attempt += 1
            if not isinstance(error, Overloaded) or attempt > retries:
                raise error
            pause = backoff_s(error.retry_after, attempt)
            if deadline is not None and time.monotonic() + pause >= deadline:
                raise error
            time.sleep(pause)

    def call(self, name: str, data: Any = b"", *, timeout: float | None = None, retries: int = 0) -> Result:
        """Call a function once: str when the handler returned text, bytes for bytes, the parsed value for JSON;
        `retries`: tries again that many times, backing off, when the function's queue is full."""
        return self.call_reply(name, data, timeout=timeout, retries=retries).value()

    def invoke(self, name: str, data: Any = b"", *, timeout: float | None = None) -> str:
        """DCF's classic Invoke: the reply as a string (binary replies arrive base64-encoded)."""
        try:
            metadata = self._metadata
            return self._stub.Invoke(self._request(name, data), timeout=timeout, metadata=metadata).Msg
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.address, f"calling {name!r}", name) from None

    def stream(self, name: str, inputs: Iterable[Any], *, timeout: float | None = None) -> Iterator[bytes]:
        """Bidirectional stream (DCF's Invokes): one reply per input, in order, as they arrive."""
        metadata = self._metadata
        replies = self._stub.Invokes(self._requests(name, inputs), timeout=timeout, metadata=metadata)
        try:
            for reply in replies:
                yield reply.Output
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.address, f"streaming to {name!r}", name) from None
        finally:
            replies.cancel()

    def map(self, name: str, inputs: Iterable[Any], *, ordered: bool = True, return_exceptions: bool = False,
            retries: int = 0, timeout: float | None = None, progress: bool | None = None) -> Iterator[Result]:
        """Call `name` once per input, spread over its replicas; a generator of the results (text, bytes or
        parsed JSON), in input order unless `ordered=False`. Inputs are streamed: any iterable, a generator of
        unknown length too. A failed input is tried again `retries` times, then raised (DcfError), or handed
        back in its place with `return_exceptions=True`. `progress`: a bar (a widget in a notebook); by default
        shown in notebooks and on terminals. `timeout`: for the whole map."""
        return self._map(name, inputs, replies=False, ordered=ordered, return_exceptions=return_exceptions,
                         retries=retries, timeout=timeout, progress=progress)

    def map_replies(self, name: str, inputs: Iterable[Any], *, ordered: bool = True,
                    return_exceptions: bool = False, retries: int = 0, timeout: float | None = None,
                    progress: bool | None = None) -> Iterator[Reply | DcfError]:
        """`map`, each result as its Reply (bytes and content type)."""
        return self._map(name, inputs, replies=True, ordered=ordered, return_exceptions=return_exceptions,
                         retries=retries, timeout=timeout, progress=progress)

    def _map(self, name: str, inputs: Iterable[Any], *, replies: bool, retries: int, **options: Any) -> Iterator[Any]:
        _check_retries(retries)
        return map_results(self._stub.Map, self._metadata, self.address, name, inputs, replies=replies,
                           retries=retries, **options)

    def spawn(self, name: str, data: Any = b"", *, callback_url: str = "") -> FunctionCall:
        """Start one call that the gateway runs on its own and keeps (input and result, 24 h): returns at once,
        with the call's id; `.get()` its result later, from here or after a restart (FunctionCall.from_id).
        `callback_url`: the gateway POSTs the result there when it is done."""
        return self._spawn(name, [data], single=True, callback_url=callback_url)

    def spawn_map(self, name: str, inputs: Iterable[Any], *, retries: int = 0, callback_url: str = ""
                  ) -> FunctionCall:
        """A whole map as one spawned call: the inputs are sent (and kept) now, the gateway calls the function
        for each on its own; `.get()` gives the results in input order."""
        _check_retries(retries)
        return self._spawn(name, inputs, retries=retries, callback_url=callback_url)

    def _spawn(self, name: str, inputs: Iterable[Any], *, single: bool = False, retries: int = 0,
               callback_url: str = "") -> FunctionCall:
        sender = MapInputs(name, inputs, retries, single=single, callback_url=callback_url)
        try:
            metadata = self._metadata
            info = self._stub.Spawn(sender.requests(unpaced=True), timeout=MANAGEMENT_TIMEOUT_S * 10,
                                    metadata=metadata)
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.address, f"spawning a call of {name!r}", name) from None
        if sender.error is not None:
            raise sender.error
        return FunctionCall(self, info.Id)

    def call_status(self, call_id: str, *, wait: float = 0.0) -> CallStatus:
        """How a spawned call stands (once it finished, waiting up to `wait` seconds for that)."""
        timeout = MANAGEMENT_TIMEOUT_S + wait
        return CallStatus.from_pb(self._manage("GetCall", pb.CallRequest(Id=call_id, Wait=wait),
                                               f"asking for call {call_id}", timeout=timeout))

    def call_results(self, call_id: str, *, replies: bool = False, single: bool = False) -> Iterator[Any]:
        """A spawned call's results so far, in input order (a failed input as its DcfError, naming the input
        unless the call is `single`); each as its Reply with `replies`."""
        try:
            metadata = self._metadata
            for message in self._stub.CallResults(pb.CallRequest(Id=call_id), timeout=MANAGEMENT_TIMEOUT_S,
                                                  metadata=metadata):
                for result in message.Results:
                    yield result_value(result, self.address, "", replies=replies, single=single)
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.address, f"fetching the results of call {call_id}") from None

    def cancel_call(self, call_id: str) -> CallStatus:
        """Stop a spawned call: inputs not answered yet are not called."""
        return CallStatus.from_pb(self._manage("CancelCall", pb.CallRequest(Id=call_id), f"cancelling call {call_id}"))

    def call_stream(self, name: str, data: Any = b"", *, timeout: float | None = None) -> Iterator[Reply]:
        """Server streaming: one call whose handler yields several replies."""
        metadata = self._metadata
        replies = self._stub.InvokeStream(self._request(name, data), timeout=timeout, metadata=metadata)
        try:
            for reply in replies:
                yield Reply(reply.Output, reply.ContentType or BINARY)
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.address, f"calling {name!r}", name) from None
        finally:
            replies.cancel()

    # --- managing ---------------------------------------------------------------

    def _manage(self, rpc: str, request: Any, subject: str, timeout: float | None = MANAGEMENT_TIMEOUT_S,
                function: str = "") -> Any:
        try:
            metadata = self._metadata
            return getattr(self._stub, rpc)(request, timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            raise rpc_error(exc, self.address, subject, function) from None

    def deploy(
        self, function: str | Path | FunctionSpec, name: str | None = None, *, update: bool = True,
        replace: bool = False, backend: str | None = None, replicas: int | None = None,
        env: dict[str, str] | None = None, timeout: float | None = None,
    ) -> DeployResult:
        """Deploy a function folder (or its config.yaml; `name` picks one of several functions), or a FunctionSpec
        already read; the result says what the gateway did and how the function stands now.

        An existing function is updated in place (its old replicas serve until the new
        ones are ready) unless `update` is False (then FunctionExists) or `replace`
        is True (deleted first, as `faas-cli deploy --replace`).
        """
        # Imported here: a replica's mesh client (inside images, with only the worker's packages) never deploys.
        from ..definition.check import check_handler
        from ..definition.source import pack_folder
        from ..definition.spec import FunctionSpec, load_config

        spec = function if isinstance(function, FunctionSpec) else load_config(function).function(name)
        if spec.root is None:
            raise DeployError(f"{spec.name}: the function has no folder to deploy")
        check_handler(spec)  # the mistakes `dcf function build` names, named before anything is uploaded
        request = pb.CreateFunctionRequest(
            Service=spec.name,
            Image=spec.image,
            EnvVars=env or {},
            Labels=spec.labels,
            Annotations={**spec.annotations, SOURCE_FOLDER: str(spec.root)},
            Limits=pb.FunctionResources(Memory=spec.limits.memory, CPU=spec.limits.cpu, GPU=str(spec.limits.gpu)),
            Source=pack_folder(spec.root, limit=self.max_message_size - 64 * 1024),
            Backend=backend or spec.backend,
            Replicas=replicas or spec.replicas,
        )
        if replace:
            with contextlib.suppress(FunctionNotFound):
                self.delete(spec.name)
        try:
            try:
                message = self._manage("Deploy", request, f"deploying {spec.name!r}", timeout, spec.name).Msg
                updated = False
            except FunctionExists:
                if not update:
                    raise
                message = self._manage("Update", request, f"updating {spec.name!r}", timeout, spec.name).Msg
                updated = True
        except DeployError as exc:
            exc.detail = in_folder(exc.detail, spec.root)
            raise
        return DeployResult(self.get(spec.name), message, updated)

    def list(self) -> list[FunctionInfo]:
        """Deployed functions."""
        reply = self._manage("List", pb.Empty(), "listing functions")
        return [FunctionInfo.from_pb(fn) for fn in reply.Functions]

    def get(self, name: str) -> FunctionInfo:
        """One deployed function (FunctionNotFound if it is not)."""
        return FunctionInfo.from_pb(self._manage("GetMeta", pb.FunctionRequest(FunctionName=name), f"reading {name!r}"))

    def logs(self, name: str, lines: int = 200) -> str:
        """The last `lines` lines of the function's log (its workers' stdout and stderr)."""
        request = pb.FunctionRequest(FunctionName=name, Lines=lines)
        return self._manage("GetLog", request, f"reading logs of {name!r}").Msg

    def delete(self, name: str) -> None:
        """Stop and remove a function (FunctionNotFound if it is not deployed)."""
        self._manage("Delete", pb.DeleteFunctionRequest(FunctionName=name), f"deleting {name!r}")

    def scale(self, name: str, replicas: int, *, timeout: float | None = None) -> FunctionInfo:
        """Run `replicas` replicas of a function (ready before this returns); how it stands now."""
        request = pb.ScaleServiceRequest(ServiceName=name, Replicas=replicas)
        self._manage("ReplicaUpdate", request, f"scaling {name!r}", timeout)
        return self.get(name)

    def create_secret(self, name: str, values: dict[str, str | bytes]) -> str:
        """Create secret `name` holding `values` (key -> value), or replace its keys if it exists (the functions
        using it restart with the new values); the gateway's one-line account."""
        request = pb.SecretRequest(Name=name, Values={k: v.encode() if isinstance(v, str) else bytes(v)
                                                      for k, v in values.items()})
        # No timeout of its own: replacing a secret restarts the functions that use it, as long as deploys take.
        return str(self._manage("CreateSecret", request, f"storing secret {name!r}", timeout=None).Msg)

    def list_secrets(self) -> builtins.list[SecretInfo]:
        """The gateway's secrets: names, keys and users, never values."""
        return [SecretInfo.from_pb(s) for s in self._manage("ListSecrets", pb.Empty(), "listing secrets").Secrets]

    def delete_secret(self, name: str) -> str:
        """Delete secret `name` (InvalidArgument if there is none, or while a deployed function uses it)."""
        try:
            return str(self._manage("DeleteSecret", pb.SecretRequest(Name=name), f"deleting secret {name!r}").Msg)
        except (DeployError, FunctionNotFound) as exc:  # the status codes of functions; this is about a secret
            raise InvalidArgument(str(exc)) from None

    def info(self) -> dict[str, Any]:
        """What the gateway says about itself (version, backends, address...)."""
        text = self._manage("Info", pb.Empty(), "asking for gateway info").Msg
        try:
            return dict(json.loads(text))
        except ValueError:
            return {"info": text}

    def health(self, timeout: float = 2.0) -> bool:
        """True if a gateway answers HealthCheck within `timeout` seconds (ForeignGateway: another user's
        listens there, and was not asked)."""
        try:
            metadata = self._metadata
            return self._stub.HealthCheck(pb.Empty(), timeout=timeout, metadata=metadata).Msg == HEALTHY
        except (grpc.RpcError, GatewayUnavailable):
            return False

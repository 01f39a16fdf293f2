"""The secret RPCs: CreateSecret (which rolls the functions that use a rotated secret), ListSecrets (names, keys
and users, never values) and DeleteSecret (refused while a deployed function names it). All need the gateway's
token on every address: auth.py lists none of them as open."""

from __future__ import annotations

import logging

import grpc

from ..errors import InvalidArgument, brief
from ..protocol import gateway_pb2 as pb
from .core import GatewayCore
from .deploy import Deployer
from .rpc import Abort, unary_rpc, valid_secret_name
from .secret_store import SecretMissing

log = logging.getLogger("dcf.gateway")


class SecretKeeper:
    """The gateway's secret RPCs, over its store and its deployer."""

    def __init__(self, core: GatewayCore, deployer: Deployer) -> None:
        self.core = core
        self.deployer = deployer

    def users(self, secret: str) -> list[str]:
        """Deployed functions whose running revision names `secret`."""
        return sorted(name for name, deployment in self.core.deployments.items()
                      if secret in deployment.spec.function.secrets)

    @unary_rpc
    async def CreateSecret(self, request: pb.SecretRequest, context: grpc.aio.ServicerContext) -> pb.Message:
        name = valid_secret_name(request.Name)
        try:
            replaced = self.core.secrets.put(name, dict(request.Values))
        except InvalidArgument as exc:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        keys = len(request.Values)
        said = f"{'Updated' if replaced else 'Created'}: secret {name} ({keys} key{'s' if keys != 1 else ''})"
        log.info("%s secret %s (keys: %s)", "updated" if replaced else "created", name,
                 ", ".join(sorted(request.Values)))
        if not replaced:
            return pb.Message(Msg=said)
        rolled, kept = [], []
        for function in self.users(name):  # they hold the old values: start them again with the new ones
            try:
                await self.deployer.roll(function)
                rolled.append(function)
            except Exception as exc:  # noqa: BLE001 - said, and the others still roll
                why = exc.message if isinstance(exc, Abort) else str(exc)
                log.warning("rolling %s for secret %s failed: %s", function, name, why)
                kept.append(f"{function} kept its old values ({why})")
        if rolled:
            said += f"; restarted {', '.join(rolled)} with the new values"
        return pb.Message(Msg="; ".join([said, *kept]))

    @unary_rpc
    async def ListSecrets(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.SecretList:
        return pb.SecretList(Secrets=[
            pb.SecretInfo(Name=s.name, Keys=s.keys, UpdatedAt=s.updated, UsedBy=self.users(s.name))
            for s in self.core.secrets.summaries()])

    @unary_rpc
    async def ReplicaSecrets(self, request: pb.FunctionRequest, context: grpc.aio.ServicerContext) -> pb.SecretValues:
        """The values of the secrets a deployed function names, for its replicas on a cluster only: the call must
        carry that function's replica credential (not the owner's token: values go in, never out)."""
        name = request.FunctionName
        policy = self.core.policy
        if policy is None or policy.credential_function(context.invocation_metadata()) != name:
            raise Abort(grpc.StatusCode.PERMISSION_DENIED,
                        f"only the replicas of {brief(name)} may fetch its secrets, with their own credential")
        deployment = self.core.deployments.get(name)
        # The serving revision's, and the newest one's (its replicas fetch while it starts, before it serves).
        wanted = dict.fromkeys([*(deployment.spec.function.secrets if deployment is not None else []),
                                *self.deployer.newest_secrets.get(name, [])])
        values = []
        for secret in wanted:
            try:
                values.append(pb.SecretRequest(Name=secret, Values=self.core.secrets.get(secret)))
            except SecretMissing:
                raise Abort(grpc.StatusCode.FAILED_PRECONDITION, f"the secret {secret!r} is gone") from None
        return pb.SecretValues(Secrets=values)

    @unary_rpc
    async def DeleteSecret(self, request: pb.SecretRequest, context: grpc.aio.ServicerContext) -> pb.Message:
        name = valid_secret_name(request.Name)
        users = self.users(name)
        if users:
            raise Abort(grpc.StatusCode.FAILED_PRECONDITION,
                        f"secret {name!r} is used by {', '.join(users)}: delete those functions, or deploy them "
                        "without it, first (their next start would fail)")
        if not self.core.secrets.delete(name):
            raise Abort(grpc.StatusCode.NOT_FOUND, f"there is no secret {name!r}")
        log.info("deleted secret %s", name)
        return pb.Message(Msg=f"Deleted: secret {name}")

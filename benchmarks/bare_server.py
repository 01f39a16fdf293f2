"""The baseline: a bare grpcio server answering pb.Gateway's Invoke/Invokes with the echo Handler in-process.

    python benchmarks/bare_server.py PORT_FILE [--aio]

Writes its bound port to PORT_FILE, serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
from concurrent import futures
from pathlib import Path

import grpc

from dcf_jupyter.protocol import gateway_pb2 as pb
from dcf_jupyter.protocol import gateway_pb2_grpc as pb_grpc
from dcf_jupyter.settings import DEFAULT_MAX_MESSAGE_SIZE, grpc_options
from dcf_jupyter.worker.handler import Request, load_handler

ECHO = Path(__file__).resolve().parent.parent / "functions" / "echo" / "src"


class Servicer(pb_grpc.GatewayServicer):
    def __init__(self) -> None:
        self.handler = load_handler(ECHO)

    def Invoke(self, request, context):
        return pb.Message(Msg=self.handler(Request(request.Input)).decode())

    def InvokeBytes(self, request, context):
        return pb.Messages(Output=self.handler(Request(request.Input)))

    def Invokes(self, requests, context):
        for request in requests:
            yield pb.Messages(Output=self.handler(Request(request.Input)))


class AioServicer(pb_grpc.GatewayServicer):
    def __init__(self) -> None:
        self.handler = load_handler(ECHO)

    async def Invoke(self, request, context):
        return pb.Message(Msg=self.handler(Request(request.Input)).decode())

    async def InvokeBytes(self, request, context):
        return pb.Messages(Output=self.handler(Request(request.Input)))

    async def Invokes(self, requests, context):
        async for request in requests:
            yield pb.Messages(Output=self.handler(Request(request.Input)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port_file", type=Path)
    parser.add_argument("--aio", action="store_true")
    args = parser.parse_args()
    options = grpc_options(DEFAULT_MAX_MESSAGE_SIZE)
    if args.aio:
        async def serve() -> None:
            server = grpc.aio.server(options=options)
            pb_grpc.add_GatewayServicer_to_server(AioServicer(), server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            args.port_file.write_text(str(port))
            await server.wait_for_termination()

        asyncio.run(serve())
    else:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=options)
        pb_grpc.add_GatewayServicer_to_server(Servicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        args.port_file.write_text(str(port))
        server.wait_for_termination()


if __name__ == "__main__":
    main()

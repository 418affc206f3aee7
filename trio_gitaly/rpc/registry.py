"""The method table: which handler serves each RPC, read from the services' descriptors.

A servicer is any object with one async method per RPC, named as in the .proto. The
descriptor (from the generated `_pb2` module) supplies everything else: message types,
streaming shape and Gitaly's op_type annotation. purerpc's generated servicers are not
used because they fix the handler signature to (message[, request]), which has no room
for the call object that carries deadline, metadata and the response stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.rpc.call import Handler, MethodInfo, ServerCall
from trio_gitaly.rpc.gen.gitaly import lint_pb2

Route = tuple[MethodInfo, Handler]


def _operation(method: MethodDescriptor) -> str:
    options = method.GetOptions()
    # The generated stubs type extensions loosely; the key is the op_type extension.
    if not options.HasExtension(lint_pb2.op_type):  # type: ignore[arg-type]
        return ""
    op: int = options.Extensions[lint_pb2.op_type].op  # type: ignore[index]
    return str(lint_pb2.OperationMsg.Operation.Name(op)).lower()


def _unimplemented(method: MethodInfo) -> Handler:
    async def handler(request: Any, call: ServerCall) -> Message | None:
        raise GitalyError(StatusCode.UNIMPLEMENTED, f"method {method.name} not implemented")

    return handler


def routes(service: ServiceDescriptor, servicer: object) -> dict[str, Route]:
    """Map each method path of `service` ("/pkg.Service/Method") to its info and handler.

    Methods the servicer lacks answer UNIMPLEMENTED, as Gitaly's embedded
    Unimplemented servers do.
    """
    table: dict[str, Route] = {}
    for method in service.methods:
        info = MethodInfo(
            service=service.full_name,
            name=method.name,
            request_type=message_factory.GetMessageClass(method.input_type),
            response_type=message_factory.GetMessageClass(method.output_type),
            client_streaming=method.client_streaming,
            server_streaming=method.server_streaming,
            operation=_operation(method),
        )
        handler = getattr(servicer, method.name, None)
        table[info.full_name] = (info, handler if handler is not None else _unimplemented(info))
    return table


def merge(tables: Iterable[dict[str, Route]]) -> dict[str, Route]:
    """One table from several services' tables; a path served twice is a bug."""
    merged: dict[str, Route] = {}
    for table in tables:
        for path, route in table.items():
            if path in merged:
                raise ValueError(f"{path} is registered twice")
            merged[path] = route
    return merged

"""The names of gRPC calls, as a client sees them."""

from __future__ import annotations

import grpc
from google.protobuf.descriptor import MethodDescriptor


def full_method_name(method: MethodDescriptor) -> str:
    """`/pkg.Service/Method`: the method as gRPC names it on the wire."""
    return f"/{method.containing_service.full_name}/{method.name}"


def method_name(details: grpc.aio.ClientCallDetails) -> str:
    """The call's full method name, `/pkg.Service/Method`."""
    method: str | bytes = details.method
    # grpc.aio passes the method as bytes, though the stubs say str.
    return method.decode() if isinstance(method, bytes) else method

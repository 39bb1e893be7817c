"""What our client interceptors read of the call they intercept."""

from __future__ import annotations

import grpc


def method_name(details: grpc.aio.ClientCallDetails) -> str:
    """The call's full method name, `/pkg.Service/Method`."""
    method: str | bytes = details.method
    # grpc.aio passes the method as bytes, though the stubs say str.
    return method.decode() if isinstance(method, bytes) else method

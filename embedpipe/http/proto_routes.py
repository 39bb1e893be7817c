"""HTTP routes whose messages are in protos: one table both serves and describes them.

A `ProtoRoute` names the RPC it is the HTTP form of. Its request message is read from the
path, the query and (for POST) the JSON body, by the protos' JSON mapping
(embedpipe/protojson.py); the answer, or one field of it, is written back the same way. The
OpenAPI documents are generated from the same table and the protos (embedpipe/http/openapi.py),
so what is served and what is described cannot drift. A route whose body has no proto form
(a multipart upload) brings its own handler and describes that extra content itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from embedpipe.http.errors import HttpError
from embedpipe.http.json_body import read_json_object
from embedpipe.protojson import JsonFieldError, from_json, to_json
from embedpipe.violations import FieldViolation

M = TypeVar("M", bound=Message)
#: Calls the operation behind a route with the request's message; answers its reply.
Call = Callable[[web.Request, Any], Awaitable[Message]]
#: Methods whose request message comes in a JSON body.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def rpc(service: ServiceDescriptor, name: str) -> MethodDescriptor:
    found: MethodDescriptor = service.methods_by_name[name]
    return found


@dataclass(frozen=True)
class ProtoRoute:
    """`method path` as the HTTP form of `rpc`."""

    method: str
    path: str
    rpc: MethodDescriptor
    #: The operation; or `handler`, for a route that reads its request by hand.
    call: Call | None = None
    handler: Handler | None = None
    #: The success status; 204 answers no body.
    status: int = 200
    #: The field of the reply that is the HTTP body (None: the whole reply).
    answer: str | None = None
    #: The message of the JSON body, when it is not the RPC's input (a streamed upload's).
    body_message: type[Message] | None = None
    #: Request fields a call must set (proto3 has no `required`; the core checks them).
    required: tuple[str, ...] = ()
    #: The error statuses the route may answer, each with why (empty: the general reason).
    errors: Mapping[int, str] = field(default_factory=dict)
    #: Request content besides JSON (media type → OpenAPI media type object).
    extra_content: Mapping[str, Any] = field(default_factory=dict)
    #: OpenAPI parameters besides the message's (e.g. a header).
    parameters: tuple[Mapping[str, Any], ...] = ()
    tag: str = ""

    @property
    def path_fields(self) -> tuple[str, ...]:
        return tuple(
            part[1:-1]
            for part in self.path.split("/")
            if part.startswith("{") and part.endswith("}")
        )

    @property
    def request_message(self) -> type[Message]:
        """The message an HTTP request carries."""
        found: type[Message] = self.body_message or message_factory.GetMessageClass(
            self.rpc.input_type
        )
        return found

    @property
    def has_body(self) -> bool:
        """Whether the request has a JSON body: a POST's, unless the path holds all of its
        message (e.g. `POST /tasks/{task_id}/cancel`)."""
        fields = {f.name for f in self.request_message.DESCRIPTOR.fields}
        return self.method in BODY_METHODS and not fields <= set(self.path_fields)

    def handle(self) -> Handler:
        if self.handler is not None:
            return self.handler
        if self.call is None:
            raise ValueError(f"{self.method} {self.path}: a route needs a call or a handler")
        call, message_class, has_body = self.call, self.request_message, self.has_body

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await read_json_object(request) if has_body else {}
            reply = await call(request, read_message(request, message_class, body))
            if self.status == 204:
                return web.Response(status=204)
            answer = getattr(reply, self.answer) if self.answer else reply
            return web.json_response(to_json(answer), status=self.status)

        return handle


def read_message(request: web.Request, message_class: type[M], body: Mapping[str, Any]) -> M:
    """The request's message: the body's fields, the query's, and the path's (which win);
    400 naming the field whose value does not fit."""
    try:
        return from_json({**body, **request.query, **request.match_info}, message_class)
    except JsonFieldError as exc:
        raise HttpError.bad_request(
            [FieldViolation(field, description) for field, description in exc.violations]
        ) from None


def add_proto_routes(app: web.Application, routes: Iterable[ProtoRoute]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, route.handle())

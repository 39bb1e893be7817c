"""One trace per document, across processes and queues (OpenTelemetry, W3C trace context).

`configure_tracing(service)` at a process's start turns tracing on when the standard
variables ask for an OTLP export (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`
keep it off): spans go over OTLP/HTTP, batched (`OTEL_BSP_*`), the exporter reading its
own `OTEL_EXPORTER_OTLP_*` settings. Otherwise `enabled()` is false and every helper here
returns at once: no span, no header, no field.

A trace's context travels as a W3C `traceparent` string: in HTTP headers and gRPC metadata,
in a job's stream entry, in a callback's JSON (`traceparent`, a field added to the seed's).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
_PROPAGATOR = TraceContextTextMapPropagator()
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class _State:
    """Whether this process exports spans (set once, at its start)."""

    enabled = False


_state = _State()


def enabled() -> bool:
    return _state.enabled


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the standard variables ask for an OTLP trace export."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() not in ("otlp", ""):
        return False
    return any(environ.get(name, "").strip() for name in _ENDPOINTS)


def configure_tracing(service: str, environ: Mapping[str, str] | None = None) -> None:
    """Export this process's spans over OTLP/HTTP as `service` (unless OTEL_SERVICE_NAME
    names it), when the environment asks for it; else leave tracing off."""
    environ = os.environ if environ is None else environ
    if not wanted(environ):
        return
    # Imported only when used: the SDK and the exporter cost start-up time otherwise.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    named = {} if environ.get("OTEL_SERVICE_NAME", "").strip() else {SERVICE_NAME: service}
    provider = TracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _state.enabled = True
    log.info("tracing on service=%s exporter=otlp/http", service)


@contextlib.contextmanager
def traced_process(service: str) -> Iterator[None]:
    """`configure_tracing(service)` for the process's life; the spans still batched are
    sent at its clean end."""
    configure_tracing(service)
    try:
        yield
    finally:
        provider = trace.get_tracer_provider()
        if _state.enabled and hasattr(provider, "shutdown"):
            provider.shutdown()


def context_of(traceparent: str | bytes | None) -> Context | None:
    """The remote parent a `traceparent` names (None: none, or not a valid one)."""
    if not traceparent:
        return None
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("ascii", "replace")
    extracted = _PROPAGATOR.extract({TRACEPARENT: traceparent})
    valid = trace.get_current_span(extracted).get_span_context().is_valid
    return extracted if valid else None


def context_from_headers(headers: Mapping[str, str | bytes]) -> Context | None:
    """The remote parent of an incoming HTTP request or gRPC call, if it names one."""
    return context_of(headers.get(TRACEPARENT))


def traceparent() -> str:
    """The current span's `traceparent` ("" when tracing is off or no span is current)."""
    if not _state.enabled:
        return ""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT, "")


def traceparent_of(span: Span) -> str:
    """`span`'s own `traceparent`."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT, "")


def start_span(
    name: str,
    *,
    parent: str,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> Span | None:
    """A span started now and ended by the caller (`end()`), never current: for work that
    overlaps other spans' (the jobs of one batch). None when tracing is off."""
    if not _state.enabled:
        return None
    tracer = trace.get_tracer("embedpipe")
    return tracer.start_span(name, context=context_of(parent), kind=kind, attributes=attributes)


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: str | bytes | Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int | float | bool] | None = None,
    links: tuple[str, ...] = (),
) -> Iterator[Span | None]:
    """A span around the block, current inside it (None and nothing else when tracing is
    off). `parent`: a traceparent or a context (default: the current span); `links`:
    traceparents of other spans the work belongs to too (the jobs sharing a batch)."""
    if not _state.enabled:
        yield None
        return
    context = parent if isinstance(parent, Context) else context_of(parent)
    linked = [
        Link(trace.get_current_span(c).get_span_context()) for c in map(context_of, links) if c
    ]
    tracer = trace.get_tracer("embedpipe")
    with tracer.start_as_current_span(
        name, context=context, kind=kind, attributes=attributes, links=linked
    ) as current:
        yield current

"""OpenTelemetry spans: one per run of a flow, one per step body inside it (the otel extra).

A worker actor imports this module only when the traces setting names an exporter, so without
it nothing of OpenTelemetry is imported. `FlowTracer` is an executor Observer; an in-process
`Worker(..., observer=FlowTracer(tracer))` traces with any tracer the program set up.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points

from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, Status, StatusCode

from ..core import FlowRecord
from ..errors import ConfigError

__all__ = ["FlowTracer", "start_tracing", "EXPORTERS"]

EXPORTERS = "opentelemetry_traces_exporter"  # the entry-point group OTEL_TRACES_EXPORTER names come from
FAILED = frozenset({"FAILED", "error", "fenced", "failed"})


class FlowTracer:
    """Starts a span "flow TYPE" per run of a flow and a child span "step NAME" per step body run."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def flow(self, flow: FlowRecord) -> _FlowSpan:
        span = self.tracer.start_span(f"flow {flow.flow_type}", attributes={
            "ergon.flow_id": flow.flow_id, "ergon.flow_type": flow.flow_type, "ergon.attempt": flow.attempt,
            "ergon.epoch": flow.epoch, "ergon.worker_id": flow.owner or ""})
        return _FlowSpan(self.tracer, span, flow)


class _Current:
    """A span that is the current one (in this task's context) from its start to its end, so the
    spans that code run inside it starts (an instrumented HTTP client's) are its children."""

    __slots__ = ("span", "_token")

    def __init__(self, span: Span) -> None:
        self.span = span
        self._token = context.attach(trace.set_span_in_context(span))

    def end(self, outcome: str) -> None:
        context.detach(self._token)
        self.span.set_attribute("ergon.outcome", outcome)
        if outcome in FAILED:
            self.span.set_status(Status(StatusCode.ERROR, outcome))
        self.span.end()


class _FlowSpan(_Current):
    __slots__ = ("tracer", "flow")

    def __init__(self, tracer: trace.Tracer, span: Span, flow: FlowRecord) -> None:
        super().__init__(span)
        self.tracer = tracer
        self.flow = flow

    def step(self, position: int, name: str, try_number: int) -> _Current:
        flow = self.flow
        attributes: dict[str, str | int] = {
            "ergon.flow_id": flow.flow_id, "ergon.flow_type": flow.flow_type, "ergon.attempt": flow.attempt,
            "ergon.worker_id": flow.owner or "", "ergon.step": name, "ergon.position": position,
            "ergon.try": try_number}
        parent = trace.set_span_in_context(self.span)
        return _Current(self.tracer.start_span(f"step {name}", context=parent, attributes=attributes))


def start_tracing(exporter_name: str) -> tuple[FlowTracer, TracerProvider]:
    """A tracer exporting through the span exporter installed as `exporter_name` ("console",
    "otlp", ...: the names OTEL_TRACES_EXPORTER takes), and its provider (shut it down to flush).
    The exporter reads its own OTEL_EXPORTER_* variables; OTEL_SERVICE_NAME names the service
    (default ergon_actors).

    Raises:
        ConfigError: no exporter of that name is installed.
    """
    found = entry_points(group=EXPORTERS, name=exporter_name)
    if not found:
        names = sorted(e.name for e in entry_points(group=EXPORTERS))
        raise ConfigError(f"no OpenTelemetry span exporter named {exporter_name!r} is installed (installed: "
                          f"{', '.join(names) or 'none'}; 'otlp' comes with opentelemetry-exporter-otlp)")
    exporter: SpanExporter = next(iter(found)).load()()
    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "ergon_actors"}
    provider = TracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return FlowTracer(provider.get_tracer("ergon_actors")), provider

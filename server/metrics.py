"""Prometheus metrics of ``demoai serve`` (``GET /metrics``), one registry per app.

Names follow what vLLM and llama-server export, under ``demoai_``:

- ``demoai_http_requests_total{method,route,status}`` and
  ``demoai_http_request_duration_seconds{route}``: every request, by route template;
- ``demoai_model_requests_total{route,model}``, ``demoai_model_errors_total{route,model,code}``;
- ``demoai_time_to_first_token_seconds{model}``, ``demoai_time_per_output_token_seconds{model}``
  and ``demoai_e2e_request_latency_seconds{model}`` histograms;
- ``demoai_prompt_tokens_total{model}``, ``demoai_generation_tokens_total{model}`` (tokens/s is
  ``rate()`` of these);
- ``demoai_requests_waiting`` (queued for a model: loading or another call holds it) and
  ``demoai_requests_running`` gauges;
- ``process_cpu_seconds_total``, ``process_resident_memory_bytes`` ... from prometheus_client's
  process collector.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               ProcessCollector, generate_latest)

__all__ = ["ServeMetrics", "CallMetrics", "install_metrics"]

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_PER_TOKEN = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)


class ServeMetrics:
    """The app's collectors, in their own registry (two apps in one process never share)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        self.http_requests = Counter("demoai_http_requests", "HTTP requests answered.",
                                     ["method", "route", "status"], registry=r)
        self.http_duration = Histogram("demoai_http_request_duration_seconds",
                                       "Seconds to answer an HTTP request (to its headers).",
                                       ["route"], buckets=_LATENCY, registry=r)
        self.model_requests = Counter("demoai_model_requests", "Model calls started.",
                                      ["route", "model"], registry=r)
        self.model_errors = Counter("demoai_model_errors", "Model calls that failed.",
                                    ["route", "model", "code"], registry=r)
        self.ttft = Histogram("demoai_time_to_first_token_seconds",
                              "Seconds from a call's start to its first token.", ["model"],
                              buckets=_LATENCY, registry=r)
        self.per_token = Histogram("demoai_time_per_output_token_seconds",
                                   "Seconds per generated token after the first.", ["model"],
                                   buckets=_PER_TOKEN, registry=r)
        self.e2e = Histogram("demoai_e2e_request_latency_seconds",
                             "Seconds of a model call, queue included.", ["model"],
                             buckets=_LATENCY, registry=r)
        self.prompt_tokens = Counter("demoai_prompt_tokens", "Prompt tokens processed.",
                                     ["model"], registry=r)
        self.generation_tokens = Counter("demoai_generation_tokens", "Tokens generated.",
                                         ["model"], registry=r)
        self.waiting = Gauge("demoai_requests_waiting",
                             "Model calls waiting for their model (loading or busy).", registry=r)
        self.running = Gauge("demoai_requests_running", "Model calls running.", registry=r)

    def begin(self, route: str, model: str) -> "CallMetrics":
        """Account one model call, queued until its ``started()``; ``finish()`` ends it."""
        self.model_requests.labels(route, model).inc()
        self.waiting.inc()
        return CallMetrics(self, route, model)

    @contextmanager
    def call(self, route: str, model: str) -> Iterator["CallMetrics"]:
        """:meth:`begin` for a ``with`` block; an exception counts as an error (by ``code``)."""
        cm = self.begin(route, model)
        try:
            yield cm
        except BaseException as e:
            cm.fail(e)
            raise
        finally:
            cm.finish()

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


class CallMetrics:
    """One call's gauges and observations (see :meth:`ServeMetrics.call`)."""

    def __init__(self, m: ServeMetrics, route: str, model: str) -> None:
        self.m, self.route, self.model = m, route, model
        self.t0 = time.perf_counter()
        self.state = "waiting"

    def started(self) -> None:
        """The call holds its model now (thread-safe: gauges are)."""
        if self.state == "waiting":
            self.m.waiting.dec()
            self.m.running.inc()
            self.state = "running"

    def observe(self, prompt_tokens: int, completion_tokens: int, timings: dict | None) -> None:
        """Token counts and the backend's timings (``ttft_s``, ``total_s``) of a finished call."""
        m, tm = self.m, timings or {}
        m.prompt_tokens.labels(self.model).inc(max(0, prompt_tokens))
        m.generation_tokens.labels(self.model).inc(max(0, completion_tokens))
        ttft, total = tm.get("ttft_s"), tm.get("total_s")
        if ttft is not None and completion_tokens > 0:
            m.ttft.labels(self.model).observe(ttft)
        if ttft is not None and total is not None and completion_tokens > 1 and total > ttft:
            m.per_token.labels(self.model).observe((total - ttft) / (completion_tokens - 1))

    def fail(self, exc: BaseException) -> None:
        """Count ``exc`` as this call's error."""
        code = getattr(exc, "code", None) or type(exc).__name__
        self.m.model_errors.labels(self.route, self.model, str(code)).inc()

    def finish(self) -> None:
        """End the call (idempotent): gauges down, end-to-end latency observed."""
        if self.state == "waiting":
            self.m.waiting.dec()
        elif self.state == "running":
            self.m.running.dec()
        if self.state != "done":
            self.m.e2e.labels(self.model).observe(time.perf_counter() - self.t0)
        self.state = "done"


def _route(scope: dict) -> str:
    """The route template a request matched (bounded label values), else ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def install_metrics(app: FastAPI) -> ServeMetrics:
    """Give ``app`` a :class:`ServeMetrics` (``app.state.metrics``), the ``GET /metrics`` route
    and the middleware that counts every request."""
    metrics = ServeMetrics()
    app.state.metrics = metrics

    @app.get("/metrics", tags=["server"], include_in_schema=False)
    def prometheus() -> Response:
        """Prometheus text exposition of this server's metrics."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = _route(request.scope)
            metrics.http_requests.labels(request.method, route, str(status)).inc()
            metrics.http_duration.labels(route).observe(time.perf_counter() - t0)

    return metrics

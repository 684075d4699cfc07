"""Logger, metrics and tracer: created once, configured here only."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

F = TypeVar("F", bound=Callable[..., Any])

SERVICE = "booking"

# The Chalice app is created with configure_logs=False and a different name, so
# each line is printed once, as JSON.
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))

# Modules under chalicelib log through the standard library; route them through
# the same handler and formatter, so correlation ids and keys appear on their lines too.
_lib_logger = logging.getLogger("chalicelib")
_lib_logger.handlers = [logger.registered_handler]
_lib_logger.setLevel(logger.log_level)
_lib_logger.propagate = False

# The tracer logs every exception a traced method raises, tracebacks included, at
# ERROR: refusals (4xx) are ordinary here, and real errors are logged by the views.
logging.getLogger("aws_lambda_powertools.tracing.tracer").setLevel(logging.CRITICAL)

_metrics_lock = threading.Lock()
_metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BabysittingBooking"),
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE),
)


class PowertoolsMetrics:
    """The service's metrics port, backed by CloudWatch EMF."""

    def count(self, name: str, value: int = 1) -> None:
        if value:
            with _metrics_lock:
                _metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def flush_metrics() -> None:
    with _metrics_lock:
        if _metrics.metric_set:
            _metrics.flush_metrics()
            # With POWERTOOLS_METRICS_DISABLED, flush_metrics keeps the values; left
            # there they pile up and powertools prints them anyway at 100 per metric.
            _metrics.clear_metrics()


def start_invocation(correlation_id: str | None) -> None:
    """Forgets keys from the previous invocation (they persist otherwise)."""
    logger.clear_state()
    logger.set_correlation_id(correlation_id)


def append_keys(**keys: Any) -> None:
    logger.append_keys(**{k: v for k, v in keys.items() if v is not None})


_tracer: Tracer | None = None
_tracer_lock = threading.Lock()


def tracer() -> Tracer:
    """The Tracer, created when the service is first wired: it imports the X-Ray SDK
    (~0.1 s), which the authorizer and a request refused before any use case never need."""
    global _tracer
    with _tracer_lock:
        if _tracer is None:
            from aws_lambda_powertools import Tracer

            _tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))
        return _tracer


def traced(fn: F) -> F:
    return tracer().capture_method(fn)

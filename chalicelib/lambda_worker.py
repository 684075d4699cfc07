"""The decline worker as a Lambda handler of its own: the worker's path without Chalice or the routes.

The packaged template points the worker function's ``Handler`` here
(tools/deploy/templates.py), so its cold start does not import ``app.py``, Chalice and the
API's modules. It does exactly what ``app.decline_worker`` does with the raw SQS event
(Chalice hands that one ``event.to_dict()``); the ``chalice deploy`` path keeps
``app.decline_worker``; tests hold the two to the same answers.
"""

from __future__ import annotations

from typing import Any

from chalicelib import bootstrap
from chalicelib.observability import PowertoolsMetrics, flush_metrics, start_invocation
from chalicelib.worker import handle_decline_batch


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    start_invocation(getattr(context, "aws_request_id", None))
    try:
        return handle_decline_batch(
            event,
            context,
            bootstrap.service(),
            partial_responses=bootstrap.partial_batch_responses(),
            metrics=PowertoolsMetrics(),
            dead_letters=bootstrap.dead_letters(),
        )
    finally:
        flush_metrics()

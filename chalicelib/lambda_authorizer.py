"""The API's TOKEN authorizer as a Lambda handler of its own: PyJWT and the standard library only.

The packaged template points the authorizer function's ``Handler`` here
(tools/deploy/templates.py), so its cold start does not import ``app.py`` with boto3,
Chalice and powertools. It answers exactly what ``app.token_authorizer`` answers through
Chalice (``AuthResponse.to_dict``): the same verifier (chalicelib.auth, configured from
the same settings), the same principal, context and IAM policy document. The ``chalice
deploy`` path keeps ``app.token_authorizer``; tests hold the two to the same answers.

Logs are JSON lines, as powertools writes them; the verifier's JWKS metrics are written
in CloudWatch's embedded metric format under the stage's namespace.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

from chalicelib.auth import InvalidToken, JwksSource, TokenVerifier, caller_to_context
from chalicelib.config import get_settings

_SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "booking")
_lock = threading.Lock()
_verifier: TokenVerifier | None = None


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "level": record.levelname,
            "location": f"{record.funcName}:{record.lineno}",
            "message": record.getMessage(),
            "timestamp": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "service": _SERVICE,
        }
        line.update(getattr(record, "keys", {}))
        return json.dumps(line, default=str)


class _Stdout(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stdout`` is at the time (Lambda's, or a test's capture)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stdout)
        super().emit(record)


def _logger() -> logging.Logger:
    handler = _Stdout()
    handler.setFormatter(_JsonLines())
    level = os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO").upper()
    level = level if level in logging.getLevelNamesMapping() else "INFO"
    own = logging.getLogger("lambda_authorizer")
    # chalicelib.auth logs JWKS trouble under "chalicelib"; where app.py is loaded too
    # (tests), chalicelib.observability has configured that logger already: leave it.
    targets = [own] + ([] if logging.getLogger("chalicelib").handlers else [logging.getLogger("chalicelib")])
    for target in targets:
        target.handlers, target.propagate = [handler], False
        target.setLevel(level)
    return own


logger = _logger()


class EmfMetrics:
    """Counts written at once as CloudWatch embedded-metric-format lines (what powertools flushes)."""

    def count(self, name: str, value: int = 1) -> None:
        if not value or os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "true":
            return
        namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BabysittingBooking")
        metric = {"Namespace": namespace, "Dimensions": [["service"]], "Metrics": [{"Name": name, "Unit": "Count"}]}
        line = {"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [metric]}, "service": _SERVICE}
        print(json.dumps({**line, name: [float(value)]}), flush=True)


def verifier() -> TokenVerifier:
    """Built on first use from the function's settings, as ``bootstrap.verifier`` builds it."""
    global _verifier
    with _lock:
        if _verifier is None:
            s = get_settings()
            keys = JwksSource(url=s.auth_jwks_url, inline=s.auth_jwks_json, path=s.auth_jwks_file, metrics=EmfMetrics())
            _verifier = TokenVerifier(keys, issuer=s.auth_issuer, audience=s.auth_audience)
        return _verifier


def reset() -> None:
    global _verifier
    with _lock:
        _verifier = None


def policy(method_arn: str, allow: bool) -> dict[str, Any]:
    """Chalice's policy for ``routes=["*"]`` (every method and path of the stage) or ``routes=[]``."""
    parts = method_arn.split(":", 5)
    api_and_stage = parts[-1].split("/")[:2]
    parts[-1] = "/".join([*api_and_stage, "*", "*"])
    resources = [":".join(parts)] if allow else []
    return {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resources}],
    }


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    method_arn = event["methodArn"]
    try:
        caller = verifier().verify(event["authorizationToken"])
    except InvalidToken as exc:
        logger.info("token rejected", extra={"keys": {"reason": str(exc)}})
        return {"context": {}, "principalId": "anonymous", "policyDocument": policy(method_arn, allow=False)}
    return {
        "context": caller_to_context(caller),
        "principalId": caller.user_id,
        "policyDocument": policy(method_arn, allow=True),
    }

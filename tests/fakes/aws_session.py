"""Boto3 sessions and Lambda clients for tests: one that answers account and function concurrency
from memory, and one that wraps a real client, records its calls and may ignore updates."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


class FakeLambda:
    def __init__(self, unreserved: int, reserved: dict[str, int] | None = None, total: int = 1000) -> None:
        self.unreserved, self.reserved, self.total = unreserved, reserved or {}, total

    def get_account_settings(self) -> dict[str, Any]:
        return {"AccountLimit": {"ConcurrentExecutions": self.total, "UnreservedConcurrentExecutions": self.unreserved}}

    def get_function_concurrency(self, FunctionName: str) -> dict[str, Any]:
        if FunctionName not in self.reserved:
            raise ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "GetFunctionConcurrency")
        return {"ReservedConcurrentExecutions": self.reserved[FunctionName]}


class RecordingLambda:
    """Wraps a real Lambda client: records the calls that change or read back the worker's setup
    in ``calls``; with ``apply_mapping_updates=False`` event source mapping updates are accepted
    and not applied."""

    WATCHED = ("update_event_source_mapping", "get_event_source_mapping", "update_function_configuration")

    def __init__(self, real: Any, apply_mapping_updates: bool = True) -> None:
        self._real, self._apply = real, apply_mapping_updates
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name not in self.WATCHED:
            return attr

        def call(**kwargs: Any) -> Any:
            self.calls.append(name)
            if name == "update_event_source_mapping" and not self._apply:
                return {}
            return attr(**kwargs)

        return call


class FakeSession:
    """A session whose Lambda client is ``lambda_client``; other clients come from ``real``, if given."""

    def __init__(self, lambda_client: Any, real: Any = None) -> None:
        self.lambda_client, self._real = lambda_client, real
        self.region_name = real.region_name if real is not None else "eu-west-1"

    def client(self, service: str) -> Any:
        if service == "lambda":
            return self.lambda_client
        assert self._real is not None, f"no {service} client in this session"
        return self._real.client(service)

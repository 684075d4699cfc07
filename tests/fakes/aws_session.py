"""A boto3 session whose Lambda client answers account and function concurrency from memory."""

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


class FakeSession:
    region_name = "eu-west-1"

    def __init__(self, lambda_client: FakeLambda) -> None:
        self.lambda_client = lambda_client

    def client(self, service: str) -> Any:
        assert service == "lambda"
        return self.lambda_client

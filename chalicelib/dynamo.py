"""The DynamoDB calls under the store: error translation, transactions, paged queries.

Knows the table and boto3, not the item shapes (``items.py``) nor the use cases
(``store.py`` combines the three).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from chalicelib.domain import InvalidInput, Page, Unavailable
from chalicelib.items import s

THROTTLE_CODES = {
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingError",
}
# Left over after botocore's own retries: the request may be repeated as it is.
_UNAVAILABLE_CODES = THROTTLE_CODES | {"InternalServerError", "ServiceUnavailable", "InternalFailure"}
_TRANSACTION_RETRIES = 3


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def unavailable(exc: Exception) -> Unavailable:
    cause = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    return Unavailable("The database is busy; retry the request.", cause=cause)


def failed(reason: dict[str, Any]) -> bool:
    return reason.get("Code") == "ConditionalCheckFailed"


def reason_at(reasons: list[dict[str, Any]], index: int) -> dict[str, Any]:
    """One transaction item's cancellation reason ({} if DynamoDB gave fewer)."""
    return reasons[index] if index < len(reasons) else {}


def invalid_cursor() -> InvalidInput:
    return InvalidInput("nextToken is not valid for this request.", code="INVALID_NEXT_TOKEN")


class Cancelled(Exception):
    """A transaction DynamoDB refused; ``reasons`` has one entry per item."""

    def __init__(self, reasons: list[dict[str, Any]]) -> None:
        super().__init__("transaction cancelled")
        self.reasons = reasons


class Table:
    """One table through one client: every call goes through ``api_call``, which maps failures."""

    def __init__(self, client: Any, name: str, query_page_size: int | None = None) -> None:
        self.client = client
        self.name = name
        self.page_size = query_page_size

    def api_call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            return getattr(self.client, operation)(**params)
        except ClientError as exc:
            if error_code(exc) in _UNAVAILABLE_CODES:
                raise unavailable(exc) from exc
            raise
        except (HTTPClientError, ConnectionError) as exc:  # timeouts, resets: after botocore's retries
            raise unavailable(exc) from exc

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        return self.api_call("get_item", TableName=self.name, Key=key, ConsistentRead=True).get("Item")

    def read_all_pages(self, operation: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The raw items of every page of a query or scan."""
        params = dict(params)
        while True:
            resp = self.api_call(operation, **params)
            yield from resp.get("Items") or []
            last = resp.get("LastEvaluatedKey")
            if not last:
                return
            params["ExclusiveStartKey"] = last

    def transact(self, items: list[dict[str, Any]], token: str | None = None) -> None:
        """Runs a transaction, retrying only when another transaction got in the way.

        ``token`` (ClientRequestToken) lets DynamoDB recognise botocore's own re-send
        of a call that committed; callers still recognise their own items (ALL_OLD),
        for emulators that ignore it.
        """
        params: dict[str, Any] = {"TransactItems": items}
        if token:
            params["ClientRequestToken"] = token
        for attempt in range(_TRANSACTION_RETRIES + 1):
            try:
                self.api_call("transact_write_items", **params)
                return
            except ClientError as exc:
                code = error_code(exc)
                if code == "TransactionConflictException":
                    reasons: list[dict[str, Any]] = [{"Code": "TransactionConflict"} for _ in items]
                elif code == "TransactionCanceledException":
                    reasons = exc.response.get("CancellationReasons") or []
                else:
                    raise
                reason_codes = {r.get("Code") for r in reasons}
                if "ConditionalCheckFailed" in reason_codes:
                    raise Cancelled(reasons) from exc
                if reason_codes & THROTTLE_CODES:
                    raise unavailable(exc) from exc
                if "TransactionConflict" not in reason_codes or attempt == _TRANSACTION_RETRIES:
                    raise Cancelled(reasons) from exc
                time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))

    def page(
        self,
        convert: Callable[[dict[str, Any]], Any],
        limit: int,
        cursor: dict | None,
        *,
        index: str | None,
        key_names: tuple[str, str],
        partition: str,
        newest_first: bool,
        sort_prefix: str | None = None,
    ) -> Page:
        """One page of one partition (of the table or an index); ``convert`` gets raw items."""
        pk_name, sk_name = key_names
        condition = f"{pk_name} = :pk"
        values = {":pk": s(partition)}
        if sort_prefix:
            condition += f" AND begins_with({sk_name}, :prefix)"
            values[":prefix"] = s(sort_prefix)
        params: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not newest_first,
            "Limit": limit,
        }
        if index:
            params["IndexName"] = index
        else:
            params["ConsistentRead"] = True  # the base table can: a listing sees its own writes
        if cursor is not None:
            params["ExclusiveStartKey"] = _start_key(cursor, key_names, partition, sort_prefix)
        resp = self.api_call("query", **params)
        items = [convert(i) for i in resp.get("Items") or []]
        last = resp.get("LastEvaluatedKey")
        next_cursor = {k: v["S"] for k, v in last.items()} if last else None
        return Page(items=items, cursor=next_cursor)


def _start_key(cursor: dict, key_names: tuple[str, str], partition: str, sort_prefix: str | None) -> dict[str, Any]:
    """Accepts only a key this very query could have returned."""
    expected = {"PK", "SK", *key_names}
    pk_name, sk_name = key_names
    if (
        not isinstance(cursor, dict)
        or set(cursor) != expected
        or not all(isinstance(v, str) and 0 < len(v) <= 600 for v in cursor.values())
        or cursor[pk_name] != partition
        or (sort_prefix is not None and not cursor[sk_name].startswith(sort_prefix))
    ):
        raise invalid_cursor()
    return {k: s(v) for k, v in cursor.items()}

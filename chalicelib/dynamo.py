"""The DynamoDB calls under the store: error translation, transactions, paged queries.

Knows the table and boto3, not the item shapes (``items.py``) nor the use cases
(``store.py`` combines the three).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from chalicelib.domain import ConcurrentUpdate, Cursor, InvalidInput, OutcomeUnknown, Page, Unavailable
from chalicelib.items import string
from chalicelib.retries import AFTER_CONFLICT, AFTER_OUTAGE, retry

THROTTLE_CODES = {
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingError",
    # A transaction's cancellation reason on a provisioned table or index (no "Exception").
    "ProvisionedThroughputExceeded",
}
# Left over after botocore's own retries: the request may be repeated as it is.
_UNAVAILABLE_CODES = THROTTLE_CODES | {"InternalServerError", "ServiceUnavailable", "InternalFailure"}
# A transaction that may still commit, or may have: only the same token may be sent again.
_IN_FLIGHT_CODES = {"TransactionInProgressException", "IdempotentParameterMismatchException"}
# A write another one got in the way of is tried again this many times.
CONFLICT_RETRIES = 3
# No new transaction attempt starts later than this after the first (docs/api.md#timeouts-and-retries).
TRANSACTION_DEADLINE_SECONDS = 1.5
# BatchGetItem takes at most 100 keys; keys it leaves unprocessed are asked again this many times.
BATCH_GET_MAX_KEYS = 100
BATCH_GET_RETRIES = 3


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _cause(exc: Exception) -> str:
    return error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__


def unavailable(exc: Exception) -> Unavailable:
    return Unavailable("The database is busy; retry the request.", cause=_cause(exc))


def request_token(items: list[dict[str, Any]]) -> str:
    """A ClientRequestToken (at most 36 characters) naming exactly these items: the same
    request always gets the same token, and two different requests never share one."""
    canonical = json.dumps(items, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:36]


def refused_item(exc: ClientError) -> dict[str, Any] | None:
    """The item as it was when a single write's condition refused it (ALL_OLD), if any."""
    return cast("dict[str, Any] | None", exc.response.get("Item"))


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

    def __init__(
        self,
        client: Any,
        name: str,
        query_page_size: int | None = None,
        *,
        transaction_deadline_seconds: float = TRANSACTION_DEADLINE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.name = name
        self.page_size = query_page_size
        self._deadline = transaction_deadline_seconds
        self._clock = clock
        self._sleep = sleep

    def api_call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            return cast("dict[str, Any]", getattr(self.client, operation)(**params))
        except ClientError as exc:
            if error_code(exc) in _UNAVAILABLE_CODES:
                raise unavailable(exc) from exc
            raise
        except (HTTPClientError, ConnectionError) as exc:  # timeouts, resets: after botocore's retries
            raise unavailable(exc) from exc

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        """One item by its key, read consistently (None when there is none)."""
        item: dict[str, Any] | None = self.api_call("get_item", TableName=self.name, Key=key, ConsistentRead=True).get(
            "Item"
        )
        return item

    def batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The items of ``keys`` that exist, read consistently, in as few BatchGetItem calls
        as DynamoDB allows (100 keys each). Keys it leaves unprocessed (throttling, 16 MB) are
        asked again after a pause; still unprocessed after ``BATCH_GET_RETRIES``: Unavailable."""
        unique = list({json.dumps(k, sort_keys=True): k for k in keys}.values())  # duplicates are refused
        found: list[dict[str, Any]] = []
        for start in range(0, len(unique), BATCH_GET_MAX_KEYS):
            pending = unique[start : start + BATCH_GET_MAX_KEYS]
            attempt = 0
            while pending:
                attempt += 1
                resp = self.api_call(
                    "batch_get_item", RequestItems={self.name: {"Keys": pending, "ConsistentRead": True}}
                )
                found.extend(resp.get("Responses", {}).get(self.name) or [])
                pending = (resp.get("UnprocessedKeys") or {}).get(self.name, {}).get("Keys") or []
                if pending and attempt > BATCH_GET_RETRIES:
                    raise Unavailable(f"{len(pending)} keys left unprocessed after {attempt} reads")
                if pending:
                    self._sleep(AFTER_OUTAGE.pause(attempt))
        return found

    def query(self, **params: Any) -> dict[str, Any]:
        """One page of a query of this table or one of its indexes."""
        return self.api_call("query", TableName=self.name, **params)

    def update(self, params: dict[str, Any], *, conflict_message: str) -> dict[str, Any]:
        """An UpdateItem, tried again when it meets a transaction in flight on its item
        (``ConcurrentUpdate(conflict_message)`` when that keeps happening)."""
        return retry(
            lambda: self.api_call("update_item", TableName=self.name, **params),
            retryable=lambda exc: isinstance(exc, ClientError) and error_code(exc) == "TransactionConflictException",
            retries=CONFLICT_RETRIES,
            backoff=AFTER_CONFLICT,
            exhausted=lambda _: ConcurrentUpdate(conflict_message),
            sleep=self._sleep,
        )

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

    def transact(self, items: list[dict[str, Any]]) -> None:
        """Runs a transaction under a token derived from its items, until it is decided.

        The token (ClientRequestToken) makes every re-send the same request: DynamoDB answers
        a re-send of a committed transaction with success for 10 minutes, and refuses one
        whose first attempt is still running with ``TransactionInProgressException``. So a
        timeout, a 5xx or an in-progress answer is retried with the same token until
        ``transaction_deadline_seconds`` has passed; past it, if an attempt may have been
        applied, the outcome is unknown (``OutcomeUnknown``, a 503 the client repeats), never
        a 500. A transaction another one got in the way of is retried a few times.
        Callers still recognise their own items (ALL_OLD), for emulators that ignore tokens.
        """
        params: dict[str, Any] = {"TransactItems": items, "ClientRequestToken": request_token(items)}
        deadline = self._clock() + self._deadline
        conflicts = 0
        attempt = 0
        maybe_applied = False  # an attempt whose answer we did not get may have committed
        while True:
            attempt += 1
            try:
                self.client.transact_write_items(**params)
                return
            except ClientError as exc:
                code = error_code(exc)
                if code in {"TransactionCanceledException", "TransactionConflictException"}:
                    reasons = (
                        cast("list[dict[str, Any]]", exc.response.get("CancellationReasons") or [])
                        if code == "TransactionCanceledException"
                        else [{"Code": "TransactionConflict"} for _ in items]
                    )
                    self._raise_unless_passing_conflict(reasons, exc, conflicts)
                    conflicts += 1
                    self._sleep(AFTER_CONFLICT.pause(conflicts))
                    continue
                if code in _IN_FLIGHT_CODES or code in {"InternalServerError", "ServiceUnavailable"}:
                    maybe_applied = True
                elif code not in _UNAVAILABLE_CODES:
                    raise
                failure: Exception = exc
            except HTTPClientError as exc:  # a read timeout or a reset: the request may have been applied
                maybe_applied, failure = True, exc
            except ConnectionError as exc:  # never reached DynamoDB
                failure = exc
            pause = AFTER_OUTAGE.pause(attempt)
            if self._clock() + pause < deadline:
                self._sleep(pause)
                continue
            if maybe_applied:
                raise OutcomeUnknown(
                    "The request may or may not have taken effect; repeat it to learn its outcome.",
                    cause=_cause(failure),
                ) from failure
            raise unavailable(failure) from failure

    @staticmethod
    def _raise_unless_passing_conflict(reasons: list[dict[str, Any]], exc: ClientError, conflicts: int) -> None:
        reason_codes = {r.get("Code") for r in reasons}
        if "ConditionalCheckFailed" in reason_codes:
            raise Cancelled(reasons) from exc
        if reason_codes & THROTTLE_CODES:
            raise unavailable(exc) from exc
        if "TransactionConflict" not in reason_codes or conflicts >= CONFLICT_RETRIES:
            raise Cancelled(reasons) from exc

    def page(
        self,
        convert: Callable[[dict[str, Any]], Any],
        limit: int,
        cursor: Cursor | None,
        *,
        index: str | None,
        key_names: tuple[str, str],
        partition: str,
        newest_first: bool,
        sort_prefix: str | None = None,
    ) -> Page[Any]:
        """One page of one partition (of the table or an index); ``convert`` gets raw items."""
        pk_name, sk_name = key_names
        condition = f"{pk_name} = :pk"
        values = {":pk": string(partition)}
        if sort_prefix:
            condition += f" AND begins_with({sk_name}, :prefix)"
            values[":prefix"] = string(sort_prefix)
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


def _start_key(cursor: Cursor, key_names: tuple[str, str], partition: str, sort_prefix: str | None) -> dict[str, Any]:
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
    return {k: string(v) for k, v in cursor.items()}

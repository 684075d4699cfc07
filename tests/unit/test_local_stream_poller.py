"""The local stream poller reads on from the last GetRecords' iterator while its batches settle,
and asks GetShardIterator (a scan of the whole stream on MiniStack) only at the start, after a
failure or when the iterator has expired."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from tests.fakes.stream import FakeStream
from tools.local.stream import StreamPoller

ARN = "arn:aws:dynamodb:us-east-1:1:table/t/stream/x"


def _record(seq: int) -> dict[str, Any]:
    return {"eventID": str(seq), "eventName": "INSERT", "dynamodb": {"SequenceNumber": f"{seq:03d}"}}


def _poller(stream: FakeStream, handler: Any, batch_size: int = 2) -> StreamPoller:
    return StreamPoller(stream, ARN, handler, function_name="f", batch_size=batch_size, sleep=lambda _: None)


def _sequences(event: dict[str, Any]) -> list[str]:
    return [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]


def test_settled_batches_are_followed_by_the_next_iterator_not_a_new_one() -> None:
    stream = FakeStream([_record(i) for i in range(5)])
    seen: list[list[str]] = []
    poller = _poller(stream, lambda event, _: seen.append(_sequences(event)))
    poller.drain()
    stream.records += [_record(5), _record(6)]  # written later: read from where the last read stopped
    poller.drain()
    assert seen == [["000", "001"], ["002", "003"], ["004"], ["005", "006"]]
    assert stream.iterators_issued == 1


def test_after_a_reported_failure_the_next_read_starts_again_at_the_checkpoint() -> None:
    stream = FakeStream([_record(i) for i in range(4)])
    seen: list[list[str]] = []

    def handler(event: dict[str, Any], _: Any) -> dict[str, Any]:
        seen.append(_sequences(event))
        return {"batchItemFailures": [{"itemIdentifier": "003"}]} if len(seen) == 2 else {}

    _poller(stream, handler).drain()
    assert seen == [["000", "001"], ["002", "003"], ["003"]]
    assert stream.iterators_issued == 2  # the start, and after the failure


class ExpiringStream(FakeStream):
    """Iterators older than one read have expired (AWS: after 15 minutes)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        super().__init__(records)
        self.fresh: set[str] = set()

    def get_shard_iterator(self, **params: Any) -> dict[str, Any]:
        answer = super().get_shard_iterator(**params)
        self.fresh.add(answer["ShardIterator"])
        return answer

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        if ShardIterator not in self.fresh:
            raise ClientError({"Error": {"Code": "ExpiredIteratorException"}}, "GetRecords")
        return super().get_records(ShardIterator, Limit)


def test_an_expired_iterator_is_replaced_from_the_checkpoint() -> None:
    stream = ExpiringStream([_record(i) for i in range(3)])
    seen: list[str] = []
    _poller(stream, lambda event, _: seen.extend(_sequences(event))).drain()
    assert seen == ["000", "001", "002"]
    assert stream.iterators_issued == 3  # the start, then once per expired iterator

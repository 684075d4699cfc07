"""Runs the app's stream handler the way Lambda's DynamoDB event source does, against a local table.

``chalice local`` runs no stream handlers. This poller reads every shard of the table's
stream (DescribeStream, GetShardIterator, GetRecords), hands each batch to the decorated
handler as a Lambda-shaped event with a fake context, and settles it as Lambda does
with ``ReportBatchItemFailures``, ``BisectBatchOnFunctionError``,
``MaximumRetryAttempts`` and an on-failure destination:

* a normal return moves the shard's checkpoint past the batch, or, with
  ``batchItemFailures``, to just before the lowest sequence number reported (the
  records from there on come again);
* an exception, or a malformed failure list, fails the whole batch: it is retried
  after ``retry_delay`` seconds, halved each time (bisect) so a poison record ends up
  alone in its batch;
* a batch still failing after ``max_retries`` retries is given up: its position (never
  its data) goes to the on-failure queue and the checkpoint moves past it, so the
  shard goes on.

Checkpoints live in memory and, with ``checkpoint_path``, in a JSON file, so a
restarted local stack resumes where it stopped rather than at the stream's start.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from tools.local.worker import LambdaContext, reported_failures

log = logging.getLogger("tools.local.stream")

Handler = Callable[[dict[str, Any], Any], Any]


def lambda_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record as Lambda's event carries it (times as epoch seconds)."""
    dynamodb = dict(record["dynamodb"])
    stamp = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(stamp, datetime):
        dynamodb["ApproximateCreationDateTime"] = stamp.timestamp()
    elif stamp is None:
        dynamodb["ApproximateCreationDateTime"] = time.time()
    dynamodb.setdefault("SizeBytes", 0)
    return {
        "eventID": record.get("eventID", ""),
        "eventName": record.get("eventName", ""),
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", "us-east-1"),
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }


def failed_sequence(result: Any, sequences: list[str]) -> tuple[str | None, str | None]:
    """The lowest sequence number Lambda would resume from for this result, and why the whole
    batch if so."""
    failed, whole_batch = reported_failures(result, sequences)
    if whole_batch is not None:
        return sequences[0], whole_batch
    if not failed:
        return None, None
    position = {seq: i for i, seq in enumerate(sequences)}
    return sequences[min(position[seq] for seq in failed)], None


@dataclass
class ShardState:
    checkpoint: str | None = None  # the last sequence number settled
    batch_limit: int = 100
    attempts: int = 0  # failed attempts of the batch at the checkpoint
    # Where the next read starts, from the last GetRecords, while every batch settles: a new
    # iterator at the checkpoint costs GetShardIterator, which MiniStack answers by scanning
    # the stream from its oldest record (the longer the stream, the dearer).
    iterator: str | None = None


@dataclass
class PollOutcome:
    records: int = 0
    settled: int = 0
    failed: int = 0
    given_up: int = 0
    errors: list[str] = field(default_factory=list)


class StreamPoller:
    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        handler: Handler,
        *,
        function_name: str,
        batch_size: int = 100,
        max_retries: int = 3,
        retry_delay_seconds: float = 1.0,
        on_failure: Callable[[dict[str, Any]], None] | None = None,
        checkpoint_path: Path | None = None,
        timeout_seconds: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._streams = streams
        self._arn = stream_arn
        self._handler = handler
        self._function_name = function_name
        self._batch_size = batch_size
        self._max_retries = max_retries
        self._retry_delay = retry_delay_seconds
        self._on_failure = on_failure
        self._checkpoint_path = checkpoint_path
        self._timeout = timeout_seconds
        self._sleep = sleep
        self._shards: dict[str, ShardState] = {}
        self._load_checkpoints()
        _, _, _, self._region, self._account, _ = stream_arn.split(":", 5)
        self.batches = 0
        self.records = 0

    # ---------------------------------------------------------- checkpoints

    def _load_checkpoints(self) -> None:
        if self._checkpoint_path is None or not self._checkpoint_path.exists():
            return
        try:
            saved = json.loads(self._checkpoint_path.read_text())
        except (OSError, ValueError):
            return
        if saved.get("streamArn") != self._arn:
            return  # another table (the data was reset): start from its beginning
        for shard, seq in (saved.get("shards") or {}).items():
            self._shards[shard] = ShardState(checkpoint=seq, batch_limit=self._batch_size)

    def _save_checkpoints(self) -> None:
        if self._checkpoint_path is None:
            return
        data = {"streamArn": self._arn, "shards": {k: v.checkpoint for k, v in self._shards.items() if v.checkpoint}}
        tmp = self._checkpoint_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self._checkpoint_path)

    # -------------------------------------------------------------- polling

    def shard_ids(self) -> list[str]:
        shards: list[str] = []
        params: dict[str, Any] = {"StreamArn": self._arn}
        while True:
            desc = self._streams.describe_stream(**params)["StreamDescription"]
            shards += [s["ShardId"] for s in desc.get("Shards") or []]
            last = desc.get("LastEvaluatedShardId")
            if not last:
                return shards
            params["ExclusiveStartShardId"] = last

    def poll_once(self) -> PollOutcome:
        """One batch from each shard that has records."""
        total = PollOutcome()
        for shard in self.shard_ids():
            state = self._shards.setdefault(shard, ShardState(batch_limit=self._batch_size))
            outcome = self._poll_shard(shard, state)
            total.records += outcome.records
            total.settled += outcome.settled
            total.failed += outcome.failed
            total.given_up += outcome.given_up
            total.errors += outcome.errors
        return total

    def drain(self, max_rounds: int = 100) -> PollOutcome:
        """Polls until a round finds no record (tests): everything written so far is handled."""
        total = PollOutcome()
        for _ in range(max_rounds):
            outcome = self.poll_once()
            total.records += outcome.records
            total.settled += outcome.settled
            total.failed += outcome.failed
            total.given_up += outcome.given_up
            total.errors += outcome.errors
            if outcome.records == 0:
                return total
        raise RuntimeError(f"the stream still had records after {max_rounds} rounds")

    def _read(self, shard: str, state: ShardState) -> list[dict[str, Any]]:
        if state.iterator is not None:
            try:
                return self._records(state, state.iterator)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in (
                    "ExpiredIteratorException",
                    "TrimmedDataAccessException",
                ):
                    raise
                state.iterator = None  # from the checkpoint again
        return self._records(state, self._iterator_at_checkpoint(shard, state))

    def _records(self, state: ShardState, iterator: str) -> list[dict[str, Any]]:
        resp = self._streams.get_records(ShardIterator=iterator, Limit=state.batch_limit)
        state.iterator = resp.get("NextShardIterator")  # none once a closed shard is read to its end
        return resp.get("Records") or []

    def _iterator_at_checkpoint(self, shard: str, state: ShardState) -> str:
        params: dict[str, Any] = {"StreamArn": self._arn, "ShardId": shard}
        if state.checkpoint:
            params.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=state.checkpoint)
        else:
            params["ShardIteratorType"] = "TRIM_HORIZON"
        try:
            iterator = self._streams.get_shard_iterator(**params)["ShardIterator"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TrimmedDataAccessException" or not state.checkpoint:
                raise
            # The checkpoint's record is gone: trimmed (AWS, after 24 h) or never saved (MiniStack
            # keeps the stream but not its records across a restart). Go on from the oldest left.
            log.warning("stream position %s is gone (%s); reading from the oldest record left", state.checkpoint, exc)
            state.checkpoint = None
            params = {"StreamArn": self._arn, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}
            iterator = self._streams.get_shard_iterator(**params)["ShardIterator"]
        return iterator

    def _poll_shard(self, shard: str, state: ShardState) -> PollOutcome:
        records = self._read(shard, state)
        outcome = PollOutcome(records=len(records))
        if not records:
            return outcome
        self.batches += 1
        self.records += len(records)
        sequences = [r["dynamodb"]["SequenceNumber"] for r in records]
        event = {"Records": [lambda_record(r, self._arn) for r in records]}
        context = LambdaContext(
            function_name=self._function_name,
            invoked_function_arn=f"arn:aws:lambda:{self._region}:{self._account}:function:{self._function_name}",
            timeout_seconds=self._timeout,
        )
        try:
            result = self._handler(event, context)
        except Exception as exc:
            first, reason = sequences[0], f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        else:
            first, reason = failed_sequence(result, sequences)
        if first is None:  # all settled
            state.checkpoint, state.attempts, state.batch_limit = sequences[-1], 0, self._batch_size
            outcome.settled = len(records)
            self._save_checkpoints()
            return outcome
        state.iterator = None  # the records from the first failure on come again: read from the checkpoint
        index = sequences.index(first)
        if index > 0:  # settle what came before the first failure
            state.checkpoint, state.attempts = sequences[index - 1], 0
            outcome.settled = index
        else:
            state.attempts += 1
            if reason is not None:  # bisect: a failing whole batch is retried in halves
                state.batch_limit = max(1, len(records) // 2)
        outcome.failed = len(records) - index
        outcome.errors.append(reason or f"records from {first} reported failed")
        if state.attempts > self._max_retries:
            # Reported failures: the first failed record alone; a failed batch: the batch (bisected by now).
            given_up = sequences[index : index + 1] if reason is None else sequences
            self._give_up(shard, given_up, outcome.errors[-1])
            state.checkpoint, state.attempts, state.batch_limit = given_up[-1], 0, self._batch_size
            outcome.given_up = len(given_up)
        self._save_checkpoints()
        if outcome.given_up == 0:
            self._sleep(self._retry_delay)
        return outcome

    def _give_up(self, shard: str, sequences: list[str], reason: str) -> None:
        # What Lambda sends to an on-failure destination: where the records are, not what they hold.
        note = {
            "requestContext": {"condition": "RetryAttemptsExhausted", "functionArn": self._function_name},
            "DDBStreamBatchInfo": {
                "shardId": shard,
                "startSequenceNumber": sequences[0],
                "endSequenceNumber": sequences[-1],
                "batchSize": len(sequences),
                "streamArn": self._arn,
            },
            "reason": reason,
        }
        log.error("stream records given up after %d retries: %s", self._max_retries, json.dumps(note))
        if self._on_failure is not None:
            self._on_failure(note)

    def run(self, stop: threading.Event, idle_seconds: float = 0.5) -> None:
        log.info("polling stream %s for %s", self._arn, self._function_name)
        while not stop.is_set():
            try:
                outcome = self.poll_once()
                if outcome.records == 0:
                    stop.wait(idle_seconds)
            except Exception as exc:  # the emulator may be restarting or shutting down: retry
                if stop.is_set():
                    break
                log.warning("polling stream %s failed: %s", self._arn, exc)
                stop.wait(1.0)
        log.info("stopped polling stream %s", self._arn)

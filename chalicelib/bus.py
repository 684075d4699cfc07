"""Puts domain events on the stage's EventBridge bus (PutEvents, ten entries a call)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from chalicelib.events import SOURCE, DomainEvent

if TYPE_CHECKING:  # the stubs are a dev dependency; Lambda runs without them
    from types_boto3_events import EventBridgeClient
    from types_boto3_events.type_defs import PutEventsRequestEntryTypeDef

log = logging.getLogger(__name__)

PUT_EVENTS_LIMIT = 10


class EventBridgeBus:
    """botocore retries a failed call under its own policy; entries the bus answers as
    failed are reported back (their records fail and come again), not retried here."""

    def __init__(self, client: EventBridgeClient, bus_name: str, source: str = SOURCE) -> None:
        self._events = client
        self._bus = bus_name
        self._source = source

    def publish(self, events: Sequence[DomainEvent]) -> set[str]:
        failed: set[str] = set()
        for start in range(0, len(events), PUT_EVENTS_LIMIT):
            chunk = events[start : start + PUT_EVENTS_LIMIT]
            resp = self._events.put_events(Entries=[self._entry(e) for e in chunk])
            if resp.get("FailedEntryCount"):
                # Entries come back in the order sent; a failed one has an ErrorCode.
                for event, result in zip(chunk, resp.get("Entries") or [], strict=False):
                    if result.get("ErrorCode") or not result.get("EventId"):
                        failed.add(event.event_id)
                        log.warning("event not accepted: %s", result.get("ErrorCode"))
        return failed

    def _entry(self, event: DomainEvent) -> PutEventsRequestEntryTypeDef:
        return {
            "EventBusName": self._bus,
            "Source": self._source,
            "DetailType": event.event_type,
            "Detail": json.dumps(event.detail(), separators=(",", ":")),
        }

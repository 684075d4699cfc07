"""Each Protocol in chalicelib, proven by mypy to be met by what the service wires into it.

Never run: mypy reads these functions (``make lint``), and a signature that drifts from
its Protocol fails the type check here, naming both. One function per (Protocol,
implementation) pair; a new Protocol or implementation gets its line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from chalicelib import auth, booking, mail, page_token_keys, pagination, stream, worker
    from chalicelib.bus import EventBridgeBus
    from chalicelib.declines import DeadLetters, SqsDeclinePublisher
    from chalicelib.lambda_authorizer import EmfMetrics
    from chalicelib.observability import PowertoolsMetrics
    from chalicelib.page_token_keys import PageTokenKeys, PageTokenKeySource
    from chalicelib.ses import SesSender
    from chalicelib.store import DynamoStore


def dynamo_store_is_a_booking_store(store: DynamoStore) -> booking.Store:
    return store


def dynamo_store_is_a_mail_store(store: DynamoStore) -> mail.MailStore:
    return store


def dynamo_store_knows_owners(store: DynamoStore) -> stream.Owners:
    return store


def sqs_publisher_is_a_decline_publisher(publisher: SqsDeclinePublisher) -> booking.DeclinePublisher:
    return publisher


def sqs_publisher_is_a_sweep_queue(publisher: SqsDeclinePublisher) -> stream.SweepQueue:
    return publisher


def dead_letters_is_a_dead_letter_sink(dead_letters: DeadLetters) -> worker.DeadLetterSink:
    return dead_letters


def event_bridge_is_an_event_bus(bus: EventBridgeBus) -> stream.EventBus:
    return bus


def ses_is_an_email_sender(sender: SesSender) -> mail.EmailSender:
    return sender


def powertools_metrics_are_booking_metrics(metrics: PowertoolsMetrics) -> booking.Metrics:
    return metrics


def powertools_metrics_are_auth_metrics(metrics: PowertoolsMetrics) -> auth.Metrics:
    return metrics


def emf_metrics_are_auth_metrics(metrics: EmfMetrics) -> auth.Metrics:
    return metrics


def page_token_keys_are_a_key_set(keys: PageTokenKeys) -> pagination.KeySet:
    return keys


def key_source_gives_key_sets(source: PageTokenKeySource) -> Callable[[], pagination.KeySet]:
    return source


def items_state_of_reads_stream_images() -> stream.StateReader:
    from chalicelib.items import state_of

    return state_of


def ssm_fetch_reads_a_parameter() -> page_token_keys.Fetch:
    from chalicelib.page_token_keys import _powertools_fetch

    return _powertools_fetch

"""Makes moto's SQS bearable as the local stack's queue once a backlog builds up.

moto checks every message of a queue on each send, receive and delete (to count the
queue's approximate sizes and find receipt handles), and each check turns the clock
into a ``datetime`` twice: at 4,000 queued messages one ``SendMessageBatch`` of ten took
0.6 s and one ``ReceiveMessage`` 1.9 s, so a worker that falls behind never catches up.
The scans stay; ``speed_up`` makes each step of them cheap, with the same results:

* ``Message.visible`` / ``Message.delayed`` compare against ``time.time()`` in
  milliseconds, which is what moto's ``unix_time_millis()`` computes the slow way;
* a queue's three approximate counts come from one pass over its messages per
  attribute read instead of three (moto reads every attribute to get one, once per
  message sent);
* ``Message.had_receipt_handle`` looks the handle up without building a list first;
* ``Queue.delete_message`` finds the message in one pass and removes it in place,
  holding the lock moto's sends take to append: moto rebuilt the list and swapped it
  in, dropping any message another thread appended in between;
* the retention check of each received message reads the queue's retention period
  instead of computing every attribute of the queue (three more scans) to get it.

Development only: the deployed service talks to SQS itself.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

_applied = False
# The counts of the queue whose attributes this thread is reading (one pass serves all three).
_reading = threading.local()


def _count(queue: Any) -> tuple[int, int, int]:
    """(visible and not delayed, not visible, delayed): moto's three approximate counts, in one pass."""
    now = time.time() * 1000.0
    available = in_flight = delayed = 0
    for message in list(queue._messages):
        is_delayed = now < message.delayed_until
        delayed += is_delayed
        if now <= message.visible_at:
            in_flight += 1
        elif not is_delayed:
            available += 1
    return available, in_flight, delayed


def _counts(queue: Any) -> tuple[int, int, int]:
    reading = getattr(_reading, "counts", None)
    if reading is not None and reading[0] is queue:
        return reading[1]
    return _count(queue)


def speed_up() -> None:
    """Patch moto's SQS message model in this process (idempotent)."""
    global _applied
    if _applied:
        return
    from moto.sqs.exceptions import ReceiptHandleIsInvalid
    from moto.sqs.models import Message, Queue, SQSBackend  # heavy import, only when the local stack needs it

    def visible(self: Message) -> bool:
        return time.time() * 1000.0 > self.visible_at

    def delayed(self: Message) -> bool:
        return time.time() * 1000.0 < self.delayed_until

    def had_receipt_handle(self: Message, receipt_handle: str) -> bool:
        return receipt_handle == self.receipt_handle or receipt_handle in self._old_receipt_handles

    def delete_message(self: Queue, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return  # deleting twice is fine, as on SQS
        with self._messages_lock:
            for index, message in enumerate(self._messages):
                if message.had_receipt_handle(receipt_handle):
                    del self._messages[index]
                    self.pending_messages.discard(message)
                    self.deleted_messages.update(message.all_receipt_handles)
                    return
        raise ReceiptHandleIsInvalid()

    def is_message_valid_based_on_retention_period(self: SQSBackend, queue_name: str, message: Message) -> bool:
        retention_seconds = self.get_queue(queue_name).message_retention_period
        return retention_seconds + message.sent_timestamp / 1000 > time.time()

    all_attributes = Queue.attributes.fget

    def attributes(self: Queue) -> dict[str, Any]:
        _reading.counts = (self, _count(self))
        try:
            return all_attributes(self)
        finally:
            _reading.counts = None

    Queue.attributes = property(attributes)  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages = property(lambda q: _counts(q)[0])  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages_not_visible = property(lambda q: _counts(q)[1])  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages_delayed = property(lambda q: _counts(q)[2])  # type: ignore[method-assign,assignment]
    Message.visible = property(visible)  # type: ignore[method-assign,assignment]
    Message.delayed = property(delayed)  # type: ignore[method-assign,assignment]
    Message.had_receipt_handle = had_receipt_handle  # type: ignore[method-assign]
    Queue.delete_message = delete_message  # type: ignore[method-assign]
    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]
    _applied = True


def main(argv: list[str] | None = None) -> None:
    """``python -m tools.moto_sqs -H 127.0.0.1 -p 5000``: moto's server, sped up, without request logs."""
    speed_up()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from moto.server import main as moto_server

    moto_server(argv)


if __name__ == "__main__":
    main()

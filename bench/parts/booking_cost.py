"""Part 6: the cost of a booking. One booking per N through the service on MiniStack, then its
declines and its sweep, with every DynamoDB call's consumed capacity; priced in section 8 of
latest.md (``bench/aws_analysis.py``). The measuring is ``bench/booking_cost.py``."""

from __future__ import annotations

import argparse

from bench.parts.base import Part, Results, RunContext, ints
from bench.plan import STACK_START_S
from bench.stack import BOOK_QUEUE_NAME, point_at


class BookingCost(Part):
    number = 6
    name = "booking_cost"
    title = "the cost of a booking"

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--cost-sizes", type=ints, default=(5, 100, 1000), help="applications per job (default 5,100,1000)"
        )

    def smoke(self, args: argparse.Namespace) -> None:
        args.cost_sizes = (5,)

    def estimate(self, args: argparse.Namespace) -> tuple[float, float]:
        return STACK_START_S, 2.0 + sum(0.012 * n for n in args.cost_sizes)

    def run(self, args: argparse.Namespace, context: RunContext) -> Results:
        from bench import booking_cost  # imports chalicelib: only once the environment is prepared

        context.say(f"part 6: the cost of a booking, N={', '.join(map(str, args.cost_sizes))}")
        with context.fresh_stack("part6") as stack:
            queue = stack.client("sqs").create_queue(QueueName=BOOK_QUEUE_NAME)["QueueUrl"]
            point_at(stack, DECLINES_QUEUE_URL=queue)
            return {"booking_cost": booking_cost.measure(stack, context.say, args.cost_sizes)}

    # Its figures are priced, tabled and targeted with the other designs' in section 8 (bench/aws_analysis.py).


PART = BookingCost()

"""How fast a fresh local stack drains a backlog of declines, over time: ``python -m bench.drain_backlog``.

For each backlog size: a fresh stack (``python -m tools.local``, in memory), N PENDING
applications, one decline message each queued while the stack's pollers are paused
(SIGSTOP to the stack's process; MiniStack and ``chalice local`` run on), then the pollers
resume and the queue's depth is read every second until it is empty. Printed, one JSON
line per run: the mean rate, the rate in each 5 s window (does it fall as the backlog
grows, or rise as it shrinks?), the CPU of each process in cores, and the rate per CPU
yardstick (declines per yardstick of CPU time, comparable across days).

    python -m bench.drain_backlog 2000 10000 --runs 2 --stack-args "--pollers 2"
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import yardstick
from bench.stack import clean_env, prepare_environment
from tools.local.stack_process import StackProcess, start_stack

WINDOW_SECONDS = 5.0
TIMEOUT_SECONDS = 180.0


def queue_backlog(stack: StackProcess, sqs: Any, messages: int, tag: str) -> None:
    """PENDING applications and one decline each in the stack's queue, its pollers paused meanwhile."""
    from bench.dataset import prepare_jobs
    from chalicelib.declines import DeclineApplication

    jobs = prepare_jobs(
        stack.client("dynamodb"), stack.table, -(-messages // 50), 51, [f"{tag}-p{i}" for i in range(10)], tag
    )
    bodies = [DeclineApplication(j.job_id, a).to_json() for j in jobs for a in j.declined][:messages]
    batches = [bodies[i : i + 10] for i in range(0, len(bodies), 10)]

    def send(batch: list[str]) -> None:
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(batch)]
        sqs.send_message_batch(QueueUrl=stack.queue_url, Entries=entries)

    os.kill(stack.ready["pid"], signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(send, batches))
    finally:
        os.kill(stack.ready["pid"], signal.SIGCONT)


def depth(sqs: Any, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[n]) for n in names)


def windows(samples: Sequence[tuple[float, int]], width: float = WINDOW_SECONDS) -> list[int]:
    """Messages drained per second in each ``width``-second window of (seconds, depth) samples."""
    out = []
    start = 0.0
    while samples and start < samples[-1][0]:
        inside = [s for s in samples if start <= s[0] <= start + width + 0.5]
        if len(inside) >= 2 and inside[-1][0] > inside[0][0]:
            out.append(round((inside[0][1] - inside[-1][1]) / (inside[-1][0] - inside[0][0])))
        start += width
    return out


def measure(messages: int, label: str, stack_args: Sequence[str], workdir: Path) -> dict[str, Any]:
    from bench.procs import CpuMeter, stack_processes

    stack = start_stack(workdir / label, args=stack_args, env=clean_env())
    try:
        sqs = stack.client("sqs")
        queue_backlog(stack, sqs, messages, label)
        meter = CpuMeter(stack_processes(stack.ready["pid"]))
        meter.start()
        started = time.monotonic()
        samples: list[tuple[float, int]] = []
        while True:
            left = depth(sqs, stack.queue_url)
            samples.append((time.monotonic() - started, left))
            if left == 0 or samples[-1][0] > TIMEOUT_SECONDS:
                break
            time.sleep(1.0)
        seconds = samples[-1][0]
        cpu = meter.stop()
    finally:
        stack.stop()
    unit = yardstick.cpu_ms(runs=5)
    drained = messages - samples[-1][1]
    return {
        "label": label,
        "messages": messages,
        "drained": drained,
        "seconds": round(seconds, 1),
        "per_second": round(drained / seconds, 1) if seconds else None,
        "per_second_by_window": windows(samples),
        "cores": {name: round(used["cores"], 2) for name, used in cpu["processes"].items()},
        "cpu_yardstick_ms": round(unit, 1),
        # Declines drained in the time one core takes to run the yardstick's loop.
        "per_cpu_yardstick": round(drained / seconds * unit / 1000, 2) if seconds else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "stack_args": list(stack_args),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drain_backlog", description=__doc__.splitlines()[0])
    parser.add_argument("sizes", type=int, nargs="+", help="backlog sizes, e.g. 2000 10000")
    parser.add_argument("--runs", type=int, default=1, help="runs of each size, each on a fresh stack (default 1)")
    parser.add_argument("--stack-args", default="", help='options for python -m tools.local, e.g. "--pollers 2"')
    args = parser.parse_args(argv)
    stack_args = shlex.split(args.stack_args)
    prepare_environment()
    with tempfile.TemporaryDirectory(prefix="drain-backlog-") as workdir:
        for size in args.sizes:
            for run in range(1, args.runs + 1):
                print(json.dumps(measure(size, f"drain-{size}-{run}", stack_args, Path(workdir))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

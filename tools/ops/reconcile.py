"""Heals declines a booking left behind: a PENDING application on a job out of OPEN gets its decline queued."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chalicelib.booking import BookingService
from tools.shared import Printer, say


@dataclass
class ReconcileReport:
    jobs_scanned: int = 0
    jobs_with_leftovers: int = 0
    jobs_healed: int = 0
    declines_queued: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.jobs_scanned} closed or cancelled jobs scanned, {self.jobs_with_leftovers} with PENDING leftovers, "
            f"{self.jobs_healed} healed, {self.declines_queued} declines queued, {len(self.failures)} failures"
        )


def reconcile(store: Any, publisher: Any, *, dry_run: bool = False, out: Printer = say) -> ReconcileReport:
    """Queues a decline for every PENDING application of every job out of OPEN (with its reason).

    A booking commits first and queues its declines after; a crash or an SQS outage
    in between leaves PENDING applications on a closed job. The worker only ever
    moves PENDING to DECLINED, so re-queuing is always safe, also for declines that
    are still on their way.
    """
    report = ReconcileReport()
    bookings = BookingService(store, publisher)
    for job in store.closed_jobs():
        report.jobs_scanned += 1
        try:
            leftovers, sent = bookings.queue_leftover_declines(job, dry_run=dry_run)
            if not leftovers:
                continue
            report.jobs_with_leftovers += 1
            if sent is None:
                out(f"  job {job.job_id}: would queue {len(leftovers)} declines")
                continue
            report.declines_queued += sent.queued
            if sent.failed_ids:
                report.failures.append(f"job {job.job_id}: {len(sent.failed_ids)} declines not queued")
                out(f"  job {job.job_id}: queued {sent.queued}, NOT queued {len(sent.failed_ids)}")
            else:
                report.jobs_healed += 1
                out(f"  job {job.job_id}: queued {sent.queued} declines")
        except Exception as exc:  # one job's failure must not stop the others
            report.failures.append(f"job {job.job_id}: {exc}")
            out(f"  job {job.job_id}: failed: {exc}")
    return report

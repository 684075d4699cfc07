"""An in-memory ``booking.DeclinePublisher``: records what was published, fails as scripted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chalicelib.domain import EnqueueReport, Reason


@dataclass(frozen=True)
class Published:
    job_id: str
    application_ids: tuple[str, ...]
    sweep_after: int | None
    reason: Reason | None


class RecordingPublisher:
    """Every call is recorded in ``calls``, failed ones included.

    ``fail_ids``: applications whose decline is reported not queued; ``sweep_fails``:
    the sweep is reported not queued; ``raises``: the next calls raise this error
    (``raise_times`` of them), as a publisher whose client gave up would.
    """

    def __init__(
        self,
        *,
        fail_ids: Sequence[str] = (),
        sweep_fails: bool = False,
        raises: Exception | None = None,
        raise_times: int = 1_000_000,
    ) -> None:
        self.fail_ids = set(fail_ids)
        self.sweep_fails = sweep_fails
        self.raises = raises
        self.raise_times = raise_times
        self.calls: list[Published] = []

    def publish(
        self,
        job_id: str,
        application_ids: Sequence[str],
        *,
        sweep_after: int | None = None,
        reason: Reason | None = None,
    ) -> EnqueueReport:
        self.calls.append(Published(job_id, tuple(application_ids), sweep_after, reason))
        if self.raises is not None and self.raise_times > 0:
            self.raise_times -= 1
            raise self.raises
        failed = [a for a in application_ids if a in self.fail_ids]
        return EnqueueReport(
            queued=len(application_ids) - len(failed),
            failed_ids=failed,
            sweep_failed=sweep_after is not None and self.sweep_fails,
        )

    def heal(self) -> None:
        """From now on every message goes out."""
        self.fail_ids.clear()
        self.sweep_fails = False
        self.raises = None

    @property
    def sweeps(self) -> list[str]:
        return [call.job_id for call in self.calls if call.sweep_after is not None]

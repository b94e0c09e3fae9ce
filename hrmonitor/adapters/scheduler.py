"""The only module that imports APScheduler (3.x).

Every job runs with ``max_instances=1`` and ``coalesce=True`` (ARCHITECTURE rule
9): a sweep that overruns its interval is never started twice, and missed runs
collapse into one. A job that raises is logged by the listener below and the
scheduler carries on; the daemon never dies of one failed sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


class Scheduler:
    def __init__(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._scheduler.add_listener(self._on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED)

    def every(
        self,
        name: str,
        interval: timedelta,
        job: Job,
        *,
        first_run: datetime | None = None,
        jitter: float | None = None,
    ) -> None:
        """Run ``job`` every ``interval``; the first run at ``first_run`` (None: now)."""
        seconds = max(interval.total_seconds(), 0.05)
        self._scheduler.add_job(
            job,
            IntervalTrigger(seconds=seconds, jitter=jitter, timezone="UTC"),
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=first_run,
            replace_existing=True,
        )

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def job_names(self) -> list[str]:
        return [job.id for job in self._scheduler.get_jobs()]

    @staticmethod
    def _on_event(event: JobExecutionEvent) -> None:
        if event.exception is not None:
            log.error("job %s failed: %r\n%s", event.job_id, event.exception, event.traceback)
        else:
            log.warning("job %s missed its run time", event.job_id)

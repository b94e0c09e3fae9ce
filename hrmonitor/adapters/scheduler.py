"""The only module that imports APScheduler (3.x).

Every job runs with ``max_instances=1`` and ``coalesce=True`` (ARCHITECTURE rule
9): a sweep that overruns its interval is never started twice, and missed runs
collapse into one. A job that raises is logged by the listener below and the
scheduler carries on; the daemon never dies of one failed sweep. At shutdown
:meth:`Scheduler.stop` cancels the jobs still running (a sweep waiting on DNS
timeouts) and waits for them, so nothing they use is closed under them.
"""

from __future__ import annotations

import asyncio
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
        self._running: set[asyncio.Task[object]] = set()

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
        options: dict[str, object] = {}
        if first_run is not None:  # APScheduler reads an explicit None as "paused"
            options["next_run_time"] = first_run
        self._scheduler.add_job(
            self._tracked(job),
            IntervalTrigger(seconds=seconds, jitter=jitter, timezone="UTC"),
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            replace_existing=True,
            **options,
        )

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    async def stop(self) -> None:
        """No new runs; cancel the runs in progress and wait until they have ended."""
        self.shutdown()
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def _tracked(self, job: Job) -> Job:
        async def run() -> None:
            task = asyncio.current_task()
            if task is not None:
                self._running.add(task)
            try:
                await job()
            except asyncio.CancelledError:
                # Only stop() cancels a run, and the run ends here: ending it quietly
                # keeps APScheduler from logging a shutdown as a failed job.
                log.debug("a job run was cancelled at shutdown")
            finally:
                if task is not None:
                    self._running.discard(task)

        return run

    def job_names(self) -> list[str]:
        return [job.id for job in self._scheduler.get_jobs()]

    @staticmethod
    def _on_event(event: JobExecutionEvent) -> None:
        if isinstance(event.exception, asyncio.CancelledError):
            log.debug("job %s cancelled (shutdown)", event.job_id)
        elif event.exception is not None:
            log.error("job %s failed: %r\n%s", event.job_id, event.exception, event.traceback)
        else:
            log.warning("job %s missed its run time", event.job_id)

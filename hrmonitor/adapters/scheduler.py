"""The only module that imports APScheduler (3.x).

Every job runs with ``max_instances=1`` and ``coalesce=True`` (ARCHITECTURE rule
9): a sweep that overruns its interval is never started twice, and missed runs
collapse into one. A job that raises is survived: the daemon never dies of
one failed sweep. A job that keeps failing (its store or resolver is down)
backs off exponentially with jitter (its runs are skipped until the backoff
has passed, never more often than its interval) and is logged once per
``failure_log_seconds`` with a count, not once per run (``core.backoff``). At shutdown
:meth:`Scheduler.stop` cancels the jobs still running (a sweep waiting on DNS
timeouts) and waits for them, so nothing they use is closed under them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from hrmonitor.core.backoff import Backoff, FailureLog

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


# A failing job waits at most this long between runs (or its interval, if longer).
MAX_BACKOFF_SECONDS = 60.0


class Scheduler:
    def __init__(self, failure_log_seconds: float = 60.0) -> None:
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._scheduler.add_listener(self._on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        self._running: set[asyncio.Task[object]] = set()
        self._failure_log_seconds = failure_log_seconds
        self._rng = random.Random()

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
            self._tracked(name, job, seconds),
            IntervalTrigger(seconds=seconds, jitter=jitter, timezone="UTC"),
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            replace_existing=True,
            **options,
        )

    def remove(self, name: str) -> None:
        """No more runs of job ``name`` (a run in progress finishes); nothing if unknown."""
        if self._scheduler.get_job(name) is not None:
            self._scheduler.remove_job(name)

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

    def _tracked(self, name: str, job: Job, interval: float) -> Job:
        failures = FailureLog(self._failure_log_seconds)
        backoff = Backoff(base=interval, cap=max(interval, MAX_BACKOFF_SECONDS))
        resume_at = 0.0

        async def run() -> None:
            nonlocal resume_at
            if time.monotonic() < resume_at:
                return  # backing off: this run is skipped
            task = asyncio.current_task()
            if task is not None:
                self._running.add(task)
            try:
                await job()
            except asyncio.CancelledError:
                # Only stop() cancels a run, and the run ends here: ending it quietly
                # keeps APScheduler from logging a shutdown as a failed job.
                log.debug("a job run was cancelled at shutdown")
            except Exception as exc:
                now = time.monotonic()
                resume_at = now + backoff.delay(failures.failing + 1, self._rng)
                count = failures.failed(now)
                if count is not None and failures.failing == 1:
                    log.error("job %s failed; backing off", name, exc_info=exc)
                elif count is not None:
                    log.error(
                        "job %s failed %d more time(s) (%d in a row), backing off: %r",
                        name, count, failures.failing, exc,
                    )  # fmt: skip
            else:
                if outage := failures.recovered():
                    log.warning("job %s works again after %d failure(s)", name, outage)
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

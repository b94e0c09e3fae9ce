"""The scheduler adapter: jobs never overlap, a failing job is survived, stop() ends runs."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from hrmonitor.adapters.scheduler import Scheduler


async def test_a_slow_job_never_overlaps_itself_and_stop_cancels_the_run_in_progress() -> None:
    scheduler = Scheduler()
    started = asyncio.Event()
    runs = 0
    ended = False

    async def slow() -> None:
        nonlocal runs, ended
        runs += 1
        started.set()
        try:
            await asyncio.Event().wait()  # a sweep stuck on DNS timeouts
        finally:
            ended = True

    scheduler.every("slow", timedelta(milliseconds=50), slow)
    scheduler.start()
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.sleep(0.3)  # several intervals pass while the first run is stuck
    assert runs == 1  # max_instances=1: no second run while the first is in progress
    await asyncio.wait_for(scheduler.stop(), 5)
    assert ended


async def test_a_failing_job_is_logged_and_runs_again(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = Scheduler()
    calls = 0
    twice = asyncio.Event()

    async def failing() -> None:
        nonlocal calls
        calls += 1
        if calls >= 2:
            twice.set()
        raise RuntimeError("sweep failed")

    scheduler.every("failing", timedelta(milliseconds=50), failing)
    scheduler.start()
    await asyncio.wait_for(twice.wait(), 5)
    await scheduler.stop()
    assert calls >= 2
    assert any("job failing failed" in r.getMessage() for r in caplog.records)


async def test_a_job_that_keeps_failing_backs_off_and_is_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler = Scheduler(failure_log_seconds=60)
    calls = 0
    healthy = False
    recovered = asyncio.Event()

    async def store_down() -> None:
        nonlocal calls
        calls += 1
        if healthy:
            recovered.set()
            return
        raise RuntimeError("database or disk is full")

    scheduler.every("sweep:normal", timedelta(milliseconds=20), store_down)
    scheduler.start()
    await asyncio.sleep(1.5)  # 75 intervals: without backoff, 75 runs and 75 tracebacks
    failed_runs = calls
    healthy = True
    await asyncio.wait_for(recovered.wait(), 120)
    await scheduler.stop()
    lines = [r.getMessage() for r in caplog.records if "sweep:normal" in r.getMessage()]
    failures = [line for line in lines if "failed" in line]
    # 20 ms doubling per failure with jitter: about 7 runs in 1.5 s, never 75.
    assert 2 <= failed_runs <= 12
    assert len(failures) == 1  # the first, with its traceback; the rest are counted
    assert any(r.exc_info for r in caplog.records if "sweep:normal failed" in r.getMessage())
    assert lines[-1] == f"job sweep:normal works again after {failed_runs} failure(s)"

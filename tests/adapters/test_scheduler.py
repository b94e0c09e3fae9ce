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

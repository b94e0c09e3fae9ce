"""The retry schedule, the queue lifetime and what a reply means for a recipient."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypedDict

import pytest

from hrmonitor.core.delivery.retry import (
    Bounce,
    Delivered,
    Retry,
    RetryPolicy,
    judge_reply,
    reply_status,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class Common(TypedDict):
    """The keyword arguments of ``judge_reply`` that a test holds fixed."""

    failures: int
    arrived_at: datetime
    now: datetime


POLICY = RetryPolicy.of([timedelta(minutes=1), timedelta(minutes=5)], timedelta(hours=1))


def test_delay_follows_the_schedule_and_repeats_its_last_step() -> None:
    assert [POLICY.delay(n) for n in (1, 2, 3, 9)] == [
        timedelta(minutes=1),
        timedelta(minutes=5),
        timedelta(minutes=5),
        timedelta(minutes=5),
    ]


def test_a_2xx_delivers_a_5xx_bounces_with_its_enhanced_status() -> None:
    common: Common = {"failures": 1, "arrived_at": T0, "now": T0}
    assert judge_reply(POLICY, code=250, text="2.0.0 ok", **common) == Delivered()
    verdict = judge_reply(POLICY, code=550, text="5.1.1 no such user", **common)
    assert verdict == Bounce("5.1.1", "550 5.1.1 no such user")


def test_a_4xx_retries_on_the_schedule() -> None:
    verdict = judge_reply(POLICY, code=451, text="4.7.1 later", failures=2, arrived_at=T0, now=T0)
    assert verdict == Retry(T0 + timedelta(minutes=5))


def test_a_retry_never_lands_after_the_queue_lifetime() -> None:
    now = T0 + timedelta(minutes=58)
    verdict = judge_reply(POLICY, code=451, text="later", failures=3, arrived_at=T0, now=now)
    assert verdict == Retry(T0 + timedelta(hours=1))


def test_a_temporary_failure_after_the_lifetime_bounces_with_4_4_7() -> None:
    now = T0 + timedelta(hours=1)
    verdict = POLICY.after_failure(failures=9, arrived_at=T0, now=now, reason="451 later")
    assert isinstance(verdict, Bounce)
    assert verdict.status == "4.4.7"
    assert "451 later" in verdict.reason


@pytest.mark.parametrize(
    ("code", "text", "status"),
    [
        (550, "5.7.1 listed", "5.7.1"),
        (550, "no such user", "5.0.0"),
        (421, "bye", "4.0.0"),
        (550, "", "5.0.0"),
    ],
)
def test_reply_status_prefers_the_enhanced_code(code: int, text: str, status: str) -> None:
    assert reply_status(code, text) == status


def test_an_empty_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one step"):
        RetryPolicy.of([], timedelta(days=1))

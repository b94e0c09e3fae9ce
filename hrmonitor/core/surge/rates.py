"""Outbound hard-bounce and complaint rates per tenant, with the published thresholds marked."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class RateStatus(StrEnum):
    OK = "ok"
    REVIEW = "review"
    PAUSE = "pause"


@dataclass(frozen=True, slots=True)
class RateThresholds:
    """Published (Amazon SES): hard bounces 5 % review, 10 % pause; complaints 0.1 %, 0.5 %."""

    bounce_review: float = 0.05
    bounce_pause: float = 0.10
    complaint_review: float = 0.001
    complaint_pause: float = 0.005


@dataclass(frozen=True, slots=True)
class RateRow:
    tenant: str
    sent: int
    hard_bounces: int
    complaints: int
    hard_bounce_rate: float
    complaint_rate: float
    bounce_status: RateStatus
    complaint_status: RateStatus

    @property
    def status(self) -> RateStatus:
        order = (RateStatus.OK, RateStatus.REVIEW, RateStatus.PAUSE)
        return max(self.bounce_status, self.complaint_status, key=order.index)

    def as_dict(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "sent": self.sent,
            "hard_bounces": self.hard_bounces,
            "complaints": self.complaints,
            "hard_bounce_rate": round(self.hard_bounce_rate, 5),
            "complaint_rate": round(self.complaint_rate, 5),
            "bounce_status": str(self.bounce_status),
            "complaint_status": str(self.complaint_status),
            "status": str(self.status),
        }


def _status(rate: float, review: float, pause: float) -> RateStatus:
    if rate >= pause:
        return RateStatus.PAUSE
    return RateStatus.REVIEW if rate >= review else RateStatus.OK


def rate_rows(
    counts: Iterable[tuple[str, int, int, int]], thresholds: RateThresholds = RateThresholds()
) -> tuple[RateRow, ...]:
    """Rows of (tenant, sent, hard bounces, complaints) with rates and status, by tenant name.

    Rates are raw, as the providers publish them; ``sent`` is the report's
    volume column so a reader can judge a rate over ten messages.
    """
    rows = []
    for tenant, sent, hard, complaints in sorted(counts):
        bounce_rate = hard / max(sent, hard, 1)
        complaint_rate = complaints / max(sent, complaints, 1)
        rows.append(
            RateRow(
                tenant,
                sent,
                hard,
                complaints,
                bounce_rate,
                complaint_rate,
                _status(bounce_rate, thresholds.bounce_review, thresholds.bounce_pause),
                _status(complaint_rate, thresholds.complaint_review, thresholds.complaint_pause),
            )
        )
    return tuple(rows)

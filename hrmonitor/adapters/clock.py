"""The one place that reads the system clock (ARCHITECTURE rule 3)."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

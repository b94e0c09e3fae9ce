"""Alert dedupe cost of a sweep: N open alerts raised again, all held back by dedupe.

Every sweep re-raises each open listing (rotation's alert for it); dedupe holds
them until ``repeat_after``. This times ``Store.claim_alerts_detailed`` on such
a batch: one SELECT of the keys, no UPDATE or INSERT for an alert plainly held.
Median of 5 rounds, a fresh SQLite file (or the database URL given).

    .venv/bin/python benchmarks/alert_claims.py [--alerts 2000] [--url sqlite:///...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete

from hrmonitor.adapters.store import open_store
from hrmonitor.adapters.store.schema import AlertRow
from hrmonitor.core.alert import Alert, AlertKind
from hrmonitor.core.model import Severity

T0 = datetime(2026, 12, 7, tzinfo=UTC)
REPEAT = timedelta(hours=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=2000)
    parser.add_argument("--url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        url = args.url or f"sqlite:///{Path(directory) / 'bench.db'}"
        store = open_store(url)
        try:
            store.upgrade()
            keys = [f"bench:{n}" for n in range(args.alerts)]

            def batch(at: datetime) -> list[Alert]:
                return [Alert(AlertKind.LISTING, Severity.HIGH, k, "s", at, {"zone": "z"})
                        for k in keys]  # fmt: skip

            store.claim_alerts_detailed(batch(T0), REPEAT)
            times = []
            for minute in range(1, 6):
                alerts = batch(T0 + timedelta(minutes=minute))
                started = time.perf_counter()
                claims = store.claim_alerts_detailed(alerts, REPEAT)
                times.append(time.perf_counter() - started)
                assert not any(claim.outcome.sends for claim in claims)
            median = statistics.median(times) * 1000
            print(f"{url.split(':')[0]}: {args.alerts} open alerts raised again: {median:.0f} ms")
        finally:
            if args.url:  # a shared database: leave no rows behind
                with store.engine.begin() as connection:
                    connection.execute(delete(AlertRow).where(AlertRow.key.like("bench:%")))
            store.close()


if __name__ == "__main__":
    main()

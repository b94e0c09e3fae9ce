"""The daemon's gauges, set from the store: what ``hrmonitor report`` shows, as metrics.

The pools' health, each IP's state, listings, suspensions and warm-up usage come
from the report itself (``services.report.build_report``), so a dashboard and
the report can never disagree; the queue's size and oldest age per pool and
state come from one grouped query.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hrmonitor.adapters.metrics import IpGauges, Metrics, QueueGauge
from hrmonitor.adapters.store import Store
from hrmonitor.adapters.store.queue.repository import QueueRepository
from hrmonitor.config.loading import Config
from hrmonitor.services.report import build_report


def refresh_metrics(metrics: Metrics, config: Config, store: Store, now: datetime) -> None:
    """Set every store-backed gauge (blocking: run it in a thread)."""
    report = build_report(config, store, now)
    gauges: list[IpGauges] = []
    for pool in report["pools"]:
        summary: dict[str, Any] = pool["summary"]
        metrics.set_pool_health(pool["name"], str(summary["health"]), int(summary["score"]))
        gauges.extend(
            IpGauges(
                pool=pool["name"],
                ip=ip["ip"],
                state=ip["state"],
                listed_on=tuple(sorted({listing["zone"] for listing in ip["listings"]})),
                suspensions=len(ip["suspensions"]),
                sent_today=int(ip["sent_today"] or 0),
                daily_cap=ip["daily_cap"],
            )
            for ip in pool["ips"]
        )
    metrics.set_ips(gauges)
    queue = QueueRepository(store.engine)
    metrics.set_queue(
        {pool: sum(n for status, n in by.items() if status not in ("delivered", "bounced"))
         for pool, by in queue.counts().items()}
    )  # fmt: skip
    metrics.set_queue_detail(
        QueueGauge(pool, state, messages, max(0.0, (now - oldest).total_seconds()))
        for pool, state, messages, oldest in queue.waiting(now)
    )

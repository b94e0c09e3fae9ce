"""What a reload cannot change in place is named, key by key, as waiting for a restart."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hrmonitor.app.reload import restart_only
from hrmonitor.config.loading import Config, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def example() -> Config:
    return load_config(EXAMPLE)


def test_in_place_changes_wait_for_nothing() -> None:
    old = example()
    pools = dict(old.pools)
    pools["normal"] = pools["normal"].model_copy(update={"ips": ("127.0.0.12",)})
    dnsbl = old.dnsbl.model_copy(update={"zones": ("spamcop",), "interval": timedelta(hours=1)})
    tenants = (old.tenants[0].model_copy(update={"networks": ("127.0.0.7/32",)}),)
    new = old.model_copy(update={"pools": pools, "dnsbl": dnsbl, "tenants": tenants})
    assert restart_only(old, new) == []


def test_what_the_running_parts_were_built_with_waits_for_a_restart() -> None:
    old = example()
    new = old.model_copy(
        update={
            "listener": old.listener.model_copy(update={"bind": "127.0.0.1:2626"}),
            "node": old.node.model_copy(update={"lease": timedelta(minutes=1)}),
            "dnsbl": old.dnsbl.model_copy(update={"rate_per_zone": 10.0}),
            "alerting": old.alerting.model_copy(update={"queue_size": 10}),
            "limits": old.limits.model_copy(update={"sync": timedelta(seconds=5)}),
        }
    )
    assert restart_only(old, new) == [
        "listener", "node", "dnsbl.rate_per_zone", "alerting.queue_size", "limits.sync",
    ]  # fmt: skip

"""The metrics adapter keeps its label sets bounded and its gauges truthful."""

from __future__ import annotations

from hrmonitor.adapters.metrics import IpGauges, Metrics, QueueGauge


def lines(metrics: Metrics, name: str) -> list[str]:
    return [
        line
        for line in metrics.render().decode().splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    ]


def test_destination_domains_beyond_the_first_n_count_as_other() -> None:
    metrics = Metrics(destination_labels=3)
    for n in range(10):
        metrics.attempt("normal", "192.0.2.1", "delivered", f"d{n}.example")
    metrics.attempt("normal", "192.0.2.1", "delivered", "D0.example")  # same domain, any case
    rendered = lines(metrics, "hrmonitor_destination_attempts_total")
    destinations = {line.split('destination="')[1].split('"')[0] for line in rendered}
    assert destinations == {"d0.example", "d1.example", "d2.example", "other"}
    assert 'hrmonitor_destination_attempts_total{destination="other",result="delivered"} 7.0' in (
        rendered
    )
    assert (
        'hrmonitor_destination_attempts_total{destination="d0.example",result="delivered"} 2.0'
        in (rendered)
    )


def test_a_cleared_listing_and_an_emptied_queue_state_read_zero() -> None:
    metrics = Metrics()
    metrics.set_ips([IpGauges("high", "192.0.2.9", "retired", listed_on=("zen",), daily_cap=50)])
    metrics.set_queue_detail([QueueGauge("high", "deferred", 4, 30.0)])
    assert 'hrmonitor_ip_listed{ip="192.0.2.9",pool="high",zone="zen"} 1.0' in lines(
        metrics, "hrmonitor_ip_listed"
    )
    metrics.set_ips([IpGauges("high", "192.0.2.9", "standby")])
    metrics.set_queue_detail([])
    assert lines(metrics, "hrmonitor_ip_listed") == [
        'hrmonitor_ip_listed{ip="192.0.2.9",pool="high",zone="zen"} 0.0'
    ]
    assert lines(metrics, "hrmonitor_ip_daily_cap") == []  # warm-up over: no cap series
    assert 'hrmonitor_queue_messages{pool="high",state="deferred"} 0.0' in lines(
        metrics, "hrmonitor_queue_messages"
    )

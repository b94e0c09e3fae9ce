"""Connection limits: in all and per client address, with rate-limited log lines."""

from __future__ import annotations

import logging

import pytest

from hrmonitor.adapters.smtp_in.connections import ConnectionLimits


def test_limits_admit_up_to_each_bound_and_release_frees_a_slot() -> None:
    limits = ConnectionLimits(total=3, per_client=2)
    assert limits.admit("a") is None
    assert limits.admit("a") is None
    refused = limits.admit("a")
    assert refused == "2 connections open from a (max_connections_per_client = 2)"
    assert limits.admit("b") is None
    assert limits.admit("c") == "3 connections open (max_connections = 3)"
    limits.release("a")
    assert limits.open == 2
    assert limits.admit("c") is None


def test_refusals_are_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits = ConnectionLimits(total=1, per_client=1, log_every=3600)
    assert limits.admit("a") is None
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            assert limits.admit("b") is not None
    assert len(caplog.records) == 1
    assert "refused with 421" in caplog.records[0].getMessage()
    limits._last_log = float("-inf")  # the interval is over
    with caplog.at_level(logging.WARNING):
        limits.admit("b")
    assert "(4 more refused since the last report)" in caplog.records[-1].getMessage()

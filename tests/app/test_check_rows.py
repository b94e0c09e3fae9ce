"""The ``check --json`` result rows (SPEC "JSON shapes"), for every kind of answer."""

from __future__ import annotations

from typing import Any

from hrmonitor.app.oneshot import _result_rows
from hrmonitor.core.dnsbl.answers import SweepResult
from hrmonitor.core.model import Answer, Clean, Error, Info, Listed, Severity, Unknown, ZoneHealth

ZONES = {"bl": "bl.test", "dead": "dead.test"}
POOLS = {"127.0.0.10": "normal"}


def rows(*answers: Answer) -> list[dict[str, Any]]:
    health = {"bl": ZoneHealth.OK, "other": ZoneHealth.OK, "dead": ZoneHealth.DEAD}
    result = SweepResult(answers, health)
    return _result_rows(result.trusted, result.answers, POOLS.get, ZONES)


def row(ip: str, zone: str, status: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ip": ip,
        "pool": POOLS.get(ip),
        "zone": ZONES.get(zone, zone),
        "list": zone,
        "status": status,
        "codes": [],
        "tags": [],
        "severity": None,
        "txt": "",
    }
    return base | fields


def test_each_answer_of_a_healthy_zone_is_one_row_with_the_spec_fields_in_order() -> None:
    got = rows(
        Clean("127.0.0.10", "bl"),
        Listed("127.0.0.10", "bl", ("127.0.0.2",), ("SBL",), Severity.HIGH, "see x"),
        Listed("192.0.2.1", "bl", (), (), Severity.LOW),
        Info("127.0.0.10", "bl", ("127.0.0.13",), ("rep",), "t"),
        Info("127.0.0.10", "bl", ("127.0.0.14",), ()),
        Error("127.0.0.10", "bl", ("127.255.255.254",), "refused"),
        Unknown("127.0.0.10", "bl", "timeout"),
        Clean("127.0.0.10", "other"),
    )

    assert got == [
        row("127.0.0.10", "bl", "clean"),
        row(
            "127.0.0.10",
            "bl",
            "listed",
            codes=["127.0.0.2"],
            tags=["SBL"],
            severity="high",
            txt="see x",
        ),
        row("192.0.2.1", "bl", "listed", severity="low"),
        row("127.0.0.10", "bl", "info", codes=["127.0.0.13"], tags=["rep"], txt="t"),
        row("127.0.0.10", "bl", "info", codes=["127.0.0.14"]),
        row("127.0.0.10", "bl", "error", codes=["127.255.255.254"], txt="refused"),
        row("127.0.0.10", "bl", "unknown", txt="timeout"),
        row("127.0.0.10", "other", "clean"),
    ]
    assert all(list(r) == list(row("", "", "")) for r in got)


def test_answers_of_an_unhealthy_zone_are_unknown_and_keep_what_was_answered() -> None:
    got = rows(
        Listed("127.0.0.10", "dead", ("127.0.0.2",), ("SBL",), Severity.HIGH),
        Clean("127.0.0.10", "dead"),
        Unknown("127.0.0.10", "dead", "timeout"),
    )

    assert got == [
        row(
            "127.0.0.10",
            "dead",
            "unknown",
            codes=["127.0.0.2"],
            txt="zone dead this sweep (listed ignored)",
            untrusted_status="listed",
        ),
        row(
            "127.0.0.10",
            "dead",
            "unknown",
            txt="zone dead this sweep (clean ignored)",
            untrusted_status="clean",
        ),
        row("127.0.0.10", "dead", "unknown", txt="timeout"),
    ]

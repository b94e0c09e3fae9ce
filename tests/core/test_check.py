"""The check command's exit status: critical, unknown, warning, ok, in that precedence."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.dnsbl.check import Verdict, plugin_output, verdict
from hrmonitor.core.model import Answer, Clean, Error, Listed, Severity, Unknown, ZoneHealth

IP = "192.0.2.1"


def high(_ip: str) -> Severity:
    return Severity.HIGH


def listed(severity: Severity) -> Listed:
    return Listed(IP, "bl", ("127.0.0.2",), ("SBL",), severity, "txt")


def test_all_clean_and_healthy_is_ok() -> None:
    assert verdict([Clean(IP, "a"), Clean(IP, "b")], {"a": ZoneHealth.OK}, high) is Verdict.OK


def test_listing_at_retire_at_is_critical_even_with_zones_down() -> None:
    answers: list[Answer] = [listed(Severity.HIGH), Unknown(IP, "b", "timeout")]
    assert verdict(answers, {"b": ZoneHealth.UNREACHABLE}, high) is Verdict.CRITICAL


def test_listing_below_retire_at_is_a_warning() -> None:
    assert verdict([listed(Severity.MEDIUM), Clean(IP, "b")], {}, high) is Verdict.WARNING


def test_retire_at_of_the_ips_pool_decides_critical() -> None:
    def low(_ip: str) -> Severity:
        return Severity.LOW

    assert verdict([listed(Severity.MEDIUM)], {}, low) is Verdict.CRITICAL


def test_nothing_trustworthy_is_unknown_never_ok() -> None:
    answers: list[Answer] = [
        Unknown(IP, "a", "timeout"),
        Error(IP, "b", ("127.255.255.254",), "refused"),
    ]
    assert verdict(answers, {}, high) is Verdict.UNKNOWN
    assert verdict([], {}, high) is Verdict.UNKNOWN


def test_some_unknown_answers_make_a_warning() -> None:
    assert verdict([Clean(IP, "a"), Unknown(IP, "b", "x")], {}, high) is Verdict.WARNING


def test_an_unhealthy_zone_makes_a_warning() -> None:
    assert verdict([Clean(IP, "a")], {"b": ZoneHealth.DEAD}, high) is Verdict.WARNING


answers = st.lists(
    st.one_of(
        st.builds(lambda: Clean(IP, "a")),
        st.builds(lambda: Unknown(IP, "a", "t")),
        st.builds(lambda: Error(IP, "a", ("127.255.255.255",), "quota")),
        st.sampled_from(list(Severity)).map(listed),
    ),
    max_size=8,
)


@given(answers)
def test_ok_only_when_every_answer_is_clean(sample: list[Answer]) -> None:
    result = verdict(sample, {}, high)
    assert (result is Verdict.OK) == (bool(sample) and all(isinstance(a, Clean) for a in sample))


def _row(ip: str, status: str, zone: str = "bl", tags: tuple[str, ...] = ()) -> dict[str, object]:
    return {
        "ip": ip, "pool": "high-risk", "zone": f"{zone}.test", "list": zone, "status": status,
        "codes": ["127.0.0.2"] if status == "listed" else [], "tags": list(tags),
        "severity": "critical" if status == "listed" else None, "txt": "",
    }  # fmt: skip


def test_the_status_line_names_a_few_listings_and_counts_the_rest() -> None:
    results = [_row(f"192.0.2.{n}", "listed", tags=("XBL",)) for n in range(1, 6)]
    results += [_row("192.0.2.9", "clean"), _row("192.0.2.9", "unknown", zone="other")]
    zones = [
        {"name": "bl", "zone": "bl.test", "health": "ok"},
        {"name": "other", "zone": "other.test", "health": "ok"},
    ]
    first, *details = plugin_output(zones, results, Verdict.CRITICAL)
    assert first == (
        "DNSBL CRITICAL - 5 listed of 6 (bl: 192.0.2.1 XBL; bl: 192.0.2.2 XBL; "
        "bl: 192.0.2.3 XBL; +2 more), 1 of 7 lookups unanswered"
        "|listed=5;;1 checked=6 answers=7 unknown=1 errors=0 zones=2 zones_unhealthy=0"
    )
    assert len(details) == 6  # every listing, then the unanswered lookups per list
    assert details[-1] == "other: 1 lookup(s) unknown"

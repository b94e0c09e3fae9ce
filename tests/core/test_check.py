"""The check command's exit status: critical, unknown, warning, ok, in that precedence."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.dnsbl.check import Verdict, verdict
from hrmonitor.core.model import Answer, Clean, Error, Listed, Severity, Unknown, ZoneHealth

IP = "192.0.2.1"


def high(_ip: str) -> Severity:
    return Severity.HIGH


def listed(severity: Severity) -> Listed:
    return Listed(IP, "bl", ("127.0.0.2",), ("SBL",), severity, "txt")


def test_all_clean_and_healthy_is_ok() -> None:
    assert verdict([Clean(IP, "a"), Clean(IP, "b")], {"a": ZoneHealth.OK}, high) is Verdict.OK


def test_listing_at_retire_at_is_critical_even_with_zones_down() -> None:
    answers = [listed(Severity.HIGH), Unknown(IP, "b", "timeout")]
    assert verdict(answers, {"b": ZoneHealth.UNREACHABLE}, high) is Verdict.CRITICAL


def test_listing_below_retire_at_is_a_warning() -> None:
    assert verdict([listed(Severity.MEDIUM), Clean(IP, "b")], {}, high) is Verdict.WARNING


def test_retire_at_of_the_ips_pool_decides_critical() -> None:
    def low(_ip: str) -> Severity:
        return Severity.LOW

    assert verdict([listed(Severity.MEDIUM)], {}, low) is Verdict.CRITICAL


def test_nothing_trustworthy_is_unknown_never_ok() -> None:
    answers = [Unknown(IP, "a", "timeout"), Error(IP, "b", ("127.255.255.254",), "refused")]
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

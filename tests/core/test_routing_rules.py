"""Routing rule files: validation names file and key, layering, and the sending-limit window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.adapters.rule_files import load_routing_files, routing_file_problems
from hrmonitor.core.model import Pool, PoolPolicy, RiskClass
from hrmonitor.core.routing.limits import RecipientWindow
from hrmonitor.core.routing.rules import check_rule_pools
from hrmonitor.errors import RuleError

SHIPPED = Path(__file__).parents[2] / "rules" / "routing.toml"
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def write(tmp_path: Path, text: str, name: str = "local.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_rules_are_valid_and_in_order() -> None:
    names = [r.name for r in load_routing_files([SHIPPED])]
    assert names == [
        "null-sender",
        "sender-domain-without-records",
        "spam-score",
        "spam-score-unknown",
        "over-sending-limits",
        "relay-foreign-sender",
    ]


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        ('[rules.x]\nrisk = "high"\n', "rules.x", "at least one condition"),
        ("[rules.x]\nnull_sender = true\n", "rules.x", "exactly one action"),
        ('[rules.x]\nnull_sender = true\nrisk = "high"\npool = "p"\n', "rules.x", "exactly one"),
        ('[rules.x]\nnull_sender = "yes"\nrisk = "high"\n', "rules.x.null_sender", "true or false"),
        ('[rules.x]\nnull_sender = true\nrisk = "severe"\n', "rules.x.risk", "one of"),
        (
            '[rules.x]\nsender_domain_status = "gone"\nrisk = "high"\n',
            "rules.x.sender_domain_status",
            "one of",
        ),
        (
            '[rules.x]\nheader = { name = "S", regex = "(" }\nrisk = "high"\n',
            "rules.x.header[0].regex",
            "bad regular",
        ),
        ('[rules.x]\nmin_recipients = 0\nrisk = "high"\n', "rules.x.min_recipients", ">= 1"),
        ('[rules.x]\ntenant = []\nrisk = "high"\n', "rules.x.tenant", "non-empty"),
        (
            '[rules.x]\nnull_sender = true\nrisk = "high"\ncolour = 1\n',
            "rules.x.colour",
            "unknown key",
        ),
        ("[rule.x]\nnull_sender = true\n", "rule", "unknown key"),
    ],
)
def test_invalid_rule_names_file_key_and_problem(
    tmp_path: Path, body: str, key: str, problem: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(RuleError) as caught:
        load_routing_files([path])
    assert (caught.value.file, caught.value.key) == (str(path), key)
    assert problem in caught.value.problem


def test_bad_toml_and_missing_file_are_rule_errors(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="not valid TOML"):
        load_routing_files([write(tmp_path, "[rules.x\n")])
    with pytest.raises(RuleError, match="no such file"):
        load_routing_files([tmp_path / "absent.toml"])


def test_later_file_overrides_a_rule_by_name_and_can_switch_it_off(tmp_path: Path) -> None:
    local = write(
        tmp_path,
        '[rules.spam-score]\nspam_score_at_least = 8.0\nrisk = "high"\n'
        "[rules.relay-foreign-sender]\nenabled = false\n",
    )
    rules = {r.name: r for r in load_routing_files([SHIPPED, local])}
    assert "relay-foreign-sender" not in rules
    assert rules["spam-score"].spam_score_at_least == 8.0
    assert rules["spam-score"].file == str(local)


def _pool(name: str, risk: RiskClass) -> Pool:
    return Pool(name, risk, (), (), PoolPolicy(), timedelta(minutes=30))


def test_rule_pools_must_exist_but_a_missing_relay_pool_is_allowed(tmp_path: Path) -> None:
    pools = [_pool("normal", RiskClass.NORMAL), _pool("high-risk", RiskClass.HIGH)]
    check_rule_pools(load_routing_files([SHIPPED]), pools)
    local = write(tmp_path, '[rules.x]\nnull_sender = false\npool = "bulk"\n')
    with pytest.raises(RuleError) as caught:
        check_rule_pools(load_routing_files([local]), pools)
    assert caught.value.key == "rules.x.pool"


def test_recipient_window_counts_the_last_hour_and_day_per_sender_case_insensitively() -> None:
    window = RecipientWindow()
    window.record("A@x.test", 5, T0)
    window.record("a@x.test", 3, T0 + timedelta(minutes=50))
    window.record("other@x.test", 100, T0)
    window.record("", 100, T0)  # the null sender is never counted
    assert window.counts("a@X.test", T0 + timedelta(minutes=55)) == (8, 8)
    assert window.counts("a@x.test", T0 + timedelta(minutes=61)) == (3, 8)
    assert window.counts("a@x.test", T0 + timedelta(hours=25)) == (0, 0)
    assert window.counts("", T0) == (0, 0)


@given(
    st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 50)), max_size=30), st.integers(0, 3000)
)
def test_property_window_counts_equal_a_brute_force_sum(
    events: list[tuple[int, int]], at: int
) -> None:
    """Events recorded in time order; counts at a later time match summing by hand (minutes)."""
    window = RecipientWindow()
    events.sort()
    for minute, count in events:
        window.record("s@x.test", count, T0 + timedelta(minutes=minute))
    now = max([at, *(m for m, _ in events)])
    hour = sum(c for m, c in events if now - 60 < m <= now)
    day = sum(c for m, c in events if now - 1440 < m <= now)
    assert window.counts("s@x.test", T0 + timedelta(minutes=now)) == (hour, day)


def test_rules_check_form_lists_the_problem_or_nothing(tmp_path: Path) -> None:

    bad = write(tmp_path, '[rules.x]\nrisk = "high"\n')
    assert routing_file_problems([SHIPPED]) == []
    assert routing_file_problems([bad]) == [f"{bad}: rules.x: a rule needs at least one condition"]

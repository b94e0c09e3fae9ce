"""The routing decision: built-in rules, operator rules, riskiest pool wins, DNS-unknown hold."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.adapters.rule_files import load_routing_files
from hrmonitor.core.model import Pool, PoolPolicy, RiskClass
from hrmonitor.core.mx import DomainStatus
from hrmonitor.core.routing.decide import (
    MessageFacts,
    Reason,
    RoutingSettings,
    Tenant,
    decide,
    decision_from_json,
    message_facts,
    sender_domain_of,
    tenant_for,
)
from hrmonitor.core.routing.limits import LimitStatus, SendingLimits, check_limits
from hrmonitor.core.routing.rules import RoutingRule, parse_rule
from hrmonitor.core.routing.spam_score import ScanResult

SHIPPED = Path(__file__).parents[2] / "rules" / "routing.toml"
RULES = load_routing_files([SHIPPED])
ARRIVAL = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SETTINGS = RoutingSettings(
    limits=SendingLimits(recipients_per_hour=10, recipients_per_day=100), relay_pool="relay"
)
CONTOSO = Tenant("contoso", ("127.0.0.0/8",), ("contoso.example",))


def _pool(name: str, risk: RiskClass) -> Pool:
    return Pool(name, risk, (), (), PoolPolicy(), timedelta(minutes=30))


NORMAL, HIGH, RELAY, BULK = (
    _pool("normal", RiskClass.NORMAL),
    _pool("high-risk", RiskClass.HIGH),
    _pool("relay", RiskClass.RELAY),
    _pool("bulk", RiskClass.NORMAL),
)
POOLS = (NORMAL, HIGH)


def facts(
    mail_from: str = "alice@contoso.example",
    *,
    rcpts: tuple[str, ...] = ("bob@rcpt.test",),
    client: str = "127.0.0.1",
    message: bytes = b"Subject: hi\r\n\r\nbody\r\n",
    status: DomainStatus = DomainStatus.EXISTS,
    last_hour: int = 1,
    scan: ScanResult | None = None,
) -> MessageFacts:
    return message_facts(
        mail_from=mail_from,
        rcpts=rcpts,
        client_ip=client,
        tenant=CONTOSO,
        message=message,
        arrival=ARRIVAL,
        sender_domain_status=status,
        limit=check_limits(last_hour, last_hour, SETTINGS.limits),
        settings=SETTINGS,
        scan=scan,
    )


def rules_of(reasons: tuple[Reason, ...]) -> list[str]:
    return [r.rule for r in reasons]


def test_ordinary_tenant_mail_goes_to_the_normal_pool_with_no_reasons() -> None:
    decision = decide(facts(), RULES, POOLS, SETTINGS, ARRIVAL)
    assert (decision.pool, decision.risk, decision.reasons, decision.hold) == (
        "normal",
        RiskClass.NORMAL,
        (),
        False,
    )


def test_null_sender_goes_high_with_its_reason() -> None:
    decision = decide(facts("<>"), RULES, POOLS, SETTINGS, ARRIVAL)
    assert decision.pool == "high-risk"
    assert rules_of(decision.reasons) == ["null-sender"]


def test_sender_domain_without_records_goes_high() -> None:
    decision = decide(facts(status=DomainStatus.NO_RECORDS), RULES, POOLS, SETTINGS, ARRIVAL)
    assert decision.pool == "high-risk"
    assert "sender-domain-without-records" in rules_of(decision.reasons)


def test_spam_score_at_threshold_from_trusted_filter_goes_high() -> None:
    message = b"X-Spam-Status: Yes, score=5.0 required=5.0\r\n\r\n"
    decision = decide(facts(message=message), RULES, POOLS, SETTINGS, ARRIVAL)
    assert decision.pool == "high-risk"
    assert rules_of(decision.reasons) == ["spam-score"]


def test_spam_score_from_untrusted_client_is_ignored() -> None:
    message = b"X-Spam-Score: 50\r\n\r\n"
    decision = decide(facts(message=message, client="192.0.2.9"), RULES, POOLS, SETTINGS, ARRIVAL)
    assert "spam-score" not in rules_of(decision.reasons)


def test_over_sending_limits_goes_high_and_raises_the_alert() -> None:
    decision = decide(facts(last_hour=11), RULES, POOLS, SETTINGS, ARRIVAL)
    assert decision.pool == "high-risk"
    assert decision.alerts == ("sending-limit",)
    assert "11 recipients in the last hour > 10" in decision.reasons[0].detail


def test_every_matching_rule_is_recorded_and_the_riskiest_pool_wins() -> None:
    message = b"X-Spam-Score: 9\r\n\r\n"
    decision = decide(
        facts("eve@other.example", message=message), RULES, (*POOLS, RELAY), SETTINGS, ARRIVAL
    )
    assert decision.pool == "high-risk"
    assert rules_of(decision.reasons) == ["spam-score", "relay-foreign-sender"]


def test_foreign_sender_goes_to_relay_pool_only_where_one_is_configured() -> None:
    foreign = facts("eve@other.example")
    with_relay = decide(foreign, RULES, (*POOLS, RELAY), SETTINGS, ARRIVAL)
    without = decide(foreign, RULES, POOLS, SETTINGS, ARRIVAL)
    switched_off = replace(SETTINGS, relay_pool="")
    not_named = decide(foreign, RULES, (*POOLS, RELAY), switched_off, ARRIVAL)
    assert with_relay.pool == "relay"
    assert (without.pool, without.reasons) == ("normal", ())
    assert (not_named.pool, not_named.reasons) == ("normal", ())


def test_tenant_subdomain_is_not_foreign() -> None:
    decision = decide(facts("a@mail.contoso.example"), RULES, (*POOLS, RELAY), SETTINGS, ARRIVAL)
    assert decision.pool == "normal"


def test_dns_unknown_holds_within_the_hold_window() -> None:
    unknown = facts(status=DomainStatus.UNKNOWN)
    decision = decide(unknown, RULES, POOLS, SETTINGS, ARRIVAL + timedelta(minutes=9))
    assert decision.hold
    assert decision.hold_until == ARRIVAL + timedelta(minutes=10)
    assert rules_of(decision.reasons) == ["dns-unknown"]


def test_dns_unknown_after_the_hold_applies_on_dns_unknown_with_a_reason() -> None:
    unknown = facts(status=DomainStatus.UNKNOWN)
    decision = decide(unknown, RULES, POOLS, SETTINGS, ARRIVAL + timedelta(minutes=10))
    assert not decision.hold
    assert decision.pool == "high-risk"
    assert "on_dns_unknown" in decision.reasons[0].detail


def test_operator_rule_by_header_and_recipient_count_routes_to_a_named_pool() -> None:
    rule = parse_rule(
        "newsletters",
        {
            "tenant": "contoso",
            "sender_domain": "*.example",
            "header": {"name": "X-Mailer", "regex": "(?i)bulk"},
            "min_recipients": 2,
            "pool": "bulk",
        },
        "local.toml",
    )
    message = b"X-Mailer: BulkMailer 3\r\n\r\n"
    two = ("a@r.test", "b@r.test")
    hit = decide(
        facts(message=message, rcpts=two), (*RULES, rule), (*POOLS, BULK), SETTINGS, ARRIVAL
    )
    miss = decide(facts(rcpts=two), (*RULES, rule), (*POOLS, BULK), SETTINGS, ARRIVAL)
    assert hit.pool == "bulk"
    assert "X-Mailer matches" in hit.reasons[0].detail
    assert miss.pool == "normal"


def test_rule_naming_an_unconfigured_pool_fails_closed_to_the_riskiest_pool() -> None:
    rule = RoutingRule("odd", "local.toml", null_sender=False, pool="nowhere")
    decision = decide(facts(), (rule,), POOLS, SETTINGS, ARRIVAL)
    assert decision.pool == "high-risk"


def test_decision_json_has_the_spec_shape() -> None:
    data = decide(facts("<>"), RULES, POOLS, SETTINGS, ARRIVAL).to_json()
    assert data["pool"] == "high-risk"
    assert data["reasons"] == [{"rule": "null-sender", "detail": "null reverse-path"}]
    assert data["facts"]["mail_from"] == ""  # type: ignore[index]


def test_null_sender_floor_applies_when_the_null_sender_rule_is_switched_off() -> None:
    decision = decide(facts("<>"), (), POOLS, SETTINGS, ARRIVAL)
    assert decision.pool == "high-risk"
    assert rules_of(decision.reasons) == ["null-sender-floor"]


def test_stored_decision_round_trips_through_json() -> None:
    unknown = facts(status=DomainStatus.UNKNOWN, last_hour=11)
    decision = decide(unknown, RULES, POOLS, SETTINGS, ARRIVAL)
    data = json.loads(json.dumps(decision.to_json()))
    assert decision_from_json(data) == decision


def test_sender_domain_and_tenant_lookup() -> None:
    assert sender_domain_of("<Alice@Contoso.Example>") == "contoso.example"
    assert sender_domain_of("<>") == ""
    assert tenant_for("127.0.0.9", [CONTOSO]) is CONTOSO
    assert tenant_for("192.0.2.1", [CONTOSO]) is None


# --- properties -------------------------------------------------------------------------

_statuses = st.sampled_from(list(DomainStatus))
_messages = st.sampled_from(
    [b"\r\n", b"X-Spam-Score: 9\r\n\r\n", b"X-Spam-Score: 1\r\n\r\n", b"X-Mailer: bulk\r\n\r\n"]
)
_senders = st.sampled_from(["", "<>", "a@contoso.example", "b@other.example"])
_clients = st.sampled_from(["127.0.0.1", "192.0.2.4"])
_minutes = st.integers(0, 30).map(lambda m: ARRIVAL + timedelta(minutes=m))
_pools = st.sampled_from([POOLS, (*POOLS, RELAY), (*POOLS, RELAY, BULK)])


@st.composite
def any_facts(draw: st.DrawFn) -> MessageFacts:
    return facts(
        draw(_senders),
        rcpts=tuple(f"r{i}@r.test" for i in range(draw(st.integers(1, 5)))),
        client=draw(_clients),
        message=draw(_messages),
        status=draw(_statuses),
        last_hour=draw(st.integers(0, 20)),
    )


@given(any_facts(), _pools, _minutes, st.booleans())
def test_property_null_sender_never_routes_to_a_normal_pool(
    message: MessageFacts, pools: tuple[Pool, ...], now: datetime, with_rules: bool
) -> None:
    """Even with every rule file switched off: bounces never leave through a normal pool."""
    null = replace(message, mail_from="", sender_domain="")
    assert decide(null, RULES if with_rules else (), pools, SETTINGS, now).risk is RiskClass.HIGH


_extra_conditions = st.sampled_from(
    [
        {"null_sender": False},
        {"sender_domain": "*.example"},
        {"min_recipients": 2},
        {"header": {"name": "X-Mailer", "regex": "bulk"}},
        {"tenant": "contoso"},
    ]
)


@given(any_facts(), _pools, _minutes, _extra_conditions)
def test_property_adding_a_high_rule_never_lowers_the_risk(
    message: MessageFacts, pools: tuple[Pool, ...], now: datetime, condition: dict[str, object]
) -> None:
    before = decide(message, RULES, pools, SETTINGS, now)
    rule = parse_rule("extra-high", {**condition, "risk": "high"}, "local.toml")
    after = decide(message, (*RULES, rule), pools, SETTINGS, now)
    assert after.risk.rank >= before.risk.rank
    assert len(after.reasons) >= len(before.reasons)
    assert after.hold == before.hold


@given(any_facts(), _pools, _minutes)
def test_property_unknown_dns_is_never_routed_normal_once_the_hold_is_over(
    message: MessageFacts, pools: tuple[Pool, ...], now: datetime
) -> None:
    decision = decide(message, RULES, pools, SETTINGS, now)
    if message.sender_domain_status is DomainStatus.UNKNOWN and not message.null_sender:
        assert decision.hold == (now < ARRIVAL + SETTINGS.dns_unknown_hold)
        if not decision.hold:
            assert decision.risk is RiskClass.HIGH
    else:
        assert not decision.hold


def test_limit_status_detail_names_both_limits() -> None:
    status = check_limits(11, 101, SETTINGS.limits)
    assert status == LimitStatus(
        True, 11, 101, "11 recipients in the last hour > 10; 101 recipients in the last day > 100"
    )


def test_rspamds_score_routes_like_a_header_score_and_the_higher_one_counts() -> None:
    scanned = decide(facts(scan=ScanResult(9.0)), RULES, POOLS, SETTINGS, ARRIVAL)
    assert scanned.pool == "high-risk"
    assert [(r.rule, r.detail) for r in scanned.reasons] == [
        ("spam-score", "spam score 9 from rspamd >= 5")
    ]
    low_scan = facts(message=b"X-Spam-Score: 7\r\n\r\nb", scan=ScanResult(1.0))
    assert (low_scan.spam.score, low_scan.spam.header) == (7.0, "X-Spam-Score")
    assert decide(facts(scan=ScanResult(1.0)), RULES, POOLS, SETTINGS, ARRIVAL).pool == "normal"


def test_no_score_from_rspamd_fails_closed_unless_a_trusted_header_scored_it() -> None:
    failed = ScanResult(None, "ConnectError from http://127.0.0.1:1/checkv2: refused")
    decision = decide(facts(scan=failed), RULES, POOLS, SETTINGS, ARRIVAL)
    assert decision.pool == "high-risk"
    assert [(r.rule, r.detail) for r in decision.reasons] == [
        ("spam-score-unknown", f"spam score unknown (rspamd: {failed.problem})")
    ]
    assert decision.facts["spam_unknown"] == f"rspamd: {failed.problem}"
    header_scored = facts(message=b"X-Spam-Score: 1\r\n\r\nb", scan=failed)
    assert decide(header_scored, RULES, POOLS, SETTINGS, ARRIVAL).pool == "normal"
    untrusted = facts(message=b"X-Spam-Score: 1\r\n\r\nb", client="192.0.2.1", scan=failed)
    assert decide(untrusted, RULES, POOLS, SETTINGS, ARRIVAL).pool == "high-risk"
    assert decide(facts(), RULES, POOLS, SETTINGS, ARRIVAL).facts["spam_unknown"] is None


@given(
    header=st.one_of(st.none(), st.floats(-20, 50, allow_nan=False)),
    scanned=st.one_of(st.none(), st.floats(-20, 50, allow_nan=False)),
)
def test_property_the_score_that_counts_is_the_highest_known(
    header: float | None, scanned: float | None
) -> None:
    if header is not None:
        header = round(header, 2)  # filters write plain decimals, as "7.20"
    text = "" if header is None else f"X-Spam-Score: {header:.2f}\r\n"
    message = f"{text}Subject: s\r\n\r\nb".encode()
    got = facts(message=message, scan=ScanResult(scanned, "" if scanned is not None else "down"))
    known = [x for x in (header, scanned) if x is not None]
    assert got.spam.score == (max(known) if known else None)
    assert bool(got.spam.unknown) == (scanned is None)

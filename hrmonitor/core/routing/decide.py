"""The per-message routing decision: message facts + rules -> pool, with every reason.

Decided once per message at acceptance (and again when a held message is
re-resolved). Every matching rule is recorded as a :class:`Reason`; the
riskiest matching pool wins (``RiskClass.rank``), ties going to the earlier
rule; nothing matching means the normal pool. A sender domain whose DNS
state is unknown (timeout, SERVFAIL) holds the message while within
``dns_unknown_hold`` of its arrival; after that ``on_dns_unknown`` applies.
Only NXDOMAIN/NODATA on A, AAAA and MX ever mean "no records".
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hrmonitor.core.model import Pool, RiskClass
from hrmonitor.core.mx import DomainStatus
from hrmonitor.core.routing.limits import LimitStatus, SendingLimits
from hrmonitor.core.routing.rules import RoutingRule
from hrmonitor.core.routing.spam_score import (
    ScanResult,
    SpamScore,
    header_fields,
    spam_score,
    with_scan,
)

__all__ = ["DomainStatus", "MessageFacts", "Reason", "RouteDecision", "RoutingSettings", "Tenant"]

DNS_UNKNOWN_RULE = "dns-unknown"
FAIL_CLOSED_RULE = "fail-closed"
NULL_SENDER_FLOOR_RULE = "null-sender-floor"


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    networks: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()


def tenant_for(client_ip: str | None, tenants: Sequence[Tenant]) -> Tenant | None:
    """The first tenant whose networks hold ``client_ip``."""
    if not client_ip:
        return None
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return None
    for tenant in tenants:
        for network in tenant.networks:
            net = ipaddress.ip_network(network, strict=False)
            if net.version == address.version and address in net:
                return tenant
    return None


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """``[routing]`` and ``[limits]`` of the config, as routing needs them."""

    spam_threshold: float = 5.0
    spam_headers: tuple[str, ...] = ("X-Spam-Score", "X-Spam-Status", "X-Rspamd-Score")
    trusted_filters: tuple[str, ...] = ("127.0.0.1/32",)
    dns_unknown_hold: timedelta = timedelta(minutes=10)
    on_dns_unknown: str = "high-risk"  # a pool name
    relay_pool: str = ""  # the pool ``risk = "relay"`` rules send to; "" switches them off
    limits: SendingLimits = field(default_factory=SendingLimits)


def sender_domain_of(mail_from: str) -> str:
    """The envelope sender's domain, lower case; "" for the null reverse-path."""
    address = mail_from.strip().strip("<>")
    _, at, domain = address.rpartition("@")
    return domain.lower().rstrip(".") if at else ""


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What routing knows about one message; ``headers`` are parsed once from its bytes."""

    mail_from: str  # "" for the null reverse-path
    rcpts: tuple[str, ...]
    client_ip: str | None
    tenant: str | None
    tenant_domains: tuple[str, ...]
    sender_domain: str
    sender_domain_status: DomainStatus
    spam: SpamScore
    limit: LimitStatus
    arrival: datetime
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def null_sender(self) -> bool:
        return self.sender_domain == "" and self.mail_from.strip().strip("<>") == ""

    @property
    def foreign_sender(self) -> bool:
        """The sender domain is not one of the tenant's domains (nor a subdomain of one)."""
        if self.null_sender:
            return False
        domain = self.sender_domain
        return not any(domain == d or domain.endswith("." + d) for d in self.tenant_domains)

    def to_json(self) -> dict[str, object]:
        return {
            "mail_from": self.mail_from,
            "rcpts": list(self.rcpts),
            "recipient_count": len(self.rcpts),
            "client_ip": self.client_ip,
            "tenant": self.tenant,
            "sender_domain": self.sender_domain,
            "sender_domain_status": str(self.sender_domain_status),
            "spam_score": self.spam.score,
            "spam_header": self.spam.header,
            "spam_client_trusted": self.spam.trusted,
            "spam_headers_ignored": list(self.spam.ignored),
            "spam_unknown": self.spam.unknown or None,
            "recipients_last_hour": self.limit.last_hour,
            "recipients_last_day": self.limit.last_day,
            "over_limits": self.limit.over,
            "arrival": self.arrival.isoformat(),
        }


def message_facts(
    *,
    mail_from: str,
    rcpts: Sequence[str],
    client_ip: str | None,
    tenant: Tenant | None,
    message: bytes,
    arrival: datetime,
    sender_domain_status: DomainStatus,
    limit: LimitStatus,
    settings: RoutingSettings,
    scan: ScanResult | None = None,
) -> MessageFacts:
    """The facts routing decides on; ``scan`` is the configured scanner's answer, if any."""
    fields = header_fields(message)
    score = spam_score(fields, settings.spam_headers, client_ip, settings.trusted_filters)
    if scan is not None:
        score = with_scan(score, scan)
    return MessageFacts(
        mail_from=mail_from.strip().strip("<>"),
        rcpts=tuple(rcpts),
        client_ip=client_ip,
        tenant=tenant.name if tenant else None,
        tenant_domains=tuple(d.lower() for d in tenant.domains) if tenant else (),
        sender_domain=sender_domain_of(mail_from),
        sender_domain_status=sender_domain_status,
        spam=score,
        limit=limit,
        arrival=arrival,
        headers=fields,
    )


@dataclass(frozen=True, slots=True)
class Reason:
    rule: str
    detail: str


@dataclass(frozen=True, slots=True)
class RouteDecision:
    pool: str
    risk: RiskClass
    reasons: tuple[Reason, ...]
    facts: Mapping[str, object]
    hold: bool = False  # DNS unknown: keep the message, re-resolve, decide again
    hold_until: datetime | None = None
    alerts: tuple[str, ...] = ()  # alert kinds the decision raises ("sending-limit")

    def to_json(self) -> dict[str, object]:
        return {
            "pool": self.pool,
            "risk": str(self.risk),
            "hold": self.hold,
            "hold_until": self.hold_until.isoformat() if self.hold_until else None,
            "reasons": [{"rule": r.rule, "detail": r.detail} for r in self.reasons],
            "alerts": list(self.alerts),
            "facts": dict(self.facts),
        }


def _score_detail(facts: MessageFacts, threshold: float) -> str | None:
    score = facts.spam.score
    if score is None or score < threshold:
        return None
    return f"spam score {score:g} from {facts.spam.header} >= {threshold:g}"


def rule_detail(rule: RoutingRule, facts: MessageFacts, settings: RoutingSettings) -> str | None:
    """Why ``rule`` matches ``facts`` (all its conditions hold), or None."""
    details: list[str] = []
    if rule.null_sender is not None:
        if facts.null_sender != rule.null_sender:
            return None
        details.append("null reverse-path" if facts.null_sender else "has a reverse-path")
    if rule.sender_domain_status is not None:
        if facts.null_sender or facts.sender_domain_status is not rule.sender_domain_status:
            return None
        details.append(f"sender domain {facts.sender_domain}: {facts.sender_domain_status}")
    if rule.spam is not None:
        detail = _score_detail(facts, settings.spam_threshold)
        if (detail is not None) != rule.spam:
            return None
        details.append(detail or "spam score under the threshold")
    if rule.spam_unknown is not None:
        unknown = bool(facts.spam.unknown) and facts.spam.score is None
        if unknown != rule.spam_unknown:
            return None
        details.append(f"spam score unknown ({facts.spam.unknown})" if unknown else "spam scored")
    if rule.spam_score_at_least is not None:
        detail = _score_detail(facts, rule.spam_score_at_least)
        if detail is None:
            return None
        details.append(detail)
    if rule.over_limits is not None:
        if facts.limit.over != rule.over_limits:
            return None
        details.append(facts.limit.detail or "within sending limits")
    if rule.foreign_sender is not None:
        if facts.foreign_sender != rule.foreign_sender:
            return None
        details.append(
            f"sender domain {facts.sender_domain} is not one of tenant {facts.tenant}'s"
            if facts.foreign_sender
            else f"sender domain {facts.sender_domain} belongs to tenant {facts.tenant}"
        )
    if rule.tenants:
        if facts.tenant not in rule.tenants:
            return None
        details.append(f"tenant {facts.tenant}")
    if rule.sender_domains:
        hit = next(
            (p for p in rule.sender_domains if fnmatch.fnmatchcase(facts.sender_domain, p)), None
        )
        if hit is None:
            return None
        details.append(f"sender domain {facts.sender_domain} matches {hit}")
    for header in rule.headers:
        wanted_name = header.name.lower()
        value = next(
            (v for n, v in facts.headers if n.lower() == wanted_name and header.pattern.search(v)),
            None,
        )
        if value is None:
            return None
        details.append(f"{header.name} matches /{header.pattern.pattern}/")
    if rule.min_recipients is not None:
        if len(facts.rcpts) < rule.min_recipients:
            return None
        details.append(f"{len(facts.rcpts)} recipients >= {rule.min_recipients}")
    return "; ".join(details)


def _first_of_risk(pools: Sequence[Pool], risk: RiskClass) -> Pool | None:
    return next((p for p in pools if p.risk is risk), None)


def _riskiest(pools: Sequence[Pool]) -> Pool:
    return max(pools, key=lambda p: p.risk.rank)


def decide(
    facts: MessageFacts,
    rules: Sequence[RoutingRule],
    pools: Sequence[Pool],
    settings: RoutingSettings,
    now: datetime,
) -> RouteDecision:
    """The pool for this message and every reason; see the module docstring."""
    if not pools:
        raise ValueError("routing needs at least one pool")
    by_name = {p.name: p for p in pools}
    reasons: list[Reason] = []
    chosen: list[Pool] = []
    alerts: list[str] = []
    for rule in rules:
        detail = rule_detail(rule, facts, settings)
        if detail is None:
            continue
        if rule.pool is not None:
            target = by_name.get(rule.pool)
            if target is None:  # config validation should have caught it: fail closed
                target = _riskiest(pools)
                detail += f"; pool {rule.pool!r} is not configured, routed to {target.name}"
        elif rule.risk is RiskClass.RELAY:
            target = by_name.get(settings.relay_pool)
            if target is None:
                continue  # the relay rules apply only where [routing] relay_pool names a pool
        else:
            assert rule.risk is not None
            target = _first_of_risk(pools, rule.risk)
            if target is None:  # config validation should have caught it: fail closed
                target = _riskiest(pools)
                detail += f"; no {rule.risk} pool is configured, routed to {target.name}"
        reasons.append(Reason(rule.name, detail))
        chosen.append(target)
        if rule.alert and rule.alert not in alerts:
            alerts.append(rule.alert)
    hold = False
    hold_until = None
    if facts.sender_domain_status is DomainStatus.UNKNOWN and not facts.null_sender:
        deadline = facts.arrival + settings.dns_unknown_hold
        if now < deadline:
            hold, hold_until = True, deadline
            reasons.append(
                Reason(
                    DNS_UNKNOWN_RULE,
                    f"sender domain {facts.sender_domain}: DNS timeout or SERVFAIL; "
                    f"held to re-resolve until {deadline.isoformat()}",
                )
            )
        else:
            target = by_name.get(settings.on_dns_unknown) or _riskiest(pools)
            reasons.append(
                Reason(
                    DNS_UNKNOWN_RULE,
                    f"sender domain {facts.sender_domain}: DNS still unknown after "
                    f"{settings.dns_unknown_hold}; routed to {target.name} (on_dns_unknown)",
                )
            )
            chosen.append(target)
    if chosen:
        # max() keeps the first of equals: ties go to the earlier rule.
        pool = max(chosen, key=lambda p: p.risk.rank)
    else:
        normal = _first_of_risk(pools, RiskClass.NORMAL)
        pool = normal if normal is not None else _riskiest(pools)
        if normal is None:
            reasons.append(Reason(FAIL_CLOSED_RULE, f"no normal pool; routed to {pool.name}"))
    if facts.null_sender and pool.risk is not RiskClass.HIGH:
        # Bounces never leave through a normal pool, whatever the rule files say.
        pool = _first_of_risk(pools, RiskClass.HIGH) or _riskiest(pools)
        reasons.append(
            Reason(NULL_SENDER_FLOOR_RULE, f"null reverse-path always leaves via {pool.name}")
        )
    return RouteDecision(
        pool=pool.name,
        risk=pool.risk,
        reasons=tuple(reasons),
        facts=facts.to_json(),
        hold=hold,
        hold_until=hold_until,
        alerts=tuple(alerts),
    )


def decision_from_json(data: Mapping[str, object]) -> RouteDecision:
    """A stored decision read back from :meth:`RouteDecision.to_json` output."""
    reasons = data["reasons"]
    alerts = data.get("alerts") or []
    facts = data.get("facts") or {}
    hold_until = data.get("hold_until")
    if not isinstance(reasons, list) or not isinstance(alerts, list):
        raise ValueError("reasons and alerts must be lists")
    if not isinstance(facts, Mapping):
        raise ValueError("facts must be an object")
    return RouteDecision(
        pool=str(data["pool"]),
        risk=RiskClass(str(data["risk"])),
        reasons=tuple(Reason(str(r["rule"]), str(r["detail"])) for r in reasons),
        facts=dict(facts),
        hold=bool(data.get("hold", False)),
        hold_until=datetime.fromisoformat(str(hold_until)) if hold_until else None,
        alerts=tuple(str(a) for a in alerts),
    )

"""Routing rule files: the format, its validation, and layering.

A rule file holds ``[rules.<name>]`` tables. Later files override earlier
ones rule by rule (same name), and ``enabled = false`` switches a shipped
rule off. Every condition a rule names must hold (AND); a rule needs at
least one condition and exactly one action.

Conditions::

    null_sender = true                    # MAIL FROM:<>
    sender_domain_status = "no-records"   # exists | no-records | unknown
    spam = true                           # score >= [routing] spam_threshold
    spam_score_at_least = 9.0             # score >= this number
    spam_unknown = true                   # the configured scanner could not score it, and
                                          # no trusted header did either
    over_limits = true                    # over [limits] recipients per hour/day
    foreign_sender = true                 # sender domain is not one of the tenant's
    tenant = ["contoso"]                  # a name or a list of names
    sender_domain = ["*.example.com"]     # shell-style wildcards, case-insensitive
    header = { name = "X-Mailer", regex = "(?i)bulkmailer" }   # or a list of them
    min_recipients = 100                  # at least this many envelope recipients

Actions: ``risk = "normal" | "high"`` (the first configured pool of that
class), ``risk = "relay"`` (the pool named by ``[routing] relay_pool``; the
rule is off while that is empty) or ``pool = "<pool name>"``. ``alert = "<alert kind>"`` adds an
alert to the decision. ``description`` is free text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hrmonitor.core.model import Pool, RiskClass
from hrmonitor.core.mx import DomainStatus
from hrmonitor.errors import RuleError

_BOOL_CONDITIONS = ("null_sender", "spam", "spam_unknown", "over_limits", "foreign_sender")
_KEYS = {
    *_BOOL_CONDITIONS,
    "sender_domain_status",
    "spam_score_at_least",
    "tenant",
    "sender_domain",
    "header",
    "min_recipients",
    "risk",
    "pool",
    "alert",
    "description",
    "enabled",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    name: str
    pattern: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class RoutingRule:
    name: str
    file: str
    null_sender: bool | None = None
    spam: bool | None = None
    spam_unknown: bool | None = None
    over_limits: bool | None = None
    foreign_sender: bool | None = None
    sender_domain_status: DomainStatus | None = None
    spam_score_at_least: float | None = None
    tenants: tuple[str, ...] = ()
    sender_domains: tuple[str, ...] = ()
    headers: tuple[HeaderMatch, ...] = ()
    min_recipients: int | None = None
    risk: RiskClass | None = None
    pool: str | None = None
    alert: str | None = None
    description: str = ""


def _strings(value: object, file: str, key: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise RuleError(file, key, "must be a string or a non-empty list of strings")
    return tuple(items)


def _header(value: object, file: str, key: str) -> HeaderMatch:
    if not isinstance(value, Mapping) or set(value) != {"name", "regex"}:
        raise RuleError(file, key, "must be a table with exactly 'name' and 'regex'")
    name, regex = value["name"], value["regex"]
    if not isinstance(name, str) or not name or not isinstance(regex, str):
        raise RuleError(file, key, "'name' and 'regex' must be strings")
    try:
        return HeaderMatch(name, re.compile(regex))
    except re.error as exc:
        raise RuleError(file, f"{key}.regex", f"bad regular expression: {exc}") from None


def parse_rule(name: str, table: Mapping[str, object], file: str) -> RoutingRule:
    """One ``[rules.<name>]`` table; raises RuleError naming file, key and problem."""
    where = f"rules.{name}"
    if not _NAME.match(name):
        raise RuleError(file, where, "a rule name is letters, digits, '-', '_', '.'")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise RuleError(file, f"{where}.{unknown[0]}", "unknown key")
    fields: dict[str, object] = {}
    for key in _BOOL_CONDITIONS:
        if key in table:
            if not isinstance(table[key], bool):
                raise RuleError(file, f"{where}.{key}", "must be true or false")
            fields[key] = table[key]
    if "sender_domain_status" in table:
        try:
            fields["sender_domain_status"] = DomainStatus(str(table["sender_domain_status"]))
        except ValueError:
            choices = ", ".join(s.value for s in DomainStatus)
            raise RuleError(file, f"{where}.sender_domain_status", f"one of {choices}") from None
    if "spam_score_at_least" in table:
        score = table["spam_score_at_least"]
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise RuleError(file, f"{where}.spam_score_at_least", "must be a number")
        fields["spam_score_at_least"] = float(score)
    if "tenant" in table:
        fields["tenants"] = _strings(table["tenant"], file, f"{where}.tenant")
    if "sender_domain" in table:
        patterns = _strings(table["sender_domain"], file, f"{where}.sender_domain")
        fields["sender_domains"] = tuple(p.lower().rstrip(".") for p in patterns)
    if "header" in table:
        raw = table["header"]
        items = raw if isinstance(raw, list) else [raw]
        fields["headers"] = tuple(
            _header(item, file, f"{where}.header[{i}]") for i, item in enumerate(items)
        )
    if "min_recipients" in table:
        count = table["min_recipients"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise RuleError(file, f"{where}.min_recipients", "must be a whole number >= 1")
        fields["min_recipients"] = count
    if not fields:
        raise RuleError(file, where, "a rule needs at least one condition")
    if ("risk" in table) == ("pool" in table):
        raise RuleError(file, where, "a rule needs exactly one action: 'risk' or 'pool'")
    if "risk" in table:
        try:
            fields["risk"] = RiskClass(str(table["risk"]))
        except ValueError:
            choices = ", ".join(r.value for r in RiskClass)
            raise RuleError(file, f"{where}.risk", f"one of {choices}") from None
    else:
        pool = table["pool"]
        if not isinstance(pool, str) or not pool:
            raise RuleError(file, f"{where}.pool", "must be a pool name")
        fields["pool"] = pool
    for key in ("alert", "description"):
        if key in table:
            if not isinstance(table[key], str):
                raise RuleError(file, f"{where}.{key}", "must be a string")
            fields[key] = table[key]
    return RoutingRule(name=name, file=file, **fields)  # type: ignore[arg-type]


def parse_rule_file(data: Mapping[str, object], file: str) -> dict[str, RoutingRule | None]:
    """A file's rules by name; ``None`` marks a rule switched off with ``enabled = false``."""
    unknown = sorted(set(data) - {"rules"})
    if unknown:
        raise RuleError(file, unknown[0], "unknown key (a rule file holds [rules.<name>] tables)")
    rules = data.get("rules", {})
    if not isinstance(rules, Mapping):
        raise RuleError(file, "rules", "must be a table of [rules.<name>] tables")
    result: dict[str, RoutingRule | None] = {}
    for name, table in rules.items():
        if not isinstance(table, Mapping):
            raise RuleError(file, f"rules.{name}", "must be a table")
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            raise RuleError(file, f"rules.{name}.enabled", "must be true or false")
        if not enabled and set(table) <= {"enabled", "description"}:
            result[name] = None  # switching a rule off needs no body
            continue
        rule = parse_rule(name, table, file)
        result[name] = rule if enabled else None
    return result


def layer_routing_files(
    files: Sequence[tuple[str, Mapping[str, object]]],
) -> tuple[RoutingRule, ...]:
    """Layer parsed rule files (name, TOML data); later files override earlier rule by rule."""
    layered: dict[str, RoutingRule | None] = {}
    for file, data in files:
        for name, rule in parse_rule_file(data, file).items():
            if rule is None and name not in layered:
                # a typo of a shipped rule's name would leave the real rule on
                known = ", ".join(layered) or "none"
                problem = f"switches off no rule of an earlier file (known: {known})"
                raise RuleError(file, f"rules.{name}.enabled", problem)
            layered[name] = rule
    return tuple(rule for rule in layered.values() if rule is not None)


def check_rule_pools(rules: Sequence[RoutingRule], pools: Sequence[Pool]) -> None:
    """At startup: every ``pool =`` action names a configured pool (RuleError otherwise).

    A ``risk = "relay"`` rule without ``[routing] relay_pool`` is allowed: the
    relay rule is optional and simply never applies. Other risk classes must exist.
    """
    names = {p.name for p in pools}
    risks = {p.risk for p in pools}
    for rule in rules:
        if rule.pool is not None and rule.pool not in names:
            raise RuleError(rule.file, f"rules.{rule.name}.pool", f"no pool named {rule.pool!r}")
        if rule.risk is not None and rule.risk is not RiskClass.RELAY and rule.risk not in risks:
            raise RuleError(rule.file, f"rules.{rule.name}.risk", f"no {rule.risk} pool")

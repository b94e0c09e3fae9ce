"""The evidence a surge's cause is read from, kept per key in capped tables.

A key keeps two generations of :class:`Evidence` (the current window length
and the one before), so attribution sees between one and two windows of
history without per-bucket tables. The tables of names (senders, clients,
diagnostics) are Space-Saving heavy-hitter counters: capped at a few dozen
entries, yet any name holding more than 1/cap of the volume is always in
them, which is the one that matters for "one sender's volume jumped".
"""

from __future__ import annotations

from dataclasses import dataclass

from hrmonitor.core.surge.verp import BatvVerdict

UNKNOWN_USER = "userunknown"
REFUSALS = frozenset(
    {"blocked", "spamdetected", "ratelimited", "badreputation", "policyviolation", "virusdetected"}
)
_NAMES_CAP = 32
_DOMAINS_CAP = 8
LOCALS_CAP = 128  # distinct unknown local parts kept per domain: enough to tell a harvest
SENDERS_CAP = 16  # senders kept per harvested domain; "few" must stay below it
_DIAGNOSTIC_CHARS = 160


@dataclass(frozen=True, slots=True)
class FailedAddress:
    """One recipient a bounce reports, with its reason (docs/mail-facts.md taxonomy)."""

    address: str
    reason: str = "undefined"
    hard: bool = True
    diagnostic: str = ""


def _heavy(table: dict[str, int], name: str, amount: int) -> None:
    """Space-Saving: a new name over the cap takes the place (and count) of the smallest."""
    if name in table:
        table[name] += amount
    elif len(table) < _NAMES_CAP:
        table[name] = amount
    else:
        smallest = min(table, key=table.__getitem__)
        table[name] = table.pop(smallest) + amount


def _normalise(diagnostic: str) -> str:
    return " ".join(diagnostic.lower().split())[:_DIAGNOSTIC_CHARS]


class Evidence:
    """Counters and capped tables for one key over (about) one window length."""

    __slots__ = (
        "batv_bad",
        "batv_checked",
        "diagnosed",
        "diagnostics",
        "dsns",
        "loops",
        "new_client_rcpts",
        "new_clients",
        "rcpts",
        "refusals",
        "returned",
        "score_sum",
        "scored",
        "senders",
        "spam_high",
        "unknown",
        "unknown_from",
        "unmatched",
        "userunknown",
    )

    def __init__(self) -> None:
        self.rcpts = self.dsns = self.returned = self.unmatched = 0
        self.batv_checked = self.batv_bad = self.userunknown = self.diagnosed = 0
        self.scored = self.spam_high = self.refusals = 0
        self.new_client_rcpts = self.loops = 0
        self.score_sum = 0.0
        self.senders: dict[str, int] = {}
        self.new_clients: dict[str, int] = {}
        self.diagnostics: dict[str, int] = {}
        self.unknown: dict[str, set[str]] = {}  # domain -> unknown local parts
        self.unknown_from: dict[str, set[str]] = {}  # domain -> who sent to them

    def volume(
        self,
        amount: int,
        sender: str,
        client: str,
        new_client: bool,
        loop: bool,
        score: float | None,
        spam_threshold: float,
    ) -> None:
        self.rcpts += amount
        if sender:  # the null sender of a DSN is nobody's volume
            _heavy(self.senders, sender, amount)
        if new_client:
            self.new_client_rcpts += amount
            _heavy(self.new_clients, client, amount)
        if loop:
            self.loops += amount
        if score is not None:
            self.scored += amount
            self.score_sum += score * amount
            if score >= spam_threshold:
                self.spam_high += amount

    def bounce(
        self,
        amount: int,
        failed: tuple[FailedAddress, ...],
        senders: tuple[str, ...],
        *,
        returned: bool,
        ours: bool = True,
        batv: BatvVerdict | None = None,
    ) -> None:
        self.dsns += amount
        if returned:
            self.returned += amount
            if not ours:
                self.unmatched += amount
            if batv is not None:
                self.batv_checked += amount
                if batv in (BatvVerdict.INVALID, BatvVerdict.UNTAGGED):
                    self.batv_bad += amount
        for item in failed:
            if item.diagnostic:
                self.diagnosed += 1
                _heavy(self.diagnostics, _normalise(item.diagnostic), 1)
            if item.reason == UNKNOWN_USER:
                self.userunknown += 1
                self._unknown(item.address, senders)

    def _unknown(self, address: str, senders: tuple[str, ...]) -> None:
        local, _, domain = address.rpartition("@")
        domain = domain.lower()
        locals_ = self.unknown.get(domain)
        if locals_ is None:
            if len(self.unknown) >= _DOMAINS_CAP:
                smallest = min(self.unknown, key=lambda d: len(self.unknown[d]))
                del self.unknown[smallest]
                self.unknown_from.pop(smallest, None)
            locals_ = self.unknown[domain] = set()
            self.unknown_from[domain] = set()
        if len(locals_) < LOCALS_CAP:
            locals_.add(local.lower())
        who = self.unknown_from[domain]
        for sender in senders:
            if len(who) < SENDERS_CAP:
                who.add(sender.lower())


@dataclass(frozen=True, slots=True)
class EvidenceSummary:
    """The merged evidence of a key's current and previous generation."""

    rcpts: int = 0
    dsns: int = 0
    returned: int = 0
    unmatched: int = 0
    batv_checked: int = 0
    batv_bad: int = 0
    userunknown: int = 0
    unknown_domain: str = ""
    unknown_locals: int = 0
    unknown_senders: int = 0
    top_sender: str = ""
    top_sender_rcpts: int = 0
    scored: int = 0
    spam_high: int = 0
    mean_score: float = 0.0
    refusals: int = 0  # replies refusing mail as spam, blocked, rate limited
    new_client_rcpts: int = 0
    new_clients: tuple[str, ...] = ()
    loops: int = 0
    diagnosed: int = 0
    top_diagnostic: str = ""
    top_diagnostic_count: int = 0

    def overview(self) -> dict[str, object]:
        """The headline numbers, for a surge whose cause nothing names."""
        return {
            "recipients": self.rcpts,
            "dsns": self.dsns,
            "returned_dsns": self.returned,
            "unmatched": self.unmatched,
            "userunknown": self.userunknown,
            "top_sender": self.top_sender,
            "refusals": self.refusals,
            "top_diagnostic": self.top_diagnostic,
        }


def _merged(a: dict[str, int], b: dict[str, int] | None) -> dict[str, int]:
    merged = dict(a)
    for name, count in (b or {}).items():
        merged[name] = merged.get(name, 0) + count
    return merged


def _top(table: dict[str, int]) -> tuple[str, int]:
    if not table:
        return "", 0
    name = max(table, key=table.__getitem__)
    return name, table[name]


def summarise(current: Evidence, previous: Evidence | None) -> EvidenceSummary:
    """One summary of both generations (``previous`` may be None)."""
    gens = [current] if previous is None else [current, previous]

    def total(name: str) -> int:
        return sum(int(getattr(g, name)) for g in gens)

    unknown: dict[str, set[str]] = {}
    unknown_from: dict[str, set[str]] = {}
    for g in gens:
        for domain, locals_ in g.unknown.items():
            unknown.setdefault(domain, set()).update(locals_)
            unknown_from.setdefault(domain, set()).update(g.unknown_from.get(domain, ()))
    domain = max(unknown, key=lambda d: len(unknown[d]), default="")
    senders = _merged(current.senders, previous.senders if previous else None)
    clients = _merged(current.new_clients, previous.new_clients if previous else None)
    diagnostics = _merged(current.diagnostics, previous.diagnostics if previous else None)
    top_sender, top_sender_rcpts = _top(senders)
    top_diagnostic, top_diagnostic_count = _top(diagnostics)
    scored = total("scored")
    score_sum = sum(g.score_sum for g in gens)
    return EvidenceSummary(
        rcpts=total("rcpts"),
        dsns=total("dsns"),
        returned=total("returned"),
        unmatched=total("unmatched"),
        batv_checked=total("batv_checked"),
        batv_bad=total("batv_bad"),
        userunknown=total("userunknown"),
        unknown_domain=domain,
        unknown_locals=len(unknown.get(domain, ())),
        unknown_senders=len(unknown_from.get(domain, ())),
        top_sender=top_sender,
        top_sender_rcpts=top_sender_rcpts,
        scored=scored,
        spam_high=total("spam_high"),
        mean_score=score_sum / scored if scored else 0.0,
        refusals=total("refusals"),
        new_client_rcpts=total("new_client_rcpts"),
        new_clients=tuple(sorted(clients, key=lambda c: -clients[c])[:5]),
        loops=total("loops"),
        diagnosed=total("diagnosed"),
        top_diagnostic=top_diagnostic,
        top_diagnostic_count=top_diagnostic_count,
    )

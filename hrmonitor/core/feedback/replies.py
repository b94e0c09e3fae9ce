"""Remote SMTP replies -> evidence about a source IP, and the pauses that evidence earns.

The delivery engine turns every remote reply into a :class:`RemoteReply`,
calls :func:`match_reply` with the provider of the destination MX host
(:func:`provider_for`), and hands the evidence on: a :class:`ProviderPause`
to the controller (which keeps a :class:`PauseTracker`), a
:class:`BlocklistMention` to the monitor (an immediate DNSBL re-check).

KumoMTA's lessons, kept here: the engine's own deferrals (pool exhausted,
local connect refusal, a suspension's own 4xx) are marked ``own=True`` and
never become evidence, or suspensions extend themselves forever; a pause is
counted from the reply's time and extended by new evidence, and evidence
older than the current suspension's own start is ignored.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from hrmonitor.core.feedback.rules import ANY_PROVIDER, FeedbackAction, FeedbackRule

__all__ = [
    "BlocklistMention",
    "Evidence",
    "FeedbackAction",
    "PauseTracker",
    "ProviderPause",
    "RemoteReply",
    "Suspension",
    "destination_scope",
    "match_reply",
    "provider_for",
]

# MX host name suffixes -> provider. Order matters: AOL's MX hosts live under yahoodns.net.
_PROVIDER_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("google.com", "google"),
    ("googlemail.com", "google"),
    ("gmail.com", "google"),
    ("aol.com", "aol"),
    ("yahoodns.net", "yahoo"),
    ("yahoo.com", "yahoo"),
    ("outlook.com", "microsoft"),
    ("hotmail.com", "microsoft"),
    ("microsoft.com", "microsoft"),
    ("live.com", "microsoft"),
    ("msn.com", "microsoft"),
)


def provider_for(mx_host: str) -> str:
    """The provider behind an MX host name: google, yahoo, microsoft, aol or generic."""
    host = mx_host.strip().rstrip(".").lower()
    if host.startswith("mx-aol.") and host.endswith(".yahoodns.net"):
        return "aol"
    for suffix, provider in _PROVIDER_SUFFIXES:
        if host == suffix or host.endswith("." + suffix):
            return provider
    return "generic"


# Second-level labels under which a two-letter country code's names are registered
# ("example.co.uk"): enough to tell organisations apart without a public-suffix list.
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go"})


def destination_scope(mx_host: str) -> str:
    """What a reply from ``mx_host`` speaks for: its provider, or the MX's own domain.

    A known provider's MX hosts all speak for that provider ("google"). Any
    other MX speaks only for the organisation that runs it: the host's
    registered domain ("mx2.mail.example.co.uk" -> "example.co.uk"), or the
    address itself for an IP literal. Suspensions from replies are scoped to
    this: one hostile or misconfigured MX must not suspend an IP for every
    destination that is not a big provider (they all used to share "generic").
    """
    host = mx_host.strip().rstrip(".").lower()
    provider = provider_for(host)
    if provider != "generic":
        return provider
    labels = host.strip("[]").split(".")
    if len(labels) <= 2 or all(label.isdigit() for label in labels) or ":" in host:
        return host.strip("[]")
    keep = 3 if len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL else 2
    return ".".join(labels[-keep:])


@dataclass(frozen=True, slots=True)
class RemoteReply:
    """One SMTP reply to a delivery attempt. ``own`` marks the engine's own deferrals."""

    code: int
    enhanced: str  # "5.7.1", or "" when the reply has none
    text: str
    source_ip: str
    destination_host: str
    at: datetime
    own: bool = False

    @property
    def summary(self) -> str:
        parts = [str(self.code), self.enhanced, " ".join(self.text.split())[:300]]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class ProviderPause:
    """Evidence for suspending (or slowing) ``ip`` towards ``provider`` for ``duration``.

    ``threshold``/``window`` come from the rule: the :class:`PauseTracker`
    acts only once ``threshold`` such replies fell within ``window``.
    """

    ip: str
    provider: str
    duration: timedelta
    reason: str
    observed_at: datetime
    rule: str
    action: FeedbackAction = FeedbackAction.PAUSE
    threshold: int = 1
    window: timedelta | None = None


@dataclass(frozen=True, slots=True)
class BlocklistMention:
    """A reply naming a blocklist: re-check ``ip`` against the DNSBLs now."""

    ip: str
    reply_text: str
    observed_at: datetime
    rule: str


Evidence = ProviderPause | BlocklistMention


def _rule_matches(rule: FeedbackRule, reply: RemoteReply, provider: str) -> bool:
    if rule.provider not in (ANY_PROVIDER, provider):
        return False
    checks = (
        (rule.code, str(reply.code)),
        (rule.enhanced, reply.enhanced),
        (rule.text, reply.text),
    )
    return all(pattern is None or pattern.search(value) for pattern, value in checks)


def match_reply(
    reply: RemoteReply, provider: str, rules: Sequence[FeedbackRule], scope: str | None = None
) -> tuple[Evidence, ...]:
    """Every piece of evidence the reply carries; none for own deferrals or successes.

    Rules match on ``provider``; the pauses they ask for are for ``scope``
    (:func:`destination_scope`; ``provider`` when not given).
    """
    if reply.own or reply.code < 400:
        return ()
    evidence: list[Evidence] = []
    mentioned = False
    for rule in rules:
        if not _rule_matches(rule, reply, provider):
            continue
        if rule.action is FeedbackAction.RECHECK:
            if not mentioned:  # one re-check per reply is enough
                mentioned = True
                evidence.append(
                    BlocklistMention(reply.source_ip, reply.summary, reply.at, rule.name)
                )
            continue
        evidence.append(
            ProviderPause(
                ip=reply.source_ip,
                provider=scope or provider,
                duration=rule.duration,
                reason=f"{rule.name}: {reply.summary}",
                observed_at=reply.at,
                rule=rule.name,
                action=rule.action,
                threshold=rule.threshold,
                window=rule.window,
            )
        )
    return tuple(evidence)


@dataclass(frozen=True, slots=True)
class Suspension:
    """A timed pause (or slow-down) of ``ip`` towards ``provider``: ``since`` <= t < ``until``."""

    ip: str
    provider: str
    action: FeedbackAction
    since: datetime  # the time of the reply that started it
    until: datetime
    rule: str
    reason: str
    last_evidence: datetime  # the reply that set ``until``


_Key = tuple[str, str, FeedbackAction]


class PauseTracker:
    """Turns :class:`ProviderPause` evidence into suspensions, per (ip, provider, action).

    - a rule with ``threshold`` N acts on the Nth matching reply within its
      ``window`` (per ip, provider and rule), counted by the replies' times;
    - a suspension runs from the reply's time for the rule's duration, and
      new evidence extends it; ``until`` never moves backwards;
    - evidence whose own effect is already over (reply time + duration <= now)
      or that is no newer than the current suspension's start is ignored and
      not counted (replies to attempts made before the pause took effect).
    """

    def __init__(self) -> None:
        self._hits: dict[tuple[str, str, str], list[datetime]] = {}
        self._active: dict[_Key, Suspension] = {}

    def restore(self, suspension: Suspension) -> None:
        """Load a suspension kept in the store (at startup); the later ``until`` wins."""
        key = (suspension.ip, suspension.provider, suspension.action)
        current = self._active.get(key)
        if current is None or suspension.until > current.until:
            self._active[key] = suspension

    def active(
        self, ip: str, provider: str, now: datetime, action: FeedbackAction = FeedbackAction.PAUSE
    ) -> Suspension | None:
        current = self._active.get((ip, provider, action))
        return current if current is not None and now < current.until else None

    def suspensions(self, now: datetime) -> tuple[Suspension, ...]:
        """Every suspension still running at ``now`` (expired ones are forgotten)."""
        self._active = {k: s for k, s in self._active.items() if now < s.until}
        return tuple(self._active.values())

    def _count(self, evidence: ProviderPause) -> int:
        key = (evidence.ip, evidence.provider, evidence.rule)
        times = self._hits.setdefault(key, [])
        bisect.insort(times, evidence.observed_at)
        window = evidence.window or timedelta(0)
        # Memory stays bounded by one window behind the newest reply.
        del times[: bisect.bisect_right(times, times[-1] - window - window)]
        start = evidence.observed_at - window
        low = bisect.bisect_right(times, start)
        high = bisect.bisect_right(times, evidence.observed_at)
        return high - low if evidence.window else 1

    def observe(self, evidence: ProviderPause, now: datetime) -> Suspension | None:
        """The new or extended suspension this evidence causes, or None if it changes nothing."""
        if evidence.observed_at + evidence.duration <= now:
            return None
        key = (evidence.ip, evidence.provider, evidence.action)
        current = self.active(evidence.ip, evidence.provider, now, evidence.action)
        if current is not None and evidence.observed_at <= current.since:
            return None
        if self._count(evidence) < evidence.threshold:
            return None
        until = evidence.observed_at + evidence.duration
        if current is not None:
            if until <= current.until:
                return None
            updated = Suspension(
                current.ip,
                current.provider,
                current.action,
                current.since,
                until,
                evidence.rule,
                evidence.reason,
                evidence.observed_at,
            )
        else:
            updated = Suspension(
                evidence.ip,
                evidence.provider,
                evidence.action,
                evidence.observed_at,
                until,
                evidence.rule,
                evidence.reason,
                evidence.observed_at,
            )
        self._active[key] = updated
        return updated

"""The fast path: remote-reply evidence suspends or slows an IP in memory before anything awaits.

A reply that suspends an IP is put into the picker's view synchronously, so
the very next attempt already sees it; storing, alerting and the DNSBL
re-check follow in a task. A provider's pause (once ``PauseTracker`` saw
enough of them) suspends the IP for that provider; a slow-down only shifts
traffic. Every blocklist mention asks for a re-check. A permanent reply that
names a blocklist pauses the IP only for the destination that sent it (its
provider, or the MX's own domain: ``destination_scope``); permanent blocklist
replies from ``blocklist_destinations`` independent destinations within
``blocklist_window`` pause it for every destination (``core.feedback.mentions``).
A confirmed DNSBL listing, from the re-check, is rotation's business. Evidence
about an IP no pool owns is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from hrmonitor.core.alert import Alert, AlertKind, alert_key
from hrmonitor.core.feedback.mentions import MentionTracker
from hrmonitor.core.feedback.replies import (
    BlocklistMention,
    FeedbackAction,
    PauseTracker,
    ProviderPause,
    RemoteReply,
    destination_scope,
    match_reply,
    provider_for,
)
from hrmonitor.core.feedback.replies import Evidence as ReplyEvidence
from hrmonitor.core.feedback.rules import FeedbackRule
from hrmonitor.core.model import Severity
from hrmonitor.core.rotation.suspension import Pause, Suspension, apply_pause, current_for
from hrmonitor.services.rotation.effects import RotationEffects
from hrmonitor.services.rotation.eligibility import Eligibility


class ReplyFeedback:
    """Turns reply evidence into in-memory suspensions and slow-downs, stored in a task."""

    def __init__(
        self,
        pool_of: Mapping[str, str],
        eligibility: Eligibility,
        effects: RotationEffects,
        *,
        rules: Sequence[FeedbackRule],
        blocklist_pause: timedelta,
        blocklist_destinations: int = 3,
        blocklist_window: timedelta = timedelta(hours=1),
    ) -> None:
        self._pool_of = pool_of
        self._eligibility = eligibility
        self._effects = effects
        self._rules = tuple(rules)
        self._blocklist_pause = blocklist_pause
        self._tracker = PauseTracker()
        self._mentions = MentionTracker(blocklist_destinations, blocklist_window)

    def reconfigure(self, rules: Sequence[FeedbackRule]) -> None:
        """New reply patterns for the next reply (a reload); counts so far are kept."""
        self._rules = tuple(rules)

    def reply(self, reply: RemoteReply) -> None:
        """Match ``reply`` against the feedback rules and act on each piece of evidence."""
        scope = destination_scope(reply.destination_host)
        rules_provider = provider_for(reply.destination_host)
        for evidence in match_reply(reply, rules_provider, self._rules, scope):
            self.evidence(evidence, reply.at, scope, reply.code >= 500)

    def evidence(
        self, evidence: ReplyEvidence, now: datetime, provider: str | None, permanent: bool
    ) -> None:
        """Suspend in memory now; store, alert and re-check in a task.

        ``provider`` is the destination scope the reply came from (None: unknown).
        """
        pool = self._pool_of.get(evidence.ip)
        if pool is None:
            return  # not our IP: never evidence about anything we own
        pause: Pause | None = None
        if isinstance(evidence, ProviderPause):
            if evidence.action is FeedbackAction.SLOW:
                self._eligibility.slow_down(evidence, now)
                return
            if evidence.action is not FeedbackAction.PAUSE:
                return
            tracked = self._tracker.observe(evidence, now)
            if tracked is None:
                return
            pause = Pause(
                evidence.ip,
                evidence.provider,
                tracked.until - evidence.observed_at,
                evidence.reason,
                evidence.observed_at,
                evidence.rule,
            )
        elif isinstance(evidence, BlocklistMention):
            self._effects.spawn(self._effects.ask_recheck(evidence.ip))
            if provider is None or not permanent:
                return
            pause = Pause(
                evidence.ip,
                provider,
                self._blocklist_pause,
                f"remote reply names a blocklist: {evidence.reply_text}",
                evidence.observed_at,
                evidence.rule,
                evidence={"reply": evidence.reply_text},
            )
            spread = self._mentions.observe(evidence.ip, provider, evidence.observed_at)
            if spread is not None:
                self.suspend_now(pool, pause, now)  # that destination's own, as for one reply
                named = ", ".join(spread.destinations)
                pause = Pause(
                    evidence.ip,
                    None,
                    self._blocklist_pause,
                    f"{len(spread.destinations)} destinations name a blocklist ({named}): "
                    f"{evidence.reply_text}",
                    evidence.observed_at,
                    evidence.rule,
                    evidence={
                        "reply": evidence.reply_text,
                        "destinations": list(spread.destinations),
                    },
                )
        if pause is not None:
            self.suspend_now(pool, pause, now)

    def suspend_now(self, pool: str, pause: Pause, now: datetime) -> None:
        """Apply ``pause`` to the IP's current suspension in memory; store and alert in a task."""
        views = self._eligibility.with_fast(self._eligibility.views(pool), now)
        current = None
        for view in views:
            if view.ip == pause.ip:
                current = current_for(view.suspensions, pause.ip, pause.scope, now)
        suspension = apply_pause(current, pause, now)
        if suspension is None:
            return
        self._eligibility.suspend(suspension)
        alert = Alert(
            AlertKind.SUSPENSION,
            Severity.MEDIUM,
            alert_key(AlertKind.SUSPENSION, pool, suspension.ip, suspension.scope),
            f"{suspension.ip} ({pool}) suspended for {suspension.scope} until "
            f"{suspension.until.isoformat()}: {pause.reason}",
            now,
            {
                "scope": suspension.scope,
                "until": suspension.until,
                "rule": pause.rule,
                "reason": pause.reason,
            },
            pool,
            suspension.ip,
        )
        self._effects.spawn(self._persist(suspension, alert))

    async def _persist(self, suspension: Suspension, alert: Alert) -> None:
        await self._effects.store_suspension(suspension)
        await self._effects.emit([alert])

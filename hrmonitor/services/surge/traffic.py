"""What the relay sees, told to the surge watcher: accepted messages and delivery outcomes.

Every message a tenant hands over is classified on acceptance (core.bounce:
dsn, nonstandard-bounce, mdn, arf, autoreply or none) and the kind is stored
with it; the watcher counts it per tenant, sender domain and client. Every
remote reply to a recipient becomes a delivery outcome with a reason from the
bounce taxonomy, so the watcher can tell a spam attack (blocked, spam) from a
directory harvest (user unknown). The relay's own DSNs are not fed as
accepted mail: their failures already arrived as outcomes.
"""

from __future__ import annotations

from hrmonitor.adapters.store.queue.repository import DueRecipient, Outcome, RecipientStatus
from hrmonitor.core.bounce.classify import classify_message
from hrmonitor.core.bounce.reason import BouncePatterns, find_status, reason_for
from hrmonitor.core.delivery.envelope import Submission
from hrmonitor.core.routing.decide import RouteDecision
from hrmonitor.core.routing.spam_score import header_fields
from hrmonitor.core.surge import DeliveryOutcome, MessageAccepted
from hrmonitor.services.surge.watcher import SurgeWatcher, failed_from

DELIVERED = "delivered"


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip("<> ").lower()


class TrafficFeed:
    def __init__(self, watcher: SurgeWatcher, patterns: BouncePatterns) -> None:
        self._watcher = watcher
        self._patterns = patterns

    def accepted(self, submission: Submission, decision: RouteDecision) -> str:
        """The relay's acceptance hook: classify, tell the watcher, return the bounce kind."""
        report = classify_message(submission.data, patterns=self._patterns)
        fields = header_fields(submission.data)
        sender_domain = _domain(submission.mail_from)
        if not sender_domain:  # a null sender: the From domain says whose bounce it is
            sender_domain = next((_domain(v) for n, v in fields if n.lower() == "from"), "")
        score = decision.facts.get("spam_score")
        self._watcher.message_accepted(
            MessageAccepted(
                at=submission.received_at,
                tenant=submission.tenant,
                sender=submission.mail_from,
                recipients=submission.recipients,
                message_id=report.message_id,
                client_ip=submission.client_ip,
                connector=submission.auth_user or "",
                sender_domain=sender_domain,
                spam_score=float(score) if isinstance(score, int | float) else None,
                kind=str(report.kind),
                failed=failed_from(report.failures),
                hops=sum(1 for name, _ in fields if name.lower() == "received"),
            )
        )
        return str(report.kind)

    def outcome(self, recipient: DueRecipient, outcome: Outcome) -> None:
        """The relay's outcome hook: one remote reply to one recipient."""
        delivered = outcome.status is RecipientStatus.DELIVERED
        reason = DELIVERED
        if not delivered:
            status = find_status(outcome.reply) or (
                f"{outcome.code // 100}.0.0" if outcome.code else ""
            )
            reason = str(reason_for(status, outcome.reply, self._patterns))
        self._watcher.delivery_outcome(
            DeliveryOutcome(
                at=outcome.at,
                tenant=recipient.tenant,
                sender=recipient.mail_from,
                recipient=recipient.address,
                source_ip=outcome.source_ip or "",
                reason=reason,
                hard=outcome.status is RecipientStatus.BOUNCED,
                bounce=not recipient.mail_from,
                diagnostic=outcome.reply,
                sender_domain=_domain(recipient.mail_from),
            )
        )

"""What the relay sees, told to the surge watcher: accepted messages and delivery outcomes.

Every message a tenant hands over is classified on acceptance (core.bounce:
dsn, nonstandard-bounce, mdn, arf, autoreply or none) and the kind is stored
with it; the watcher counts it per tenant, sender domain and client. Every
remote reply to a recipient becomes a delivery outcome with a reason from the
bounce taxonomy, so the watcher can tell a spam attack (blocked, spam) from a
directory harvest (user unknown). The relay's own DSNs are not fed as
accepted mail: their failures already arrived as outcomes.

Classification is CPU work whose size the sender chooses (issue 13): the
daemon runs it on a worker thread of its own, after the message is stored and
answered, with a deadline (``accepted_off_loop``); the event loop only tells
the watcher the result. The parser's bounds keep the work linear, so the worst
message takes a fraction of a second; the deadline is the backstop.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from hrmonitor.adapters.store.queue.repository import DueRecipient, Outcome, RecipientStatus
from hrmonitor.core.bounce.classify import BounceReport, classify_message
from hrmonitor.core.bounce.reason import BouncePatterns, find_status, reason_for
from hrmonitor.core.delivery.envelope import Submission
from hrmonitor.core.routing.decide import RouteDecision
from hrmonitor.core.routing.spam_score import header_fields
from hrmonitor.core.surge import DeliveryOutcome, MessageAccepted
from hrmonitor.services.surge.watcher import SurgeWatcher, failed_from

DELIVERED = "delivered"
CLASSIFY_DEADLINE = 10.0  # seconds a message's classification may take before it is given up
CLASSIFY_WORKERS = 1  # threads: classification is CPU-bound, and one keeps the loop's share

log = logging.getLogger(__name__)


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip("<> ").lower()


class TrafficFeed:
    def __init__(
        self,
        watcher: SurgeWatcher,
        patterns: BouncePatterns,
        *,
        deadline: float = CLASSIFY_DEADLINE,
    ) -> None:
        self._watcher = watcher
        self._patterns = patterns
        self._deadline = deadline
        self._executor: ThreadPoolExecutor | None = None

    def accepted(self, submission: Submission, decision: RouteDecision) -> str:
        """Classify, tell the watcher, return the bounce kind (all on the caller's thread)."""
        return self._tell(submission, decision, *self._classify(submission.data))

    async def accepted_off_loop(
        self, submission: Submission, decision: RouteDecision
    ) -> str | None:
        """The relay's acceptance hook: ``accepted`` with the CPU work on the worker thread.

        None when the deadline passed (the message stays unclassified, the
        watcher is not told; the thread finishes its bounded work and its
        result is dropped).
        """
        if self._executor is None:
            self._executor = ThreadPoolExecutor(CLASSIFY_WORKERS, thread_name_prefix="classify")
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._executor, self._classify, submission.data)
        try:
            report, fields = await asyncio.wait_for(work, self._deadline)
        except TimeoutError:
            log.warning(
                # Acceptance hands over the part classification reads (MAX_BYTES at most).
                "classifying %d bytes of a message from %s took over %.0f s; left unclassified",
                len(submission.data), submission.client_ip, self._deadline,
            )  # fmt: skip
            return None
        return self._tell(submission, decision, report, fields)

    def close(self) -> None:
        """Stop the worker thread; classifications not yet started are dropped."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _classify(self, data: bytes) -> tuple[BounceReport, tuple[tuple[str, str], ...]]:
        return classify_message(data, patterns=self._patterns), header_fields(data)

    def _tell(
        self,
        submission: Submission,
        decision: RouteDecision,
        report: BounceReport,
        fields: tuple[tuple[str, str], ...],
    ) -> str:
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

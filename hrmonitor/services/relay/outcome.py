"""What an attempt concluded, per recipient: the queue's outcome row, and the DSN of a bounce.

The verdict itself is the core's (``core.retry``: delivered, retry at, bounce);
:func:`judge` turns it into the row the queue records and, for a bounced
recipient, the entry of the RFC 3464 DSN. :func:`dsn_submission` builds that
DSN as a message like any other, to be routed (null sender: high-risk) and
queued by acceptance. No I/O here.
"""

from __future__ import annotations

from datetime import datetime

from hrmonitor.adapters.store.queue.repository import DueRecipient, Outcome, RecipientStatus
from hrmonitor.core.delivery.dsn import FailedRecipient, build_dsn
from hrmonitor.core.delivery.envelope import Submission
from hrmonitor.core.delivery.retry import Bounce, Delivered, Retry, RetryPolicy, judge_reply


def judge(
    retry: RetryPolicy,
    recipient: DueRecipient,
    now: datetime,
    code: int | None,
    text: str,
    host: str,
    ip: str | None,
    *,
    own: bool = False,
    counts: bool = True,
    duration: float = 0.0,
) -> tuple[Outcome, FailedRecipient | None]:
    """One recipient's outcome row after a reply ``code`` (None: no reply) and ``text``."""
    failures = recipient.attempts + (1 if counts else 0)
    if code is None:
        verdict: Delivered | Retry | Bounce = retry.after_failure(
            failures=max(failures, 1), arrived_at=recipient.arrived_at, now=now, reason=text
        )
    else:
        verdict = judge_reply(
            retry, code=code, text=text, failures=max(failures, 1),
            arrived_at=recipient.arrived_at, now=now,
        )  # fmt: skip
    common = {
        "recipient_id": recipient.recipient_id,
        "message_id": recipient.message_id,
        "at": now,
        "pool": recipient.pool,
        "source_ip": ip,
        "destination": host,
        "code": code,
        "reply": f"{code} {text}".strip() if code is not None else text,
        "duration_ms": duration,
        "own": own,
        "counts_as_attempt": counts,
    }
    if isinstance(verdict, Delivered):
        return Outcome(status=RecipientStatus.DELIVERED, **common), None  # type: ignore[arg-type]
    if isinstance(verdict, Retry):
        return (
            Outcome(status=RecipientStatus.DEFERRED, next_attempt_at=verdict.at, **common),  # type: ignore[arg-type]
            None,
        )
    failed = FailedRecipient(
        address=recipient.address,
        status=verdict.status,
        diagnostic=verdict.reason,
        remote_mta=host,
        last_attempt=now,
    )
    return Outcome(status=RecipientStatus.BOUNCED, **common), failed  # type: ignore[arg-type]


def dsn_submission(
    first: DueRecipient,
    bounced: list[FailedRecipient],
    *,
    original: bytes,
    hostname: str,
    now: datetime,
    message_id: str,
) -> Submission:
    """The DSN telling ``first``'s sender about ``bounced``, as a submission to accept."""
    data = build_dsn(
        original=original,
        sender=first.mail_from,
        recipients=bounced,
        reporting_mta=hostname,
        arrived_at=first.arrived_at,
        now=now,
        message_id=message_id,
    )
    return Submission(
        tenant=first.tenant,
        client_ip="127.0.0.1",
        helo=hostname,
        mail_from="",
        recipients=(first.mail_from,),
        data=data,
        received_at=now,
        smtputf8=not first.mail_from.isascii(),
    )

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
from hrmonitor.core.delivery import maillog
from hrmonitor.core.delivery.dsn import FailedRecipient, build_dsn
from hrmonitor.core.delivery.envelope import Submission
from hrmonitor.core.delivery.retry import (
    Bounce,
    Delivered,
    Retry,
    RetryPolicy,
    judge_reply,
    reply_status,
)

# The RFC 3463 status of a failure without a reply, by what our reason says (as Postfix's:
# 4.4.1 no answer from the host, 4.4.2 connection lost or timed out, 4.4.3 DNS failure).
_NO_REPLY_STATUS = (
    ("MX lookup", "4.4.3"),
    ("has no eligible IP", "4.4.0"),
    ("no usable IP", "4.3.0"),
    ("internal error", "4.3.0"),
    ("timed out", "4.4.2"),
    ("lost", "4.4.2"),
)


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


def attempt_line(
    retry: RetryPolicy,
    recipient: DueRecipient,
    outcome: Outcome,
    failed: FailedRecipient | None,
    *,
    mx_host: str,
    port: int,
    delay: float,
) -> maillog.LogLine:
    """The log line of one recipient's attempt (``core.delivery.maillog``).

    ``relay=`` names the MX and the address that replied; a failure without a
    reply (no connection, our own deferral) is ``relay=none`` as in Postfix, with
    the address it tried in the reason. A bounce that is the end of the queue
    lifetime is ``status=expired``.
    """
    code = outcome.code
    replied = code is not None and bool(outcome.destination)
    reason = outcome.reply
    if code is None and outcome.destination:
        reason = f"{maillog.relay(mx_host, outcome.destination, port)}: {reason}"
    if outcome.status is RecipientStatus.DELIVERED:
        status = "sent"
    elif outcome.status is RecipientStatus.DEFERRED:
        status = "deferred"
    elif failed is not None and not failed.status.startswith("5"):
        status = "expired"
        reason = maillog.expiry_reason(retry.max_queue_time, failed.diagnostic)
    else:
        status = "bounced"
    if failed is not None:
        dsn = failed.status
    elif code is not None:
        dsn = reply_status(code, outcome.reply[len(str(code)) :].strip())
    else:
        dsn = next((s for key, s in _NO_REPLY_STATUS if key in outcome.reply), "4.4.1")
    return maillog.attempt(
        recipient.message_id,
        to=recipient.address,
        relay_to=maillog.relay(mx_host, outcome.destination, port) if replied else "none",
        delay=delay,
        dsn=dsn,
        status=status,
        reason=reason,
        pool=outcome.pool,
        source=outcome.source_ip,
        attempts=recipient.attempts + (1 if outcome.counts_as_attempt else 0),
    )


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

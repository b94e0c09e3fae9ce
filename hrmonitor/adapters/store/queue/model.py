"""The queue's values: recipient states, a message to enqueue, a claim, an outcome, the records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class RecipientStatus(StrEnum):
    QUEUED = "queued"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    DEFERRED = "deferred"
    HELD = "held"  # an operator's ``hrmonitor queue hold``: never claimed until released

    @property
    def final(self) -> bool:
        return self in (RecipientStatus.DELIVERED, RecipientStatus.BOUNCED)


# A recipient in one of these states waits for its next attempt (a held one does not:
# the runner's claim and its next-due time look only at these).
WAITING = (RecipientStatus.QUEUED.value, RecipientStatus.DEFERRED.value)
# Not yet concluded: purging a message with one of these would lose mail.
UNFINISHED = (*WAITING, RecipientStatus.DELIVERING.value, RecipientStatus.HELD.value)


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message as accepted, with its routing decision; ``reasons`` are JSON-able dicts."""

    id: str
    tenant: str
    client_ip: str
    mail_from: str
    recipients: tuple[str, ...]
    body: bytes
    arrived_at: datetime
    pool: str
    risk: str
    reasons: tuple[Mapping[str, Any], ...] = ()
    bounce_kind: str | None = None
    hold_until: datetime | None = None
    message_id: str = ""
    smtputf8: bool = False
    dsn_of: str | None = None
    due_at: datetime | None = None  # first attempt (default: hold_until, else arrival)


@dataclass(frozen=True, slots=True)
class DueRecipient:
    """A claimed recipient (now ``delivering``) with what the runner needs of its message."""

    recipient_id: int
    message_id: str
    address: str
    domain: str
    attempts: int
    mail_from: str
    pool: str
    risk: str
    arrived_at: datetime
    size: int
    smtputf8: bool
    tenant: str
    body: bytes | None = None  # inlined when small (see ``claim_due``), else read in slices
    # Has bytes above 127 (MAIL FROM's BODY=8BITMIME): recorded at acceptance; None for a
    # message queued before migration 0008.
    eight_bit: bool | None = None
    hold_until: datetime | None = None  # routing is still waiting for the sender's DNS
    client_ip: str = ""


@dataclass(frozen=True, slots=True)
class Claim:
    """What one claim took, and what it says about the rest of the queue."""

    recipients: list[DueRecipient]
    # ``limit`` were due: more may be. Otherwise every recipient due at the claim's
    # ``now`` was taken (by this claim, or locked by another node's), and ``next_due``
    # is when the next waiting one falls due (None: nothing waits).
    full: bool
    next_due: datetime | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt for one recipient, and the recipient's new state."""

    recipient_id: int
    message_id: str
    status: RecipientStatus
    at: datetime
    pool: str
    next_attempt_at: datetime | None = None
    source_ip: str | None = None
    destination: str = ""
    code: int | None = None
    reply: str = ""
    duration_ms: float = 0.0
    own: bool = False  # an internal deferral (no eligible IP, DNS failure), not a remote reply
    counts_as_attempt: bool = True


@dataclass(frozen=True, slots=True)
class BounceKind:
    """What classification found in an accepted message (after its 250): its bounce kind."""

    message_id: str
    kind: str


# What the relay writes to the queue as it works, group-committed together: new
# messages (durable before their 250), the kinds found after it, and attempt outcomes.
QueueWrite = NewMessage | BounceKind | Outcome


@dataclass(frozen=True, slots=True)
class RecipientRecord:
    id: int
    message_id: str
    address: str
    domain: str
    status: RecipientStatus
    attempts: int
    next_attempt_at: datetime
    last_code: int | None
    last_reply: str
    remote_mta: str


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: str
    tenant: str
    client_ip: str
    mail_from: str
    size: int
    arrived_at: datetime
    pool: str
    risk: str
    reasons: tuple[Mapping[str, Any], ...]
    bounce_kind: str | None
    hold_until: datetime | None
    message_id: str
    dsn_of: str | None
    recipients: tuple[RecipientRecord, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    message_id: str
    recipient_id: int
    pool: str
    source_ip: str | None
    destination: str
    code: int | None
    reply: str
    duration_ms: float
    at: datetime
    own: bool

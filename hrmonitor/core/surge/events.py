"""The events the surge watcher reads: what was accepted, how delivery went, what came back.

Plain values, so the watcher's core does not depend on how the bounce
classifier or the delivery engine lay out their own types: the callers copy
the few fields it needs (kind, reasons, addresses, referenced ids).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hrmonitor.core.surge.evidence import FailedAddress
from hrmonitor.core.surge.verp import BatvVerdict

__all__ = [
    "BOUNCE_KINDS",
    "COMPLAINT_KIND",
    "DELIVERED",
    "BounceReturned",
    "DeliveryOutcome",
    "FailedAddress",
    "MessageAccepted",
    "domain_of",
]

BOUNCE_KINDS = frozenset({"dsn", "nonstandard-bounce"})
COMPLAINT_KIND = "arf"
DELIVERED = "delivered"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


@dataclass(frozen=True, slots=True)
class MessageAccepted:
    """A message a tenant handed to the relay, classified at acceptance.

    ``sender_domain`` defaults to the envelope sender's domain; give it for
    a null-sender DSN (the From domain). ``kind`` is the bounce kind of the
    message itself; for a DSN, ``failed`` holds what it reports. ``hops``
    is the number of Received headers (a loop shows up there).
    """

    at: datetime
    tenant: str
    sender: str
    recipients: tuple[str, ...]
    message_id: str = ""
    envelope_id: str = ""
    client_ip: str = ""
    connector: str = ""
    sender_domain: str = ""
    spam_score: float | None = None
    kind: str = "none"
    failed: tuple[FailedAddress, ...] = ()
    hops: int = 0


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """The remote reply to one recipient of one attempt; ``hard`` marks a permanent failure."""

    at: datetime
    tenant: str
    sender: str
    recipient: str
    source_ip: str
    reason: str
    hard: bool = False
    message_id: str = ""
    bounce: bool = False  # the message delivered was itself a DSN (informational)
    diagnostic: str = ""
    sender_domain: str = ""

    @property
    def final(self) -> bool:
        return self.reason == DELIVERED or self.hard


@dataclass(frozen=True, slots=True)
class BounceReturned:
    """A bounce or complaint that came back to one of our envelope senders.

    ``bounced_address`` is the bounce's recipient (our sender, maybe
    BATV/VERP tagged); ``message_ids``/``envelope_id`` are what it says it
    is about; ``batv`` is the verdict on the address when tagging is on
    (the watcher fills it); ``tenant`` is the caller's guess from the
    address's domain, used when the bounce matches none of our mail.
    """

    at: datetime
    bounced_address: str
    failed: tuple[FailedAddress, ...] = ()
    kind: str = "dsn"
    message_ids: tuple[str, ...] = ()
    envelope_id: str = ""
    tenant: str = ""
    batv: BatvVerdict | None = None

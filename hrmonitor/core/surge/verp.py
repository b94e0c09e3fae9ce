"""BATV and VERP: envelope senders that let a returned bounce prove it is about our mail.

BATV (draft-levine-smtp-batv-01, "prvs" scheme) rewrites an outbound
envelope sender ``local@domain`` into ``prvs=KDDDSSSSSS=local@domain``:

- ``K``: the key number (one digit), so keys can be rotated;
- ``DDD``: the last three digits of the day number (days since 1970-01-01,
  UTC) on which the tag expires;
- ``SSSSSS``: the first three bytes, in hex, of an HMAC-SHA1 keyed with the
  secret over ``K DDD`` followed by the original address.

A bounce whose recipient carries a valid tag is about mail this relay sent;
a bounce to an untagged or badly tagged address of a tagging domain is
backscatter from someone forging that domain. An expired tag is a late
bounce of our own old mail (or a replay), told apart from forgery.

The day field wraps every 1000 days, so a tag older than about
``1000 - valid_days`` days reads as valid again: the draft accepts that.

VERP encodes the recipient in the sender (``local+rlocal=rdomain@domain``),
so a bounce names the recipient that failed even when the remote DSN is
unreadable. Both are pure functions; the secret and the time are passed in.

The address is hashed lower-cased: some MTAs change the case of the local
part on the way back, and a false "invalid" would call our own bounces
forgeries.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

_EPOCH = date(1970, 1, 1)
_PRVS = re.compile(r"^prvs=([0-9])([0-9]{3})([0-9a-f]{6})=(.+@.+)$", re.IGNORECASE)
_DAY_CYCLE = 1000
VERP_SEPARATOR = "+"


class BatvVerdict(StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    INVALID = "invalid"  # a tag that does not verify: forged, tampered, unknown key
    UNTAGGED = "untagged"


@dataclass(frozen=True, slots=True)
class BatvKeys:
    """The signing secrets by key number (0-9), the number used to sign, and the tag lifetime."""

    secrets: Mapping[int, bytes]
    current: int
    valid_days: int = 7

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ValueError("BATV needs at least one secret")
        for number, secret in self.secrets.items():
            if not 0 <= number <= 9:
                raise ValueError(f"BATV key number {number} is not a single digit")
            if not secret:
                raise ValueError(f"BATV key {number} is empty")
        if self.current not in self.secrets:
            raise ValueError(f"BATV key number {self.current} has no secret")
        # Half the day cycle at most, so an expired tag is never mistaken for a future one.
        if not 1 <= self.valid_days < _DAY_CYCLE // 2:
            raise ValueError(f"BATV valid_days {self.valid_days} is not within 1..499")


@dataclass(frozen=True, slots=True)
class BatvCheck:
    """The verdict on one address, and the address with any tag removed."""

    verdict: BatvVerdict
    address: str
    key_number: int | None = None


def day_number(now: datetime) -> int:
    """Days since 1970-01-01 in UTC (``now`` must be timezone-aware)."""
    if now.tzinfo is None:
        raise ValueError("BATV needs a timezone-aware time")
    return (now.astimezone(UTC).date() - _EPOCH).days


def _signature(secret: bytes, key_number: int, day: str, address: str) -> str:
    message = f"{key_number}{day}{address.lower()}".encode("utf-8", "surrogateescape")
    return hmac.new(secret, message, hashlib.sha1).hexdigest()[:6]


def batv_strip(address: str) -> str:
    """The address without a prvs tag (unchanged if it has none)."""
    match = _PRVS.match(address)
    return match.group(4) if match else address


def batv_tag(address: str, keys: BatvKeys, now: datetime) -> str:
    """``prvs=KDDDSSSSSS=address`` valid for ``keys.valid_days`` from ``now``.

    The null sender stays null (DSNs are never tagged); a tagged address is re-tagged.
    """
    if not address:
        return address
    original = batv_strip(address)
    expires = f"{(day_number(now) + keys.valid_days) % _DAY_CYCLE:03d}"
    signature = _signature(keys.secrets[keys.current], keys.current, expires, original)
    return f"prvs={keys.current}{expires}{signature}={original}"


def batv_verify(address: str, keys: BatvKeys, now: datetime) -> BatvCheck:
    """Whether ``address`` (a bounce's recipient) carries a tag this relay made and that is live."""
    match = _PRVS.match(address)
    if match is None:
        return BatvCheck(BatvVerdict.UNTAGGED, address)
    key_number, day, signature, original = (
        int(match.group(1)),
        match.group(2),
        match.group(3).lower(),
        match.group(4),
    )
    secret = keys.secrets.get(key_number)
    if secret is None or not hmac.compare_digest(
        signature, _signature(secret, key_number, day, original)
    ):
        return BatvCheck(BatvVerdict.INVALID, original, key_number)
    # Days from today until the tag's expiry, modulo the cycle: small means still live.
    ahead = (int(day) - day_number(now)) % _DAY_CYCLE
    verdict = BatvVerdict.VALID if ahead <= keys.valid_days else BatvVerdict.EXPIRED
    return BatvCheck(verdict, original, key_number)


def batv_expiry(now: datetime, keys: BatvKeys) -> datetime:
    """When a tag made at ``now`` stops verifying (the start of the day after its expiry day)."""
    today = datetime.combine(now.astimezone(UTC).date(), datetime.min.time(), UTC)
    return today + timedelta(days=keys.valid_days + 1)


def verp_encode(sender: str, recipient: str) -> str:
    """``local+rlocal=rdomain@domain``: the sender address carrying the recipient.

    Raises ValueError for a sender whose local part already holds the separator
    (the decoding would be ambiguous) or addresses without a domain.
    """
    local, _, domain = sender.rpartition("@")
    rlocal, _, rdomain = recipient.rpartition("@")
    if not local or not domain or not rlocal or not rdomain:
        raise ValueError(f"VERP needs full addresses, got {sender!r} and {recipient!r}")
    if VERP_SEPARATOR in local:
        raise ValueError(f"sender local part {local!r} holds the VERP separator")
    if "=" in rdomain or '"' in rlocal:
        raise ValueError(f"recipient {recipient!r} cannot be VERP-encoded")
    return f"{local}{VERP_SEPARATOR}{rlocal}={rdomain}@{domain}"


def verp_decode(address: str) -> tuple[str, str] | None:
    """``(sender, recipient)`` from a VERP address (any BATV tag removed), or None."""
    local, _, domain = batv_strip(address).rpartition("@")
    base, separator, encoded = local.partition(VERP_SEPARATOR)
    rlocal, equals, rdomain = encoded.rpartition("=")
    if not separator or not equals or not base or not rlocal or not rdomain or not domain:
        return None
    return f"{base}@{domain}", f"{rlocal}@{rdomain}"

"""Outcomes of the mail DNS lookups: a sender domain's records, MX hosts, host addresses.

Values, never exceptions: the DNS adapter turns every dnspython outcome into
one of these, and routing and delivery decide on them. Only NXDOMAIN and
NODATA answers ever mean "no record"; a timeout, SERVFAIL or REFUSED means
"unknown" / "temporary", and nothing unknown is ever read as absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DomainStatus(StrEnum):
    """Whether an envelope sender's domain has an A, AAAA or MX record."""

    EXISTS = "exists"
    NO_RECORDS = "no-records"  # NXDOMAIN/NODATA for A, AAAA and MX alike
    UNKNOWN = "unknown"  # a timeout or SERVFAIL left at least one question open
    NOT_CHECKED = "not-checked"  # the null reverse-path has no domain to check


class MxOutcome(StrEnum):
    HOSTS = "hosts"  # deliver to ``hosts`` in order
    NULL_MX = "null-mx"  # RFC 7505 ``MX 0 .``: the domain takes no mail; bounce now
    NO_SUCH_DOMAIN = "no-such-domain"  # NXDOMAIN: bounce now
    NO_MAIL_HOSTS = "no-mail-hosts"  # exists, but no MX, A or AAAA: bounce now
    TEMPORARY = "temporary"  # timeout/SERVFAIL: retry later


@dataclass(frozen=True, slots=True)
class MxHost:
    preference: int
    host: str  # lower case, no trailing dot


@dataclass(frozen=True, slots=True)
class MxResult:
    """Where mail for ``domain`` goes. ``hosts`` is sorted by (preference, host).

    ``implicit`` is True when the domain has no MX and its own A/AAAA record
    stands in for one (RFC 5321 5.1): then ``hosts`` is ``(MxHost(0, domain),)``.
    """

    domain: str
    outcome: MxOutcome
    hosts: tuple[MxHost, ...] = ()
    implicit: bool = False
    reason: str = ""

    @property
    def permanent_failure(self) -> bool:
        return self.outcome in (
            MxOutcome.NULL_MX,
            MxOutcome.NO_SUCH_DOMAIN,
            MxOutcome.NO_MAIL_HOSTS,
        )


class AddressOutcome(StrEnum):
    FOUND = "found"
    NO_SUCH_HOST = "no-such-host"  # NXDOMAIN
    NO_ADDRESS = "no-address"  # the name exists without A/AAAA
    TEMPORARY = "temporary"  # timeout/SERVFAIL on every family that had no answer


@dataclass(frozen=True, slots=True)
class AddressResult:
    """A host's addresses: IPv4 first, then IPv6, each canonical.

    ``FOUND`` may carry a ``reason`` when one family failed temporarily while
    the other answered; the caller can still deliver to what was found.
    """

    host: str
    outcome: AddressOutcome
    addresses: tuple[str, ...] = ()
    reason: str = ""

    @property
    def ipv4(self) -> tuple[str, ...]:
        return tuple(a for a in self.addresses if ":" not in a)

    @property
    def ipv6(self) -> tuple[str, ...]:
        return tuple(a for a in self.addresses if ":" in a)

"""Mail DNS lookups with dnspython: sender-domain existence, MX hosts, host addresses.

Every dnspython outcome is translated here into a value of ``core.mx``; no
DNS failure escapes as an exception. The mapping, in one place:

- ``NXDOMAIN`` -> the name does not exist;
- ``NoAnswer`` (NOERROR, empty answer) -> NODATA: the name exists without
  that type;
- ``LifetimeTimeout``, ``NoNameservers`` (SERVFAIL/REFUSED from every
  server) and any other ``DNSException`` -> unknown / temporary.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from enum import Enum

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from hrmonitor.core.delivery.envelope import address_literal
from hrmonitor.core.model import canonical_ip
from hrmonitor.core.mx import (
    AddressOutcome,
    AddressResult,
    DomainStatus,
    MxHost,
    MxOutcome,
    MxResult,
)

log = logging.getLogger(__name__)


class _Kind(Enum):
    ANSWER = "answer"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    UNKNOWN = "unknown"


_Outcome = tuple[_Kind, tuple[str, ...], str]  # kind, rdata texts, reason


def _host(text: str) -> str:
    return text.rstrip(".").lower()


class MailDns:
    """Async mail lookups against the configured resolver.

    ``nameservers`` empty means the system resolver (/etc/resolv.conf).
    ``timeout`` is per try; ``attempts`` tries fit in one lookup's lifetime.
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        port: int = 53,
        timeout: float = 2.0,
        attempts: int = 2,
    ) -> None:
        resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        if nameservers:
            resolver.nameservers = [canonical_ip(ns) for ns in nameservers]
        resolver.port = port
        resolver.timeout = timeout
        resolver.lifetime = timeout * max(1, attempts)
        resolver.cache = None  # the caller decides what to remember
        resolver.retry_servfail = False  # SERVFAIL is an answer: "unknown", now
        resolver.search = []
        self._resolver = resolver

    async def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> _Outcome:
        try:
            answer = await self._resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            return _Kind.NXDOMAIN, (), "NXDOMAIN"
        except dns.resolver.NoAnswer:
            return _Kind.NODATA, (), "NODATA"
        except dns.resolver.LifetimeTimeout:
            return _Kind.UNKNOWN, (), f"timeout asking for {rdtype.name}"
        except dns.resolver.NoNameservers:
            return _Kind.UNKNOWN, (), f"SERVFAIL/REFUSED asking for {rdtype.name}"
        except dns.exception.DNSException as exc:
            return _Kind.UNKNOWN, (), f"{type(exc).__name__} asking for {rdtype.name}"
        texts = tuple(rdata.to_text() for rdata in answer)
        return _Kind.ANSWER, texts, ""

    async def sender_domain_status(self, domain: str) -> DomainStatus:
        """EXISTS if A, AAAA or MX answers; NO_RECORDS only if all three are NXDOMAIN/NODATA."""
        name = _host(domain)
        if not name:
            return DomainStatus.NOT_CHECKED
        outcomes = await asyncio.gather(
            self._query(name, dns.rdatatype.A),
            self._query(name, dns.rdatatype.AAAA),
            self._query(name, dns.rdatatype.MX),
        )
        kinds = {kind for kind, _, _ in outcomes}
        if _Kind.ANSWER in kinds:
            return DomainStatus.EXISTS
        if _Kind.UNKNOWN in kinds:
            log.info("sender domain %s: unknown (%s)", name, "; ".join(o[2] for o in outcomes))
            return DomainStatus.UNKNOWN
        return DomainStatus.NO_RECORDS

    async def mx_hosts(self, domain: str) -> MxResult:
        """The domain's mail hosts (RFC 5321 5.1, RFC 7505 null MX).

        An address literal (``[192.0.2.1]``) is its own host, with no lookup
        (RFC 5321 4.1.3); the listener takes such recipients only when told to.
        """
        name = _host(domain)
        literal = address_literal(name)
        if literal is not None:
            return MxResult(name, MxOutcome.HOSTS, (MxHost(0, literal),))
        kind, texts, reason = await self._query(name, dns.rdatatype.MX)
        if kind is _Kind.NXDOMAIN:
            return MxResult(name, MxOutcome.NO_SUCH_DOMAIN, reason="NXDOMAIN")
        if kind is _Kind.UNKNOWN:
            return MxResult(name, MxOutcome.TEMPORARY, reason=reason)
        if kind is _Kind.ANSWER:
            hosts = []
            for text in texts:
                preference, _, exchange = text.partition(" ")
                hosts.append(MxHost(int(preference), _host(exchange)))
            if any(h.host == "" for h in hosts):
                # A null MX means "no mail", even if other MX records sit beside it.
                return MxResult(name, MxOutcome.NULL_MX, reason="null MX (RFC 7505)")
            return MxResult(
                name,
                MxOutcome.HOSTS,
                tuple(sorted(hosts, key=lambda h: (h.preference, h.host))),
            )
        # NODATA: the domain exists without MX; its own address stands in (implicit MX).
        found = await self.addresses(name)
        if found.outcome is AddressOutcome.FOUND:
            return MxResult(name, MxOutcome.HOSTS, (MxHost(0, name),), implicit=True)
        if found.outcome is AddressOutcome.TEMPORARY:
            return MxResult(name, MxOutcome.TEMPORARY, reason=found.reason)
        if found.outcome is AddressOutcome.NO_SUCH_HOST:
            return MxResult(name, MxOutcome.NO_SUCH_DOMAIN, reason="NXDOMAIN")
        return MxResult(name, MxOutcome.NO_MAIL_HOSTS, reason="no MX, A or AAAA record")

    async def addresses(self, host: str) -> AddressResult:
        """The host's A then AAAA addresses."""
        name = _host(host)
        v4, v6 = await asyncio.gather(
            self._query(name, dns.rdatatype.A),
            self._query(name, dns.rdatatype.AAAA),
        )
        found = tuple(canonical_ip(t) for t in v4[1] + v6[1])
        unknown = [reason for kind, _, reason in (v4, v6) if kind is _Kind.UNKNOWN]
        if found:
            return AddressResult(name, AddressOutcome.FOUND, found, "; ".join(unknown))
        if unknown:
            return AddressResult(name, AddressOutcome.TEMPORARY, reason="; ".join(unknown))
        if v4[0] is _Kind.NXDOMAIN and v6[0] is _Kind.NXDOMAIN:
            return AddressResult(name, AddressOutcome.NO_SUCH_HOST, reason="NXDOMAIN")
        return AddressResult(name, AddressOutcome.NO_ADDRESS, reason="no A or AAAA record")

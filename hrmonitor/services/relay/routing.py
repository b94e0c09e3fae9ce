"""The router: one message at acceptance -> a :class:`RouteDecision` with its reasons.

It resolves the envelope sender's domain through the mail DNS adapter (given
as anything with ``sender_domain_status``, so this service imports no
adapter), keeps the per-sender recipient counters, and calls the pure
``core.routing.decide``. The listener stores ``Router.stored_form(message,
client)`` (untrusted score headers stripped) and routes that, with
``count=True`` once per accepted message; a held message (DNS unknown) is
re-routed later with ``count=False`` and its original arrival time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from hrmonitor.core.alert import Alert
from hrmonitor.core.model import Pool
from hrmonitor.core.mx import DomainStatus
from hrmonitor.core.routing.decide import (
    RouteDecision,
    RoutingSettings,
    Tenant,
    decide,
    message_facts,
    sender_domain_of,
    tenant_for,
)
from hrmonitor.core.routing.limits import (
    LimitAlerts,
    PeerCounts,
    RecipientWindow,
    check_limits,
    sender_key,
)
from hrmonitor.core.routing.rules import RoutingRule
from hrmonitor.core.routing.spam_score import ScanResult, strip_untrusted_scores

__all__ = ["Router", "RoutingSettings", "SenderDomainLookup", "Tenant"]

log = logging.getLogger(__name__)


class SenderDomainLookup(Protocol):
    """What the router needs from DNS (``adapters.dns.mail.MailDns`` provides it)."""

    async def sender_domain_status(self, domain: str) -> DomainStatus: ...


class SpamScanner(Protocol):
    """A scanner queried per message (``adapters.rspamd.Rspamd`` provides it); never raises."""

    async def scan(
        self, message: bytes, *, mail_from: str, rcpts: Sequence[str], client_ip: str | None
    ) -> ScanResult: ...

    async def close(self) -> None: ...


class Router:
    """Routes messages; one instance per daemon (it owns the sending-limit counters).

    A sender domain is looked up once at a time: messages from a domain whose
    lookup is in flight wait for that lookup instead of starting their own.
    "Exists" is remembered for ``domain_cache_ttl``; "no records" and
    "unknown" (timeout, SERVFAIL) for ``negative_ttl`` only, so a resolver
    outage costs one timeout per domain per ``negative_ttl``, not one per
    message, and a held message (re-checked after a retry step, longer than
    ``negative_ttl`` by default) is resolved again.
    The alerts a decision carries (``sending-limit``) go to ``on_alert``,
    once per sender until :meth:`prune` or a later message finds the sender
    back under its limits, which resolves them.
    """

    def __init__(
        self,
        rules: Sequence[RoutingRule],
        pools: Sequence[Pool],
        settings: RoutingSettings,
        dns: SenderDomainLookup,
        tenants: Sequence[Tenant] = (),
        domain_cache_ttl: timedelta = timedelta(minutes=5),
        scanner: SpamScanner | None = None,
        negative_ttl: timedelta = timedelta(seconds=30),
    ) -> None:
        self.rules = tuple(rules)
        self.pools = tuple(pools)
        self.settings = settings
        self.tenants = tuple(tenants)
        self._dns = dns
        self._scanner = scanner
        self._window = RecipientWindow()  # this node's acceptances
        self._peers = PeerCounts()  # the other nodes', as they published them
        self._unpublished: set[tuple[str, datetime]] = set()  # (sender, minute) counted here
        self._cache_ttl = domain_cache_ttl
        self._negative_ttl = negative_ttl
        self._cache: dict[str, tuple[datetime, DomainStatus]] = {}
        self._in_flight: dict[str, asyncio.Future[DomainStatus]] = {}
        self._limit_alerts = LimitAlerts()
        self.on_alert: Callable[[Alert], None] | None = None  # the daemon sets it

    def reconfigure(
        self,
        rules: Sequence[RoutingRule],
        settings: RoutingSettings,
        tenants: Sequence[Tenant],
        pools: Sequence[Pool] | None = None,
    ) -> None:
        """New rules, settings (limits too), tenants and pools for the next message (a reload).

        The sending-limit counters are kept: a reload does not reset a sender's day.
        """
        if pools is not None:
            self.pools = tuple(pools)
        self.rules = tuple(rules)
        self.settings = settings
        self.tenants = tuple(tenants)

    def stored_form(self, message: bytes, client_ip: str | None) -> bytes:
        """The bytes the listener stores: score headers stripped unless from a trusted filter."""
        return strip_untrusted_scores(
            message, client_ip, self.settings.spam_headers, self.settings.trusted_filters
        )

    def tenant_for(self, client_ip: str | None) -> Tenant | None:
        return tenant_for(client_ip, self.tenants)

    async def sender_domain_status(self, domain: str, now: datetime) -> DomainStatus:
        if not domain:
            return DomainStatus.NOT_CHECKED
        cached = self._cache.get(domain)
        if cached is not None and now < cached[0]:
            return cached[1]
        pending = self._in_flight.get(domain)
        if pending is not None:  # one lookup per domain at a time: wait for it
            return await asyncio.shield(pending)
        pending = self._in_flight[domain] = asyncio.get_running_loop().create_future()
        try:
            status = await self._lookup(domain)
            ttl = self._cache_ttl if status is DomainStatus.EXISTS else self._negative_ttl
            if len(self._cache) > 10_000:
                self._cache = {d: c for d, c in self._cache.items() if now < c[0]}
            self._cache[domain] = (now + ttl, status)
            pending.set_result(status)
            return status
        finally:
            del self._in_flight[domain]
            if not pending.done():  # the lookup itself was cancelled: waiters must not hang
                pending.set_result(DomainStatus.UNKNOWN)

    async def _lookup(self, domain: str) -> DomainStatus:
        try:
            return await self._dns.sender_domain_status(domain)
        except Exception:  # the adapter returns values; anything else must not lose mail
            log.exception("sender domain lookup for %s failed; treating it as unknown", domain)
            return DomainStatus.UNKNOWN

    async def route(
        self,
        *,
        mail_from: str,
        rcpts: Sequence[str],
        client_ip: str | None,
        message: bytes,
        arrival: datetime,
        now: datetime | None = None,
        tenant: Tenant | None = None,
        count: bool = True,
    ) -> RouteDecision:
        """Decide the pool. ``tenant`` defaults to the one whose networks hold ``client_ip``.

        ``count=True`` adds the message's recipients to the sender's counters
        first (so the message that crosses a limit is itself routed high).
        """
        when = now or arrival
        if tenant is None:
            tenant = self.tenant_for(client_ip)
        if count:
            self._window.record(mail_from, len(rcpts), arrival)
            self._unpublished.add((sender_key(mail_from), arrival.replace(second=0, microsecond=0)))
        last_hour, last_day = self._window.counts(mail_from, when)
        peer_hour, peer_day = self._peers.counts(mail_from, when)
        last_hour, last_day = last_hour + peer_hour, last_day + peer_day
        limit = check_limits(last_hour, last_day, self.settings.limits)
        domain = sender_domain_of(mail_from)
        if domain or not mail_from.strip().strip("<>"):
            status = await self.sender_domain_status(domain, when)
        else:  # a non-null sender without a domain has no records to find: fail closed
            status = DomainStatus.NO_RECORDS
        scan = None
        if self._scanner is not None:
            scan = await self._scanner.scan(
                message, mail_from=mail_from, rcpts=rcpts, client_ip=client_ip
            )
        facts = message_facts(
            mail_from=mail_from,
            rcpts=rcpts,
            client_ip=client_ip,
            tenant=tenant,
            message=message,
            arrival=arrival,
            sender_domain_status=status,
            limit=limit,
            settings=self.settings,
            scan=scan,
        )
        decision = decide(facts, self.rules, self.pools, self.settings, when)
        if self.on_alert is not None and (
            alert := self._limit_alerts.decided(mail_from, limit, decision.alerts, when)
        ):
            self.on_alert(alert)
        log.debug("routed %s -> %s (%d reasons)", mail_from, decision.pool, len(decision.reasons))
        return decision

    def restore_counts(self, sent: Iterable[tuple[str, datetime, int]]) -> int:
        """Count again what senders sent before a restart: (sender, arrival, recipients)
        as the queue kept it (``QueueRepository.recipients_sent_since``). Without it a
        restart would hand every sender, a compromised account too, a fresh day's
        budget. Returns how many senders have counts."""
        senders: set[str] = set()
        for mail_from, arrival, recipients in sent:
            self._window.record(mail_from, recipients, arrival)
            senders.add(sender_key(mail_from))
        senders.discard("")  # the null sender is never counted
        return len(senders)

    def reopen_limit_alerts(self, senders: Iterable[str]) -> None:
        """The senders whose ``sending-limit`` alert is still open in the store (a
        restart): resolved at :meth:`prune` once they are back under the limits."""
        self._limit_alerts.reopen(senders)

    def take_unpublished(self) -> list[tuple[str, datetime, int]]:
        """(sender, minute, this node's recipients in that minute) for every minute counted
        since the last call: what the other nodes of a cluster need to see."""
        keys, self._unpublished = self._unpublished, set()
        rows = [(s, minute, self._window.minute_total(s, minute)) for s, minute in keys]
        return [row for row in rows if row[0] and row[2] > 0]

    def merge_peer_counts(self, rows: Iterable[tuple[str, str, datetime, int]]) -> None:
        """Other nodes' published (node, sender, minute, recipients): the sending limits
        count the cluster, not this node alone."""
        for node, sender, minute, recipients in rows:
            self._peers.merge(node, sender, minute, recipients)

    async def close(self) -> None:
        """Close the scanner's connections, if there is a scanner."""
        if self._scanner is not None:
            await self._scanner.close()

    def prune(self, now: datetime) -> None:
        """Drop counters older than a day and expired DNS answers (call from a periodic job);
        resolve the sending-limit alerts of senders back under their limits."""
        for alert in self._limit_alerts.back_under(self._window, self.settings.limits, now):
            if self.on_alert is not None:
                self.on_alert(alert)
        self._window.prune(now)
        self._peers.prune(now)
        self._cache = {d: c for d, c in self._cache.items() if now < c[0]}

"""Delivery: one attempt for one group of recipients (one message, one recipient domain).

A held message is routed again first. Then the MX is looked up and, for
**each attempt**, the picker is asked for a source IP of the message's own
pool. Nothing here can choose an IP: an empty answer holds the mail (an own
deferral, never evidence) and raises a ``pool-exhausted`` alert; an IP that is
not in the message's pool is refused (fail closed, whoever made the mistake);
a bind failure suspends that IP through ``on_bind_failure`` and the attempt
goes on with another IP of the same pool. Every remote reply goes to
``on_reply``; every attempt is stored. 5xx and expired recipients get an
RFC 3464 DSN, which is routed like any message (null sender: high-risk) and
queued; null-sender mail gets none.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

from hrmonitor.adapters.smtp_out import Body, Failed, Reply, Sent
from hrmonitor.adapters.store.queue.repository import DueRecipient, Outcome, QueueRepository
from hrmonitor.core.delivery.dsn import FailedRecipient
from hrmonitor.core.model import Clock
from hrmonitor.core.mx import AddressOutcome, AddressResult, MxOutcome, MxResult
from hrmonitor.errors import BindError
from hrmonitor.services.relay.acceptance import Acceptance
from hrmonitor.services.relay.feedback import PoolExhaustion, report_reply
from hrmonitor.services.relay.outcome import attempt_line, dsn_submission, judge
from hrmonitor.services.relay.settings import (
    AddressFn,
    AlertFn,
    BindFailureFn,
    MxFn,
    OutcomeFn,
    RecordFn,
    RelaySettings,
    ReplyFn,
    Sender,
    StoreCall,
    TagSenderFn,
)
from hrmonitor.services.relay.source_ip import SourcePicker

log = logging.getLogger(__name__)

MAX_CACHED = 10_000  # domains (and MX hosts) whose lookups are remembered
# A body too large to come with its claim is read from the queue this much at a time as
# DATA goes out, so a delivery holds a slice of it, not the message (issue 13, item 1).
SLICE_BYTES = 64 * 1024


class Delivery:
    """Delivers a claimed group: re-route if held, MX, source IP, transaction, outcomes."""

    def __init__(
        self,
        *,
        queue: QueueRepository,
        store: StoreCall,
        acceptance: Acceptance,
        record: RecordFn,
        picker: SourcePicker,
        mx: MxFn,
        sender: Sender,
        clock: Clock,
        settings: RelaySettings,
        addresses: AddressFn | None = None,
        on_reply: ReplyFn | None = None,
        on_alert: AlertFn | None = None,
        on_bind_failure: BindFailureFn | None = None,
        on_outcome: OutcomeFn | None = None,
        tag_sender: TagSenderFn | None = None,
    ) -> None:
        self._queue = queue
        self._store = store
        self._acceptance = acceptance
        self._record = record
        self._picker = picker
        self._mx = mx
        self._addresses = addresses
        self._sender = sender
        self._clock = clock
        self._settings = settings
        self._on_reply = on_reply or (lambda _reply: None)
        self._exhaustion = PoolExhaustion(on_alert or (lambda _alert: None))
        self._on_bind_failure = on_bind_failure or (lambda *_args: None)
        self._on_outcome = on_outcome
        self._tag_sender = tag_sender
        self._mx_cache: dict[str, tuple[float, MxResult]] = {}
        # The MX hosts' addresses, remembered as long as the MX answers: looking them up
        # (A and AAAA) for every attempt was ~15 % of the daemon's CPU under load.
        self._address_cache: dict[str, tuple[float, AddressResult]] = {}

    def reconfigure(self, settings: RelaySettings) -> None:
        """New relay settings (a reload changed the pools' IPs)."""
        self._settings = settings

    async def _lookup_mx(self, domain: str) -> MxResult:
        cached = self._mx_cache.get(domain)
        if cached is not None and time.monotonic() - cached[0] < self._settings.mx_cache_seconds:
            return cached[1]
        try:
            result = await asyncio.wait_for(self._mx(domain), self._settings.dns_timeout)
        except TimeoutError:
            return MxResult(domain, MxOutcome.TEMPORARY, reason="MX lookup timed out")
        if result.outcome is MxOutcome.HOSTS:
            if len(self._mx_cache) > MAX_CACHED:
                self._mx_cache.clear()  # a bound, not an eviction policy: refilled in a minute
            self._mx_cache[domain] = (time.monotonic(), result)
        return result

    async def _targets(self, host: str, source_ip: str) -> list[str]:
        """The addresses of ``host`` in the source IP's family (the host itself if a literal)."""
        if self._addresses is None or _is_ip(host):
            return [host]
        cached = self._address_cache.get(host)
        if cached is not None and time.monotonic() - cached[0] < self._settings.mx_cache_seconds:
            found = cached[1]
        else:
            try:
                found = await asyncio.wait_for(self._addresses(host), self._settings.dns_timeout)
            except TimeoutError:
                return []
            if found.outcome is not AddressOutcome.FOUND:
                return []
            if len(self._address_cache) > MAX_CACHED:
                self._address_cache.clear()
            self._address_cache[host] = (time.monotonic(), found)
        return list(found.ipv6 if ":" in source_ip else found.ipv4)

    def _envelope_sender(self, mail_from: str) -> str:
        """The stored sender, BATV-tagged when tagging is on (the null sender stays null)."""
        if self._tag_sender is None or not mail_from:
            return mail_from
        return self._tag_sender(mail_from, self._clock.now())

    async def deliver(self, group: list[DueRecipient]) -> None:
        """One attempt for ``group``; its outcomes are recorded before this returns."""
        now = self._clock.now()
        if group[0].hold_until is not None:
            rerouted = await self._acceptance.reroute(group, now)
            if rerouted is None:
                return
            group = rerouted
        first = group[0]
        mx = await self._lookup_mx(first.domain)
        if mx.permanent_failure:
            status = "5.1.10" if mx.outcome is MxOutcome.NULL_MX else "5.1.2"
            text = f"{status} {mx.outcome.value}: {mx.reason or first.domain}"
            await self.conclude(group, now, 550, "", None, text, own=True)
            return
        if mx.outcome is not MxOutcome.HOSTS or not mx.hosts:
            await self.conclude(group, now, None, "", None, f"MX lookup: {mx.reason}", own=True)
            return
        hosts = [h.host for h in mx.hosts]
        body = await self._body(first)
        excluded: set[str] = set()
        last_failure = "no MX host answered"
        while True:
            ip = await self._picker.pick(first.pool, hosts[0], now, frozenset(excluded))
            if ip is None:
                self._exhaustion.exhausted(first.pool, hosts[0], now)
                await self.conclude(
                    group, now, None, "", None,
                    f"pool {first.pool} has no eligible IP for {hosts[0]}",
                    own=True, counts=False,
                )  # fmt: skip
                return
            if ip not in self._settings.pool_ips.get(first.pool, frozenset()) or ip in excluded:
                log.error("picker offered %s for pool %s: refused (fail closed)", ip, first.pool)
                await self.conclude(
                    group, now, None, "", None, f"no usable IP in pool {first.pool}",
                    own=True, counts=False,
                )  # fmt: skip
                return
            self._exhaustion.resolved(first.pool, now)
            try:
                outcome = await self._try_hosts(group, ip, hosts, body)
            except BindError as exc:
                log.error("source IP %s of pool %s cannot be bound: %s", ip, first.pool, exc)
                self._on_bind_failure(ip, first.pool, str(exc), now)
                excluded.add(ip)
                continue
            if outcome is None:
                await self.conclude(group, now, None, "", ip, last_failure)
                return
            await self._apply(group, outcome[0], now, outcome[1], outcome[2])
            return

    async def _body(self, first: DueRecipient) -> Body:
        """The message as the sender reads it: the claim's bytes when small, else slices
        read from the queue afresh for each transaction (every recipient of the group
        shares the transaction; another host or a retry reads it again)."""
        if first.body is not None:
            return Body.of(first.body)
        eight_bit = first.eight_bit
        if eight_bit is None:  # queued before migration 0008 recorded it: read through once
            eight_bit = False
            async for piece in self._slices(first):
                if not piece.isascii():
                    eight_bit = True
                    break
        return Body(size=first.size, eight_bit=eight_bit, read=lambda: self._slices(first))

    async def _slices(self, first: DueRecipient) -> AsyncIterator[bytes]:
        """``first``'s stored body from the start, ``SLICE_BYTES`` at a time."""
        message_id, size = first.message_id, first.size
        for offset in range(0, size, SLICE_BYTES):
            length = min(SLICE_BYTES, size - offset)
            yield await self._store(self._queue.body_slice, message_id, offset, length)

    async def _header_block(self, first: DueRecipient) -> bytes:
        """What a DSN quotes of the message, its header block: the message up to the
        first empty line (all of it when it has none), read in slices when large."""
        if first.body is not None:
            return first.body
        head = bytearray()
        async for piece in self._slices(first):
            head += piece
            tail = max(0, len(head) - len(piece) - 3)  # an empty line across the slices too
            if head.find(b"\r\n\r\n", tail) >= 0 or head.find(b"\n\n", tail) >= 0:
                break
        return bytes(head)

    async def _try_hosts(
        self, group: list[DueRecipient], ip: str, hosts: list[str], body: Body
    ) -> tuple[Sent | Failed, float, str] | None:
        """The first transaction that got a reply (or the last failure), with its duration
        and the MX host name it went to (replies are evidence about that MX's destination)."""
        first = group[0]
        last: tuple[Sent | Failed, float, str] | None = None
        for host in hosts:
            for target in await self._targets(host, ip):
                started = time.monotonic()
                try:
                    # asyncio.timeout, not wait_for: wait_for wraps the send in a task of
                    # its own, one more task and its scheduling for every attempt.
                    async with asyncio.timeout(self._settings.send_timeout):
                        outcome = await self._sender.send(
                            source_ip=ip,
                            host=target,
                            mail_from=self._envelope_sender(first.mail_from),
                            recipients=[r.address for r in group],
                            body=body,
                            smtputf8=first.smtputf8,
                        )
                except TimeoutError:
                    outcome = Failed(target, ip, "transaction timed out")
                last = (outcome, (time.monotonic() - started) * 1000, host)
                if isinstance(outcome, Sent) or outcome.reply is not None:
                    return last
        return last

    async def _apply(
        self,
        group: list[DueRecipient],
        outcome: Sent | Failed,
        now: datetime,
        duration: float,
        mx_host: str,
    ) -> None:
        if isinstance(outcome, Failed):
            if outcome.reply is not None:
                report_reply(self._on_reply, outcome.reply, outcome.source_ip, mx_host, now)
                code, text = outcome.reply.code, outcome.reply.text
            else:
                code, text = None, outcome.reason
            await self.conclude(
                group, now, code, outcome.host, outcome.source_ip, text, duration=duration,
                mx_host=mx_host,
            )  # fmt: skip
            return
        outcomes: list[Outcome] = []
        bounced: list[FailedRecipient | None] = []
        reported: set[Reply] = set()
        for recipient in group:
            reply = outcome.replies.get(recipient.address, Reply(451, "4.3.0 no reply"))
            if reply not in reported:
                reported.add(reply)
                report_reply(self._on_reply, reply, outcome.source_ip, mx_host, now)
            outcome_row, failed = judge(
                self._settings.retry, recipient, now, reply.code, reply.text, outcome.host,
                outcome.source_ip, duration=duration,
            )  # fmt: skip
            outcomes.append(outcome_row)
            bounced.append(failed)
        await self._finish(group, outcomes, bounced, now, mx_host)

    async def conclude(
        self,
        group: list[DueRecipient],
        now: datetime,
        code: int | None,
        host: str,
        ip: str | None,
        text: str,
        *,
        own: bool = False,
        counts: bool = True,
        duration: float = 0.0,
        mx_host: str = "",
    ) -> None:
        """The same verdict for every recipient of the group (no per-recipient replies)."""
        outcomes: list[Outcome] = []
        bounced: list[FailedRecipient | None] = []
        for recipient in group:
            outcome, failed = judge(
                self._settings.retry, recipient, now, code, text, host, ip,
                own=own, counts=counts, duration=duration,
            )  # fmt: skip
            outcomes.append(outcome)
            bounced.append(failed)
        await self._finish(group, outcomes, bounced, now, mx_host)

    async def _finish(
        self,
        group: list[DueRecipient],
        outcomes: list[Outcome],
        failures: list[FailedRecipient | None],
        now: datetime,
        mx_host: str,
    ) -> None:
        first = group[0]
        bounced = [f for f in failures if f is not None]
        # The DSN is queued before the bounce is recorded: a crash in between
        # repeats the attempt (and maybe the DSN), it never loses the DSN.
        if bounced and first.mail_from:
            await self._send_dsn(first, bounced, now)
        await self._record(outcomes)
        if log.isEnabledFor(logging.INFO):
            logged = self._clock.now()
            for recipient, outcome, failed in zip(group, outcomes, failures, strict=True):
                line = attempt_line(
                    self._settings.retry, recipient, outcome, failed, mx_host=mx_host,
                    port=self._settings.port,
                    delay=max((logged - recipient.arrived_at).total_seconds(), 0.0),
                )  # fmt: skip
                log.info("%s", line.text, extra={"fields": line.as_json()})
        if self._on_outcome is not None:
            for recipient, outcome in zip(group, outcomes, strict=True):
                if outcome.own or outcome.code is None:
                    continue
                try:
                    self._on_outcome(recipient, outcome)
                except Exception:
                    log.exception("outcome hook failed for %s", recipient.message_id)

    async def _send_dsn(
        self, first: DueRecipient, bounced: list[FailedRecipient], now: datetime
    ) -> None:
        original = await self._header_block(first)
        dsn_id = f"{uuid.uuid4().hex}@{self._settings.hostname}"
        submission = dsn_submission(
            first,
            bounced,
            original=original,
            hostname=self._settings.hostname,
            now=now,
            message_id=dsn_id,
        )
        message = await self._acceptance.queue_submission(submission, dsn_of=first.message_id)
        # Postfix's words for the same event, so that log tools pair the two messages.
        log.info(
            "%s: sender non-delivery notification: %s",
            first.message_id, message.id,
            extra={"fields": {"queue_id": first.message_id, "event": "dsn", "dsn_id": message.id}},
        )  # fmt: skip


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

"""The relay: the acceptance pipeline behind the listener, and the queue runner.

Acceptance: route the message (once, at arrival, with its reasons), then hand
it to the queue. Concurrent acceptances are group-committed: while one batch
is being written, the next one gathers, and every waiter gets its ``250``
only after the batch holding its message committed.

Delivery: the runner claims due recipients, groups them by (message,
recipient domain), looks up the MX, and for **each attempt** asks the picker
for a source IP of the message's own pool. Nothing here can choose an IP:
an empty answer holds the mail (an own deferral, never evidence) and raises
a ``pool-exhausted`` alert; an IP that is not in the message's pool is
refused (fail closed, whoever made the mistake); a bind failure suspends
that IP through ``on_bind_failure`` and the attempt goes on with another IP
of the same pool. Every remote reply goes to ``on_reply``; every attempt is
stored. 5xx and expired recipients get an RFC 3464 DSN, which is routed like
any message (null sender: high-risk) and queued; null-sender mail gets none.

All queue I/O runs on one store thread, so the event loop never blocks on
an fsync and SQLite never sees two writers from this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import ipaddress
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, cast

from hrmonitor.adapters.smtp_out import Failed, Reply, Sent
from hrmonitor.adapters.store.queue import (
    DueRecipient,
    NewMessage,
    Outcome,
    QueueRepository,
    RecipientStatus,
)
from hrmonitor.core.alert import Alert, AlertKind, alert_key
from hrmonitor.core.dsn import FailedRecipient, build_dsn, header_value
from hrmonitor.core.envelope import Submission
from hrmonitor.core.feedback import RemoteReply
from hrmonitor.core.model import Clock, Severity
from hrmonitor.core.mx import AddressOutcome, AddressResult, MxOutcome, MxResult
from hrmonitor.core.retry import Bounce, Delivered, Retry, RetryPolicy, judge_reply
from hrmonitor.core.routing import RouteDecision
from hrmonitor.errors import BindError
from hrmonitor.services.group_commit import GroupCommit
from hrmonitor.services.routing import Router
from hrmonitor.services.source_ip import SourcePicker

T = TypeVar("T")

log = logging.getLogger(__name__)


class RouteFn(Protocol):
    async def __call__(
        self, submission: Submission, *, now: datetime, again: bool
    ) -> RouteDecision:
        """Route ``submission`` as of ``now``.

        ``again`` is True when a held message (sender DNS unknown) is routed once
        more: the sending-limit counters must not count it twice.
        """
        ...


MxFn = Callable[[str], Awaitable[MxResult]]
AddressFn = Callable[[str], Awaitable[AddressResult]]
ReplyFn = Callable[[RemoteReply], None]
AlertFn = Callable[[Alert], None]
# (ip, pool, error text, now): suspend the whole IP and audit it.
BindFailureFn = Callable[[str, str, str, datetime], None]
# (message, client IP) -> the bytes to store and route on (Router.stored_form).
StoredFormFn = Callable[[bytes, str | None], bytes]
# A tenant's message was routed and is about to be stored: classify it (the bounce
# kind to store, or None) and tell whoever watches traffic (the surge watcher).
AcceptedFn = Callable[[Submission, RouteDecision], str | None]
# One recipient's attempt concluded with a remote reply (never an own deferral).
OutcomeFn = Callable[[DueRecipient, Outcome], None]
# The envelope sender to put on the wire (BATV-tagged), from the stored one and now.
TagSenderFn = Callable[[str, datetime], str]


SimpleRouteFn = Callable[[Submission], Awaitable[RouteDecision]]


def _keyword_route(route: RouteFn | SimpleRouteFn) -> RouteFn:
    """Accept a one-argument route function too (tests, benchmarks: no holds to re-check)."""
    try:
        parameters = inspect.signature(route).parameters
    except (TypeError, ValueError):
        return cast(RouteFn, route)
    if "again" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return cast(RouteFn, route)
    simple = cast(SimpleRouteFn, route)

    async def keyword(submission: Submission, *, now: datetime, again: bool) -> RouteDecision:
        return await simple(submission)

    return keyword


def route_with(router: Router) -> RouteFn:
    """The :class:`RouteFn` of a :class:`Router`: the tenant by name, limits counted once."""

    async def route(submission: Submission, *, now: datetime, again: bool) -> RouteDecision:
        tenant = next((t for t in router.tenants if t.name == submission.tenant), None)
        return await router.route(
            mail_from=submission.mail_from,
            rcpts=submission.recipients,
            client_ip=submission.client_ip or None,
            message=submission.data,
            arrival=submission.received_at,
            now=now,
            tenant=tenant,
            count=not again,
        )

    return route


class Sender(Protocol):
    async def send(
        self,
        *,
        source_ip: str,
        host: str,
        mail_from: str,
        recipients: Sequence[str],
        body: bytes,
        smtputf8: bool = False,
        port: int | None = None,
    ) -> Sent | Failed: ...


@dataclass(frozen=True, slots=True)
class RelaySettings:
    hostname: str  # Reporting-MTA of DSNs
    pool_ips: Mapping[str, frozenset[str]]  # every IP each pool may ever send from
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 100  # delivery groups in flight
    per_destination: int = 10  # groups in flight per recipient domain
    claim_batch: int = 200
    poll_seconds: float = 1.0  # an upper bound on the idle wait; acceptance wakes the runner
    dns_timeout: float = 15.0
    send_timeout: float = 600.0  # a whole transaction, on top of the per-command timeouts
    mx_cache_seconds: float = 60.0
    max_batch: int = 500
    housekeeping_seconds: float = 300.0
    keep_finished: timedelta = timedelta(days=7)  # delivered/bounced messages stay this long


def _split_enhanced(text: str) -> tuple[str, str]:
    first, _, rest = text.partition(" ")
    parts = first.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return first, rest
    return "", text


class Relay:
    def __init__(
        self,
        *,
        queue: QueueRepository,
        route: RouteFn | SimpleRouteFn,
        picker: SourcePicker,
        mx: MxFn,
        sender: Sender,
        clock: Clock,
        settings: RelaySettings,
        addresses: AddressFn | None = None,
        on_reply: ReplyFn | None = None,
        on_alert: AlertFn | None = None,
        on_bind_failure: BindFailureFn | None = None,
        stored_form: StoredFormFn | None = None,
        on_accepted: AcceptedFn | None = None,
        on_outcome: OutcomeFn | None = None,
        tag_sender: TagSenderFn | None = None,
    ) -> None:
        self.queue = queue
        self._stored_form = stored_form
        self._route = _keyword_route(route)
        self._picker = picker
        self._mx = mx
        self._addresses = addresses
        self._sender = sender
        self._clock = clock
        self.settings = settings
        self._on_reply = on_reply or (lambda _reply: None)
        self._on_alert = on_alert or (lambda _alert: None)
        self._on_bind_failure = on_bind_failure or (lambda *_args: None)
        self._on_accepted = on_accepted
        self._on_outcome = on_outcome
        self._tag_sender = tag_sender
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hrmonitor-queue")
        self._enqueue = GroupCommit[NewMessage](self._write_messages, settings.max_batch)
        self._record = GroupCommit[Outcome](self._write_outcomes, settings.max_batch)
        self._wake = asyncio.Event()
        self._stopping = False
        self._active: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._per_destination: dict[str, asyncio.Semaphore] = {}
        self._mx_cache: dict[str, tuple[float, MxResult]] = {}
        self._exhausted: set[str] = set()
        self._running = asyncio.Event()
        self._next_housekeeping = 0.0
        self._running.set()  # "not running" until run() starts

    # --- store thread ------------------------------------------------------------------

    async def _db_call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def _write_messages(self, batch: list[NewMessage]) -> None:
        await self._db_call(self.queue.enqueue, batch)

    async def _write_outcomes(self, batch: list[Outcome]) -> None:
        await self._db_call(self.queue.record, batch)

    # --- acceptance --------------------------------------------------------------------

    async def accept(self, submission: Submission) -> str:
        """The listener's callback: route, store durably, then (only then) answer 250."""
        message = await self._queue_submission(submission)
        return f"250 2.0.0 Ok: queued as {message.id}"

    async def _queue_submission(
        self, submission: Submission, dsn_of: str | None = None
    ) -> NewMessage:
        if self._stored_form is not None:
            data = self._stored_form(submission.data, submission.client_ip)
            submission = dataclasses.replace(submission, data=data)
        decision = await self._route(submission, now=submission.received_at, again=False)
        hold_until = decision.hold_until if decision.hold else None
        bounce_kind = "dsn" if dsn_of is not None else self._accepted(submission, decision)
        message = NewMessage(
            id=uuid.uuid4().hex,
            tenant=submission.tenant,
            client_ip=submission.client_ip,
            mail_from=submission.mail_from,
            recipients=submission.recipients,
            body=submission.data,
            arrived_at=submission.received_at,
            pool=decision.pool,
            risk=str(decision.risk),
            reasons=tuple({"rule": r.rule, "detail": r.detail} for r in decision.reasons),
            hold_until=hold_until,
            bounce_kind=bounce_kind,
            due_at=self._recheck_at(submission.received_at, hold_until),
            message_id=header_value(submission.data, "Message-ID"),
            smtputf8=submission.smtputf8,
            dsn_of=dsn_of,
        )
        await self._enqueue.submit([message])
        self.wake()
        return message

    def _envelope_sender(self, mail_from: str) -> str:
        """The stored sender, BATV-tagged when tagging is on (the null sender stays null)."""
        if self._tag_sender is None or not mail_from:
            return mail_from
        return self._tag_sender(mail_from, self._clock.now())

    def _accepted(self, submission: Submission, decision: RouteDecision) -> str | None:
        if self._on_accepted is None:
            return None
        try:
            return self._on_accepted(submission, decision)
        except Exception:  # watching traffic must never cost a message
            log.exception("acceptance hook failed for a message from %s", submission.client_ip)
            return None

    def _recheck_at(self, now: datetime, hold_until: datetime | None) -> datetime | None:
        """A held message is routed again after the first retry step, or when its hold ends."""
        if hold_until is None:
            return None
        return min(now + self.settings.retry.delay(1), hold_until)

    async def _reroute(self, group: list[DueRecipient], now: datetime) -> list[DueRecipient] | None:
        """Route a held message again; the group with its new pool, or None if still held."""
        first = group[0]
        body = first.body
        if body is None:
            body = await self._db_call(self.queue.body, first.message_id)
        submission = Submission(
            tenant=first.tenant,
            client_ip=first.client_ip,
            helo="",
            mail_from=first.mail_from,
            recipients=tuple(r.address for r in group),
            data=body,
            received_at=first.arrived_at,
            smtputf8=first.smtputf8,
        )
        decision = await self._route(submission, now=now, again=True)
        hold_until = decision.hold_until if decision.hold else None
        await self._db_call(
            functools.partial(
                self.queue.reroute,
                first.message_id,
                pool=decision.pool,
                risk=str(decision.risk),
                reasons=[{"rule": r.rule, "detail": r.detail} for r in decision.reasons],
                hold_until=hold_until,
            )
        )
        if hold_until is not None:
            recheck = self._recheck_at(now, hold_until)
            outcomes = [
                Outcome(
                    recipient_id=r.recipient_id,
                    message_id=r.message_id,
                    status=RecipientStatus.DEFERRED,
                    at=now,
                    pool=decision.pool,
                    next_attempt_at=recheck,
                    reply="held: the sender domain's DNS is unknown",
                    own=True,
                    counts_as_attempt=False,
                )
                for r in group
            ]
            await self._record.submit(outcomes)
            return None
        return [dataclasses.replace(r, pool=decision.pool, hold_until=None) for r in group]

    # --- the runner --------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def recover(self) -> int:
        """Make recipients a crash left ``delivering`` due again; call once before :meth:`run`."""
        count = await self._db_call(self.queue.recover, self._clock.now())
        if count:
            log.warning(
                "%d recipient(s) were mid-delivery at the last stop; delivering again", count
            )
        return count

    async def run(self) -> None:
        """Deliver until :meth:`stop`; survives any one bad message or store hiccup."""
        self._running.clear()
        try:
            await self._loop()
        finally:
            self._running.set()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                claimed = await self.dispatch()
            except Exception:
                log.exception("queue runner pass failed; retrying")
                claimed = 0
            await self._housekeeping()
            if claimed and len(self._active) < self.settings.concurrency:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), await self._idle_wait())

    async def _housekeeping(self) -> None:
        """Now and then: re-queue lost claims, drop finished messages past their keep time."""
        if time.monotonic() < self._next_housekeeping:
            return
        self._next_housekeeping = time.monotonic() + self.settings.housekeeping_seconds
        now = self._clock.now()
        stale = now - timedelta(seconds=2 * self.settings.send_timeout)
        try:
            lost = await self._db_call(self.queue.recover, now, stale)
            purged = await self._db_call(
                self.queue.purge_finished, now - self.settings.keep_finished
            )
        except Exception:
            log.exception("queue housekeeping failed")
            return
        if lost:
            log.warning("%d recipient(s) had a lost claim; they are due again", lost)
        if purged:
            log.info("purged %d finished message(s)", purged)

    async def _idle_wait(self) -> float:
        try:
            due = await self._db_call(self.queue.next_due_at)
        except Exception:
            log.exception("cannot read the queue's next due time")
            return self.settings.poll_seconds
        if due is None:
            return self.settings.poll_seconds
        seconds = (due - self._clock.now()).total_seconds()
        return min(max(seconds, 0.01), self.settings.poll_seconds)

    async def stop(self) -> None:
        """Stop claiming, let the deliveries in flight finish, then close the store thread."""
        self._stopping = True
        self.wake()
        await self._running.wait()
        if self._active:
            await asyncio.gather(*self._active, return_exceptions=True)
        self._db.shutdown(wait=True)

    async def dispatch(self) -> int:
        """Claim what is due now and start delivering it; returns how many recipients."""
        free = self.settings.concurrency - len(self._active)
        if free <= 0:
            return 0
        limit = min(self.settings.claim_batch, free * 4)
        due = await self._db_call(self.queue.claim_due, self._clock.now(), limit)
        groups: dict[tuple[str, str], list[DueRecipient]] = {}
        for recipient in due:
            groups.setdefault((recipient.message_id, recipient.domain), []).append(recipient)
        for group in groups.values():
            task = asyncio.create_task(self._deliver_guarded(group))
            self._active.add(task)
            task.add_done_callback(self._finished)
        return len(due)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._active.discard(task)
        self.wake()

    async def run_until_idle(self) -> None:
        """Deliver everything due now and wait for it (tests and one-shot use)."""
        while await self.dispatch() or self._active:
            if self._active:
                await asyncio.gather(*list(self._active), return_exceptions=True)

    async def _deliver_guarded(self, group: list[DueRecipient]) -> None:
        domain = group[0].domain
        gate = self._per_destination.setdefault(
            domain, asyncio.Semaphore(self.settings.per_destination)
        )
        try:
            async with self._slots, gate:
                await self._deliver(group)
        except Exception as exc:
            log.exception("delivery of %s to %s failed unexpectedly", group[0].message_id, domain)
            now = self._clock.now()
            try:
                await self._conclude(group, now, None, "", None, f"internal error: {exc}", own=True)
            except Exception:  # the store is down: housekeeping re-queues the stale claim
                log.exception("could not record the failure of %s", group[0].message_id)

    # --- one attempt -------------------------------------------------------------------

    async def _lookup_mx(self, domain: str) -> MxResult:
        cached = self._mx_cache.get(domain)
        if cached is not None and time.monotonic() - cached[0] < self.settings.mx_cache_seconds:
            return cached[1]
        try:
            result = await asyncio.wait_for(self._mx(domain), self.settings.dns_timeout)
        except TimeoutError:
            return MxResult(domain, MxOutcome.TEMPORARY, reason="MX lookup timed out")
        if result.outcome is MxOutcome.HOSTS:
            self._mx_cache[domain] = (time.monotonic(), result)
        return result

    async def _targets(self, host: str, source_ip: str) -> list[str]:
        """The addresses of ``host`` in the source IP's family (the host itself if a literal)."""
        if self._addresses is None or _is_ip(host):
            return [host]
        try:
            found = await asyncio.wait_for(self._addresses(host), self.settings.dns_timeout)
        except TimeoutError:
            return []
        if found.outcome is not AddressOutcome.FOUND:
            return []
        return list(found.ipv6 if ":" in source_ip else found.ipv4)

    async def _deliver(self, group: list[DueRecipient]) -> None:
        now = self._clock.now()
        if group[0].hold_until is not None:
            rerouted = await self._reroute(group, now)
            if rerouted is None:
                return
            group = rerouted
        first = group[0]
        mx = await self._lookup_mx(first.domain)
        if mx.permanent_failure:
            status = "5.1.10" if mx.outcome is MxOutcome.NULL_MX else "5.1.2"
            text = f"{status} {mx.outcome.value}: {mx.reason or first.domain}"
            await self._conclude(group, now, 550, "", None, text, own=True)
            return
        if mx.outcome is not MxOutcome.HOSTS or not mx.hosts:
            await self._conclude(group, now, None, "", None, f"MX lookup: {mx.reason}", own=True)
            return
        hosts = [h.host for h in mx.hosts]
        body = first.body
        if body is None:
            body = await self._db_call(self.queue.body, first.message_id)
        excluded: set[str] = set()
        last_failure = "no MX host answered"
        while True:
            ip = await self._picker.pick(first.pool, hosts[0], now, frozenset(excluded))
            if ip is None:
                self._alert_exhausted(first.pool, hosts[0], now)
                await self._conclude(
                    group, now, None, "", None,
                    f"pool {first.pool} has no eligible IP for {hosts[0]}",
                    own=True, counts=False,
                )  # fmt: skip
                return
            if ip not in self.settings.pool_ips.get(first.pool, frozenset()) or ip in excluded:
                log.error("picker offered %s for pool %s: refused (fail closed)", ip, first.pool)
                await self._conclude(
                    group, now, None, "", None, f"no usable IP in pool {first.pool}",
                    own=True, counts=False,
                )  # fmt: skip
                return
            self._resolve_exhausted(first.pool, now)
            try:
                outcome = await self._try_hosts(group, ip, hosts, body)
            except BindError as exc:
                log.error("source IP %s of pool %s cannot be bound: %s", ip, first.pool, exc)
                self._on_bind_failure(ip, first.pool, str(exc), now)
                excluded.add(ip)
                continue
            if outcome is None:
                await self._conclude(group, now, None, "", ip, last_failure)
                return
            await self._apply(group, outcome[0], now, outcome[1])
            return

    async def _try_hosts(
        self, group: list[DueRecipient], ip: str, hosts: list[str], body: bytes
    ) -> tuple[Sent | Failed, float] | None:
        """The first transaction that got a reply (or the last failure), with its duration."""
        first = group[0]
        last: tuple[Sent | Failed, float] | None = None
        for host in hosts:
            for target in await self._targets(host, ip):
                started = time.monotonic()
                try:
                    outcome = await asyncio.wait_for(
                        self._sender.send(
                            source_ip=ip,
                            host=target,
                            mail_from=self._envelope_sender(first.mail_from),
                            recipients=[r.address for r in group],
                            body=body,
                            smtputf8=first.smtputf8,
                        ),
                        self.settings.send_timeout,
                    )
                except TimeoutError:
                    outcome = Failed(target, ip, "transaction timed out")
                last = (outcome, (time.monotonic() - started) * 1000)
                if isinstance(outcome, Sent) or outcome.reply is not None:
                    return last
        return last

    async def _apply(
        self, group: list[DueRecipient], outcome: Sent | Failed, now: datetime, duration: float
    ) -> None:
        if isinstance(outcome, Failed):
            if outcome.reply is not None:
                self._report(outcome.reply, outcome.source_ip, outcome.host, now)
                code, text = outcome.reply.code, outcome.reply.text
            else:
                code, text = None, outcome.reason
            await self._conclude(
                group, now, code, outcome.host, outcome.source_ip, text, duration=duration
            )
            return
        outcomes: list[Outcome] = []
        bounced: list[FailedRecipient] = []
        reported: set[Reply] = set()
        for recipient in group:
            reply = outcome.replies.get(recipient.address, Reply(451, "4.3.0 no reply"))
            if reply not in reported:
                reported.add(reply)
                self._report(reply, outcome.source_ip, outcome.host, now)
            outcome_row, failed = self._judge(
                recipient, now, reply.code, reply.text, outcome.host, outcome.source_ip,
                duration=duration,
            )  # fmt: skip
            outcomes.append(outcome_row)
            if failed is not None:
                bounced.append(failed)
        await self._finish(group, outcomes, bounced, now)

    def _judge(
        self,
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
        failures = recipient.attempts + (1 if counts else 0)
        if code is None:
            verdict: Delivered | Retry | Bounce = self.settings.retry.after_failure(
                failures=max(failures, 1), arrived_at=recipient.arrived_at, now=now, reason=text
            )
        else:
            verdict = judge_reply(
                self.settings.retry, code=code, text=text, failures=max(failures, 1),
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

    async def _conclude(
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
    ) -> None:
        """The same verdict for every recipient of the group (no per-recipient replies)."""
        outcomes: list[Outcome] = []
        bounced: list[FailedRecipient] = []
        for recipient in group:
            outcome, failed = self._judge(
                recipient, now, code, text, host, ip, own=own, counts=counts, duration=duration
            )
            outcomes.append(outcome)
            if failed is not None:
                bounced.append(failed)
        await self._finish(group, outcomes, bounced, now)

    async def _finish(
        self,
        group: list[DueRecipient],
        outcomes: list[Outcome],
        bounced: list[FailedRecipient],
        now: datetime,
    ) -> None:
        first = group[0]
        # The DSN is queued before the bounce is recorded: a crash in between
        # repeats the attempt (and maybe the DSN), it never loses the DSN.
        if bounced and first.mail_from:
            await self._send_dsn(first, bounced, now)
        await self._record.submit(outcomes)
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
        original = await self._db_call(self.queue.body, first.message_id)
        dsn_id = f"{uuid.uuid4().hex}@{self.settings.hostname}"
        data = build_dsn(
            original=original,
            sender=first.mail_from,
            recipients=bounced,
            reporting_mta=self.settings.hostname,
            arrived_at=first.arrived_at,
            now=now,
            message_id=dsn_id,
        )
        submission = Submission(
            tenant=first.tenant,
            client_ip="127.0.0.1",
            helo=self.settings.hostname,
            mail_from="",
            recipients=(first.mail_from,),
            data=data,
            received_at=now,
            smtputf8=not first.mail_from.isascii(),
        )
        message = await self._queue_submission(submission, dsn_of=first.message_id)
        log.info("DSN %s for %s queued in pool %s", message.id, first.message_id, message.pool)

    # --- telling -----------------------------------------------------------------------

    def _report(self, reply: Reply, ip: str, host: str, now: datetime) -> None:
        enhanced, text = _split_enhanced(reply.text)
        try:
            self._on_reply(RemoteReply(reply.code, enhanced, text, ip, host, now))
        except Exception:
            log.exception("reply feedback failed")

    def _alert_exhausted(self, pool: str, destination: str, now: datetime) -> None:
        self._exhausted.add(pool)
        self._on_alert(
            Alert(
                kind=AlertKind.POOL_EXHAUSTED,
                severity=Severity.CRITICAL,
                key=alert_key(AlertKind.POOL_EXHAUSTED, pool),
                summary=f"pool {pool} has no eligible IP; its mail is held",
                at=now,
                details={"destination": destination},
                pool=pool,
            )
        )

    def _resolve_exhausted(self, pool: str, now: datetime) -> None:
        if pool not in self._exhausted:
            return
        self._exhausted.discard(pool)
        self._on_alert(
            Alert(
                kind=AlertKind.POOL_EXHAUSTED,
                severity=Severity.CRITICAL,
                key=alert_key(AlertKind.POOL_EXHAUSTED, pool),
                summary=f"pool {pool} has an eligible IP again",
                at=now,
                pool=pool,
                resolved=True,
            )
        )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

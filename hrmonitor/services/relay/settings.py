"""The relay's settings and the shapes of what it is given: routing, DNS, the sender, hooks.

The daemon (``app``) builds the real ones; tests and benchmarks pass fakes.
:func:`route_with` turns a :class:`~hrmonitor.services.relay.routing.Router` into
the relay's :class:`RouteFn`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, cast

from hrmonitor.adapters.smtp_out import Body, Failed, Sent
from hrmonitor.adapters.store.queue.repository import DueRecipient, Outcome, QueueWrite
from hrmonitor.core.alert import Alert
from hrmonitor.core.delivery.envelope import Submission
from hrmonitor.core.delivery.retry import RetryPolicy
from hrmonitor.core.feedback.replies import RemoteReply
from hrmonitor.core.mx import AddressResult, MxResult
from hrmonitor.core.routing.decide import RouteDecision
from hrmonitor.services.relay.routing import Router

T = TypeVar("T")


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
# A tenant's message was stored (and answered): classify it off the event loop (the
# bounce kind to store, or None) and tell whoever watches traffic (the surge watcher).
AcceptedFn = Callable[[Submission, RouteDecision], Awaitable[str | None]]
# One recipient's attempt concluded with a remote reply (never an own deferral).
OutcomeFn = Callable[[DueRecipient, Outcome], None]
# The envelope sender to put on the wire (BATV-tagged), from the stored one and now.
TagSenderFn = Callable[[str, datetime], str]
# Store outcome rows; returns once they are written (group-committed with others).
RecordFn = Callable[[list[Outcome]], Awaitable[None]]
# Write messages, bounce kinds and outcomes; returns once they are written (the relay's
# one group commit, ``group_commit.queue_writes``).
WriteFn = Callable[[Sequence[QueueWrite]], Awaitable[None]]


class StoreCall(Protocol):
    """Runs ``fn(*args)`` on the relay's one store thread and returns its result."""

    async def __call__(self, fn: Callable[..., T], /, *args: Any) -> T: ...


SimpleRouteFn = Callable[[Submission], Awaitable[RouteDecision]]


def keyword_route(route: RouteFn | SimpleRouteFn) -> RouteFn:
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
        body: Body,
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
    failure_log_seconds: float = 60.0  # a failing store: one log line per this, with a count
    keep_finished: timedelta = timedelta(days=7)  # delivered/bounced messages stay this long
    port: int = 25  # the MXes' port ([delivery] port), for the log's relay=host[ip]:port

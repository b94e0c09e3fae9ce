"""Which source IP of a pool sends the next attempt: asked fresh for every attempt.

The rotation side owns the candidates (states, warm-up caps, suspensions); the
pure core (core.selection) judges them; this is the thin service between them
that the queue runner calls. It can only ever answer with an IP of the pool it
was asked about, or None: the runner then holds the mail.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from hrmonitor.core.feedback.replies import destination_scope
from hrmonitor.core.model import Pool
from hrmonitor.core.rotation.selection import (
    IpCandidate,
    NoEligibleIp,
    choose_least_listed,
    choose_source_ip,
)

log = logging.getLogger(__name__)

CandidatesFn = Callable[[str, datetime], Awaitable[Sequence[IpCandidate]]]
# When no IP of a pool is eligible: (pool, provider, now, its candidates) -> an IP
# of that same pool to send from anyway, or None to hold the mail.
DegradedFn = Callable[[str, str, datetime, Sequence[IpCandidate]], str | None]
# The picker chose (pool, ip) at now: True to send from it, False if it has no room
# after all (a warming IP's reserved block is used up); the picker then tries another.
TakeFn = Callable[[str, str, datetime], bool]


class SourcePicker(Protocol):
    async def pick(
        self, pool: str, destination: str, now: datetime, exclude: frozenset[str]
    ) -> str | None:
        """An eligible IP of ``pool`` for ``destination`` (an MX host) now, or None."""
        ...


class PoolPicker:
    """A :class:`SourcePicker` over the pure selection core: asks for candidates every time.

    ``candidates(pool, now)`` returns the pool's IPs with their state, caps and
    suspensions as they are *now* (the rotation side owns them), so a change of
    eligibility is seen by the very next attempt. The round-robin cursor is kept
    per pool in memory (a restart only restarts the rotation).
    """

    def __init__(
        self,
        candidates: CandidatesFn,
        degraded: DegradedFn | None = None,
        take: TakeFn | None = None,
    ) -> None:
        self._candidates = candidates
        self._degraded = degraded
        self._take = take
        self._cursor: dict[str, int] = {}

    async def pick(
        self, pool: str, destination: str, now: datetime, exclude: frozenset[str]
    ) -> str | None:
        offered = [c for c in await self._candidates(pool, now) if c.ip not in exclude]
        # Suspensions and slow-downs from replies are per destination scope: the
        # provider, or the MX's own domain for everyone else (core.feedback).
        scope = destination_scope(destination)
        while True:
            chosen = choose_source_ip(offered, scope, now, self._cursor.get(pool, 0))
            if isinstance(chosen, NoEligibleIp):
                # Nothing eligible: a pool whose policy allows degraded delivery may still
                # name one of its own IPs; every other pool holds its mail.
                if self._degraded is None:
                    return None
                return self._degraded(pool, scope, now, offered)
            self._cursor[pool] = chosen.cursor
            if self._take is None or self._take(pool, chosen.ip, now):
                return chosen.ip
            offered = [c for c in offered if c.ip != chosen.ip]  # shrinks: the loop ends


def use_listed(
    pools: Mapping[str, Pool], listing_counts: Callable[[str], Mapping[str, int]]
) -> DegradedFn:
    """``when_exhausted = "use-listed"``: the least-listed IP of the same normal pool.

    ``selection.choose_least_listed`` refuses every pool whose policy is not
    use-listed (high-risk pools always defer), so this never widens a pool.
    """

    def degraded(
        pool: str, provider: str, now: datetime, offered: Sequence[IpCandidate]
    ) -> str | None:
        config = pools.get(pool)
        if config is None:
            return None
        chosen = choose_least_listed(config, offered, listing_counts(pool), provider, now)
        if isinstance(chosen, NoEligibleIp):
            return None
        log.warning("pool %s exhausted: sending from least-listed %s (use-listed)", pool, chosen.ip)
        return chosen.ip

    return degraded

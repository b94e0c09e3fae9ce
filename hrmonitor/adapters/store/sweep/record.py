"""Recording one DNSBL sweep: the latest answer per (ip, list), listing intervals, zone health.

Only a trustworthy answer moves anything (house rule 1): a Listed opens or extends
a listing interval; a Clean or an Info closes it. Error and Unknown answers, and
every answer from a zone whose health in that sweep is not ``ok``, leave listings
alone.

Info closes a listing because it is the list saying "not listed, here is a
reputation level": Mailspike answers 127.0.0.10-12 for its listed levels and
127.0.0.13-20 for the others, so an IP that improves from L3 to L4 gets an Info,
never an NXDOMAIN; were Info ignored, that listing would stay open for good and
the IP could never come back from retirement.

``answers.clean_since`` is the start of the unbroken run of Clean/Info answers for
an (ip, list). A Listed, Error or Unknown answer, or a sweep in which the zone is
unhealthy, breaks the run: a gap in the evidence is not evidence of cleanliness.

How it stays cheap (a sweep of 4,096 IPs x 10 lists is 40,960 answers, and a
``hrmonitor check`` pays for storing them before it exits):

- What is stored is read once, and only what a comparison needs: for the
  clean majority, (ip, list, status, whether a clean run is on); the JSON columns
  only for the few answers that are not clean.
- An answer that says what the stored one says only moves ``checked_at``: one
  ``UPDATE ... WHERE list_key = ? AND ip IN (...)`` per list and chunk.
- Changed answers are one executemany per shape; answers for new (ip, list)
  pairs are one executemany upsert; new listings one executemany insert.
- An open listing whose answer did not change only moves ``last_seen``. Its codes,
  tags and text are the answer's: both are written from the same answer in the
  same transaction, so an unchanged answer means an unchanged listing.

The reads are in :mod:`sweep_reads`, the statements in :mod:`sweep_writes`,
an answer's row and the tables in :mod:`sweep_rows`; this module decides
which answer takes which path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from hrmonitor.adapters.store.records import ListingChanges, ZoneHealthChange
from hrmonitor.adapters.store.sweep.reads import CLEAN_RUN, Stored, open_keys, stored_answers
from hrmonitor.adapters.store.sweep.rows import (
    answer_row,
    answers_table,
    execute_many,
    is_clean,
    key_matches,
    listings_table,
)
from hrmonitor.adapters.store.sweep.writes import (
    close_listing,
    extend_listing,
    extension,
    open_listings,
    record_health,
    touch,
    update_answer,
    upsert_answers,
)
from hrmonitor.core.model import Answer, Clean, Listed, ZoneHealth


def record_sweep(
    session: Session,
    answers: Sequence[Answer],
    health: Mapping[str, ZoneHealth],
    now: datetime,
    details: Mapping[str, str],
    *,
    zone_health: bool = True,
) -> ListingChanges:
    zones = record_health(session, health, details, now) if zone_health else []
    # A zone missing from ``health`` counts as unhealthy: fail closed.
    trusted = [a for a in answers if health.get(a.zone) == ZoneHealth.OK]
    distrusted = [
        {"k_ip": a.ip, "k_zone": a.zone} for a in answers if health.get(a.zone) != ZoneHealth.OK
    ]
    if distrusted:
        execute_many(
            session,
            update(answers_table()).where(key_matches(answers_table())).values(clean_since=None),
            distrusted,
        )
    # One read of what is stored for these IPs instead of one per answer: a sweep
    # holds SQLite's write lock, and the relay waits for it to commit mail. Two
    # nodes sweeping the same lists at once take turns: SQLite's BEGIN IMMEDIATE,
    # and on PostgreSQL the zone_health rows ``record_health`` has just updated
    # stay locked until commit, so the second sweep reads after the first wrote.
    ips = sorted({a.ip for a in trusted})
    stored = stored_answers(session, ips)
    listings_open = open_keys(session, ips)
    plan = _Plan(now)
    for answer in trusted:
        key = (answer.ip, answer.zone)
        before = stored.get(key)
        if before is CLEAN_RUN and type(answer) is Clean and key not in listings_open:
            plan.unchanged.setdefault(answer.ip, []).append(answer.zone)  # the common case
        else:
            plan.add(answer, before, key in listings_open)
    return plan.apply(session, zones)


# --- the plan of one sweep's writes -------------------------------------------------------


class _Plan:
    """The writes one sweep needs, gathered answer by answer, then applied in bulk."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.unchanged: dict[str, list[str]] = {}  # ip -> lists whose answer only gets checked_at
        self.changed: list[dict[str, Any]] = []
        self.new: list[dict[str, Any]] = []
        self.seen_again: dict[str, list[str]] = {}  # ip -> lists whose open listing gets last_seen
        self.relisted: list[dict[str, Any]] = []  # open listings whose fields changed
        self.opening: list[Listed] = []
        self.closing: list[tuple[str, str]] = []

    def add(self, answer: Answer, stored: Stored | None, listing_open: bool) -> None:
        unchanged = stored is not None and stored.same_as(answer)
        if unchanged:
            self.unchanged.setdefault(answer.ip, []).append(answer.zone)
        else:
            (self.new if stored is None else self.changed).append(answer_row(answer, self.now))
        if isinstance(answer, Listed):
            if not listing_open:
                self.opening.append(answer)
            elif unchanged:
                self.seen_again.setdefault(answer.ip, []).append(answer.zone)
            else:
                self.relisted.append(extension(answer, self.now))
        elif listing_open and is_clean(answer):
            self.closing.append((answer.ip, answer.zone))

    def apply(self, session: Session, zones: list[ZoneHealthChange]) -> ListingChanges:
        answers, listings = answers_table(), listings_table()
        for clean in (True, False):
            rows = [r for r in self.changed if (r["v_clean_since"] is not None) is clean]
            if rows:
                execute_many(session, update_answer(clean), rows)
        if self.new:
            execute_many(session, upsert_answers(session), self.new)
        touch(session, answers, self.unchanged, {"checked_at": self.now})
        touch(session, listings, self.seen_again, {"last_seen": self.now}, open_only=True)
        if self.relisted:
            execute_many(session, extend_listing(), self.relisted)
        listed = open_listings(session, self.opening, self.now)
        cleared = [
            c for ip, zone in self.closing if (c := close_listing(session, ip, zone, self.now))
        ]
        return ListingChanges(listed=tuple(listed), cleared=tuple(cleared), zones=tuple(zones))

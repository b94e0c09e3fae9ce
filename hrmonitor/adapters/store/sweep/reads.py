"""What a sweep reads before it writes: the stored answers, compactly, and the open listings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, not_, select
from sqlalchemy.orm import Session

from hrmonitor.adapters.store.sweep.rows import (
    CLEAN,
    answer_fields,
    answers_table,
    chunks,
    is_clean,
    listings_table,
)
from hrmonitor.core.model import Answer


@dataclass(frozen=True, slots=True)
class Stored:
    """The stored latest answer of one (ip, list), as far as a sweep compares it."""

    status: str
    codes: tuple[str, ...]
    tags: tuple[str, ...]
    severity: str | None
    txt: str
    clean_run: bool  # clean_since is set: the (ip, list) is in a run of clean answers

    def same_as(self, answer: Answer) -> bool:
        """The answer says what is stored, and the clean run goes on (or stays broken)."""
        if self.status != answer.status.value or self.clean_run != is_clean(answer):
            return False
        if self.status == CLEAN:
            return True  # a clean answer has no codes, tags or text
        fields = answer_fields(answer)
        return (
            self.codes == tuple(fields["codes"])
            and self.tags == tuple(fields["tags"])
            and self.severity == fields["severity"]
            and self.txt == fields["txt"]
        )


# The stored clean answer in a clean run: by far the most common row, shared.
CLEAN_RUN = Stored(CLEAN, (), (), None, "", clean_run=True)
_SEPARATOR = " "


def stored_answers(session: Session, ips: Sequence[str]) -> dict[tuple[str, str], Stored]:
    """What is stored for these IPs.

    Most answers are clean and in a clean run, and such an answer has no codes,
    tags or text: those come back as one row per IP with its lists joined by
    ``_SEPARATOR`` (a list key holding the separator would not be found, so its
    answer would take the slower path for new pairs, which is just as correct).
    Only the few others are read whole, JSON columns included.
    """
    table = answers_table()
    running = and_(table.c.status == CLEAN, table.c.clean_since.isnot(None))
    connection = session.connection()
    stored: dict[tuple[str, str], Stored] = {}
    for chunk in chunks(ips):
        joined = connection.execute(
            select(table.c.ip, func.aggregate_strings(table.c.list_key, _SEPARATOR))
            .where(table.c.ip.in_(chunk), running)
            .group_by(table.c.ip)
        )
        for ip, zones in joined:
            for zone in zones.split(_SEPARATOR):
                stored[(ip, zone)] = CLEAN_RUN
        others = connection.execute(
            select(
                table.c.ip,
                table.c.list_key,
                table.c.status,
                table.c.codes,
                table.c.tags,
                table.c.severity,
                table.c.txt,
                table.c.clean_since.isnot(None),
            ).where(table.c.ip.in_(chunk), not_(running))
        )
        for ip, zone, status, codes, tags, severity, txt, run in others:
            stored[(ip, zone)] = Stored(
                status, tuple(codes), tuple(tags), severity, txt, clean_run=bool(run)
            )
    return stored


def open_keys(session: Session, ips: Sequence[str]) -> set[tuple[str, str]]:
    table = listings_table()
    keys: set[tuple[str, str]] = set()
    for chunk in chunks(ips):
        rows = session.connection().execute(
            select(table.c.ip, table.c.list_key).where(
                table.c.ip.in_(chunk), table.c.cleared_at.is_(None)
            )
        )
        keys.update((ip, zone) for ip, zone in rows)
    return keys

"""A sweep's writes against a plain model of the rules, on random sequences of sweeps.

``record_sweep`` batches its writes (unchanged answers only move ``checked_at``,
the clean majority is read in a compact form, listings open in one statement);
this test holds the batched store to the rules as written in
``hrmonitor/adapters/store/sweep/record.py``'s docstring, kept here as a few lines of
dictionary code: the latest answer per (ip, list) with its clean run, and the
listing intervals with what each sweep opened and cleared. Runs on SQLite and
PostgreSQL. A list key holding a space is among the lists: the compact read joins
list keys with a space, and such a key must be just as correct.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hrmonitor.adapters.store import Store
from hrmonitor.core.model import (
    Answer,
    Clean,
    Error,
    Info,
    Listed,
    Severity,
    Unknown,
    ZoneHealth,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ZONES = ("zen", "bl", "odd list")
_examples = itertools.count()


def _answer(kind: str, ip: str, zone: str, variant: int) -> Answer:
    code = f"127.0.0.{2 + variant}"
    match kind:
        case "listed":
            return Listed(ip, zone, (code,), (f"T{variant}",), Severity.HIGH, f"txt {variant}")
        case "info":
            return Info(ip, zone, (f"127.0.0.{10 + variant}",), ("L",), f"info {variant}")
        case "error":
            return Error(ip, zone, ("127.255.255.254",), "error code")
        case "unknown":
            return Unknown(ip, zone, "timeout")
    return Clean(ip, zone)


KINDS = ["clean", "clean", "listed", "listed", "info", "error", "unknown"]
# A cell is the answer for one (ip, list) in one sweep: none, "again" (the same
# answer as in the sweep before, so unchanged answers and listings seen again are
# common, as they are in real sweeps), or an answer of some kind and variant.
cells = st.one_of(
    st.none(),
    st.just("again"),
    st.just("again"),
    st.tuples(st.sampled_from(KINDS), st.integers(0, 1)),
)
sweep_plans = st.lists(
    st.tuples(
        # per list: healthy, unhealthy, or missing from the health map
        st.lists(
            st.sampled_from(["ok", "ok", "ok", "ok", "dead", "missing"]), min_size=3, max_size=3
        ),
        st.lists(cells, min_size=6, max_size=6),  # 2 IPs x 3 lists
    ),
    min_size=1,
    max_size=8,
)


@dataclass
class Model:
    """The rules, plainly: what the store must hold after each sweep."""

    answers: dict[tuple[str, str], tuple[object, ...]] = field(default_factory=dict)
    runs: dict[tuple[str, str], datetime | None] = field(default_factory=dict)
    intervals: dict[tuple[str, str], list[list[object]]] = field(default_factory=dict)

    def sweep(
        self, answers: list[Answer], health: dict[str, ZoneHealth], now: datetime
    ) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        for zone, state in health.items():
            if state is not ZoneHealth.OK:
                for key in self.runs:
                    if key[1] == zone:
                        self.runs[key] = None
        opened: set[tuple[str, str]] = set()
        cleared: set[tuple[str, str]] = set()
        for answer in answers:
            key = (answer.ip, answer.zone)
            if health.get(answer.zone) is not ZoneHealth.OK:
                if key in self.runs:
                    self.runs[key] = None
                continue
            clean = isinstance(answer, Clean | Info)
            self.runs[key] = (self.runs.get(key) or now) if clean else None
            self.answers[key] = (str(answer.status), _codes(answer), now)
            intervals = self.intervals.setdefault(key, [])
            is_open = bool(intervals) and intervals[-1][2] is None
            if isinstance(answer, Listed):
                if is_open:
                    intervals[-1][1] = now
                    intervals[-1][3] = answer.codes
                else:
                    intervals.append([now, now, None, answer.codes])
                    opened.add(key)
            elif clean and is_open:
                intervals[-1][2] = now
                cleared.add(key)
        return opened, cleared


def _codes(answer: Answer) -> tuple[str, ...]:
    return tuple(getattr(answer, "codes", ()))


Cell = tuple[str, int] | None


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plans=sweep_plans)
def test_batched_sweeps_keep_what_the_rules_say(
    store: Store, plans: list[tuple[list[str], list[Cell | str]]]
) -> None:
    example = next(_examples)
    ips = [f"198.51.{example // 200}.{example % 200 + 1}", f"2001:db8::{example + 1:x}"]
    model = Model()
    previous: list[Cell] = [None] * 6
    for number, (states, planned) in enumerate(plans):
        cells: list[Cell] = [
            before if isinstance(cell, str) else cell  # "again"
            for cell, before in zip(planned, previous, strict=True)
        ]
        previous = cells
        now = T0 + timedelta(hours=example * 10 + number)
        health = {
            zone: ZoneHealth.OK if state == "ok" else ZoneHealth.DEAD
            for zone, state in zip(ZONES, states, strict=True)
            if state != "missing"
        }
        answers = [
            _answer(cell[0], ip, zone, cell[1])
            for (ip, zone), cell in zip(itertools.product(ips, ZONES), cells, strict=True)
            if cell is not None
        ]
        changes = store.record_sweep(answers, health, now)
        opened, cleared = model.sweep(answers, health, now)
        assert {(r.ip, r.zone) for r in changes.listed} == opened
        assert {(r.ip, r.zone) for r in changes.cleared} == cleared
        stored = {(a.ip, a.zone): a for ip in ips for a in store.latest_answers(ip)}
        assert {k: (str(a.status), a.codes, a.checked_at) for k, a in stored.items()} == (
            model.answers
        )
        assert {k: a.clean_since for k, a in stored.items()} == {
            k: model.runs.get(k) for k in model.answers
        }
        for ip in ips:
            history = {
                (r.zone, r.first_seen): [r.first_seen, r.last_seen, r.cleared_at, r.codes]
                for r in store.listing_history(ip)
            }
            expected = {
                (zone, interval[0]): interval
                for (owner, zone), intervals in model.intervals.items()
                if owner == ip
                for interval in intervals
            }
            assert history == expected

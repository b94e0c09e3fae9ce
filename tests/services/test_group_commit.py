"""The relay's group commit: writes that arrive during a write share the next one, across
lanes (messages, bounce kinds, outcomes); a failed mixed batch is retried lane by lane.

The write here is a recording stand-in held on an event, so that the test decides what
arrives while a write runs (no sleeps, no clock). ``test_acceptance_batching`` runs the
same group commit against a real store.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hrmonitor.services.relay.group_commit import GroupCommit

Item = tuple[str, str]  # (lane, name)


class Writes:
    """Records each write; the first one waits until ``release``; any item named
    ``bad`` makes a write fail."""

    def __init__(self) -> None:
        self.calls: list[list[Item]] = []
        self.release = asyncio.Event()

    async def __call__(self, batch: list[Item]) -> None:
        self.calls.append(batch)
        if len(self.calls) == 1:
            await self.release.wait()
        if any(name == "bad" for _, name in batch):
            raise RuntimeError("refused: " + ",".join(name for _, name in batch))


def _commit(writes: Writes, max_batch: int = 100) -> GroupCommit[Item]:
    return GroupCommit[Item](writes, max_batch, lane=lambda item: item[0])


async def _started(commit: GroupCommit[Item], items: list[Item]) -> asyncio.Task[None]:
    task = asyncio.create_task(commit.submit(items))
    await asyncio.sleep(0)  # one loop turn: the task submits (this is no timing wait)
    return task


async def test_writes_arriving_during_a_write_share_the_next_one_across_lanes() -> None:
    writes = Writes()
    commit = _commit(writes)
    first = await _started(commit, [("message", "m1")])
    await asyncio.sleep(0)  # the drain task starts the first write and waits in it
    later = [
        await _started(commit, [("message", "m2"), ("message", "m3")]),
        await _started(commit, [("kind", "k1")]),
        await _started(commit, [("outcome", "o1"), ("outcome", "o2")]),
        await _started(commit, [("message", "m4")]),
    ]
    assert writes.calls == [[("message", "m1")]]
    writes.release.set()
    await asyncio.gather(first, *later)
    assert writes.calls == [
        [("message", "m1")],
        [
            ("message", "m2"),
            ("message", "m3"),
            ("kind", "k1"),
            ("outcome", "o1"),
            ("outcome", "o2"),
            ("message", "m4"),
        ],
    ]


async def test_a_failed_mixed_batch_is_retried_lane_by_lane() -> None:
    """One lane's failure (a message the store refuses) is not the others' waiters'."""
    writes = Writes()
    commit = _commit(writes)
    first = await _started(commit, [("outcome", "o0")])
    await asyncio.sleep(0)
    bad = await _started(commit, [("message", "bad")])
    good = await _started(commit, [("message", "m2")])
    kind = await _started(commit, [("kind", "k1")])
    outcome = await _started(commit, [("outcome", "o1")])
    writes.release.set()
    await asyncio.gather(first, kind, outcome)  # these succeed
    for task in (bad, good):  # the messages' lane was written together and failed together
        with pytest.raises(RuntimeError, match="refused: bad,m2"):
            await task
    assert writes.calls == [
        [("outcome", "o0")],
        [("message", "bad"), ("message", "m2"), ("kind", "k1"), ("outcome", "o1")],
        [("message", "bad"), ("message", "m2")],
        [("kind", "k1")],
        [("outcome", "o1")],
    ]


async def test_a_failed_batch_of_one_lane_is_not_written_again() -> None:
    writes = Writes()
    commit = _commit(writes)
    first = await _started(commit, [("message", "m1")])
    await asyncio.sleep(0)
    tasks = [
        await _started(commit, [("message", "m2")]),
        await _started(commit, [("message", "bad")]),
    ]
    writes.release.set()
    await first
    for task in tasks:
        with pytest.raises(RuntimeError):
            await task
    assert writes.calls == [[("message", "m1")], [("message", "m2"), ("message", "bad")]]


async def test_a_batch_stops_at_max_batch_items() -> None:
    writes = Writes()
    commit = _commit(writes, max_batch=3)
    first = await _started(commit, [("message", "m1")])
    await asyncio.sleep(0)
    later = [await _started(commit, [("outcome", f"o{n}"), ("outcome", f"p{n}")]) for n in range(3)]
    writes.release.set()
    await asyncio.gather(first, *later)
    assert [len(call) for call in writes.calls] == [1, 2, 2, 2]


submissions = st.lists(
    st.tuples(
        st.sampled_from(["message", "kind", "outcome"]),  # one lane per submit
        st.lists(st.booleans(), min_size=1, max_size=3),  # True: an item the store refuses
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(submissions, st.integers(min_value=1, max_value=6))
def test_every_waiter_learns_whether_its_own_items_were_written(
    drawn: list[tuple[str, list[bool]]], max_batch: int
) -> None:
    """Whatever arrives together: a waiter told "written" has every item in one write
    that succeeded; a waiter told of a failure has none in a write that succeeded; no
    item is in two writes that succeeded."""
    batches = [
        [(lane, "bad" if refused else f"ok{i}.{j}") for j, refused in enumerate(flags)]
        for i, (lane, flags) in enumerate(drawn)
    ]

    async def scenario() -> None:
        writes = Writes()
        writes.release.set()
        commit = _commit(writes, max_batch=max_batch)
        tasks = [asyncio.create_task(commit.submit(items)) for items in batches]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        succeeded = [call for call in writes.calls if not any(n == "bad" for _, n in call)]
        for items, result in zip(batches, results, strict=True):
            written = [call for call in succeeded if all(item in call for item in items)]
            if result is None:
                assert len(written) == 1, (items, writes.calls)
            else:
                assert isinstance(result, RuntimeError)
                assert any(name == "bad" for _, name in items) or any(
                    all(item in call for item in items) for call in writes.calls
                )
                assert not any(item in call for call in succeeded for item in items)
        for items in batches:
            for item in items:
                if item[1] != "bad":
                    assert sum(item in call for call in succeeded) <= 1

    asyncio.run(scenario())

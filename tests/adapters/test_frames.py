"""Frames between the daemon and its workers: any stream cut anywhere reads back the same."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.adapters.frames import (
    MAX_META,
    PREFIX,
    Frame,
    FrameReader,
    HandoffError,
    ToDaemon,
    frame,
    log_from,
    log_meta,
)

frames_strategy = st.lists(
    st.builds(
        Frame,
        kind=st.integers(0, 255),
        request=st.integers(0, 2**32 - 1),
        meta=st.binary(max_size=64),
        body=st.binary(max_size=300),
    ),
    max_size=8,
)


def encode(frames: list[Frame]) -> bytes:
    return b"".join(frame(f.kind, f.request, f.meta, len(f.body)) + f.body for f in frames)


@given(frames_strategy, st.lists(st.integers(1, 400), max_size=20))
def test_frames_read_back_whatever_the_stream_is_cut_into(
    frames: list[Frame], cuts: list[int]
) -> None:
    stream = encode(frames)
    reader = FrameReader(max_body=1000)
    got: list[Frame] = []
    at = 0
    for size in cuts:
        got += reader.feed(stream[at : at + size])
        at += size
    got += reader.feed(stream[at:])
    assert got == frames


def test_a_body_over_the_limit_is_refused_before_it_is_read() -> None:
    reader = FrameReader(max_body=100)
    with pytest.raises(HandoffError, match="over the limit"):
        reader.feed(frame(1, 1, b"", 101))


def test_a_meta_over_the_limit_is_refused() -> None:
    with pytest.raises(HandoffError):
        FrameReader(max_body=0).feed(PREFIX.pack(1, 1, MAX_META + 1, 0))


def test_a_body_is_handed_on_as_the_buffer_it_was_read_into() -> None:
    """One allocation of the announced size: getvalue() gives that buffer, no copy."""
    body = bytes(range(256)) * 4096  # 1 MiB
    reader = FrameReader(max_body=len(body))
    stream = frame(7, 9, b"{}", len(body)) + body
    got: list[Frame] = []
    for at in range(0, len(stream), 65536):
        got += reader.feed(stream[at : at + 65536])
    [one] = got
    assert (one.kind, one.request, one.meta) == (7, 9, b"{}")
    assert one.body == body
    assert type(one.body) is bytes


def test_a_workers_log_record_is_written_by_the_daemons_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[bytes] = []
    handler = ToDaemon(lambda record, text: sent.append(log_meta(record, text)))
    worker_log = logging.getLogger("hrmonitor.test.worker")
    worker_log.addHandler(handler)
    worker_log.propagate = False
    try:
        worker_log.warning("relaying denied for %s", "192.0.2.7")
    finally:
        worker_log.removeHandler(handler)
        worker_log.propagate = True
    [meta] = sent
    with caplog.at_level(logging.INFO):
        log_from(meta)
    [record] = caplog.records
    assert (record.name, record.levelno) == ("hrmonitor.test.worker", logging.WARNING)
    assert record.getMessage() == "relaying denied for 192.0.2.7"

"""DATA is written in pieces: the same bytes as aiosmtplib's data(), a bounded cost.

aiosmtplib's ``data()`` normalises line ends, doubles leading periods and
appends the terminator, each a copy of the whole message, before writing it:
4.67x a 10 MB message at its peak. ``data_pieces`` does the same a piece of
whole lines at a time, and ``DataPieces`` for a message read in slices (a
stored one, as the queue runner sends it); these tests hold both to
aiosmtplib's bytes (the oracle) for any body, slicing and piece size, the send
of 10 MB (a separate process, tracemalloc) to a constant, and a message that
cannot be read to its end to never reaching the MX.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given, settings
from hypothesis import strategies as st

from hrmonitor.adapters.smtp_out import (
    Body,
    Connections,
    DataPieces,
    OutboundSettings,
    Sent,
    data_pieces,
)
from hrmonitor.errors import StoreError
from tests.fixtures.smtp_sink import SmtpSink


def _as_aiosmtplib_sends(body: bytes) -> bytes:
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(body)) + b".\r\n"


@settings(max_examples=400, deadline=None)
@given(
    body=st.lists(
        st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"..", b"x" * 9, b"\r\n.\r\n"])
    ).map(b"".join),
    size=st.integers(min_value=1, max_value=12),
)
def test_pieces_joined_are_what_aiosmtplib_sends_for_any_body_and_piece_size(
    body: bytes, size: int
) -> None:
    pieces = list(data_pieces(body, size))
    assert b"".join(pieces) == _as_aiosmtplib_sends(body)


LINE_BITS = st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"..", b"x" * 9, b"\r\n.\r\n"])


@settings(max_examples=400, deadline=None)
@given(
    body=st.lists(LINE_BITS).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=200)),
    size=st.integers(min_value=1, max_value=12),
)
def test_a_body_fed_in_slices_cut_anywhere_gives_what_aiosmtplib_sends(
    body: bytes, cuts: list[int], size: int
) -> None:
    # A stored message is read in slices whose ends fall anywhere: inside a CRLF,
    # before a period that begins a line, in the middle of a line longer than a piece.
    bounds = sorted({0, len(body), *(c for c in cuts if c < len(body))})
    pieces = DataPieces(size)
    fed = [p for start, end in itertools.pairwise(bounds) for p in pieces.feed(body[start:end])]
    assert b"".join([*fed, *pieces.end()]) == _as_aiosmtplib_sends(body)
    assert all(p.endswith(b"\n") for p in fed)  # whole lines until the end: no CRLF split


def test_pieces_are_whole_lines_of_about_the_piece_size() -> None:
    body = b"".join(b".line %06d\r\n" % i for i in range(10_000))  # 14 bytes a line
    pieces = list(data_pieces(body, 1000))
    assert b"".join(pieces) == _as_aiosmtplib_sends(body)
    assert pieces[-1] == b".\r\n"
    assert all(p.endswith(b"\r\n") and len(p) <= 1000 * 2 for p in pieces)
    assert len(pieces) > 100


def test_an_empty_body_and_one_without_a_final_line_end() -> None:
    assert b"".join(data_pieces(b"")) == b"\r\n.\r\n" == _as_aiosmtplib_sends(b"")
    assert b"".join(data_pieces(b"a\r\n.b")) == b"a\r\n..b\r\n.\r\n"


ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, json, sys, tracemalloc
from hrmonitor.adapters.smtp_out import Connections, OutboundSettings, Sent

def body():
    return b"".join(b"%s line %08d of a large message, padded to about 76 characters..\\r\\n"
                    % (b"." if i % 7 == 0 else b"x", i) for i in range(150_000))

async def main():
    host, port = sys.argv[1], int(sys.argv[2])
    conns = Connections(OutboundSettings(port=port, helo_name="relay.test",
                                         connect_timeout=5, command_timeout=60))
    async def send(data):
        outcome = await conns.send(source_ip="127.0.0.10", host=host, mail_from="a@contoso.test",
                                   recipients=["b@rcpt.test"], body=data)
        assert isinstance(outcome, Sent) and outcome.replies["b@rcpt.test"].code == 250, outcome
    await send(b"Subject: warm\\r\\n\\r\\nwarm\\r\\n")  # the session, imports
    data = body()
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    await send(data)
    peak = tracemalloc.get_traced_memory()[1] - baseline
    await conns.close()
    print(json.dumps({"size": len(data), "peak": peak / len(data)}))

asyncio.run(main())
"""


def _sliced(data: bytes, step: int, fail_after: int | None = None) -> Body:
    """``data`` read ``step`` bytes at a time; the queue fails after ``fail_after`` slices."""

    async def read() -> AsyncIterator[bytes]:
        for n, offset in enumerate(range(0, len(data), step)):
            if n == fail_after:
                raise StoreError("could not read message m1: disk I/O error")
            yield data[offset : offset + step]

    return Body(size=len(data), eight_bit=not data.isascii(), read=read)


SLICED = b"".join(b"%s line %05d of a message read in slices\r\n" % (b"." * (i % 3), i)
                  for i in range(5000))  # fmt: skip


async def test_a_message_read_in_slices_arrives_byte_for_byte(smtp_sink: SmtpSink) -> None:
    conns = Connections(OutboundSettings(port=smtp_sink.port, helo_name="relay.test"))
    try:
        outcome = await conns.send(
            source_ip="127.0.0.10", host=smtp_sink.host, mail_from="a@contoso.test",
            recipients=["b@rcpt.test", "c@rcpt.test"], body=_sliced(SLICED, 7777),
        )  # fmt: skip
    finally:
        await conns.close()
    assert isinstance(outcome, Sent), outcome
    assert {r.code for r in outcome.replies.values()} == {250}
    assert smtp_sink.messages[-1].data == SLICED  # unstuffed by the MX: the same bytes


async def test_a_message_that_cannot_be_read_to_its_end_never_reaches_the_mx(
    smtp_sink: SmtpSink,
) -> None:
    # Half of it is on the wire when the queue fails: the connection is closed before
    # the terminator (the MX discards what it had), and the error is the caller's.
    conns = Connections(OutboundSettings(port=smtp_sink.port, helo_name="relay.test"))
    try:
        with pytest.raises(StoreError, match="disk I/O error"):
            await conns.send(
                source_ip="127.0.0.10", host=smtp_sink.host, mail_from="a@contoso.test",
                recipients=["b@rcpt.test"], body=_sliced(SLICED, 7777, fail_after=10),
            )  # fmt: skip
        # The next message goes on a new connection and arrives whole.
        outcome = await conns.send(
            source_ip="127.0.0.10", host=smtp_sink.host, mail_from="a@contoso.test",
            recipients=["b@rcpt.test"], body=_sliced(SLICED, 7777),
        )  # fmt: skip
    finally:
        await conns.close()
    assert isinstance(outcome, Sent), outcome
    assert [m.data for m in smtp_sink.messages] == [SLICED]


async def test_a_message_shorter_than_its_size_is_not_sent(smtp_sink: SmtpSink) -> None:
    conns = Connections(OutboundSettings(port=smtp_sink.port, helo_name="relay.test"))
    short = _sliced(SLICED, 7777)
    try:
        outcome = await conns.send(
            source_ip="127.0.0.10", host=smtp_sink.host, mail_from="a@contoso.test",
            recipients=["b@rcpt.test"], body=Body(short.size + 1, False, short.read),
        )  # fmt: skip
    finally:
        await conns.close()
    assert not isinstance(outcome, Sent)
    assert outcome.reply is None
    assert "not" in outcome.reason, outcome
    assert smtp_sink.messages == []


async def test_sending_10mb_holds_a_piece_not_copies_of_the_message(smtp_sink: SmtpSink) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, smtp_sink.host, str(smtp_sink.port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    result = json.loads(out)
    expected = b"".join(
        b"%s line %08d of a large message, padded to about 76 characters..\r\n"
        % (b"." if i % 7 == 0 else b"x", i)
        for i in range(150_000)
    )
    assert result["size"] == len(expected) > 10_000_000
    assert smtp_sink.messages[-1].data == expected  # unstuffed by the MX: the same bytes
    # Through aiosmtplib's data(): 4.67x (line ends, doubled periods, terminator, each a
    # copy of the whole, and the transport's buffer). In pieces: a piece or two.
    assert result["peak"] < 0.2, result

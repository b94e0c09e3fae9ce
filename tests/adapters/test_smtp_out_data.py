"""DATA is written in pieces: the same bytes as aiosmtplib's data(), a bounded cost.

aiosmtplib's ``data()`` normalises line ends, doubles leading periods and
appends the terminator, each a copy of the whole message, before writing it:
4.67x a 10 MB message at its peak. ``data_pieces`` does the same a piece of
whole lines at a time; these tests hold it to aiosmtplib's bytes (the oracle)
for any cut, and the send of 10 MB (a separate process, tracemalloc) to a
constant.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given, settings
from hypothesis import strategies as st

from hrmonitor.adapters.smtp_out import data_pieces
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

"""DATA read a piece at a time (DataReader) is DATA read whole, however it is cut."""

from __future__ import annotations

import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.delivery.line_ends import DataReader, normalise
from tests.fixtures.hostile_mime import nested_multipart

_PIECES = [b"\r", b"\n", b"\r\n", b"a", b"bb", b".", b"..", b"\r\n.\r\n", b"\r\n.", b"\0"]
_DATA = st.lists(st.sampled_from(_PIECES), max_size=60).map(b"".join)


def whole(stream: bytes, size_limit: int, max_line: int) -> tuple[object, bytes] | None:
    """The rules applied to the whole stream at once (the listener's former way)."""
    data = b"\r\n" + stream
    end = data.find(b"\r\n.\r\n")
    if end < 0:
        return None
    after = data[end + 5 :]
    if size_limit and end > size_limit:
        return "too_big", after
    body = data[2 : end + 2]
    if body.startswith(b"."):
        body = body[1:]
    body = normalise(body.replace(b"\r\n.", b"\r\n"))
    if body and max(map(len, body.split(b"\r\n"))) > max_line:
        return "too_long", after
    return body, after


def pieces(stream: bytes, size_limit: int, max_line: int, cuts: list[int]) -> object:
    reader = DataReader(b"P:", size_limit=size_limit, max_line_length=max_line)
    position = 0
    for cut in [*sorted(cuts), len(stream)]:
        chunk = stream[position:cut]
        position = max(position, cut)
        if not chunk:
            continue
        after = reader.feed(chunk)
        if after is not None:
            after += stream[position:]
            if reader.too_big or (size_limit and reader.size > size_limit):
                return "too_big", after
            if reader.too_long:
                return "too_long", after
            message = reader.message()
            assert message.startswith(b"P:")
            return message[2:], after
    return None


@given(
    _DATA,
    st.sampled_from([0, 8, 30]),
    st.integers(min_value=1, max_value=12),
    st.lists(st.integers(min_value=0, max_value=200), max_size=12),
)
def test_pieces_read_as_the_whole(
    data: bytes, size_limit: int, max_line: int, cuts: list[int]
) -> None:
    stream = data + b"\r\n.\r\nQUIT\r\n"
    assert pieces(stream, size_limit, max_line, cuts) == whole(stream, size_limit, max_line)


@given(_DATA, st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_no_end_no_message(data: bytes, cuts: list[int]) -> None:
    stream = data.replace(b"\r\n.\r\n", b"").replace(b"\r\n.\r", b"")
    if stream.startswith(b".\r\n") or stream.endswith(b"\r\n."):
        return
    if whole(stream, 0, 1000) is None:
        assert pieces(stream, 0, 1000, cuts) is None


def test_the_message_is_the_buffer_not_a_copy() -> None:
    """1 MB of the hostile shape, read in 64 KB chunks: the traced peak stays near 1x.

    The buffer holds the message once (BytesIO grows in place; getvalue hands
    over the buffer itself); the rest is one chunk's worth of work at a time.
    """
    message = nested_multipart(15_000)
    stream = message + b".\r\n"
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    tracemalloc.start()
    try:
        reader = DataReader(b"Received: x\r\n", size_limit=0, max_line_length=998)
        for chunk in chunks:
            after = reader.feed(chunk)
        stored = reader.message()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after == b""
    assert stored == b"Received: x\r\n" + message
    assert peak < 1.5 * len(message), f"peak {peak / len(message):.2f}x the message"

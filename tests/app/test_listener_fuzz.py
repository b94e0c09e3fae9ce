"""Fuzzing the listener of ``hrmonitor run``: random and mutated SMTP dialogues, hostile MIME.

Each dialogue starts from a valid transaction and is mutated (bare CR/LF/NUL,
garbage and over-long lines, commands dropped, repeated, swapped or
interleaved, relay tricks, pipelining, disconnects, smuggling sequences) and
carries a hostile message (deep or wide MIME, broken boundaries, huge
headers, bounce-like reports, binary). Every recipient of dialogue N starts
with ``fzN``, so a ``250 ... queued as`` seen in dialogue N must become a
message at the MX for an ``fzN`` recipient.

Asserted: the daemon never crashes or logs a traceback, no acknowledged
message is lost, and a second, idle connection answers NOOP throughout.

Bounded: ``HRMONITOR_FUZZ_SECONDS`` of dialogues (default 15);
``HRMONITOR_FUZZ_SEED`` picks the dialogues (default fixed, so CI is
repeatable; set it to explore).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import re
from collections import Counter

import pytest

from tests.fixtures.daemon_lab import HIGH, RelayLab
from tests.fixtures.rbldnsd import Rbldnsd
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

BUDGET = float(os.environ.get("HRMONITOR_FUZZ_SECONDS", "15"))
SEED = int(os.environ.get("HRMONITOR_FUZZ_SEED", "20261207"))
CLIENTS = ("127.0.0.5", "127.0.0.5", "127.0.0.5", "127.0.0.1", "127.0.0.99")  # tenant,
# trusted filter (its score headers count), stranger (relaying denied)
ACK = b"250 2.0.0 Ok: queued as"

# --- hostile messages -------------------------------------------------------------------


def _nested(rng: random.Random, depth: int) -> bytes:
    head, tail = [], []
    for level in range(depth):
        boundary = f"b{level}".encode()
        head.append(b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n')
        head.append(b"--" + boundary + b"\r\n")
        if rng.random() < 0.8:  # leave some closing boundaries out
            tail.append(b"\r\n--" + boundary + b"--\r\n")
    return b"".join(head) + b"Content-Type: text/plain\r\n\r\ndeep\r\n" + b"".join(reversed(tail))


def _wide(rng: random.Random, parts: int) -> bytes:
    out = [b'Content-Type: multipart/mixed; boundary="w"\r\n\r\n']
    for n in range(parts):
        kind = rng.choice([b"text/plain", b"application/octet-stream", b"message/rfc822"])
        out.append(b"--w\r\nContent-Type: " + kind + b"\r\n")
        out.append(b"Content-Transfer-Encoding: base64\r\n\r\n" if rng.random() < 0.3 else b"\r\n")
        out.append(b"part %d\r\n" % n)
    if rng.random() < 0.5:
        out.append(b"--w--\r\n")
    return b"".join(out)


def _report(rng: random.Random) -> bytes:
    status = rng.choice([b"5.1.1", b"4.7.1", b"9.9.9", b"", b"5." * 200])
    return (
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        b"--r\r\nContent-Type: text/plain\r\n\r\n550 5.7.1 blocked using zen.spamhaus.org\r\n"
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; "
        + bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        + b"\r\nAction: failed\r\nStatus: "
        + status
        + b"\r\n--r\r\nContent-Type: message/rfc822\r\n\r\nSubject: original\r\n\r\nhi\r\n"
    )


SMUGGLING = [
    b"..\r\n.x\r\n",
    b"a\n.\nMAIL FROM:<x@evil.test>\n",
    b"a\r\n.\nRCPT TO:<x@evil.test>\r\n",
    b"a\r.\r\nMAIL FROM:<x@evil.test>\r\n",
]


def message(rng: random.Random, marker: str) -> bytes:
    headers = [b"From: a@contoso.test", b"To: " + marker.encode() + b"@rcpt.test"]
    headers.append(
        b"Subject: " + rng.choice([b"hi", b"=?utf-8?b?" + b"A" * 300 + b"?=", b"\xff\xfe"])
    )
    if rng.random() < 0.2:
        headers.append(b"X-Spam-Score: " + rng.choice([b"-99", b"9.9", b"nan", b"1e308"]))
    if rng.random() < 0.1:
        headers.extend(b"X-Many-%d: v" % n for n in range(rng.randrange(100, 2000)))
    if rng.random() < 0.1:
        headers.append(b"X-Folded: a" + b"\r\n b" * rng.randrange(10, 500))
    if rng.random() < 0.1:
        headers.append(b"no colon in this header line")
    kind = rng.randrange(8)
    if kind == 0:
        body = _nested(rng, rng.randrange(1, 80))
    elif kind == 1:
        body = _wide(rng, rng.randrange(1, 600))
    elif kind == 2:
        body = _report(rng)
    elif kind == 3:
        body = b"\r\n" + bytes(rng.randrange(256) for _ in range(rng.randrange(2000)))
    elif kind == 4:  # dot lines and smuggling attempts inside the content
        body = b"\r\n" + rng.choice(
            [
                b"..\r\n.x\r\n",
                b"a\n.\nMAIL FROM:<x@evil.test>\n",
                b"a\r\n.\nRCPT TO:<x@evil.test>\r\n",
            ]
        )
    elif kind == 5:
        body = b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(os.urandom(3000))
    elif kind == 6:
        body = b"\r\n" + b"x" * rng.choice([997, 998, 999, 5000]) + b"\r\n"
    else:
        body = b"\r\nplain body\r\n"
    return b"\r\n".join(headers) + b"\r\n" + body


# --- mutated dialogues ------------------------------------------------------------------

_EXTRA = [
    b"RSET", b"NOOP", b"HELP", b"VRFY postmaster", b"EXPN list", b"STARTTLS", b"BDAT 10 LAST",
    b"AUTH PLAIN AGFhAGI=", b"AUTH LOGIN", b"MAIL FROM:<>", b"HELO x", b"DATA", b"QUIT",
    b"RCPT TO:<@relay.test:%s@rcpt.test>", b"RCPT TO:<%s%%evil.test@rcpt.test>",
    b'RCPT TO:<"%s@evil.test"@rcpt.test>', b"RCPT TO:<%s@[127.0.0.50]>",
    b"RCPT TO:<%s+extra@rcpt.test> NOTIFY=NEVER", b"MAIL FROM:<a@contoso.test> SIZE=999999999",
    b"MAIL FROM:<a@contoso.test> BODY=8BITMIME SMTPUTF8", b"RCPT TO:<%s\xc3\xa9@rcpt.test>",
]  # fmt: skip


def _poke(rng: random.Random, step: bytes) -> bytes:
    at = rng.randrange(len(step) + 1)
    return step[:at] + rng.choice([b"\r", b"\n", b"\0", b"\r\n", b"\xff", b" " * 300]) + step[at:]


def dialogue(rng: random.Random, marker: str) -> list[bytes]:
    m = marker.encode()
    steps = [
        b"EHLO fuzz.test\r\n",
        rng.choice(
            [b"MAIL FROM:<a@contoso.test>\r\n", b"MAIL FROM:<>\r\n", b"MAIL FROM:<a@x.test>\r\n"]
        ),
        b"RCPT TO:<" + m + b"@rcpt.test>\r\n",
        b"DATA\r\n",
        message(rng, marker) + b"\r\n.\r\n",
        b"QUIT\r\n",
    ]
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 5])):
        at = rng.randrange(len(steps))
        mutation = rng.randrange(9)
        if mutation == 0:
            steps[at] = _poke(rng, steps[at])
        elif mutation == 1:
            steps.insert(at, steps[at])
        elif mutation == 2 and len(steps) > 1:
            del steps[at]
        elif mutation == 3:
            other = rng.randrange(len(steps))
            steps[at], steps[other] = steps[other], steps[at]
        elif mutation == 4:
            extra = rng.choice(_EXTRA)
            steps.insert(at, (extra % m if b"%s" in extra else extra) + b"\r\n")
        elif mutation == 5:
            steps[at] = steps[at].rstrip(b"\r\n")  # runs into the next step
        elif mutation == 6:
            steps.insert(at, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))))
        elif mutation == 7:
            steps[at] = steps[at][:1].lower() + steps[at][1:].swapcase()
        else:
            steps.insert(at, b"NOOP " + b"x" * rng.choice([600, 1000, 5000]) + b"\r\n")
    return steps


async def run_dialogue(port: int, rng: random.Random, marker: str) -> int:
    """Play one dialogue; how many messages the daemon acknowledged in it."""
    source = rng.choice(CLIENTS)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 10
        )
    except (OSError, TimeoutError):
        return 0
    transcript = bytearray()
    pipelined = rng.random() < 0.2
    hang_up = rng.random() < 0.1
    try:
        steps = dialogue(rng, marker)
        if hang_up:
            steps = steps[: rng.randrange(len(steps))]
        for step in steps:
            writer.write(step)
            await writer.drain()
            if not pipelined:  # wait a little for the answer; stragglers are read at the end
                with contextlib.suppress(TimeoutError):
                    transcript += await asyncio.wait_for(reader.readline(), 0.5)
        if not hang_up:
            writer.write(b"\r\n.\r\nQUIT\r\n")  # end whatever DATA is open, then leave
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    while chunk := await reader.read(65536):
                        transcript += chunk
    except (ConnectionError, OSError):
        pass  # the daemon may hang up on a hostile client; that is no failure
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return transcript.count(ACK)


async def test_fuzzed_dialogues_never_crash_the_listener_or_lose_an_acknowledged_message(
    rbldnsd: Rbldnsd,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    for ip in HIGH:  # a clean high-risk pool, so every acknowledged message can leave
        rbldnsd.delist_ip(ip)
    daemon = await relay_lab.start()
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", daemon.port, local_addr=("127.0.0.6", 0)
    )
    assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"220")

    async def still_answers(when: str) -> None:
        writer.write(b"NOOP\r\n")
        await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), 10)
        assert reply.startswith(b"250"), f"NOOP on the idle connection {when}: {reply!r}"

    rng = random.Random(SEED)
    acked: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BUDGET
    played = 0
    try:
        while loop.time() < deadline:
            played += 1
            marker = f"fz{played}"
            acked[marker] = await run_dialogue(daemon.port, rng, marker)
            assert daemon.process.poll() is None, f"crashed at dialogue {played} (seed {SEED})"
            if played % 3 == 0:
                await still_answers(f"after dialogue {played} (seed {SEED})")
        await still_answers("at the end")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    assert played >= 10
    assert sum(acked.values()) >= 3, "too few messages got through to prove anything"

    def delivered(marker: str) -> int:
        mine = re.compile(rf"{marker}(?!\d)", re.IGNORECASE)
        return sum(any(mine.match(r) for r in m.rcpts) for m in smtp_sink.messages)

    async def all_delivered() -> None:
        while any(delivered(marker) < count for marker, count in acked.items()):  # noqa: ASYNC110 (the sink's list)
            await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(all_delivered(), 60)
    except TimeoutError:
        lost = {m: c for m, c in acked.items() if delivered(m) < c}
        pytest.fail(f"acknowledged but never delivered (seed {SEED}): {lost}")
    log_text = daemon.log.read_text()
    assert "Traceback" not in log_text, log_text[log_text.index("Traceback") - 2000 :][:6000]
    assert await asyncio.to_thread(daemon.stop) == 0  # the sink needs this loop meanwhile

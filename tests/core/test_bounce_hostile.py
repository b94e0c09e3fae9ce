"""Hostile MIME (issue 13, item 1): the reader's bounds, and ``hrmonitor bounce`` as a process.

The reader keeps one decoded copy of the message, scans each nesting level
once for its exact delimiter lines, and stops at MAX_DEPTH levels, MAX_PARTS
parts and MAX_HEAD characters of a header block, marking what it did not read
as ``truncated``. What is past a bound is classified as what it is (ordinary
mail here) without being descended into.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hrmonitor.core.bounce.classify import BounceKind, classify_message
from hrmonitor.core.bounce.mime import (
    MAX_DEPTH,
    MAX_FIELDS,
    MAX_HEAD,
    MAX_PARTS,
    Part,
    parse_message,
)
from tests.fixtures.hostile_mime import nested_multipart

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bounces"


def depth(part: Part) -> int:
    return 1 + max((depth(child) for child in part.parts), default=0)


def test_nesting_stops_at_max_depth_and_says_so() -> None:
    root = parse_message(nested_multipart(15_000), max_bytes=2 * 1024 * 1024)
    assert depth(root) == MAX_DEPTH + 1
    assert root.truncated
    deepest = root
    while deepest.parts:
        [deepest] = deepest.parts
    assert deepest.truncated
    assert deepest.content_type == "multipart/mixed"


def test_a_delimiter_is_a_whole_line_not_a_prefix() -> None:
    # "--b10" while reading the parts of boundary "b1": content, not a delimiter.
    raw = (
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\n\r\nfirst\r\n--b10\r\nstill first\r\n"
        b"--b1  \r\n\r\nsecond\r\n--b1--\r\nepilogue\r\n"
    )
    root = parse_message(raw, max_bytes=1024)
    assert [part.body for part in root.parts] == ["first\n--b10\nstill first", "second"]
    assert not root.truncated


def test_sibling_parts_stop_at_max_parts() -> None:
    body = b"".join(b"--s\r\n\r\npart %d\r\n" % n for n in range(10_000))
    raw = b'Content-Type: multipart/mixed; boundary="s"\r\n\r\n' + body + b"--s--\r\n"
    root = parse_message(raw, max_bytes=len(raw))
    assert len(root.parts) == MAX_PARTS
    assert root.truncated


def test_a_huge_header_block_is_cut_and_its_fields_capped() -> None:
    header = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"y" * 40) for n in range(40_000))
    raw = b"From: a@contoso.test\r\n" + header + b"\r\nbody\r\n"
    root = parse_message(raw, max_bytes=len(raw))
    assert len(root.fields) <= MAX_FIELDS
    assert root.truncated
    assert root.start <= MAX_HEAD + 1
    assert root.field("from") == "a@contoso.test"


def test_a_dsn_inside_bounded_nesting_is_still_read() -> None:
    dsn = (CORPUS / "own" / "postfix_autosubmitted_01.eml").read_bytes()
    assert classify_message(dsn).kind is BounceKind.DSN
    assert classify_message(nested_multipart(15_000)).kind is BounceKind.NONE


def run_bounce(file: Path, output: Path) -> tuple[int, int]:
    """``hrmonitor bounce --json FILE`` as a process: its exit status and peak RSS in bytes."""
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "hrmonitor", "bounce", "--json", str(file)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
            return process.returncode, usage.ru_maxrss * 1024  # Linux reports KiB
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise AssertionError(f"hrmonitor bounce {file.name} ran for over 120 s")


def test_hrmonitor_bounce_on_the_nested_message_ends_with_bounded_memory(tmp_path: Path) -> None:
    small = CORPUS / "own" / "postfix_autosubmitted_01.eml"
    code, baseline = run_bounce(small, tmp_path / "small.json")
    assert code == 0
    hostile = tmp_path / "nested.eml"
    hostile.write_bytes(nested_multipart(15_000))
    size = hostile.stat().st_size
    code, peak = run_bounce(hostile, tmp_path / "nested.json")
    assert code == 0, (tmp_path / "nested.json").read_text()[-2000:]
    [result] = json.loads((tmp_path / "nested.json").read_text())
    assert result["kind"] == "none"
    # The file as read, one decoded copy and a transient one: well under 8x (the old
    # reader took 8 GB on this file).
    assert peak - baseline < 8 * size, (peak - baseline) / size


def test_classifying_costs_a_constant_not_a_multiple_of_the_message() -> None:
    """The parse reads at most MAX_BYTES: its latin-1 text and LF-only form are held at
    once, so it allocates about 2 x MAX_BYTES however large the message (issue 13)."""
    import tracemalloc

    from hrmonitor.core.bounce.classify import MAX_BYTES

    for message in (nested_multipart(15_000), nested_multipart(15_000) * 4):
        tracemalloc.start()
        try:
            classify_message(message)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 2.5 * MAX_BYTES, f"{peak / MAX_BYTES:.2f} x MAX_BYTES"
        assert peak < 0.6 * len(message), f"{peak / len(message):.2f}x the message"

"""Bare CR and bare LF: normalised in DATA, refused in commands."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.delivery.line_ends import command_problem, normalise

# Bytes rich in line-end characters, so the interesting cases are common.
_DATA = st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b".", b"\0", b":"])).map(b"".join)


@given(_DATA)
def test_normalised_data_has_only_crlf_line_ends(data: bytes) -> None:
    result = normalise(data)
    assert b"\r" not in result.replace(b"\r\n", b"")
    assert b"\n" not in result.replace(b"\r\n", b"")
    assert normalise(result) == result


@given(_DATA)
def test_normalised_lines_are_the_lines_the_next_hop_will_see(data: bytes) -> None:
    """The next hop (aiosmtplib, or an MX that normalises) splits at CRLF, CR and LF alike."""
    assert re.split(rb"\r\n|\r|\n", data) == normalise(data).split(b"\r\n")


def test_crlf_only_data_is_returned_as_it_is() -> None:
    data = b"Subject: x\r\n\r\nbody\r\n"
    assert normalise(data) is data


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"EHLO x\r\n", None),
        (b"EHLO x", None),  # no line end at all: aiosmtpd's own business (EOF)
        (b"EHLO x\n", "bare LF"),
        (b"EHLO x\rX-Injected: yes\r\n", "bare CR or LF"),
        (b"EHLO x\r\r\n", "bare CR or LF"),
        (b"MAIL FROM:<a@b>\nRCPT\r\n", "bare CR or LF"),
        (b"EHLO x\0y\r\n", "NUL"),
    ],
)
def test_command_problems(line: bytes, problem: str | None) -> None:
    assert command_problem(line) == problem

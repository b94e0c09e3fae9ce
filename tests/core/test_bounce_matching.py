"""The bounce matchers' shortcuts give the answers of the plain searches they replace.

``BouncePatterns.reasons`` tries only the entries filed under the text's own
three-character pieces (``required_start``); ``failed_command`` and
``remote_mta`` look for the words a regex needs before running it, and
``remote_mta`` matches ASCII text lower-cased instead of with ``re.I``. Each is
checked here against the plain search, on text built from the patterns' own
pieces so that matches are frequent.
"""

from __future__ import annotations

import re
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hrmonitor.adapters.rule_files import load_bounce_patterns
from hrmonitor.config.files import RuleKind, shipped_rules
from hrmonitor.core.bounce import command
from hrmonitor.core.bounce.reason import INDEXED_TEXT, Reason, required_start

PATTERNS = load_bounce_patterns(shipped_rules(RuleKind.BOUNCE))
QUICK = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_ENTRIES = sorted(
    {
        text
        for pattern in PATTERNS.patterns
        for any_of in (pattern.match, pattern.exclude)
        if any_of is not None
        for text in (*any_of.phrases, *(regex.pattern for regex in any_of.regexes))
    }
)
# Pieces of the shipped entries (regex syntax dropped), words MTAs use, and noise.
_PIECES = sorted(
    {piece for entry in _ENTRIES for piece in re.split(r"[\\()\[\]?*+{}|^$]+", entry) if piece}
    | {
        " ", "\n", "550 5.1.1 ", "451 4.7.1 ", "host mx.example.com[192.0.2.1] said: ",
        "in reply to RCPT TO command", ">>> DATA", "<<< 554 denied", "MAIL FROM", "after ",
        "Remote Server ", "KELVIN \u212a ", "\u017fpam ", "\u017ferver ", "mail.example.org: ",
        "user@example.com",
    }
)  # fmt: skip
texts = st.lists(st.sampled_from(_PIECES) | st.text(max_size=5), max_size=12).map("".join)


@QUICK
@given(texts)
def test_reasons_through_the_index_are_every_pattern_searched(text: str) -> None:
    assert PATTERNS.reasons(text) == PATTERNS.searched(text)


def test_the_corpus_diagnostics_match_with_and_without_the_index() -> None:
    for entry in _ENTRIES:
        text = f"550 5.0.0 {re.sub(r'[^a-z ]', ' ', entry)} and {entry}"
        assert PATTERNS.reasons(text) == PATTERNS.searched(text), entry
    assert INDEXED_TEXT < 10_000  # a longer text takes the plain path: also exact
    long_text = "x " * 5_000 + "mailbox is full"
    assert PATTERNS.reasons(long_text) == PATTERNS.searched(long_text) == {Reason.MAILBOXFULL}


_TOKENS = ["a", "b", "c", "ab", "|", "(", ")", "(?:", "[", "]", "[^", "\\", "\\|", "\\(",
           "?", "*", "+", "{1,2}", "^", "$", ".", " "]  # fmt: skip


def _compiles(pattern: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "possible nested set" and kin: not worth generating
        try:
            re.compile(pattern)
        except (re.error, FutureWarning, DeprecationWarning):
            return False
    return True


@QUICK
@given(
    st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=8).map("".join).filter(_compiles),
    st.text(alphabet="abc |()[]\\.^$", max_size=12),
)
def test_a_required_start_begins_every_match(pattern: str, text: str) -> None:
    match = re.compile(pattern).search(text)
    if match is not None:
        assert match.group(0).startswith(required_start(pattern)), (pattern, text)


def test_required_starts_of_expressions() -> None:
    assert required_start("no such (?:user|mailbox)") == "no such "
    assert required_start("mailbox .{0,40}full") == "mailbox "
    assert required_start("over ?quota") == "over"
    assert required_start("ab+") == "a"
    assert required_start("a|b") == ""
    assert required_start("x[|]") == "x"
    assert required_start("x[]|]y|z") == ""
    assert required_start("x\\|y") == "x"
    assert required_start("x\\\\|y") == ""
    assert required_start("(?:a)bc") == ""


def _failed_command_plain(text: str) -> str:
    text = text[: command.MAX_SCAN]
    lowered = text.lower()
    for _, pattern, name in command._PHRASES:
        if pattern.search(lowered) is not None:
            return name
    said = ""
    for match in command._TRANSCRIPT.finditer(text):
        if match.group(1) is None:
            if said:
                return said
            continue
        said = command._normal(match.group(1).upper())
    if said:
        return said
    named = {command._normal(match.group(1)) for match in command._CAPITALS.finditer(text)}
    return next((name for name in command._LATEST if name in named), "")


def _remote_mta_plain(text: str) -> str:
    match = command._REMOTE.search(text[: command.MAX_SCAN])
    return match.group(1).lower().rstrip(".") if match is not None else ""


@QUICK
@given(texts)
def test_command_and_remote_mta_shortcuts_answer_as_the_plain_search(text: str) -> None:
    for variant in (text, text.lower(), text.upper(), text.title()):
        assert command.failed_command(variant) == _failed_command_plain(variant)
        assert command.remote_mta(variant) == _remote_mta_plain(variant)


def test_remote_mta_folds_case_as_re_ignorecase_does() -> None:
    # U+017F LATIN SMALL LETTER LONG S is an "s" to re.I, but str.lower() keeps it
    folded = "\u017ferver mail.example.org said: 550"
    assert command.remote_mta(folded) == _remote_mta_plain(folded) == "mail.example.org"
    assert command.remote_mta("MX mx.example.com said") == "mx.example.com"


def test_each_phrase_names_its_command() -> None:
    for needles, _, _ in command._PHRASES:
        assert all(needle == needle.lower() for needle in needles)
    assert command.failed_command("550 no (in reply to rcpt to command)") == "RCPT"
    assert command.failed_command("after end of data: 554 rejected") == "DATA"
    assert command.failed_command("during the smtp greeting") == "CONN"
    assert command.failed_command("rcpt to:<a@example.com> 550 no") == "RCPT"

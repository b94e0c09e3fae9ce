"""rules/bounce.toml: the shipped file is valid, and bad data is refused naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrmonitor.adapters.rule_files import load_bounce_patterns, validate_bounce_rule_files
from hrmonitor.config.files import RuleKind, shipped_rules
from hrmonitor.core.bounce.reason import Reason
from hrmonitor.core.bounce.rules import parse_bounce_patterns
from hrmonitor.errors import RuleError

SHIPPED_RULES = shipped_rules(RuleKind.BOUNCE)


def test_shipped_rules_are_valid_and_cover_the_failure_reasons() -> None:
    patterns = load_bounce_patterns(SHIPPED_RULES)
    covered = {pattern.reason for pattern in patterns.patterns}
    assert {Reason.BLOCKED, Reason.USERUNKNOWN, Reason.MAILBOXFULL, Reason.SPAMDETECTED} <= covered
    assert validate_bounce_rule_files([SHIPPED_RULES]) == []


def test_escapes_and_bounded_wildcards_are_accepted() -> None:
    """Upper-case escapes (\\S, \\D) and .{0,80} are fine; literal .* is fine when escaped."""
    patterns = parse_bounce_patterns(
        {"pattern": [{"reason": "userunknown", "match": [r"user \S{1,80} unknown", r"a\.*b"]}]},
        file="t.toml",
    )
    assert patterns.match("User Bob unknown") is Reason.USERUNKNOWN
    assert patterns.match("a...b") is Reason.USERUNKNOWN


def test_addresses_in_the_text_name_no_reason() -> None:
    """A mailbox called quota@ or spam@ says nothing about why delivery failed."""
    patterns = load_bounce_patterns(SHIPPED_RULES)
    assert patterns.match("delivery to quota@example.com failed") is None
    assert patterns.match("<spam@example.com>: host said 550") is None


def test_every_matching_reason_is_found_and_exclusions_rule_one_out() -> None:
    # The order of the tables no longer decides: the rules of phase and context do
    # (core.bounce.reason); a table's exclude rules its reason out.
    patterns = parse_bounce_patterns(
        {
            "pattern": [
                {"reason": "blocked", "match": ["spamhaus"]},
                {"reason": "spamdetected", "match": ["spam"], "exclude": ["spamhaus"]},
            ],
            "command": [{"command": "RCPT", "match": ["does not like recipient"]}],
        },
        file="t.toml",
    )
    assert patterns.reasons("listed at SPAMHAUS") == {Reason.BLOCKED}
    assert patterns.reasons("looks like spam") == {Reason.SPAMDETECTED}
    assert patterns.reasons("all good") == frozenset()
    assert patterns.command("192.0.2.1 does not like recipient.") == "RCPT"
    assert patterns.command("all good") == ""


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        ({"patterns": []}, "patterns", "unknown key"),
        ({"version": 2}, "version", "unsupported version"),
        ({"pattern": {"reason": "blocked"}}, "pattern", "array of tables"),
        ({"pattern": [{"reason": "nosuch", "match": ["x"]}]}, "pattern[0].reason", "taxonomy"),
        ({"pattern": [{"reason": "blocked", "match": []}]}, "pattern[0].match", "non-empty"),
        ({"pattern": [{"reason": "blocked", "match": ["("]}]}, "pattern[0].match[0]", "bad regex"),
        ({"pattern": [{"reason": "blocked", "match": ["x"], "when": 1}]}, "pattern[0].when", ""),
        ({"pattern": [{"reason": "blocked", "match": ["Spam"]}]}, "pattern[0].match[0]", "lower"),
        ({"pattern": [{"reason": "blocked", "match": [".*"]}]}, "pattern[0].match[0]", "unbounded"),
        ({"pattern": [{"reason": "blocked", "match": [".+"]}]}, "pattern[0].match[0]", "unbounded"),
    ],
)
def test_invalid_rules_raise_rule_error_naming_file_and_key(
    data: dict[str, object], key: str, problem: str
) -> None:
    with pytest.raises(RuleError) as caught:
        parse_bounce_patterns(data, file="rules/bounce.toml")
    assert caught.value.file == "rules/bounce.toml"
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_validator_reports_unreadable_and_malformed_files(tmp_path: Path) -> None:
    broken = tmp_path / "bounce.toml"
    broken.write_text("pattern = [ {", encoding="utf-8")
    missing = tmp_path / "missing.toml"
    problems = validate_bounce_rule_files([broken, missing])
    assert len(problems) == 2
    assert problems[0].startswith(f"{broken}: not valid TOML")
    assert problems[1].startswith(f"{missing}: cannot read")

"""rules/bounce.toml: validating and parsing the diagnostic-text patterns (pure).

The file is read by ``adapters.rule_files.load_bounce_patterns``, which the
daemon, ``hrmonitor bounce`` and ``hrmonitor rules check`` use. Errors name the
file, key and problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hrmonitor.core.bounce.reason import AnyOf, BouncePattern, BouncePatterns, Reason
from hrmonitor.errors import RuleError

COMMANDS = ("CONN", "EHLO", "STARTTLS", "MAIL", "RCPT", "DATA")
_ESCAPE = re.compile(r"\\.")
_UNBOUNDED = re.compile(r"(?<!\\)\.[*+]")
# Characters with a meaning in a regular expression: a pattern without any is a
# plain phrase (most of rules/bounce.toml's are), looked for as text.
_SPECIAL = frozenset(".^$*+?{}[]\\|()")


def parse_bounce_patterns(data: Mapping[str, object], *, file: str) -> BouncePatterns:
    """Validate rules/bounce.toml data (already parsed from TOML) into BouncePatterns.

    Shape: ``version = 1`` and ``[[pattern]]`` tables with ``reason`` (a taxonomy
    name), ``match`` (a list of lower-case regular expressions) and optionally
    ``exclude`` (expressions that rule the reason out where ``match`` found it).
    Several tables may name the same reason; the order of the tables does not
    matter (the rules of phase and context in ``reason`` decide between reasons).
    ``[[command]]`` tables name replies that only one SMTP command produces
    (``command``, ``match``): phase evidence where a bounce does not say.
    Raises RuleError(file, key, problem) for anything else.
    """
    unknown = sorted(set(data) - {"version", "pattern", "command"})
    if unknown:
        raise RuleError(file, unknown[0], "unknown key")
    if data.get("version", 1) != 1:
        raise RuleError(file, "version", f"unsupported version {data.get('version')!r}")
    entries = data.get("pattern", [])
    if not isinstance(entries, list):
        raise RuleError(file, "pattern", "must be an array of tables ([[pattern]])")
    built: list[BouncePattern] = []
    for index, entry in enumerate(entries):
        key = f"pattern[{index}]"
        if not isinstance(entry, Mapping):
            raise RuleError(file, key, "must be a table")
        extra = sorted(set(entry) - {"reason", "match", "exclude", "comment"})
        if extra:
            raise RuleError(file, f"{key}.{extra[0]}", "unknown key")
        reason = entry.get("reason")
        if reason not in Reason.__members__.values():
            raise RuleError(file, f"{key}.reason", f"{reason!r} is not a reason in the taxonomy")
        match = _any_of(entry.get("match"), file, f"{key}.match")
        exclude = None
        if "exclude" in entry:
            exclude = _any_of(entry.get("exclude"), file, f"{key}.exclude")
        built.append(BouncePattern(reason=Reason(str(reason)), match=match, exclude=exclude))
    return BouncePatterns(tuple(built), _commands(data.get("command", []), file))


def _commands(entries: object, file: str) -> tuple[tuple[str, AnyOf], ...]:
    """``[[command]]`` tables: ``command`` (an SMTP command) and ``match`` (replies to it)."""
    if not isinstance(entries, list):
        raise RuleError(file, "command", "must be an array of tables ([[command]])")
    built = []
    for index, entry in enumerate(entries):
        key = f"command[{index}]"
        if not isinstance(entry, Mapping):
            raise RuleError(file, key, "must be a table")
        extra = sorted(set(entry) - {"command", "match", "comment"})
        if extra:
            raise RuleError(file, f"{key}.{extra[0]}", "unknown key")
        command = entry.get("command")
        if command not in COMMANDS:
            raise RuleError(
                file, f"{key}.command", f"{command!r} is not one of {', '.join(COMMANDS)}"
            )
        built.append((str(command), _any_of(entry.get("match"), file, f"{key}.match")))
    return tuple(built)


def _any_of(matches: object, file: str, key: str) -> AnyOf:
    """A non-empty list of lower-case, bounded regular expressions: plain phrases
    (no character with a meaning in a regex) are kept as text, the rest compiled."""
    if not isinstance(matches, list) or not matches:
        raise RuleError(file, key, "must be a non-empty list of regular expressions")
    phrases: list[str] = []
    regexes: list[re.Pattern[str]] = []
    for position, text in enumerate(matches):
        if not isinstance(text, str) or not text:
            raise RuleError(file, f"{key}[{position}]", "must be a non-empty string")
        if any(char.isupper() for char in _ESCAPE.sub("", text)):
            problem = "write patterns in lower case: text is lower-cased before matching"
            raise RuleError(file, f"{key}[{position}]", problem)
        if _UNBOUNDED.search(text):
            problem = "unbounded .* or .+ (write .{0,80}): diagnostics are matched in bulk"
            raise RuleError(file, f"{key}[{position}]", problem)
        if _SPECIAL.isdisjoint(text):
            phrases.append(text)
            continue
        try:
            regexes.append(re.compile(text))
        except re.error as error:
            raise RuleError(file, f"{key}[{position}]", f"bad regex: {error}") from None
    return AnyOf(tuple(phrases), tuple(regexes))

"""rules/bounce.toml: validating and parsing the diagnostic-text patterns (pure).

The file is read by ``adapters.rule_files.load_bounce_patterns``, which the
daemon, ``hrmonitor bounce`` and ``hrmonitor rules check`` use. Errors name the
file, key and problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hrmonitor.core.bounce.reason import BouncePattern, BouncePatterns, Reason
from hrmonitor.errors import RuleError

_ESCAPE = re.compile(r"\\.")
_UNBOUNDED = re.compile(r"(?<!\\)\.[*+]")


def parse_bounce_patterns(data: Mapping[str, object], *, file: str) -> BouncePatterns:
    """Validate rules/bounce.toml data (already parsed from TOML) into BouncePatterns.

    Shape: ``version = 1`` and ``[[pattern]]`` tables with ``reason`` (a taxonomy
    name) and ``match`` (a list of case-insensitive regular expressions).
    Raises RuleError(file, key, problem) for anything else.
    """
    unknown = sorted(set(data) - {"version", "pattern"})
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
        extra = sorted(set(entry) - {"reason", "match", "comment"})
        if extra:
            raise RuleError(file, f"{key}.{extra[0]}", "unknown key")
        reason = entry.get("reason")
        if reason not in Reason.__members__.values():
            raise RuleError(file, f"{key}.reason", f"{reason!r} is not a reason in the taxonomy")
        matches = entry.get("match")
        if not isinstance(matches, list) or not matches:
            raise RuleError(file, f"{key}.match", "must be a non-empty list of regular expressions")
        for position, text in enumerate(matches):
            if not isinstance(text, str) or not text:
                raise RuleError(file, f"{key}.match[{position}]", "must be a non-empty string")
            if any(char.isupper() for char in _ESCAPE.sub("", text)):
                problem = "write patterns in lower case: text is lower-cased before matching"
                raise RuleError(file, f"{key}.match[{position}]", problem)
            if _UNBOUNDED.search(text):
                problem = "unbounded .* or .+ (write .{0,80}): diagnostics are matched in bulk"
                raise RuleError(file, f"{key}.match[{position}]", problem)
            try:
                re.compile(text)
            except re.error as error:
                raise RuleError(file, f"{key}.match[{position}]", f"bad regex: {error}") from None
        regex = re.compile("|".join(f"(?:{text})" for text in matches))
        built.append(BouncePattern(reason=Reason(str(reason)), regex=regex))
    return BouncePatterns(tuple(built))

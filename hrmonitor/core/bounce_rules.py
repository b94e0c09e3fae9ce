"""rules/bounce.toml: reading, validating and parsing the diagnostic-text patterns.

Read through ``core.rule_files`` like every rule file; the daemon and ``hrmonitor bounce``
load it through ``load_bounce_patterns``, and ``hrmonitor rules check`` calls
``validate_bounce_rule_files``. Errors name the file, key and problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from hrmonitor.core.bounce_reason import BouncePattern, BouncePatterns, Reason
from hrmonitor.core.rule_files import read_rule_file
from hrmonitor.errors import RuleError

# The shipped file, found from the package (editable installs, tests, the CLI default).
SHIPPED_RULES = Path(__file__).resolve().parents[2] / "rules" / "bounce.toml"

_ESCAPE = re.compile(r"\\.")
_UNBOUNDED = re.compile(r"(?<!\\)\.[*+]")


def load_bounce_patterns(path: Path) -> BouncePatterns:
    """Read and validate a bounce pattern file. Raises RuleError(file, key, problem)."""
    return parse_bounce_patterns(read_rule_file(path), file=str(path))


def validate_bounce_rule_files(paths: Sequence[Path]) -> list[str]:
    """Problems found in bounce pattern files, one message each (empty: all valid)."""
    problems: list[str] = []
    for path in paths:
        try:
            load_bounce_patterns(path)
        except RuleError as error:
            problems.append(str(error))
    return problems


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

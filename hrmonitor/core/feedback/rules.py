"""Remote-reply pattern files (``rules/feedback.toml``): format, validation, layering.

A file holds ``[patterns.<name>]`` tables; later files override earlier ones
pattern by pattern, and ``enabled = false`` switches one off::

    [patterns.yahoo-bl]
    provider = "yahoo"        # google | yahoo | microsoft | aol | generic | "*" (any)
    code = "^553$"            # regexes, searched case-insensitively; every one given
    enhanced = "^5\\.7\\.1$"  # must match (code as digits, enhanced status, reply text)
    text = "\\[BL"
    action = "pause"          # pause | slow | recheck
    duration = "2h"           # pause and slow: counted from the reply's time
    threshold = 5             # optional: only after this many matches ...
    window = "1h"             # ... within this window (per source IP and provider)

Aliases accepted for ``provider``: gmail -> google; outlook, hotmail -> microsoft.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from hrmonitor.core.units import parse_duration
from hrmonitor.errors import RuleError

PROVIDERS = ("google", "yahoo", "microsoft", "aol", "generic")
ANY_PROVIDER = "*"
_ALIASES = {"gmail": "google", "outlook": "microsoft", "hotmail": "microsoft"}
_KEYS = {
    "provider",
    "code",
    "enhanced",
    "text",
    "action",
    "duration",
    "threshold",
    "window",
    "description",
    "enabled",
}


class FeedbackAction(StrEnum):
    PAUSE = "pause"  # suspend the source IP for that provider
    SLOW = "slow"  # a reputation deferral: send to that provider more slowly for a while
    RECHECK = "recheck"  # the reply names a blocklist: re-check the source IP now


@dataclass(frozen=True, slots=True)
class FeedbackRule:
    name: str
    file: str
    provider: str
    action: FeedbackAction
    code: re.Pattern[str] | None = None
    enhanced: re.Pattern[str] | None = None
    text: re.Pattern[str] | None = None
    duration: timedelta = timedelta(0)
    threshold: int = 1
    window: timedelta | None = None
    description: str = ""


def _regex(table: Mapping[str, object], key: str, file: str, where: str) -> re.Pattern[str] | None:
    if key not in table:
        return None
    value = table[key]
    if not isinstance(value, str) or not value:
        raise RuleError(file, f"{where}.{key}", "must be a non-empty regular expression")
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise RuleError(file, f"{where}.{key}", f"bad regular expression: {exc}") from None


def _duration(table: Mapping[str, object], key: str, file: str, where: str) -> timedelta:
    value = table[key]
    try:
        result = parse_duration(value) if isinstance(value, str) else None
    except ValueError as exc:
        raise RuleError(file, f"{where}.{key}", str(exc)) from None
    if result is None or result <= timedelta(0):
        raise RuleError(file, f"{where}.{key}", "must be a positive duration such as '2h'")
    return result


def parse_pattern(name: str, table: Mapping[str, object], file: str) -> FeedbackRule:
    where = f"patterns.{name}"
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise RuleError(file, f"{where}.{unknown[0]}", "unknown key")
    provider = table.get("provider", ANY_PROVIDER)
    if not isinstance(provider, str):
        raise RuleError(file, f"{where}.provider", "must be a string")
    provider = _ALIASES.get(provider.lower(), provider.lower())
    if provider not in (*PROVIDERS, ANY_PROVIDER):
        choices = ", ".join((*PROVIDERS, ANY_PROVIDER))
        raise RuleError(file, f"{where}.provider", f"one of {choices}")
    try:
        action = FeedbackAction(str(table.get("action", "")))
    except ValueError:
        choices = ", ".join(a.value for a in FeedbackAction)
        raise RuleError(file, f"{where}.action", f"one of {choices}") from None
    code, enhanced, text = (_regex(table, k, file, where) for k in ("code", "enhanced", "text"))
    if code is None and enhanced is None and text is None:
        raise RuleError(file, where, "a pattern needs at least one of code, enhanced, text")
    duration = timedelta(0)
    if action is not FeedbackAction.RECHECK:
        if "duration" not in table:
            raise RuleError(file, f"{where}.duration", f"required for action {action}")
        duration = _duration(table, "duration", file, where)
    threshold = table.get("threshold", 1)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise RuleError(file, f"{where}.threshold", "must be a whole number >= 1")
    window = _duration(table, "window", file, where) if "window" in table else None
    if threshold > 1 and window is None:
        raise RuleError(file, f"{where}.window", "required when threshold > 1")
    description = table.get("description", "")
    if not isinstance(description, str):
        raise RuleError(file, f"{where}.description", "must be a string")
    return FeedbackRule(
        name, file, provider, action, code, enhanced, text, duration, threshold, window, description
    )


def layer_feedback_files(
    files: Sequence[tuple[str, Mapping[str, object]]],
) -> tuple[FeedbackRule, ...]:
    """Layer parsed pattern files (name, TOML data), first to last; RuleError names the key."""
    layered: dict[str, FeedbackRule | None] = {}
    for file, data in files:
        unknown = sorted(set(data) - {"patterns"})
        if unknown:
            raise RuleError(file, unknown[0], "unknown key (a file holds [patterns.<name>])")
        patterns = data.get("patterns", {})
        if not isinstance(patterns, Mapping):
            raise RuleError(file, "patterns", "must be a table of [patterns.<name>] tables")
        for name, table in patterns.items():
            if not isinstance(table, Mapping):
                raise RuleError(file, f"patterns.{name}", "must be a table")
            enabled = table.get("enabled", True)
            if not isinstance(enabled, bool):
                raise RuleError(file, f"patterns.{name}.enabled", "must be true or false")
            if not enabled and set(table) <= {"enabled", "description"}:
                if name not in layered:  # a typo would leave the real pattern on
                    known = ", ".join(layered) or "none"
                    problem = f"switches off no pattern of an earlier file (known: {known})"
                    raise RuleError(file, f"patterns.{name}.enabled", problem)
                layered[name] = None
                continue
            rule = parse_pattern(name, table, file)
            layered[name] = rule if enabled else None
    return tuple(rule for rule in layered.values() if rule is not None)

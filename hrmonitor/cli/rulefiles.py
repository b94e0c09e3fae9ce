"""``hrmonitor rules check``: which validator reads which rule file.

A file named on the command line is recognised by its name (``*dnsbl*``,
``*routing*``, ``*feedback*``, ``*bounce*``) or else by its top-level tables.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

from hrmonitor.adapters.dns.dnsbl.engine import validate_catalogue_files
from hrmonitor.adapters.rule_files import (
    feedback_file_problems,
    routing_file_problems,
    validate_bounce_rule_files,
)
from hrmonitor.config.files import RuleKind, shipped_rules
from hrmonitor.config.loading import Config

Validator = Callable[[Sequence[Path]], list[str]]

VALIDATORS: dict[str, Validator] = {
    "dnsbl": lambda paths: validate_catalogue_files(list(paths)),
    # an operator's file is read as the daemon reads it: layered over the shipped one
    "routing": lambda paths: routing_file_problems([shipped_rules(RuleKind.ROUTING), *paths]),
    "feedback": lambda paths: feedback_file_problems([shipped_rules(RuleKind.FEEDBACK), *paths]),
    "bounce": lambda paths: validate_bounce_rule_files(list(paths)),
}

_MARKERS = {
    "dnsbl": ("lists", "dead"),
    "routing": ("rules",),
    "feedback": ("patterns",),
    "bounce": ("pattern",),
}


def configured_rule_files(config: Config) -> list[Path]:
    """The shipped rule files and the operator's, each kind's shipped file first."""
    return [f.path for kind in RuleKind for f in config.rule_files(kind)]


def kind_of(path: Path) -> str | None:
    for kind in VALIDATORS:
        if kind in path.name.lower():
            return kind
    try:
        tables = set(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return None
    for kind, markers in _MARKERS.items():
        if tables & set(markers):
            return kind
    return None


def check_rule_files(paths: Sequence[Path]) -> list[str]:
    problems: list[str] = []
    for path in paths:
        if not path.is_file():
            problems.append(f"{path}: no such file")
            continue
        kind = kind_of(path)
        if kind is None:
            problems.append(f"{path}: not a rule file hrmonitor knows ({', '.join(VALIDATORS)})")
            continue
        problems.extend(VALIDATORS[kind]([path]))
    return problems

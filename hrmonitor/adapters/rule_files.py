"""Reading rule files from disk: routing rules, remote-reply feedback, bounce patterns.

The only I/O of rules: each file is read as TOML here, and the pure core
(``core.routing_rules``, ``core.feedback_rules``, ``core.bounce_rules``)
validates, parses and layers what was read. A file that is missing,
unreadable or not TOML is a RuleError naming the file, like every other problem
in it. (The DNSBL catalogue is read by ``adapters.dns.dnsbl.read_catalogue``.)
Routing and feedback rules are imported when their files are read: ``hrmonitor
bounce`` reads only bounce patterns and starts once per batch of files.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrmonitor.core.bounce.reason import BouncePatterns
from hrmonitor.core.bounce.rules import parse_bounce_patterns
from hrmonitor.errors import RuleError

if TYPE_CHECKING:
    from hrmonitor.core.feedback.rules import FeedbackRule
    from hrmonitor.core.routing.rules import RoutingRule


def read_rule_file(path: str | Path) -> dict[str, Any]:
    file = str(path)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise RuleError(file, "", "cannot read: no such file") from None
    except OSError as exc:
        raise RuleError(file, "", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RuleError(file, "", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(file, "", f"not valid TOML: {exc}") from None
    except RecursionError:
        raise RuleError(file, "", "not valid TOML: nested too deeply") from None


def _problems(check: Any, paths: Sequence[str | Path]) -> list[str]:
    """``rules check`` form: each problem as "file: key: problem" (empty when valid)."""
    try:
        check(paths)
    except RuleError as error:
        return [str(error)]
    return []


def load_routing_files(paths: Sequence[str | Path]) -> tuple[RoutingRule, ...]:
    """Read and layer routing rule files; later files override earlier ones rule by rule."""
    from hrmonitor.core.routing.rules import layer_routing_files  # noqa: PLC0415

    return layer_routing_files([(str(p), read_rule_file(p)) for p in paths])


def routing_file_problems(paths: Sequence[str | Path]) -> list[str]:
    return _problems(load_routing_files, paths)


def load_feedback_files(paths: Sequence[str | Path]) -> tuple[FeedbackRule, ...]:
    """Read and layer remote-reply pattern files; RuleError names file, key and problem."""
    from hrmonitor.core.feedback.rules import layer_feedback_files  # noqa: PLC0415

    return layer_feedback_files([(str(p), read_rule_file(p)) for p in paths])


def feedback_file_problems(paths: Sequence[str | Path]) -> list[str]:
    return _problems(load_feedback_files, paths)


def load_bounce_patterns(path: str | Path) -> BouncePatterns:
    """Read and validate a bounce pattern file. Raises RuleError(file, key, problem)."""
    return parse_bounce_patterns(read_rule_file(path), file=str(path))


def load_bounce_files(paths: Sequence[str | Path]) -> BouncePatterns:
    """Read bounce pattern files and layer them as the daemon does: a later file's
    patterns and ``[[command]]`` tables are tried before an earlier one's (the
    operator's before the shipped ones)."""
    files = [load_bounce_patterns(path) for path in paths]
    return BouncePatterns(
        tuple(p for patterns in reversed(files) for p in patterns.patterns),
        tuple(c for patterns in reversed(files) for c in patterns.commands),
    )


def validate_bounce_rule_files(paths: Sequence[str | Path]) -> list[str]:
    """Problems found in bounce pattern files, one message each (empty: all valid)."""
    problems: list[str] = []
    for path in paths:
        try:
            load_bounce_patterns(path)
        except RuleError as error:
            problems.append(str(error))
    return problems

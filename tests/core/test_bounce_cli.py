"""``hrmonitor bounce``: plain and JSON output per SPEC, exit 2 for unreadable files.

Runs the click command in-process (CliRunner); the only I/O is tmp files.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from hrmonitor.cli.bounce import bounce_command

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bounces"


def test_json_output_has_one_spec_object_per_file() -> None:
    files = [str(CORPUS / "own" / "postfix_autosubmitted_01.eml"), str(CORPUS / "own/mdn_01.eml")]
    result = CliRunner().invoke(bounce_command, [*files, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [item["file"] for item in data] == files
    assert [item["kind"] for item in data] == ["dsn", "mdn"]
    first = data[0]["recipients"][0]
    assert {"address", "action", "status", "reason", "hard"} <= set(first)
    assert (first["address"], first["status"], first["reason"], first["hard"]) == (
        "gone@example.org",
        "5.1.1",
        "userunknown",
        True,
    )
    assert data[1]["recipients"] == []


def test_plain_output_is_one_line_per_file_and_recipient() -> None:
    file = str(CORPUS / "own" / "qmail_01.eml")
    result = CliRunner().invoke(bounce_command, [file])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"{file}: nonstandard-bounce",
        "  max@example.at failed 5.1.1 userunknown hard",
        "  moritz@example.at failed 5.2.2 mailboxfull soft",
    ]


def test_unreadable_file_exits_2_naming_it_and_prints_no_result(tmp_path: Path) -> None:
    good = str(CORPUS / "own" / "qmail_01.eml")
    missing = str(tmp_path / "nope.eml")
    result = CliRunner().invoke(bounce_command, [good, missing, "--json"])
    assert result.exit_code == 2
    assert f"{missing}: cannot read" in result.output
    assert "qmail" not in result.output


def test_bad_rule_file_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    rules = tmp_path / "bounce.toml"
    rules.write_text('[[pattern]]\nreason = "nosuch"\nmatch = ["x"]\n', encoding="utf-8")
    result = CliRunner().invoke(
        bounce_command, [str(CORPUS / "own" / "qmail_01.eml"), "--rules", str(rules)]
    )
    assert result.exit_code == 2
    assert f"{rules}: pattern[0].reason:" in result.output

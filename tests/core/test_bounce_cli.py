"""``hrmonitor bounce``: plain and JSON output per SPEC, exit 2 for unreadable files.

Runs the click command in-process (CliRunner); the only I/O is tmp files.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from hrmonitor.cli.bounce import bounce_command
from hrmonitor.config.files import RuleKind, shipped_rules

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


CUSTOM_RULES = """
version = 1
[[pattern]]
reason = "blocked"
match = ['frobnicated']
"""
MESSAGE = (
    b"From: MAILER-DAEMON@mx.example.org\r\nTo: bob@contoso.example\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;"
    b' boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n'
    b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.example.org\r\n\r\n"
    b"Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.0.0\r\n"
    b"Diagnostic-Code: smtp; 550 your host is frobnicated\r\n--b--\r\n"
)


def _reason(result_output: str) -> str:
    return str(json.loads(result_output)[0]["recipients"][0]["reason"])


def test_config_names_the_pattern_file_and_rules_overrides_it(tmp_path: Path) -> None:
    from tests.fixtures.app_config import make_config

    (tmp_path / "custom.toml").write_text(CUSTOM_RULES)
    config = make_config(tmp_path)
    text = config.read_text()
    shipped = text.split('[bounces]\npatterns = "', 1)[1].split('"', 1)[0]
    config.write_text(text.replace(shipped, str(tmp_path / "custom.toml")))
    message = tmp_path / "bounce.eml"
    message.write_bytes(MESSAGE)
    runner = CliRunner()
    by_config = runner.invoke(bounce_command, [str(message), "--json", "--config", str(config)])
    assert by_config.exit_code == 0, by_config.output
    assert _reason(by_config.output) == "blocked"  # only the config's file knows the word
    overridden = runner.invoke(
        bounce_command, [str(message), "--json", "--config", str(config), "--rules", shipped]
    )
    assert overridden.exit_code == 0, overridden.output
    assert _reason(overridden.output) != "blocked"


def test_a_config_without_bounce_patterns_uses_the_shipped_ones(tmp_path: Path) -> None:
    """``[bounces] patterns`` defaults to "": the shipped file, as the daemon reads it
    (it used to name the config's directory: exit 2, "Is a directory")."""
    from tests.fixtures.app_config import make_config

    config = make_config(tmp_path)
    text = config.read_text()
    named = text.split("[bounces]\n", 1)[1].split("\n", 1)[0]
    config.write_text(text.replace(f"[bounces]\n{named}\n", ""))
    assert "[bounces]" not in config.read_text()
    message = tmp_path / "bounce.eml"
    message.write_bytes(MESSAGE)
    runner = CliRunner()

    by_config = runner.invoke(bounce_command, [str(message), "--json", "--config", str(config)])
    shipped = runner.invoke(
        bounce_command, [str(message), "--json", "--rules", str(shipped_rules(RuleKind.BOUNCE))]
    )

    assert by_config.exit_code == 0, by_config.output
    assert by_config.output == shipped.output


def test_a_missing_named_config_exits_2(tmp_path: Path) -> None:
    from hrmonitor.cli import main

    message = tmp_path / "bounce.eml"
    message.write_bytes(MESSAGE)
    result = CliRunner().invoke(
        main, ["bounce", str(message), "--config", str(tmp_path / "absent.toml")]
    )
    assert result.exit_code == 2
    assert "absent.toml" in result.output


def test_json_gives_class_status_remote_mta_and_command_per_recipient() -> None:
    file = str(CORPUS / "own" / "postfix_autosubmitted_01.eml")
    result = CliRunner().invoke(bounce_command, [file, "--json"])
    assert result.exit_code == 0, result.output
    first = json.loads(result.output)[0]["recipients"][0]
    assert first["reason_class"] == "recipient"
    assert first["enhanced_status"] == "5.1.1"
    assert first["remote_mta"]
    assert first["command"] == "RCPT"


def test_a_configs_patterns_are_added_to_the_shipped_ones_as_the_daemon_reads_them(
    tmp_path: Path,
) -> None:
    """``--config`` classifies as the daemon does: the operator's file first, then the
    shipped one (it used to read the operator's file alone, so every reason only the
    shipped file knows was lost)."""
    from hrmonitor.app.build import bounce_patterns
    from hrmonitor.config.loading import load_config
    from hrmonitor.core.bounce.classify import classify_message
    from tests.fixtures.app_config import make_config

    (tmp_path / "custom.toml").write_text(CUSTOM_RULES)
    config = make_config(tmp_path)
    text = config.read_text()
    shipped = text.split('[bounces]\npatterns = "', 1)[1].split('"', 1)[0]
    config.write_text(text.replace(shipped, str(tmp_path / "custom.toml")))
    ours = tmp_path / "ours.eml"
    ours.write_bytes(MESSAGE)
    theirs = tmp_path / "theirs.eml"  # a reason only the shipped file knows
    theirs.write_bytes(MESSAGE.replace(b"your host is frobnicated", b"mailbox is full"))

    result = CliRunner().invoke(
        bounce_command, [str(ours), str(theirs), "--json", "--config", str(config)]
    )

    assert result.exit_code == 0, result.output
    reasons = [r["recipients"][0]["reason"] for r in json.loads(result.output)]
    assert reasons == ["blocked", "mailboxfull"]
    daemons = bounce_patterns(load_config(config))
    assert reasons == [
        classify_message(path.read_bytes(), patterns=daemons).recipients[0].reason.value
        for path in (ours, theirs)
    ]

"""``hrmonitor auth hash`` prints an auth-file line whose hash verifies the password."""

from __future__ import annotations

from click.testing import CliRunner

from hrmonitor.cli import main
from hrmonitor.core.credentials import parse_auth_file, verify_password


def test_auth_hash_prints_a_line_the_auth_file_accepts() -> None:
    result = CliRunner().invoke(main, ["auth", "hash", "alice", "--password", "s3cret"])
    assert result.exit_code == 0, result.output
    users = parse_auth_file(result.stdout, "auth.txt")
    assert verify_password("s3cret", users["alice"])
    assert not verify_password("other", users["alice"])


def test_a_user_name_with_a_colon_is_refused() -> None:
    result = CliRunner().invoke(main, ["auth", "hash", "a:b", "--password", "x"])
    assert result.exit_code == 2

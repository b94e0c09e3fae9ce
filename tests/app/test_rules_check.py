"""``hrmonitor rules check`` validates the shipped rule files and names problems in bad ones."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from hrmonitor.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_every_rule_file_the_example_config_names_is_valid() -> None:
    result = CliRunner().invoke(
        main, ["rules", "check", "--config", str(REPO / "config.example.toml")]
    )
    assert result.exit_code == 0, result.stderr
    assert "4 rule file(s) valid" in result.stdout


def test_every_shipped_rule_file_is_valid_by_name() -> None:
    files = sorted(str(p) for p in (REPO / "rules").glob("*.toml"))
    result = CliRunner().invoke(main, ["rules", "check", *files])
    assert result.exit_code == 0, result.stderr


def test_a_bad_catalogue_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "my-dnsbl.toml"
    bad.write_text('[lists.x]\nzone = "x.test"\nbogus = 1\n')
    result = CliRunner().invoke(main, ["rules", "check", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}: lists.x.bogus: unknown key" in result.stderr


def test_a_file_of_no_known_kind_is_refused(tmp_path: Path) -> None:
    odd = tmp_path / "other.toml"
    odd.write_text("[something]\nx = 1\n")
    result = CliRunner().invoke(main, ["rules", "check", str(odd)])
    assert result.exit_code == 2
    assert "not a rule file" in result.stderr

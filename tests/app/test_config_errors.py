"""Bad config files exit 2 with a message naming the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hrmonitor.cli import main
from hrmonitor.config.loading import load_config
from hrmonitor.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

BASE = """
[pools.normal]
risk = "normal"
ips = ["127.0.0.10"]

[pools.high-risk]
risk = "high"
ips = ["127.0.0.20"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return caught.value


def test_the_example_config_is_valid_and_has_both_pools() -> None:
    config = load_config(REPO / "config.example.toml")
    risks = {p.name: p.risk for p in config.core_pools()}
    assert risks == {"normal": "normal", "high-risk": "high"}
    assert config.path("rules/dnsbl.toml").is_file()


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (BASE + "bogus = 1\n", "pools.high-risk.bogus", "unknown key"),
        (BASE + "[dns]\nnameserver = []\n", "dns.nameserver", "unknown key"),
        (
            BASE.replace('"127.0.0.20"', '"127.0.0.300"'),
            "pools.high-risk.ips[0]",
            "is not an IP address",
        ),
        (
            BASE.replace('"127.0.0.20"', '"127.0.0.10"'),
            "pools.high-risk.ips[0]",
            "already in pools.normal.ips",
        ),
        (BASE + 'cooldown = "soon"\n', "pools.high-risk.cooldown", "is not a duration"),
        (BASE + "cooldown = 60\n", "pools.high-risk.cooldown", "is not a duration"),
        (BASE + 'when_exhausted = "use-listed"\n', "pools.high-risk", "only allowed for normal"),
        (BASE.replace('risk = "high"', 'risk = "normal"'), "pools", "only one pool"),
        (BASE.replace('risk = "normal"', 'risk = "high"'), "pools", "risk = 'normal'"),
        ("[dns]\nport = 53\n", "pools", "required key is missing"),
        (BASE + '[routing]\non_dns_unknown = "nope"\n', "routing.on_dns_unknown", "no configured"),
        (BASE + '[listener]\nmax_message_size = "big"\n', "listener.max_message_size", "size"),
        (BASE + '[listener]\nauth_file = "auth.txt"\n', "listener.auth_file", "only over TLS"),
        (
            BASE + '[[tenants]]\nname = "t"\nusers = ["alice"]\n',
            "tenants[0].users",
            "auth_file",
        ),
    ],
)
def test_a_bad_key_is_named_with_its_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    error = error_of(tmp_path, text)
    assert error.file == str(tmp_path / "config.toml")
    assert error.key == key
    assert problem in error.problem


def test_normal_and_high_pools_sharing_an_ipv6_64_are_refused(tmp_path: Path) -> None:
    text = BASE.replace('"127.0.0.10"', '"2001:db8:1::10"').replace(
        '"127.0.0.20"', '"2001:db8:1::20"'
    )
    error = error_of(tmp_path, text)
    assert "/64" in error.problem
    assert error.key.startswith("pools.")


def test_different_64s_are_fine(tmp_path: Path) -> None:
    text = BASE.replace('"127.0.0.10"', '"2001:db8:1::10"').replace(
        '"127.0.0.20"', '"2001:db8:2::20"'
    )
    assert load_config(write(tmp_path, text)).pool_of("2001:db8:2::20") == "high-risk"


def test_broken_toml_and_missing_files_name_the_file(tmp_path: Path) -> None:
    error = error_of(tmp_path, "[pools\n")
    assert "not valid TOML" in error.problem
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def test_the_cli_exits_2_naming_file_key_and_problem(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "bogus = 1\n")
    result = CliRunner().invoke(main, ["report", "--config", str(path)])
    assert result.exit_code == 2
    assert f"{path}: pools.high-risk.bogus: unknown key" in result.stderr


def test_the_config_comes_from_the_environment_when_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, BASE + "bogus = 1\n")
    monkeypatch.setenv("HRMONITOR_CONFIG", str(path))
    result = CliRunner().invoke(main, ["report"])
    assert result.exit_code == 2
    assert str(path) in result.stderr


def test_a_dead_zone_is_refused_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "dead.toml").write_text(
        '[lists.sorbs]\nzone = "dnsbl.sorbs.net"\nfamilies = ["ipv4"]\n'
        '[lists.sorbs.codes]\n"127.0.0.2" = { tag = "x", class = "listed", severity = "high" }\n'
    )
    catalogue = f'"{REPO / "rules" / "dnsbl.toml"}", "dead.toml"'
    path = write(tmp_path, BASE + f'[dnsbl]\ncatalogue = [{catalogue}]\nzones = ["sorbs"]\n')
    result = CliRunner().invoke(main, ["check", "--config", str(path)])
    assert result.exit_code == 2
    assert "sorbs.net" in result.stderr
    assert "dead" in result.stderr


def test_a_schedule_over_the_daily_budget_is_warned_about_not_refused(tmp_path: Path) -> None:
    from hrmonitor.app.build import schedule_warnings, zone_lists

    rules = REPO / "rules" / "dnsbl.toml"
    text = BASE + f'[dnsbl]\ncatalogue = ["{rules}"]\nzones = ["psbl"]\ndaily_budget = 100\n'
    text += 'interval = "1m"\n'
    config = load_config(write(tmp_path, text))
    lists = zone_lists(config)
    assert lists[0].daily_budget == 100  # the catalogue sets none for psbl
    warnings = schedule_warnings(config, lists)
    assert any("psbl" in w and "exceeds its budget of 100" in w for w in warnings)
    assert any("shorter than the lists' TTL" in w for w in warnings)

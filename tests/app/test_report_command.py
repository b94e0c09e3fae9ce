"""``hrmonitor report`` and ``history`` as a postmaster reads them: the CLI's real entry
point against a real rbldnsd on loopback and a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hrmonitor.cli import main
from tests.fixtures.app_config import make_config
from tests.fixtures.rbldnsd import Rbldnsd


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout


@pytest.fixture
def listed_config(rbldnsd: Rbldnsd, tmp_path: Path, store_url: str) -> Path:
    """A config whose store holds one sweep: 127.0.0.20 listed on bl (DNS zone bl.test)."""
    config = make_config(tmp_path, rbldnsd=rbldnsd, database=store_url)
    assert run("check", "--config", str(config), "--pool", "high-risk")[0] == 2
    return config


def test_each_listing_names_its_dns_zone_beside_the_catalogue_key(listed_config: Path) -> None:
    code, out = run("report", "--config", str(listed_config), "--json")
    assert code == 0
    report = json.loads(out)
    [high] = [p for p in report["pools"] if p["name"] == "high-risk"]
    [listed] = [ip for ip in high["ips"] if ip["ip"] == "127.0.0.20"]
    assert [(x["zone"], x["dns_zone"]) for x in listed["listings"]] == [("bl", "bl.test")]
    assert [(z["name"], z["dns_zone"]) for z in report["zones"]] == [("bl", "bl.test")]

    code, out = run("history", "--config", str(listed_config), "--json", "127.0.0.20")
    assert code == 0
    history = json.loads(out)
    assert [(x["zone"], x["dns_zone"]) for x in history["listings"]] == [("bl", "bl.test")]


def test_the_terminal_zone_table_fills_its_zone_column(listed_config: Path) -> None:
    code, out = run("report", "--config", str(listed_config))
    assert code == 0
    [row] = [line for line in out.splitlines() if " bl.test " in f" {line} "]
    assert "bl" in row.split()[:2]
    assert "unknown" in row  # check alone does not judge zone health; no daemon ran

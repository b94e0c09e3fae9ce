"""``hrmonitor check``, ``history`` and ``report`` against a real rbldnsd on loopback."""

from __future__ import annotations

import gc
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hrmonitor import cli
from hrmonitor.cli import main
from hrmonitor.cli.options import QuickExit
from tests.fixtures.app_config import make_config
from tests.fixtures.rbldnsd import Rbldnsd


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_check_of_a_listed_high_risk_ip_is_critical_and_names_the_listing(
    rbldnsd: Rbldnsd, tmp_path: Path
) -> None:
    config = make_config(tmp_path, rbldnsd=rbldnsd)
    code, out, _ = run("check", "--config", str(config), "--json", "127.0.0.20")
    assert code == 2
    data = json.loads(out)
    assert data["zones"] == [{"name": "bl", "zone": "bl.test", "health": "ok"}]
    [row] = data["results"]
    assert row["ip"] == "127.0.0.20"
    assert row["pool"] == "high-risk"
    assert row["status"] == "listed"
    assert row["codes"] == ["127.0.0.2"]
    assert row["tags"] == ["SBL"]
    assert row["severity"] == "critical"
    assert row["txt"] == "Listed, see https://bl.test/?ip=127.0.0.20"


def test_check_persists_the_listing_for_history_and_report(
    rbldnsd: Rbldnsd, tmp_path: Path
) -> None:
    config = make_config(tmp_path, rbldnsd=rbldnsd)
    assert run("check", "--config", str(config), "--pool", "high-risk")[0] == 2

    code, out, _ = run("history", "--config", str(config), "--json", "127.0.0.20")
    assert code == 0
    history = json.loads(out)
    assert [(x["zone"], x["codes"], x["cleared_at"]) for x in history["listings"]] == [
        ("bl", ["127.0.0.2"], None)
    ]

    code, out, _ = run("report", "--config", str(config), "--json")
    assert code == 0
    report = json.loads(out)
    pools = {p["name"]: p for p in report["pools"]}
    assert set(pools) == {"normal", "high-risk"}
    high = {ip["ip"]: ip for ip in pools["high-risk"]["ips"]}
    assert [x["zone"] for x in high["127.0.0.20"]["listings"]] == ["bl"]
    assert high["127.0.0.20"]["listings"][0]["since"]
    assert high["127.0.0.22"]["state"] == "standby"
    normal = {ip["ip"]: ip for ip in pools["normal"]["ips"]}
    assert all(not ip["listings"] for ip in normal.values())
    assert pools["normal"]["health"] == "healthy"
    assert "queue" in report
    assert isinstance(report["alerts"], list)


def test_check_of_clean_ips_is_ok(rbldnsd: Rbldnsd, tmp_path: Path) -> None:
    config = make_config(tmp_path, rbldnsd=rbldnsd)
    code, out, _ = run("check", "--config", str(config), "--json", "--pool", "normal")
    assert code == 0, out
    assert {r["status"] for r in json.loads(out)["results"]} == {"clean"}


def test_a_zone_that_lists_the_world_is_ignored_and_makes_a_warning(
    rbldnsd: Rbldnsd, tmp_path: Path
) -> None:
    config = make_config(tmp_path, rbldnsd=rbldnsd, zones=("world",))
    code, out, _ = run("check", "--config", str(config), "--json", "--pool", "normal")
    data = json.loads(out)
    assert data["zones"][0]["health"] == "lists-everything"
    assert {r["status"] for r in data["results"]} == {"unknown"}
    assert code == 3  # nothing trustworthy learnt: never "ok", never "critical"
    code, out, _ = run("history", "--config", str(config), "--json", "127.0.0.10")
    assert json.loads(out)["listings"] == []


def test_a_list_that_refuses_us_is_an_error_not_a_listing(rbldnsd: Rbldnsd, tmp_path: Path) -> None:
    config = make_config(tmp_path, rbldnsd=rbldnsd, zones=("bl", "err"))
    code, out, _ = run("check", "--config", str(config), "--json", "127.0.0.10")
    data = json.loads(out)
    statuses = {r["list"]: r["status"] for r in data["results"]}
    assert statuses["bl"] == "clean"
    assert statuses["err"] in ("error", "unknown")
    assert code == 1


def test_a_resolver_that_never_answers_gives_unknown(
    blackhole_nameserver: tuple[str, int], tmp_path: Path
) -> None:
    config = make_config(tmp_path, nameserver=blackhole_nameserver)
    code, out, _ = run("check", "--config", str(config), "--json", "127.0.0.20")
    assert code == 3
    assert {r["status"] for r in json.loads(out)["results"]} == {"unknown"}


def test_check_refuses_an_unknown_pool(rbldnsd: Rbldnsd, tmp_path: Path) -> None:
    config = make_config(tmp_path, rbldnsd=rbldnsd)
    code, _, err = run("check", "--config", str(config), "--pool", "nope")
    assert code == 2
    assert "nope" in err


def test_the_terminal_report_shows_both_pools_with_their_own_health(
    rbldnsd: Rbldnsd, tmp_path: Path
) -> None:
    config = make_config(tmp_path, rbldnsd=rbldnsd)
    assert run("check", "--config", str(config))[0] == 2
    code, out, _ = run("report", "--config", str(config))
    assert code == 0
    assert "normal" in out
    assert "high-risk" in out
    assert "healthy" in out  # the normal pool, judged on its own IPs
    assert "127.0.0.20" in out
    assert "bl SBL" in out  # the listing, with what its code means (127.0.0.2)
    code, out, _ = run("check", "--config", str(config), "127.0.0.20")
    assert code == 2
    assert "listed" in out
    assert out.startswith("DNSBL CRITICAL - ")


def test_history_in_text_names_the_listing(rbldnsd: Rbldnsd, tmp_path: Path) -> None:
    config = make_config(tmp_path, rbldnsd=rbldnsd)
    run("check", "--config", str(config), "127.0.0.20")
    code, out, _ = run("history", "--config", str(config), "127.0.0.20")
    assert code == 0
    assert "pool high-risk" in out
    assert "bl 127.0.0.2" in out
    code, _, err = run("history", "--config", str(config), "192.0.2.99")
    assert code == 2
    assert "not an IP of any configured pool" in err


def test_check_leaves_the_cyclic_collector_as_it_found_it(rbldnsd: Rbldnsd, tmp_path: Path) -> None:
    config = make_config(tmp_path, rbldnsd=rbldnsd)
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()

    assert run("check", "--config", str(config), "--json", "--pool", "normal")[0] == 0

    assert (gc.get_threshold(), gc.get_freeze_count()) == (thresholds, frozen)


def test_check_as_a_process_prints_everything_and_exits_with_its_verdict(
    rbldnsd: Rbldnsd, tmp_path: Path
) -> None:
    """The console script ends ``check`` without the interpreter's teardown (cli.entry):
    through a pipe, the whole JSON still arrives, and the status is the verdict."""
    config = make_config(tmp_path, rbldnsd=rbldnsd)
    done = subprocess.run(
        [sys.executable, "-m", "hrmonitor", "check", "--config", str(config), "--json",
         "--pool", "high-risk"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    data = json.loads(done.stdout)
    assert data["exit"] == 2
    assert {r["ip"] for r in data["results"]} == {"127.0.0.20", "127.0.0.21", "127.0.0.22"}
    assert "listed on bl" not in done.stderr  # check alerts nobody, not even the log


def test_quick_exit_flushes_and_ends_with_the_status_other_exits_are_normal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Out(io.StringIO):
        flushed = ""

        def flush(self) -> None:
            self.flushed = self.getvalue()

    class Ended(Exception):
        pass

    out = Out()

    def fake_exit(status: int) -> None:
        raise Ended(status, out.flushed)

    def probe() -> None:
        print("verdict printed")
        raise QuickExit(2)

    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(os, "_exit", fake_exit)
    monkeypatch.setattr(cli, "main", probe)
    with pytest.raises(Ended) as ended:
        cli.entry()
    assert ended.value.args == (2, "verdict printed\n")  # flushed before the process ends

    def other() -> None:
        raise SystemExit(0)

    monkeypatch.setattr(cli, "main", other)
    with pytest.raises(SystemExit) as normal:
        cli.entry()
    assert normal.value.code == 0

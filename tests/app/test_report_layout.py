"""The terminal report of a realistic store (two pools of six IPs, 40 zones, alerts), rendered
by rich at fixed sizes: what a postmaster sees on the screen, cell by cell."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import create_engine, text

from hrmonitor.adapters import terminal
from hrmonitor.adapters.store import open_store
from hrmonitor.app.oneshot import ReportSource, report_data
from hrmonitor.config.loading import load_config
from tests.fixtures.report_population import HIGH, NORMAL, populate, write_config

# Each IP's row: its state, what it sent today (of its warm-up cap) and its listings.
ROWS = {
    **{ip: ("active", "137", None) for ip in NORMAL[:4]},
    **{ip: ("standby", "0", None) for ip in NORMAL[4:]},
    HIGH[0]: ("active", "137", "z00 SBL"),
    HIGH[1]: ("active", "137", None),
    HIGH[2]: ("active", "137", None),
    HIGH[3]: ("warming s1", "137/2000", None),
    HIGH[4]: ("standby", "0", None),
    HIGH[5]: ("retired", "0", "z03 SBL"),
}


@pytest.fixture
def report(report_population: Path) -> dict[str, Any]:
    return report_data(load_config(report_population))


def _screen(report: dict[str, Any], width: int, height: int) -> list[str]:
    """The lines a terminal of ``width`` x ``height`` shows first."""
    console = Console(
        width=width, height=height, record=True, force_terminal=True, file=io.StringIO()
    )
    terminal.print_report(report, console)
    return console.export_text().splitlines()[:height]


def _row(screen: list[str], ip: str) -> str:
    """The cells of ``ip``'s row inside its pool's panel (a line may hold two panels)."""
    parts = [part.split() for line in screen for part in line.split("│")]
    [row] = [cells for cells in parts if cells[:1] == [ip]]
    return " ".join(row)


@pytest.mark.parametrize(("width", "height"), [(100, 40), (120, 40), (200, 50)])
def test_two_pools_of_six_ips_side_by_side_from_100_columns_nothing_cut(
    report: dict[str, Any], width: int, height: int
) -> None:
    screen = _screen(report, width, height)
    text = "\n".join(screen)
    titles = [line for line in screen if "normal (normal)" in line]
    assert any("high-risk (high)" in line for line in titles)  # both panels on one line
    for ip, (state, sent, listing) in ROWS.items():
        cells = _row(screen, ip).split()
        assert state.split()[0] in cells, (ip, cells)
        assert cells[-1] == sent, (ip, cells)  # sent/cap whole, the row's last cell
        if listing:
            assert listing in " ".join(cells), (ip, cells)
    assert "warming s1" in text
    assert "suspended" in text
    assert "gmail.com" in text
    assert "…" not in text  # rich's mark of a cut cell


def test_at_80_columns_the_pools_are_stacked_and_the_tables_summarised_at_24_rows(
    report: dict[str, Any],
) -> None:
    screen = _screen(report, 80, 24)
    text = "\n".join(screen)
    assert "normal (normal) healthy score 100" in text
    assert "high-risk (high) degraded score 75" in text
    assert "CRITICAL listing: 127.0.2.20 (high-risk) listing on z00" in text
    assert "high-risk: 127.0.2.20 active on z00,z07; 127.0.2.25 retired on z03" in text

    tall = _screen(report, 80, 80)  # room for the tables: stacked, every row whole
    assert not any("normal (normal)" in x and "high-risk (high)" in x for x in tall)
    for ip, (state, sent, _) in ROWS.items():
        cells = _row(tall, ip).split()
        assert (state.split()[0], cells[-1]) == (cells[cells.index(ip) + 1], sent)
    assert "…" not in "\n".join(tall)


def test_a_watch_reads_each_refresh_afresh_from_the_one_store_it_opened(
    report_population: Path,
) -> None:
    """``report --watch`` keeps its store open across refreshes; a daemon's writes between
    two refreshes are in the next one (no snapshot, no cache)."""
    config = load_config(report_population)
    with ReportSource(config) as source:
        before = source.read()
        writer = open_store(config.database.url)
        try:
            writer.record_sent(NORMAL[0], datetime.now(UTC), 5)
        finally:
            writer.close()
        after = source.read()
    sent = {
        report["generated_at"]: next(
            ip["sent_today"] for ip in report["pools"][0]["ips"] if ip["ip"] == NORMAL[0]
        )
        for report in (before, after)
    }
    assert list(sent.values()) == [137, 142]


def test_a_watch_survives_the_server_closing_its_connection(
    tmp_path: Path, postgres_url: str
) -> None:
    """The pools do not ping before use: a connection PostgreSQL closed (a restart, an
    idle timeout) fails one use. A watch reads again instead of dying on it."""
    app = f"hrm-watch-{tmp_path.name}"[:60]
    config_path = write_config(tmp_path, f"{postgres_url}&application_name={app}")
    populate(config_path)
    config = load_config(config_path)
    with ReportSource(config) as source:
        first = source.read()
        admin = create_engine(postgres_url)
        try:
            with admin.connect() as conn:
                killed = conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE application_name = :app"
                    ),
                    {"app": app},
                ).scalar_one()
        finally:
            admin.dispose()
        assert killed >= 1  # the watch's pooled connection
        again = source.read()
    assert [p["name"] for p in again["pools"]] == [p["name"] for p in first["pools"]]

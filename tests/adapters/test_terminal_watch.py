"""``report --watch`` on a terminal draws when something changed, and only then."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from rich.console import Console, RenderableType

from hrmonitor.adapters import terminal


def _report(refresh: int, sent: int) -> dict[str, Any]:
    return {
        "generated_at": f"2026-12-07T05:00:{refresh:02}+00:00",  # new on every refresh
        "data_as_of": "2026-12-07T05:00:00+00:00",
        "stale": False,
        "pools": [
            {
                "name": "high-risk",
                "risk": "high",
                "health": "healthy",
                "summary": {"score": 100},
                "queue": {},
                "ips": [{"ip": "192.0.2.1", "state": "active", "sent_today": sent}],
            }
        ],
    }


def test_a_refresh_that_brings_nothing_new_draws_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Six refreshes: the same data three times, then new data, then the terminal resized."""
    console = Console(width=100, height=40, force_terminal=True, file=io.StringIO())
    sent = iter([7, 7, 7, 8, 8, 8])
    refreshes = iter(range(6))
    drawn: list[tuple[int, int]] = []
    real = terminal.report_renderable

    def counting(
        report: Mapping[str, Any], width: int | None = None, height: int | None = None
    ) -> RenderableType:
        drawn.append((report["pools"][0]["ips"][0]["sent_today"], width or 0))
        return real(report, width, height)

    monkeypatch.setattr(terminal, "report_renderable", counting)
    waits: Iterator[bool] = iter([False, False, False, False, False, True])

    def wait(_: float) -> bool:
        stop = next(waits)
        if len(drawn) == 2 and not stop:
            console.size = (120, 40)  # the user widens the window
        return stop

    terminal.watch(lambda: _report(next(refreshes), next(sent)), 2.0, wait, console)
    # drawn: at start, when sent_today moved to 8, and once for the new width
    assert drawn == [(7, 100), (8, 100), (8, 120)]
    assert isinstance(console.file, io.StringIO)
    assert "192.0.2.1" in console.file.getvalue()

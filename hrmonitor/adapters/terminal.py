"""The only module that imports rich: renders report data for a terminal (check prints plain lines).

It takes the same JSON-able dicts that ``--json`` prints, so what a person sees
and what a script reads can never disagree.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

_STATE_STYLE = {
    "active": "green",
    "warming": "cyan",
    "standby": "blue",
    "retired": "red",
    "disabled": "dim",
}
# Pools side by side from this width, if their tables fit whole; stacked below it.
SIDE_BY_SIDE_FROM = 100
URGENT = ("critical", "high")
_HEALTH_STYLE = {
    "healthy": "bold green",
    "degraded": "bold yellow",
    "critical": "bold red",
    "exhausted": "bold white on red",
    "ok": "green",
}


def _style(value: str, table: Mapping[str, str], default: str = "yellow") -> Text:
    return Text(value, style=table.get(value, default))


def _listing_text(listings: Sequence[Mapping[str, Any]]) -> Text:
    """Each open listing on a line of its own: the list, what it says (tags, else codes), since."""
    text = Text()
    for index, listing in enumerate(listings):
        if index:
            text.append("\n")
        what = ",".join(listing.get("tags") or listing.get("codes") or ())
        text.append(f"{listing['zone']} {what}".rstrip(), style="red")
        since = str(listing.get("since") or "")[5:16].replace("T", " ")
        if since:
            text.append(f" {since}", style="dim")
    return text or Text("-", style="dim")


def _why_out(ip: Mapping[str, Any]) -> str:
    """Why an IP in rotation sends nothing, or what a retired IP waits on and until when."""
    retirement = ip.get("retirement")
    if retirement:
        earliest = retirement.get("earliest_return")
        when = f", back {str(earliest)[5:16].replace('T', ' ')} at the earliest" if earliest else ""
        return f"\nwaits on {retirement['waits_on']}{when}"
    if ip["state"] in ("active", "warming") and ip.get("not_eligible"):
        return f"\nnot sending: {ip['not_eligible']}"
    return ""


def _state_text(ip: Mapping[str, Any]) -> Text:
    """The state, why an IP sends nothing, and its suspensions (provider until HH:MM)."""
    state = ip["state"] + (f" s{ip['warmup_stage']}" if ip.get("warmup_stage") else "")
    text = _style(state, _STATE_STYLE) if ip["state"] in _STATE_STYLE else Text(state)
    text.append(_why_out(ip), style="dim")
    for suspension in ip.get("suspensions", ()):
        until = str(suspension["until"])[11:16]
        text.append(f"\nsuspended {suspension['scope']} until {until}", style="yellow")
    return text


def _pool_table(pool: Mapping[str, Any]) -> Table:
    """IP, state (with why not sending and suspensions), listings, sent today / cap.

    No lines between columns and one space of padding, so two pools fit side by
    side at 100 columns; IP and sent/cap never wrap (nor are they cut: a table
    that cannot fit them is stacked instead, see :func:`_pool_grid`).
    """
    table = Table(
        box=box.SIMPLE_HEAD,
        expand=True,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        padding=(0, 1),
    )
    table.add_column("IP", no_wrap=True)
    table.add_column("state")
    table.add_column("listings")
    table.add_column("sent/cap", justify="right", no_wrap=True)
    for ip in pool["ips"]:
        cap = ip.get("daily_cap")
        volume = f"{ip.get('sent_today', 0)}" + (f"/{cap}" if cap else "")
        table.add_row(ip["ip"], _state_text(ip), _listing_text(ip.get("listings", ())), volume)
    return table


def _pool_panel(pool: Mapping[str, Any]) -> Panel:
    summary = pool.get("summary", {})
    title = Text.assemble(
        (f"{pool['name']} ", "bold"),
        (f"({pool['risk']}) ", "dim"),
        _style(str(pool["health"]), _HEALTH_STYLE),
        (f" score {summary.get('score', '-')}", "dim"),
    )
    queue = pool.get("queue", {})
    footer = ", ".join(f"{k} {v}" for k, v in sorted(queue.items())) or "queue empty"
    return Panel(
        Group(_pool_table(pool), Text(footer, style="dim")),
        title=title,
        expand=True,
        padding=(0, 1),
    )


def _fits(panel: Panel, width: int) -> bool:
    """Whether ``panel`` shows its title and every IP and sent/cap whole at ``width``."""
    console = Console(width=width, file=io.StringIO(), color_system=None)
    needed = Measurement.get(console, console.options, panel).minimum
    title = panel.title.cell_len if isinstance(panel.title, Text) else 0
    return max(needed, title + 4) <= width


def _pool_grid(panels: Sequence[Panel], width: int | None) -> RenderableType:
    """As many pools per row as fit whole (from ``SIDE_BY_SIDE_FROM`` columns), else stacked."""
    if width is None:
        per_row = len(panels)
    elif width < SIDE_BY_SIDE_FROM:
        per_row = 1
    else:
        per_row = 1
        for count in range(len(panels), 1, -1):
            share = (width - (count - 1)) // count
            if all(_fits(panel, share) for panel in panels):
                per_row = count
                break
    if per_row <= 1:
        return Group(*panels)
    rows = []
    for first in range(0, len(panels), per_row):
        grid = Table.grid(expand=True, padding=(0, 1, 0, 0), collapse_padding=True)
        for _ in range(per_row):
            grid.add_column(ratio=1)
        chunk = list(panels[first : first + per_row])
        grid.add_row(*chunk, *([""] * (per_row - len(chunk))))
        rows.append(grid)
    return Group(*rows)


def _zones_table(zones: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="zones", expand=False)
    table.add_column("list")
    table.add_column("zone")
    table.add_column("health")
    table.add_column("checked")
    for zone in zones:
        table.add_row(
            zone["name"],
            zone.get("dns_zone", ""),
            _style(zone["health"], _HEALTH_STYLE),
            str(zone.get("checked_at") or "-")[:19].replace("T", " "),
        )
    return table


def _alerts_table(alerts: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="recent alerts", expand=True)
    table.add_column("when", no_wrap=True)
    table.add_column("kind")
    table.add_column("severity")
    table.add_column("summary")
    for alert in alerts:
        resolved = " (resolved)" if alert.get("resolved_at") else ""
        table.add_row(
            str(alert.get("last_sent_at", ""))[:19].replace("T", " "),
            alert["kind"],
            alert["severity"],
            str(alert.get("summary", "")) + resolved,
        )
    return table


_RATE_STYLE = {"ok": "green", "review": "bold yellow", "pause": "bold red"}


def _nodes_table(cluster: Mapping[str, Any]) -> Table:
    """Each node, whether it is alive, and the once-per-cluster roles it holds."""
    holds: dict[str, list[str]] = {}
    for role, held in sorted(cluster.get("roles", {}).items()):
        holder = held.get("holder")
        holds.setdefault(holder or "", []).append(role)
    table = Table(title="nodes", expand=True)
    table.add_column("node", no_wrap=True)
    table.add_column("host")
    table.add_column("state")
    table.add_column("last heartbeat", no_wrap=True)
    table.add_column("roles")
    for node in cluster.get("nodes", []):
        state = (
            "alive" if node.get("alive") else ("stopped" if node.get("stopped_at") else "silent")
        )
        table.add_row(
            node["name"],
            str(node.get("host", "")),
            _style(state, {"alive": "green", "stopped": "dim", "silent": "bold red"}),
            str(node.get("heartbeat_at") or "-")[:19].replace("T", " "),
            ", ".join(holds.get(node["name"], [])) or "-",
        )
    if holds.get(""):
        table.caption = "no holder now: " + ", ".join(holds[""])
    return table


def _tenants_table(tenants: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(
        title="outbound bounce and complaint rates "
        "(hard bounces: review 5 %, pause 10 %; complaints: review 0.1 %, pause 0.5 %)",
        expand=False,
    )
    for column in ("tenant", "sent", "hard bounces", "", "complaints", ""):
        table.add_column(column)
    for row in tenants:
        table.add_row(
            row["tenant"],
            str(row.get("sent", 0)),
            f"{100 * row.get('hard_bounce_rate', 0):.2f} %",
            _style(str(row.get("bounce_status", "-")), _RATE_STYLE),
            f"{100 * row.get('complaint_rate', 0):.3f} %",
            _style(str(row.get("complaint_status", "-")), _RATE_STYLE),
        )
    return table


def _freshness_line(report: Mapping[str, Any]) -> Text:
    as_of = report.get("data_as_of")
    shown = str(as_of)[:19].replace("T", " ") if as_of else "never"
    if report.get("stale"):
        return Text(
            f"STALE: data last written by a daemon {shown}; is the daemon running?",
            style="bold white on red",
        )
    return Text(f"data as of {shown}", style="dim")


def _pool_line(pool: Mapping[str, Any]) -> Text:
    """One line per pool: what a postmaster needs first, whatever the terminal's size."""
    summary = pool.get("summary", {})
    counts = Counter(ip["state"] for ip in pool["ips"])
    listed = sum(1 for ip in pool["ips"] if ip.get("listings"))
    return Text.assemble(
        (f"{pool['name']} ", "bold"),
        (f"({pool['risk']}) ", "dim"),
        _style(str(pool["health"]), _HEALTH_STYLE),
        (f" score {summary.get('score', '-')}", "dim"),
        " " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())),
        (f", {listed} listed" if listed else "", "red"),
    )


def _urgent_alerts(alerts: Sequence[Mapping[str, Any]]) -> list[Text]:
    return [
        Text(f"{a['severity'].upper()} {a['kind']}: {a.get('summary', '')}", style="bold red")
        for a in alerts
        if not a.get("resolved_at") and a.get("severity") in URGENT
    ]


def _pool_summary(pool: Mapping[str, Any]) -> Text:
    """A pool's IP table, summarised: the listed IPs only (the counts are in its state line)."""
    text = Text(f"{pool['name']}: ", style="bold")
    listed = [ip for ip in pool["ips"] if ip.get("listings")]
    if not listed:
        return text.append("no IP listed", style="dim")
    for index, ip in enumerate(listed):
        zones = ",".join(x["zone"] for x in ip["listings"])
        text.append(("; " if index else "") + f"{ip['ip']} {ip['state']} on {zones}", style="red")
    return text


def report_renderable(
    report: Mapping[str, Any], width: int | None = None, height: int | None = None
) -> RenderableType:
    """First the freshness, every pool's state line and every open critical/high alert;
    then the IP tables, summarised when they would not fit ``height``; then the rest."""
    head: list[RenderableType] = [_freshness_line(report)]
    head += [_pool_line(pool) for pool in report["pools"]]
    head += _urgent_alerts(report.get("alerts", ()))
    tables = _pool_grid([_pool_panel(pool) for pool in report["pools"]], width)
    if width is not None and height is not None:
        used = len(head) + _height(tables, width)
        if used > height:
            tables = Group(*[_pool_summary(pool) for pool in report["pools"]])
    parts: list[RenderableType] = [*head, tables]
    if report.get("zones"):
        parts.append(_zones_table(report["zones"]))
    if report.get("tenants"):
        parts.append(_tenants_table(report["tenants"]))
    if report.get("alerts"):
        parts.append(_alerts_table(report["alerts"]))
    if report.get("cluster", {}).get("nodes"):
        parts.append(_nodes_table(report["cluster"]))
    return Group(*parts)


def _height(renderable: RenderableType, width: int) -> int:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    return len(console.render_lines(renderable, console.options, pad=False))


def print_report(report: Mapping[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    # A pipe has no height to fit: only a terminal gets the summarised tables.
    height = console.height if console.is_terminal else None
    console.print(report_renderable(report, console.width, height))


def watch(
    build: Callable[[], Mapping[str, Any]],
    every: float,
    wait: Callable[[float], bool],
    console: Console | None = None,
) -> None:
    """Redraw the report every ``every`` seconds until ``wait`` returns True (stop).

    Drawn only when something changed: the data (but its ``generated_at``) or the
    terminal's size. rich's own refresh thread is off: it re-rendered the whole
    report four times a second whether anything changed or not.
    """
    console = console or Console()
    with Live(console=console, screen=False, auto_refresh=False) as live:
        shown: tuple[object, ...] | None = None
        while True:
            report = build()
            seen = (_without_clock(report), console.width, console.height)
            if seen != shown:
                live.update(report_renderable(report, console.width, console.height), refresh=True)
                shown = seen
            if wait(every):
                return


def _without_clock(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report but the moment it was built, which changes on every refresh."""
    return {k: v for k, v in report.items() if k != "generated_at"}

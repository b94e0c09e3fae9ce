"""Issue 14 item 3: operators' actions and rotation decisions in the daemon's log, once.

Two processes: ``hrmonitor run --log-file`` and the operator's commands
(``hrmonitor ip disable``, ``hrmonitor queue hold``) run as processes of their
own against the same store. The daemon logs each new audit event once, from
the trail (``services.audit_log``), and its own rotation decisions once, where
it makes them (a routine retire and promote at INFO).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.fixtures.daemon_lab import (
    RelayLab,
    hrmonitor_process,
    state_of,
    swaks,
    until,
)
from tests.fixtures.rbldnsd import Rbldnsd
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = [pytest.mark.slow, pytest.mark.rbldnsd]

LEVEL = r"\S+ (?P<level>[A-Z]+) hrmonitor\.[\w.]+: \[[^]]+\] "


def audit_lines(log: Path, pattern: str) -> list[re.Match[str]]:
    found = re.compile(LEVEL + "audit: " + pattern + "$")
    return [m for line in log.read_text().splitlines() if (m := found.match(line))]


async def one_line(log: Path, pattern: str) -> re.Match[str]:
    await until(lambda: bool(audit_lines(log, pattern)), within=60)
    await asyncio.sleep(1)  # five more looks at the trail: none may log it again
    [match] = audit_lines(log, pattern)
    return match


async def test_operator_actions_and_rotation_decisions_are_logged_once_at_their_level(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    for ip in ("127.0.0.21", "127.0.0.22"):
        rbldnsd.delist_ip(ip)  # 127.0.0.20 stays listed: retired, 127.0.0.21 sends on
    smtp_sink.script("later@rcpt.test", "451 4.7.1 later")
    config = relay_lab.config(retry='["1h"]')
    log_file = tmp_path / "hrmonitor.log"
    daemon = await relay_lab.start(config, log_file=log_file)

    # The daemon's own decision: routine (the pool keeps its minimum), INFO, once: the
    # applier's line, not the tail's as well.
    retired = await one_line(
        log_file,
        r"kind=state ip=127\.0\.0\.20 pool=high-risk from=active to=retired"
        r" actor=rotation\.\S+ origin=\S+ reason=\".+\"( id=\d+)?",  # either writer's line
    )
    assert retired.group("level") == "INFO"
    assert "origin=command" not in retired.group(0)

    # An operator's action from another process: read from the trail, INFO, once.
    await asyncio.to_thread(
        hrmonitor_process, config, "ip", "disable", "127.0.0.11", "--reason", "NIC swap, ticket 42"
    )
    disabled = await one_line(
        log_file,
        r"kind=state ip=127\.0\.0\.11 pool=normal from=active to=disabled"
        r" actor=operator:\S+ origin=command reason=\"NIC swap, ticket 42\" id=\d+",
    )
    assert disabled.group("level") == "INFO"

    # A queue action: a deferred message held by the operator.
    out = await swaks(daemon.port, "--from", "a@contoso.test", "--to", "later@rcpt.test")
    queued = re.search(r"queued as (\w+)", out)
    assert queued is not None, out
    qid = queued.group(1)
    await until(lambda: "status=deferred" in log_file.read_text(), within=60)
    await asyncio.to_thread(
        hrmonitor_process, config, "queue", "hold", qid, "--reason", "look first"
    )
    held = await one_line(
        log_file,
        rf"kind=queue-hold queue_id={qid} pool=normal from=deferred to=held"
        r" actor=operator:\S+ origin=command reason=\"look first\" id=\d+",
    )
    assert held.group("level") == "INFO"
    assert state_of(tmp_path, "127.0.0.11") == "disabled"
    assert await asyncio.to_thread(daemon.stop) == 0
    # Nothing about these IPs at WARNING or above from the rotation or the trail.
    loud = [
        line for line in log_file.read_text().splitlines()
        if re.match(r"\S+ (WARNING|ERROR|CRITICAL) hrmonitor\.services\.(rotation|audit)", line)
    ]  # fmt: skip
    assert loud == []

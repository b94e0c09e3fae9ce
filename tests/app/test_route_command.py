"""``hrmonitor route FILE``: the decision explained from a real config and loopback DNS."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from hrmonitor.cli.route import route_command
from tests.fixtures.app_config import make_config
from tests.fixtures.dns_server import DnsTestServer

SHIPPED = Path(__file__).parents[2] / "rules" / "routing.toml"


def config(tmp_path: Path, dns_server: DnsTestServer, extra: str = "") -> Path:
    routing = f'[routing]\nrules = ["{SHIPPED}"]\n'
    tenants = '[[tenants]]\nname = "contoso"\nnetworks = ["127.0.0.0/8"]\n'
    tenants += 'domains = ["contoso.example"]\n'
    return make_config(
        tmp_path,
        nameserver=(dns_server.host, dns_server.port),
        routing=routing,
        tenants=tenants,
        extra=extra,
    )


def message(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "message.eml"
    path.write_bytes(text.replace("\n", "\r\n").encode())
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(route_command, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout


def test_route_json_has_pool_reasons_and_facts_for_a_spam_scored_message(
    tmp_path: Path, dns_server: DnsTestServer
):
    dns_server.add("contoso.example", "MX", "10 mx.contoso.example.")
    cfg = config(tmp_path, dns_server)
    msg = message(tmp_path, "From: a@contoso.example\nTo: b@rcpt.test\nX-Spam-Score: 8.1\n\nhi\n")
    code, out = run("--config", str(cfg), "--json", str(msg))
    assert code == 0
    data = json.loads(out)
    assert data["pool"] == "high-risk"
    assert data["reasons"][0]["rule"] == "spam-score"
    assert data["facts"]["mail_from"] == "a@contoso.example"
    assert data["facts"]["rcpts"] == ["b@rcpt.test"]
    assert data["facts"]["tenant"] == "contoso"


def test_route_with_envelope_options_and_untrusted_client(
    tmp_path: Path, dns_server: DnsTestServer
):
    dns_server.add("contoso.example", "A", "192.0.2.1")
    cfg = config(tmp_path, dns_server)
    msg = message(tmp_path, "From: a@contoso.example\nX-Spam-Score: 8.1\n\nhi\n")
    code, out = run(
        "--config", str(cfg), "--json", "--mail-from", "a@contoso.example",
        "--rcpt", "x@rcpt.test", "--rcpt", "y@rcpt.test", "--client", "192.0.2.77", str(msg),
    )  # fmt: skip
    data = json.loads(out)
    assert (code, data["pool"], data["reasons"]) == (0, "normal", [])
    assert data["facts"]["recipient_count"] == 2
    assert data["facts"]["spam_score"] is None


def test_route_text_output_names_the_pool_and_every_reason(
    tmp_path: Path, dns_server: DnsTestServer
):
    cfg = config(tmp_path, dns_server)
    msg = message(tmp_path, "Return-Path: <>\nFrom: MAILER-DAEMON@contoso.example\n\nbounce\n")
    code, out = run("--config", str(cfg), "--rcpt", "b@rcpt.test", str(msg))
    assert code == 0
    assert "pool: high-risk (high)" in out
    assert "null-sender: null reverse-path" in out
    assert dns_server.queries == []  # the null sender needs no lookup

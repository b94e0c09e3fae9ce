"""``hrmonitor route FILE``: the decision explained from a real config and loopback DNS."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from hrmonitor.cli.route import route_command
from tests.fixtures.app_config import make_config
from tests.fixtures.dns_server import DnsTestServer

SHIPPED = Path(__file__).parents[2] / "rules" / "routing.toml"


def config(
    tmp_path: Path, dns_server: DnsTestServer, extra: str = "", users: str = "", listener: str = ""
) -> Path:
    """Tenant contoso relays from 127.0.0.0/8 and 192.0.2.0/24 (not a trusted filter)."""
    routing = f'[routing]\nrules = ["{SHIPPED}"]\n'
    tenants = '[[tenants]]\nname = "contoso"\nnetworks = ["127.0.0.0/8", "192.0.2.0/24"]\n'
    tenants += f'domains = ["contoso.example"]\n{users}'
    return make_config(
        tmp_path,
        nameserver=(dns_server.host, dns_server.port),
        routing=routing,
        tenants=tenants,
        extra=extra,
        listener=listener,
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
) -> None:
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
) -> None:
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
    # The untrusted client's score header was ignored: said so, and why.
    assert data["facts"]["spam_headers_ignored"] == ["X-Spam-Score"]
    [ignored] = data["headers_ignored"]
    assert (ignored["header"], ignored["value"]) == ("X-Spam-Score", "8.1")
    assert "192.0.2.77 is not in [routing] trusted_filters" in ignored["why"]


def test_route_refuses_a_client_the_listener_refuses(
    tmp_path: Path, dns_server: DnsTestServer
) -> None:
    cfg = config(tmp_path, dns_server)
    msg = message(tmp_path, "From: a@contoso.example\nTo: b@rcpt.test\n\nhi\n")
    code, out = run("--config", str(cfg), "--json", "--client", "10.1.1.1", str(msg))
    assert code == 1
    data = json.loads(out)
    assert data["pool"] is None
    assert data["refused"]["reply"] == "550 5.7.1 relaying denied"
    assert "10.1.1.1 is in no tenant's networks" in data["refused"]["why"]
    code, out = run("--config", str(cfg), "--client", "10.1.1.1", str(msg))
    assert code == 1
    assert out.startswith("refused: 550 5.7.1 relaying denied")
    assert "pool:" not in out
    assert dns_server.queries == []  # a refused message is not routed


def test_route_accepts_an_authenticated_tenant_user_from_anywhere(
    tmp_path: Path, dns_server: DnsTestServer
) -> None:
    from hrmonitor.core.credentials import hash_password
    from tests.fixtures.smtp_sink import self_signed_files

    dns_server.add("contoso.example", "MX", "10 mx.contoso.example.")
    cert, key = self_signed_files(tmp_path)
    (tmp_path / "auth.txt").write_text(f"alice:{hash_password('pw', b'0123456789abcdef')}\n")
    listener = f'tls_cert = "{cert}"\ntls_key = "{key}"\nauth_file = "auth.txt"\n'
    cfg = config(tmp_path, dns_server, users='users = ["alice", "carol"]\n', listener=listener)
    msg = message(tmp_path, "From: a@contoso.example\nTo: b@rcpt.test\n\nhi\n")
    args = ("--config", str(cfg), "--json", "--client", "10.1.1.1")
    code, out = run(*args, "--auth-user", "alice", str(msg))
    assert code == 0
    data = json.loads(out)
    assert (data["pool"], data["refused"], data["facts"]["tenant"]) == ("normal", None, "contoso")
    assert data["accepted"] == "AUTH user alice relays for tenant contoso"
    for user in ("bob", "carol"):  # in no tenant's users; a tenant user without a password
        code, out = run(*args, "--auth-user", user, str(msg))
        assert code == 1
        assert json.loads(out)["refused"]["reply"] == "535 5.7.8 Authentication failed"


def test_route_text_output_names_the_pool_and_every_reason(
    tmp_path: Path, dns_server: DnsTestServer
) -> None:
    cfg = config(tmp_path, dns_server)
    msg = message(tmp_path, "Return-Path: <>\nFrom: MAILER-DAEMON@contoso.example\n\nbounce\n")
    code, out = run("--config", str(cfg), "--rcpt", "b@rcpt.test", str(msg))
    assert code == 0
    assert "pool: high-risk (high)" in out
    assert "null-sender: null reverse-path" in out
    assert dns_server.queries == []  # the null sender needs no lookup

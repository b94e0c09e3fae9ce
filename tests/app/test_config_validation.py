"""Bad input: every problem in one run, one line each (file: key: problem), exit 2, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hrmonitor.cli import main

BASE = """
[pools.normal]
risk = "normal"
ips = ["127.0.0.10"]

[pools.high-risk]
risk = "high"
ips = ["127.0.0.20", "127.0.0.21", "127.0.0.22"]
"""


def config_check(path: Path, *more: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["config", "check", "--config", str(path), *more])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr.splitlines()


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "config.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[dnsbl]\ninterval = "0s"\n', "dnsbl.interval", "longer than 0"),
        ('[delivery]\nretry = ["0s"]\n', "delivery.retry[0]", "longer than 0"),
        ('[delivery]\nretry = ["1m", "99999999999999999999d"]\n', "delivery.retry[1]", "too long"),
        ('[rotation]\nbind_pause = "10000000d"\n', "rotation.bind_pause", "longer than 366d"),
        (
            '[[alerts]]\ntype = "webhook"\nurl = "http://127.0.0.1:9/"\ntimeout = "0s"\n',
            "alerts[0].timeout",
            "longer than 0",
        ),
        (
            '[[alerts]]\ntype = "webhook"\nurl = "http://127.0.0.1:9/"\ntimeout = "10000000d"\n',
            "alerts[0].timeout",
            "longer than 1h",
        ),
        ('[[alerts]]\ntype = "email"\nto = [""]\n', "alerts[0].to[0]", "not a mail address"),
        ('[routing]\nrspamd_url = "/nonexistent/file.toml"\n', "routing.rspamd_url", "http"),
        ('[routing]\nspam_headers = ["X-Spam-Score", " "]\n', "routing.spam_headers[1]", "header"),
        ('[[tenants]]\nname = "t"\ndomains = [""]\n', "tenants[0].domains[0]", "domain"),
        (
            "[limits]\nrecipients_per_hour = 9223372036854775807\n",
            "limits.recipients_per_hour",
            "less than or equal",
        ),
        ('[database]\nurl = "hrmonitor.db"\n', "database.url", "not a database URL"),
    ],
)
def test_a_bad_value_exits_2_naming_key_and_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    code, lines = config_check(write(tmp_path, BASE + text))
    assert code == 2
    assert any(f"config.toml: {key}: " in line and problem in line for line in lines), lines


@pytest.mark.parametrize(
    ("pool_text", "key", "problem"),
    [
        ('interval = "0s"\n', "pools.high-risk.interval", "longer than 0"),
        ("min_active = true\n", "pools.high-risk.min_active", "valid integer"),
        ("min_active = 9\n", "pools.high-risk", "only 3 IP(s)"),
        ("warmup = [{ daily_cap = true }]\n", "pools.high-risk.warmup[0].daily_cap", "integer"),
    ],
)
def test_a_bad_pool_value_is_refused_not_defaulted(
    tmp_path: Path, pool_text: str, key: str, problem: str
) -> None:
    code, lines = config_check(write(tmp_path, BASE + pool_text))
    assert code == 2
    assert any(f": {key}: " in line and problem in line for line in lines), lines


def test_every_problem_is_shown_one_line_each(tmp_path: Path) -> None:
    text = BASE.replace('risk = "normal"', 'risk = "normal"\nbogus = 1') + (
        '[dnsbl]\ninterval = "0s"\n[delivery]\nretry = ["0s"]\n[listener]\nhostname = ""\n'
    )
    code, lines = config_check(write(tmp_path, text))
    assert code == 2
    keys = [line.split(": ")[2] for line in lines]
    assert keys == [
        "dnsbl.interval", "pools.normal.bogus", "listener.hostname", "delivery.retry[0]"
    ]  # fmt: skip
    assert all(line.startswith(f"hrmonitor: {tmp_path / 'config.toml'}: ") for line in lines)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'[pools.normal]\nrisk = "norm\xe9l"\n', "not UTF-8"),
        (b"x = " + b"{a = " * 2000 + b"1" + b"}" * 2000 + b"\n", "nested too deeply"),
        (b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    ],
    ids=["non-utf8", "deep-inline-tables", "deep-arrays"],
)
def test_unreadable_config_text_is_one_line_not_a_traceback(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    code, lines = config_check(write(tmp_path, content))
    assert code == 2
    assert len(lines) == 1
    assert problem in lines[0]


def test_switching_off_a_rule_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    mine = tmp_path / "my-routing.toml"
    mine.write_text("[rules.spam-scor]\nenabled = false\n")  # typo of the shipped spam-score
    path = write(tmp_path, BASE + '[routing]\nrules = ["my-routing.toml"]\n')
    code, lines = config_check(path)
    assert code == 2
    assert any(f"{mine}: rules.spam-scor.enabled: switches off no rule" in ln for ln in lines)
    result = CliRunner().invoke(main, ["rules", "check", str(mine)])
    assert result.exit_code == 2
    assert "spam-scor" in result.stderr


def test_switching_off_a_pattern_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    mine = tmp_path / "my-feedback.toml"
    mine.write_text("[patterns.yahoo-b1]\nenabled = false\n")
    path = write(tmp_path, BASE + '[delivery]\nfeedback = ["my-feedback.toml"]\n')
    code, lines = config_check(path)
    assert code == 2
    assert any("patterns.yahoo-b1.enabled: switches off no pattern" in line for line in lines)


def test_a_missing_rule_file_names_the_config_key_that_set_it(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + '[routing]\nrules = ["mine.toml"]\n[dnsbl]\ncatalogue = ["x"]\n')
    code, lines = config_check(path)
    assert code == 2
    assert f"hrmonitor: {path}: routing.rules[0]: {tmp_path / 'mine.toml'}: no such file" in lines
    assert f"hrmonitor: {path}: dnsbl.catalogue[0]: {tmp_path / 'x'}: no such file" in lines


def test_a_routing_rule_naming_no_tenant_is_an_error(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text('[rules.bulk]\ntenant = "contso"\nrisk = "high"\n')
    path = write(tmp_path, BASE + '[routing]\nrules = ["mine.toml"]\n')
    code, lines = config_check(path)
    assert code == 2
    assert any("rules.bulk.tenant: names no configured tenant: 'contso'" in ln for ln in lines)


def test_a_database_in_a_missing_directory_names_the_key_and_path(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + '[database]\nurl = "sqlite:///no/such/dir/h.db"\n')
    code, lines = config_check(path)
    assert code == 2
    assert any(
        f"database.url: {tmp_path / 'no/such/dir/h.db'}: the directory" in ln for ln in lines
    )
    result = CliRunner().invoke(main, ["report", "--config", str(path)])
    assert result.exit_code == 2
    assert "database.url" in result.stderr


def test_the_metrics_endpoint_on_the_listeners_address_is_a_conflict(tmp_path: Path) -> None:
    text = BASE + '[listener]\nbind = "127.0.0.1:2599"\n[metrics]\nbind = "127.0.0.1:2599"\n'
    code, lines = config_check(write(tmp_path, text))
    assert code == 2
    assert any("metrics.bind: 127.0.0.1:2599 is the SMTP listener's address" in ln for ln in lines)


def test_a_port_in_use_stops_run_before_anything_listens(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        text = BASE + (
            f'[database]\nurl = "sqlite:///h.db"\n[listener]\nbind = "127.0.0.1:0"\n'
            f'[metrics]\nbind = "127.0.0.1:{port}"\n[dns]\nnameservers = ["127.0.0.1"]\n'
            "port = 9\n"
        )
        path = write(tmp_path, text)
        run = subprocess.run(
            [sys.executable, "-m", "hrmonitor", "run", "--config", str(path)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert run.returncode == 2, run.stderr
        assert f"{path}: metrics.bind: cannot listen on 127.0.0.1:{port}" in run.stderr
        assert "Traceback" not in run.stderr
        assert "SMTP on" not in run.stderr  # the listener never started
        code, lines = config_check(path, "--ports")
        assert code == 2
        assert any("metrics.bind: cannot listen" in line for line in lines)

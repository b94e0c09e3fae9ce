"""Relative paths in a config mean "next to the config file"; shipped rules are package data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from hrmonitor.adapters.rule_files import load_bounce_patterns
from hrmonitor.app.build import bounce_patterns, build_router, zone_lists
from hrmonitor.cli import main
from hrmonitor.config.files import RuleKind, shipped_rules
from hrmonitor.config.loading import load_config

REPO = Path(__file__).resolve().parents[2]

BASE = """
[database]
url = "sqlite:///hrmonitor.db"

[pools.normal]
risk = "normal"
ips = ["127.0.0.10"]

[pools.high-risk]
risk = "high"
ips = ["127.0.0.20"]
"""


@pytest.fixture
def etc_and_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A config in ``etc/`` (no rules/ next to it) and a working directory elsewhere."""
    etc, elsewhere = tmp_path / "etc", tmp_path / "elsewhere"
    etc.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return etc, elsewhere


def test_the_sqlite_file_is_next_to_the_config_not_in_the_working_directory(
    etc_and_elsewhere: tuple[Path, Path],
) -> None:
    etc, elsewhere = etc_and_elsewhere
    config = etc / "config.toml"
    config.write_text(BASE)
    result = CliRunner().invoke(main, ["--config", str(config), "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (etc / "hrmonitor.db").is_file()
    assert not (elsewhere / "hrmonitor.db").exists()
    assert load_config(config).database.url == f"sqlite:///{etc / 'hrmonitor.db'}"


def test_an_ip_retired_from_elsewhere_is_retired_in_the_daemons_database(
    etc_and_elsewhere: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    etc, elsewhere = etc_and_elsewhere
    config = etc / "config.toml"
    config.write_text(BASE)
    monkeypatch.chdir(etc)  # where the daemon runs
    assert CliRunner().invoke(main, ["--config", "config.toml", "db", "upgrade"]).exit_code == 0
    monkeypatch.chdir(elsewhere)
    retire = ["--config", str(config), "ip", "retire", "127.0.0.20", "--reason", "x", "--force"]
    assert CliRunner().invoke(main, retire).exit_code == 0
    monkeypatch.chdir(etc)
    history = CliRunner().invoke(main, ["--config", "config.toml", "history", "127.0.0.20"])
    assert "retired" in history.stdout
    assert not (elsewhere / "hrmonitor.db").exists()


@pytest.mark.parametrize(
    "keys",
    [
        "",  # the defaults: shipped rules only
        '[dnsbl]\ncatalogue = ["rules/dnsbl.toml"]\n'
        '[routing]\nrules = ["rules/routing.toml"]\n'
        '[delivery]\nfeedback = ["rules/feedback.toml"]\n'
        '[bounces]\npatterns = "rules/bounce.toml"\n',
    ],
    ids=["defaults", "old-style-names"],
)
def test_a_config_away_from_the_repository_finds_the_shipped_rules(
    etc_and_elsewhere: tuple[Path, Path], keys: str
) -> None:
    etc, _ = etc_and_elsewhere
    config_path = etc / "config.toml"
    config_path.write_text(BASE + keys)
    result = CliRunner().invoke(main, ["config", "check", "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    config = load_config(config_path)
    assert [z.key for z in zone_lists(config)][:2] == ["spamhaus-zen", "spamcop"]
    assert "spam-score" in {rule.name for rule in build_router(config).rules}
    assert bounce_patterns(config).patterns
    # the daemon's patterns are the CLI's: [[command]] tables (phase evidence) too
    shipped = load_bounce_patterns(shipped_rules(RuleKind.BOUNCE))
    assert bounce_patterns(config).commands == shipped.commands
    for kind in RuleKind:
        assert [f.path for f in config.rule_files(kind)] == [shipped_rules(kind)]


def test_the_operators_files_are_layered_after_the_shipped_ones(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "routing.toml").write_text(
        '[rules.spam-score]\nspam_score_at_least = 8.0\nrisk = "high"\n'
        "[rules.null-sender]\nenabled = false\n"
    )
    (tmp_path / "mine" / "bounce.toml").write_text(
        'version = 1\n[[pattern]]\nreason = "policyviolation"\nmatch = ["mailbox is full"]\n'
    )
    path = tmp_path / "config.toml"
    path.write_text(
        BASE
        + '[routing]\nrules = ["mine/routing.toml"]\n[bounces]\npatterns = "mine/bounce.toml"\n'
    )
    config = load_config(path)
    files = config.rule_files(RuleKind.ROUTING)
    assert [f.key for f in files] == ["", "routing.rules[0]"]
    rules = {rule.name: rule for rule in build_router(config).rules}
    assert "null-sender" not in rules
    assert rules["spam-score"].spam_score_at_least == 8.0
    assert "sender-domain-without-records" in rules  # the shipped rest stays
    # the operator's bounce patterns are read with the shipped ones
    reasons = {str(r) for r in bounce_patterns(config).reasons("mailbox is full")}
    assert {"policyviolation", "mailboxfull"} <= reasons


def _copy_source(destination: Path) -> None:
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, destination / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "hrmonitor", destination / "hrmonitor", ignore=ignore)
    shutil.copytree(REPO / "rules", destination / "rules", ignore=ignore)


@pytest.mark.slow
def test_a_non_editable_install_ships_the_rules_and_uses_them(tmp_path: Path) -> None:
    source, wheels, site, elsewhere = (tmp_path / n for n in ("src", "wheels", "site", "run"))
    for directory in (source, elsewhere):
        directory.mkdir()
    _copy_source(source)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)]  # setuptools>=68
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("hrmonitor-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in RuleKind:
        assert f"hrmonitor/rules/{kind}.toml" in names
    install = [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    (elsewhere / "config.toml").write_text(BASE)
    # the installed copy first on the path, run from a directory with no rules/
    env = {**os.environ, "PYTHONPATH": str(site)}
    show = "import hrmonitor.config.files as f; print(f.shipped_rules(f.RuleKind.DNSBL))"
    where = subprocess.run(
        [sys.executable, "-c", show],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert where.stdout.strip() == str(site / "hrmonitor" / "rules" / "dnsbl.toml")
    check = subprocess.run(
        [sys.executable, "-m", "hrmonitor", "--config", "config.toml", "rules", "check"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "4 rule file(s) valid" in check.stdout


def test_a_checkout_without_the_rules_package_uses_its_own_rules_directory(
    tmp_path: Path,
) -> None:
    """An editable install made before hrmonitor.rules was mapped (a checkout pulled without
    ``pip install -e .`` again) has no such package: the checkout's rules/ is the shipped one,
    not a ModuleNotFoundError traceback at start-up."""
    root = Path(__file__).resolve().parents[2]
    show = (
        f"import sys; sys.path.insert(0, {str(root)!r}); "
        "import hrmonitor.config.files as f; print(f.shipped_rules(f.RuleKind.BOUNCE))"
    )
    # -S: no site-packages, so no installed finder maps hrmonitor.rules
    where = subprocess.run(
        [sys.executable, "-S", "-c", show],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip() == str(root / "rules" / "bounce.toml")

"""Everything a config needs besides its own file, checked in one pass before anything starts.

``load_config`` checks the config file itself. This checks what it points at:
each rule file (a missing one names the config key that set it), the zones
against the catalogue, rules against the pools and tenants, the auth and TLS
files, the SQLite database's directory, the surge settings' fit, and the
listener and metrics addresses (a conflict between them always; a port in use
when ``ports`` is asked, as ``hrmonitor run`` does before it listens). Every
problem is collected, one ConfigError each; ``hrmonitor config check``,
``hrmonitor run`` and a SIGHUP reload use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

from hrmonitor.adapters.dns.dnsbl.engine import read_catalogue
from hrmonitor.adapters.ports import listen_problem
from hrmonitor.adapters.rule_files import (
    load_bounce_patterns,
    load_feedback_files,
    load_routing_files,
)
from hrmonitor.app.build import surge_settings
from hrmonitor.config.files import RuleKind, sqlite_file
from hrmonitor.config.loading import Config
from hrmonitor.config.sections import split_address
from hrmonitor.core.credentials import parse_auth_file
from hrmonitor.core.routing.rules import check_rule_pools
from hrmonitor.errors import ConfigError


def config_problems(config: Config, *, ports: bool = False) -> list[ConfigError]:
    """Every problem of what ``config`` points at (empty: ready to run)."""
    problems: list[ConfigError] = []
    missing = _missing_rule_files(config)
    problems.extend(missing)
    if not missing:
        problems.extend(_rule_problems(config))
    problems.extend(_file_problems(config))
    _collect(problems, lambda: surge_settings(config))
    problems.extend(_address_problems(config, ports=ports))
    return problems


def _collect(problems: list[ConfigError], check: Callable[[], object]) -> None:
    try:
        check()
    except ConfigError as error:
        problems.extend(error.problems)
    except RecursionError:
        problems.append(ConfigError("rule file", "", "values nested too deeply"))


def _missing_rule_files(config: Config) -> list[ConfigError]:
    problems = []
    for kind in RuleKind:
        for rule_file in config.rule_files(kind):
            if rule_file.path.is_file():
                continue
            if rule_file.shipped:
                problem = "the shipped rule file is missing: reinstall hrmonitor"
                problems.append(ConfigError(str(rule_file.path), "", problem))
            else:
                where = f"{rule_file.path}: no such file"
                problems.append(ConfigError(str(config.source), rule_file.key, where))
    return problems


def _paths(config: Config, kind: RuleKind) -> list[str]:
    return [str(rule_file.path) for rule_file in config.rule_files(kind)]


def _rule_problems(config: Config) -> list[ConfigError]:
    problems: list[ConfigError] = []
    source = str(config.source)

    def zones() -> None:
        catalogue = read_catalogue(_paths(config, RuleKind.DNSBL))
        catalogue.select(config.dnsbl.zones, config.dnsbl.dqs_key, config_file=source)

    def routing() -> None:
        rules = load_routing_files(_paths(config, RuleKind.ROUTING))
        check_rule_pools(rules, config.core_pools())
        tenants = {tenant.name for tenant in config.tenants}
        for rule in rules:
            for name in rule.tenants:
                if name not in tenants:
                    problem = f"names no configured tenant: {name!r}"
                    problems.append(ConfigError(rule.file, f"rules.{rule.name}.tenant", problem))

    def bounces() -> None:
        for path in _paths(config, RuleKind.BOUNCE):
            load_bounce_patterns(path)

    _collect(problems, zones)
    _collect(problems, routing)
    _collect(problems, lambda: load_feedback_files(_paths(config, RuleKind.FEEDBACK)))
    _collect(problems, bounces)
    return problems


def _file_problems(config: Config) -> list[ConfigError]:
    problems: list[ConfigError] = []
    source = str(config.source)
    listener = config.listener
    for key in ("tls_cert", "tls_key", "auth_file"):
        value = getattr(listener, key)
        if not value:
            continue
        path = config.path(value)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            problems.append(ConfigError(source, f"listener.{key}", f"{path}: {reason}"))
            continue
        if key == "auth_file":
            _collect(problems, partial(parse_auth_file, text, str(path)))
    database = sqlite_file(config.database.url)
    if database is not None:
        directory = database.parent
        if not directory.is_dir():
            problem = f"{database}: the directory {directory} does not exist"
            problems.append(ConfigError(source, "database.url", problem))
        elif not os.access(directory, os.W_OK) and not os.access(database, os.W_OK):
            problem = f"{database}: the directory {directory} is not writable"
            problems.append(ConfigError(source, "database.url", problem))
    return problems


def _address_problems(config: Config, *, ports: bool) -> list[ConfigError]:
    source = str(config.source)
    binds = {"listener.bind": config.listener.bind}
    if config.metrics.bind:
        binds["metrics.bind"] = config.metrics.bind
    addresses = {key: split_address(bind) for key, bind in binds.items()}
    problems: list[ConfigError] = []
    metrics = addresses.get("metrics.bind")
    if metrics is not None and metrics == addresses["listener.bind"] and metrics[1] != 0:
        clash = f"{config.metrics.bind} is the SMTP listener's address too"
        problems.append(ConfigError(source, "metrics.bind", clash))
        return problems
    if ports:
        for key, (host, port) in addresses.items():
            refused = listen_problem(host, port)
            if refused is not None:
                problems.append(ConfigError(source, key, refused))
    return problems

"""TOML -> a frozen, validated :class:`Config`.

Every problem is reported as :class:`~hrmonitor.errors.ConfigError` naming the
file, the key path (``pools.high-risk.ips[1]``) and the problem; the CLI turns
that into exit status 2 before anything starts. Unknown keys are errors, so a
typo never silently falls back to a default.

Every relative path inside the config (the SQLite database, rule files, the
auth and TLS files) is resolved against the directory of the config file, so
every command acts on the same files whatever directory it is started from
(:mod:`hrmonitor.config.files`). Every problem is reported, not just the first:
:class:`~hrmonitor.errors.ConfigProblems` holds one line per problem.

The sections, one model per TOML table, are in :mod:`hrmonitor.config.sections`;
here they are assembled and the checks that need the whole file are made.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from hrmonitor.config.files import (
    DEFAULT_CONFIG_PATH,
    RuleFile,
    RuleKind,
    database_url,
    resolve,
    rule_files,
)
from hrmonitor.config.sections import (
    AlertConfig,
    AlertingConfig,
    BouncesConfig,
    DatabaseConfig,
    DeliveryConfig,
    DnsblConfig,
    DnsConfig,
    LimitsConfig,
    ListenerConfig,
    MetricsConfig,
    NodeConfig,
    PoolConfig,
    RotationConfig,
    RoutingConfig,
    Section,
    SurgeConfig,
    TenantConfig,
    VerpConfig,
)
from hrmonitor.core.model import (
    Pool,
    PoolPolicy,
    RiskClass,
    WarmupStage,
    canonical_ip,
)
from hrmonitor.errors import ConfigError, raise_problems


class Config(Section):
    """The whole validated configuration. ``source`` is the file it came from."""

    source: Path = Path(DEFAULT_CONFIG_PATH)
    database: DatabaseConfig = DatabaseConfig()
    dns: DnsConfig = DnsConfig()
    dnsbl: DnsblConfig = DnsblConfig()
    pools: dict[str, PoolConfig]
    listener: ListenerConfig = ListenerConfig()
    tenants: tuple[TenantConfig, ...] = ()
    routing: RoutingConfig = RoutingConfig()
    limits: LimitsConfig = LimitsConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    rotation: RotationConfig = RotationConfig()
    node: NodeConfig = NodeConfig()
    alerts: tuple[AlertConfig, ...] = ()
    alerting: AlertingConfig = AlertingConfig()
    metrics: MetricsConfig = MetricsConfig()
    bounces: BouncesConfig = BouncesConfig()
    surge: SurgeConfig = SurgeConfig()
    verp: VerpConfig = VerpConfig()

    def path(self, relative: str) -> Path:
        """A path from the config, resolved against the config file's directory."""
        return resolve(self.source.parent, relative)

    def rule_files(self, kind: RuleKind) -> tuple[RuleFile, ...]:
        """The shipped rule file of ``kind`` first, then the operator's, with their keys."""
        names = {
            RuleKind.DNSBL: self.dnsbl.catalogue,
            RuleKind.ROUTING: self.routing.rules,
            RuleKind.FEEDBACK: self.delivery.feedback,
            RuleKind.BOUNCE: (self.bounces.patterns,) if self.bounces.patterns else (),
        }[kind]
        return rule_files(self.source.parent, kind, names)

    def core_pools(self) -> tuple[Pool, ...]:
        return tuple(
            Pool(
                name=name,
                risk=pool.risk,
                ips=pool.ips,
                standby=pool.standby,
                interval=pool.interval or self.dnsbl.interval,
                policy=PoolPolicy(
                    on_listing=pool.on_listing,
                    retire_at=pool.retire_at,
                    min_active=pool.min_active,
                    cooldown=pool.cooldown,
                    when_exhausted=pool.when_exhausted,
                    warmup=tuple(
                        WarmupStage(s.daily_cap, s.min_delivery_rate) for s in pool.warmup
                    ),
                    idle_rewarm=pool.idle_rewarm,
                ),
            )
            for name, pool in self.pools.items()
        )

    def pool_of(self, ip: str) -> str | None:
        canonical = canonical_ip(ip)
        for name, pool in self.pools.items():
            if canonical in pool.ips or canonical in pool.standby:
                return name
        return None


def _cross_checks(config: Config) -> list[tuple[str, str]]:
    """Problems that need the whole file: (key path, problem)."""
    problems: list[tuple[str, str]] = []
    risks = [pool.risk for pool in config.pools.values()]
    if RiskClass.NORMAL not in risks:
        problems.append(("pools", "needs one pool with risk = 'normal'"))
    if risks.count(RiskClass.NORMAL) > 1:
        problems.append(("pools", "only one pool may have risk = 'normal'"))
    if RiskClass.HIGH not in risks:
        problems.append(("pools", "needs at least one pool with risk = 'high'"))

    seen: dict[str, str] = {}
    for name, pool in config.pools.items():
        for field_name in ("ips", "standby"):
            for index, ip in enumerate(getattr(pool, field_name)):
                key = f"pools.{name}.{field_name}[{index}]"
                if ip in seen:
                    problems.append(
                        (key, f"{ip} is already in {seen[ip]}: an IP belongs to one pool")
                    )
                else:
                    seen[ip] = f"pools.{name}.{field_name}"
    problems.extend(_shared_v6_prefixes(config))

    pool_names = set(config.pools)
    hold = config.routing.on_dns_unknown
    if hold not in pool_names:
        problems.append(("routing.on_dns_unknown", f"names no configured pool: {hold!r}"))
    relay = config.routing.relay_pool
    if relay and (relay not in pool_names or config.pools[relay].risk is not RiskClass.RELAY):
        problems.append(
            ("routing.relay_pool", f"{relay!r} is not a configured pool of risk 'relay'")
        )
    if config.listener.auth_file and not config.listener.tls_cert:
        problem = "SMTP AUTH is offered only over TLS: set listener.tls_cert and tls_key too"
        problems.append(("listener.auth_file", problem))
    for index, tenant in enumerate(config.tenants):
        if tenant.users and not config.listener.auth_file:
            problem = "users can log in only with [listener] auth_file set"
            problems.append((f"tenants[{index}].users", problem))
    names = [tenant.name for tenant in config.tenants]
    if len(set(names)) != len(names):
        problems.append(("tenants", "two tenants share a name"))
    return problems


def _shared_v6_prefixes(config: Config) -> list[tuple[str, str]]:
    """Lists record IPv6 at /64: a normal and a risky pool sharing one would share listings."""
    owners: dict[ipaddress.IPv6Network, tuple[str, RiskClass]] = {}
    problems: list[tuple[str, str]] = []
    for name, pool in config.pools.items():
        for ip in (*pool.ips, *pool.standby):
            address = ipaddress.ip_address(ip)
            if not isinstance(address, ipaddress.IPv6Address) or address.ipv4_mapped:
                continue
            prefix = ipaddress.IPv6Network((address, 64), strict=False)
            other = owners.setdefault(prefix, (name, pool.risk))
            if other[0] != name and RiskClass.NORMAL in (other[1], pool.risk):
                problems.append(
                    (
                        f"pools.{name}",
                        f"{ip} shares the /64 {prefix} with pool {other[0]!r}: blocklists "
                        "list IPv6 by /64, so a high-risk listing would hit the normal pool",
                    )
                )
    return problems


def _key_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in part:  # pydantic's validator frames, e.g. "function-after[...]"
            continue
        else:
            path += f".{part}" if path else str(part)
    return path


def _problem(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    problem = error["msg"].removeprefix("Value error, ")
    if (
        error["type"] != "value_error"
    ):  # pydantic's own wording says what it wanted, not what it got
        shown = repr(error["input"])
        problem += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    return problem


def parse_config(data: dict[str, Any], source: Path) -> Config:
    """Validate already-parsed TOML. Raises ConfigError naming file, key and problem.

    Every problem found is raised at once (ConfigProblems for more than one);
    the checks that need the whole file run when each section is valid.
    """
    file = str(source)
    if "source" in data:
        raise ConfigError(file, "source", "unknown key")
    try:
        config = Config.model_validate({**data, "source": source})
    except ValidationError as error:
        problems: dict[str, str] = {}
        for detail in error.errors():
            # a union (a URL or "") fails once per member: its first member says it best
            problems.setdefault(_key_path(detail["loc"]), _problem(detail))
        raise_problems([ConfigError(file, key, problem) for key, problem in problems.items()])
        raise AssertionError("unreachable: a ValidationError has errors") from None
    except RecursionError:
        raise ConfigError(file, "", "values nested too deeply") from None
    raise_problems([ConfigError(file, key, problem) for key, problem in _cross_checks(config)])
    resolved = database_url(source.parent, config.database.url)
    if resolved != config.database.url:
        config = config.model_copy(
            update={"database": config.database.model_copy(update={"url": resolved})}
        )
    return config


def load_config(path: str | Path) -> Config:
    """Read and validate a config file. Raises ConfigError (exit status 2 in the CLI)."""
    source = Path(path)
    try:
        text = source.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(str(source), "", "no such file") from None
    except OSError as error:
        raise ConfigError(str(source), "", f"cannot be read: {error.strerror}") from None
    except UnicodeDecodeError as error:
        problem = f"is not UTF-8 text (byte {error.start})"
        raise ConfigError(str(source), "", problem) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(source), "", f"is not valid TOML: {error}") from None
    except RecursionError:
        raise ConfigError(str(source), "", "is not valid TOML: nested too deeply") from None
    return parse_config(data, source)

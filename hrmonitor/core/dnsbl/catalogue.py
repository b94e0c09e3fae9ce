"""The DNSBL zone catalogue: what each list's return codes mean, and which zones are dead.

Pure: this module takes TOML text (or already-parsed TOML tables) together
with the file name used in error messages; reading files is the caller's job.
The file format is a public contract (docs/formats.md "The DNSBL catalogue").
Later files override earlier ones list by list; ``[dead]`` entries and
``[defaults]`` merge key by key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from hrmonitor.core.model import Severity
from hrmonitor.errors import RuleError

_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


class Family(StrEnum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"


class ListKind(StrEnum):
    IP = "ip"
    DOMAIN = "domain"


class CodeClass(StrEnum):
    LISTED = "listed"
    INFO = "info"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class CodeMeaning:
    """What one return code (or range of codes) of a list means."""

    code_class: CodeClass
    tag: str = ""
    severity: Severity | None = None  # set exactly when code_class is LISTED
    note: str = ""


@dataclass(frozen=True, slots=True)
class CodeRange:
    """Return codes ``first..last`` (inclusive, as 32-bit integers) and their meaning."""

    first: int
    last: int
    meaning: CodeMeaning

    def __contains__(self, code: int) -> bool:
        return self.first <= code <= self.last


REFUSAL_CODE = CodeMeaning(CodeClass.ERROR, tag="refused")
_REFUSAL_RANGE = range(
    int(ipaddress.IPv4Address("127.255.255.0")), int(ipaddress.IPv4Address("127.255.255.255")) + 1
)
DEFAULT_UNKNOWN_CODE = CodeMeaning(CodeClass.LISTED, tag="unknown-code", severity=Severity.MEDIUM)


@dataclass(frozen=True, slots=True)
class ZoneList:
    """One DNS list of the catalogue, as queried: ``zone`` is final once selected."""

    key: str
    zone: str
    families: frozenset[Family]
    codes: tuple[CodeRange, ...]
    kind: ListKind = ListKind.IP
    dqs_zone: str = ""
    lookup_url: str = ""
    notes: str = ""
    daily_budget: int | None = None  # queries per day this list tolerates, if it says
    unknown_code: CodeMeaning = DEFAULT_UNKNOWN_CODE
    source: str = ""  # the catalogue file that defined it

    def meaning(self, code: str) -> CodeMeaning:
        """The meaning of a 127/8 return code.

        Codes not in the table get ``unknown_code``, except 127.255.255.0/24:
        lists use that range to refuse a querier (Spamhaus), so an unlisted
        code there is an error, never a listing.
        """
        value = int(ipaddress.IPv4Address(code))
        for entry in self.codes:
            if value in entry:
                return entry.meaning
        if value in _REFUSAL_RANGE:
            return REFUSAL_CODE
        return self.unknown_code


@dataclass(frozen=True, slots=True)
class DeadZone:
    suffix: str
    since: str
    reason: str
    source: str = ""

    def covers(self, zone: str) -> bool:
        zone = zone.lower().rstrip(".")
        return zone == self.suffix or zone.endswith("." + self.suffix)


@dataclass(frozen=True, slots=True)
class Catalogue:
    lists: Mapping[str, ZoneList] = field(default_factory=dict)
    dead: Mapping[str, DeadZone] = field(default_factory=dict)
    unknown_code: CodeMeaning = DEFAULT_UNKNOWN_CODE

    def dead_zone(self, zone: str) -> DeadZone | None:
        """The dead entry covering ``zone`` (equal to it or a suffix of it), if any."""
        for entry in self.dead.values():
            if entry.covers(zone):
                return entry
        return None

    def select(
        self,
        names: Iterable[str],
        dqs_key: str = "",
        keys: Mapping[str, str] | None = None,
        config_file: str = "config.toml",
    ) -> tuple[ZoneList, ...]:
        """The lists named by ``[dnsbl] zones``, ready to query.

        With a ``dqs_key`` a list that has a ``dqs_zone`` is queried there with
        the key filled in. A zone template with ``{key}`` (Abusix) takes its key
        from ``keys[list key]``, falling back to ``dqs_key``. Refuses (RuleError
        naming the list) unknown names, domain lists, dead zones and zone
        templates without a key. ``config_file`` names the file of ``[dnsbl]
        zones`` in the message about an unknown name.
        """
        keys = keys or {}
        chosen: list[ZoneList] = []
        seen: set[str] = set()
        for index, name in enumerate(names):
            if name in seen:
                raise RuleError(config_file, f"dnsbl.zones[{index}]", f"{name!r} is listed twice")
            seen.add(name)
            entry = self.lists.get(name)
            if entry is None:
                known = ", ".join(sorted(self.lists))
                raise RuleError(
                    config_file,
                    f"dnsbl.zones[{index}]",
                    f"{name!r} is not a list of the catalogue (known: {known})",
                )
            where = entry.source or "catalogue"
            if entry.kind is not ListKind.IP:
                raise RuleError(
                    where, f"lists.{name}", "is a domain list: it cannot be queried for pool IPs"
                )
            zone = entry.zone
            if dqs_key and entry.dqs_zone:
                zone = entry.dqs_zone.replace("{key}", dqs_key)
            elif "{key}" in zone:
                key = keys.get(name) or dqs_key
                if not key:
                    raise RuleError(where, f"lists.{name}.zone", f"{zone!r} needs an access key")
                zone = zone.replace("{key}", key)
            dead = self.dead_zone(zone)
            if dead is not None:
                raise RuleError(
                    dead.source or where,
                    f"dead.{_quote(dead.suffix)}",
                    f"list {name!r} ({zone}) is dead since {dead.since}: {dead.reason}",
                )
            chosen.append(replace(entry, zone=zone))
        return tuple(chosen)


def load_catalogue(files: Sequence[tuple[str, str]]) -> Catalogue:
    """Parse and layer catalogue files given as ``(name, TOML text)`` pairs, first to last."""
    catalogue = Catalogue()
    for name, text in files:
        catalogue = layer(catalogue, parse_catalogue(name, _loads(name, text)))
    return catalogue


def check_catalogue(files: Sequence[tuple[str, str]]) -> list[str]:
    """Every problem ``hrmonitor rules check`` reports for these files (empty when valid)."""
    problems: list[str] = []
    for name, text in files:
        try:
            parse_catalogue(name, _loads(name, text))
        except RuleError as exc:
            problems.append(str(exc))
    return problems


def layer(base: Catalogue, over: CatalogueFile) -> Catalogue:
    """``over`` laid on ``base``: whole lists replaced by key, dead zones and defaults merged."""
    unknown = over.unknown_code or base.unknown_code
    lists = {**base.lists, **over.lists}
    return Catalogue(
        lists={key: replace(value, unknown_code=unknown) for key, value in lists.items()},
        dead={**base.dead, **over.dead},
        unknown_code=unknown,
    )


@dataclass(frozen=True, slots=True)
class CatalogueFile:
    """One file's content before layering; ``unknown_code`` is None when it sets no default."""

    lists: Mapping[str, ZoneList]
    dead: Mapping[str, DeadZone]
    unknown_code: CodeMeaning | None


def parse_catalogue(name: str, data: Mapping[str, object]) -> CatalogueFile:
    """One catalogue file's tables. Raises RuleError naming file and key path."""
    _only(name, "", data, {"defaults", "lists", "dead"})
    unknown: CodeMeaning | None = None
    defaults = _table(name, "defaults", data.get("defaults", {}))
    _only(name, "defaults", defaults, {"unknown_code"})
    if "unknown_code" in defaults:
        unknown = _meaning(name, "defaults.unknown_code", defaults["unknown_code"])
        if not unknown.tag:
            unknown = replace(unknown, tag=DEFAULT_UNKNOWN_CODE.tag)
    lists: dict[str, ZoneList] = {}
    for key, value in _table(name, "lists", data.get("lists", {})).items():
        table = _table(name, f"lists.{_quote(key)}", value)
        lists[key] = _zone_list(name, key, table, unknown or DEFAULT_UNKNOWN_CODE)
    dead: dict[str, DeadZone] = {}
    for suffix, value in _table(name, "dead", data.get("dead", {})).items():
        dead[suffix.lower().rstrip(".")] = _dead(name, suffix, value)
    return CatalogueFile(lists=lists, dead=dead, unknown_code=unknown)


# --- field parsers ------------------------------------------------------------------------


def _loads(name: str, text: str) -> Mapping[str, object]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(name, "", f"not valid TOML: {exc}") from exc
    except RecursionError:
        raise RuleError(name, "", "not valid TOML: nested too deeply") from None


def _zone_list(file: str, key: str, data: Mapping[str, object], unknown: CodeMeaning) -> ZoneList:
    path = f"lists.{_quote(key)}"
    allowed = {"zone", "families", "kind", "dqs_zone", "lookup_url", "notes", "codes"}
    _only(file, path, data, allowed | {"daily_budget"})
    if "zone" not in data:
        raise RuleError(file, f"{path}.zone", "missing (every list needs its DNS zone)")
    zone = _zone(file, f"{path}.zone", data["zone"])
    kind_text = _str(file, f"{path}.kind", data.get("kind", "ip"))
    try:
        kind = ListKind(kind_text)
    except ValueError:
        raise RuleError(file, f"{path}.kind", f"{kind_text!r} is not 'ip' or 'domain'") from None
    families = _families(file, f"{path}.families", data.get("families", ["ipv4"]))
    if kind is ListKind.IP and not families:
        raise RuleError(file, f"{path}.families", "an IP list needs 'ipv4' and/or 'ipv6'")
    dqs_zone = _zone(file, f"{path}.dqs_zone", data["dqs_zone"]) if "dqs_zone" in data else ""
    if dqs_zone and "{key}" not in dqs_zone:
        raise RuleError(file, f"{path}.dqs_zone", "must contain '{key}'")
    budget = data.get("daily_budget")
    if budget is not None and (
        not isinstance(budget, int) or isinstance(budget, bool) or budget < 1
    ):
        raise RuleError(file, f"{path}.daily_budget", "must be a positive integer")
    codes = _codes(file, f"{path}.codes", _table(file, f"{path}.codes", data.get("codes", {})))
    return ZoneList(
        key=key,
        zone=zone,
        families=families,
        codes=codes,
        kind=kind,
        dqs_zone=dqs_zone,
        lookup_url=_str(file, f"{path}.lookup_url", data.get("lookup_url", "")),
        notes=_str(file, f"{path}.notes", data.get("notes", "")),
        daily_budget=budget,
        unknown_code=unknown,
        source=file,
    )


def _codes(file: str, path: str, table: Mapping[str, object]) -> tuple[CodeRange, ...]:
    ranges: list[CodeRange] = []
    for text, value in table.items():
        where = f"{path}.{_quote(text)}"
        first_text, _, last_text = text.partition("-")
        first = _code(file, where, first_text)
        last = _code(file, where, last_text) if last_text else first
        if last < first:
            raise RuleError(file, where, "range ends before it starts")
        ranges.append(CodeRange(first, last, _meaning(file, where, value)))
    ranges.sort(key=lambda entry: entry.first)
    for before, after in itertools.pairwise(ranges):
        if after.first <= before.last:
            clash = f"{ipaddress.IPv4Address(after.first)}"
            raise RuleError(file, path, f"code {clash} is covered by two entries")
    return tuple(ranges)


def _code(file: str, where: str, text: str) -> int:
    try:
        address = ipaddress.IPv4Address(text.strip())
    except ValueError:
        raise RuleError(file, where, f"{text.strip()!r} is not an IPv4 address") from None
    if address not in _LOOPBACK:
        raise RuleError(file, where, f"{address} is outside 127.0.0.0/8: never a list answer")
    return int(address)


def _meaning(file: str, where: str, value: object) -> CodeMeaning:
    table = _table(file, where, value)
    _only(file, where, table, {"tag", "class", "severity", "note"})
    class_text = _str(file, f"{where}.class", table.get("class", ""))
    try:
        code_class = CodeClass(class_text)
    except ValueError:
        raise RuleError(
            file, f"{where}.class", f"{class_text!r} is not one of listed, info, error"
        ) from None
    severity: Severity | None = None
    if "severity" in table:
        text = _str(file, f"{where}.severity", table["severity"])
        try:
            severity = Severity(text)
        except ValueError:
            raise RuleError(
                file, f"{where}.severity", f"{text!r} is not one of critical, high, medium, low"
            ) from None
        if code_class is not CodeClass.LISTED:
            raise RuleError(file, f"{where}.severity", "only 'listed' codes have a severity")
    elif code_class is CodeClass.LISTED:
        raise RuleError(file, f"{where}.severity", "missing (a 'listed' code needs a severity)")
    return CodeMeaning(
        code_class=code_class,
        tag=_str(file, f"{where}.tag", table.get("tag", "")),
        severity=severity,
        note=_str(file, f"{where}.note", table.get("note", "")),
    )


def _dead(file: str, suffix: str, value: object) -> DeadZone:
    where = f"dead.{_quote(suffix)}"
    table = _table(file, where, value)
    _only(file, where, table, {"since", "reason"})
    for needed in ("since", "reason"):
        if needed not in table:
            raise RuleError(file, f"{where}.{needed}", "missing")
    since = table["since"]
    if isinstance(since, dt.date):
        since_text = since.isoformat()
    else:
        since_text = _str(file, f"{where}.since", since)
        try:
            dt.date.fromisoformat(since_text)
        except ValueError:
            raise RuleError(file, f"{where}.since", f"{since_text!r} is not a date") from None
    _zone(file, where, suffix)
    return DeadZone(
        suffix=suffix.lower().rstrip("."),
        since=since_text,
        reason=_str(file, f"{where}.reason", table["reason"]),
        source=file,
    )


def _families(file: str, where: str, value: object) -> frozenset[Family]:
    if not isinstance(value, list):
        raise RuleError(file, where, 'must be a list such as ["ipv4", "ipv6"]')
    families: set[Family] = set()
    for index, item in enumerate(value):
        try:
            families.add(Family(item))
        except ValueError:
            raise RuleError(
                file, f"{where}[{index}]", f"{item!r} is not 'ipv4' or 'ipv6'"
            ) from None
    return frozenset(families)


def _zone(file: str, where: str, value: object) -> str:
    text = _str(file, where, value).strip().rstrip(".").lower()
    labels = text.replace("{key}", "key").split(".")
    if len(labels) < 2 or not all(labels) or any(len(label) > 63 for label in labels):
        raise RuleError(file, where, f"{value!r} is not a DNS zone name")
    if any(not all(c.isalnum() or c in "-_" for c in label) for label in labels):
        raise RuleError(file, where, f"{value!r} is not a DNS zone name")
    return text


def _table(file: str, where: str, value: object) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise RuleError(file, where, "must be a table")
    return value


def _str(file: str, where: str, value: object) -> str:
    if not isinstance(value, str):
        raise RuleError(file, where, "must be a string")
    return value


def _only(file: str, where: str, table: Mapping[str, object], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            path = f"{where}.{_quote(key)}" if where else _quote(key)
            raise RuleError(file, path, f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _quote(key: str) -> str:
    """A TOML key path segment: bare when it can be, quoted otherwise."""
    if key and all(c.isalnum() or c in "-_" for c in key):
        return key
    return '"' + key + '"'

"""The value types of config keys: each checks what it reads and says what it expected.

Numbers are strict (``min_active = true`` is not 1) and bounded (a count of
2^63 is a typo, not a plan); durations are positive and bounded (``"0s"`` is
never a sensible interval, ``"10000000d"`` never a sensible timeout); names,
addresses and URLs are checked for the shape their users rely on.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, Strict

from hrmonitor.core.model import canonical_ip
from hrmonitor.core.units import format_duration, parse_duration, parse_size

MAX_COUNT = 1_000_000_000
MAX_DURATION = timedelta(days=366)
MAX_TIMEOUT = timedelta(hours=1)
MAX_SIZE = 10**10  # 10 GB: no mail message is larger

# RFC 5322 field names: printable ASCII but ':'.
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")
_DOMAIN = re.compile(r"^(?:\*\.)?(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_-]+$")
_DATABASE_URL = re.compile(r"^(?:sqlite|postgresql)(?:\+\w+)?://")


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration string (write e.g. '90s', '15m', '24h')")
    try:
        return parse_duration(value)
    except OverflowError:
        raise ValueError(f"{value!r} is far too long") from None


def _at_most(limit: timedelta) -> Callable[[timedelta], timedelta]:
    def check(value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"must be longer than 0 (got {format_duration(value)})")
        if value > limit:
            raise ValueError(f"{format_duration(value)} is longer than {format_duration(limit)}")
        return value

    return check


def _size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{value!r} is not a size (write e.g. '35MB' or a number of bytes)")
    try:
        size = parse_size(value)
    except OverflowError:
        raise ValueError(f"{value!r} is far too large") from None
    if size > MAX_SIZE:
        raise ValueError(f"{value!r} is larger than 10GB")
    return size


def _ip(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an IP address")
    try:
        return canonical_ip(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def _network(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a network")
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not a network (write e.g. '192.0.2.0/24')") from None


def _name(value: str) -> str:
    if not value.strip() or value != value.strip():
        raise ValueError(f"{value!r} is not a name (empty, or spaces around it)")
    return value


def _domain(value: str) -> str:
    domain = value.strip().lower().rstrip(".")
    if not _DOMAIN.match(domain):
        raise ValueError(f"{value!r} is not a domain name")
    return domain


def _address(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if (
        not at
        or not local.strip()
        or any(c.isspace() for c in value)
        or not _DOMAIN.match(domain.lower().rstrip("."))
    ):
        raise ValueError(f"{value!r} is not a mail address (write e.g. 'postmaster@example.net')")
    return value


def _header_name(value: str) -> str:
    if not _HEADER_NAME.match(value):
        raise ValueError(f"{value!r} is not a header field name")
    return value


def _http_url(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("http", "https") or not rest.split("/")[0]:
        raise ValueError(f"{value!r} is not an http(s):// URL")
    return value


def _database_url(value: str) -> str:
    if not _DATABASE_URL.match(value):
        raise ValueError(
            f"{value!r} is not a database URL (write e.g. 'sqlite:///hrmonitor.db' or "
            "'postgresql+psycopg://user@host/db')"
        )
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_at_most(MAX_DURATION))]
Timeout = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_at_most(MAX_TIMEOUT))]
Size = Annotated[int, BeforeValidator(_size)]
IP = Annotated[str, BeforeValidator(_ip)]
Network = Annotated[str, BeforeValidator(_network)]
Int = Annotated[int, Strict(), Field(le=MAX_COUNT)]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=-1e9, le=1e9)]
Bool = Annotated[bool, Strict()]
Name = Annotated[str, AfterValidator(_name)]
Domain = Annotated[str, AfterValidator(_domain)]
Address = Annotated[str, AfterValidator(_address)]
HeaderName = Annotated[str, AfterValidator(_header_name)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
DatabaseUrl = Annotated[str, AfterValidator(_database_url)]

"""Which files a config reads: paths resolved against the config file, shipped rules first.

Every relative path in a config (the SQLite database, rule files, the auth
file, TLS files) means "next to the config file", whatever directory a
command runs from: ``hrmonitor ip retire`` run from ``/tmp`` must act on the
daemon's database, not create an empty one in ``/tmp``.

The shipped rule files are package data (``hrmonitor.rules``, the repository's
top-level ``rules/`` directory) found through the import system (the package's
directory, or :mod:`importlib.resources` for other loaders), so a non-editable
install has them too. They are always read first; the files
a config names are the operator's own, layered after them. A config written
before that rule (``catalogue = ["rules/dnsbl.toml"]``) keeps working: a name
``rules/<shipped file>`` that is not a file next to the config, or that is the
shipped file itself, means the shipped file and is not read twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from importlib.util import find_spec
from pathlib import Path

SHIPPED_PACKAGE = "hrmonitor.rules"
# The config file when neither --config nor $HRMONITOR_CONFIG names one (here, not
# in ``loading``, so that the CLI knows it without importing the config models).
DEFAULT_CONFIG_PATH = "config.toml"

_SQLITE_URL = re.compile(r"^(?P<scheme>sqlite(?:\+\w+)?:///)(?P<path>[^?]*)(?P<query>\?.*)?$")


class RuleKind(StrEnum):
    DNSBL = "dnsbl"
    ROUTING = "routing"
    FEEDBACK = "feedback"
    BOUNCE = "bounce"


# The config key that names each kind's own files.
RULE_KEYS: dict[RuleKind, str] = {
    RuleKind.DNSBL: "dnsbl.catalogue",
    RuleKind.ROUTING: "routing.rules",
    RuleKind.FEEDBACK: "delivery.feedback",
    RuleKind.BOUNCE: "bounces.patterns",
}


@dataclass(frozen=True, slots=True)
class RuleFile:
    """One rule file to read: where it is, and which config key named it ("" = shipped)."""

    path: Path
    key: str

    @property
    def shipped(self) -> bool:
        return not self.key


# The repository's rules/ directory, beside the hrmonitor package in a checkout.
_SOURCE_RULES = Path(__file__).resolve().parents[2] / "rules"


def shipped_rules(kind: RuleKind) -> Path:
    """The shipped rule file of ``kind``, from the installed package.

    An editable install made before ``hrmonitor.rules`` was mapped to ``rules/``
    (a checkout updated without ``pip install -e .`` again) has no such package;
    the checkout's own ``rules/`` directory is then the shipped one.
    """
    name = f"{kind.value}.toml"
    spec = find_spec(SHIPPED_PACKAGE)
    if spec is None:
        return _SOURCE_RULES / name
    if spec.has_location and spec.origin:  # a package directory: what files() would name
        return Path(spec.origin).parent / name
    # Anything else (a zip, a custom loader): importlib.resources, which costs the
    # one-shot commands start-up time (tempfile, hashlib, ...) and so only here.
    from importlib.resources import files  # noqa: PLC0415

    return Path(str(files(SHIPPED_PACKAGE).joinpath(name)))


def resolve(directory: Path, value: str) -> Path:
    """``value`` as a path; a relative one is taken from ``directory`` (the config's)."""
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else directory / candidate


def rule_files(directory: Path, kind: RuleKind, names: tuple[str, ...]) -> tuple[RuleFile, ...]:
    """The shipped file of ``kind``, then the operator's ``names``, each with the key naming it.

    ``[bounces] patterns`` is one file, not a list: its key has no index.
    """
    shipped = shipped_rules(kind)
    chosen = [RuleFile(shipped, "")]
    for index, name in enumerate(names):
        path = resolve(directory, name)
        if _means_shipped(name, path, shipped):
            continue
        key = RULE_KEYS[kind] if kind is RuleKind.BOUNCE else f"{RULE_KEYS[kind]}[{index}]"
        chosen.append(RuleFile(path, key))
    return tuple(chosen)


def _means_shipped(name: str, path: Path, shipped: Path) -> bool:
    legacy = Path(name).as_posix() == f"rules/{shipped.name}"
    if not path.exists():
        return legacy
    try:
        return path.samefile(shipped)
    except OSError:
        return False


def database_url(directory: Path, url: str) -> str:
    """A SQLite URL with a relative file made absolute against ``directory``.

    SQLAlchemy would resolve it against the working directory, so a command
    run elsewhere would open (and create) a different, empty database.
    Other databases and ``:memory:`` are returned as they are.
    """
    match = _SQLITE_URL.match(url)
    if match is None:
        return url
    file = match.group("path")
    if not file or file == ":memory:" or file.startswith("file:") or Path(file).is_absolute():
        return url
    return f"{match.group('scheme')}{resolve(directory, file)}{match.group('query') or ''}"


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases and ``:memory:``)."""
    match = _SQLITE_URL.match(url)
    if match is None or match.group("path") in ("", ":memory:"):
        return None
    if match.group("path").startswith("file:"):
        return None
    return Path(match.group("path"))

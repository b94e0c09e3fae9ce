"""Envelope addresses as the listener sees them: a mailbox, or the reply that refuses it.

The open-relay tricks of old (``user%other@relay``, ``"user@other"@relay``,
source routes ``@relay:user@other``, ``user@other@relay``, bang paths) all
smuggle a second destination inside one address. A relay that ever honoured
one of them is an open relay, so they are refused outright, from tenants too:
no legitimate sender needs them today. The check runs on the raw SMTP
argument, before any parser gets a chance to drop the route part silently
(Python's ``email`` parser discards ``@relay:`` obs-routes).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_MAX_LOCAL = 64
_MAX_DOMAIN = 255
_MAX_PATH = 256


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A valid envelope address; ``local`` keeps its quotes if it was quoted."""

    local: str
    domain: str

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"


@dataclass(frozen=True, slots=True)
class NullPath:
    """``MAIL FROM:<>``: the reverse-path of DSNs, MDNs and auto-replies."""

    address: str = ""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an address is refused, as the SMTP reply that says so."""

    code: int
    status: str
    text: str

    @property
    def reply(self) -> str:
        return f"{self.code} {self.status} {self.text}"


RELAY_DENIED = Refusal(550, "5.7.1", "relaying denied")


def _malformed(why: str) -> Refusal:
    return Refusal(553, "5.1.3", f"malformed address: {why}")


def _relay_trick(why: str) -> Refusal:
    return Refusal(550, "5.7.1", f"relaying denied: {why}")


def split_path(arg: str) -> tuple[str, str] | Refusal:
    """Split ``<path> params`` into the path (without brackets) and the parameters.

    Accepts the bracket-less form too (old clients send it).
    """
    if any(ch in arg for ch in "\r\n\0"):
        return Refusal(501, "5.5.2", "CR, LF or NUL in the address")
    arg = arg.strip()
    if arg.startswith("<"):
        end = arg.find(">")
        if end < 0:
            return _malformed("no closing '>'")
        return arg[1:end], arg[end + 1 :].strip()
    path, _, params = arg.partition(" ")
    return path, params.strip()


def _quoted_local(local: str) -> str | Refusal:
    inner = local[1:-1]
    if len(local) < 2 or not local.endswith('"'):
        return _malformed("unterminated quoted local part")
    unescaped = re.sub(r"\\(.)", r"\1", inner)
    if '"' in re.sub(r"\\.", "", inner):
        return _malformed("stray quote in the local part")
    if any(ch in unescaped for ch in "@%!:"):
        return _relay_trick("a routing character inside a quoted local part")
    return local


def address_literal(domain: str) -> str | None:
    """The IP address of an address-literal domain (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``).

    None when ``domain`` is a name, or a bracketed text that is no address.
    """
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    literal = domain[1:-1]
    if literal.lower().startswith("ipv6:"):
        literal = literal[5:]
    elif ":" in literal:
        return None  # RFC 5321 4.1.3: an IPv6 literal carries its "IPv6:" tag
    try:
        return str(ipaddress.ip_address(literal))
    except ValueError:
        return None


def literal_refusal(address: str, *, deliver: bool, families: frozenset[int]) -> Refusal | None:
    """Whether an address-literal recipient is taken (None) or refused at RCPT, and why.

    ``deliver``: the operator lets such mail go to the literal address (RFC 5321
    4.1.3); ``families``: the IP versions the pools can send from. A literal that
    cannot be delivered is refused now, never accepted and left to expire.
    """
    if not deliver:
        return Refusal(
            550, "5.7.1", "address-literal recipients are not accepted here; use a domain name"
        )
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified or ip.is_multicast or (ip.version == 4 and ip.is_reserved):
        return Refusal(550, "5.1.2", f"no mail host at [{address}]")
    if ip.version not in families:
        return Refusal(550, "5.4.4", f"no IPv{ip.version} source address to reach [{address}]")
    return None


def _check_domain(domain: str, *, utf8: bool) -> Refusal | None:
    if not domain:
        return _malformed("empty domain")
    if len(domain) > _MAX_DOMAIN:
        return _malformed("domain too long")
    if domain.startswith("[") and domain.endswith("]"):
        if address_literal(domain) is None:
            return _malformed("bad address literal")
        return None
    for label in domain.rstrip(".").split("."):
        ascii_label = label
        if utf8 and not label.isascii():
            try:
                ascii_label = label.encode("idna").decode("ascii")
            except UnicodeError:
                return _malformed(f"bad domain label {label!r}")
        if not _LABEL.match(ascii_label):
            return _malformed(f"bad domain label {label!r}")
    return None


def parse_path(
    path: str, *, utf8: bool = False, allow_null: bool = False
) -> Mailbox | NullPath | Refusal:
    """Judge one envelope path (the text between the angle brackets).

    ``utf8`` is true when the client asked for SMTPUTF8 on this transaction;
    without it a non-ASCII address is refused (RFC 6531 section 3.4).
    """
    if any(ch in path for ch in "\r\n\0"):
        return Refusal(501, "5.5.2", "CR, LF or NUL in the address")
    if path == "":
        return NullPath() if allow_null else _malformed("empty address")
    if len(path) > _MAX_PATH:
        return _malformed("address too long")
    if not utf8 and not path.isascii():
        return Refusal(553, "5.6.7", "non-ASCII address without SMTPUTF8")
    if path.startswith("@"):
        return _relay_trick("source routes are not accepted")
    if path.startswith('"'):
        close = path.rfind('"')
        if close <= 0 or close + 1 >= len(path) or path[close + 1] != "@":
            return _malformed("quoted local part must be followed by @domain")
        local_or = _quoted_local(path[: close + 1])
        if isinstance(local_or, Refusal):
            return local_or
        local, domain = local_or, path[close + 2 :]
    else:
        if path.count("@") > 1:
            return _relay_trick("more than one '@'")
        local, at, domain = path.partition("@")
        if not at:
            return _malformed("no domain")
        if "%" in local or "!" in local:
            return _relay_trick("'%' or '!' routing in the local part")
        atext_local = local if local.isascii() else re.sub(r"[^\x00-\x7f]", "a", local)
        if not _DOT_ATOM.fullmatch(atext_local):
            return _malformed("bad local part")
    if len(local) > _MAX_LOCAL:
        return _malformed("local part too long")
    problem = _check_domain(domain, utf8=utf8)
    if problem is not None:
        return problem
    return Mailbox(local=local, domain=domain.lower().rstrip("."))


@dataclass(frozen=True, slots=True)
class Submission:
    """One message as the listener accepted it from a tenant, before routing and queueing.

    ``data`` is the message exactly as received (after dot-unstuffing), with
    the listener's ``Received:`` header in front.
    """

    tenant: str
    client_ip: str
    helo: str
    mail_from: str  # "" for the null reverse-path
    recipients: tuple[str, ...]
    data: bytes
    received_at: datetime
    smtputf8: bool = False
    auth_user: str | None = None

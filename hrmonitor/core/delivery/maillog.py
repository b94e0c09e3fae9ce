"""Per-message log lines in the shape Postfix writes them (and pflogsumm-style tools parse).

One line per accepted message and one per recipient per delivery attempt::

    QUEUEID: from=<a@b.test>, size=812, nrcpt=1, message-id=<x@b.test>,
        client=unknown[127.0.0.5], pool=normal, rules=none
    QUEUEID: to=<bob@x.test>, relay=mx.x.test[192.0.2.7]:25, delay=1.2, dsn=2.0.0,
        status=sent (250 2.0.0 Ok: queued as 4AB), pool=normal, source=198.51.100.10

(each on one line). Where a field is also one of Postfix's (``from``, ``size``,
``nrcpt``, ``message-id``, ``client``, ``to``, ``relay``, ``delay``, ``dsn``,
``status``) it is written as Postfix's ``smtp``/``qmgr``/``cleanup`` write it:
``relay=none`` when no MX replied, ``delay`` in seconds (two decimals under 100 s,
whole seconds above, ``0`` under 0.01 s), ``status=`` followed by the reply (or
our reason) in parentheses. Postfix's ``delays=a/b/c/d`` is not written: the
transaction is timed as a whole (connection set-up and transmission are not
told apart) and the time from the end of DATA to the queue write is not kept.
Our own fields (``pool``, ``source``, ``rules``, ...) come after Postfix's.

Every line is also a mapping of the same fields, for ``--log-format json``.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hrmonitor.core.units import format_duration

MAX_VALUE = 300  # characters of a value taken from the sender (a Message-ID, a reply)


def clean(value: str, limit: int = MAX_VALUE) -> str:
    """``value`` on one line, control characters as ``?``, cut at ``limit`` characters.

    A reply or a header can carry anything; a log line must stay one line.
    """
    text = "".join("?" if ord(c) < 32 or ord(c) == 127 else c for c in value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def seconds(value: float) -> str:
    """A delay as Postfix writes one: ``0`` under 0.01 s, ``1.2``, ``0.09``, ``6000``."""
    if value < 0.01:
        return "0"
    if value < 100:
        return f"{int(value * 100) / 100:.2f}".rstrip("0").rstrip(".")
    return str(int(value))


def relay(host: str | None, address: str | None, port: int | None) -> str:
    """``mx.host[192.0.2.7]:25`` (Postfix's ``relay=``), or ``none`` without an address."""
    if not address:
        return "none"
    name = host or address
    return f"{name}[{address}]:{port}" if port else f"{name}[{address}]"


@dataclass(frozen=True, slots=True)
class LogLine:
    """One message's line: its queue ID, its fields in order, and the status's text."""

    queue_id: str
    event: str  # "accepted", "attempt", "rerouted", "held"
    fields: tuple[tuple[str, str | int | float], ...]
    note: str = ""  # after ``status=``, in parentheses (Postfix's reply text)
    extra: tuple[tuple[str, str | int | float], ...] = field(default=())
    verb: str = ""  # a word before the fields ("rerouted"); then fields are space-separated

    @property
    def text(self) -> str:
        parts: list[str] = []
        for key, value in self.fields:
            shown = seconds(value) if key == "delay" and isinstance(value, float) else value
            if key == "status" and self.note:
                parts.append(f"{key}={shown} ({self.note})")
            else:
                parts.append(f"{key}={shown}")
        parts.extend(f"{key}={value}" for key, value in self.extra)
        if self.verb:
            tail = f" ({self.note})" if self.note else ""
            return f"{self.queue_id}: {self.verb} " + " ".join(parts) + tail
        return f"{self.queue_id}: " + ", ".join(parts)

    def as_json(self) -> dict[str, object]:
        """The same fields as JSON keys (``-`` in a key becomes ``_``); addresses unbracketed."""
        entry: dict[str, object] = {"queue_id": self.queue_id, "event": self.event}
        for key, value in (*self.fields, *self.extra):
            bracketed = isinstance(value, str) and key in _BRACKETED and value.startswith("<")
            entry[key.replace("-", "_")] = str(value)[1:-1] if bracketed else value
        if self.note:
            entry["reply" if self.event == "attempt" else "note"] = self.note
        return entry


_BRACKETED = frozenset({"from", "to", "message-id"})


def accepted(
    queue_id: str,
    *,
    mail_from: str,
    size: int,
    nrcpt: int,
    message_id: str,
    client_ip: str,
    pool: str,
    rules: Sequence[str],
    held_until: datetime | None = None,
    dsn_of: str | None = None,
) -> LogLine:
    """The line of an accepted message: Postfix's cleanup and qmgr lines in one.

    ``client`` is ``unknown[ip]`` as Postfix writes a client without a verified
    reverse name (the listener does not look it up); a DSN of ours is
    ``client=local`` with ``dsn-of=`` the message it reports on.
    """
    mid = clean(message_id.strip())
    if mid and not mid.startswith("<"):
        mid = f"<{mid}>"
    fields: list[tuple[str, str | int | float]] = [
        ("from", f"<{clean(mail_from)}>"),
        ("size", size),
        ("nrcpt", nrcpt),
        ("message-id", mid or "<>"),
        ("client", "local" if dsn_of is not None else f"unknown[{client_ip}]"),
        ("pool", pool),
        ("rules", ",".join(rules) or "none"),
    ]
    if held_until is not None:
        fields.append(("held-until", held_until.isoformat(timespec="seconds")))
    if dsn_of is not None:
        fields.append(("dsn-of", dsn_of))
    return LogLine(queue_id, "accepted", tuple(fields))


def attempt(
    queue_id: str,
    *,
    to: str,
    relay_to: str,
    delay: float,
    dsn: str,
    status: str,
    reason: str,
    pool: str,
    source: str | None,
    attempts: int,
) -> LogLine:
    """One recipient's line after one attempt; ``status``: sent, deferred, bounced, expired."""
    fields: tuple[tuple[str, str | int | float], ...] = (
        ("to", f"<{clean(to)}>"),
        ("relay", relay_to),
        ("delay", delay),
        ("dsn", dsn),
        ("status", status),
    )
    extra: tuple[tuple[str, str | int | float], ...] = (
        ("pool", pool),
        ("source", source or "none"),
        ("attempts", attempts),
    )
    return LogLine(queue_id, "attempt", fields, clean(reason), extra)


def expiry_reason(max_queue_time: timedelta, last: str) -> str:
    """Why a recipient expired: ``expired after 5d in queue, last reason: ...``."""
    prefix = "queue lifetime exceeded; last error: "
    if last.startswith(prefix):
        last = last[len(prefix) :]
    return f"expired after {format_duration(max_queue_time)} in queue, last reason: {last}"


def rerouted(
    queue_id: str, *, pool: str, rules: Sequence[str], was: str, held_until: datetime | None
) -> LogLine:
    """A held message routed again: ``rerouted pool=... reason=... (was held: dns-unknown)``,
    or ``held`` again (its sender domain's DNS still unknown) ``until=`` a time."""
    reason = ",".join(rules) or "none"
    if held_until is not None:
        return LogLine(
            queue_id,
            "held",
            (("pool", pool), ("reason", reason)),
            extra=(("until", held_until.isoformat(timespec="seconds")),),
            verb="held",
        )
    return LogLine(
        queue_id,
        "rerouted",
        (("pool", pool), ("reason", reason)),
        note=f"was held: {was}",
        verb="rerouted",
    )

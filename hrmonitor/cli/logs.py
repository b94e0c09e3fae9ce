"""The process's log: ISO 8601 timestamps with their offset, as text or JSON lines.

Text (the default) is one line per record: ``2026-12-07T02:30:01.123+00:00 INFO
hrmonitor.services.relay.delivery: ...``. ``--log-format json`` writes one JSON
object per line with ``ts``, ``level``, ``logger``, ``msg``, ``node`` (in the
daemon) and, where a line has them, its fields (``extra={"fields": {...}}``) as
top-level keys, for a log shipper.

Libraries that log routine work at INFO are kept at WARNING unless ``-vv``:
APScheduler (its jobs being added and run every few seconds), Alembic
(migration steps and plugin set-up), httpx/httpcore (a line per webhook POST),
aiosmtpd (every SMTP command of every session, about eight per message).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import Literal

LogFormat = Literal["text", "json"]

CHATTY_LOGGERS = (
    "apscheduler",
    "alembic",
    "httpx",
    "httpcore",
    "mail.log",
    "asyncio",
)

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """``<ISO time with offset> LEVEL logger: message``, and a traceback if any.

    A record with a ``node`` (the daemon's node name, where several share a store)
    gets it in brackets before the message: the fields before it stay as they are.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._with_node = logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: [%(node)s] %(message)s"
        )
        self._with_node.formatTime = self.formatTime  # type: ignore[method-assign]

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "node", None):
            return self._with_node.format(record)
        return super().format(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; a record's ``fields`` become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(str(key), value)
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key != "fields" and not key.startswith("_"):
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(
    level: int,
    *,
    filename: str | None = None,
    quiet_libraries: bool = True,
    log_format: LogFormat = "text",
) -> logging.Handler:
    """The process's one log handler: ``level``, to stderr or ``filename``.

    Returns the handler, so that a daemon can reopen its file (logrotate).
    """
    handler: logging.Handler
    if filename is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(filename, encoding="utf-8")
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(
            max(level, logging.WARNING) if quiet_libraries else logging.NOTSET
        )
    return handler

"""The rows and statements a sweep works with: an answer as a row, the tables, chunks.

Shared by :mod:`sweep_reads`, :mod:`sweep_writes` and :mod:`sweep`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, bindparam
from sqlalchemy.orm import Session

from hrmonitor.adapters.store.schema import AnswerRow, ListingRow
from hrmonitor.core.model import Answer, Clean, Error, Info, Listed, Status, Unknown

# Comfortably under SQLite's 32,766 and PostgreSQL's 65,535 bound parameters per statement.
CHUNK = 4000

CLEAN = Status.CLEAN.value


# --- answers as rows ---------------------------------------------------------------------

FIELDS = ("status", "codes", "tags", "severity", "txt", "checked_at")


def field_binds() -> dict[str, Any]:
    """SET column = :v_column for an answer's fields (a bind may not share a column's name)."""
    return {name: bindparam(f"v_{name}") for name in FIELDS}


def is_clean(answer: Answer) -> bool:
    return isinstance(answer, Clean | Info)


def answer_fields(answer: Answer) -> dict[str, Any]:
    match answer:
        case Listed():
            return {
                "codes": list(answer.codes),
                "tags": list(answer.tags),
                "severity": answer.severity.value,
                "txt": answer.txt,
            }
        case Info():
            return {"codes": list(answer.codes), "tags": list(answer.tags), "severity": None,
                    "txt": answer.txt}  # fmt: skip
        case Error():
            return {"codes": list(answer.codes), "tags": [], "severity": None, "txt": answer.reason}
        case Unknown():
            return {"codes": [], "tags": [], "severity": None, "txt": answer.reason}
        case Clean():
            return CLEAN_FIELDS
    raise TypeError(f"not an answer: {answer!r}")


CLEAN_FIELDS: dict[str, Any] = {"codes": [], "tags": [], "severity": None, "txt": ""}


def answer_row(answer: Answer, now: datetime) -> dict[str, Any]:
    """Executemany parameters for one answer's row, keyed for the statements here."""
    fields = answer_fields(answer)
    return {
        "k_ip": answer.ip,
        "k_zone": answer.zone,
        "v_status": answer.status.value,
        "v_codes": fields["codes"],
        "v_tags": fields["tags"],
        "v_severity": fields["severity"],
        "v_txt": fields["txt"],
        "v_checked_at": now,
        "v_clean_since": now if is_clean(answer) else None,
    }


# --- statements --------------------------------------------------------------------------


def answers_table() -> Table:
    table = AnswerRow.__table__
    assert isinstance(table, Table)
    return table


def listings_table() -> Table:
    table = ListingRow.__table__
    assert isinstance(table, Table)
    return table


def key_matches(table: Table) -> ColumnElement[bool]:
    return and_(table.c.ip == bindparam("k_ip"), table.c.list_key == bindparam("k_zone"))


def execute_many(session: Session, statement: Any, params: list[dict[str, Any]]) -> None:
    session.connection().execute(statement, params)


def chunks(items: Sequence[str], size: int = CHUNK) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]

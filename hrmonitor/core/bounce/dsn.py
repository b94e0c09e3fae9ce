"""RFC 3464 / RFC 6533 delivery-status bodies: per-message fields and per-recipient blocks.

The body is parsed here rather than by the ``email`` package, which mis-parses
``message/global-delivery-status``. Real DSNs break the grammar in many ways
(no blank line between blocks, fields in any order, several recipients in one
block, ``Action: failure``), so the grouping is by recipient field, not only
by blank line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hrmonitor.core.bounce.mime import parse_fields

_RECIPIENT_FIELDS = ("final-recipient", "original-recipient", "x-actual-recipient")
_UTF8_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_XTEXT = re.compile(r"\+([0-9A-Fa-f]{2})")


@dataclass(frozen=True, slots=True)
class RecipientBlock:
    """One per-recipient block, fields as written (values unfolded, not interpreted)."""

    address: str
    action: str
    status: str
    remote_mta: str
    diagnostic: str
    diagnostic_type: str = ""  # lower-cased: "smtp", "x-unix", "x-postfix", ... ("" if none)


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    envelope_id: str
    reporting_mta: str
    recipients: tuple[RecipientBlock, ...]


def parse_delivery_status(text: str, *, max_recipients: int = 1000) -> DeliveryStatus:
    """Parse the body of a message/delivery-status or message/global-delivery-status part."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    per_message: dict[str, str] = {}
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\n[ \t]*\n", text):
        current: dict[str, str] = {}
        for name, value in parse_fields(chunk.strip("\n")):
            if name in _RECIPIENT_FIELDS and (
                name in current
                or all(key in current for key in ("final-recipient", "action", "status"))
            ):
                blocks.append(current)  # a second recipient without a blank line between
                current = {}
            current.setdefault(name, value)
        if any(key in current for key in _RECIPIENT_FIELDS):
            blocks.append(current)
        else:
            for name, value in current.items():
                per_message.setdefault(name, value)
        if len(blocks) >= max_recipients:
            break
    recipients = []
    for block in blocks[:max_recipients]:
        address = _address(block)
        if not address:
            continue
        recipients.append(
            RecipientBlock(
                address=address,
                action=normalise_action(block.get("action", "")),
                status=block.get("status", "").strip(),
                remote_mta=_after_type(block.get("remote-mta", "")),
                diagnostic=_after_type(block.get("diagnostic-code", "")),
                diagnostic_type=_type_of(block.get("diagnostic-code", "")),
            )
        )
    return DeliveryStatus(
        envelope_id=_xtext(per_message.get("original-envelope-id", "").strip()),
        reporting_mta=_after_type(per_message.get("reporting-mta", "")),
        recipients=tuple(recipients),
    )


def normalise_action(value: str) -> str:
    """RFC 3464 action words, read generously (``failure`` -> ``failed``)."""
    word = value.strip().lower().split(" ", 1)[0].split(";", 1)[0]
    for action in ("failed", "delayed", "delivered", "relayed", "expanded"):
        if word.startswith(action[:4]):
            return action
    return word


def _address(block: dict[str, str]) -> str:
    """The recipient as the sender wrote it: Original-Recipient where it is an Internet
    address (Final-Recipient may be a rewritten or X.400 form), else Final-Recipient."""
    original = block.get("original-recipient", "")
    if "@" in original and original.partition(";")[0].strip().lower() in ("rfc822", "utf-8"):
        names: tuple[str, ...] = ("original-recipient", "final-recipient")
    else:
        names = ("final-recipient", "original-recipient", "x-actual-recipient")
    for name in names:
        value = block.get(name, "")
        kind, sep, address = value.partition(";")
        if not sep:
            address, kind = kind, "rfc822"
        address = address.strip().strip("<>").strip()
        if kind.strip().lower() == "utf-8":
            address = _UTF8_ESCAPE.sub(lambda m: _char(m.group(1)), address)
        else:
            address = _xtext(address)
        if address:
            return address
    return ""


def _char(hex_digits: str) -> str:
    code = int(hex_digits, 16)
    return chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"


def _xtext(value: str) -> str:
    return _XTEXT.sub(lambda m: chr(int(m.group(1), 16)), value) if "+" in value else value


def _after_type(value: str) -> str:
    """``dns; mx.example.com`` -> ``mx.example.com``; ``smtp; 550 ...`` -> ``550 ...``."""
    kind, sep, rest = value.partition(";")
    if sep and re.fullmatch(r"\s*[A-Za-z][A-Za-z0-9\-]*\s*", kind):
        return rest.strip()
    return value.strip()


def _type_of(value: str) -> str:
    """The type before the ";" of a typed field ("SMTP; 550 ..." -> "smtp"), "" if none."""
    kind, sep, _ = value.partition(";")
    kind = kind.strip().lower()
    return kind if sep and kind and " " not in kind and len(kind) <= 20 else ""
